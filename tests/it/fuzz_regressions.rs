//! The fuzz targets' regression corpus, replayed on stable Rust: every committed input under
//! `tests/regressions/<target>/` goes through the same check the fuzzer runs
//! (`fuzz/src/lib.rs`, compiled in here). Inputs that once crashed a parser are named after
//! what they prove; the rest are representative seeds. The fuzzers themselves run with
//! `scripts/fuzz.sh`, not in CI.

#[path = "../../fuzz/src/lib.rs"]
#[allow(dead_code)]
mod harness;

use std::path::{Path, PathBuf};

fn inputs(target: &str) -> Vec<(PathBuf, Vec<u8>)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/regressions")
        .join(target);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|error| panic!("{}: {error}", dir.display()))
        .map(|entry| entry.unwrap().path())
        .collect();
    files.sort();
    assert!(
        !files.is_empty(),
        "no regression inputs in {}",
        dir.display()
    );
    files
        .into_iter()
        .map(|path| {
            let data = std::fs::read(&path).unwrap();
            (path, data)
        })
        .collect()
}

fn replay(target: &str, check: impl Fn(&[u8])) {
    let failures: Vec<String> = inputs(target)
        .into_iter()
        .filter(|(_, data)| {
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| check(data))).is_err()
        })
        .map(|(path, _)| path.display().to_string())
        .collect();
    assert!(
        failures.is_empty(),
        "inputs failing their check: {failures:#?}"
    );
}

#[test]
fn reference_corpus() {
    replay("reference", harness::reference);
}

#[test]
fn www_authenticate_corpus() {
    replay("www_authenticate", harness::www_authenticate);
}

#[test]
fn manifest_corpus() {
    replay("manifest", harness::manifest);
}

#[test]
fn jwt_expiry_corpus() {
    replay("jwt_expiry", harness::jwt_expiry);
}

#[test]
fn token_response_corpus() {
    replay("token_response", harness::token_response);
}

#[test]
fn http_headers_corpus() {
    replay("http_headers", harness::http_headers);
}

#[test]
fn docker_config_corpus() {
    replay("docker_config", harness::docker_config);
}

#[test]
fn registries_conf_corpus() {
    replay("registries_conf", harness::registries_conf);
}

#[test]
fn policy_json_corpus() {
    replay("policy_json", harness::policy_json);
}

#[test]
fn layer_apply_corpus() {
    let dir = tempfile::tempdir().unwrap();
    let sandbox = harness::layer::Sandbox::create(&dir.path().join("sandbox")).unwrap();
    replay("layer_apply", |data| harness::layer::apply(&sandbox, data));
}

/// serde_json's recursion limit (128) turns a deeply nested document into an error, not a
/// stack overflow, in every manifest view (generated here: too big to commit).
#[test]
fn deeply_nested_manifest_is_an_error_not_a_stack_overflow() {
    let depth = 100_000;
    for wrap in [("[", "]"), ("{\"a\":", "}")] {
        let mut document = String::from("{\"schemaVersion\":2,\"manifests\":");
        document.push_str(&wrap.0.repeat(depth));
        document.push_str(&wrap.1.repeat(depth));
        document.push('}');
        harness::manifest(document.as_bytes());
        let verified = acrpull::source::FetchedManifest::verify(
            document.into_bytes().into(),
            None,
            None,
            None,
            "test",
        );
        assert!(verified.is_err());
    }
}

/// A manifest the size of the 4 MiB cap (a huge layer list) parses in bounded time and memory.
#[test]
fn manifest_at_the_size_cap_parses() {
    let layer = format!(
        r#"{{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"sha256:{}","size":1}}"#,
        "e".repeat(64)
    );
    let limit = usize::try_from(acrpull::registry::MANIFEST_LIMIT).unwrap();
    let count = (limit - 512) / (layer.len() + 1);
    let layers = vec![layer; count].join(",");
    let document = format!(
        r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:{}","size":1}},"layers":[{layers}]}}"#,
        "c".repeat(64)
    );
    assert!(document.len() as u64 <= acrpull::registry::MANIFEST_LIMIT);
    harness::manifest(document.as_bytes());
    let manifest: acrpull::manifest::ImageManifest = serde_json::from_str(&document).unwrap();
    assert_eq!(manifest.layers.len(), count);
}

