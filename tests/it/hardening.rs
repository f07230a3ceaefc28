//! Hardening (issue 15): a hostile registry, layout or network peer gets nothing and breaks
//! nothing. Each test names the rule it proves; the hostile servers are the in-process fake
//! registry (`testenv`), a tampered copy of a layout, and two raw TCP servers below that do
//! what no HTTP framework lets a server do on purpose (hang up mid-body, record `CONNECT`).

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use acrpull_testenv::azure::{Endpoint, FakeAzure, TokenAuthRegistry};
use acrpull_testenv::fake_registry::FakeRegistry;
use acrpull_testenv::fixtures::{fixture_layout, sha256_digest, Layout};
use acrpull_testenv::registry::{Registry, RegistryOptions};

use crate::support::{acrpull, fails, make_layout, noise, ok, run, Scratch};

const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";

/// A loopback TCP server answering each connection with `handle` on its own thread, until
/// dropped.
struct RawServer {
    address: String,
    stop: Arc<AtomicBool>,
}

impl RawServer {
    fn start(handle: impl Fn(TcpStream) + Send + Sync + 'static) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind loopback");
        listener.set_nonblocking(true).expect("nonblocking");
        let address = listener.local_addr().expect("address").to_string();
        let stop = Arc::new(AtomicBool::new(false));
        let handle = Arc::new(handle);
        let stopped = stop.clone();
        std::thread::spawn(move || {
            while !stopped.load(Ordering::SeqCst) {
                match listener.accept() {
                    Ok((stream, _)) => {
                        let _ = stream.set_nonblocking(false);
                        let handle = handle.clone();
                        std::thread::spawn(move || handle(stream));
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(10)),
                }
            }
        });
        Self { address, stop }
    }
}

impl Drop for RawServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

/// One request head: the request line and the `Content-Length`.
fn read_head(reader: &mut BufReader<TcpStream>) -> Option<(String, u64)> {
    let mut request_line = String::new();
    reader.read_line(&mut request_line).ok()?;
    if request_line.is_empty() {
        return None;
    }
    let mut length = 0;
    loop {
        let mut line = String::new();
        reader.read_line(&mut line).ok()?;
        let line = line.trim_end();
        if line.is_empty() {
            return Some((request_line.trim_end().to_string(), length));
        }
        if let Some((name, value)) = line.split_once(':') {
            if name.eq_ignore_ascii_case("content-length") {
                length = value.trim().parse().unwrap_or(0);
            }
        }
    }
}

/// A registry that opens upload sessions and hangs up in the middle of every blob body: it
/// reads a little of it, closes its side (FIN), then drops the connection with the rest
/// unread (RST), so the client's next write fails with `EPIPE`.
fn hang_up_sink() -> RawServer {
    RawServer::start(|stream| {
        let mut reader = BufReader::new(stream.try_clone().expect("clone"));
        let mut writer = stream;
        while let Some((request, length)) = read_head(&mut reader) {
            let mut parts = request.split(' ');
            let (method, path) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
            let answer = match method {
                "GET" if path == "/v2/" => "200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}",
                "POST" if path.contains("/blobs/uploads/") => {
                    "202 Accepted\r\nLocation: /v2/sink/blobs/uploads/session\r\nContent-Length: 0\r\n\r\n"
                }
                "PUT" | "PATCH" if length > 0 => {
                    let mut some = vec![0u8; 16 << 10];
                    let _ = reader.read(&mut some);
                    let _ = writer.shutdown(Shutdown::Write);
                    std::thread::sleep(Duration::from_millis(200));
                    return;
                }
                _ => "404 Not Found\r\nContent-Length: 0\r\n\r\n",
            };
            let mut body = vec![0u8; usize::try_from(length).unwrap_or(0)];
            if reader.read_exact(&mut body).is_err()
                || writer
                    .write_all(format!("HTTP/1.1 {answer}").as_bytes())
                    .is_err()
            {
                return;
            }
        }
    })
}

