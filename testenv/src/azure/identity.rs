//! Fake identity endpoints: IMDS, App Service and the Entra ID v2 token endpoint.
//!
//! Error bodies copy the shapes in docs/azure-auth.md 1.4 and 2.6 (`error`,
//! `error_description`, AADSTS codes). "spec N.N" below names a section of that document.

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

use super::{now, IssuedAad, ManagedIdentity, Shared, MANAGED_IDENTITY_TENANT};

/// The identity parameter names one endpoint understands.
pub(super) struct ParameterNames {
    client_id: &'static [&'static str],
    object_id: &'static [&'static str],
    resource_id: &'static [&'static str],
}

pub(super) const IMDS_NAMES: ParameterNames = ParameterNames {
    client_id: &["client_id"],
    object_id: &["object_id"],
    resource_id: &["msi_res_id"],
};

pub(super) const APP_SERVICE_NAMES: ParameterNames = ParameterNames {
    client_id: &["client_id"],
    object_id: &["principal_id", "object_id"],
    resource_id: &["mi_res_id"],
};

/// An OAuth-style error body (`error`, `error_description`), the shape IMDS, App Service, Arc
/// and Cloud Shell answer with.
pub(super) fn error(status: StatusCode, code: &str, description: &str) -> Response {
    (
        status,
        Json(json!({"error": code, "error_description": description})),
    )
        .into_response()
}

/// A scripted failure with a plausible body.
pub(super) fn scripted(status: u16) -> Response {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    error(
        status,
        "scripted",
        &format!("scripted failure {}", status.as_u16()),
    )
}

/// Reads one id of a managed identity.
type IdField = fn(&ManagedIdentity) -> &str;

/// Pick the managed identity a request names, or the `error_description` of the IMDS 400.
fn select_identity(
    system: Option<&str>,
    user_assigned: &[ManagedIdentity],
    query: &HashMap<String, String>,
    names: &ParameterNames,
) -> Result<String, &'static str> {
    let lookups: [(&[&str], IdField); 3] = [
        (names.client_id, |identity| &identity.client_id),
        (names.object_id, |identity| &identity.object_id),
        (names.resource_id, |identity| &identity.resource_id),
    ];
    let mut given = Vec::new();
    for (parameter_names, field) in lookups {
        for name in parameter_names {
            if let Some(value) = query.get(*name) {
                given.push((value.clone(), field));
            }
        }
    }
    match given.as_slice() {
        [] => match (system, user_assigned) {
            (Some(principal), _) => Ok(principal.to_string()),
            (None, [only]) => Ok(only.principal.clone()),
            (None, []) => Err("Identity not found"),
            (None, _) => Err("Multiple user assigned identities exist, please specify the clientId / resourceId of the identity in the token request"),
        },
        [(value, field)] => user_assigned
            .iter()
            .find(|identity| field(identity).eq_ignore_ascii_case(value))
            .map(|identity| identity.principal.clone())
            .ok_or("Identity not found"),
        _ => Err("Only one of client_id, object_id or msi_res_id may be specified"),
    }
}

/// The principal of the managed identity a request selects (with the knobs' identities).
pub(super) fn managed_principal(
    shared: &Shared,
    query: &HashMap<String, String>,
    names: &ParameterNames,
) -> Result<String, &'static str> {
    let knobs = shared.knobs();
    select_identity(
        knobs.system_identity.as_deref(),
        &knobs.user_assigned,
        query,
        names,
    )
}

/// Issue an AAD token for `principal` and remember it for the exchange.
pub(super) fn issue_aad(
    shared: &Shared,
    principal: &str,
    tenant: &str,
    audience: &str,
) -> anyhow::Result<(String, u64, u64)> {
    let ttl = shared.knobs().aad_token_ttl.as_secs();
    let issued_at = now();
    let expires = issued_at + ttl;
    let token = shared.signer.sign(&json!({
        "aud": audience,
        "iss": format!("https://sts.windows.net/{tenant}/"),
        "iat": issued_at,
        "nbf": issued_at,
        "exp": expires,
        "oid": format!("{principal}-object-id"),
        "sub": principal,
        "tid": tenant,
        "jti": super::token_service::random_id(),
    }))?;
    shared.knobs().issued_aad.insert(
        token.clone(),
        IssuedAad {
            principal: principal.to_string(),
            tenant: tenant.to_string(),
            audience: audience.trim_end_matches('/').to_string(),
            expires,
        },
    );
    Ok((token, ttl, expires))
}