/// The 4 MiB manifest cap holds for layouts: one byte over is refused before it is read, a
/// document exactly at the cap is read and classified.
#[tokio::test]
async fn manifest_cap_refuses_one_byte_over() {
    use acrpull::source::{ImageSource as _, LayoutSource};
    let limit = usize::try_from(acrpull::registry::MANIFEST_LIMIT).unwrap();
    for (size, too_large) in [(limit, false), (limit + 1, true)] {
        let dir = tempfile::tempdir().unwrap();
        let head = br#"{"schemaVersion":2,"manifests":[],"padding":""#;
        let mut document = head.to_vec();
        document.resize(size - 2, b'x');
        document.extend_from_slice(b"\"}");
        let digest = acrpull::Digest::sha256_of(&document);
        let blobs = dir.path().join("blobs/sha256");
        std::fs::create_dir_all(&blobs).unwrap();
        std::fs::write(blobs.join(digest.hex()), &document).unwrap();
        std::fs::write(
            dir.path().join("oci-layout"),
            br#"{"imageLayoutVersion":"1.0.0"}"#,
        )
        .unwrap();
        let index = format!(
            r#"{{"schemaVersion":2,"manifests":[{{"mediaType":"application/vnd.oci.image.index.v1+json","digest":"{digest}","size":{size},"annotations":{{"org.opencontainers.image.ref.name":"v1"}}}}]}}"#
        );
        std::fs::write(dir.path().join("index.json"), index).unwrap();
        let source = LayoutSource::open(dir.path()).unwrap();
        let result = source.manifest("v1").await;
        assert_eq!(
            matches!(
                result,
                Err(acrpull::registry::Error::ManifestTooLarge { .. })
            ),
            too_large,
            "size {size}: {:?}",
            result.map(|fetched| fetched.digest)
        );
    }
}

#[test]
fn notation_jws_corpus() {
    replay("notation_jws", harness::notation_jws);
}

#[test]
fn notation_cose_corpus() {
    replay("notation_cose", harness::notation_cose);
}

#[test]
fn notation_trust_policy_corpus() {
    replay("notation_trust_policy", harness::notation_trust_policy);
}

#[test]
fn x509_certificate_corpus() {
    replay("x509_certificate", harness::x509_certificate);
}

#[test]
fn sigstore_bundle_corpus() {
    replay("sigstore_bundle", harness::sigstore_bundle);
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(256))]

    /// Without a fuzzer at hand: the real envelopes and certificates, with bytes changed and
    /// cut, go through the fuzz checks (no panic, the invariants hold).
    #[test]
    fn mutated_notation_inputs_keep_the_fuzz_invariants(
        seed in 0usize..6,
        flips in proptest::collection::vec((proptest::prelude::any::<usize>(), proptest::prelude::any::<u8>()), 0..8),
        cut in proptest::prelude::any::<usize>(),
    ) {
        let (target, file, check): (&str, &str, fn(&[u8])) = [
            ("notation_jws", "notation-go-jws-with-timestamp", harness::notation_jws as fn(&[u8])),
            ("notation_cose", "notation-go-cose-with-timestamp", harness::notation_cose),
            ("x509_certificate", "globalsign-root-r6.der", harness::x509_certificate),
            ("notation_trust_policy", "spec-example", harness::notation_trust_policy),
            ("sigstore_bundle", "staging-bundle-v3", harness::sigstore_bundle),
            ("sigstore_bundle", "staging-checkpoint", harness::sigstore_bundle),
        ][seed];
        let mut data = std::fs::read(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/regressions").join(target).join(file),
        )
        .unwrap();
        for (at, value) in flips {
            let len = data.len();
            data[at % len] = value;
        }
        if cut % 4 == 0 {
            data.truncate(cut % (data.len() + 1));
        }
        check(&data);
    }
}
