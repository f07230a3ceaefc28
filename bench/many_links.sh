#!/usr/bin/env bash
# bench/many_links.sh [COUNT]      (default 50)
#
# `pull -f` of COUNT small images (scale-many:0.., built by bench/scale_images.sh many) into
# one OCI layout through the link profiles of bench.sh (lan, wan) and on loopback, beside
# skopeo copying the same images one after the other into one layout. Every image costs
# round trips of its own (manifest, blobs), so this is where a link shows what a list costs
# per image; on loopback it barely shows. Runs are interleaved (acrpull, BASELINE if given,
# skopeo, then again), destinations and the blob cache fresh each time; wall and CPU (user +
# system) of each run go to OUT/many/<link>.tsv, and medians are printed.
#
# Environment:
#   RUNS=3                runs per job and link
#   LINKS=loop,lan,wan    which links
#   ACRPULL=path          binary (default: target/release/acrpull of this checkout)
#   BASELINE=path         a second acrpull to compare (optional)
#   SHAPER=path           acrpull-shaper (default: target/release/acrpull-shaper)
#   OUT=/var/tmp/acrbench-perf
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
COUNT=${1:-50}
RUNS=${RUNS:-3}
LINKS=${LINKS:-loop,lan,wan}
ACRPULL=${ACRPULL:-$ROOT/target/release/acrpull}
BASELINE=${BASELINE:-}
SHAPER=${SHAPER:-$ROOT/target/release/acrpull-shaper}
OUT=${OUT:-/var/tmp/acrbench-perf}
REG=127.0.0.1:5000
# The profiles of bench.sh: "RTT_MS TOTAL_BYTES_PER_S CONNECTION_BYTES_PER_S" (0: no cap).
declare -A LINK_PROFILE=([lan]="20 125000000 $((25 << 20))" [wan]="80 25000000 0")

curl -fsS "http://$REG/v2/scale-many/manifests/$((COUNT - 1))" -o /dev/null \
    -H 'Accept: application/vnd.oci.image.manifest.v1+json' ||
    { echo "no scale-many:$((COUNT - 1)) at $REG: run bench/scale_images.sh many" >&2; exit 1; }
[[ -x $ACRPULL ]] || { echo "no acrpull at $ACRPULL" >&2; exit 1; }
mkdir -p "$OUT/many"
W=$OUT/many/w

# One timed run: JOB HOST LINK COMMAND...; appends "job wall cpu" to the link's file.
timed() {
    local job=$1 link=$2
    shift 2
    rm -rf "$W" && mkdir -p "$W"
    /usr/bin/time -f '%e %U %S' -o "$W.time" "$@" >"$W.log" 2>&1 ||
        { echo "$job through $link FAILED:" >&2; tail -5 "$W.log" >&2; exit 1; }
    read -r wall user sys <"$W.time"
    printf '%s\t%s\t%s\n' "$job" "$wall" "$(echo "$user + $sys" | bc)" >>"$OUT/many/$link.tsv"
    echo "   $job: ${wall}s"
}

for link in ${LINKS//,/ }; do
    if [[ $link == loop ]]; then
        host=$REG
    else
        [[ -x $SHAPER ]] || { echo "no shaper at $SHAPER: cargo build --release -p acrpull-testenv --bin acrpull-shaper" >&2; exit 1; }
        read -r rtt total per <<<"${LINK_PROFILE[$link]}"
        coproc SHAPER_PROC { "$SHAPER" "$REG" "$rtt" "$total" "$per"; }
        read -r -u "${SHAPER_PROC[0]}" host
    fi
    echo "== $COUNT images through $link ($host)"
    : >"$OUT/many/$link.tsv"
    list=$OUT/many/$link.list
    for ((i = 0; i < COUNT; i++)); do echo "$host/scale-many:$i"; done >"$list"
    for ((r = 1; r <= RUNS; r++)); do
        for job in acrpull ${BASELINE:+baseline}; do
            binary=$ACRPULL
            [[ $job == baseline ]] && binary=$BASELINE
            timed "$job" "$link" env ACRPULL_PARALLEL_RANGES=1 "$binary" pull --quiet --format oci \
                -f "$list" "$W/layout" --cache-dir "$W/cache"
        done
        timed skopeo "$link" bash -c "while read -r ref; do
            skopeo copy --quiet --src-tls-verify=false docker://\$ref oci:$W/skopeo:\${ref##*:} || exit
        done <$list"
    done
    if [[ $link != loop ]]; then
        eval "exec ${SHAPER_PROC[1]}>&-"
        wait "$SHAPER_PROC_PID" 2>/dev/null || true
    fi
    python3 - "$OUT/many/$link.tsv" "$link" "$COUNT" <<'PY'
import statistics, sys
rows = [line.split("\t") for line in open(sys.argv[1]).read().splitlines()]
jobs = {}
for job, wall, cpu in rows:
    jobs.setdefault(job, []).append((float(wall), float(cpu)))
skopeo = statistics.median(w for w, _ in jobs["skopeo"])
for job, runs in jobs.items():
    wall = statistics.median(w for w, _ in runs)
    cpu = statistics.median(c for _, c in runs)
    print(f"{sys.argv[2]}\t{sys.argv[3]} images\t{job}\tmedian {wall:.2f} s\t"
          f"({min(w for w, _ in runs):.2f}-{max(w for w, _ in runs):.2f})\tCPU {cpu:.2f} s\t"
          f"{1000 * wall / int(sys.argv[3]):.0f} ms/image\t{wall / skopeo:.2f}x skopeo")
PY
done
rm -rf "$W"
