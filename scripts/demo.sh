#!/usr/bin/env bash
# The main job, end to end on loopback: start the real docker-registry, push a small image,
# pull it with acrpull as a root filesystem and as an OCI layout (checked with skopeo), then
# pull a private image from a token-auth registry with an Azure managed identity served by
# loopback fakes of IMDS and the ACR token service. Outputs go to ./out/demo.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
cargo build --quiet --bin acrpull
cargo run --quiet -p acrpull-testenv --bin acrpull-demo -- target/debug/acrpull out/demo
