//! The fake registry serves a layout faithfully, and each fault knob does
//! what it says. Checked with reqwest (no automatic redirects) and skopeo.

use acrpull_testenv::fake_registry::{
    FakeRegistry, Faults, Listener, FAKE_SAS_QUERY, UNKNOWN_MEDIA_TYPE,
};
use acrpull_testenv::fixtures::{
    fixture_layout, sha256_digest, Layout, DOCKER_MANIFEST, OCI_INDEX, OCI_MANIFEST,
};
use acrpull_testenv::registry::{skopeo, skopeo_copy};

const REPO: &str = "team/app";

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .build()
        .unwrap()
}

fn start(fixture: &str) -> FakeRegistry {
    FakeRegistry::start(fixture_layout(fixture), REPO).unwrap()
}

/// The first layer of the `simple` fixture (gzip, a few hundred bytes).
fn first_layer() -> (String, Vec<u8>) {
    let layout = Layout::fixture("simple").unwrap();
    let main = layout.main_ref().unwrap();
    let (_, layers) = layout.image_parts(&main.digest).unwrap();
    let digest = layers[0].digest.clone();
    let bytes = layout.blob(&digest).unwrap();
    (digest, bytes)
}

async fn get(url: &str) -> reqwest::Response {
    client().get(url).send().await.unwrap()
}

fn header<'a>(response: &'a reqwest::Response, name: &str) -> &'a str {
    response
        .headers()
        .get(name)
        .unwrap_or_else(|| panic!("no {name} header"))
        .to_str()
        .unwrap()
}

#[tokio::test]
async fn serves_ping_manifests_and_tags() {
    let fake = start("simple");
    assert!(fake.url().starts_with("http://127.0.0.1:"));
    assert_eq!(fake.url(), format!("http://{}", fake.host()));
    let ping = get(&format!("{}/v2/", fake.url())).await;
    assert_eq!(ping.status(), 200);
    assert_eq!(
        header(&ping, "docker-distribution-api-version"),
        "registry/2.0"
    );

    let main = Layout::fixture("simple").unwrap().main_ref().unwrap();
    for reference in ["v1", main.digest.as_str()] {
        let url = format!("{}/v2/{REPO}/manifests/{reference}", fake.url());
        let response = get(&url).await;
        assert_eq!(response.status(), 200);
        assert_eq!(header(&response, "content-type"), OCI_MANIFEST);
        assert_eq!(header(&response, "docker-content-digest"), main.digest);
        assert_eq!(header(&response, "content-length"), main.size.to_string());
        let body = response.bytes().await.unwrap();
        assert_eq!(sha256_digest(&body), main.digest);

        let head = client().head(&url).send().await.unwrap();
        assert_eq!(head.status(), 200);
        assert_eq!(header(&head, "docker-content-digest"), main.digest);
        assert_eq!(header(&head, "content-length"), main.size.to_string());
    }

    let tags = get(&format!("{}/v2/{REPO}/tags/list", fake.url())).await;
    let tags: serde_json::Value = serde_json::from_slice(&tags.bytes().await.unwrap()).unwrap();
    assert_eq!(tags, serde_json::json!({"name": REPO, "tags": ["v1"]}));

    let missing = get(&format!("{}/v2/{REPO}/manifests/v2", fake.url())).await;
    assert_eq!(missing.status(), 404);
    let body: serde_json::Value = serde_json::from_slice(&missing.bytes().await.unwrap()).unwrap();
    assert_eq!(body["errors"][0]["code"], "MANIFEST_UNKNOWN");
    let other_repo = get(&format!("{}/v2/other/manifests/v1", fake.url())).await;
    assert_eq!(other_repo.status(), 404);
    let bad_blob = get(&format!(
        "{}/v2/{REPO}/blobs/sha256:{}",
        fake.url(),
        "0".repeat(64)
    ))
    .await;
    assert_eq!(bad_blob.status(), 404);
}

