#!/usr/bin/env bash
# bench/bench.sh [IMAGE[:TAG] ...]        (default: small debianish)
#
# Times acrpull against its peers and the physical floors, in the same run and on the same
# images, using the shared acrbench harness (../shared/bench: local registry on 127.0.0.1:5000,
# image corpus, trash.sh clean destinations). Not a test: it prints and records numbers.
#
#   acr_oci          acrpull --format oci                  → OCI layout (cold blob cache)
#   acr_rootfs       acrpull (default --format rootfs)      → root filesystem (cold blob cache)
#   acr_rootfs_nosync  the same with --no-sync: no fsync of cache blobs, no final syncfs, so
#                    durability is off as in every peer and floor row (none of them syncs)
#   acr_repull_oci   acrpull --format oci into a fresh directory with the blob cache warm
#                    (one manifest request; blobs hardlinked from the cache)
#   skopeo_oci       skopeo copy docker:// oci:             (peer, OCI layout)
#   skopeo_umoci     skopeo copy + umoci unpack --rootless  (peer, rootfs)
#   podman_overlay   podman pull --storage-driver overlay  (peer, container storage)
#   floor_fetch      fetch_blobs.sh --verify: curl --parallel + sha256sum -c  (network+hash floor)
#   floor_untar      untar_layers.sh: pigz|zstd -dc | tar -x per layer, from local blobs
#                    (decompress+extract floor; no network, no digests, no whiteouts)
#   floor_inflate    fetch_blobs.sh (curl --parallel, no check), then pigz|zstd -dc per layer
#                    to /dev/null, one layer after the other (the inflate floor of issue 19:
#                    no file written, nothing checked)
#
# Link profiles (LINKS=lan,wan; default none): the same pulls through acrpull-shaper
# (testenv), which adds a round-trip time and caps bandwidth in front of the registry:
#   lan   RTT 20 ms, 1 Gbit/s in total, 25 MiB/s per connection (blob storage behind a registry)
#   wan   RTT 80 ms, 200 Mbit/s in total
# Jobs acr_oci, acr_rootfs, skopeo_oci, skopeo_umoci, podman_overlay run against the shaper
# (results under raw/<image>@<link>/); the report adds the physical limit of the link,
# compressed bytes / bandwidth + 4 RTT. acrpull treats the shaper as a remote registry
# (ACRPULL_PARALLEL_RANGES=1).
#
# TLS variants (TLS=h2,h1; default none): the same jobs as the link profiles against a second
# docker-registry that serves the harness registry's storage over TLS (bench/tls.sh; rows
# <image>@tls-h2 and <image>@tls-h1):
#   h2    distribution's default: ALPN offers h2 and http/1.1 (127.0.0.1:5443)
#   h1    http.http2.disabled: true, ALPN offers only http/1.1 (127.0.0.1:5444)
# Certificates: a self-signed CA and a server certificate for IP 127.0.0.1, made once with
# openssl in OUT/tls. Every tool verifies them: acrpull --ca-file OUT/tls/ca/ca.crt, skopeo
# --src-cert-dir OUT/tls/ca, podman --cert-dir OUT/tls/ca (instead of --*tls-verify=false).
# Before the jobs, curl must negotiate HTTP/2 with h2 and HTTP/1.1 with h1, else the run stops.
# The report sets each TLS row beside the plain-HTTP row of the same image and job (ratio of
# medians). skopeo and podman (containers/image) never offer h2 and open a new connection per
# request, so h2 changes only acrpull's rows; bench/tls_protocols.sh shows who spoke what.
# The TLS registries are stopped after their jobs and on any exit (only the pids started here).
#
# Every timed run starts from a fresh destination: hyperfine --prepare renames the previous
# output into the trash (trash.sh: no `rm -rf`, see the harness README "Clean destination").
# Peak RSS: one extra run under /usr/bin/time -f %M (largest single process).
#
# Environment:
#   RUNS=5 WARMUP=1       hyperfine runs per job (big images: BIG_RUNS=2, BIG_WARMUP=0)
#   JOBS=a,b,...          subset of jobs (default: all above)
#   LINKS=lan,wan         link profiles to run as well (LINK_JOBS=... subset of their jobs)
#   SHAPER=path           acrpull-shaper binary (default: target/release/acrpull-shaper)
#   TLS=h2,h1             TLS registry variants to run as well (TLS_JOBS=... subset of their
#                         jobs, default LINK_JOBS; TLS_PORT=5443 first port tried, h1 one higher)
#   DRY=1                 print the commands instead of timing them
#   ACRPULL=path          binary (default: target/release/acrpull of this worktree)
#   OUT=/var/tmp/acrbench-perf   outputs, trash and raw results (kept out of the repository)
#   LABEL=latest          section of BENCHMARKS.md to (re)write; WRITE=0 to only print
#   COMMIT=<hash>         recorded with the numbers (default: git rev-parse --short HEAD, +dirty)
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
# shellcheck source=bench/common.sh
source "$HERE/common.sh"
# shellcheck source=bench/tls.sh
source "$HERE/tls.sh"
HARNESS=$(harness_dir "$ROOT")
OUT=${OUT:-/var/tmp/acrbench-perf}
REG=127.0.0.1:5000
RUNS=${RUNS:-5}
WARMUP=${WARMUP:-1}
BIG_RUNS=${BIG_RUNS:-2}
BIG_WARMUP=${BIG_WARMUP:-0}
ALL_JOBS=acr_oci,acr_rootfs,acr_rootfs_nosync,acr_repull_oci,skopeo_oci,skopeo_umoci,podman_overlay,floor_fetch,floor_untar,floor_inflate
JOBS=${JOBS:-$ALL_JOBS}
ACRPULL=${ACRPULL:-$ROOT/target/release/acrpull}
SHAPER=${SHAPER:-$ROOT/target/release/acrpull-shaper}
LINKS=${LINKS:-}
LINK_JOBS=${LINK_JOBS:-acr_oci,acr_rootfs,skopeo_oci,skopeo_umoci,podman_overlay}
TLS=${TLS:-}
TLS_JOBS=${TLS_JOBS:-$LINK_JOBS}
TLS_PORT=${TLS_PORT:-5443}
TLS_DIR=$OUT/tls
DRY=${DRY:-0}
# name → "RTT_MS TOTAL_BYTES_PER_S CONNECTION_BYTES_PER_S" (0: no cap)
declare -A LINK_PROFILE=(
    [lan]="20 125000000 $((25 << 20))"
    [wan]="80 25000000 0"
)
LABEL=${LABEL:-latest}
WRITE=${WRITE:-1}
if [[ -z ${COMMIT:-} ]]; then
    COMMIT=$(git -C "$ROOT" rev-parse --short HEAD)
    git -C "$ROOT" diff --quiet HEAD -- src Cargo.toml Cargo.lock || COMMIT="$COMMIT+dirty"
