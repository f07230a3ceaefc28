#!/usr/bin/env bash
# Build a release tarball of acrpull:
#
#   OUTDIR/acrpull-VERSION-TARGET.tar.gz
#     acrpull-VERSION-TARGET/
#       bin/acrpull
#       share/man/man1/acrpull.1, acrpull-pull.1, ...          (`acrpull man --dir`)
#       share/bash-completion/completions/acrpull
#       share/zsh/site-functions/_acrpull
#       share/fish/vendor_completions.d/acrpull.fish
#       README.md, SECURITY.md, docs/
#       SHA256SUMS                                           (every file above)
#   OUTDIR/SHA256SUMS                                        (the tarball)
#
# and prints the oldest C library the binary runs on: for a glibc build the highest GLIBC_x.y
# symbol version it imports (`objdump -T`), for a musl build "static" (no dynamic loader).
#
#   scripts/release.sh [--target TRIPLE] [OUTDIR]        default: the host target, dist/
#
# --target x86_64-unknown-linux-musl gives a fully static binary that runs on any x86_64 Linux,
# whatever its C library; it needs that Rust target (`rustup target add x86_64-unknown-linux-musl`)
# and musl-gcc for the C parts (zstd, ring): `apt-get install musl-tools`. The script says so and
# stops when either is missing. Builds are `cargo build --release --locked`, niced.
# Exit status: 0 on success, 1 when a build step fails, 2 on usage errors or a missing tool.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$(pwd)

target=""
outdir=""
while [[ $# -gt 0 ]]; do
    case $1 in
    --target)
        [[ $# -ge 2 ]] || { echo "release.sh: --target needs a value" >&2; exit 2; }
        target=$2
        shift 2
        ;;
    -h | --help)
        sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'
        exit 0
        ;;
    -*)
        echo "release.sh: unknown option $1" >&2
        exit 2
        ;;
    *)
        outdir=$1
        shift
        ;;
    esac
done
outdir=${outdir:-dist}
host=$(rustc -vV | sed -n 's/^host: //p')
target=${target:-$host}

for tool in cargo objdump sha256sum tar; do
    command -v "$tool" >/dev/null || { echo "release.sh: $tool is needed" >&2; exit 2; }
done
if [[ $target != "$host" ]] && ! rustup target list --installed 2>/dev/null | grep -qx "$target"; then
    echo "release.sh: the Rust target $target is not installed (rustup target add $target)" >&2
    exit 2
fi
if [[ $target == *-linux-musl ]] && ! command -v musl-gcc >/dev/null; then
    echo "release.sh: building for $target needs musl-gcc (apt-get install musl-tools)" >&2
    exit 2
fi

version=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)
name="acrpull-$version-$target"
echo "building $name..." >&2
target_args=()
[[ $target != "$host" ]] && target_args=(--target "$target")
nice -n 10 cargo build --release --locked --bin acrpull "${target_args[@]}" || exit 1
target_dir=${CARGO_TARGET_DIR:-$repo/target}
binary="$target_dir/release/acrpull"
[[ $target != "$host" ]] && binary="$target_dir/$target/release/acrpull"

mkdir -p "$outdir"
outdir=$(cd "$outdir" && pwd)
stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
root="$stage/$name"
mkdir -p "$root/bin" "$root/share/man/man1" "$root/share/bash-completion/completions" \
    "$root/share/zsh/site-functions" "$root/share/fish/vendor_completions.d"
install -m 0755 "$binary" "$root/bin/acrpull"
# Completions and man pages come from the binary just built (clap), so they match its flags.
# A cross-built binary may not run here; the host build writes the same text.
generator="$root/bin/acrpull"
"$generator" --version >/dev/null 2>&1 || {
    echo "release.sh: $target binary does not run here; completions and man pages need a host build" >&2
    exit 1
}
"$generator" completions bash >"$root/share/bash-completion/completions/acrpull"
"$generator" completions zsh >"$root/share/zsh/site-functions/_acrpull"
"$generator" completions fish >"$root/share/fish/vendor_completions.d/acrpull.fish"
"$generator" man --dir "$root/share/man/man1"
cp README.md SECURITY.md "$root/"
cp -r docs "$root/docs"
(cd "$root" && find . -type f ! -name SHA256SUMS -printf '%P\n' | LC_ALL=C sort | xargs sha256sum >SHA256SUMS)

# Reproducible archive: fixed order, owner and mtime (the commit's time when in git).
mtime=$(git log -1 --format=%ct 2>/dev/null || echo 0)
tar --sort=name --owner=0 --group=0 --numeric-owner --mtime="@$mtime" -C "$stage" -czf \
    "$outdir/$name.tar.gz" "$name"
(cd "$outdir" && sha256sum "$name.tar.gz" >SHA256SUMS)

# The oldest C library it runs on, from what the binary imports.
if objdump -p "$root/bin/acrpull" | grep -q 'NEEDED'; then
    glibc=$(objdump -T "$root/bin/acrpull" | grep -o 'GLIBC_[0-9][0-9.]*' | sort -uV | tail -1)
    floor="dynamically linked; needs glibc ${glibc#GLIBC_} or later (highest symbol version imported)"
else
    floor="statically linked; no C library needed at run time"
fi
size=$(stat -c %s "$root/bin/acrpull")
echo "$outdir/$name.tar.gz"
echo "binary: $size bytes, $floor"
