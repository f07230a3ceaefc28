//! The managed identity sources beyond IMDS and App Service against their fakes: the Azure Arc
//! agent's key-file challenge (and every key file it must refuse), Azure ML, Cloud Shell, and
//! Service Fabric over TLS pinned to its certificate thumbprint.

use std::path::{Path, PathBuf};

use acrpull_testenv::azure::{ArcChallenge, Endpoint, FakeAzure, ManagedIdentity};

use super::{fast_policy, principal_of, refused_secret};
use crate::azure::{
    default_chain, AadTokenSource, ArcSource, AzureMlSource, CloudShellSource, Env, Error,
    ServiceFabricSource, UserAssignedId, ACR_AUDIENCE,
};

fn arc_env(fake: &FakeAzure) -> Env {
    Env::from_pairs([
        ("IDENTITY_ENDPOINT", fake.arc_endpoint()),
        ("IMDS_ENDPOINT", fake.url()),
    ])
}

fn arc_source(fake: &FakeAzure) -> ArcSource {
    ArcSource::with_options(
        &arc_env(fake),
        None,
        ACR_AUDIENCE,
        fast_policy(),
        fake.arc_token_directory(),
    )
    .expect("an Arc source")
}

/// The Authorization headers the Arc fake received, in order.
fn arc_authorizations(fake: &FakeAzure) -> Vec<Option<String>> {
    fake.authorization_log()
        .into_iter()
        .filter(|record| record.path.starts_with("/arc/"))
        .map(|record| record.authorization)
        .collect()
}

#[tokio::test]
async fn arc_challenge_flow_reads_the_key_file_and_gets_a_token() {
    let fake = FakeAzure::start().await.unwrap();
    fake.set_system_identity(Some("arc-server"));
    let source = arc_source(&fake);
    assert!(
        source.describe().contains("Azure Arc"),
        "{}",
        source.describe()
    );
    assert_eq!(principal_of(&fake, &source).await, "arc-server");
    let sent = arc_authorizations(&fake);
    assert_eq!(sent.len(), 2, "{sent:?}");
    assert_eq!(sent[0], None, "the first request carries no key");
    assert!(
        sent[1]
            .as_deref()
            .is_some_and(|value| value.starts_with("Basic ")),
        "{sent:?}"
    );
    // Cached: no second challenge.
    source.aad_token().await.unwrap();
    assert_eq!(fake.requests(Endpoint::Arc), 2);
}

#[tokio::test]
async fn arc_is_chosen_by_identity_endpoint_and_imds_endpoint() {
    let fake = FakeAzure::start().await.unwrap();
    let source = default_chain(&arc_env(&fake), None, ACR_AUDIENCE).unwrap();
    assert!(
        source.describe().starts_with("managed identity (Azure Arc"),
        "{}",
        source.describe()
    );
}

/// Run the Arc flow against a challenge naming `path`; the error, and whether the second
/// request (the one carrying a key) was ever sent.
async fn arc_refusal(path: &Path, token_directory: PathBuf) -> (Error, usize) {
    let fake = FakeAzure::start().await.unwrap();
    fake.set_system_identity(Some("arc-server"));
    fake.set_arc_challenge(ArcChallenge::Path(path.to_path_buf()));
    let source = ArcSource::with_options(
        &arc_env(&fake),
        None,
        ACR_AUDIENCE,
        fast_policy(),
        token_directory,
    )
    .unwrap();
    let error = source
        .aad_token()
        .await
        .expect_err("the key file is refused");
    (error, fake.requests(Endpoint::Arc))
}

fn assert_refused(error: &Error, requests: usize, reason: &str) {
    assert!(matches!(error, Error::ArcKeyFile { .. }), "{error:?}");
    let message = error.to_string();
    assert!(message.contains(reason), "{message}");
    assert!(!message.contains("secret-in-the-file"), "{message}");
    assert_eq!(requests, 1, "nothing was sent back to the agent");
}

#[tokio::test]
async fn arc_refuses_a_key_file_outside_the_token_directory() {
    let tokens = tempfile::tempdir().unwrap();
    let elsewhere = tempfile::tempdir().unwrap();
    let outside = elsewhere.path().join("stolen.key");
    std::fs::write(&outside, "secret-in-the-file").unwrap();
    let (error, requests) = arc_refusal(&outside, tokens.path().to_path_buf()).await;
    assert_refused(&error, requests, "token directory");
    // `..` that leads back into the directory is refused too: the path must name it plainly.
    let name = tokens.path().file_name().unwrap().to_str().unwrap();
    std::fs::write(tokens.path().join("real.key"), "secret-in-the-file").unwrap();
    let dotted = tokens.path().join("..").join(name).join("real.key");
    let (error, requests) = arc_refusal(&dotted, tokens.path().to_path_buf()).await;
    assert_refused(&error, requests, "token directory");
    // A relative path, even one naming a file that exists, is refused.
    let (error, requests) = arc_refusal(Path::new("real.key"), tokens.path().to_path_buf()).await;
    assert_refused(&error, requests, "token directory");
}

