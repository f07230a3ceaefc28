#!/usr/bin/env bash
# bench/scale.sh [NAME ...]      (default: layers files big many)
#
# Issue 19 goal 3 (scale): does time grow linearly with layers, entries and bytes, and does
# peak RSS stay under 64 MiB? Pulls the scale corpus (bench/scale_images.sh builds it: run that
# first) from the bench registry on 127.0.0.1:5000, each family at a small and a large size:
#
#   layers   scale-layers:16, :127       unit: layer
#   files    scale-files:100k, :1m       unit: tar entry
#   big      scale-big:1g, :5g           unit: GiB of layer data (uncompressed)
#   many     scale-many:0..4, :0..49     unit: image (5 or 50 images in one layout with -f)
#
# NAME is a family or one image (layers:127, scale-files:1m); the default order puts files last,
# because its outputs (2 x 1.1 million inodes, about 9 GB) are deleted once it is done. Jobs,
# one run each by default:
#
#   acr_oci       acrpull --format oci (for many: -f LIST, every image into one layout)
#   acr_rootfs    acrpull (root filesystem; not for many)
#   skopeo_umoci  skopeo copy + umoci unpack --rootless, the peer of acr_rootfs (stopped after
#                 PEER_TIMEOUT s, default 600, and recorded as such)
#   skopeo_oci    skopeo copy, one image after the other into one layout: the peer of many
#
# Each run is measured with /usr/bin/time -f '%M %e %U %S' (peak RSS of the largest process,
# wall, user, system). acrpull starts from an empty blob cache (--cache-dir under the work
# directory) as in bench.sh. Destinations are fresh: the previous output is renamed into the
# trash with the harness's trash.sh (ACRBENCH=$OUT, as bench.sh does), never deleted just
# before a timed run (harness README, "Clean destination"), except the outputs of the big
# family, a few large files, which are deleted (after every job too, so that 5 GiB outputs do
# not pile up). The files family's million-file trees go to a trash of their own,
# OUT/trash/scale-files, deleted when the script is done (PURGE=0 keeps it), and the time is
# recorded in LAST_DELETE, so that bench.sh waits its cooldown before timing anything.
# Like bench.sh, the script empties the trash first
# when less than MIN_FREE_GB is free, and waits COOLDOWN s after a big delete; it refuses a
# family for which too little disk is free (files: 10 GB, big: 9 GB).
#
# bench/scale_report.py turns the results into a markdown table (time per layer / per 1,000
# entries / per GiB / per image at both sizes, and large ÷ small of those to show linearity),
# prints it, and with WRITE=1 rewrites the `## Scale` section of BENCHMARKS.md.
#
# Environment:
#   RUNS=1                runs per job (the table shows medians; RSS is the largest)
#   JOBS=a,b,...          subset of the jobs above
#   PEER_TIMEOUT=600      seconds before skopeo + umoci is given up
#   ACRPULL=path          binary (default: target/release/acrpull of this checkout)
#   OUT=/var/tmp/acrbench-perf   work directories (OUT/scale/w), results (OUT/scale/raw), trash
#   SCALE=/var/tmp/acrbench-scale   where scale_images.sh left scale.json
#   WRITE=0               1: rewrite the `## Scale` section of BENCHMARKS.md
#   PURGE=1               0: leave the files family's trees in the trash
#   MIN_FREE_GB=30 COOLDOWN=370 LAST_DELETE=/var/tmp/acrbench-perf/last_delete   as in bench.sh
#   DRY=1                 print the commands instead of running them
#   COMMIT=<hash>         recorded with the numbers (default: git rev-parse --short HEAD, +dirty)
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
# shellcheck source=bench/common.sh
source "$HERE/common.sh"
HARNESS=$(harness_dir "$ROOT")
OUT=${OUT:-/var/tmp/acrbench-perf}
SCALE=${SCALE:-/var/tmp/acrbench-scale}
REG=127.0.0.1:5000
RUNS=${RUNS:-1}
ALL_JOBS=acr_oci,acr_rootfs,skopeo_umoci,skopeo_oci
JOBS=${JOBS:-$ALL_JOBS}
PEER_TIMEOUT=${PEER_TIMEOUT:-600}
ACRPULL=${ACRPULL:-$ROOT/target/release/acrpull}
WRITE=${WRITE:-0}
DRY=${DRY:-0}
if [[ -z ${COMMIT:-} ]]; then
    COMMIT=$(git -C "$ROOT" rev-parse --short HEAD)
    git -C "$ROOT" diff --quiet HEAD -- src Cargo.toml Cargo.lock || COMMIT="$COMMIT+dirty"