#[test]
fn a_push_to_a_sink_that_hangs_up_mid_upload_fails_with_the_network_class() {
    let sink = hang_up_sink();
    let scratch = Scratch::new();
    let layout = scratch.dir.path().join("big");
    make_layout(&layout, &[vec![("big.bin", noise(11, 4 << 20))]]);
    let output = run(
        &scratch.home(),
        &[
            "push",
            "--retries",
            "1",
            &format!("oci:{}:v1", layout.display()),
            &format!("{}/sink/app:v1", sink.address),
        ],
        None,
    );
    // Exit 0 here was the bug: the network's EPIPE was taken for `acrpull man | head`.
    let stderr = fails(&output, 5);
    assert!(stderr.contains("error:"), "{stderr}");
}

/// `acrpull completions fish | head -1` and `acrpull man | head -1`, made deterministic: the
/// reading end of stdout is closed before acrpull starts, so its first write gets `EPIPE`.
#[test]
fn a_closed_stdout_ends_completions_and_man_quietly_without_a_panic() {
    let scratch = Scratch::new();
    for args in [
        &["completions", "fish"][..],
        &["completions", "bash"],
        &["man"],
    ] {
        let (reader, writer) = std::io::pipe().expect("pipe");
        drop(reader);
        let output = acrpull(&scratch.home())
            .args(args)
            .stdin(Stdio::null())
            .stdout(writer)
            .stderr(Stdio::piped())
            .output()
            .expect("acrpull runs");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(0), "{args:?}: {stderr}");
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
        assert!(stderr.is_empty(), "{args:?}: {stderr}");
    }
}

/// A `CONNECT` proxy that records where it was asked to go and refuses: it stands in for
/// the internet, so a helper that decided to contact `*.azurecr.io` is seen doing so without
/// a packet leaving the machine.
fn connect_recorder() -> (RawServer, Arc<Mutex<Vec<String>>>) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    let server = RawServer::start(move |stream| {
        let mut reader = BufReader::new(stream.try_clone().expect("clone"));
        let mut writer = stream;
        if let Some((request, _)) = read_head(&mut reader) {
            log.lock().unwrap().push(request);
            let _ = writer.write_all(b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n");
        }
    });
    (server, seen)
}

