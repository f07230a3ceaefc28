//! Bad input from a registry: each case gets its clear error, its exit code, and nothing
//! half-written at the destination. Uses the in-process fault-injecting registry.

use acrpull_testenv::fake_registry::FakeRegistry;
use acrpull_testenv::fixtures::{fixture_layout, Layout};

use crate::support::{fails, ok, run, Scratch};

struct Case {
    registry: FakeRegistry,
    scratch: Scratch,
    layers: Vec<String>,
}

impl Case {
    fn new() -> Self {
        let registry =
            FakeRegistry::start(fixture_layout("simple"), "fake/simple").expect("fake starts");
        let layout = Layout::fixture("simple").unwrap();
        let main = layout.main_ref().unwrap();
        let (_config, layers) = layout.image_parts(&main.digest).unwrap();
        Self {
            registry,
            scratch: Scratch::new(),
            layers: layers.into_iter().map(|l| l.digest).collect(),
        }
    }

    fn image(&self, tag: &str) -> String {
        format!("{}/fake/simple:{tag}", self.registry.host())
    }

    fn pull(&self, tag: &str, dest: &str) -> std::process::Output {
        let dest = self.scratch.dest(dest);
        run(
            &self.scratch.home(),
            &[
                "pull",
                "--format",
                "oci",
                "--retries",
                "2",
                &self.image(tag),
                dest.to_str().unwrap(),
            ],
            None,
        )
    }

    fn nothing_left(&self) {
        assert_eq!(
            self.scratch.out_entries(),
            Vec::<String>::new(),
            "nothing half-written"
        );
    }
}

#[test]
fn corrupt_blob_is_an_integrity_failure_with_no_output() {
    let case = Case::new();
    case.registry.faults().corrupt_blob(&case.layers[1]);
    let stderr = fails(&case.pull("v1", "out"), 6);
    assert!(
        stderr.contains(&case.layers[1]) && stderr.contains("expected"),
        "{stderr}"
    );
    case.nothing_left();
}

#[test]
fn manifest_digest_header_mismatch_is_refused() {
    let case = Case::new();
    case.registry.faults().wrong_manifest_digest_header(true);
    let stderr = fails(&case.pull("v1", "out"), 6);
    assert!(stderr.contains("manifest"), "{stderr}");
    case.nothing_left();
}

#[test]
fn oversized_manifest_is_refused() {
    let case = Case::new();
    case.registry.faults().oversized_manifest(5 * 1024 * 1024);
    let stderr = fails(&case.pull("v1", "out"), 6);
    assert!(stderr.contains("limit"), "{stderr}");
    case.nothing_left();
}

#[test]
fn unknown_manifest_media_type_is_refused() {
    let case = Case::new();
    case.registry.faults().unknown_media_type(true);
    let stderr = fails(&case.pull("v1", "out"), 6);
    assert!(stderr.contains("unknown manifest media type"), "{stderr}");
    case.nothing_left();
}

#[test]
fn missing_tag_and_bad_reference() {
    let case = Case::new();
    let stderr = fails(&case.pull("nope", "out"), 4);
    assert!(stderr.contains("nope"), "{stderr}");
    let stderr = fails(
        &run(&case.scratch.home(), &["pull", "Bad//Ref", "/tmp/x"], None),
        2,
    );
    assert!(stderr.contains("Bad//Ref"), "{stderr}");
    case.nothing_left();
}

#[test]
fn transient_errors_and_broken_bodies_are_retried_and_resumed() {
    let case = Case::new();
    case.registry
        .faults()
        .blob_status_sequence(&case.layers[0], &[503, 500])
        .drop_after_bytes_once(&case.layers[1], 10);
    ok(&case.pull("v1", "out"));
    // The broken blob resumed from where it stopped instead of starting over.
    let resumed = case
        .registry
        .requests()
        .into_iter()
        .filter(|r| r.path.contains(&case.layers[1]))
        .any(|r| {
            r.header("range")
                .is_some_and(|v| v.starts_with("bytes=10-"))
        });
    assert!(resumed, "expected a Range request at the break point");
}

#[test]
fn redirected_blobs_never_carry_the_registry_token() {
    let case = Case::new();
    let storage = case.registry.storage().url();
    case.registry
        .faults()
        .require_bearer("registry-token-123")
        .redirect_blobs_to(&storage);
    ok(&case.pull("v1", "out"));
    // Config and two layers download at once, yet the token is fetched once.
    assert_eq!(case.registry.log().count("GET", "/token"), 1);
    let storage_requests = case.registry.storage().requests();
    assert!(!storage_requests.is_empty(), "blobs came from storage");
    assert!(storage_requests.iter().all(|r| !r.has_authorization()));
    assert!(case
        .registry
        .requests()
        .iter()
        .any(|r| r.path.contains("/manifests/") && r.has_authorization()));
}