fi
NAMES=("$@")
[[ ${#NAMES[@]} -gt 0 ]] || NAMES=(layers many big files)
PURGE=${PURGE:-1}

export ACRBENCH=$OUT
TRASH="$HARNESS/trash.sh"
FILES_TRASH=$OUT/trash/scale-files
RAW=$OUT/scale/raw

if [[ $DRY != 1 ]]; then
    ACRBENCH=${REGISTRY_ACRBENCH:-/var/tmp/acrbench} "$HARNESS/registry.sh" status >/dev/null || {
        echo "registry not running: ACRBENCH=/var/tmp/acrbench $HARNESS/registry.sh start" >&2
        exit 1
    }
    for t in skopeo umoci timeout /usr/bin/time python3; do
        command -v "$t" >/dev/null || { echo "missing tool: $t" >&2; exit 1; }
    done
    [[ -x $ACRPULL ]] || { echo "no acrpull binary at $ACRPULL: cargo build --release --bin acrpull" >&2; exit 1; }
    [[ -s $SCALE/scale.json ]] || { echo "no $SCALE/scale.json: run bench/scale_images.sh first" >&2; exit 1; }
fi
mkdir -p "$OUT/trash" "$RAW"
free_gb() { df --output=avail -B1G "$OUT" | tail -1; }
[[ $DRY == 1 ]] || purge_and_cool_down "$OUT"

has_job() { [[ ",$JOBS," == *",$1,"* ]]; }

# Images of a name: "family size" lines; size is the tag, or for many the number of images.
images_of() {
    local n=${1#scale-}
    case $n in
        layers | files | big) printf '%s\n' "$n $(small_of "$n")" "$n $(large_of "$n")" ;;
        many) printf '%s\n' "many 5" "many 50" ;;
        many:*) echo "many ${n#many:}" ;;
        layers:* | files:* | big:*) echo "${n%%:*} ${n#*:}" ;;
        *) echo "unknown image or family: $1 (layers, files, big, many, or FAMILY:TAG)" >&2; exit 2 ;;
    esac
}
small_of() { case $1 in layers) echo 16 ;; files) echo 100k ;; big) echo 1g ;; esac; }
large_of() { case $1 in layers) echo 127 ;; files) echo 1m ;; big) echo 5g ;; esac; }

# Fresh destinations: the big family's outputs are a few large files and are deleted;
# everything else goes to the trash (a rename).
fresh() { # FAMILY PATH...
    local family=$1; shift
    [[ $DRY == 1 ]] && return 0
    if [[ $family == big ]]; then
        rm -rf "$@"
        sync
    elif [[ $family == files ]]; then
        # a trash of its own inside the trash, deleted as a whole at the end (PURGE)
        ACRBENCH=$FILES_TRASH "$TRASH" "$@"
    else
        "$TRASH" "$@"
    fi
}

