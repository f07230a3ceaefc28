//! Each identity source and selector against the fakes.

use std::sync::Arc;
use std::time::{Duration, Instant};

use acrpull_testenv::azure::{Endpoint, FakeAzure, ManagedIdentity};

use super::{fast_policy, imds_env, loopback_http, principal_of, refused_secret};
use crate::azure::{
    default_chain, AadTokenSource, AppServiceSource, Env, Error, ImdsSource, RetryPolicy,
    UserAssignedId, WorkloadIdentitySource, ACR_AUDIENCE,
};

async fn fake_with_identities() -> (FakeAzure, ManagedIdentity, ManagedIdentity) {
    let fake = FakeAzure::start().await.unwrap();
    let first = ManagedIdentity::named("first");
    let second = ManagedIdentity::named("second");
    // A system identity too, so a selector sent under the wrong name would get "vm" instead.
    fake.set_system_identity(Some("vm"));
    fake.add_user_assigned(first.clone());
    fake.add_user_assigned(second.clone());
    (fake, first, second)
}

#[tokio::test]
async fn imds_system_assigned_and_cached() {
    let fake = FakeAzure::start().await.unwrap();
    fake.set_system_identity(Some("vm"));
    let source = default_chain(&imds_env(&fake, &[]), None, ACR_AUDIENCE).unwrap();
    assert!(
        source.describe().contains("system-assigned"),
        "{}",
        source.describe()
    );
    assert_eq!(principal_of(&fake, source.as_ref()).await, "vm");
    let token = source.aad_token().await.unwrap();
    let left = token
        .expires_at
        .duration_since(std::time::SystemTime::now())
        .unwrap();
    assert!(left > Duration::from_secs(23 * 3600), "{left:?}");
    assert_eq!(fake.requests(Endpoint::Imds), 1);
}

#[tokio::test]
async fn imds_each_selector_reaches_its_identity() {
    let (fake, first, second) = fake_with_identities().await;
    let env = imds_env(&fake, &[]);
    let cases = [
        (UserAssignedId::ClientId(first.client_id.clone()), "first"),
        (UserAssignedId::ObjectId(second.object_id.clone()), "second"),
        (
            UserAssignedId::ResourceId(first.resource_id.clone()),
            "first",
        ),
    ];
    for (selector, expected) in cases {
        let source = ImdsSource::new(&env, Some(selector.clone()), ACR_AUDIENCE).unwrap();
        assert_eq!(principal_of(&fake, &source).await, expected, "{selector}");
    }
    let from_env = imds_env(&fake, &[("AZURE_CLIENT_ID", &second.client_id)]);
    let source = default_chain(&from_env, None, ACR_AUDIENCE).unwrap();
    assert_eq!(principal_of(&fake, source.as_ref()).await, "second");
    // An explicit selector wins over AZURE_CLIENT_ID.
    let explicit = UserAssignedId::ClientId(first.client_id.clone());
    let source = default_chain(&from_env, Some(explicit), ACR_AUDIENCE).unwrap();
    assert_eq!(principal_of(&fake, source.as_ref()).await, "first");
}

#[tokio::test]
async fn imds_several_identities_none_chosen_gives_a_hint() {
    let fake = FakeAzure::start().await.unwrap();
    fake.add_user_assigned(ManagedIdentity::named("first"));
    fake.add_user_assigned(ManagedIdentity::named("second"));
    let source =
        ImdsSource::with_policy(&imds_env(&fake, &[]), None, ACR_AUDIENCE, fast_policy()).unwrap();
    let error = source.aad_token().await.unwrap_err();
    assert!(
        matches!(error, Error::MultipleIdentities { .. }),
        "{error:?}"
    );
    let message = error.to_string();
    assert!(
        message.contains("Multiple user assigned identities exist"),
        "{message}"
    );
    assert!(message.contains("--client-id"), "{message}");
    assert_eq!(fake.requests(Endpoint::Imds), 1, "a 400 is not retried");

    // With a single user-assigned identity and no system identity, IMDS picks it.
    let single = FakeAzure::start().await.unwrap();
    single.add_user_assigned(ManagedIdentity::named("only"));
    let source = ImdsSource::new(&imds_env(&single, &[]), None, ACR_AUDIENCE).unwrap();
    assert_eq!(principal_of(&single, &source).await, "only");
}

