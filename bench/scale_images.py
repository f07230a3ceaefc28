#!/usr/bin/env python3
"""Generate the scale corpus of issue 19 (goal 3) as OCI image layouts (stdlib only).

    scale_images.py LAYOUT_DIR META_JSON FAMILY TAG [TAG ...]

Writes the listed tags of one image family into the OCI layout LAYOUT_DIR (blobs shared
between tags are stored once) and records what each image holds (layers, tar entries,
uncompressed and compressed bytes) in META_JSON under "scale-FAMILY:TAG", which
`bench/scale.sh` reads to turn times into rates. `bench/scale_images.sh` calls this and pushes
the result; run that instead.

Families and tags (each family has a small and a large tag, so that time per layer, per entry,
per GiB or per image can be compared at two sizes):

  layers  16, 127   one layer per step: a few files each, a config file rewritten by every
                    layer, whiteouts of earlier layers' files and directories, and an opaque
                    directory every 16th layer. The 16-layer image is the first 16 layers of
                    the 127-layer one (same blobs).
  files   100k, 1m  one layer of 100 (1,000) directories x 1,000 files of a few bytes, then a
                    small layer that whites out one directory and makes another opaque.
  big     1g, 5g    one layer holding one file of 1 GiB (5 GiB) of moderately compressible
                    data (about 3:1 with gzip -6: seeded random bytes mixed with text), plus a
                    few small files.
  many    0 .. 49   an image of three layers: a base layer shared by all of them (about 4 MiB),
                    an application layer of its own (about 1 MiB, 60 files) and a small one.

Layers are tar streams written by python `tarfile` (PAX) straight into `pigz -n -6`; nothing
uncompressed touches the disk. Mtimes, owners, entry order, gzip headers and data are fixed
(seeded PRNGs), so the same script gives the same digests on any machine with the same pigz.
"""
import hashlib
import io
import json
import os
import random
import subprocess
import sys
import tarfile

MTIME = 1700000000
CREATED = "2023-11-14T22:13:20Z"  # == MTIME
MT_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MT_CONFIG = "application/vnd.oci.image.config.v1+json"
MT_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"
MiB = 1 << 20
GiB = 1 << 30


def log(*a):
    print("[scale_images]", *a, file=sys.stderr, flush=True)


class HashingWriter:
    """File-like sink that hashes and counts what goes through it (the layer's diff_id)."""

    def __init__(self, f):
        self.f = f
        self.h = hashlib.sha256()
        self.n = 0

    def write(self, b):
        self.h.update(b)
        self.n += len(b)
        return self.f.write(b)


class Pool:
    """64 seeded 1 MiB chunks of data that gzip -6 compresses about 3:1: 64 random bytes,
    then a line of 64 words from a 64-word vocabulary, repeated. Gzip's 32 KiB window never
    reaches back to an earlier use of a chunk, so the ratio holds over any length."""

    def __init__(self, seed=1):
        rng = random.Random(seed)
        words = [bytes(rng.choice(b"abcdefghijklmnopqrstuvwxyz") for _ in range(rng.randint(3, 10)))
                 for _ in range(64)]
        self.chunks = []
        for c in range(64):
            r = random.Random(seed * 1000 + c)
            out = bytearray()
            while len(out) < MiB:
                out += r.randbytes(64)
                out += b" ".join(r.choices(words, k=64)) + b"\n"
            self.chunks.append(bytes(out[:MiB]))

    def stream(self, size, seed):
        """A reader of exactly `size` bytes: pool chunks in a seeded order."""
        pool = self

        class Reader:
            def __init__(self):
                self.left = size
                self.rng = random.Random(seed)
                self.buf = b""

            def read(self, n):
                n = min(n, self.left)
                while len(self.buf) < n:
                    self.buf += pool.chunks[self.rng.randrange(64)]
                out, self.buf = self.buf[:n], self.buf[n:]
                self.left -= n
                return out

        return Reader()