/// A failure of the fake itself.
pub(super) fn internal(error: anyhow::Error) -> Response {
    (StatusCode::INTERNAL_SERVER_ERROR, format!("{error:#}")).into_response()
}

/// Whether the request carries `Metadata: true` (IMDS, Arc and Cloud Shell require it).
pub(super) fn has_metadata_header(headers: &HeaderMap) -> bool {
    headers
        .get("Metadata")
        .and_then(|value| value.to_str().ok())
        == Some("true")
}

/// The checks an IMDS-style endpoint (IMDS, the Arc agent) makes before it looks at the
/// identity: `Metadata: true` (refused with `metadata_code`, which differs between the two), an
/// api-version of at least `min_version`, a non-empty resource. The resource, or the 400.
pub(super) fn imds_style_resource<'q>(
    headers: &HeaderMap,
    query: &'q HashMap<String, String>,
    metadata_code: &str,
    min_version: &str,
) -> Result<&'q str, Box<Response>> {
    if !has_metadata_header(headers) {
        return Err(Box::new(error(
            StatusCode::BAD_REQUEST,
            metadata_code,
            "Required metadata header not specified",
        )));
    }
    if query
        .get("api-version")
        .is_none_or(|version| version.as_str() < min_version)
    {
        return Err(Box::new(error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "Invalid or missing api-version",
        )));
    }
    resource_of(query).ok_or_else(|| {
        Box::new(error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "Required audience parameter not specified",
        ))
    })
}

/// The non-empty `resource` parameter of a query or form.
pub(super) fn resource_of(parameters: &HashMap<String, String>) -> Option<&str> {
    parameters
        .get("resource")
        .map(String::as_str)
        .filter(|resource| !resource.is_empty())
}

/// `GET /metadata/identity/oauth2/token` (spec 1.1-1.4).
pub(super) async fn imds(
    State(shared): State<Arc<Shared>>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    if let Some(status) = shared.begin(super::Endpoint::Imds) {
        return scripted(status);
    }
    let resource = match imds_style_resource(&headers, &query, "bad_request_102", "2018-02-01") {
        Ok(resource) => resource,
        Err(refusal) => return *refusal,
    };
    let selected = {
        let knobs = shared.knobs();
        select_identity(
            knobs.system_identity.as_deref(),
            &knobs.user_assigned,
            &query,
            &IMDS_NAMES,
        )
    };
    let principal = match selected {
        Ok(principal) => principal,
        Err(description) => return error(StatusCode::BAD_REQUEST, "invalid_request", description),
    };
    let (token, ttl, expires) =
        match issue_aad(&shared, &principal, MANAGED_IDENTITY_TENANT, resource) {
            Ok(issued) => issued,
            Err(error) => return internal(error),
        };
    let numeric = shared.knobs().imds_numeric_fields;
    let number = |value: u64| {
        if numeric {
            json!(value)
        } else {
            json!(value.to_string())
        }
    };
    Json(json!({
        "access_token": token,
        "client_id": format!("{principal}-client-id"),
        "expires_in": number(ttl),
        "expires_on": number(expires),
        "ext_expires_in": number(ttl),
        "not_before": number(expires - ttl),
        "refresh_token": "",
        "resource": resource,
        "token_type": "Bearer",
    }))
    .into_response()
}

