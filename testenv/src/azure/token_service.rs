//! The fake ACR token service: `/oauth2/exchange` and `/oauth2/token`, and the signing key.
//!
//! Registry tokens carry the claims the distribution registry checks (docs/azure-auth.md
//! section 7): `iss`, `sub`, `aud` as a plain string equal to the service, `exp`, `nbf`, `iat`,
//! `jti` and `access`.
//! They are ES256 JWTs whose `x5c` header holds a self-signed certificate; the same certificate is
//! the registry's `rootcertbundle`.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use base64::Engine as _;
use serde_json::json;

use super::{
    now, Endpoint, ExchangeRecord, IssuedRefresh, Shared, ACR_AUDIENCE, ARM_AUDIENCE, ISSUER,
    SERVICE,
};

/// The key and certificate registry tokens (and the fake's AAD tokens) are signed with.
pub(super) struct Signer {
    key: jsonwebtoken::EncodingKey,
    certificate_der_base64: String,
    certificate_pem: String,
}

impl Signer {
    /// A fresh P-256 key with a self-signed certificate.
    pub(super) fn generate() -> anyhow::Result<Self> {
        let key_pair = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
        let mut parameters =
            rcgen::CertificateParams::new(vec!["fake-acr-token-service".to_string()])?;
        parameters.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let certificate = parameters.self_signed(&key_pair)?;
        let key = jsonwebtoken::EncodingKey::from_ec_pem(key_pair.serialize_pem().as_bytes())
            .context("loading the signing key")?;
        Ok(Self {
            key,
            certificate_der_base64: base64::engine::general_purpose::STANDARD
                .encode(certificate.der()),
            certificate_pem: certificate.pem(),
        })
    }

    pub(super) fn certificate_pem(&self) -> &str {
        &self.certificate_pem
    }

    /// An ES256 JWT of `claims` with the certificate in `x5c`.
    pub(super) fn sign(&self, claims: &serde_json::Value) -> anyhow::Result<String> {
        let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES256);
        header.x5c = Some(vec![self.certificate_der_base64.clone()]);
        jsonwebtoken::encode(&header, claims, &self.key).context("signing a token")
    }

    /// A registry access token with exactly `grants` (repository, actions).
    pub(super) fn access_token(
        &self,
        subject: &str,
        grants: &[(String, Vec<String>)],
        ttl: Duration,
        backdate: Duration,
    ) -> anyhow::Result<String> {
        let issued_at = now().saturating_sub(backdate.as_secs());
        let access: Vec<_> = grants
            .iter()
            .map(|(name, actions)| json!({"type": "repository", "name": name, "actions": actions}))
            .collect();
        self.sign(&json!({
            "iss": ISSUER,
            "sub": subject,
            "aud": SERVICE,
            "exp": issued_at + ttl.as_secs(),
            "nbf": issued_at,
            "iat": issued_at,
            "jti": random_id(),
            "access": access,
            "grant_type": "access_token",
            "version": "1.0",
        }))
    }
}

/// A unique id for `jti`.
pub(super) fn random_id() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.subsec_nanos());
    format!(
        "{:08x}-{:016x}",
        nanos,
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

fn registry_error(status: StatusCode, code: &str, message: &str) -> Response {
    (
        status,
        Json(json!({"errors": [{"code": code, "message": message}]})),
    )
        .into_response()
}

fn parse_form(body: &str) -> Vec<(String, String)> {
    url::form_urlencoded::parse(body.as_bytes())
        .into_owned()
        .collect()
}

fn first<'a>(form: &'a [(String, String)], name: &str) -> Option<&'a str> {
    form.iter()
        .find(|(key, _)| key == name)
        .map(|(_, value)| value.as_str())
}

