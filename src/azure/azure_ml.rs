//! Managed identity on Azure Machine Learning compute (`MSI_ENDPOINT` + `MSI_SECRET`).
//!
//! Azure ML still serves the legacy App Service API: `GET ${MSI_ENDPOINT}?api-version=2017-09-01
//! &resource=..[&clientid=..]` with the secret in a `secret` header (spec 2.2; MSAL Go
//! `azure_ml.go`). Only a client id selects a user-assigned identity there; object and resource
//! ids are refused rather than silently ignored.

use std::sync::atomic::AtomicBool;

use url::Url;

use super::cache::TokenCache;
use super::env::{Env, MSI_ENDPOINT, MSI_SECRET};
use super::retry::{self, RetryPolicy, RetryStatuses};
use super::{resource_of, AadToken, AadTokenSource, Error, UserAssignedId};
use crate::secret::Secret;

const API_VERSION: &str = "2017-09-01";

/// A managed identity token from the Azure ML compute's endpoint.
#[derive(Debug)]
pub struct AzureMlSource {
    endpoint: Url,
    secret: Secret,
    resource: String,
    selector: Option<UserAssignedId>,
    http: reqwest::Client,
    policy: RetryPolicy,
    reached: AtomicBool,
    cache: TokenCache,
}

impl AzureMlSource {
    /// The endpoint from `MSI_ENDPOINT` and `MSI_SECRET`, with a user-assigned client id from
    /// `selector` or `AZURE_CLIENT_ID`.
    pub fn new(env: &Env, selector: Option<UserAssignedId>, audience: &str) -> Result<Self, Error> {
        Self::with_policy(env, selector, audience, RetryPolicy::default())
    }

    /// As [`AzureMlSource::new`] with an explicit retry policy.
    pub fn with_policy(
        env: &Env,
        selector: Option<UserAssignedId>,
        audience: &str,
        policy: RetryPolicy,
    ) -> Result<Self, Error> {
        let missing = |name: &str| {
            Error::Configuration {
            detail: format!(
                "{name} is not set (Azure ML managed identity needs {MSI_ENDPOINT} and {MSI_SECRET})"
            ),
        }
        };
        let raw = env.get(MSI_ENDPOINT).ok_or_else(|| missing(MSI_ENDPOINT))?;
        let secret = env.get(MSI_SECRET).ok_or_else(|| missing(MSI_SECRET))?;
        let endpoint = super::identity_endpoint(raw, MSI_ENDPOINT)?;
        let selector = super::selector_or_env(selector, env);
        if let Some(other @ (UserAssignedId::ObjectId(_) | UserAssignedId::ResourceId(_))) =
            &selector
        {
            return Err(Error::Configuration {
                detail: format!(
                    "Azure ML managed identity selects a user-assigned identity by client id \
                     only, not {other}; pass --client-id"
                ),
            });
        }
        let http = super::identity_http_client(policy.connect_timeout, &endpoint)?;
        Ok(Self {
            endpoint,
            secret: Secret::new(secret),
            resource: resource_of(audience),
            selector,
            http,
            policy,
            reached: AtomicBool::new(false),
            cache: TokenCache::default(),
        })
    }

    fn request_url(&self) -> Url {
        let mut url = self.endpoint.clone();
        {
            let mut query = url.query_pairs_mut();
            query
                .append_pair("api-version", API_VERSION)
                .append_pair("resource", &self.resource);
            if let Some(selector) = &self.selector {
                query.append_pair("clientid", selector.value());
            }
        }
        url
    }

    async fn fetch(&self) -> Result<AadToken, Error> {
        let url = self.request_url();
        let answer = retry::send(
            || {
                self.http
                    .get(url.clone())
                    .header("secret", self.secret.expose())
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
impl AadTokenSource for AzureMlSource {
    fn describe(&self) -> String {
        let identity = match &self.selector {
            Some(selector) => selector.to_string(),
            None => "system-assigned".to_string(),
        };
        format!(
            "managed identity (Azure ML endpoint {}, {identity})",
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

    fn env() -> Env {
        Env::from_pairs([
            (MSI_ENDPOINT, "http://127.0.0.1:1/msi/token"),
            (MSI_SECRET, "ml-secret"),
        ])
    }

    #[test]
    fn request_url_and_selectors() {
        let source = AzureMlSource::new(&env(), None, ACR).unwrap();
        assert_eq!(
            source.request_url().as_str(),
            "http://127.0.0.1:1/msi/token?api-version=2017-09-01\
             &resource=https%3A%2F%2Fcontainerregistry.azure.net"
        );
        let source =
            AzureMlSource::new(&env(), Some(UserAssignedId::ClientId("c".into())), ACR).unwrap();
        assert!(source.request_url().as_str().ends_with("&clientid=c"));
        let error = AzureMlSource::new(&env(), Some(UserAssignedId::ObjectId("o".into())), ACR)
            .unwrap_err()
            .to_string();
        assert!(error.contains("client id only"), "{error}");
        assert!(!format!("{source:?} {}", source.describe()).contains("ml-secret"));
    }

    const ACR: &str = "https://containerregistry.azure.net";
}
