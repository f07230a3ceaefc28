#!/bin/sh
# Run the rootfs test suite as an unprivileged user (uid/gid 65534, no capabilities), as
# docs/unpack.md section 2 describes: compile as root, copy the test binary and the fixture generator
# into a fresh world-writable directory, then execute there with TMPDIR pointing at it. Runs the
# suite twice: with openat2(RESOLVE_IN_ROOT) and with the userspace resolver forced.
#
# Usage (as root, from the repository): scripts/rootless-tests.sh [TEST-FILTER]   (default: rootfs::)
set -eu

filter="${1:-rootfs::}"
repo="$(cd "$(dirname "$0")/.." && pwd)"
user_id=65534

if [ "$(id -u)" -ne 0 ]; then
    echo "rootless-tests.sh: run as root (it drops to uid $user_id itself)" >&2
    exit 2
fi

cd "$repo"
binary="$(cargo test --lib --no-run --message-format=json 2>/dev/null \
    | python3 -c 'import json,sys
for line in sys.stdin:
    message = json.loads(line)
    if message.get("reason") == "compiler-artifact" and message.get("profile", {}).get("test") and message.get("executable"):
        print(message["executable"])' | tail -n 1)"
if [ -z "$binary" ]; then
    echo "rootless-tests.sh: could not find the library test binary" >&2
    exit 1
fi

work="$(mktemp -d /tmp/acrpull-rootless.XXXXXX)"
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/fixtures/hostile" "$work/tmp"
cp "$binary" "$work/acrpull-tests"
cp fixtures/hostile/make.py "$work/fixtures/hostile/"
chmod -R a+rX "$work"
chown "$user_id:$user_id" "$work/tmp"
chmod 0755 "$work"

run_as_user() {
    setpriv --reuid="$user_id" --regid="$user_id" --clear-groups --inh-caps=-all \
        env -i PATH="$PATH" HOME="$work/tmp" TMPDIR="$work/tmp" ACRPULL_FIXTURES_DIR="$work/fixtures" "$@"
}

echo "== rootfs tests as uid $user_id (openat2 where available)"
run_as_user "$work/acrpull-tests" "$filter" --test-threads=2
echo "== rootfs tests as uid $user_id (userspace path walk forced)"
run_as_user ACRPULL_TEST_PATH_WALK=1 "$work/acrpull-tests" "$filter" --test-threads=2