run() { # ID JOB FAMILY "PATHS TO MAKE FRESH" COMMAND...
    local id=$1 job=$2 family=$3 paths=$4; shift 4
    has_job "$job" || return 0
    echo "---- [$id] $job: $*"
    [[ $DRY == 1 ]] && return 0
    mkdir -p "$RAW/$id"
    rm -f "$RAW/$id/$job".*
    local r
    for r in $(seq 1 "$RUNS"); do
        # shellcheck disable=SC2086 # paths is a list
        fresh "$family" $paths
        local load0 rc=0
        load0=$(cut -d' ' -f1 /proc/loadavg)
        /usr/bin/time -f '%M %e %U %S' -o "$RAW/$id/$job.$r.time" "$@" \
            >"$RAW/$id/$job.$r.log" 2>&1 || rc=$?
        jq -n --argjson rc "$rc" --arg commit "$COMMIT" --arg load0 "$load0" \
            --arg load1 "$(cut -d' ' -f1 /proc/loadavg)" --arg cmd "$*" \
            '{rc:$rc, commit:$commit, loadavg_before:$load0, loadavg_after:$load1, command:$cmd}' \
            >"$RAW/$id/$job.$r.json"
        # /usr/bin/time writes "Command exited with non-zero status N" first on failure
        rss=$(tail -1 "$RAW/$id/$job.$r.time" | cut -d' ' -f1)
        wall=$(tail -1 "$RAW/$id/$job.$r.time" | cut -d' ' -f2)
        if [[ $rc == 124 ]]; then
            echo "     run $r: stopped after ${PEER_TIMEOUT}s (PEER_TIMEOUT)"
        elif [[ $rc != 0 ]]; then
            echo "     run $r: FAILED (exit $rc), see $RAW/$id/$job.$r.log" >&2
            tail -5 "$RAW/$id/$job.$r.log" >&2
        else
            echo "     run $r: wall ${wall}s, peak RSS $((rss / 1024)) MiB"
            [[ -s $RAW/$id/$job.$r.log ]] || rm -f "$RAW/$id/$job.$r.log"
        fi
    done
    fresh "$family" $paths
}

# Disk a family's outputs need at once, in GB.
need_gb() { case $1 in files) echo 10 ;; big) echo 9 ;; *) echo 1 ;; esac; }
for name in "${NAMES[@]}"; do
    while read -r family size; do
        id=$family-$size
        if [[ $DRY != 1 ]] && (( $(free_gb) < $(need_gb "$family") )); then
            echo "only $(free_gb) GB free on $OUT, $family needs $(need_gb "$family"): skipping $id" >&2
            continue
        fi
        W=$OUT/scale/w/$id
        fresh "$family" "$W"
        mkdir -p "$W"
        A="$ACRPULL pull --quiet"
        if [[ $family == many ]]; then
            list=$W/../$id.list
            for ((i = 0; i < size; i++)); do echo "$REG/scale-many:$i"; done >"$list"
            run "$id" acr_oci many "$W/layout $W/cache" \
                $A --format oci -f "$list" "$W/layout" --cache-dir "$W/cache"
            run "$id" skopeo_oci many "$W/skopeo" \
                bash -c "for i in \$(seq 0 $((size - 1))); do
                    skopeo copy --quiet --src-tls-verify=false docker://$REG/scale-many:\$i oci:$W/skopeo:\$i || exit
                done"
        else
            img=$REG/scale-$family:$size
            run "$id" acr_oci "$family" "$W/layout $W/cache" \
                $A "$img" "$W/layout" --format oci --cache-dir "$W/cache"
            run "$id" acr_rootfs "$family" "$W/rootfs $W/cache" \
                $A "$img" "$W/rootfs" --cache-dir "$W/cache"
            run "$id" skopeo_umoci "$family" "$W/skopeo $W/bundle" \
                timeout "$PEER_TIMEOUT" bash -c \
                "skopeo copy --quiet --src-tls-verify=false docker://$img oci:$W/skopeo:$size &&
                 umoci unpack --rootless --image $W/skopeo:$size $W/bundle"
        fi
        fresh "$family" "$W"
    done < <(images_of "$name")
done
if [[ $PURGE == 1 && $DRY != 1 && -e $FILES_TRASH ]]; then
    echo "== deleting the files family's outputs ($FILES_TRASH)"
    rm -rf "$FILES_TRASH"
    sync
    date +%s >"$LAST_DELETE"
fi

[[ $DRY == 1 ]] && exit 0
args=("$RAW" --meta "$SCALE/scale.json" --commit "$COMMIT" --peer-timeout "$PEER_TIMEOUT")
[[ $WRITE == 1 ]] && args+=(--write "$ROOT/BENCHMARKS.md")
python3 "$HERE/scale_report.py" "${args[@]}"
