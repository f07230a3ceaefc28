//! A hostile registry (`acrpull_testenv::fake_registry::Hostile`): each attack gets a named test
//! asserting the exit class, that the pull ends in bounded time, that memory stays bounded where
//! memory is what the attack aims at (peak RSS from `/usr/bin/time`), that nothing is left at
//! the destination, and that no secret (the bearer token, a storage signature) is printed.

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use acrpull_testenv::fake_registry::{FakeRegistry, Hostile, FAKE_SAS_QUERY};
use acrpull_testenv::fixtures::fixture_layout;

use crate::support::{acrpull, fails, Scratch};

/// The token the registry requires; it must never appear in any output.
const BEARER: &str = "hostile-test-bearer-0123456789";

struct Case {
    registry: FakeRegistry,
    scratch: Scratch,
}

/// What a run produced and what it cost.
struct Run {
    output: Output,
    elapsed: Duration,
    /// Peak resident set of the acrpull process, when `/usr/bin/time` can measure it.
    max_rss_kib: Option<u64>,
}

impl Case {
    fn new(attack: Option<Hostile>) -> Self {
        let registry =
            FakeRegistry::start(fixture_layout("simple"), "fake/simple").expect("fake starts");
        registry.faults().require_bearer(BEARER);
        if let Some(attack) = attack {
            registry.faults().hostile(attack);
        }
        Self {
            registry,
            scratch: Scratch::new(),
        }
    }

    /// `acrpull pull --format oci -vv EXTRA IMAGE DEST` of the tag `v1`, measured.
    fn pull(&self, extra: &[&str]) -> Run {
        self.pull_tag("v1", extra)
    }

    fn pull_tag(&self, tag: &str, extra: &[&str]) -> Run {
        let dest = self.scratch.dest("out");
        let image = format!("{}/fake/simple:{tag}", self.registry.host());
        let mut args: Vec<&str> = vec!["pull", "--format", "oci", "-vv", "--retries", "1"];
        args.extend_from_slice(extra);
        args.push(&image);
        args.push(dest.to_str().unwrap());
        measured(&self.scratch.home(), &args)
    }

    fn nothing_left(&self) {
        assert_eq!(
            self.scratch.out_entries(),
            Vec::<String>::new(),
            "nothing half-written"
        );
    }
}

/// Run acrpull under `/usr/bin/time -f %M` when it exists (peak RSS in KiB), else directly.
fn measured(home: &Path, args: &[&str]) -> Run {
    let time = Path::new("/usr/bin/time");
    let rss_file = tempfile::NamedTempFile::new().expect("rss file");
    let mut command = if time.exists() {
        let reference = acrpull(home);
        let mut command = Command::new(time);
        command
            .arg("-f")
            .arg("%M")
            .arg("-o")
            .arg(rss_file.path())
            .arg(reference.get_program());
        for (name, value) in reference.get_envs() {
            match value {
                Some(value) => command.env(name, value),
                None => command.env_remove(name),
            };
        }
        command
    } else {
        acrpull(home)
    };
    command
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let started = Instant::now();
    let output = command.output().expect("acrpull runs");
    let elapsed = started.elapsed();
    let max_rss_kib = std::fs::read_to_string(rss_file.path())
        .ok()
        .and_then(|text| text.lines().last()?.trim().parse().ok());
    eprintln!("took {elapsed:?}, peak RSS {max_rss_kib:?} KiB");
    Run {
        output,
        elapsed,
        max_rss_kib,
    }
}

/// Neither the bearer token nor a storage signature is in the output.
fn no_secrets(run: &Run) -> String {
    let stderr = String::from_utf8_lossy(&run.output.stderr).into_owned();
    let stdout = String::from_utf8_lossy(&run.output.stdout);
    for text in [&stderr[..], &stdout[..]] {
        for secret in [BEARER, "sig=", "fake-sas-signature", "X-Injected"] {
            assert!(!text.contains(secret), "`{secret}` printed:\n{text}");
        }
    }
    stderr
}

fn within(run: &Run, limit: Duration) {
    assert!(
        run.elapsed < limit,
        "took {:?}, more than {limit:?}",
        run.elapsed
    );
}

fn rss_below(run: &Run, mib: u64) {
    if let Some(kib) = run.max_rss_kib {
        assert!(kib < mib * 1024, "peak RSS {kib} KiB, over {mib} MiB");
    }
}

#[test]
fn hostile_slow_drip_fails_at_the_speed_limit() {
    let case = Case::new(Some(Hostile::DripBlobs(Duration::from_millis(500))));
    let run = case.pull(&["--speed-limit", "100", "--speed-time", "2"]);
    let stderr = fails(&run.output, 5);
    no_secrets(&run);
    assert!(stderr.contains("--speed-limit"), "{stderr}");
    within(&run, Duration::from_secs(30));
    case.nothing_left();
}

#[test]
fn hostile_slow_drip_fails_at_the_deadline() {
    let case = Case::new(Some(Hostile::DripBlobs(Duration::from_millis(200))));
    let run = case.pull(&["--speed-limit", "0", "--deadline", "3"]);
    fails(&run.output, 5);
    no_secrets(&run);
    within(&run, Duration::from_secs(20));
    case.nothing_left();
}

