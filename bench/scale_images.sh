#!/usr/bin/env bash
# bench/scale_images.sh [FAMILY ...]      (default: layers files big many)
#
# Builds the scale corpus of issue 19 (goal 3) on demand and pushes it to the bench registry
# (127.0.0.1:5000, the shared harness's registry.sh; never in CI):
#
#   scale-layers:16, scale-layers:127   16 / 127 layers of a few files each, with whiteouts of
#                                       earlier layers' files and directories and opaque dirs
#   scale-files:100k, scale-files:1m    100,000 / 1,000,000 files of a few bytes in 100 / 1,000
#                                       directories (one layer, then a whiteout layer)
#   scale-big:1g, scale-big:5g          one layer with a 1 GiB / 5 GiB file (about 3:1 gzip)
#   scale-many:0 .. scale-many:49       50 small images (3 layers, the base shared) for `-f`
#
# bench/scale_images.py writes each family's layers as tar streams straight into `pigz -n -6`
# (deterministic: fixed mtimes and owners, seeded data) into an OCI layout under $SCALE
# (default /var/tmp/acrbench-scale, outside the repository), `skopeo copy` pushes every tag,
# the digest the registry serves is checked against the layout, and the layout is deleted
# again (the registry keeps the only copy). What each image holds (layers, entries, bytes) goes
# to $SCALE/scale.json, which bench/scale.sh reads.
#
# Idempotent: an image already in the registry with its entry in scale.json is skipped.
# Disk: about 2.3 GB in the registry (the 5 GiB layer compresses to about 1.8 GB); while
# building, the layout of the family being built as well. Time: about 10 min on 2 cores
# (pigz on 6 GiB, python writing 1.1 million tar entries).
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
# shellcheck source=bench/common.sh
source "$HERE/common.sh"
HARNESS=$(harness_dir "$ROOT")
SCALE=${SCALE:-/var/tmp/acrbench-scale}
REG=127.0.0.1:5000
META=$SCALE/scale.json
MIN_FREE_GB=${MIN_FREE_GB:-12}
FAMILIES=("$@")
[[ ${#FAMILIES[@]} -gt 0 ]] || FAMILIES=(layers files big many)

ACRBENCH=${REGISTRY_ACRBENCH:-/var/tmp/acrbench} "$HARNESS/registry.sh" status >/dev/null || {
    echo "registry not running: ACRBENCH=/var/tmp/acrbench $HARNESS/registry.sh start" >&2
    exit 1
}
for t in skopeo pigz curl jq python3; do
    command -v "$t" >/dev/null || { echo "missing tool: $t" >&2; exit 1; }
done
mkdir -p "$SCALE/layouts"

tags_of() {
    case $1 in
        layers) echo 16 127 ;;
        files) echo 100k 1m ;;
        big) echo 1g 5g ;;
        many) seq 0 49 ;;
        *) echo "unknown family $1 (layers, files, big, many)" >&2; exit 2 ;;
    esac
}

# The manifest digest the registry serves for NAME:TAG, or nothing.
served_digest() {
    curl -fsS -I -H 'Accept: application/vnd.oci.image.manifest.v1+json' \
        "http://$REG/v2/$1/manifests/$2" 2>/dev/null |
        awk -F': ' 'tolower($1) == "docker-content-digest" {print $2}' | tr -d '\r' || true
}

recorded_digest() {
    [[ ! -s $META ]] || jq -r --arg k "$1:$2" '.[$k].manifest_digest // empty' "$META"
}

for family in "${FAMILIES[@]}"; do
    name=scale-$family
    missing=()
    for tag in $(tags_of "$family"); do
        served=$(served_digest "$name" "$tag")
        if [[ -n $served && $served == "$(recorded_digest "$name" "$tag")" ]]; then
            continue
        fi
        missing+=("$tag")
    done
    if [[ ${#missing[@]} -eq 0 ]]; then
        echo "== $name: all tags in the registry"
        continue
    fi
    free=$(df --output=avail -B1G "$SCALE" | tail -1)
    if (( free < MIN_FREE_GB )); then
        echo "only $free GB free on $SCALE (need $MIN_FREE_GB): not building $name" >&2
        exit 1
    fi
    layout=$SCALE/layouts/$family
    rm -rf "$layout"
    echo "== $name: building ${missing[*]}"
    python3 "$HERE/scale_images.py" "$layout" "$META" "$family" "${missing[@]}"
    for tag in "${missing[@]}"; do
        skopeo copy --quiet --dest-tls-verify=false "oci:$layout:$tag" "docker://$REG/$name:$tag"
        served=$(served_digest "$name" "$tag")
        want=$(recorded_digest "$name" "$tag")
        if [[ $served != "$want" ]]; then
            echo "$name:$tag: the registry serves $served, the layout has $want" >&2
            exit 1
        fi
        echo "   pushed $name:$tag ($want)"
    done
    du -sh "$layout" | awk '{print "   layout " $1 " (deleted: the registry holds the image)"}'
    rm -rf "$layout"
    df -h --output=avail "$SCALE" | tail -1 | awk '{print "   " $1 " free"}'
done
jq -r 'to_entries[] | "\(.key)\t\(.value.layers) layers\t\(.value.entries) entries\t\(.value.uncompressed / 1e6 | floor) MB tar\t\(.value.compressed / 1e6 * 10 | floor / 10) MB gzip"' "$META"
