//! The headline: `acrpull` with an Azure managed identity and nothing else, against the real
//! `docker-registry` configured with `auth: token`. Loopback fakes play IMDS and the ACR token
//! service (they sign the registry's JWTs); the registry verifies every token and scope.

use std::path::Path;
use std::process::Output;

use acrpull_testenv::azure::{Endpoint, FakeAzure, ManagedIdentity, TokenAuthRegistry};
use acrpull_testenv::fixtures::fixture_layout;
use acrpull_testenv::registry::skopeo_copy;

use crate::support::{acrpull, fails, ok, output_with_stdin, Scratch};

struct Env {
    fake: FakeAzure,
    registry: TokenAuthRegistry,
    scratch: Scratch,
}

/// The fakes and a token-auth registry trusting them, with the `simple` fixture pushed as
/// `app:v1` (the kubelet tests start from the same place).
pub(crate) async fn fakes_and_registry() -> (FakeAzure, TokenAuthRegistry) {
    let fake = FakeAzure::start().await.expect("fakes start");
    let registry = TokenAuthRegistry::start(&fake.registry_auth_config())
        .await
        .expect("registry starts");
    let push = fake
        .mint_registry_token("fixture-pusher", &[("app", &["pull", "push"])])
        .expect("push token");
    let source = format!("oci:{}:v1", fixture_layout("simple").display());
    let target = format!("docker://{}/app:v1", registry.address());
    skopeo_copy(
        &source,
        &target,
        &["--preserve-digests", "--dest-registry-token", &push],
    )
    .unwrap_or_else(|e| panic!("{e:#}\n{}", registry.log()));
    (fake, registry)
}

impl Env {
    /// Fakes, a token-auth registry trusting them, and the `simple` fixture pushed as `app:v1`.
    async fn start() -> Self {
        let (fake, registry) = fakes_and_registry().await;
        Self {
            fake,
            registry,
            scratch: Scratch::new(),
        }
    }

    fn image(&self) -> String {
        format!("{}/app:v1", self.registry.address())
    }

    /// Run acrpull with IMDS pointed at the fake (and nothing else from the machine).
    async fn run(&self, args: &[&str], extra_env: &[(&str, &str)]) -> Output {
        let mut command = acrpull(&self.scratch.home());
        command
            .args(args)
            .env("AZURE_POD_IDENTITY_AUTHORITY_HOST", self.fake.url())
            .stdin(std::process::Stdio::null());
        for (name, value) in extra_env {
            command.env(name, value);
        }
        tokio::task::spawn_blocking(move || command.output().expect("acrpull runs"))
            .await
            .expect("join")
    }
}

fn dest(env: &Env, name: &str) -> String {
    env.scratch.dest(name).display().to_string()
}

#[tokio::test(flavor = "multi_thread")]
async fn system_assigned_identity_pulls_a_rootfs_and_a_layout() {
    let env = Env::start().await;
    env.fake.set_system_identity(Some("vm"));
    env.fake.grant("vm", "app", &["pull"]);
    env.fake.script(Endpoint::Exchange, &[503]);
    let rootfs = dest(&env, "rootfs");
    ok(&env
        .run(&["--identity", "-v", &env.image(), &rootfs], &[])
        .await);
    assert!(
        Path::new(&rootfs).read_dir().unwrap().next().is_some(),
        "rootfs has content"
    );
    let layout = dest(&env, "layout");
    ok(&env
        .run(
            &[
                "pull",
                "--identity",
                "--format",
                "oci",
                &env.image(),
                &layout,
            ],
            &[],
        )
        .await);
    assert!(Path::new(&layout).join("index.json").is_file());
    // One exchange per process (cached refresh token), never a token sent to the fake's
    // identity endpoints.
    assert!(env.fake.requests(Endpoint::Exchange) >= 2);
    assert!(env.fake.authorization_log().iter().all(|r| r
        .authorization
        .as_deref()
        .is_none_or(|a| !a.starts_with("Bearer"))));
}