fi
IMAGES=("$@")
[[ ${#IMAGES[@]} -gt 0 ]] || IMAGES=(small debianish)

# The trash and the outputs live under $OUT (same file system as the harness's /var/tmp).
export ACRBENCH=$OUT
TRASH="$HARNESS/trash.sh"

REGISTRY_ACRBENCH=${REGISTRY_ACRBENCH:-/var/tmp/acrbench}
ACRBENCH=$REGISTRY_ACRBENCH "$HARNESS/registry.sh" status >/dev/null || {
    echo "registry not running: (cd $HARNESS && ./make_images.sh) or ./registry.sh start" >&2
    exit 1
}
for t in hyperfine skopeo umoci curl jq pigz zstd /usr/bin/time python3; do
    command -v "$t" >/dev/null || { echo "missing tool: $t" >&2; exit 1; }
done
[[ -x $ACRPULL ]] || { echo "no acrpull binary at $ACRPULL: cargo build --release --bin acrpull" >&2; exit 1; }
for link in ${LINKS//,/ }; do
    [[ -n ${LINK_PROFILE[$link]:-} ]] || { echo "unknown link profile: $link (lan, wan)" >&2; exit 1; }
    [[ -x $SHAPER ]] || { echo "no shaper at $SHAPER: cargo build --release -p acrpull-testenv --bin acrpull-shaper" >&2; exit 1; }
done
for variant in ${TLS//,/ }; do
    [[ -n ${TLS_HTTP2_DISABLED[$variant]:-} ]] || { echo "unknown TLS variant: $variant (h2, h1)" >&2; exit 1; }
    command -v openssl >/dev/null || { echo "missing tool: openssl (for TLS=)" >&2; exit 1; }
    [[ -r $REGISTRY_ACRBENCH/registry-config.yml ]] || { echo "no harness registry config at $REGISTRY_ACRBENCH/registry-config.yml" >&2; exit 1; }
done
# The report reads every result under raw/: keep only this run's (the previous run's go to
# raw.prev), so no row of an image or variant not run now is reported under this label.
if [[ $DRY != 1 && -d $OUT/raw ]]; then
    rm -rf "$OUT/raw.prev"
    mv "$OUT/raw" "$OUT/raw.prev"
fi
mkdir -p "$OUT/trash" "$OUT/raw"
if [[ -n $TLS && $DRY != 1 ]]; then
    tls_certs "$TLS_DIR"
    # The TLS registries go with this script, however it ends (errors, Ctrl-C, kill).
    trap tls_stop_all EXIT
    trap 'exit 130' INT
    trap 'exit 143' TERM
fi
[[ $DRY == 1 ]] || purge_and_cool_down "$OUT"

has_job() { [[ ",$JOBS," == *",$1,"* ]]; }

bench() { # IMAGE_ID JOB PREPARE COMMAND
    local id=$1 job=$2 prep=$3 cmd=$4 runs=$5 warmup=$6
    has_job "$job" || return 0
    local raw="$OUT/raw/$id"
    echo "---- [$id] $job: $cmd"
    if [[ $DRY == 1 ]]; then
        echo "     (dry run; prepare: $prep)"
        return 0
    fi
    # Before each job, not only once: one run of debianish and big writes about 65 GB of
    # outputs into the trash, more than this disk had free, and filled it mid-run.
    purge_and_cool_down "$OUT"
    mkdir -p "$raw"
    rm -f "$raw/$job".*
    local c0 c1
    c0=$(awk '/^cpu /{print $2+$3+$4+$7+$8}' /proc/stat)
    if ! hyperfine --shell bash --style basic --warmup "$warmup" --runs "$runs" \
        --prepare "$prep" -n "$job" --export-json "$raw/$job.json" "$cmd"; then
        echo "     FAILED" >&2
        rm -f "$raw/$job.json"
    fi
    c1=$(awk '/^cpu /{print $2+$3+$4+$7+$8}' /proc/stat)
    bash -c "$prep"
    /usr/bin/time -f '%M %e %U %S %x' -o "$raw/$job.time" bash -c "$cmd" >/dev/null 2>"$raw/$job.stderr" || true
    bash -c "$prep"
    [[ -s $raw/$job.stderr ]] || rm -f "$raw/$job.stderr"
    jq -n --arg cmd "$cmd" --arg commit "$COMMIT" --argjson busy "$(( c1 - c0 ))" \
        --arg load "$(cut -d' ' -f1-3 /proc/loadavg)" \
        '{command:$cmd, commit:$commit, machine_busy_ticks:$busy, loadavg_after:$load}' >"$raw/$job.info.json"
}

# The pulls of acrpull and its peers against the registry at REG (the registry itself, a
# shaped link in front of it, or a TLS registry whose CA is CERTS/ca.crt: then every tool
# verifies the certificate). ACRPULL_ENV is put before every acrpull command.
pulls() { # ID REG IMAGE TAG WORKDIR RUNS WARMUP [CERTS]
    local id=$1 reg=$2 img=$3 tag=$4 W=$5 runs=$6 warmup=$7 certs=${8:-}
    local acr_tls="" skopeo_tls="--src-tls-verify=false" podman_tls="--tls-verify=false"
    if [[ -n $certs ]]; then
        acr_tls="--ca-file $certs/ca.crt" skopeo_tls="--src-cert-dir $certs" podman_tls="--cert-dir $certs"
    fi
    A="${ACRPULL_ENV:-} $ACRPULL --quiet${acr_tls:+ $acr_tls} $reg/$img"
    # Cold runs: the default mode (blobs go through the cache), with the cache emptied first.
    bench "$id" acr_oci "$TRASH $W/layout $W/cache" "$A $W/layout --format oci --cache-dir $W/cache" "$runs" "$warmup"
    if has_job acr_repull_oci && [[ $DRY != 1 ]]; then
        "$TRASH" "$W/warm-cache"
        $A "$W/warm" --format oci --cache-dir "$W/warm-cache"
        bench "$id" acr_repull_oci "$TRASH $W/repull" "$A $W/repull --format oci --cache-dir $W/warm-cache" "$runs" 1
    fi
    bench "$id" acr_rootfs "$TRASH $W/rootfs $W/cache" "$A $W/rootfs --cache-dir $W/cache" "$runs" "$warmup"
    bench "$id" acr_rootfs_nosync "$TRASH $W/rootfs $W/cache" "$A $W/rootfs --cache-dir $W/cache --no-sync" "$runs" "$warmup"
    SK="skopeo copy --quiet $skopeo_tls docker://$reg/$img"
    bench "$id" skopeo_oci "$TRASH $W/layout" "$SK oci:$W/layout:$tag" "$runs" "$warmup"
    bench "$id" skopeo_umoci "$TRASH $W/layout $W/bundle" \
        "$SK oci:$W/layout:$tag && umoci unpack --rootless --image $W/layout:$tag $W/bundle" "$runs" "$warmup"
    if command -v podman >/dev/null; then
        # podman refuses a runroot longer than 50 characters: keep it on /run (tmpfs).
        R=/run/acrbench-perf/$id
        P="podman --root $W/podman/root --runroot $R --tmpdir $W/podman/tmp"
        bench "$id" podman_overlay "$TRASH $W/podman && rm -rf $R" \
            "$P --storage-driver overlay pull -q $podman_tls $reg/$img" "$runs" "$warmup"
    fi
}

for img in "${IMAGES[@]}"; do
    [[ $img == *:* ]] || img=$img:v1
    name=${img%%:*} tag=${img#*:}
    id=${name}_${tag}
    W=$OUT/w/$id
    runs=$RUNS warmup=$WARMUP
    if [[ $name == big ]]; then runs=$BIG_RUNS warmup=$BIG_WARMUP; fi
    "$TRASH" "$W"
    mkdir -p "$W"
    # A full run replaces the image's rows; a JOBS subset keeps the other rows it finds.
    [[ $JOBS == "$ALL_JOBS" ]] && rm -rf "${OUT:?}/raw/$id"
    echo "== $img: static blobs for the local floors"
    if [[ $DRY != 1 ]]; then
        "$HARNESS/fetch_blobs.sh" "$img" "$W/blobs-static" --verify
        cp "$W/blobs-static/manifest.json" "$OUT/raw/$id.manifest.json"
        mkdir -p "$OUT/raw/$id"
    fi

    pulls "$id" "$REG" "$img" "$tag" "$W" "$runs" "$warmup"
    bench "$id" floor_fetch "$TRASH $W/blobs" "$HARNESS/fetch_blobs.sh $img $W/blobs --verify" "$runs" "$warmup"
    bench "$id" floor_untar "$TRASH $W/untar" "$HARNESS/untar_layers.sh $W/blobs-static $W/untar" "$runs" "$warmup"
    bench "$id" floor_inflate "$TRASH $W/blobs-inflate" \
        "$HARNESS/fetch_blobs.sh $img $W/blobs-inflate && $HARNESS/untar_layers.sh $W/blobs-inflate -" "$runs" "$warmup"

    for link in ${LINKS//,/ }; do
        read -r rtt total per_connection <<<"${LINK_PROFILE[$link]}"
        lid="$id@$link"
        if [[ $DRY == 1 ]]; then
            host="SHAPED_HOST"
        else
            coproc SHAPER_PROC { "$SHAPER" "$REG" "$rtt" "$total" "$per_connection"; }
            read -r -u "${SHAPER_PROC[0]}" host
            mkdir -p "$OUT/raw/$lid"
            [[ $JOBS == "$ALL_JOBS" ]] && rm -f "$OUT/raw/$lid"/*
            jq -n --argjson rtt "$rtt" --argjson total "$total" --argjson per "$per_connection" \
                '{rtt_ms:$rtt, total_bytes_per_s:$total, connection_bytes_per_s:$per}' >"$OUT/raw/$lid/link.json"
            cp "$OUT/raw/$id.manifest.json" "$OUT/raw/$lid.manifest.json"
        fi
        echo "== $img through the $link link ($host: RTT $rtt ms, total $total B/s, per connection $per_connection B/s)"
        JOBS=$LINK_JOBS ACRPULL_ENV="env ACRPULL_PARALLEL_RANGES=1" \
            pulls "$lid" "$host" "$img" "$tag" "$W" "$runs" "$warmup"
        if [[ $DRY != 1 ]]; then
            eval "exec ${SHAPER_PROC[1]}>&-"
            wait "$SHAPER_PROC_PID" 2>/dev/null || true
        fi
    done

    for variant in ${TLS//,/ }; do
        port=$((TLS_PORT + TLS_PORT_OFFSET[$variant]))
        tid="$id@tls-$variant"
        if [[ $DRY == 1 ]]; then
            host="127.0.0.1:$port"
        else
            tls_start "$variant" "$port" "$REGISTRY_ACRBENCH/registry-config.yml" "$TLS_DIR"
            host=$TLS_HOST
            mkdir -p "$OUT/raw/$tid"
            [[ $JOBS == "$ALL_JOBS" ]] && rm -f "$OUT/raw/$tid"/*
            jq -n --arg variant "$variant" --arg host "$host" \
                --argjson http2_disabled "${TLS_HTTP2_DISABLED[$variant]}" \
                '{variant:$variant, host:$host, http2_disabled:$http2_disabled}' >"$OUT/raw/$tid/tls.json"
            cp "$OUT/raw/$id.manifest.json" "$OUT/raw/$tid.manifest.json"
        fi
        echo "== $img over TLS, variant $variant ($host, http.http2.disabled: ${TLS_HTTP2_DISABLED[$variant]})"
        JOBS=$TLS_JOBS pulls "$tid" "$host" "$img" "$tag" "$W" "$runs" "$warmup" "$TLS_DIR/ca"
        [[ $DRY == 1 ]] || tls_stop "$variant"
    done

    # never delete through a mount (podman); then move everything to the trash
    awk -v w="$W" 'index($2, w) == 1 {print $2}' /proc/mounts | sort -r | while read -r mp; do
        umount "$mp" 2>/dev/null || umount -l "$mp" || true
    done
    "$TRASH" "$W"
done

[[ $DRY == 1 ]] && exit 0
args=("$OUT/raw" --label "$LABEL" --commit "$COMMIT")
[[ $WRITE == 1 ]] && args+=(--write "$ROOT/BENCHMARKS.md")
python3 "$HERE/report.py" "${args[@]}"