/// `POST /oauth2/exchange`: AAD token -> ACR refresh token (spec 3.2).
pub(super) async fn exchange(State(shared): State<Arc<Shared>>, body: String) -> Response {
    if let Some(status) = shared.begin(Endpoint::Exchange) {
        let status = StatusCode::from_u16(status).unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
        return registry_error(status, "UNAVAILABLE", "scripted failure");
    }
    let form = parse_form(&body);
    let service = first(&form, "service");
    let tenant = first(&form, "tenant");
    let issued = first(&form, "access_token")
        .and_then(|token| shared.knobs().issued_aad.get(token).cloned());
    shared.knobs().exchange_log.push(ExchangeRecord {
        service: service.map(str::to_string),
        tenant: tenant.map(str::to_string),
        principal: issued.as_ref().map(|issued| issued.principal.clone()),
    });
    if first(&form, "grant_type") != Some("access_token") {
        return registry_error(
            StatusCode::BAD_REQUEST,
            "UNSUPPORTED",
            "grant_type must be access_token",
        );
    }
    if service != Some(SERVICE) {
        return registry_error(
            StatusCode::BAD_REQUEST,
            "DENIED",
            "service does not match this registry",
        );
    }
    let Some(issued) = issued else {
        return registry_error(
            StatusCode::UNAUTHORIZED,
            "UNAUTHORIZED",
            "the access token was not issued by Entra ID",
        );
    };
    if issued.expires <= now() {
        return registry_error(
            StatusCode::UNAUTHORIZED,
            "UNAUTHORIZED",
            "the access token has expired",
        );
    }
    if issued.audience != ACR_AUDIENCE && issued.audience != ARM_AUDIENCE {
        return registry_error(
            StatusCode::UNAUTHORIZED,
            "UNAUTHORIZED",
            "the access token has the wrong audience",
        );
    }
    if tenant.is_some_and(|tenant| tenant != issued.tenant) {
        return registry_error(
            StatusCode::UNAUTHORIZED,
            "UNAUTHORIZED",
            "tenant does not match the access token",
        );
    }
    let (ttl, backdate) = {
        let knobs = shared.knobs();
        (knobs.registry_token_ttl, knobs.backdate)
    };
    let issued_at = now().saturating_sub(backdate.as_secs());
    let expires = issued_at + ttl.as_secs();
    let signed = shared.signer.sign(&json!({
        "jti": random_id(),
        "sub": issued.principal,
        "nbf": issued_at,
        "exp": expires,
        "iat": issued_at,
        "iss": "Azure Container Registry",
        "aud": SERVICE,
        "version": "1.0",
        "grant_type": "refresh_token",
        "tenant": issued.tenant,
        "permissions": {"actions": ["read"], "notActions": []},
        "roles": [],
    }));
    let refresh_token = match signed {
        Ok(token) => token,
        Err(error) => {
            return (StatusCode::INTERNAL_SERVER_ERROR, format!("{error:#}")).into_response()
        }
    };
    shared.knobs().issued_refresh.insert(
        refresh_token.clone(),
        IssuedRefresh {
            principal: issued.principal,
            expires,
        },
    );
    Json(json!({"refresh_token": refresh_token})).into_response()
}

/// `POST /oauth2/token`: ACR refresh token + scopes -> access token (spec 3.3). Grants the
/// intersection of what is asked and what the principal's roles allow.
pub(super) async fn token(State(shared): State<Arc<Shared>>, body: String) -> Response {
    if let Some(status) = shared.begin(Endpoint::Token) {
        let status = StatusCode::from_u16(status).unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
        return registry_error(status, "UNAVAILABLE", "scripted failure");
    }
    grant(&shared, &parse_form(&body))
}

/// The username ACR reads as "the password is an ACR token" (spec 3.4).
const NULL_GUID: &str = "00000000-0000-0000-0000-000000000000";

/// `GET /oauth2/token?service=..&scope=..` with `Authorization: Basic` of the null GUID and an
/// ACR refresh token: what docker, skopeo and containerd send after `docker login` with the
/// pair `az acr login --expose-token` prints (spec 3.4). Other Basic users are refused, as the
/// fake knows no admin users or repository tokens.
pub(super) async fn token_basic(
    State(shared): State<Arc<Shared>>,
    headers: axum::http::HeaderMap,
    axum::extract::RawQuery(query): axum::extract::RawQuery,
) -> Response {
    if let Some(status) = shared.begin(Endpoint::Token) {
        let status = StatusCode::from_u16(status).unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
        return registry_error(status, "UNAVAILABLE", "scripted failure");
    }
    let basic = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Basic "))
        .and_then(|encoded| {
            base64::engine::general_purpose::STANDARD
                .decode(encoded)
                .ok()
        })
        .and_then(|bytes| String::from_utf8(bytes).ok());
    if basic.is_none() && !headers.contains_key(axum::http::header::AUTHORIZATION) {
        return anonymous(&shared, &parse_form(query.as_deref().unwrap_or("")));
    }
    let Some((NULL_GUID, refresh_token)) = basic.as_deref().and_then(|b| b.split_once(':')) else {
        return registry_error(
            StatusCode::UNAUTHORIZED,
            "UNAUTHORIZED",
            "expected Basic credentials with the null-GUID username and an ACR refresh token",
        );
    };
    let mut form = parse_form(query.as_deref().unwrap_or(""));
    form.retain(|(key, _)| key != "grant_type" && key != "refresh_token");
    form.push(("grant_type".into(), "refresh_token".into()));
    form.push(("refresh_token".into(), refresh_token.to_string()));
    grant(&shared, &form)
}