#[tokio::test(flavor = "multi_thread")]
async fn user_assigned_identity_is_chosen_by_flag_or_azure_client_id() {
    let env = Env::start().await;
    for name in ["alpha", "beta"] {
        env.fake.add_user_assigned(ManagedIdentity::named(name));
    }
    env.fake.grant("beta", "app", &["pull"]);
    // Two identities, none chosen: IMDS refuses and we say how to choose.
    let output = env
        .run(&["--identity", &env.image(), &dest(&env, "none")], &[])
        .await;
    let stderr = fails(&output, 3);
    assert!(stderr.contains("--client-id"), "{stderr}");
    ok(&env
        .run(
            &[
                "--identity",
                "--client-id",
                "beta-client-id",
                &env.image(),
                &dest(&env, "flag"),
            ],
            &[],
        )
        .await);
    ok(&env
        .run(
            &["--identity", &env.image(), &dest(&env, "env")],
            &[("AZURE_CLIENT_ID", "beta-client-id")],
        )
        .await);
    // `alpha` is assigned but has no role: the registry refuses, and we name the fix.
    let output = env
        .run(
            &[
                "--identity",
                "--client-id",
                "alpha-client-id",
                &env.image(),
                &dest(&env, "denied"),
            ],
            &[],
        )
        .await;
    let stderr = fails(&output, 3);
    assert!(
        stderr.contains("AcrPull") && stderr.contains("app"),
        "{stderr}"
    );
    assert!(!Path::new(&dest(&env, "denied")).exists());
}

#[tokio::test(flavor = "multi_thread")]
async fn tokens_that_expire_during_a_pull_are_renewed() {
    let env = Env::start().await;
    env.fake.set_system_identity(Some("vm"));
    env.fake.grant("vm", "app", &["pull"]);
    // Registry tokens already past the registry's 60 s leeway: every request is refused once,
    // so the client must evict and mint again.
    env.fake
        .set_registry_token_ttl(std::time::Duration::from_secs(1));
    env.fake.set_backdate(std::time::Duration::from_secs(120));
    let output = env
        .run(&["--identity", &env.image(), &dest(&env, "expired")], &[])
        .await;
    // Every minted token is expired, so after one renewal the pull fails cleanly with an
    // authentication error rather than looping.
    fails(&output, 3);
    env.fake.set_backdate(std::time::Duration::ZERO);
    env.fake
        .set_registry_token_ttl(std::time::Duration::from_secs(3600));
    ok(&env
        .run(&["--identity", &env.image(), &dest(&env, "fresh")], &[])
        .await);
}

#[tokio::test(flavor = "multi_thread")]
async fn token_command_output_works_as_null_guid_basic_login() {
    let env = Env::start().await;
    env.fake.set_system_identity(Some("vm"));
    env.fake.grant("vm", "app", &["pull"]);
    let output = env.run(&["token", env.registry.address()], &[]).await;
    let stdout = ok(&output);
    let json: serde_json::Value = serde_json::from_str(&stdout).expect("token JSON");
    assert_eq!(json["loginServer"], env.registry.address());
    let refresh = json["accessToken"]
        .as_str()
        .expect("accessToken")
        .to_string();
    assert!(!String::from_utf8_lossy(&output.stderr).contains(&refresh));
    // What docker/helm/oras would do with it: log in with the null GUID.
    let scratch = Scratch::new();
    let mut command = acrpull(&scratch.home());
    command.args([
        "pull",
        "--format",
        "oci",
        "--username",
        "00000000-0000-0000-0000-000000000000",
        "--password-stdin",
        &env.image(),
        &scratch.dest("basic").display().to_string(),
    ]);
    let output = output_with_stdin(command, refresh).await;
    ok(&output);
    // A scoped access token for one repository.
    let output = env
        .run(
            &[
                "token",
                env.registry.address(),
                "--scope",
                "repository:app:pull",
            ],
            &[],
        )
        .await;
    let json: serde_json::Value = serde_json::from_str(&ok(&output)).unwrap();
    assert!(json["accessToken"]
        .as_str()
        .is_some_and(|t| t.split('.').count() == 3));
}

