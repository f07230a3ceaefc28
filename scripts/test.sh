#!/usr/bin/env bash
# The test command: installs what the tests need, checks formatting and lints, runs the whole
# suite (unit, integration against the real docker-registry, skopeo/umoci cross-checks), then
# runs the root filesystem tests again as an unprivileged user.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
# Tests must never inherit Azure identity settings from the machine they run on.
unset AZURE_CLIENT_ID AZURE_TENANT_ID AZURE_CLIENT_SECRET AZURE_FEDERATED_TOKEN_FILE \
  AZURE_AUTHORITY_HOST AZURE_POD_IDENTITY_AUTHORITY_HOST IDENTITY_ENDPOINT IDENTITY_HEADER \
  IDENTITY_SERVER_THUMBPRINT IMDS_ENDPOINT MSI_ENDPOINT MSI_SECRET
cargo fmt --all -- --check
cargo clippy --workspace --all-targets -- -D warnings
# Every public item documented (missing_docs) and no broken intra-doc link.
RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps
cargo test --workspace
if [ -x scripts/rootless-tests.sh ]; then
  scripts/rootless-tests.sh
fi
