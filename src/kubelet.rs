//! acrpull as a kubelet image credential provider (`acrpull kubelet-credential-provider`, or the
//! binary run as `acrpull-credential-provider`), so a Kubernetes node pulls from Azure Container
//! Registry with its managed identity and no `azure.json` (what cloud-provider-azure's
//! `acr-credential-provider` needs).
//!
//! The kubelet writes a `CredentialProviderRequest` (`credentialprovider.kubelet.k8s.io/v1`,
//! `v1beta1` accepted too: the shape is the same) on standard input and reads a
//! `CredentialProviderResponse` from standard output (kubelet `pkg/apis/credentialprovider/v1`
//! types). The answer uses the credential helper's rule and token ([`super::credential_helper`]):
//! only ACR login servers and the hosts in `ACRPULL_AZURE_REGISTRIES` get the identity, as the
//! null-GUID user with an ACR refresh token, cached per registry until a margin before the
//! token expires. Any other image gets a response with no credentials, so the kubelet pulls it
//! as it would without the provider.

use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};

use crate::azure::{self, AzureRegistries};
use crate::credential_helper::{self, NULL_GUID_USERNAME};
use crate::registry::ClientOptions;

/// The API version the kubelet sends since Kubernetes 1.26.
pub const API_VERSION_V1: &str = "credentialprovider.kubelet.k8s.io/v1";
/// The API version of Kubernetes 1.24 and 1.25 (same fields).
pub const API_VERSION_V1BETA1: &str = "credentialprovider.kubelet.k8s.io/v1beta1";
/// How long before the ACR refresh token expires the kubelet stops using it.
pub const CACHE_MARGIN: Duration = Duration::from_secs(15 * 60);
/// The lifetime assumed for a refresh token without a readable `exp` (ACR documents 3 hours).
const ASSUMED_LIFETIME: Duration = Duration::from_secs(3 * 3600);

/// The request, as the kubelet writes it (fields acrpull does not use are ignored:
/// `serviceAccountToken` and `serviceAccountAnnotations` of newer kubelets).
#[derive(Debug, Deserialize)]
struct Request {
    #[serde(rename = "apiVersion")]
    api_version: Option<String>,
    kind: Option<String>,
    image: Option<String>,
}

/// One registry's credentials in the response.
#[derive(Debug, Serialize)]
struct AuthConfig {
    username: String,
    password: String,
}

/// The response (field names and values as kubelet's `CredentialProviderResponse`).
#[derive(Debug, Serialize)]
struct Response {
    #[serde(rename = "apiVersion")]
    api_version: String,
    kind: &'static str,
    #[serde(rename = "cacheKeyType")]
    cache_key_type: &'static str,
    #[serde(rename = "cacheDuration", skip_serializing_if = "Option::is_none")]
    cache_duration: Option<String>,
    auth: std::collections::BTreeMap<String, AuthConfig>,
}

/// Why no response could be given (the kubelet then logs the message and pulls without
/// credentials from this provider).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Standard input is not a `CredentialProviderRequest`.
    #[error("standard input is not a kubelet CredentialProviderRequest: {0}")]
    BadRequest(String),
    /// The kubelet speaks an API version this provider does not.
    #[error(
        "unsupported apiVersion `{0}` (supported: {API_VERSION_V1}, {API_VERSION_V1BETA1}); \
         set apiVersion: {API_VERSION_V1} in the kubelet's CredentialProviderConfig"
    )]
    UnsupportedApiVersion(String),
    /// The image is not a valid reference.
    #[error("the requested image `{image}` is not a valid image reference")]
    Image {
        /// The image from the request.
        image: String,
        /// Why.
        #[source]
        source: crate::reference::ReferenceError,
    },
    /// The Azure identity or the ACR exchange failed.
    #[error("no ACR credentials for {registry}")]
    Credentials {
        /// The registry host.
        registry: String,
        /// Why.
        #[source]
        source: credential_helper::Error,
    },
}