class Layer:
    """One layer: a tar stream written through a hash (diff_id) into pigz, whose output goes
    to a temporary file in the layout's blob directory."""

    def __init__(self, layout, created_by):
        self.layout = layout
        self.created_by = created_by
        self.tmp = os.path.join(layout.blobdir, f".tmp-layer-{os.getpid()}")
        self.out = open(self.tmp, "wb")
        self.pigz = subprocess.Popen(["pigz", "-n", "-6", "-c"], stdin=subprocess.PIPE, stdout=self.out)
        self.hw = HashingWriter(self.pigz.stdin)
        self.tar = tarfile.open(fileobj=self.hw, mode="w|", format=tarfile.PAX_FORMAT,
                                bufsize=MiB, copybufsize=MiB)
        self.dirs = set()
        self.entries = 0
        self.files = 0
        self.payload = 0

    def _add(self, ti, data=None):
        ti.mtime = MTIME
        ti.uid = ti.gid = 0
        ti.uname = ti.gname = "root"
        self.tar.addfile(ti, data)
        self.entries += 1

    def dir(self, arc, mode=0o755):
        arc = arc.strip("/")
        if arc in self.dirs:
            return
        parent = os.path.dirname(arc)
        if parent:
            self.dir(parent)
        ti = tarfile.TarInfo(arc)
        ti.type = tarfile.DIRTYPE
        ti.mode = mode
        self._add(ti)
        self.dirs.add(arc)

    def file(self, arc, data, mode=0o644):
        self.stream(arc, len(data), io.BytesIO(data), mode)

    def stream(self, arc, size, reader, mode=0o644):
        arc = arc.strip("/")
        parent = os.path.dirname(arc)
        if parent:
            self.dir(parent)
        ti = tarfile.TarInfo(arc)
        ti.size = size
        ti.mode = mode
        self._add(ti, reader)
        self.files += 1
        self.payload += size

    def whiteout(self, arc):
        """Delete `arc` (a file or a directory) of a lower layer."""
        d, b = os.path.split(arc.strip("/"))
        self.file(f"{d}/.wh.{b}" if d else f".wh.{b}", b"")
        self.files -= 1

    def opaque(self, dir_arc):
        """Hide everything lower layers put in `dir_arc`."""
        self.dir(dir_arc)
        self.file(f"{dir_arc.strip('/')}/.wh..wh..opq", b"")
        self.files -= 1

    def close(self):
        self.tar.close()
        self.pigz.stdin.close()
        if self.pigz.wait() != 0:
            raise RuntimeError("pigz failed")
        self.out.close()
        desc = self.layout.adopt(self.tmp, MT_LAYER)
        log(f"  layer {desc['digest'][7:19]} {self.hw.n / MiB:9.1f} MiB -> {desc['size'] / MiB:8.1f} MiB, "
            f"{self.entries} entries: {self.created_by}")
        return {"desc": desc, "diff_id": "sha256:" + self.hw.h.hexdigest(), "uncompressed": self.hw.n,
                "entries": self.entries, "files": self.files, "payload": self.payload,
                "created_by": self.created_by}


class Layout:
    """A minimal OCI image layout: blobs by digest, index.json with one entry per tag."""

    def __init__(self, root):
        self.root = root
        self.blobdir = os.path.join(root, "blobs", "sha256")
        os.makedirs(self.blobdir, exist_ok=True)
        with open(os.path.join(root, "oci-layout"), "w") as f:
            json.dump({"imageLayoutVersion": "1.0.0"}, f)
        index = os.path.join(root, "index.json")
        self.refs = json.load(open(index))["manifests"] if os.path.exists(index) else []

    def adopt(self, path, media_type):
        h = hashlib.sha256()
        with open(path, "rb") as f:
            while b := f.read(4 * MiB):
                h.update(b)
        size = os.path.getsize(path)
        os.replace(path, os.path.join(self.blobdir, h.hexdigest()))
        return {"mediaType": media_type, "digest": "sha256:" + h.hexdigest(), "size": size}

    def put_json(self, obj, media_type):
        data = json.dumps(obj, indent=2, sort_keys=True).encode()
        digest = hashlib.sha256(data).hexdigest()
        with open(os.path.join(self.blobdir, digest), "wb") as f:
            f.write(data)
        return {"mediaType": media_type, "digest": "sha256:" + digest, "size": len(data)}

    def image(self, tag, layers, env=()):
        config = {
            "created": CREATED, "architecture": "amd64", "os": "linux",
            "config": {"Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", *env],
                       "Cmd": ["/bin/sh"], "WorkingDir": "/"},
            "rootfs": {"type": "layers", "diff_ids": [l["diff_id"] for l in layers]},
            "history": [{"created": CREATED, "created_by": l["created_by"]} for l in layers],
        }
        cdesc = self.put_json(config, MT_CONFIG)
        manifest = {"schemaVersion": 2, "mediaType": MT_MANIFEST, "config": cdesc,
                    "layers": [l["desc"] for l in layers]}
        mdesc = self.put_json(manifest, MT_MANIFEST)
        self.refs = [r for r in self.refs if r.get("annotations", {}).get("org.opencontainers.image.ref.name") != tag]
        self.refs.append(dict(mdesc, annotations={"org.opencontainers.image.ref.name": tag}))
        with open(os.path.join(self.root, "index.json"), "w") as f:
            json.dump({"schemaVersion": 2, "manifests": self.refs}, f, indent=2)
        return {
            "manifest_digest": mdesc["digest"],
            "layers": len(layers),
            "entries": sum(l["entries"] for l in layers),
            "files": sum(l["files"] for l in layers),
            "payload": sum(l["payload"] for l in layers),
            "uncompressed": sum(l["uncompressed"] for l in layers),
            "compressed": sum(l["desc"]["size"] for l in layers) + cdesc["size"],
        }


def text(seed, size):
    """Seeded text of about `size` bytes (config files, scripts)."""
    r = random.Random(seed)
    lines = []
    n = 0
    while n < size:
        line = f"key_{r.randrange(10_000)} = {r.choice(['on', 'off', 'auto', str(r.randrange(1 << 20))])}\n"
        lines.append(line)
        n += len(line)
    return "".join(lines).encode()