#[tokio::test]
async fn serves_index_and_docker_media_types() {
    let multi = start("multiarch");
    let response = get(&format!("{}/v2/{REPO}/manifests/v1", multi.url())).await;
    assert_eq!(header(&response, "content-type"), OCI_INDEX);
    let docker = start("dockerv2");
    let response = get(&format!("{}/v2/{REPO}/manifests/v1", docker.url())).await;
    assert_eq!(header(&response, "content-type"), DOCKER_MANIFEST);
    // Child manifests of the index are served by digest with their type.
    let layout = Layout::fixture("multiarch").unwrap();
    let index = layout.main_ref().unwrap();
    for entry in layout.index_entries(&index.digest).unwrap() {
        let url = format!("{}/v2/{REPO}/manifests/{}", multi.url(), entry.digest);
        let response = get(&url).await;
        assert_eq!(header(&response, "content-type"), OCI_MANIFEST);
    }
}

#[tokio::test]
async fn serves_blobs_with_ranges() {
    let fake = start("simple");
    let (digest, bytes) = first_layer();
    let url = format!("{}/v2/{REPO}/blobs/{digest}", fake.url());
    let full = get(&url).await;
    assert_eq!(full.status(), 200);
    assert_eq!(header(&full, "content-length"), bytes.len().to_string());
    assert_eq!(header(&full, "docker-content-digest"), digest);
    assert_eq!(full.bytes().await.unwrap(), bytes);

    let head = client().head(&url).send().await.unwrap();
    assert_eq!(head.status(), 200);
    assert_eq!(header(&head, "content-length"), bytes.len().to_string());

    let len = bytes.len();
    let partial = client()
        .get(&url)
        .header("range", "bytes=100-")
        .send()
        .await
        .unwrap();
    assert_eq!(partial.status(), 206);
    assert_eq!(
        header(&partial, "content-range"),
        format!("bytes 100-{}/{len}", len - 1)
    );
    assert_eq!(header(&partial, "content-length"), (len - 100).to_string());
    assert_eq!(partial.bytes().await.unwrap(), bytes[100..]);

    let bounded = client()
        .get(&url)
        .header("range", "bytes=10-19")
        .send()
        .await
        .unwrap();
    assert_eq!(bounded.status(), 206);
    assert_eq!(
        header(&bounded, "content-range"),
        format!("bytes 10-19/{len}")
    );
    assert_eq!(bounded.bytes().await.unwrap(), bytes[10..20]);

    let beyond = client()
        .get(&url)
        .header("range", format!("bytes={len}-"))
        .send()
        .await
        .unwrap();
    assert_eq!(beyond.status(), 416);
    assert_eq!(header(&beyond, "content-range"), format!("bytes */{len}"));

    fake.faults().ignore_range(true);
    let ignored = client()
        .get(&url)
        .header("range", "bytes=100-")
        .send()
        .await
        .unwrap();
    assert_eq!(ignored.status(), 200);
    assert_eq!(ignored.bytes().await.unwrap(), bytes);
}

#[tokio::test]
async fn corrupt_blob_changes_one_byte() {
    let (digest, bytes) = first_layer();
    let faults = Faults::default();
    faults.corrupt_blob(&digest);
    let fake = FakeRegistry::start_with(fixture_layout("simple"), REPO, faults).unwrap();
    let url = format!("{}/v2/{REPO}/blobs/{digest}", fake.url());
    let response = get(&url).await;
    assert_eq!(header(&response, "content-length"), bytes.len().to_string());
    let served = response.bytes().await.unwrap();
    assert_eq!(served.len(), bytes.len());
    let differing = served.iter().zip(&bytes).filter(|(a, b)| a != b).count();
    assert_eq!(differing, 1);
    assert_ne!(sha256_digest(&served), digest);
    fake.faults().clear();
    assert_eq!(get(&url).await.bytes().await.unwrap(), bytes);
}

