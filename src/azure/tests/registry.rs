//! End to end against the real `docker-registry` with `auth: token`: the fake mints the tokens,
//! the registry verifies their signature, expiry and scopes.

use std::time::Duration;

use acrpull_testenv::azure::{
    push_tiny_image, ChallengeOnlyRegistry, Endpoint, FakeAzure, ManagedIdentity,
    TokenAuthRegistry, SERVICE,
};
use url::Url;

use super::{imds_env, loopback_http};
use crate::azure::{
    default_chain, realm_trusted, refresh_token_for_registry, Error, UserAssignedId, ACR_AUDIENCE,
};
use crate::secret::Secret;

/// Trade an ACR refresh token for an access token the way pulls do: the Docker token
/// protocol's `refresh_token` grant at the challenge's realm (`crate::registry::auth::token`).
async fn access_token_from_refresh(
    http: &reqwest::Client,
    realm: &Url,
    service: &str,
    refresh: &Secret,
    scopes: &[String],
) -> Result<Secret, crate::registry::auth::token::TokenError> {
    let grant = crate::registry::auth::token::TokenGrant::RefreshToken(refresh);
    crate::registry::auth::token::fetch(http, realm, Some(service), scopes, grant)
        .await
        .map(|issued| issued.token)
}

/// The fakes, a registry trusting them, and `app:v1` pushed; returns the manifest digest too.
async fn registry_with_image() -> (FakeAzure, TokenAuthRegistry, String) {
    let fake = FakeAzure::start().await.unwrap();
    let registry = TokenAuthRegistry::start(&fake.registry_auth_config())
        .await
        .unwrap();
    let push_token = fake
        .mint_registry_token("fixture-pusher", &[("app", &["pull", "push"])])
        .unwrap();
    let digest = push_tiny_image(registry.address(), "app", "v1", &push_token)
        .unwrap_or_else(|error| panic!("{error:#}\nregistry log:\n{}", registry.log()));
    (fake, registry, digest)
}

/// Realm and service from the registry's challenge, as the pull pipeline will read them.
async fn realm_and_service(registry: &TokenAuthRegistry) -> (Url, String) {
    let response = loopback_http()
        .get(format!("{}/v2/", registry.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);
    let header = response.headers()["www-authenticate"]
        .to_str()
        .unwrap()
        .to_string();
    let challenge = crate::http::challenge::parse_all(&header)
        .into_iter()
        .find(|c| c.scheme == crate::http::challenge::Scheme::Bearer)
        .unwrap();
    (
        Url::parse(challenge.get("realm").unwrap()).unwrap(),
        challenge.get("service").unwrap().to_string(),
    )
}

/// `GET /v2/app/tags/list` with a bearer token: status and the WWW-Authenticate header.
async fn list_tags(
    registry: &TokenAuthRegistry,
    repository: &str,
    token: &Secret,
) -> (u16, String, String) {
    let response = loopback_http()
        .get(format!("{}/v2/{repository}/tags/list", registry.url()))
        .bearer_auth(token.expose())
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    let challenge = response
        .headers()
        .get("www-authenticate")
        .map(|value| value.to_str().unwrap().to_string())
        .unwrap_or_default();
    (status, challenge, response.text().await.unwrap())
}

/// Through the whole chain: IMDS -> exchange -> access token -> registry.
async fn access_token_via_imds(
    fake: &FakeAzure,
    registry: &TokenAuthRegistry,
    selector: Option<UserAssignedId>,
    scope: &str,
) -> Secret {
    let source = default_chain(&imds_env(fake, &[]), selector, ACR_AUDIENCE).unwrap();
    let registry_url = Url::parse(&registry.url()).unwrap();
    let (refresh, login_server) =
        refresh_token_for_registry(&loopback_http(), &registry_url, source.as_ref())
            .await
            .unwrap();
    assert_eq!(login_server, registry.address());
    let (realm, service) = realm_and_service(registry).await;
    access_token_from_refresh(
        &loopback_http(),
        &realm,
        &service,
        &refresh,
        &[scope.to_string()],
    )
    .await
    .unwrap()
}

#[tokio::test]
async fn managed_identity_pulls_from_the_real_registry() {
    let (fake, registry, digest) = registry_with_image().await;
    fake.set_system_identity(Some("vm"));
    fake.grant("vm", "app", &["pull"]);
    fake.script(Endpoint::Exchange, &[503]);

    let token = access_token_via_imds(&fake, &registry, None, "repository:app:pull").await;
    let (status, _, body) = list_tags(&registry, "app", &token).await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("\"v1\""), "{body}");

    let manifest = loopback_http()
        .get(format!("{}/v2/app/manifests/v1", registry.url()))
        .header("Accept", "application/vnd.oci.image.manifest.v1+json")
        .bearer_auth(token.expose())
        .send()
        .await
        .unwrap();
    assert_eq!(manifest.status(), 200);
    assert_eq!(
        manifest.headers()["docker-content-digest"]
            .to_str()
            .unwrap(),
        digest
    );

    // The 503 was retried; the AAD token went only in the exchange's form body, never as a header.
    assert_eq!(fake.requests(Endpoint::Exchange), 2);
    let exchanges = fake.exchange_log();
    assert_eq!(exchanges.last().unwrap().principal.as_deref(), Some("vm"));
    assert_eq!(exchanges.last().unwrap().service.as_deref(), Some(SERVICE));
    assert!(fake
        .authorization_log()
        .iter()
        .all(|record| record.authorization.is_none()));
}

