#!/usr/bin/env bash
# bench/tls_protocols.sh [IMAGE[:TAG]]        (default: small:v1; not a benchmark)
#
# Which HTTP version each tool speaks to the TLS registries of `bench.sh TLS=h2,h1`, and over
# how many connections: starts both variants as bench.sh does but with the registry's access
# log on, pulls IMAGE once with acrpull (--ca-file), skopeo (--src-cert-dir) and podman
# (--cert-dir) through each, and counts the registry's log lines by user agent: requests per
# protocol (access log: "GET ... HTTP/2.0") and distinct client ports (connections).
# Certificates and registries as in bench.sh (OUT/tls, bench/tls.sh); everything it started
# is stopped on exit, and its outputs go to a temporary directory under OUT.
#
# Environment: ACRPULL=path (default target/release/acrpull), OUT=/var/tmp/acrbench-perf,
# TLS_PORT=5443 (first port tried), REGISTRY_ACRBENCH=/var/tmp/acrbench (harness registry).
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
# shellcheck source=bench/tls.sh
source "$HERE/tls.sh"
OUT=${OUT:-/var/tmp/acrbench-perf}
ACRPULL=${ACRPULL:-$ROOT/target/release/acrpull}
TLS_PORT=${TLS_PORT:-5443}
REGISTRY_ACRBENCH=${REGISTRY_ACRBENCH:-/var/tmp/acrbench}
TLS_DIR=$OUT/tls
IMG=${1:-small:v1}
[[ $IMG == *:* ]] || IMG=$IMG:v1
TAG=${IMG#*:}

[[ -x $ACRPULL ]] || { echo "no acrpull binary at $ACRPULL: cargo build --release --bin acrpull" >&2; exit 1; }
[[ -r $REGISTRY_ACRBENCH/registry-config.yml ]] || { echo "no harness registry config at $REGISTRY_ACRBENCH/registry-config.yml" >&2; exit 1; }
tls_certs "$TLS_DIR"
mkdir -p "$OUT"
W=$(mktemp -d "$OUT/tlscheck.XXXXXX")
RUNROOT=/run/acrbench-tlscheck-$$
cleanup() {
    tls_stop_all
    awk -v w="$W" 'index($2, w) == 1 {print $2}' /proc/mounts | sort -r | while read -r mp; do
        umount "$mp" 2>/dev/null || umount -l "$mp" || true
    done
    rm -rf "$W" "$RUNROOT"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

printf '%-8s %-10s %-32s %s\n' variant tool "requests by protocol" connections
for variant in h2 h1; do
    tls_start "$variant" "$((TLS_PORT + TLS_PORT_OFFSET[$variant]))" "$REGISTRY_ACRBENCH/registry-config.yml" "$TLS_DIR" 1
    host=$TLS_HOST
    log=$TLS_DIR/registry-$variant.log
    "$ACRPULL" --quiet --ca-file "$TLS_DIR/ca/ca.crt" "$host/$IMG" "$W/acr-$variant" --format oci --no-cache
    skopeo copy --quiet --src-cert-dir "$TLS_DIR/ca" "docker://$host/$IMG" "oci:$W/skopeo-$variant:$TAG"
    if command -v podman >/dev/null; then
        podman --root "$W/podman-$variant" --runroot "$RUNROOT/$variant" --tmpdir "$W/podman-tmp" \
            --storage-driver overlay pull -q --cert-dir "$TLS_DIR/ca" "$host/$IMG" >/dev/null
    fi
    tls_stop "$variant"
    # Access-log lines: `... "GET /v2/... HTTP/2.0" 200 N "referer" "user agent"`; info lines:
    # `... http.request.remoteaddr="127.0.0.1:PORT" ... http.request.useragent=AGENT ...`.
    python3 - "$log" "$variant" <<'EOF'
import collections, re, sys
log, variant = sys.argv[1], sys.argv[2]
protocols = collections.defaultdict(collections.Counter)
ports = collections.defaultdict(set)
def tool(agent):
    for name in ("acrpull", "skopeo", "containers", "curl"):
        if name in agent:
            return "podman" if name == "containers" else name
    return agent
for line in open(log):
    m = re.search(r'"[A-Z]+ \S+ (HTTP/[0-9.]+)" \d+ \S+ "[^"]*" "([^"]*)"', line)
    if m:
        protocols[tool(m.group(2))][m.group(1)] += 1
    m = re.search(r'http\.request\.remoteaddr="?([^" ]+)"? .*http\.request\.useragent="?([^"=]+?)"? http\.', line)
    if m and "response completed" in line:
        ports[tool(m.group(2))].add(m.group(1))
for name in ("acrpull", "skopeo", "podman"):
    if name in protocols:
        counts = ", ".join(f"{p} ×{n}" for p, n in sorted(protocols[name].items()))
        print(f"{variant:<8} {name:<10} {counts:<32} {len(ports[name])}")
EOF
done