/// `GET /msi/token`: App Service 2019-08-01 (spec 2.2).
pub(super) async fn app_service(
    State(shared): State<Arc<Shared>>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    if let Some(status) = shared.begin(super::Endpoint::AppService) {
        return scripted(status);
    }
    let expected = shared.knobs().app_service_header.clone();
    if headers
        .get("X-IDENTITY-HEADER")
        .and_then(|value| value.to_str().ok())
        != Some(expected.as_str())
    {
        return (
            StatusCode::UNAUTHORIZED,
            Json(json!({"statusCode": 401, "message": "Unauthorized"})),
        )
            .into_response();
    }
    if query.get("api-version").map(String::as_str) != Some("2019-08-01") {
        return error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "api-version must be 2019-08-01",
        );
    }
    let Some(resource) = resource_of(&query) else {
        return error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "resource is required",
        );
    };
    let selected = {
        let knobs = shared.knobs();
        select_identity(
            knobs.system_identity.as_deref(),
            &knobs.user_assigned,
            &query,
            &APP_SERVICE_NAMES,
        )
    };
    let principal = match selected {
        Ok(principal) => principal,
        Err(description) => return error(StatusCode::BAD_REQUEST, "invalid_request", description),
    };
    match issue_aad(&shared, &principal, MANAGED_IDENTITY_TENANT, resource) {
        Ok((token, _, expires)) => Json(json!({
            "access_token": token,
            "expires_on": expires.to_string(),
            "resource": resource,
            "token_type": "Bearer",
            "client_id": format!("{principal}-client-id"),
        }))
        .into_response(),
        Err(error) => internal(error),
    }
}

fn entra_error(status: StatusCode, code: &str, aadsts: u32, text: &str) -> Response {
    (
        status,
        Json(json!({
            "error": code,
            "error_description": format!("AADSTS{aadsts}: {text}"),
            "error_codes": [aadsts],
            "trace_id": "00000000-0000-0000-0000-000000000000",
        })),
    )
        .into_response()
}

/// `POST /{tenant}/oauth2/v2.0/token`: client secret or client assertion (spec 2.6, 2.7).
pub(super) async fn entra(
    State(shared): State<Arc<Shared>>,
    Path(tenant): Path<String>,
    body: String,
) -> Response {
    if let Some(status) = shared.begin(super::Endpoint::Entra) {
        return scripted(status);
    }
    let form: HashMap<String, String> = url::form_urlencoded::parse(body.as_bytes())
        .into_owned()
        .collect();
    let field = |name: &str| form.get(name).map(String::as_str).unwrap_or("");
    if field("grant_type") != "client_credentials" {
        return entra_error(
            StatusCode::BAD_REQUEST,
            "unsupported_grant_type",
            70003,
            "The app requested an unsupported grant type",
        );
    }
    let Some(audience) = field("scope").strip_suffix("/.default") else {
        return entra_error(
            StatusCode::BAD_REQUEST,
            "invalid_scope",
            70011,
            "The provided value for scope is not valid",
        );
    };
    let client_id = field("client_id");
    let principal = {
        let mut knobs = shared.knobs();
        if let Some(assertion) = form.get("client_assertion") {
            knobs.received_assertions.push(assertion.clone());
            if field("client_assertion_type")
                != "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
            {
                return entra_error(
                    StatusCode::BAD_REQUEST,
                    "invalid_request",
                    50027,
                    "Invalid client_assertion_type",
                );
            }
            knobs
                .federated
                .iter()
                .find(|credential| {
                    credential.tenant == tenant
                        && credential.client_id == client_id
                        && &credential.assertion == assertion
                })
                .map(|credential| credential.principal.clone())
        } else {
            knobs
                .service_principals
                .iter()
                .find(|principal| {
                    principal.tenant == tenant
                        && principal.client_id == client_id
                        && principal.secret == field("client_secret")
                })
                .map(|principal| principal.principal.clone())
        }
    };
    let Some(principal) = principal else {
        return entra_error(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            7000215,
            "Invalid client secret or assertion provided",
        );
    };
    match issue_aad(&shared, &principal, &tenant, audience) {
        Ok((token, ttl, _)) => Json(json!({
            "token_type": "Bearer",
            "expires_in": ttl,
            "ext_expires_in": ttl,
            "access_token": token,
        }))
        .into_response(),
        Err(error) => internal(error),
    }
}
