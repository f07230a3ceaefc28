#!/usr/bin/env bash
# bench/ranges.sh [MIB_PER_S] [IMAGE ...]      (default: 25 MiB/s, debianish big)
#
# Parallel Range segments against one stream per blob, on a link whose connections are capped
# (as blob storage caps each connection): `acrpull-proxy` (testenv) sits in front of the bench
# registry on 127.0.0.1:5000 and serves every blob response at MIB_PER_S. acrpull pulls each
# image to an OCI layout with ACRPULL_PARALLEL_RANGES=0 and =1 (a loopback registry gets one
# stream unless forced), RUNS times each, and the medians are printed. Outputs are layouts
# (a few files each), removed between runs.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
RATE_MIB=${1:-25}
shift || true
IMAGES=("$@")
[[ ${#IMAGES[@]} -gt 0 ]] || IMAGES=(debianish big)
RUNS=${RUNS:-3}
OUT=${OUT:-/var/tmp/acrbench-perf/ranges}
ACRPULL=${ACRPULL:-$ROOT/target/release/acrpull}
PROXY=${PROXY:-$ROOT/target/release/acrpull-proxy}
[[ -x $ACRPULL && -x $PROXY ]] || {
    echo "build first: cargo build --release --bin acrpull && cargo build --release -p acrpull-testenv --bin acrpull-proxy" >&2
    exit 1
}
command -v hyperfine >/dev/null || { echo "missing hyperfine" >&2; exit 1; }
mkdir -p "$OUT"
coproc PROXY_PROC { "$PROXY" http://127.0.0.1:5000 $((RATE_MIB << 20)); }
read -r -u "${PROXY_PROC[0]}" HOST
trap 'eval "exec ${PROXY_PROC[1]}>&-"; wait' EXIT
echo "capped proxy on $HOST: $RATE_MIB MiB/s per blob response"
printf '| image | one stream per blob (s) | parallel ranges (s) | speed-up |\n|---|---:|---:|---:|\n' >"$OUT/table.md"
for img in "${IMAGES[@]}"; do
    [[ $img == *:* ]] || img=$img:v1
    for mode in 0 1; do
        hyperfine --style basic --runs "$RUNS" --export-json "$OUT/${img%%:*}-$mode.json" \
            --prepare "rm -rf $OUT/layout" \
            "ACRPULL_PARALLEL_RANGES=$mode $ACRPULL -q $HOST/$img $OUT/layout --format oci --no-cache --no-sync" >/dev/null
    done
    one=$(jq '.results[0].median' "$OUT/${img%%:*}-0.json")
    par=$(jq '.results[0].median' "$OUT/${img%%:*}-1.json")
    printf '| %s | %.2f | %.2f | %.1fx |\n' "$img" "$one" "$par" "$(echo "$one / $par" | bc -l)" >>"$OUT/table.md"
done
rm -rf "$OUT/layout"
cat "$OUT/table.md"
