//! Fake managed-identity endpoints beyond IMDS and App Service: the Azure Arc agent (with its
//! key-file challenge), Azure ML, Cloud Shell and Service Fabric (over TLS with a self-signed
//! certificate, as the cluster serves it).
//!
//! Each follows its platform's published protocol, not acrpull's client (spec 2.3-2.5, MSAL Go
//! and azure-identity sources): Arc answers a request without `Authorization` with `401` and
//! `WWW-Authenticate: Basic realm=<fresh key file>` and accepts only that file's contents;
//! Azure ML wants api-version 2017-09-01, a `secret` header and `clientid`; Cloud Shell a form
//! POST with `Metadata: true`; Service Fabric api-version 2019-07-01-preview and a `secret`
//! header, and its errors nest `{"error":{"code","message"}}`.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Form, Json};
use serde_json::json;

use super::identity::{
    error as oauth_error, has_metadata_header, imds_style_resource, internal, issue_aad,
    managed_principal, resource_of, scripted, APP_SERVICE_NAMES, IMDS_NAMES,
};
use super::{Endpoint, Shared, MANAGED_IDENTITY_TENANT};

/// What the fake Arc agent names in its challenge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ArcChallenge {
    /// A fresh `<random>.key` file in the agent's token directory (the real behaviour).
    FreshKeyFile,
    /// This path, whatever it is (hostile agent): the fake accepts its contents as the key.
    Path(PathBuf),
    /// No `WWW-Authenticate` header at all.
    Missing,
}

/// The legacy App Service (2017-09-01) error shape Azure ML answers with.
fn legacy_error(status: StatusCode, message: &str) -> Response {
    (
        status,
        Json(json!({"statusCode": status.as_u16(), "message": message, "correlationId": "00000000-0000-0000-0000-000000000000"})),
    )
        .into_response()
}

/// The Service Fabric error shape.
fn fabric_error(status: StatusCode, code: &str, message: &str) -> Response {
    (
        status,
        Json(json!({"error": {"code": code, "message": message}})),
    )
        .into_response()
}

/// The IMDS-style body with every number a string (Arc and Cloud Shell answer like IMDS).
fn string_fields(token: String, ttl: u64, expires: u64, resource: &str) -> Response {
    Json(json!({
        "access_token": token,
        "expires_in": ttl.to_string(),
        "expires_on": expires.to_string(),
        "not_before": (expires - ttl).to_string(),
        "refresh_token": "",
        "resource": resource,
        "token_type": "Bearer",
    }))
    .into_response()
}

/// `GET /arc/metadata/identity/oauth2/token`: the Azure Arc agent (himds).
pub(super) async fn arc(
    State(shared): State<Arc<Shared>>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    if let Some(status) = shared.begin(Endpoint::Arc) {
        return scripted(status);
    }
    let resource = match imds_style_resource(&headers, &query, "invalid_request", "2019-11-01") {
        Ok(resource) => resource,
        Err(refusal) => return *refusal,
    };
    let presented = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Basic "))
        .map(str::to_string);
    let Some(presented) = presented else {
        return arc_challenge(&shared);
    };
    let expected = shared.knobs().arc_key.clone();
    if expected.as_deref() != Some(presented.as_str()) {
        return oauth_error(
            StatusCode::UNAUTHORIZED,
            "unauthorized_client",
            "The key in the Authorization header does not match the challenge",
        );
    }
    shared.knobs().arc_key = None;
    let principal = shared.knobs().system_identity.clone();
    let Some(principal) = principal else {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "Identity not found",
        );
    };
    match issue_aad(&shared, &principal, MANAGED_IDENTITY_TENANT, resource) {
        Ok((token, ttl, expires)) => string_fields(token, ttl, expires, resource),
        Err(error) => internal(error),
    }
}

/// The 401 with the key file challenge, writing a fresh key where the real agent would.
fn arc_challenge(shared: &Shared) -> Response {
    let (challenge, directory) = {
        let knobs = shared.knobs();
        (
            knobs.arc_challenge.clone(),
            knobs.arc_token_directory.clone(),
        )
    };
    let path = match challenge {
        ArcChallenge::Missing => {
            return oauth_error(StatusCode::UNAUTHORIZED, "unauthorized", "no challenge");
        }
        ArcChallenge::Path(path) => {
            // A hostile agent: whatever the file holds is "the key" (FIFOs and the like are
            // not opened: the fake must not block on them).
            let regular = std::fs::metadata(&path).is_ok_and(|metadata| metadata.is_file());
            shared.knobs().arc_key = regular
                .then(|| std::fs::read_to_string(&path).ok())
                .flatten();
            path
        }
        ArcChallenge::FreshKeyFile => {
            let key = super::token_service::random_id();
            let path = directory.join(format!("{}.key", super::token_service::random_id()));
            if let Err(error) = std::fs::write(&path, &key) {
                return internal(error.into());
            }
            shared.knobs().arc_key = Some(key);
            path
        }
    };
    (
        StatusCode::UNAUTHORIZED,
        [(
            header::WWW_AUTHENTICATE,
            format!("Basic realm={}", path.display()),
        )],
        Json(json!({"error": "unauthorized", "error_description": "Use the key in the file named by the challenge"})),
    )
        .into_response()
}

