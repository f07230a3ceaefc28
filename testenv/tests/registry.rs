//! The real docker-registry harness: start/stop, auth modes, seeding.

use std::path::Path;

use acrpull_testenv::fixtures::{sha256_digest, Layout, DOCKER_MANIFEST, FIXTURE_NAMES};
use acrpull_testenv::registry::{seed, skopeo, skopeo_copy, Registry, RegistryOptions};

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .build()
        .unwrap()
}

fn alive(pid: u32) -> bool {
    // A reaped process has no /proc entry; a zombie would show state Z.
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|stat| !stat.contains(") Z "))
        .unwrap_or(false)
}

const ACCEPT: &str = "application/vnd.oci.image.manifest.v1+json, \
    application/vnd.oci.image.index.v1+json, \
    application/vnd.docker.distribution.manifest.v2+json, \
    application/vnd.docker.distribution.manifest.list.v2+json";

#[tokio::test]
async fn anonymous_registry_answers_and_dies_on_drop() {
    let registry = Registry::start(RegistryOptions::anonymous()).unwrap();
    assert_eq!(registry.host(), format!("127.0.0.1:{}", registry.port()));
    assert_eq!(registry.url(), format!("http://{}", registry.host()));
    let response = client()
        .get(format!("{}/v2/", registry.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.headers()["docker-distribution-api-version"],
        "registry/2.0"
    );
    let pid = registry.pid();
    let dir = registry.dir().to_owned();
    assert!(alive(pid));
    drop(registry);
    assert!(!alive(pid), "registry {pid} survived its drop");
    assert!(!dir.exists());
}

#[test]
fn registry_is_killed_when_a_test_panics() {
    let (tx, rx) = std::sync::mpsc::channel();
    let result = std::thread::spawn(move || {
        let registry = Registry::start(RegistryOptions::anonymous()).unwrap();
        tx.send(registry.pid()).unwrap();
        panic!("test failure while a registry runs");
    })
    .join();
    assert!(result.is_err());
    let pid = rx.recv().unwrap();
    assert!(!alive(pid), "registry {pid} survived a panic");
}

#[tokio::test]
async fn htpasswd_registry_requires_credentials() {
    let registry =
        Registry::start(RegistryOptions::anonymous().htpasswd("alice", "s3cret")).unwrap();
    assert_eq!(registry.credentials(), Some(("alice", "s3cret")));
    let url = format!("{}/v2/", registry.url());
    let response = client().get(&url).send().await.unwrap();
    assert_eq!(response.status(), 401);
    assert_eq!(
        response.headers()["www-authenticate"],
        "Basic realm=\"acrpull-testenv\""
    );
    let wrong = client()
        .get(&url)
        .basic_auth("alice", Some("wrong"))
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), 401);
    let right = client()
        .get(&url)
        .basic_auth("alice", Some("s3cret"))
        .send()
        .await
        .unwrap();
    assert_eq!(right.status(), 200);

    // seed() passes the credentials itself; skopeo needs them to read back.
    let digest = seed(&registry, "simple", "team/app:v1").unwrap();
    let src = format!("docker://{}/team/app:v1", registry.host());
    let anonymous = skopeo(&["inspect", "--raw", "--tls-verify=false", &src]);
    assert!(anonymous.is_err());
    let message = format!("{:#}", anonymous.unwrap_err());
    assert!(
        message.contains("unauthorized") || message.contains("401"),
        "{message}"
    );
    let raw = skopeo(&[
        "inspect",
        "--raw",
        "--tls-verify=false",
        "--creds",
        "alice:s3cret",
        &src,
    ])
    .unwrap();
    assert_eq!(sha256_digest(&raw), digest);
    let out = tempfile::tempdir().unwrap();
    let dst = format!("oci:{}:v1", out.path().display());
    skopeo_copy(&src, &dst, &["--src-creds", "alice:s3cret"]).unwrap();
    let copied = Layout::open(out.path()).unwrap();
    assert_eq!(copied.resolve_tag("v1").unwrap().digest, digest);
}

#[tokio::test]
async fn every_fixture_seeds_with_its_layout_digest() {
    let registry = Registry::start(RegistryOptions::anonymous()).unwrap();
    for name in FIXTURE_NAMES {
        let target = format!("fixtures/{name}:v1");
        let digest = seed(&registry, name, &target).unwrap();
        let layout = Layout::fixture(name).unwrap();
        let main = layout.main_ref().unwrap();
        assert_eq!(digest, main.digest, "{name}");
        let src = format!("docker://{}/{target}", registry.host());
        let raw = skopeo(&["inspect", "--raw", "--tls-verify=false", &src]).unwrap();
        assert_eq!(sha256_digest(&raw), main.digest, "{name}");

        // The registry serves the layout's media type and digest.
        let response = client()
            .get(format!(
                "{}/v2/fixtures/{name}/manifests/v1",
                registry.url()
            ))
            .header("accept", ACCEPT)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "{name}");
        assert_eq!(response.headers()["content-type"], main.media_type.as_str());
        assert_eq!(
            response.headers()["docker-content-digest"],
            main.digest.as_str()
        );
        // Every blob reachable from it is there, by digest.
        for digest in layout.reachable(&main.digest).unwrap() {
            let (kind, accept) = if layout
                .manifest(&digest)
                .is_ok_and(|(t, _, _)| t.contains("manifest") || t.contains("index"))
            {
                ("manifests", ACCEPT)
            } else {
                ("blobs", "*/*")
            };
            let response = client()
                .head(format!(
                    "{}/v2/fixtures/{name}/{kind}/{digest}",
                    registry.url()
                ))
                .header("accept", accept)
                .send()
                .await
                .unwrap();
            assert_eq!(response.status(), 200, "{name} {kind} {digest}");
        }
    }
}