#[tokio::test]
async fn imds_unknown_identity_is_named() {
    let (fake, _, _) = fake_with_identities().await;
    let selector = UserAssignedId::ClientId("not-assigned".into());
    let source = ImdsSource::with_policy(
        &imds_env(&fake, &[]),
        Some(selector),
        ACR_AUDIENCE,
        fast_policy(),
    )
    .unwrap();
    let error = source.aad_token().await.unwrap_err();
    assert!(
        matches!(error, Error::IdentityNotAssigned { .. }),
        "{error:?}"
    );
    let message = error.to_string();
    assert!(message.contains("client_id=not-assigned"), "{message}");
    assert!(message.contains("Identity not found"), "{message}");
    assert_eq!(fake.requests(Endpoint::Imds), 1);
}

#[tokio::test]
async fn imds_retries_throttling_updates_and_server_errors() {
    let fake = FakeAzure::start().await.unwrap();
    fake.set_system_identity(Some("vm"));
    fake.script(Endpoint::Imds, &[429, 410, 500, 404, 503]);
    let source =
        ImdsSource::with_policy(&imds_env(&fake, &[]), None, ACR_AUDIENCE, fast_policy()).unwrap();
    assert_eq!(principal_of(&fake, &source).await, "vm");
    assert_eq!(fake.requests(Endpoint::Imds), 6);
}

#[tokio::test]
async fn imds_gives_up_after_the_retry_budget() {
    let fake = FakeAzure::start().await.unwrap();
    fake.set_system_identity(Some("vm"));
    fake.script(Endpoint::Imds, &[500; 10]);
    let policy = RetryPolicy {
        retries: 3,
        ..fast_policy()
    };
    let source =
        ImdsSource::with_policy(&imds_env(&fake, &[]), None, ACR_AUDIENCE, policy).unwrap();
    let error = source.aad_token().await.unwrap_err();
    assert!(
        matches!(
            error,
            Error::RetriesExhausted {
                attempts: 4,
                status: 500,
                ..
            }
        ),
        "{error:?}"
    );
    assert_eq!(fake.requests(Endpoint::Imds), 4);
}

#[tokio::test]
async fn imds_410_is_retried_for_its_window_only() {
    let fake = FakeAzure::start().await.unwrap();
    fake.set_system_identity(Some("vm"));
    fake.script(Endpoint::Imds, &[410; 1000]);
    let policy = RetryPolicy {
        gone_delay: Duration::from_millis(10),
        gone_window: Duration::from_millis(200),
        retries: 0,
        ..fast_policy()
    };
    let started = Instant::now();
    let source =
        ImdsSource::with_policy(&imds_env(&fake, &[]), None, ACR_AUDIENCE, policy).unwrap();
    let error = source.aad_token().await.unwrap_err();
    assert!(
        matches!(error, Error::RetriesExhausted { status: 410, .. }),
        "{error:?}"
    );
    // 410 is retried although `retries` is 0, until the window closes.
    let requests = fake.requests(Endpoint::Imds);
    assert!((3..=21).contains(&requests), "{requests}");
    assert!(started.elapsed() >= Duration::from_millis(150));
}