/// Answer the request in `input`; returns the JSON response to print.
pub async fn run(
    input: &[u8],
    env: &azure::Env,
    registries: &AzureRegistries,
    options: &ClientOptions,
) -> Result<String, Error> {
    // serde's messages can quote the input, which may hold a service account token.
    let request: Request = serde_json::from_slice(input).map_err(|error| {
        Error::BadRequest(format!(
            "invalid JSON ({:?} error at line {}, column {})",
            error.classify(),
            error.line(),
            error.column()
        ))
    })?;
    let api_version = request
        .api_version
        .ok_or_else(|| Error::BadRequest("no apiVersion".into()))?;
    if api_version != API_VERSION_V1 && api_version != API_VERSION_V1BETA1 {
        return Err(Error::UnsupportedApiVersion(crate::http::excerpt(
            &api_version,
        )));
    }
    if request.kind.as_deref() != Some("CredentialProviderRequest") {
        return Err(Error::BadRequest(
            "kind is not CredentialProviderRequest".into(),
        ));
    }
    let image = request
        .image
        .filter(|image| !image.is_empty())
        .ok_or_else(|| Error::BadRequest("no image".into()))?;
    let reference: crate::Reference = image.parse().map_err(|source| Error::Image {
        image: crate::http::excerpt(&image),
        source,
    })?;
    let registry = reference.registry().to_ascii_lowercase();
    let mut response = Response {
        api_version,
        kind: "CredentialProviderResponse",
        cache_key_type: "Registry",
        cache_duration: None,
        auth: Default::default(),
    };
    if registries.serves(&registry) {
        match credential_helper::get(&registry, env, registries, options).await {
            Ok(refresh) => {
                let lifetime = crate::secret::jwt_expiry(refresh.expose())
                    .map(|expiry| expiry.duration_since(SystemTime::now()).unwrap_or_default())
                    .unwrap_or(ASSUMED_LIFETIME);
                response.cache_duration = Some(go_duration(lifetime.saturating_sub(CACHE_MARGIN)));
                response.auth.insert(
                    registry.clone(),
                    AuthConfig {
                        username: NULL_GUID_USERNAME.to_string(),
                        password: refresh.expose().to_string(),
                    },
                );
            }
            // A registry without the ACR token exchange: nothing to offer.
            Err(credential_helper::Error::NotFound { .. }) => {}
            Err(source) => return Err(Error::Credentials { registry, source }),
        }
    }
    let mut json =
        serde_json::to_string(&response).map_err(|error| Error::BadRequest(error.to_string()))?;
    json.push('\n');
    Ok(json)
}

/// A duration as Go's `time.Duration.String` writes it (`metav1.Duration` parses that form),
/// in whole seconds: `2h45m0s`, `59m30s`, `0s`.
fn go_duration(duration: Duration) -> String {
    let seconds = duration.as_secs();
    let (hours, minutes, seconds) = (seconds / 3600, seconds / 60 % 60, seconds % 60);
    match (hours, minutes) {
        (0, 0) => format!("{seconds}s"),
        (0, _) => format!("{minutes}m{seconds}s"),
        _ => format!("{hours}h{minutes}m{seconds}s"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_durations() {
        assert_eq!(go_duration(Duration::from_secs(0)), "0s");
        assert_eq!(go_duration(Duration::from_secs(59)), "59s");
        assert_eq!(go_duration(Duration::from_secs(3570)), "59m30s");
        assert_eq!(go_duration(Duration::from_secs(9900)), "2h45m0s");
        assert_eq!(go_duration(Duration::from_millis(1999)), "1s");
    }

    async fn answer(input: &str) -> Result<String, Error> {
        run(
            input.as_bytes(),
            &azure::Env::default(),
            &AzureRegistries::default(),
            &ClientOptions::default(),
        )
        .await
    }

    #[tokio::test]
    async fn other_registries_get_an_empty_answer_in_the_request_version() {
        for version in [API_VERSION_V1, API_VERSION_V1BETA1] {
            let input = format!(
                r#"{{"kind":"CredentialProviderRequest","apiVersion":"{version}","image":"docker.io/library/nginx:1.27"}}"#
            );
            let output: serde_json::Value =
                serde_json::from_str(&answer(&input).await.unwrap()).unwrap();
            assert_eq!(output["apiVersion"], version);
            assert_eq!(output["kind"], "CredentialProviderResponse");
            assert_eq!(output["cacheKeyType"], "Registry");
            assert_eq!(output["auth"], serde_json::json!({}));
        }
    }

    #[tokio::test]
    async fn malformed_requests_are_errors_without_echoing_input() {
        let cases = [
            (
                r#"{"kind":"CredentialProviderRequest","apiVersion":"credentialprovider.kubelet.k8s.io/v2","image":"a.azurecr.io/x"}"#,
                "unsupported apiVersion",
            ),
            (
                r#"{"kind":"CredentialProviderRequest","image":"a.azurecr.io/x"}"#,
                "no apiVersion",
            ),
            (
                r#"{"kind":"Other","apiVersion":"credentialprovider.kubelet.k8s.io/v1","image":"a.azurecr.io/x"}"#,
                "kind",
            ),
            (
                r#"{"kind":"CredentialProviderRequest","apiVersion":"credentialprovider.kubelet.k8s.io/v1"}"#,
                "no image",
            ),
            (
                r#"{"kind":"CredentialProviderRequest","apiVersion":"credentialprovider.kubelet.k8s.io/v1","image":"UPPER/Case::bad"}"#,
                "not a valid image reference",
            ),
            (
                r#"{"serviceAccountToken":"sa-token-secret","apiVersion":1"#,
                "invalid JSON",
            ),
        ];
        for (input, expected) in cases {
            let error = answer(input).await.unwrap_err().to_string();
            assert!(error.contains(expected), "{input}: {error}");
            assert!(!error.contains("sa-token-secret"), "{error}");
        }
    }
}