#[tokio::test]
async fn dockerv2_is_served_as_docker_schema2() {
    let registry = Registry::start(RegistryOptions::anonymous()).unwrap();
    let digest = seed(&registry, "dockerv2", "legacy/app:v1").unwrap();
    let response = client()
        .get(format!("{}/v2/legacy/app/manifests/v1", registry.url()))
        .header("accept", DOCKER_MANIFEST)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], DOCKER_MANIFEST);
    assert_eq!(response.headers()["docker-content-digest"], digest.as_str());
    let body = response.bytes().await.unwrap();
    assert_eq!(sha256_digest(&body), digest);
    let manifest: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(manifest["mediaType"], DOCKER_MANIFEST);
}

#[tokio::test]
async fn token_auth_registry_challenges_with_the_given_realm() {
    let dir = tempfile::tempdir().unwrap();
    let bundle = dir.path().join("issuer.pem");
    let issuer = rcgen::generate_simple_self_signed(vec!["acr-token-issuer".into()]).unwrap();
    std::fs::write(&bundle, issuer.cert.pem()).unwrap();
    let registry = Registry::start(RegistryOptions::anonymous().token_auth(
        "http://127.0.0.1:9/oauth2/token",
        "fake.azurecr.io",
        "fake-issuer",
        &bundle,
    ))
    .unwrap();
    let response = client()
        .get(format!("{}/v2/", registry.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);
    assert_eq!(
        response.headers()["www-authenticate"],
        "Bearer realm=\"http://127.0.0.1:9/oauth2/token\",service=\"fake.azurecr.io\""
    );
    let scoped = client()
        .get(format!("{}/v2/some/repo/manifests/v1", registry.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(scoped.status(), 401);
    let challenge = scoped.headers()["www-authenticate"].to_str().unwrap();
    assert!(
        challenge.contains("scope=\"repository:some/repo:pull\""),
        "{challenge}"
    );
}

#[tokio::test]
async fn proxy_registry_pulls_through_from_an_upstream() {
    let upstream = Registry::start(RegistryOptions::anonymous()).unwrap();
    let digest = seed(&upstream, "simple", "library/app:v1").unwrap();
    let cache = Registry::start(RegistryOptions::anonymous().proxy(&upstream.url())).unwrap();
    let src = format!("docker://{}/library/app:v1", cache.host());
    let raw = skopeo(&["inspect", "--raw", "--tls-verify=false", &src]).unwrap();
    assert_eq!(sha256_digest(&raw), digest);
    let out = tempfile::tempdir().unwrap();
    skopeo_copy(&src, &format!("oci:{}:v1", out.path().display()), &[]).unwrap();
    assert_eq!(
        Layout::open(out.path())
            .unwrap()
            .resolve_tag("v1")
            .unwrap()
            .digest,
        digest
    );
}

#[test]
fn a_broken_config_fails_fast_with_the_log() {
    // A cert bundle that does not exist makes the token auth fail to load.
    let error = Registry::start(RegistryOptions::anonymous().token_auth(
        "http://127.0.0.1:9/token",
        "svc",
        "iss",
        Path::new("/nonexistent/acrpull-bundle.pem"),
    ))
    .unwrap_err();
    let message = format!("{error:#}");
    assert!(message.contains("exited"), "{message}");
    assert!(message.contains("acrpull-bundle.pem"), "{message}");
}

#[test]
fn skopeo_errors_carry_stderr() {
    let error = skopeo_copy(
        "oci:/nonexistent/layout:v1",
        "oci:/nonexistent/other:v1",
        &[],
    )
    .unwrap_err();
    let message = format!("{error:#}");
    assert!(message.contains("nonexistent"), "{message}");
}

/// Helper run in a child process by
/// `registry_dies_with_a_killed_test_process`: starts a registry, prints its
/// pid and waits to be killed.
#[test]
#[ignore = "helper, run by registry_dies_with_a_killed_test_process"]
fn helper_start_registry_and_hang() {
    let registry = Registry::start(RegistryOptions::anonymous()).unwrap();
    println!("REGISTRY_PID={}", registry.pid());
    std::thread::sleep(std::time::Duration::from_secs(60));
}

#[test]
fn registry_dies_with_a_killed_test_process() {
    use std::io::{BufRead as _, BufReader};
    let mut child = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--ignored",
            "--exact",
            "helper_start_registry_and_hang",
            "--nocapture",
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let stdout = BufReader::new(child.stdout.take().unwrap());
    let pid: u32 = stdout
        .lines()
        .map_while(Result::ok)
        .find_map(|line| {
            line.strip_prefix("REGISTRY_PID=")
                .map(|p| p.parse().unwrap())
        })
        .expect("the helper printed no pid");
    assert!(alive(pid));
    child.kill().unwrap(); // SIGKILL: no unwinding, no Drop
    child.wait().unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while alive(pid) && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert!(
        !alive(pid),
        "registry {pid} outlived its killed test process"
    );
}
