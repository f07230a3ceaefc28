//! Managed identity on App Service, Functions and Container Apps (`IDENTITY_ENDPOINT`).
//!
//! The platform runs a local token endpoint and hands its URL and a rotating SSRF secret to the
//! process in `IDENTITY_ENDPOINT` and `IDENTITY_HEADER` (spec 2.2). The identity parameters differ
//! from IMDS: `principal_id` for an object id and `mi_res_id` for a resource id (MSAL Go sends
//! `mi_res_id` here; the endpoint ignores `msi_res_id` and would silently use the
//! system-assigned identity instead).

use url::Url;

use super::endpoint::{self, ManagedEndpoint, SelectorNames};
use super::env::{Env, IDENTITY_ENDPOINT, IDENTITY_HEADER};
use super::retry::{RetryPolicy, RetryStatuses};
use super::{AadToken, AadTokenSource, Error, UserAssignedId};
use crate::secret::Secret;

const API_VERSION: &str = "2019-08-01";
/// App Service's names for the object-id and resource-id selectors.
const SELECTOR_NAMES: SelectorNames = SelectorNames {
    object_id: "principal_id",
    resource_id: "mi_res_id",
};

/// A managed identity token from the App Service identity endpoint.
#[derive(Debug)]
pub struct AppServiceSource {
    endpoint: ManagedEndpoint,
    header: Secret,
    selector: Option<UserAssignedId>,
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
        let require = |name| {
            env.require(
                name,
                "App Service managed identity",
                &[IDENTITY_ENDPOINT, IDENTITY_HEADER],
            )
        };
        let raw = require(IDENTITY_ENDPOINT)?;
        let header = Secret::new(require(IDENTITY_HEADER)?);
        let url = endpoint::parse(raw, IDENTITY_ENDPOINT)?;
        let endpoint = ManagedEndpoint::direct(url, audience, policy, RetryStatuses::Service)?;
        let selector = endpoint::selector_or_env(selector, env);
        Ok(Self {
            endpoint,
            header,
            selector,
        })
    }

    fn request_url(&self) -> Url {
        let selector = self
            .selector
            .as_ref()
            .map(|selector| SELECTOR_NAMES.pair(selector));
        self.endpoint.request_url(API_VERSION, selector)
    }

    async fn fetch(&self) -> Result<AadToken, Error> {
        let url = self.request_url();
        let header = self.header.expose();
        self.endpoint
            .request(
                |http| http.get(url.clone()).header("X-IDENTITY-HEADER", header),
                self.selector.as_ref(),
            )
            .await
    }
}

#[async_trait::async_trait]
impl AadTokenSource for AppServiceSource {
    fn describe(&self) -> String {
        format!(
            "managed identity (App Service endpoint {}, {})",
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