#[tokio::test]
async fn manifest_faults() {
    let fake = start("simple");
    let main = Layout::fixture("simple").unwrap().main_ref().unwrap();
    let url = format!("{}/v2/{REPO}/manifests/v1", fake.url());

    fake.faults().wrong_manifest_digest_header(true);
    let response = get(&url).await;
    let announced = header(&response, "docker-content-digest").to_owned();
    let body = response.bytes().await.unwrap();
    assert_eq!(sha256_digest(&body), main.digest);
    assert_ne!(announced, main.digest);
    fake.faults().clear();

    fake.faults().oversized_manifest(5 * 1024 * 1024);
    let response = get(&url).await;
    assert_eq!(
        header(&response, "content-length"),
        (5 * 1024 * 1024).to_string()
    );
    let announced = header(&response, "docker-content-digest").to_owned();
    let body = response.bytes().await.unwrap();
    assert_eq!(body.len(), 5 * 1024 * 1024);
    assert_eq!(sha256_digest(&body), announced);
    // Still valid JSON: the manifest plus trailing whitespace.
    let _: serde_json::Value = serde_json::from_slice(&body).unwrap();
    fake.faults().clear();

    fake.faults().unknown_media_type(true);
    let response = get(&url).await;
    assert_eq!(header(&response, "content-type"), UNKNOWN_MEDIA_TYPE);
    let announced = header(&response, "docker-content-digest").to_owned();
    let body = response.bytes().await.unwrap();
    assert_eq!(sha256_digest(&body), announced);
    let manifest: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(manifest["mediaType"], UNKNOWN_MEDIA_TYPE);
    fake.faults().clear();

    let custom = br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{},"layers":[]}"#;
    fake.faults()
        .serve_manifest_override("broken", custom, OCI_MANIFEST);
    let by_tag = get(&format!("{}/v2/{REPO}/manifests/broken", fake.url())).await;
    assert_eq!(header(&by_tag, "content-type"), OCI_MANIFEST);
    assert_eq!(by_tag.bytes().await.unwrap(), &custom[..]);
    let by_digest = get(&format!(
        "{}/v2/{REPO}/manifests/{}",
        fake.url(),
        sha256_digest(custom)
    ))
    .await;
    assert_eq!(by_digest.status(), 200);
    assert_eq!(by_digest.bytes().await.unwrap(), &custom[..]);
    // Overriding an existing tag replaces it.
    fake.faults()
        .serve_manifest_override("v1", b"{}", "application/json");
    assert_eq!(get(&url).await.bytes().await.unwrap(), &b"{}"[..]);
}

#[tokio::test]
async fn blob_status_sequence_then_success() {
    let fake = start("simple");
    let (digest, bytes) = first_layer();
    fake.faults()
        .blob_status_sequence(&digest, &[500, 503, 429, 200]);
    let url = format!("{}/v2/{REPO}/blobs/{digest}", fake.url());
    let statuses = [
        get(&url).await.status().as_u16(),
        get(&url).await.status().as_u16(),
        get(&url).await.status().as_u16(),
    ];
    assert_eq!(statuses, [500, 503, 429]);
    assert_eq!(get(&url).await.bytes().await.unwrap(), bytes);
    assert_eq!(get(&url).await.bytes().await.unwrap(), bytes);
    assert_eq!(fake.log().count("GET", &digest), 5);
}

/// Reads a body until it ends or fails: (bytes received, failed).
async fn read_body(response: reqwest::Response) -> (Vec<u8>, bool) {
    let mut response = response;
    let mut out = Vec::new();
    loop {
        match response.chunk().await {
            Ok(Some(chunk)) => out.extend_from_slice(&chunk),
            Ok(None) => return (out, false),
            Err(_) => return (out, true),
        }
    }
}

#[tokio::test]
async fn drop_after_bytes_cuts_the_connection_and_allows_resume() {
    let fake = start("simple");
    let (digest, bytes) = first_layer();
    fake.faults().drop_after_bytes(&digest, 100);
    let url = format!("{}/v2/{REPO}/blobs/{digest}", fake.url());
    for _ in 0..2 {
        let response = get(&url).await;
        assert_eq!(header(&response, "content-length"), bytes.len().to_string());
        let (got, failed) = read_body(response).await;
        assert!(failed, "the body should end in an error");
        assert_eq!(got, bytes[..100]);
    }
    // Resuming at the cut gets the rest.
    let rest = client()
        .get(&url)
        .header("range", "bytes=100-")
        .send()
        .await
        .unwrap();
    assert_eq!(rest.status(), 206);
    let (got, failed) = read_body(rest).await;
    assert!(!failed);
    assert_eq!(got, bytes[100..]);
    let served: Vec<u64> = fake.requests().iter().map(|r| r.bytes_served).collect();
    assert_eq!(served, [100, 100, bytes.len() as u64 - 100]);

    fake.faults().clear();
    fake.faults().drop_after_bytes_once(&digest, 10);
    let (got, failed) = read_body(get(&url).await).await;
    assert!(failed);
    assert_eq!(got.len(), 10);
    let (got, failed) = read_body(get(&url).await).await;
    assert!(!failed);
    assert_eq!(got, bytes);
}

