#!/usr/bin/env python3
"""scale_report.py RAWDIR --meta scale.json [--commit C] [--peer-timeout S] [--write BENCHMARKS.md]

Turns bench/scale.sh results (RAWDIR/<family>-<size>/<job>.<run>.{time,json}) into the markdown
of the scale section: per family, each job at the small and the large size with wall time, CPU
(user + system), peak RSS and time per unit (layer, 1,000 entries, GiB, image), then large ÷
small of the time per unit (about 1 or below: linear; fixed costs make it fall below 1) and the
64 MiB RSS target. Prints it; with --write, replaces what is between `<!-- scale begin -->` and
`<!-- scale end -->` in that file (appending a `## Scale` section when the markers are absent).
"""
import argparse
import glob
import json
import os
import statistics
import time

from section import write_section

ap = argparse.ArgumentParser()
ap.add_argument("raw")
ap.add_argument("--meta", required=True)
ap.add_argument("--commit", default="?")
ap.add_argument("--peer-timeout", type=float, default=600)
ap.add_argument("--write")
args = ap.parse_args()

meta = json.load(open(args.meta)) if os.path.exists(args.meta) else {}
GiB = 1 << 30
RSS_TARGET_MIB = 64
# family -> (small size, large size, unit name, unit scale: how many units one "per" is)
FAMILIES = {
    "layers": ("16", "127", "layer", 1),
    "files": ("100k", "1m", "1,000 entries", 1000),
    "big": ("1g", "5g", "GiB", 1),
    "many": ("5", "50", "image", 1),
}
JOBS = [
    ("acr_oci", "acrpull → OCI layout"),
    ("acr_rootfs", "acrpull → rootfs"),
    ("skopeo_umoci", "skopeo + umoci → rootfs"),
    ("skopeo_oci", "skopeo → OCI layout"),
]


def image_info(family, size):
    """(units, description) of one image of the corpus."""
    if family == "many":
        n = int(size)
        infos = [meta.get(f"scale-many:{i}", {}) for i in range(n)]
        entries = sum(i.get("entries", 0) for i in infos)
        return n, f"{n} images (`scale-many:0`..`:{n - 1}`, 3 layers each, the base shared), {entries:,} entries"
    info = meta.get(f"scale-{family}:{size}", {})
    desc = (f"`scale-{family}:{size}`: {info.get('layers', '?')} layers, {info.get('entries', 0):,} entries, "
            f"{info.get('uncompressed', 0) / 1e6:,.1f} MB tar, {info.get('compressed', 0) / 1e6:,.1f} MB gzip")
    units = {"layers": info.get("layers"), "files": info.get("entries"),
             "big": info.get("uncompressed", 0) / GiB if info else None}[family]
    return units, desc


