//! Managed identity on App Service, Functions and Container Apps (`IDENTITY_ENDPOINT`).
//!
//! The platform runs a local token endpoint and hands its URL and a rotating SSRF secret to the
//! process in `IDENTITY_ENDPOINT` and `IDENTITY_HEADER` (spec 2.2). The identity parameters differ
//! from IMDS: `principal_id` for an object id and `mi_res_id` for a resource id (MSAL Go sends
//! `mi_res_id` here; the endpoint ignores `msi_res_id` and would silently use the
//! system-assigned identity instead).

use std::sync::atomic::AtomicBool;

use url::Url;

use super::cache::TokenCache;
use super::env::{Env, IDENTITY_ENDPOINT, IDENTITY_HEADER};
use super::retry::{self, RetryPolicy, RetryStatuses};
use super::{resource_of, AadToken, AadTokenSource, Error, UserAssignedId};
use crate::secret::Secret;

const API_VERSION: &str = "2019-08-01";

/// A managed identity token from the App Service identity endpoint.
#[derive(Debug)]
pub struct AppServiceSource {
    endpoint: Url,
    header: Secret,
    resource: String,
    selector: Option<UserAssignedId>,
    http: reqwest::Client,
    policy: RetryPolicy,
    reached: AtomicBool,
    cache: TokenCache,
}

impl AppServiceSource {
    /// The endpoint from `IDENTITY_ENDPOINT` and `IDENTITY_HEADER`, with the user-assigned
    /// identity `selector` or `AZURE_CLIENT_ID` as a client id.
    pub fn new(env: &Env, selector: Option<UserAssignedId>, audience: &str) -> Result<Self, Error> {
        Self::with_policy(env, selector, audience, RetryPolicy::default())
    }

    /// As [`AppServiceSource::new`] with an explicit retry policy.
    pub fn with_policy(
        env: &Env,
        selector: Option<UserAssignedId>,
        audience: &str,
        policy: RetryPolicy,
    ) -> Result<Self, Error> {
        let missing = |name: &str| {
            Error::Configuration {
            detail: format!("{name} is not set (App Service managed identity needs {IDENTITY_ENDPOINT} and {IDENTITY_HEADER})"),
        }
        };
        let raw_endpoint = env
            .get(IDENTITY_ENDPOINT)
            .ok_or_else(|| missing(IDENTITY_ENDPOINT))?;
        let header = env
            .get(IDENTITY_HEADER)
            .ok_or_else(|| missing(IDENTITY_HEADER))?;
        let endpoint = super::identity_endpoint(raw_endpoint, IDENTITY_ENDPOINT)?;
        let selector = super::selector_or_env(selector, env);
        let http = super::identity_http_client(policy.connect_timeout, &endpoint)?;
        Ok(Self {
            endpoint,
            header: Secret::new(header),
            resource: resource_of(audience),
            selector,
            http,
            policy,
            reached: AtomicBool::new(false),
            cache: TokenCache::default(),
        })
    }

    fn request_url(&self) -> Url {
        super::identity_request_url(
            &self.endpoint,
            API_VERSION,
            &self.resource,
            self.selector.as_ref(),
            &super::SelectorNames {
                object_id: "principal_id",
                resource_id: "mi_res_id",
            },
        )
    }

    async fn fetch(&self) -> Result<AadToken, Error> {
        let url = self.request_url();
        let answer = retry::send(
            || {
                self.http
                    .get(url.clone())
                    .header("X-IDENTITY-HEADER", self.header.expose())
            },
            &self.endpoint,
            &self.policy,
            RetryStatuses::Service,
            &self.reached,
        )
        .await?;
        super::token_from_answer(&self.endpoint, &answer, self.selector.as_ref())
    }
}

#[async_trait::async_trait]
impl AadTokenSource for AppServiceSource {
    fn describe(&self) -> String {
        let identity = match &self.selector {
            Some(selector) => selector.to_string(),
            None => "system-assigned".to_string(),
        };
        format!(
            "managed identity (App Service endpoint {}, {identity})",
            crate::http::redact_url(&self.endpoint)
        )
    }

    async fn aad_token(&self) -> Result<AadToken, Error> {
        self.cache.get_or_fetch(|| self.fetch()).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_url_uses_app_service_parameter_names() {
        let env = Env::from_pairs([
            (IDENTITY_ENDPOINT, "http://127.0.0.1:41741/msi/token"),
            (IDENTITY_HEADER, "h"),
        ]);
        let make = |selector| {
            AppServiceSource::new(
                &env,
                selector,
                "https://containerregistry.azure.net/.default",
            )
            .unwrap()
        };
        let url = make(None).request_url();
        assert_eq!(
            url.as_str(),
            "http://127.0.0.1:41741/msi/token?api-version=2019-08-01&resource=https%3A%2F%2Fcontainerregistry.azure.net"
        );
        let url = make(Some(UserAssignedId::ObjectId("o".into()))).request_url();
        assert!(url.as_str().ends_with("&principal_id=o"), "{url}");
        let url = make(Some(UserAssignedId::ResourceId("r".into()))).request_url();
        assert!(url.as_str().ends_with("&mi_res_id=r"), "{url}");
        let url = make(Some(UserAssignedId::ClientId("c".into()))).request_url();
        assert!(url.as_str().ends_with("&client_id=c"), "{url}");
    }

    #[test]
    fn header_never_prints() {
        let env = Env::from_pairs([
            (IDENTITY_ENDPOINT, "http://127.0.0.1:1/t"),
            (IDENTITY_HEADER, "ssrf-secret"),
        ]);
        let source = AppServiceSource::new(&env, None, "a").unwrap();
        assert!(!format!("{source:?} {}", source.describe()).contains("ssrf-secret"));
    }
}