#[tokio::test]
async fn redirects_blobs_to_storage_that_rejects_authorization() {
    let fake = start("simple");
    let (digest, bytes) = first_layer();
    fake.faults().redirect_blobs_to(&fake.storage().url());
    let url = format!("{}/v2/{REPO}/blobs/{digest}", fake.url());
    let response = client()
        .get(&url)
        .bearer_auth("registry-token")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 307);
    let location = header(&response, "location").to_owned();
    assert_eq!(
        location,
        format!("{}/blobs/{digest}?{FAKE_SAS_QUERY}", fake.storage().url())
    );

    let leaked = client()
        .get(&location)
        .bearer_auth("registry-token")
        .send()
        .await
        .unwrap();
    assert_eq!(leaked.status(), 400);
    let clean = get(&location).await;
    assert_eq!(clean.status(), 200);
    assert_eq!(clean.bytes().await.unwrap(), bytes);
    let ranged = client()
        .get(&location)
        .header("range", "bytes=5-")
        .send()
        .await
        .unwrap();
    assert_eq!(ranged.status(), 206);
    assert_eq!(ranged.bytes().await.unwrap(), bytes[5..]);

    let seen = fake.storage().requests();
    assert_eq!(seen.len(), 3);
    assert!(seen.iter().all(|r| r.listener == Listener::Storage));
    assert!(seen[0].has_authorization());
    assert_eq!(
        seen[0].header("authorization"),
        Some("Bearer registry-token")
    );
    assert_eq!(seen[0].status, 400);
    assert!(!seen[1].has_authorization());
    assert_eq!(seen[1].bytes_served, bytes.len() as u64);
    assert_eq!(seen[2].header("range"), Some("bytes=5-"));
    // HEAD on the registry is answered there, not redirected.
    let head = client().head(&url).send().await.unwrap();
    assert_eq!(head.status(), 200);
}

#[tokio::test]
async fn require_bearer_challenges_and_accepts_the_token() {
    let fake = start("simple");
    fake.faults().require_bearer("tok-123");
    let ping = get(&format!("{}/v2/", fake.url())).await;
    assert_eq!(ping.status(), 401);
    assert_eq!(
        header(&ping, "www-authenticate"),
        format!("Bearer realm=\"{}/token\",service=\"fake\"", fake.url())
    );
    let url = format!("{}/v2/{REPO}/manifests/v1", fake.url());
    let denied = get(&url).await;
    assert_eq!(denied.status(), 401);
    assert_eq!(
        header(&denied, "www-authenticate"),
        format!(
            "Bearer realm=\"{}/token\",service=\"fake\",scope=\"repository:{REPO}:pull\"",
            fake.url()
        )
    );
    let wrong = client().get(&url).bearer_auth("nope").send().await.unwrap();
    assert_eq!(wrong.status(), 401);

    let token = get(&format!(
        "{}/token?service=fake&scope=repository:{REPO}:pull",
        fake.url()
    ))
    .await;
    let token: serde_json::Value = serde_json::from_slice(&token.bytes().await.unwrap()).unwrap();
    assert_eq!(token["token"], "tok-123");
    let allowed = client()
        .get(&url)
        .bearer_auth("tok-123")
        .send()
        .await
        .unwrap();
    assert_eq!(allowed.status(), 200);

    let log = fake.requests();
    let token_request = log.iter().find(|r| r.path.starts_with("/token")).unwrap();
    assert!(token_request
        .path
        .contains("scope=repository:team/app:pull"));
    assert_eq!(log.iter().filter(|r| r.status == 401).count(), 3);
    assert!(log.last().unwrap().has_authorization());
}