#[tokio::test]
async fn identity_without_the_role_is_refused_by_the_registry() {
    let (fake, registry, _) = registry_with_image().await;
    let unprivileged = ManagedIdentity::named("no-role");
    fake.add_user_assigned(unprivileged.clone());
    fake.add_user_assigned(ManagedIdentity::named("other"));
    let selector = UserAssignedId::ClientId(unprivileged.client_id);
    let token =
        access_token_via_imds(&fake, &registry, Some(selector), "repository:app:pull").await;
    let (status, challenge, body) = list_tags(&registry, "app", &token).await;
    assert_eq!(status, 401, "{body}");
    assert!(
        challenge.contains(r#"error="insufficient_scope""#),
        "{challenge}"
    );
}

#[tokio::test]
async fn token_for_another_repository_is_refused() {
    let (fake, registry, _) = registry_with_image().await;
    fake.set_system_identity(Some("vm"));
    fake.grant("vm", "app", &["pull"]);
    fake.grant("vm", "other", &["pull"]);
    let token = access_token_via_imds(&fake, &registry, None, "repository:other:pull").await;
    let (status, challenge, _) = list_tags(&registry, "app", &token).await;
    assert_eq!(status, 401);
    assert!(
        challenge.contains(r#"error="insufficient_scope""#),
        "{challenge}"
    );
}

#[tokio::test]
async fn expired_tokens_are_refused_after_the_leeway() {
    let (fake, registry, _) = registry_with_image().await;
    fake.set_registry_token_ttl(Duration::from_secs(300));
    let grants: &[(&str, &[&str])] = &[("app", &["pull"])];

    // Expired 30 s ago: inside the registry's 60 s leeway, still accepted.
    fake.set_backdate(Duration::from_secs(330));
    let token = Secret::new(fake.mint_registry_token("vm", grants).unwrap());
    assert_eq!(list_tags(&registry, "app", &token).await.0, 200);

    // Expired an hour ago.
    fake.set_backdate(Duration::from_secs(3900));
    let token = Secret::new(fake.mint_registry_token("vm", grants).unwrap());
    let (status, challenge, _) = list_tags(&registry, "app", &token).await;
    assert_eq!(status, 401);
    assert!(
        challenge.contains(r#"error="invalid_token""#),
        "{challenge}"
    );

    // The same through the token service: refresh token first, then back-dated access tokens.
    fake.set_backdate(Duration::ZERO);
    fake.set_system_identity(Some("vm"));
    fake.grant("vm", "app", &["pull"]);
    let source = default_chain(&imds_env(&fake, &[]), None, ACR_AUDIENCE).unwrap();
    let registry_url = Url::parse(&registry.url()).unwrap();
    let (refresh, _) = refresh_token_for_registry(&loopback_http(), &registry_url, source.as_ref())
        .await
        .unwrap();
    fake.set_backdate(Duration::from_secs(3900));
    let (realm, service) = realm_and_service(&registry).await;
    let token = access_token_from_refresh(
        &loopback_http(),
        &realm,
        &service,
        &refresh,
        &["repository:app:pull".into()],
    )
    .await
    .unwrap();
    let (status, challenge, _) = list_tags(&registry, "app", &token).await;
    assert_eq!(status, 401);
    assert!(
        challenge.contains(r#"error="invalid_token""#),
        "{challenge}"
    );
}

#[tokio::test]
async fn service_principal_sends_its_tenant_to_the_exchange() {
    let (fake, registry, _) = registry_with_image().await;
    let tenant = "11111111-2222-3333-4444-555555555555";
    fake.add_service_principal(tenant, "sp-client", "sp-secret", "ci");
    fake.grant("ci", "app", &["pull"]);
    let authority = fake.authority_host();
    let env = crate::azure::Env::from_pairs([
        ("AZURE_CLIENT_ID", "sp-client"),
        ("AZURE_TENANT_ID", tenant),
        ("AZURE_CLIENT_SECRET", "sp-secret"),
        ("AZURE_AUTHORITY_HOST", authority.as_str()),
    ]);
    let source = default_chain(&env, None, ACR_AUDIENCE).unwrap();
    let registry_url = Url::parse(&registry.url()).unwrap();
    let (refresh, _) = refresh_token_for_registry(&loopback_http(), &registry_url, source.as_ref())
        .await
        .unwrap();
    assert_eq!(fake.exchange_log()[0].tenant.as_deref(), Some(tenant));
    let (realm, service) = realm_and_service(&registry).await;
    let token = access_token_from_refresh(
        &loopback_http(),
        &realm,
        &service,
        &refresh,
        &["repository:app:pull".into()],
    )
    .await
    .unwrap();
    assert_eq!(list_tags(&registry, "app", &token).await.0, 200);
}

/// A registry whose challenge names a realm on another host gets no Azure token: the check runs
/// before any token is even fetched.
#[tokio::test]
async fn untrusted_realm_gets_no_token() {
    let fake = FakeAzure::start().await.unwrap();
    fake.set_system_identity(Some("vm"));
    let stand_in = ChallengeOnlyRegistry::start(
        r#"Bearer realm="https://attacker.example.com/oauth2/token",service="fake-acr.test""#,
    )
    .await
    .unwrap();
    let source = default_chain(&imds_env(&fake, &[]), None, ACR_AUDIENCE).unwrap();
    let registry_url = Url::parse(&stand_in.url()).unwrap();
    let error = refresh_token_for_registry(&loopback_http(), &registry_url, source.as_ref())
        .await
        .unwrap_err();
    assert!(matches!(error, Error::UntrustedRealm { .. }), "{error:?}");
    assert!(
        error.to_string().contains("attacker.example.com"),
        "{error}"
    );
    assert_eq!(fake.requests(Endpoint::Imds), 0);
    assert!(!realm_trusted(
        "myregistry.azurecr.io",
        &Url::parse("https://evil-azurecr.io.example.com/oauth2/token").unwrap()
    ));
}