/// `GET /oauth2/token?service=..&scope=..` without credentials: on a registry with anonymous
/// pull enabled, a token granting `pull` (and nothing else) on every repository asked for
/// (spec 3.9); otherwise `401`, as ACR answers.
fn anonymous(shared: &Shared, form: &[(String, String)]) -> Response {
    let (allowed, ttl, backdate) = {
        let knobs = shared.knobs();
        (
            knobs.anonymous_pull,
            knobs.registry_token_ttl,
            knobs.backdate,
        )
    };
    if !allowed {
        return registry_error(
            StatusCode::UNAUTHORIZED,
            "UNAUTHORIZED",
            "authentication required, visit https://aka.ms/acr/authorization for more information.",
        );
    }
    if first(form, "service") != Some(SERVICE) {
        return registry_error(
            StatusCode::BAD_REQUEST,
            "DENIED",
            "service does not match this registry",
        );
    }
    let mut grants: Vec<(String, Vec<String>)> = form
        .iter()
        .filter(|(key, _)| key == "scope")
        .filter_map(|(_, scope)| {
            let (kind, rest) = scope.split_once(':')?;
            let (name, actions) = rest.rsplit_once(':')?;
            (kind == "repository" && actions.split(',').any(|action| action == "pull"))
                .then(|| (name.to_string(), vec!["pull".to_string()]))
        })
        .collect();
    grants.sort();
    grants.dedup();
    match shared.signer.access_token("", &grants, ttl, backdate) {
        Ok(token) => Json(json!({"access_token": token})).into_response(),
        Err(error) => (StatusCode::INTERNAL_SERVER_ERROR, format!("{error:#}")).into_response(),
    }
}

/// Refresh token + service + scopes -> an access token for what the roles allow.
fn grant(shared: &Shared, form: &[(String, String)]) -> Response {
    if first(form, "grant_type") != Some("refresh_token") {
        return registry_error(
            StatusCode::BAD_REQUEST,
            "UNSUPPORTED",
            "grant_type must be refresh_token",
        );
    }
    if first(form, "service") != Some(SERVICE) {
        return registry_error(
            StatusCode::BAD_REQUEST,
            "DENIED",
            "service does not match this registry",
        );
    }
    let (issued, roles, ttl, backdate) = {
        let knobs = shared.knobs();
        let issued =
            first(form, "refresh_token").and_then(|token| knobs.issued_refresh.get(token).cloned());
        let roles = issued
            .as_ref()
            .and_then(|issued| knobs.roles.get(&issued.principal).cloned())
            .unwrap_or_default();
        (issued, roles, knobs.registry_token_ttl, knobs.backdate)
    };
    let Some(issued) = issued else {
        return registry_error(
            StatusCode::UNAUTHORIZED,
            "UNAUTHORIZED",
            "unknown refresh token",
        );
    };
    if issued.expires <= now() {
        return registry_error(
            StatusCode::UNAUTHORIZED,
            "UNAUTHORIZED",
            "the refresh token has expired",
        );
    }
    let mut grants: HashMap<String, Vec<String>> = HashMap::new();
    for (_, scope) in form.iter().filter(|(key, _)| key == "scope") {
        let Some((kind, rest)) = scope.split_once(':') else {
            continue;
        };
        let Some((name, actions)) = rest.rsplit_once(':') else {
            continue;
        };
        if kind != "repository" {
            continue;
        }
        let allowed = roles.get(name);
        let granted = grants.entry(name.to_string()).or_default();
        for action in actions.split(',') {
            let permitted =
                allowed.is_some_and(|allowed| allowed.contains(action) || allowed.contains("*"));
            if permitted && !granted.iter().any(|existing| existing == action) {
                granted.push(action.to_string());
            }
        }
    }
    let mut grants: Vec<(String, Vec<String>)> = grants.into_iter().collect();
    grants.sort();
    match shared
        .signer
        .access_token(&issued.principal, &grants, ttl, backdate)
    {
        Ok(token) => Json(json!({"access_token": token})).into_response(),
        Err(error) => (StatusCode::INTERNAL_SERVER_ERROR, format!("{error:#}")).into_response(),
    }
}