#[tokio::test]
async fn request_log_records_methods_headers_and_bytes() {
    let fake = start("simple");
    let (digest, bytes) = first_layer();
    client()
        .get(format!("{}/v2/{REPO}/blobs/{digest}", fake.url()))
        .header("accept", "*/*")
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    client()
        .head(format!("{}/v2/{REPO}/manifests/v1", fake.url()))
        .send()
        .await
        .unwrap();
    let log = fake.requests();
    assert_eq!(log.len(), 2);
    assert_eq!(log[0].method, "GET");
    assert_eq!(log[0].path, format!("/v2/{REPO}/blobs/{digest}"));
    assert_eq!(log[0].header("Accept"), Some("*/*"));
    assert_eq!(log[0].bytes_served, bytes.len() as u64);
    assert!(!log[0].has_authorization());
    assert_eq!(log[1].method, "HEAD");
    assert_eq!(log[1].bytes_served, 0);
    assert_eq!(fake.log().bytes_served(), bytes.len() as u64);
    fake.log().clear();
    assert!(fake.requests().is_empty());
}

#[test]
fn skopeo_pulls_from_the_fake_with_bearer_auth() {
    // A real client end to end: the challenge, /token, manifests and blobs
    // are all understood by containers/image.
    for fixture in ["simple", "multiarch", "dockerv2"] {
        let fake = start(fixture);
        fake.faults().require_bearer("skopeo-token");
        let main = Layout::fixture(fixture).unwrap().main_ref().unwrap();
        let src = format!("docker://{}/{REPO}:v1", fake.host());
        let raw = skopeo(&["inspect", "--raw", "--tls-verify=false", &src]).unwrap();
        assert_eq!(sha256_digest(&raw), main.digest, "{fixture}");
        let out = tempfile::tempdir().unwrap();
        let dst = format!("oci:{}:v1", out.path().display());
        let mut extra = vec!["--preserve-digests"];
        if main.media_type == OCI_INDEX {
            extra.push("--all");
        } else if main.media_type == DOCKER_MANIFEST {
            // Skopeo's oci: transport only stores OCI manifests.
            extra = vec!["--format", "oci"];
        }
        skopeo_copy(&src, &dst, &extra).unwrap();
        if main.media_type != DOCKER_MANIFEST {
            let copied = Layout::open(out.path()).unwrap();
            assert_eq!(copied.resolve_tag("v1").unwrap().digest, main.digest);
        }
        assert!(fake.requests().iter().any(|r| r.path.starts_with("/token")));
    }
}

#[tokio::test]
async fn token_endpoint_can_demand_basic_credentials() {
    let fake = start("simple");
    fake.faults()
        .require_bearer("tok-basic")
        .token_basic_auth("bob", "pw");
    let url = format!("{}/token?service=fake", fake.url());
    let anonymous = get(&url).await;
    assert_eq!(anonymous.status(), 401);
    let wrong = client()
        .get(&url)
        .basic_auth("bob", Some("no"))
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), 401);
    let right = client()
        .get(&url)
        .basic_auth("bob", Some("pw"))
        .send()
        .await
        .unwrap();
    assert_eq!(right.status(), 200);
    let body: serde_json::Value = serde_json::from_slice(&right.bytes().await.unwrap()).unwrap();
    assert_eq!(body["token"], "tok-basic");

    // skopeo logs in with --creds through the same flow.
    let src = format!("docker://{}/{REPO}:v1", fake.host());
    let denied = skopeo(&["inspect", "--raw", "--tls-verify=false", &src]);
    assert!(denied.is_err());
    let raw = skopeo(&[
        "inspect",
        "--raw",
        "--tls-verify=false",
        "--creds",
        "bob:pw",
        &src,
    ])
    .unwrap();
    let main = Layout::fixture("simple").unwrap().main_ref().unwrap();
    assert_eq!(sha256_digest(&raw), main.digest);
}
