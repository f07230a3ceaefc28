//! `acrpull kubelet-credential-provider` (and the binary run as `acrpull-credential-provider`):
//! requests written the way the kubelet writes them, answers checked against the kubelet's API
//! types, the password used for a real pull from the `docker-registry` behind the fake ACR
//! token service, with the node's managed identity from the fake IMDS.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Output;

use acrpull_testenv::azure::{Endpoint, FakeAzure, TokenAuthRegistry};
use serde::Deserialize;

use crate::support::{acrpull, acrpull_as, fails, ok, output_with_stdin, Scratch};

/// The kubelet's `CredentialProviderResponse` (kubernetes `pkg/kubelet/apis/credentialprovider/v1`
/// `types.go`): `cacheKeyType` is one of three values, `cacheDuration` an optional
/// `metav1.Duration` (a Go duration string), `auth` a required map of match-image keys to
/// `AuthConfig`. Unknown fields are refused, as the kubelet's strict decoding would.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CredentialProviderResponse {
    #[serde(rename = "apiVersion")]
    api_version: String,
    kind: String,
    #[serde(rename = "cacheKeyType")]
    cache_key_type: PluginCacheKeyType,
    #[serde(rename = "cacheDuration", default)]
    cache_duration: Option<String>,
    auth: BTreeMap<String, AuthConfig>,
}

#[derive(Debug, Deserialize, PartialEq, Eq)]
enum PluginCacheKeyType {
    Image,
    Registry,
    Global,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AuthConfig {
    username: String,
    password: String,
}

const V1: &str = "credentialprovider.kubelet.k8s.io/v1";
const V1BETA1: &str = "credentialprovider.kubelet.k8s.io/v1beta1";
const NULL_GUID: &str = "00000000-0000-0000-0000-000000000000";

/// A request as the kubelet's JSON serializer writes it (one object, a trailing newline).
fn request(api_version: &str, image: &str) -> String {
    format!(
        "{}\n",
        serde_json::json!({"kind": "CredentialProviderRequest", "apiVersion": api_version, "image": image})
    )
}

/// Seconds of a Go duration string (`2h45m0s`, `59m30s`, `0s`).
fn go_seconds(text: &str) -> u64 {
    let mut total = 0;
    let mut number = String::new();
    for character in text.chars() {
        if character.is_ascii_digit() {
            number.push(character);
            continue;
        }
        let value: u64 = number.parse().expect("a number before each unit");
        number.clear();
        total += value
            * match character {
                'h' => 3600,
                'm' => 60,
                's' => 1,
                other => panic!("unit {other} in {text}"),
            };
    }
    assert!(number.is_empty(), "{text} ends in a unit");
    total
}

struct Node {
    fake: FakeAzure,
    registry: TokenAuthRegistry,
    scratch: Scratch,
}

impl Node {
    /// A node with a system-assigned identity allowed to pull `app` from the token registry.
    async fn start() -> Self {
        let (fake, registry) = crate::azure::fakes_and_registry().await;
        fake.set_system_identity(Some("node"));
        fake.grant("node", "app", &["pull"]);
        Self {
            fake,
            registry,
            scratch: Scratch::new(),
        }
    }

    /// `acrpull-credential-provider`, a symlink to the built binary, as the kubelet's
    /// `--image-credential-provider-bin-dir` holds it.
    fn provider_binary(&self) -> PathBuf {
        let bin = self.scratch.dir.path().join("bin");
        std::fs::create_dir_all(&bin).unwrap();
        let link = bin.join("acrpull-credential-provider");
        if !link.exists() {
            std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_acrpull"), &link).unwrap();
        }
        link
    }