#[test]
fn hostile_endless_blob_body_is_cut() {
    let case = Case::new(Some(Hostile::EndlessBlobs));
    let run = case.pull(&[]);
    assert!(
        matches!(run.output.status.code(), Some(5 | 6)),
        "{:?}\n{}",
        run.output.status,
        String::from_utf8_lossy(&run.output.stderr)
    );
    no_secrets(&run);
    within(&run, Duration::from_secs(60));
    rss_below(&run, 100);
    case.nothing_left();
}

#[test]
fn hostile_huge_token_response_is_refused_in_bounded_memory() {
    let case = Case::new(Some(Hostile::HugeToken(64 << 20)));
    let run = case.pull(&[]);
    let stderr = fails(&run.output, 3);
    no_secrets(&run);
    assert!(stderr.contains("limit"), "{stderr}");
    within(&run, Duration::from_secs(60));
    rss_below(&run, 100);
    case.nothing_left();
}

#[test]
fn hostile_token_with_line_break_is_an_authentication_failure() {
    let case = Case::new(Some(Hostile::TokenWithLineBreak));
    let run = case.pull(&[]);
    let stderr = fails(&run.output, 3);
    no_secrets(&run);
    assert!(stderr.contains("Authorization header"), "{stderr}");
    case.nothing_left();
}

#[test]
fn hostile_endless_error_body_is_read_only_in_part() {
    let case = Case::new(Some(Hostile::EndlessErrorBody));
    let run = case.pull(&[]);
    fails(&run.output, 5);
    no_secrets(&run);
    within(&run, Duration::from_secs(60));
    rss_below(&run, 100);
    case.nothing_left();
}

#[test]
fn hostile_lying_content_length_fails_in_bounded_time() {
    let case = Case::new(Some(Hostile::LyingContentLength));
    let run = case.pull(&["--speed-limit", "1000", "--speed-time", "2"]);
    fails(&run.output, 5);
    no_secrets(&run);
    within(&run, Duration::from_secs(30));
    case.nothing_left();
}

#[test]
fn hostile_partial_content_without_range_is_a_network_failure() {
    let case = Case::new(Some(Hostile::PartialWithoutRange));
    let run = case.pull(&[]);
    let stderr = fails(&run.output, 5);
    no_secrets(&run);
    assert!(stderr.contains("206"), "{stderr}");
    case.nothing_left();
}

/// Blob GETs redirect to storage URLs signed in their query (`?...&sig=...`); the storage drips
/// so the pull fails on a storage URL. With `-vv`, nothing prints the signature or the token.
#[test]
fn hostile_signed_redirect_urls_never_print_their_query() {
    assert!(FAKE_SAS_QUERY.contains("sig="));
    let case = Case::new(Some(Hostile::DripBlobs(Duration::from_millis(500))));
    let storage = case.registry.storage().url();
    case.registry.faults().redirect_blobs_to(&storage);
    let run = case.pull(&["--speed-limit", "100", "--speed-time", "2"]);
    let stderr = fails(&run.output, 5);
    no_secrets(&run);
    assert!(stderr.contains(&case.registry.storage().host()), "{stderr}");
    case.nothing_left();
}

/// A successful `-vv` pull through a bearer token and signed redirects prints neither.
#[test]
fn verbose_logs_print_no_token_and_no_signature() {
    let case = Case::new(None);
    let storage = case.registry.storage().url();
    case.registry.faults().redirect_blobs_to(&storage);
    let run = case.pull(&[]);
    assert!(
        run.output.status.success(),
        "{}",
        String::from_utf8_lossy(&run.output.stderr)
    );
    let stderr = no_secrets(&run);
    assert!(
        stderr.contains("DEBUG") || stderr.contains("debug"),
        "{stderr}"
    );
}

/// Pull the tag `huge`: the `v1` manifest with its first layer's size set to `size`.
fn pull_with_first_layer_size(size: u64) -> (Case, Run) {
    let case = Case::new(None);
    let (media_type, _, bytes) = case.registry.layout().manifest("v1").unwrap();
    let mut manifest: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
    assert!(manifest["layers"].is_array(), "v1 is an image manifest");
    manifest["layers"][0]["size"] = serde_json::json!(size);
    let bytes = serde_json::to_vec(&manifest).unwrap();
    case.registry
        .faults()
        .serve_manifest_override("huge", &bytes, &media_type);
    let run = case.pull_tag("huge", &[]);
    (case, run)
}

/// A layer whose size is beyond the image spec's int64 (no registry can serve it) is refused
/// as invalid content when the manifest is read: exit 6, nothing written.
#[test]
fn hostile_descriptor_size_beyond_int64_is_an_integrity_failure() {
    let (case, run) = pull_with_first_layer_size(u64::MAX);
    let stderr = fails(&run.output, 6);
    no_secrets(&run);
    assert!(stderr.contains("int64"), "{stderr}");
    case.nothing_left();
}

/// A layer whose size is within int64 but beyond the blob the registry has: the ranged reads
/// past the blob's end are answered 416, which is the manifest lying about the size: exit 6.
#[test]
fn hostile_descriptor_size_beyond_the_blob_is_an_integrity_failure() {
    let (case, run) = pull_with_first_layer_size(1 << 40);
    fails(&run.output, 6);
    no_secrets(&run);
    within(&run, Duration::from_secs(60));
    case.nothing_left();
}