#[tokio::test]
async fn arc_refuses_a_symlinked_key_file() {
    let tokens = tempfile::tempdir().unwrap();
    let elsewhere = tempfile::tempdir().unwrap();
    let target = elsewhere.path().join("target.key");
    std::fs::write(&target, "secret-in-the-file").unwrap();
    let link = tokens.path().join("link.key");
    std::os::unix::fs::symlink(&target, &link).unwrap();
    let (error, requests) = arc_refusal(&link, tokens.path().to_path_buf()).await;
    assert_refused(&error, requests, "symbolic link");
}

#[tokio::test]
async fn arc_refuses_a_key_file_of_one_mebibyte() {
    let tokens = tempfile::tempdir().unwrap();
    let big = tokens.path().join("big.key");
    let mut contents = b"secret-in-the-file".to_vec();
    contents.resize(1 << 20, b'k');
    std::fs::write(&big, contents).unwrap();
    let (error, requests) = arc_refusal(&big, tokens.path().to_path_buf()).await;
    assert_refused(&error, requests, "1048576 bytes");
    // 4096 bytes is still a key (the SDKs' limit is inclusive).
    let limit = tokens.path().join("limit.key");
    std::fs::write(&limit, "k".repeat(4096)).unwrap();
    assert!(crate::azure::arc::read_key_file(&limit, tokens.path()).is_ok());
}

#[tokio::test]
async fn arc_refuses_other_hostile_challenges() {
    let tokens = tempfile::tempdir().unwrap();
    let wrong_extension = tokens.path().join("key.txt");
    std::fs::write(&wrong_extension, "secret-in-the-file").unwrap();
    let (error, requests) = arc_refusal(&wrong_extension, tokens.path().to_path_buf()).await;
    assert_refused(&error, requests, "`.key`");

    let directory = tokens.path().join("dir.key");
    std::fs::create_dir(&directory).unwrap();
    let (error, requests) = arc_refusal(&directory, tokens.path().to_path_buf()).await;
    assert_refused(&error, requests, "not a regular file");

    // A FIFO would block a naive reader forever.
    let fifo = tokens.path().join("fifo.key");
    assert!(std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap()
        .success());
    let (error, requests) = arc_refusal(&fifo, tokens.path().to_path_buf()).await;
    assert_refused(&error, requests, "not a regular file");

    let missing = tokens.path().join("missing.key");
    let (error, requests) = arc_refusal(&missing, tokens.path().to_path_buf()).await;
    assert_refused(&error, requests, "cannot inspect");

    let fake = FakeAzure::start().await.unwrap();
    fake.set_arc_challenge(ArcChallenge::Missing);
    let error = arc_source(&fake).aad_token().await.unwrap_err();
    assert!(matches!(error, Error::InvalidResponse { .. }), "{error:?}");
    assert!(error.to_string().contains("Basic realm"), "{error}");
}

#[tokio::test]
async fn arc_refuses_user_assigned_identities() {
    let fake = FakeAzure::start().await.unwrap();
    let error = default_chain(
        &arc_env(&fake),
        Some(UserAssignedId::ClientId("c".into())),
        ACR_AUDIENCE,
    )
    .unwrap_err();
    assert!(error.to_string().contains("Azure Arc"), "{error}");
    assert_eq!(fake.requests(Endpoint::Arc), 0);
}

fn azure_ml_env(fake: &FakeAzure, secret: &str) -> Env {
    Env::from_pairs([
        ("MSI_ENDPOINT", fake.azure_ml_endpoint()),
        ("MSI_SECRET", secret.to_string()),
    ])
}

#[tokio::test]
async fn azure_ml_system_and_client_id() {
    let fake = FakeAzure::start().await.unwrap();
    fake.set_system_identity(Some("workspace"));
    let user = ManagedIdentity::named("compute-uami");
    fake.add_user_assigned(user.clone());
    let env = azure_ml_env(&fake, &fake.msi_secret());
    let source = default_chain(&env, None, ACR_AUDIENCE).unwrap();
    assert!(
        source.describe().contains("Azure ML"),
        "{}",
        source.describe()
    );
    assert_eq!(principal_of(&fake, source.as_ref()).await, "workspace");
    let source = AzureMlSource::new(
        &env,
        Some(UserAssignedId::ClientId(user.client_id.clone())),
        ACR_AUDIENCE,
    )
    .unwrap();
    assert_eq!(principal_of(&fake, &source).await, "compute-uami");
    let source = AzureMlSource::with_policy(
        &env,
        Some(UserAssignedId::ClientId("unknown".into())),
        ACR_AUDIENCE,
        fast_policy(),
    )
    .unwrap();
    let error = source.aad_token().await.unwrap_err().to_string();
    assert!(error.contains("client_id=unknown"), "{error}");
    assert!(error.contains("No MSI found"), "{error}");
}