    /// Run `program args` with `stdin`, the fake IMDS and the registry listed.
    async fn run(&self, program: Option<&Path>, args: &[&str], stdin: String) -> Output {
        let mut command = match program {
            Some(program) => acrpull_as(program, &self.scratch.home()),
            None => acrpull(&self.scratch.home()),
        };
        command
            .args(args)
            .env("AZURE_POD_IDENTITY_AUTHORITY_HOST", self.fake.url())
            .env("ACRPULL_AZURE_REGISTRIES", self.registry.address());
        output_with_stdin(command, stdin).await
    }
}

fn parse(output: &Output) -> CredentialProviderResponse {
    serde_json::from_str(&ok(output)).expect("a CredentialProviderResponse")
}

#[tokio::test(flavor = "multi_thread")]
async fn kubelet_provider_answers_acr_hosts_with_the_node_identity() {
    let node = Node::start().await;
    let image = format!("{}/app:v1", node.registry.address());
    let binary = node.provider_binary();
    let output = node.run(Some(&binary), &[], request(V1, &image)).await;
    let response = parse(&output);
    assert_eq!(response.api_version, V1);
    assert_eq!(response.kind, "CredentialProviderResponse");
    assert_eq!(response.cache_key_type, PluginCacheKeyType::Registry);
    // The fake's refresh tokens live 3 h; the kubelet keeps them 15 min less.
    let cached = go_seconds(response.cache_duration.as_deref().expect("cacheDuration"));
    let expected = 3 * 3600 - 15 * 60;
    assert!(
        cached <= expected && cached + 120 >= expected,
        "{cached} s, expected about {expected} s"
    );
    assert_eq!(response.auth.len(), 1);
    let auth = &response.auth[node.registry.address()];
    assert_eq!(auth.username, NULL_GUID);
    assert!(!String::from_utf8_lossy(&output.stderr).contains(&auth.password));
    assert_eq!(
        node.fake
            .exchange_log()
            .last()
            .unwrap()
            .principal
            .as_deref(),
        Some("node")
    );

    // What the kubelet hands the container runtime works for a real pull.
    let password = auth.password.clone();
    let dest = node.scratch.dest("pulled").display().to_string();
    let mut command = acrpull(&node.scratch.home());
    command.args([
        "pull",
        "--format",
        "oci",
        "--username",
        NULL_GUID,
        "--password-stdin",
        &image,
        &dest,
    ]);
    let pulled = output_with_stdin(command, password).await;
    ok(&pulled);
    assert!(Path::new(&dest).join("index.json").is_file());

    // The subcommand, with the v1beta1 API of Kubernetes 1.24/1.25.
    let output = node
        .run(
            None,
            &["kubelet-credential-provider"],
            request(V1BETA1, &image),
        )
        .await;
    let response = parse(&output);
    assert_eq!(response.api_version, V1BETA1);
    assert_eq!(response.auth[node.registry.address()].username, NULL_GUID);
}

#[tokio::test(flavor = "multi_thread")]
async fn kubelet_provider_gives_other_registries_no_credentials() {
    let node = Node::start().await;
    for image in [
        "nginx:1.27",
        "docker.io/library/nginx@sha256:0000000000000000000000000000000000000000000000000000000000000000",
        "myregistry.azurecr.io.evil.example/app:v1",
        "127.0.0.1:1/app:v1",
    ] {
        let output = node
            .run(None, &["kubelet-credential-provider"], request(V1, image))
            .await;
        let response = parse(&output);
        assert!(response.auth.is_empty(), "{image}: {response:?}");
        assert_eq!(response.cache_key_type, PluginCacheKeyType::Registry);
    }
    assert_eq!(
        node.fake.requests(Endpoint::Imds),
        0,
        "no identity token was minted"
    );
    // Newer kubelets add a service account token: ignored, never echoed.
    let with_token = format!(
        "{}\n",
        serde_json::json!({"kind": "CredentialProviderRequest", "apiVersion": V1,
            "image": "docker.io/library/nginx:1.27", "serviceAccountToken": "sa-token-secret",
            "serviceAccountAnnotations": {"a": "b"}})
    );
    let output = node
        .run(None, &["kubelet-credential-provider"], with_token)
        .await;
    assert!(parse(&output).auth.is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn kubelet_provider_refuses_an_unknown_api_version() {
    let node = Node::start().await;
    let image = format!("{}/app:v1", node.registry.address());
    for (input, expected) in [
        (
            request("credentialprovider.kubelet.k8s.io/v2", &image),
            "unsupported apiVersion",
        ),
        (
            request("credentialprovider.kubelet.k8s.io/v1alpha0", &image),
            "unsupported apiVersion",
        ),
        (
            "{\"serviceAccountToken\":\"sa-token-secret\",".to_string(),
            "CredentialProviderRequest",
        ),
    ] {
        let output = node
            .run(None, &["kubelet-credential-provider"], input)
            .await;
        let stderr = fails(&output, 2);
        assert!(stderr.contains(expected), "{stderr}");
        assert!(!stderr.contains("sa-token-secret"), "{stderr}");
        assert!(output.stdout.is_empty(), "no response on stdout");
    }
    assert_eq!(node.fake.requests(Endpoint::Imds), 0);
}