#[tokio::test(flavor = "multi_thread")]
async fn no_identity_endpoint_means_a_clear_error_fast() {
    let env = Env::start().await;
    // Nothing listens on this loopback port: "not on Azure".
    let unused = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = unused.local_addr().unwrap().port();
    drop(unused);
    let started = std::time::Instant::now();
    let output = env
        .run(
            &["--identity", &env.image(), &dest(&env, "none")],
            &[(
                "AZURE_POD_IDENTITY_AUTHORITY_HOST",
                &format!("http://127.0.0.1:{port}"),
            )],
        )
        .await;
    let stderr = fails(&output, 3);
    assert!(
        stderr.to_lowercase().contains("managed identity"),
        "{stderr}"
    );
    assert!(started.elapsed() < std::time::Duration::from_secs(10));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_token_refused_mid_pull_is_renewed_once_and_the_pull_goes_on() {
    use acrpull_testenv::proxy::{BlobFault, FaultProxy};
    let env = Env::start().await;
    env.fake.set_system_identity(Some("vm"));
    env.fake.grant("vm", "app", &["pull"]);
    let proxy = FaultProxy::start(&env.registry.url()).expect("proxy");
    proxy
        .faults()
        .next_blob_gets([BlobFault::Pass, BlobFault::ExpiredToken]);
    let image = format!("{}/app:v1", proxy.host());
    let before = env.fake.requests(Endpoint::Token);
    ok(&env
        .run(
            &["--identity", "--jobs", "1", &image, &dest(&env, "renewed")],
            &[],
        )
        .await);
    let refused: Vec<_> = proxy
        .requests()
        .into_iter()
        .filter(|r| r.status == 401 && r.path.contains("/blobs/"))
        .collect();
    assert_eq!(refused.len(), 1, "exactly one refusal was injected");
    let retried = proxy
        .requests()
        .into_iter()
        .any(|r| r.path == refused[0].path && r.status == 200);
    assert!(retried, "the refused blob was fetched again");
    assert!(
        env.fake.requests(Endpoint::Token) > before + 1,
        "a fresh token was minted"
    );
}

/// A port nothing listens on: "not on Azure" for the identity endpoint.
fn closed_loopback_url() -> String {
    let unused = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = unused.local_addr().unwrap().port();
    drop(unused);
    format!("http://127.0.0.1:{port}")
}

/// ACR anonymous pull (spec 3.9): an ACR host (here the loopback registry, listed in
/// `ACRPULL_AZURE_REGISTRIES`) is pulled without `--identity`; with no identity endpoint, or an
/// IMDS that knows no identity for the machine, the pull goes on anonymously when the registry
/// allows it, and fails with the identity's own message when it does not.
#[tokio::test(flavor = "multi_thread")]
async fn anonymous_pull_registries_work_without_an_identity() {
    let env = Env::start().await;
    let listed = [(
        "ACRPULL_AZURE_REGISTRIES",
        env.registry.address().to_string(),
    )];
    let no_endpoint = closed_loopback_url();
    let mut without_endpoint: Vec<(&str, &str)> =
        listed.iter().map(|(k, v)| (*k, v.as_str())).collect();
    without_endpoint.push(("AZURE_POD_IDENTITY_AUTHORITY_HOST", &no_endpoint));
    let with_imds: Vec<(&str, &str)> = listed.iter().map(|(k, v)| (*k, v.as_str())).collect();

    // Anonymous pull disabled: the identity failure is the error, with its hint.
    let output = env
        .run(&[&env.image(), &dest(&env, "refused")], &without_endpoint)
        .await;
    let stderr = fails(&output, 3);
    assert!(stderr.contains("managed identity"), "{stderr}");
    assert!(!Path::new(&dest(&env, "refused")).exists());

    env.fake.set_anonymous_pull(true);
    let rootfs = dest(&env, "no-endpoint");
    ok(&env.run(&[&env.image(), &rootfs], &without_endpoint).await);
    assert!(Path::new(&rootfs).read_dir().unwrap().next().is_some());
    // IMDS answers, but the machine has no identity: anonymous as well.
    let rootfs = dest(&env, "no-identity");
    ok(&env.run(&[&env.image(), &rootfs], &with_imds).await);
    assert!(env.fake.requests(Endpoint::Imds) >= 1);
    assert_eq!(
        env.fake.requests(Endpoint::Exchange),
        0,
        "no AAD token existed"
    );
    // An identity, when there is one, is still used (and needs its role).
    env.fake.set_system_identity(Some("vm"));
    env.fake.grant("vm", "app", &["pull"]);
    ok(&env
        .run(&[&env.image(), &dest(&env, "identity")], &with_imds)
        .await);
    assert!(env.fake.requests(Endpoint::Exchange) >= 1);
}

/// ACR has two permission models: RBAC (AcrPull) and, on registries whose role assignment mode
/// is "RBAC Registry + ABAC Repository Permissions", the Container Registry Repository Reader
/// role. A refusal names both, whether it is an `insufficient_scope` challenge or a `403`.
#[tokio::test(flavor = "multi_thread")]
async fn permission_refusals_name_acrpull_and_the_abac_repository_reader_role() {
    use acrpull_testenv::proxy::{BlobFault, FaultProxy};
    let env = Env::start().await;
    env.fake.set_system_identity(Some("vm"));
    let output = env
        .run(&["--identity", &env.image(), &dest(&env, "scope")], &[])
        .await;
    let stderr = fails(&output, 3);
    for role in ["AcrPull", "Container Registry Repository Reader", "ABAC"] {
        assert!(stderr.contains(role), "{role}: {stderr}");
    }

    env.fake.grant("vm", "app", &["pull"]);
    let proxy = FaultProxy::start(&env.registry.url()).expect("proxy");
    proxy
        .faults()
        .next_blob_gets([BlobFault::Status(403, None)]);
    let image = format!("{}/app:v1", proxy.host());
    let output = env
        .run(
            &["--identity", "--jobs", "1", &image, &dest(&env, "denied")],
            &[],
        )
        .await;
    let stderr = fails(&output, 3);
    for role in ["AcrPull", "Container Registry Repository Reader"] {
        assert!(stderr.contains(role), "{role}: {stderr}");
    }
    assert!(!Path::new(&dest(&env, "denied")).exists());
}

/// Registries with dedicated data endpoints redirect blob GETs to
/// `<registry>.<region>.data.azurecr.io`, another host (and an ACR-looking name). The proxy's
/// storage listener plays that host: it refuses any `Authorization`, and the pull must follow
/// the redirect without the registry token.
#[tokio::test(flavor = "multi_thread")]
async fn blob_redirects_to_a_dedicated_data_endpoint_carry_no_token() {
    use acrpull_testenv::proxy::FaultProxy;
    let env = Env::start().await;
    env.fake.set_system_identity(Some("vm"));
    env.fake.grant("vm", "app", &["pull"]);
    let storage_token = env
        .fake
        .mint_registry_token("data-endpoint", &[("app", &["pull"])])
        .expect("storage token");
    let proxy =
        FaultProxy::start_with(&env.registry.url(), Some(format!("Bearer {storage_token}")))
            .expect("proxy");
    proxy.faults().redirect_blobs(true);
    let image = format!("{}/app:v1", proxy.host());
    ok(&env
        .run(&["--identity", &image, &dest(&env, "rootfs")], &[])
        .await);
    let requests = proxy.requests();
    let data: Vec<_> = requests
        .iter()
        .filter(|r| r.listener == "storage")
        .collect();
    assert!(!data.is_empty(), "blobs came from the data endpoint");
    assert!(
        data.iter().all(|r| !r.authorization && r.status == 200),
        "{data:?}"
    );
    assert!(
        requests
            .iter()
            .any(|r| r.listener == "registry" && r.authorization),
        "the registry itself got the token"
    );
}