# ---------------------------------------------------------------------------
# families
# ---------------------------------------------------------------------------

def layer_step(layout, i):
    """Layer i (0-based) of the layers family."""
    L = Layer(layout, f"RUN step {i}")
    r = random.Random(1_000 + i)
    if i == 0:
        # A small base: a few directories of files the later layers change or delete.
        for d in ("bin", "etc", "lib", "usr/share/doc", "var/cache/app"):
            for k in range(20):
                L.file(f"{d}/base{k:02}", text(i * 100 + k, r.randrange(200, 4000)))
    if i >= 1 and i % 16 == 0:
        L.opaque("var/cache/app")  # hides the base's and earlier layers' cache files
    own = f"opt/step{i:03}"
    L.file(f"{own}/README", text(i, 600))
    L.file(f"{own}/data.bin", r.randbytes(r.randrange(1024, 48 * 1024)))
    L.file(f"{own}/step.conf", text(10_000 + i, 200))
    L.file(f"etc/app/conf{i % 10}.conf", text(20_000 + i, 800))  # rewritten every 10 layers
    L.file(f"var/cache/app/c{i:03}", text(30_000 + i, 300))
    if i >= 2:
        L.whiteout(f"opt/step{i - 2:03}/data.bin")  # a file of an earlier layer
    if i >= 1 and i <= 20:
        L.whiteout(f"bin/base{i - 1:02}")  # files of the base layer
    if i >= 5 and i % 8 == 0:
        L.whiteout(f"opt/step{i - 5:03}")  # a whole earlier directory
    return L.close()


def build_layers(layout, tag):
    count = {"16": 16, "127": 127}[tag]
    return layout.image(tag, [layer_step(layout, i) for i in range(count)])


def build_files(layout, tag):
    dirs = {"100k": 100, "1m": 1000}[tag]
    L = Layer(layout, f"COPY {dirs} x 1000 small files")
    for d in range(dirs):
        for f in range(1000):
            L.file(f"data/d{d:03}/f{f:03}", f"{d}.{f}\n".encode())
    bulk = L.close()
    L = Layer(layout, "RUN rm -rf /data/d000 && : > /data/d001/.wh..wh..opq")
    L.whiteout("data/d000")
    L.opaque("data/d001")
    L.file("data/d001/new", b"new\n")
    return layout.image(tag, [bulk, L.close()])


def build_big(layout, tag, pool):
    size = {"1g": GiB, "5g": 5 * GiB}[tag]
    L = Layer(layout, f"COPY one {size // GiB} GiB file")
    L.file("etc/hostname", b"scale-big\n")
    L.file("etc/os-release", text(7, 300))
    L.stream("data/blob.bin", size, pool.stream(size, seed=42))
    return layout.image(tag, [L.close()])


def many_base(layout, pool):
    L = Layer(layout, "base shared by every scale-many image")
    for k in range(40):
        L.stream(f"usr/lib/base/lib{k:02}.so", 96 * 1024, pool.stream(96 * 1024, seed=500 + k))
    for k in range(40):
        L.file(f"etc/base/conf{k:02}", text(600 + k, 1500))
    return L.close()


def build_many(layout, tag, base, pool):
    n = int(tag)
    if not 0 <= n < 50:
        raise SystemExit(f"scale-many has tags 0..49, not {tag}")
    app = Layer(layout, f"COPY app {n}")
    r = random.Random(9_000 + n)
    for k in range(60):
        app.stream(f"app/lib/m{k:02}.bin", 16 * 1024, pool.stream(16 * 1024, seed=n * 100 + k))
    app.file("app/bin/run", r.randbytes(40 * 1024), mode=0o755)
    app = app.close()
    small = Layer(layout, f"RUN echo {n} > /etc/app-index")
    small.file("etc/app-index", f"{n}\n".encode())
    small.whiteout("etc/base/conf00")
    return layout.image(tag, [base, app, small.close()], env=[f"APP_INDEX={n}"])


def main():
    if len(sys.argv) < 5:
        raise SystemExit(__doc__)
    root, meta_path, family, tags = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4:]
    layout = Layout(root)
    pool = Pool() if family in ("big", "many") else None
    base = many_base(layout, pool) if family == "many" else None
    meta = json.load(open(meta_path)) if os.path.exists(meta_path) else {}
    for tag in tags:
        log(f"scale-{family}:{tag}")
        if family == "layers":
            info = build_layers(layout, tag)
        elif family == "files":
            info = build_files(layout, tag)
        elif family == "big":
            info = build_big(layout, tag, pool)
        elif family == "many":
            info = build_many(layout, tag, base, pool)
        else:
            raise SystemExit(f"unknown family {family} (layers, files, big, many)")
        meta[f"scale-{family}:{tag}"] = info
        tmp = meta_path + ".tmp"
        with open(tmp, "w") as f:
            json.dump(meta, f, indent=1, sort_keys=True)
        os.replace(tmp, meta_path)


if __name__ == "__main__":
    main()