#[test]
fn the_credential_helper_serves_acr_and_listed_registries_only() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let (fake, registry) = runtime.block_on(async {
        let fake = FakeAzure::start().await.unwrap();
        let registry = TokenAuthRegistry::start(&fake.registry_auth_config())
            .await
            .unwrap();
        (fake, registry)
    });
    fake.set_system_identity(Some("vm"));
    fake.grant("vm", "app", &["pull"]);
    let (proxy, connects) = connect_recorder();
    let scratch = Scratch::new();
    let listed = registry.address().to_string();
    // The Docker credential-helper protocol: the server on stdin, the answer on stdout.
    let get = |server: &str, registries: &str| {
        let mut command = acrpull(&scratch.home());
        command
            .args(["credential-helper", "get"])
            .env("AZURE_POD_IDENTITY_AUTHORITY_HOST", fake.url())
            .env("ACRPULL_AZURE_REGISTRIES", registries)
            .env("HTTPS_PROXY", format!("http://{}", proxy.address))
            .env("NO_PROXY", "127.0.0.1,localhost")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = command.spawn().expect("acrpull starts");
        child
            .stdin
            .take()
            .unwrap()
            .write_all(format!("{server}\n").as_bytes())
            .unwrap();
        child.wait_with_output().expect("acrpull finishes")
    };
    let stdout = |output: &Output| String::from_utf8_lossy(&output.stdout).trim().to_string();
    let identity_requests = || fake.requests(Endpoint::Imds) + fake.requests(Endpoint::Exchange);

    // A non-ACR host: "credentials not found", and nothing is minted or sent anywhere.
    for server in [
        "evil.example",
        "https://evil.example/v2/",
        "myreg.azurecr.io.evil.example",
    ] {
        let output = get(server, &listed);
        assert_eq!(output.status.code(), Some(1), "{server}");
        assert_eq!(stdout(&output), "credentials not found in native keychain");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains("ACRPULL_AZURE_REGISTRIES"), "{stderr}");
    }
    // The loopback registry, unlisted, is not an ACR host either.
    assert_eq!(
        stdout(&get(&listed, "")),
        "credentials not found in native keychain"
    );
    assert_eq!(identity_requests(), 0, "an identity token was minted");
    assert!(
        connects.lock().unwrap().is_empty(),
        "{:?}",
        connects.lock().unwrap()
    );

    // An ACR host is served: the helper goes to https://myreg.azurecr.io (here, to the
    // recording proxy, which refuses), and fails for that reason, not with "not found".
    let output = get("myreg.azurecr.io", "");
    assert_eq!(output.status.code(), Some(1));
    assert_ne!(stdout(&output), "credentials not found in native keychain");
    let seen = connects.lock().unwrap().clone();
    assert!(!seen.is_empty(), "the ACR host was not contacted");
    assert!(
        seen.iter()
            .all(|c| c == "CONNECT myreg.azurecr.io:443 HTTP/1.1"),
        "{seen:?}"
    );

    // A listed host is served: a refresh token for the null-GUID user.
    let output = get(&listed, &format!("other.example:5000, {listed}"));
    let answer: serde_json::Value = serde_json::from_str(&ok(&output)).expect("JSON answer");
    assert_eq!(answer["Username"], "00000000-0000-0000-0000-000000000000");
    assert!(answer["Secret"].as_str().is_some_and(|s| !s.is_empty()));
    assert!(fake.requests(Endpoint::Exchange) > 0);
    drop(registry);
    drop(fake);
    drop(runtime);
}

/// A copy of the directory `from` at `to` (files writable).
fn copy_dir(from: &Path, to: &Path) {
    let status = std::process::Command::new("cp")
        .args(["-r", "--no-preserve=mode"])
        .arg(from)
        .arg(to)
        .status()
        .expect("cp runs");
    assert!(status.success());
}

/// A copy of the fixture `name` at `dir`.
fn layout_copy(name: &str, dir: &Path) -> Layout {
    copy_dir(&fixture_layout(name), dir);
    Layout::open(dir).expect("layout")
}

/// Put `bytes` into the layout as a blob; returns its digest.
fn put_blob(layout: &Layout, bytes: &[u8]) -> String {
    let digest = sha256_digest(bytes);
    let path = layout
        .root()
        .join("blobs/sha256")
        .join(digest.trim_start_matches("sha256:"));
    std::fs::write(path, bytes).expect("blob written");
    digest
}

/// Point the layout's `index.json` at one descriptor tagged `v1`.
fn tag(layout: &Layout, media_type: &str, digest: &str, size: usize) {
    let index = serde_json::json!({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [{
        "mediaType": media_type, "digest": digest, "size": size,
        "annotations": {"org.opencontainers.image.ref.name": "v1"}}]});
    std::fs::write(
        layout.root().join("index.json"),
        serde_json::to_vec(&index).unwrap(),
    )
    .unwrap();
}

/// The three ways a manifest can mean two things, built from the `simple` fixture: the image
/// manifest with a `manifests` key added; the image manifest as is (to be declared as an
/// index); an index whose entry calls the OCI image manifest a Docker one.
struct Ambiguous {
    both: Vec<u8>,
    image: Vec<u8>,
    mislabelled_index: Vec<u8>,
}