#[tokio::test]
async fn azure_ml_wrong_secret_is_refused_with_the_message() {
    let fake = FakeAzure::start().await.unwrap();
    fake.set_system_identity(Some("workspace"));
    let source = AzureMlSource::with_policy(
        &azure_ml_env(&fake, "wrong-secret"),
        None,
        ACR_AUDIENCE,
        fast_policy(),
    )
    .unwrap();
    let error = refused_secret(&source, "wrong-secret").await;
    assert!(error.to_string().contains("secret header"), "{error}");
}

#[tokio::test]
async fn cloud_shell_posts_the_resource() {
    let fake = FakeAzure::start().await.unwrap();
    fake.set_system_identity(Some("cloud-shell-user"));
    let env = Env::from_pairs([("MSI_ENDPOINT", fake.cloud_shell_endpoint())]);
    let source = default_chain(&env, None, ACR_AUDIENCE).unwrap();
    assert!(
        source.describe().contains("Cloud Shell"),
        "{}",
        source.describe()
    );
    assert_eq!(
        principal_of(&fake, source.as_ref()).await,
        "cloud-shell-user"
    );
    let error = CloudShellSource::new(
        &env,
        Some(UserAssignedId::ClientId("c".into())),
        ACR_AUDIENCE,
    )
    .unwrap_err();
    assert!(error.to_string().contains("Cloud Shell"), "{error}");
}

fn fabric_env(endpoint: &str, header: &str, thumbprint: &str) -> Env {
    Env::from_pairs([
        ("IDENTITY_ENDPOINT", endpoint),
        ("IDENTITY_HEADER", header),
        ("IDENTITY_SERVER_THUMBPRINT", thumbprint),
    ])
}

#[tokio::test]
async fn service_fabric_over_tls_pinned_to_the_thumbprint() {
    let fake = FakeAzure::start().await.unwrap();
    fake.set_system_identity(Some("fabric-app"));
    let fabric = fake.serve_service_fabric().await.unwrap();
    let env = fabric_env(
        &fabric.endpoint(),
        &fake.app_service_header(),
        &fabric.thumbprint().to_lowercase(),
    );
    let source = default_chain(&env, None, ACR_AUDIENCE).unwrap();
    assert!(
        source.describe().contains("Service Fabric"),
        "{}",
        source.describe()
    );
    assert_eq!(principal_of(&fake, source.as_ref()).await, "fabric-app");

    // The wrong secret: the endpoint's nested error shape comes through.
    let source = ServiceFabricSource::with_policy(
        &fabric_env(&fabric.endpoint(), "wrong", &fabric.thumbprint()),
        None,
        ACR_AUDIENCE,
        fast_policy(),
    )
    .unwrap();
    let error = source.aad_token().await.unwrap_err().to_string();
    assert!(error.contains("InvalidSecret"), "{error}");
}

#[tokio::test]
async fn service_fabric_refuses_a_certificate_with_another_thumbprint() {
    let fake = FakeAzure::start().await.unwrap();
    fake.set_system_identity(Some("fabric-app"));
    let fabric = fake.serve_service_fabric().await.unwrap();
    let before = fake.requests(Endpoint::ServiceFabric);
    let source = ServiceFabricSource::with_policy(
        &fabric_env(
            &fabric.endpoint(),
            &fake.app_service_header(),
            &"ab".repeat(20),
        ),
        None,
        ACR_AUDIENCE,
        fast_policy(),
    )
    .unwrap();
    let error = source.aad_token().await.unwrap_err();
    assert!(matches!(error, Error::Transport { .. }), "{error:?}");
    let chain = anyhow_chain(&error);
    // The cause names the certificate actually presented.
    assert!(chain.contains(&fabric.thumbprint()), "{chain}");
    assert_eq!(
        fake.requests(Endpoint::ServiceFabric),
        before,
        "no request (and no secret) reached a server with another certificate"
    );
}

/// The error and its causes, one line.
fn anyhow_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut parts = vec![error.to_string()];
    let mut source = error.source();
    while let Some(cause) = source {
        parts.push(cause.to_string());
        source = cause.source();
    }
    parts.join(": ")
}
