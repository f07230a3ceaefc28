#!/usr/bin/env bash
# Run every fuzz target (or the ones named) for SECONDS each and report, per target, the
# executions, libFuzzer's final coverage (`cov:` edges, `ft:` features) and the crashes found.
#
#   scripts/fuzz.sh [SECONDS] [TARGET...]     default: 60 s, all targets
#
# Needs the nightly toolchain and cargo-fuzz (`cargo install cargo-fuzz`). Fuzzers run under
# `nice -n 19` with -rss_limit_mb=512 and -timeout=10. Each target's corpus (fuzz/corpus/<t>,
# not committed) is seeded from the committed regression inputs (tests/regressions/<t>) and the
# fixtures. Crashes land in fuzz/artifacts/<t>/; reproduce one with
# `cargo +nightly fuzz run <t> fuzz/artifacts/<t>/<file>`, then fix it and commit the input
# under tests/regressions/<t>/ with a name saying what it proves.
# Exit status: 0 when no target crashed, 1 otherwise, 2 on usage or build errors.
set -uo pipefail

cd "$(dirname "$0")/.."
repo=$(pwd)

seconds=60
if [[ $# -gt 0 && $1 =~ ^[0-9]+$ ]]; then
    seconds=$1
    shift
fi
all_targets=(reference www_authenticate manifest jwt_expiry token_response http_headers layer_apply
    docker_config registries_conf policy_json notation_jws notation_cose notation_trust_policy
    x509_certificate)
targets=("$@")
[[ ${#targets[@]} -eq 0 ]] && targets=("${all_targets[@]}")
sanitizer=${FUZZ_SANITIZER:-address}

logs="$repo/fuzz/logs"
mkdir -p "$logs"

seed() {
    local target=$1 corpus="$repo/fuzz/corpus/$1"
    mkdir -p "$corpus"
    if [[ -d "$repo/tests/regressions/$target" ]]; then
        cp -f "$repo/tests/regressions/$target"/* "$corpus/" 2>/dev/null
    fi
    case $target in
    manifest)
        # Every JSON blob of the fixture layouts (manifests, indexes, configs) and their indexes.
        for file in "$repo"/fixtures/images/*/blobs/sha256/* "$repo"/fixtures/images/*/index.json; do
            [[ $(head -c 1 "$file") == "{" ]] && cp -f "$file" "$corpus/fixture-$(basename "$(dirname "$(dirname "$(dirname "$file")")")")-$(basename "$file")"
        done
        ;;
    layer_apply)
        # Fixture layers (control byte: 0 plain tar, 1 gzip, 2 zstd), gzip layers also
        # decompressed, and the hostile archives aimed at the fuzz sandbox's sentinel.
        python3 - "$repo" "$corpus" <<'PY'
import gzip, hashlib, json, os, subprocess, sys, tempfile
repo, corpus = sys.argv[1], sys.argv[2]
def put(control, data):
    name = hashlib.sha1(bytes([control]) + data).hexdigest()
    with open(os.path.join(corpus, name), "wb") as out:
        out.write(bytes([control]) + data)
for image in os.listdir(os.path.join(repo, "fixtures/images")):
    blobs = os.path.join(repo, "fixtures/images", image, "blobs/sha256")
    for blob in os.listdir(blobs):
        data = open(os.path.join(blobs, blob), "rb").read()
        if data[:2] == b"\x1f\x8b":
            put(1, data)
            put(0, gzip.decompress(data))
        elif data[:4] == b"\x28\xb5\x2f\xfd":
            put(2, data)
        elif data[257:262] == b"ustar":
            put(0, data)
with tempfile.TemporaryDirectory() as out:
    subprocess.run([sys.executable, os.path.join(repo, "fixtures/hostile/make.py"), out,
                    "--sentinel", "/tmp/acrpull-fuzz-sandbox/sentinel"], check=True,
                   stdout=subprocess.DEVNULL)
    for case in json.load(open(os.path.join(out, "manifest.json"))):
        control = 1 if case.get("compression") == "gzip" else 0
        for layer in case["layers"]:
            put(control, open(os.path.join(out, layer), "rb").read())
PY
        ;;
    esac
}

echo "building fuzz targets (nightly, sanitizer=$sanitizer)..." >&2
build_target=()
[[ ${#targets[@]} -eq 1 ]] && build_target=("${targets[0]}")
if ! nice -n 19 cargo +nightly fuzz build -s "$sanitizer" "${build_target[@]}" >"$logs/build.log" 2>&1; then
    echo "build failed; see $logs/build.log" >&2
    exit 2
fi

status=0
printf '%-18s %8s %12s %8s %8s %8s %s\n' target seconds executions cov ft crashes artifacts
for target in "${targets[@]}"; do
    seed "$target"
    artifacts="$repo/fuzz/artifacts/$target"
    mkdir -p "$artifacts"
    before=$(ls "$artifacts" | wc -l)
    log="$logs/$target.log"
    dict=()
    case $target in
    manifest | jwt_expiry | token_response | policy_json | notation_jws | notation_trust_policy)
        dict=(-dict="$repo/fuzz/dict/json.dict") ;;
    www_authenticate | http_headers) dict=(-dict="$repo/fuzz/dict/headers.dict") ;;
    docker_config | registries_conf) dict=(-dict="$repo/fuzz/dict/$target.dict") ;;
    esac
    start=$(date +%s)
    nice -n 19 cargo +nightly fuzz run -s "$sanitizer" "$target" "fuzz/corpus/$target" -- \
        -max_total_time="$seconds" -rss_limit_mb=512 -timeout=10 -print_final_stats=1 \
        "${dict[@]}" >"$log" 2>&1
    elapsed=$(($(date +%s) - start))
    executions=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' | tail -1)
    last=$(grep -E '^#[0-9]+' "$log" | tail -1)
    cov=$(grep -o 'cov: [0-9]*' <<<"$last" | grep -o '[0-9]*')
    ft=$(grep -o 'ft: [0-9]*' <<<"$last" | grep -o '[0-9]*')
    [[ -z $executions ]] && executions=$(grep -o '^#[0-9]*' <<<"$last" | tr -d '#')
    after=$(ls "$artifacts" | wc -l)
    crashes=$((after - before))
    [[ $crashes -gt 0 ]] && status=1
    printf '%-18s %8s %12s %8s %8s %8s %s\n' "$target" "$elapsed" "${executions:-?}" \
        "${cov:-?}" "${ft:-?}" "$crashes" "$(ls -t "$artifacts" | head -"$crashes" | tr '\n' ' ')"
done
echo "logs: $logs" >&2
exit $status