fn ambiguous_documents() -> Ambiguous {
    let simple = Layout::fixture("simple").unwrap();
    let main = simple.main_ref().unwrap();
    let image = simple.blob(&main.digest).unwrap();
    let mut both: serde_json::Value = serde_json::from_slice(&image).unwrap();
    both["manifests"] = serde_json::json!([]);
    let mislabelled_index = serde_json::json!({"schemaVersion": 2, "mediaType": OCI_INDEX,
        "manifests": [{"mediaType": DOCKER_MANIFEST, "digest": main.digest, "size": main.size,
        "platform": {"os": "linux", "architecture": "amd64"}}]});
    Ambiguous {
        both: serde_json::to_vec(&both).unwrap(),
        image,
        mislabelled_index: serde_json::to_vec(&mislabelled_index).unwrap(),
    }
}

fn pull_fails_as_ambiguous(scratch: &Scratch, image: &str, name: &str) {
    let dest = scratch.dest(name);
    let output = run(
        &scratch.home(),
        &[
            "pull",
            "--no-cache",
            "--platform",
            "linux/amd64",
            "--format",
            "oci",
            image,
            dest.to_str().unwrap(),
        ],
        None,
    );
    let stderr = fails(&output, 6);
    assert!(stderr.contains("ambiguous"), "{name}: {stderr}");
    assert!(!dest.exists(), "{name}: {} was written", dest.display());
}

#[test]
fn ambiguous_manifests_from_a_registry_are_refused_as_integrity_failures() {
    let documents = ambiguous_documents();
    let registry = FakeRegistry::start(fixture_layout("simple"), "it/app").expect("fake");
    let faults = registry.faults();
    faults
        .serve_manifest_override("both", &documents.both, OCI_MANIFEST)
        .serve_manifest_override("retyped", &documents.image, OCI_INDEX)
        .serve_manifest_override("mislabelled", &documents.mislabelled_index, OCI_INDEX);
    let scratch = Scratch::new();
    for tag in ["both", "retyped", "mislabelled"] {
        let image = format!("{}/it/app:{tag}", registry.host());
        pull_fails_as_ambiguous(&scratch, &image, tag);
    }
    // `inspect` reads through the same rule.
    let image = format!("{}/it/app:both", registry.host());
    fails(&run(&scratch.home(), &["inspect", &image], None), 6);
}

#[test]
fn ambiguous_manifests_from_a_layout_are_refused_as_integrity_failures() {
    let documents = ambiguous_documents();
    let scratch = Scratch::new();
    let both = layout_copy("simple", &scratch.dir.path().join("both"));
    let digest = put_blob(&both, &documents.both);
    tag(&both, OCI_MANIFEST, &digest, documents.both.len());
    let retyped = layout_copy("simple", &scratch.dir.path().join("retyped"));
    let digest = sha256_digest(&documents.image);
    tag(&retyped, OCI_INDEX, &digest, documents.image.len());
    let mislabelled = layout_copy("simple", &scratch.dir.path().join("mislabelled"));
    let digest = put_blob(&mislabelled, &documents.mislabelled_index);
    tag(
        &mislabelled,
        OCI_INDEX,
        &digest,
        documents.mislabelled_index.len(),
    );
    for (name, layout) in [
        ("both", both),
        ("retyped", retyped),
        ("mislabelled", mislabelled),
    ] {
        let source = format!("oci:{}:v1", layout.root().display());
        pull_fails_as_ambiguous(&scratch, &source, name);
    }
}

/// A one-layer image of `size` noise bytes made from `seed` (as `oci:<scratch>/layout:v1`),
/// and a fake registry serving a tampered copy of it: the layer's blob holds other bytes of
/// the same length, so the registry sends wrong bytes under the right digest.
struct WrongBytes {
    layout: PathBuf,
    layer: String,
    registry: FakeRegistry,
}