#[tokio::test]
async fn imds_unreachable_fails_fast() {
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let host = format!("http://127.0.0.1:{port}");
    let env = Env::from_pairs([("AZURE_POD_IDENTITY_AUTHORITY_HOST", host.as_str())]);
    let source = ImdsSource::new(&env, None, ACR_AUDIENCE).unwrap();
    let started = Instant::now();
    let error = source.aad_token().await.unwrap_err();
    assert!(
        matches!(error, Error::EndpointUnreachable { .. }),
        "{error:?}"
    );
    assert!(error
        .to_string()
        .contains("no managed identity endpoint reachable"));
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn imds_numeric_fields_are_accepted_too() {
    let fake = FakeAzure::start().await.unwrap();
    fake.set_system_identity(Some("vm"));
    fake.set_imds_numeric_fields(true);
    let source = ImdsSource::new(&imds_env(&fake, &[]), None, ACR_AUDIENCE).unwrap();
    assert_eq!(principal_of(&fake, &source).await, "vm");
}

#[tokio::test]
async fn imds_fake_demands_the_metadata_header() {
    let fake = FakeAzure::start().await.unwrap();
    fake.set_system_identity(Some("vm"));
    let url = format!(
        "{}/metadata/identity/oauth2/token?api-version=2018-02-01&resource=x",
        fake.url()
    );
    let response = loopback_http().get(&url).send().await.unwrap();
    assert_eq!(response.status(), 400);
    assert!(response.text().await.unwrap().contains("bad_request_102"));
}

#[tokio::test]
async fn one_fetch_under_concurrency() {
    let fake = FakeAzure::start().await.unwrap();
    fake.set_system_identity(Some("vm"));
    let source: Arc<dyn AadTokenSource> =
        default_chain(&imds_env(&fake, &[]), None, ACR_AUDIENCE).unwrap();
    let tasks: Vec<_> = (0..16)
        .map(|_| {
            let source = source.clone();
            tokio::spawn(async move { source.aad_token().await.map(|token| token.token) })
        })
        .collect();
    let mut tokens = Vec::new();
    for task in tasks {
        tokens.push(task.await.unwrap().unwrap());
    }
    assert!(tokens.windows(2).all(|pair| pair[0] == pair[1]));
    assert_eq!(fake.requests(Endpoint::Imds), 1);
}

fn app_service_env(fake: &FakeAzure, header: &str, extra: &[(&str, &str)]) -> Env {
    let endpoint = fake.app_service_endpoint();
    let mut pairs = vec![
        ("IDENTITY_ENDPOINT", endpoint.as_str()),
        ("IDENTITY_HEADER", header),
    ];
    pairs.extend_from_slice(extra);
    Env::from_pairs(pairs)
}

#[tokio::test]
async fn app_service_source_and_selectors() {
    let (fake, first, second) = fake_with_identities().await;
    let header = fake.app_service_header();
    let source = default_chain(&app_service_env(&fake, &header, &[]), None, ACR_AUDIENCE).unwrap();
    assert!(
        source.describe().contains("App Service"),
        "{}",
        source.describe()
    );
    assert_eq!(principal_of(&fake, source.as_ref()).await, "vm");
    assert_eq!(fake.requests(Endpoint::Imds), 0);

    let cases = [
        (UserAssignedId::ClientId(first.client_id.clone()), "first"),
        (UserAssignedId::ObjectId(second.object_id.clone()), "second"),
        (
            UserAssignedId::ResourceId(second.resource_id.clone()),
            "second",
        ),
    ];
    for (selector, expected) in cases {
        let source = AppServiceSource::new(
            &app_service_env(&fake, &header, &[]),
            Some(selector.clone()),
            ACR_AUDIENCE,
        )
        .unwrap();
        assert_eq!(principal_of(&fake, &source).await, expected, "{selector}");
    }
    let env = app_service_env(&fake, &header, &[("AZURE_CLIENT_ID", &first.client_id)]);
    let source = default_chain(&env, None, ACR_AUDIENCE).unwrap();
    assert_eq!(principal_of(&fake, source.as_ref()).await, "first");
}

#[tokio::test]
async fn app_service_wrong_header_is_refused() {
    let fake = FakeAzure::start().await.unwrap();
    fake.set_system_identity(Some("app"));
    let source = AppServiceSource::with_policy(
        &app_service_env(&fake, "wrong-secret", &[]),
        None,
        ACR_AUDIENCE,
        fast_policy(),
    )
    .unwrap();
    refused_secret(&source, "wrong-secret").await;
}

const TENANT: &str = "11111111-2222-3333-4444-555555555555";

#[tokio::test]
async fn workload_identity_rereads_the_rotated_file() {
    let fake = FakeAzure::start().await.unwrap();
    // Shorter than the refresh margin, so every call fetches (and reads the file) again.
    fake.set_aad_token_ttl(Duration::from_secs(120));
    fake.add_federated_credential(TENANT, "wl-client", "assertion-1", "workload");
    let directory = tempfile::tempdir().unwrap();
    let file = directory.path().join("azure-identity-token");
    std::fs::write(&file, "assertion-1\n").unwrap();
    let authority = fake.authority_host();
    let file_text = file.display().to_string();
    let env = Env::from_pairs([
        ("AZURE_FEDERATED_TOKEN_FILE", file_text.as_str()),
        ("AZURE_CLIENT_ID", "wl-client"),
        ("AZURE_TENANT_ID", TENANT),
        ("AZURE_AUTHORITY_HOST", authority.as_str()),
        // Present but lower in the chain: must not be used.
        ("IDENTITY_ENDPOINT", "http://127.0.0.1:1/msi/token"),
        ("IDENTITY_HEADER", "h"),
    ]);
    let source = default_chain(&env, None, ACR_AUDIENCE).unwrap();
    assert!(
        source.describe().starts_with("workload identity"),
        "{}",
        source.describe()
    );
    assert_eq!(source.tenant().as_deref(), Some(TENANT));
    assert_eq!(principal_of(&fake, source.as_ref()).await, "workload");

    std::fs::write(&file, "assertion-2").unwrap();
    fake.add_federated_credential(TENANT, "wl-client", "assertion-2", "workload");
    fake.revoke_federated_assertion("assertion-1");
    assert_eq!(principal_of(&fake, source.as_ref()).await, "workload");
    assert_eq!(fake.received_assertions(), ["assertion-1", "assertion-2"]);

    std::fs::remove_file(&file).unwrap();
    let error = source.aad_token().await.unwrap_err();
    assert!(
        matches!(error, Error::FederatedTokenFile { .. }),
        "{error:?}"
    );
}

#[tokio::test]
async fn workload_identity_refuses_plain_http_authorities() {
    let env = Env::from_pairs([
        ("AZURE_FEDERATED_TOKEN_FILE", "/f"),
        ("AZURE_CLIENT_ID", "c"),
        ("AZURE_TENANT_ID", TENANT),
        ("AZURE_AUTHORITY_HOST", "http://login.microsoftonline.com/"),
    ]);
    let error = WorkloadIdentitySource::new(&env, ACR_AUDIENCE).unwrap_err();
    assert!(
        error.to_string().contains("must be an https URL"),
        "{error}"
    );
}

#[tokio::test]
async fn client_secret_source() {
    let fake = FakeAzure::start().await.unwrap();
    fake.add_service_principal(TENANT, "sp-client", "sp-secret-value", "ci-principal");
    let authority = fake.authority_host();
    let env = |secret: &str| {
        Env::from_pairs([
            ("AZURE_CLIENT_ID", "sp-client"),
            ("AZURE_TENANT_ID", TENANT),
            ("AZURE_CLIENT_SECRET", secret),
            ("AZURE_AUTHORITY_HOST", authority.as_str()),
            ("AZURE_FEDERATED_TOKEN_FILE", "/not/used"),
        ])
    };
    let source = default_chain(&env("sp-secret-value"), None, ACR_AUDIENCE).unwrap();
    assert!(
        source.describe().starts_with("service principal"),
        "{}",
        source.describe()
    );
    assert!(!format!("{source:?}").contains("sp-secret-value"));
    assert_eq!(principal_of(&fake, source.as_ref()).await, "ci-principal");

    let wrong = default_chain(&env("wrong-secret-value"), None, ACR_AUDIENCE).unwrap();
    let error = refused_secret(wrong.as_ref(), "wrong-secret-value").await;
    assert!(error.to_string().contains("AADSTS7000215"), "{error}");
}