/// `GET /aml/token`: Azure ML compute (legacy App Service 2017-09-01 API).
pub(super) async fn azure_ml(
    State(shared): State<Arc<Shared>>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    if let Some(status) = shared.begin(Endpoint::AzureMl) {
        return scripted(status);
    }
    let expected = shared.knobs().msi_secret.clone();
    if headers.get("secret").and_then(|v| v.to_str().ok()) != Some(expected.as_str()) {
        return legacy_error(
            StatusCode::UNAUTHORIZED,
            "Unauthorized: the secret header is missing or wrong",
        );
    }
    if query.get("api-version").map(String::as_str) != Some("2017-09-01") {
        return legacy_error(StatusCode::BAD_REQUEST, "api-version must be 2017-09-01");
    }
    let Some(resource) = resource_of(&query) else {
        return legacy_error(StatusCode::BAD_REQUEST, "resource is required");
    };
    // Azure ML knows `clientid` only; IMDS-style names are ignored, so the wrong name would
    // get the system identity and a test would notice.
    let mut selection = HashMap::new();
    if let Some(client_id) = query.get("clientid") {
        selection.insert("client_id".to_string(), client_id.clone());
    }
    let principal = match managed_principal(&shared, &selection, &IMDS_NAMES) {
        Ok(principal) => principal,
        Err(_) => {
            return legacy_error(
                StatusCode::BAD_REQUEST,
                "No MSI found for specified ClientId/ResourceId.",
            )
        }
    };
    match issue_aad(&shared, &principal, MANAGED_IDENTITY_TENANT, resource) {
        Ok((token, _, expires)) => Json(json!({
            "access_token": token,
            "expires_on": expires.to_string(),
            "resource": resource,
            "token_type": "Bearer",
        }))
        .into_response(),
        Err(error) => internal(error),
    }
}

/// `POST /cloudshell/token`: Cloud Shell (form body `resource=...`).
pub(super) async fn cloud_shell(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    if let Some(status) = shared.begin(Endpoint::CloudShell) {
        return scripted(status);
    }
    if !has_metadata_header(&headers) {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "bad_request_102",
            "Required metadata header not specified",
        );
    }
    let Some(resource) = resource_of(&form) else {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "Required audience parameter not specified",
        );
    };
    let principal = match managed_principal(&shared, &HashMap::new(), &APP_SERVICE_NAMES) {
        Ok(principal) => principal,
        Err(description) => {
            return oauth_error(StatusCode::BAD_REQUEST, "invalid_request", description)
        }
    };
    match issue_aad(&shared, &principal, MANAGED_IDENTITY_TENANT, resource) {
        Ok((token, ttl, expires)) => string_fields(token, ttl, expires, resource),
        Err(error) => internal(error),
    }
}

/// `GET /sf/token` (served over TLS only): Service Fabric.
pub(super) async fn service_fabric(
    State(shared): State<Arc<Shared>>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    if let Some(status) = shared.begin(Endpoint::ServiceFabric) {
        let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        return fabric_error(status, "ServiceUnavailable", "scripted failure");
    }
    let expected = shared.knobs().app_service_header.clone();
    match headers.get("secret").and_then(|v| v.to_str().ok()) {
        None => {
            return fabric_error(
                StatusCode::UNAUTHORIZED,
                "SecretHeaderNotFound",
                "Secret is not found in the request headers.",
            )
        }
        Some(secret) if secret != expected => {
            return fabric_error(
                StatusCode::UNAUTHORIZED,
                "InvalidSecret",
                "The secret in the request headers is not valid.",
            )
        }
        Some(_) => {}
    }
    if query.get("api-version").map(String::as_str) != Some("2019-07-01-preview") {
        return fabric_error(
            StatusCode::BAD_REQUEST,
            "InvalidApiVersion",
            "The api-version is invalid.",
        );
    }
    let Some(resource) = resource_of(&query) else {
        return fabric_error(
            StatusCode::BAD_REQUEST,
            "InvalidParameter",
            "The resource parameter is missing.",
        );
    };
    let principal = match managed_principal(&shared, &HashMap::new(), &APP_SERVICE_NAMES) {
        Ok(principal) => principal,
        Err(description) => {
            return fabric_error(StatusCode::NOT_FOUND, "IdentityNotFound", description)
        }
    };
    match issue_aad(&shared, &principal, MANAGED_IDENTITY_TENANT, resource) {
        Ok((token, _, expires)) => Json(json!({
            "token_type": "Bearer",
            "access_token": token,
            "expires_on": expires,
            "resource": resource,
        }))
        .into_response(),
        Err(error) => internal(error),
    }
}