fn wrong_bytes(scratch: &Scratch, seed: u64, size: usize) -> WrongBytes {
    let layout = scratch.dir.path().join("layout");
    make_layout(&layout, &[vec![("payload.bin", noise(seed, size))]]);
    let image = Layout::open(&layout).unwrap();
    let (_, layers) = image
        .image_parts(&image.main_ref().unwrap().digest)
        .unwrap();
    let layer = layers[0].digest.clone();
    let tampered = scratch.dir.path().join("tampered");
    copy_dir(&layout, &tampered);
    let blob = tampered
        .join("blobs/sha256")
        .join(layer.trim_start_matches("sha256:"));
    let length = std::fs::metadata(&blob).unwrap().len();
    std::fs::write(&blob, noise(99, usize::try_from(length).unwrap())).unwrap();
    let registry = FakeRegistry::start(&tampered, "it/app").expect("fake");
    WrongBytes {
        layout,
        layer,
        registry,
    }
}

#[test]
fn a_copy_from_a_registry_that_serves_wrong_bytes_fails_and_pushes_no_manifest() {
    let scratch = Scratch::new();
    let WrongBytes {
        layer,
        registry: source,
        ..
    } = wrong_bytes(&scratch, 5, 512 << 10);
    let destination = Registry::start(RegistryOptions::anonymous()).expect("registry");
    let target = format!("{}/copied/app:v1", destination.host());
    let output = run(
        &scratch.home(),
        &["copy", &format!("{}/it/app:v1", source.host()), &target],
        None,
    );
    let stderr = fails(&output, 6);
    assert!(stderr.contains(&layer), "{stderr}");
    // Neither the manifest nor the wrong blob reached the destination.
    let inspect = acrpull_testenv::registry::skopeo(&[
        "inspect",
        "--raw",
        "--tls-verify=false",
        &format!("docker://{target}"),
    ]);
    assert!(inspect.is_err(), "a manifest was pushed: {inspect:?}");
    let mut connection = TcpStream::connect(destination.host()).expect("registry answers");
    write!(
        connection,
        "HEAD /v2/copied/app/blobs/{layer} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
        destination.host()
    )
    .unwrap();
    let mut status_line = String::new();
    BufReader::new(connection)
        .read_line(&mut status_line)
        .unwrap();
    assert!(status_line.contains(" 404 "), "{status_line}");
}

#[test]
fn a_cache_poisoned_by_wrong_bytes_and_a_stall_does_not_break_later_pulls() {
    let scratch = Scratch::new();
    // The hostile registry: wrong bytes for the layer, and the connection dies 64 KiB in.
    let WrongBytes {
        layout,
        layer,
        registry: hostile,
    } = wrong_bytes(&scratch, 6, 1 << 20);
    hostile.faults().drop_after_bytes(&layer, 64 << 10);
    // No retries: the cut connection ends the download there, as a stall would.
    let pull = |registry: &FakeRegistry, name: &str| {
        let dest = scratch.dest(name);
        let output = run(
            &scratch.home(),
            &[
                "pull",
                "--retries",
                "0",
                &format!("{}/it/app:v1", registry.host()),
                dest.to_str().unwrap(),
            ],
            None,
        );
        (output, dest)
    };
    let (output, _) = pull(&hostile, "first");
    assert_ne!(output.status.code(), Some(0));
    let partial = scratch
        .home()
        .join(".cache/acrpull/partial/sha256")
        .join(layer.trim_start_matches("sha256:"));
    assert!(
        partial.metadata().is_ok_and(|m| m.len() > 0),
        "the hostile pull left no partial download in the cache: the test proves nothing\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    // A good registry, the same cache: the wrong prefix is never applied; it fails its
    // digest, is discarded, and the layer is downloaded again.
    let good = FakeRegistry::start(&layout, "it/app").expect("fake");
    let (output, dest) = pull(&good, "second");
    ok(&output);
    assert_eq!(
        std::fs::read(dest.join("payload.bin")).unwrap(),
        noise(6, 1 << 20)
    );
    assert!(!partial.exists(), "the wrong prefix is still in the cache");
}
