#!/usr/bin/env bash
# Installs the system packages the tests and the demo need (Debian): the real distribution
# registry, skopeo and umoci for interop checks. Idempotent; skips apt when all are present.
set -euo pipefail
need=()
for pair in docker-registry:docker-registry skopeo:skopeo umoci:umoci podman:podman python3:python3 setpriv:util-linux script:util-linux; do
  cmd=${pair%%:*}; pkg=${pair#*:}
  command -v "$cmd" >/dev/null 2>&1 || need+=("$pkg")
done
if [ ${#need[@]} -gt 0 ]; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need[@]}"
fi