def load(family, size, job):
    """Median wall and CPU, largest RSS, over the runs; None when the job did not run."""
    runs = []
    for tpath in sorted(glob.glob(os.path.join(args.raw, f"{family}-{size}", f"{job}.*.time"))):
        jpath = tpath[:-len(".time")] + ".json"
        info = json.load(open(jpath)) if os.path.exists(jpath) else {}
        last = open(tpath).read().strip().splitlines()[-1].split()
        rss, wall, user, system = int(last[0]), float(last[1]), float(last[2]), float(last[3])
        runs.append({"rc": info.get("rc", 0), "commit": info.get("commit", "?"), "rss": rss,
                     "wall": wall, "cpu": user + system, "user": user, "sys": system,
                     "load": f"{info.get('loadavg_before', '?')}→{info.get('loadavg_after', '?')}"})
    if not runs:
        return None
    ok = [r for r in runs if r["rc"] == 0]
    if not ok:
        timed_out = any(r["rc"] == 124 for r in runs)
        return {"failed": "stopped after %.0f s" % args.peer_timeout if timed_out else
                f"failed (exit {runs[0]['rc']})", "commit": runs[0]["commit"]}
    middle = sorted(ok, key=lambda r: r["cpu"])[len(ok) // 2]
    return {"wall": statistics.median(r["wall"] for r in ok), "cpu": statistics.median(r["cpu"] for r in ok),
            "split": f"{middle['user']:.2f} + {middle['sys']:.2f}",
            "rss": max(r["rss"] for r in ok) / 1024, "runs": len(ok), "commit": ok[0]["commit"],
            "load": ", ".join(r["load"] for r in ok)}


def per(value, units, scale):
    return value / units * scale


def fmt_rate(seconds):
    return f"{seconds * 1000:.1f} ms" if seconds < 1 else f"{seconds:.2f} s"


lines = ["<!-- scale begin -->",
         f"Measured {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; acrpull commit(s) COMMITS.", ""]
commits = set()
checks = []
for family, (small, large, unit, scale) in FAMILIES.items():
    rows = {(job, size): load(family, size, job) for job, _ in JOBS for size in (small, large)}
    if not any(rows.values()):
        continue
    (us, ds), (ul, dl) = image_info(family, small), image_info(family, large)
    lines += [f"#### {family}: {ds}; {dl}", "",
              f"| job | image | wall s | CPU s (user + sys) | peak RSS MiB | wall / {unit} | CPU / {unit} | large ÷ small, wall / CPU per {unit} | load avg |",
              "|---|---|---:|---:|---:|---:|---:|---:|---|"]
    for job, title in JOBS:
        s, l = rows[(job, small)], rows[(job, large)]
        for size, row, units in ((small, s, us), (large, l, ul)):
            if row is None:
                continue
            commits.add(row["commit"])
            if "failed" in row:
                lines.append(f"| {title} | {size} | {row['failed']} | | | | | | |")
                continue
            ratio = ""
            if size == large and s and "failed" not in s and units and us:
                rw = per(row["wall"], units, 1) / per(s["wall"], us, 1)
                if s["cpu"] < 0.2:  # /usr/bin/time counts in 10 ms steps
                    ratio = f"{rw:.2f}x / –"
                    verdict = "linear or better" if rw <= 1.15 else "NOT linear"
                    checks.append(f"{family}, {job}: wall per {unit} at {large} ÷ at {small} = {rw:.2f} ({verdict}; "
                                  f"too little CPU at {small}, {s['cpu']:.2f} s, to compare CPU)")
                else:
                    rc = per(row["cpu"], units, 1) / per(s["cpu"], us, 1)
                    ratio = f"{rw:.2f}x / {rc:.2f}x"
                    verdict = "linear or better" if rc <= 1.15 else "NOT linear"
                    checks.append(f"{family}, {job}: CPU per {unit} at {large} ÷ at {small} = {rc:.2f} ({verdict}); "
                                  f"wall {rw:.2f}")
            if row["rss"] >= RSS_TARGET_MIB and job.startswith("acr"):
                checks.append(f"{family}:{size}, {job}: peak RSS {row['rss']:.1f} MiB (target < {RSS_TARGET_MIB} MiB: NOT met)")
            wall_per = fmt_rate(per(row["wall"], units, scale)) if units else "?"
            cpu_per = fmt_rate(per(row["cpu"], units, scale)) if units else "?"
            lines.append(f"| {title} | {size} | {row['wall']:.2f} | {row['cpu']:.2f} ({row['split']}) | {row['rss']:.1f} | "
                         f"{wall_per} | {cpu_per} | {ratio} | {row['load']} |")
    lines.append("")
acr_rss = []
for path in glob.glob(os.path.join(args.raw, "*", "acr_*.time")):
    acr_rss.append(int(open(path).read().strip().splitlines()[-1].split()[0]) / 1024)
if acr_rss:
    top = max(acr_rss)
    checks.append(f"largest acrpull peak RSS over every image and job: {top:.1f} MiB "
                  f"(target < {RSS_TARGET_MIB} MiB: {'met' if top < RSS_TARGET_MIB else 'NOT met'})")
lines += [f"- {c}" for c in checks]
lines += ["", "Wall and CPU (user + system of the job's processes) are medians over the runs, peak RSS the",
          "largest process of any run (`/usr/bin/time -f %M`). \"large ÷ small\" divides the time per unit at the",
          "large size by the time per unit at the small size: 1.0 is linear, below 1 the fixed costs (process",
          "start, manifest, sync) are spread over more units. The load average before→after each run shows how",
          "busy the shared machine was.", "<!-- scale end -->"]
section = "\n".join(lines).replace("COMMITS", ", ".join(f"`{c}`" for c in sorted(commits)) or "?") + "\n"
print(section)

if args.write:
    write_section(args.write, section, "<!-- scale begin -->", "<!-- scale end -->",
                  heading="## Scale (`bench/scale.sh`)\n\n")
    print(f"(wrote the scale section of {args.write})")
