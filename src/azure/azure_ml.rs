//! Managed identity on Azure Machine Learning compute (`MSI_ENDPOINT` + `MSI_SECRET`).
//!
//! Azure ML still serves the legacy App Service API: `GET ${MSI_ENDPOINT}?api-version=2017-09-01
//! &resource=..[&clientid=..]` with the secret in a `secret` header (spec 2.2; MSAL Go
//! `azure_ml.go`). Only a client id selects a user-assigned identity there; object and resource
//! ids are refused rather than silently ignored.

use url::Url;

use super::endpoint::{self, ManagedEndpoint};
use super::env::{Env, MSI_ENDPOINT, MSI_SECRET};
use super::retry::{RetryPolicy, RetryStatuses};
use super::{AadToken, AadTokenSource, Error, UserAssignedId};
use crate::secret::Secret;

const API_VERSION: &str = "2017-09-01";

/// A managed identity token from the Azure ML compute's endpoint.
#[derive(Debug)]
pub struct AzureMlSource {
    endpoint: ManagedEndpoint,
    secret: Secret,
    selector: Option<UserAssignedId>,
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
        let require = |name| {
            env.require(
                name,
                "Azure ML managed identity",
                &[MSI_ENDPOINT, MSI_SECRET],
            )
        };
        let raw = require(MSI_ENDPOINT)?;
        let secret = Secret::new(require(MSI_SECRET)?);
        let url = endpoint::parse(raw, MSI_ENDPOINT)?;
        let selector = endpoint::selector_or_env(selector, env);
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
        let endpoint = ManagedEndpoint::direct(url, audience, policy, RetryStatuses::Service)?;
        Ok(Self {
            endpoint,
            secret,
            selector,
        })
    }

    fn request_url(&self) -> Url {
        let selector = self
            .selector
            .as_ref()
            .map(|selector| ("clientid", selector.value()));
        self.endpoint.request_url(API_VERSION, selector)
    }

    async fn fetch(&self) -> Result<AadToken, Error> {
        let url = self.request_url();
        let secret = self.secret.expose();
        self.endpoint
            .request(
                |http| http.get(url.clone()).header("secret", secret),
                self.selector.as_ref(),
            )
            .await
    }
}

#[async_trait::async_trait]
impl AadTokenSource for AzureMlSource {
    fn describe(&self) -> String {
        format!(
            "managed identity (Azure ML endpoint {}, {})",
            self.endpoint.shown(),
            endpoint::identity_name(self.selector.as_ref())
        )
    }

    async fn aad_token(&self) -> Result<AadToken, Error> {
        self.endpoint.cached(|| self.fetch()).await
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
