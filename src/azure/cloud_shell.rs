//! Managed identity in Azure Cloud Shell (`MSI_ENDPOINT` without `MSI_SECRET`).
//!
//! Cloud Shell's endpoint takes a form POST: `resource=<audience>` with `Metadata: true`
//! (spec 2.4; MSAL Go `cloud_shell.go`). It answers for the signed-in user's identity only, so
//! user-assigned identities are refused, as the SDKs do.

use super::endpoint::{self, ManagedEndpoint};
use super::env::{Env, MSI_ENDPOINT};
use super::retry::{RetryPolicy, RetryStatuses};
use super::{AadToken, AadTokenSource, Error, UserAssignedId};

/// A token from the Cloud Shell endpoint.
#[derive(Debug)]
pub struct CloudShellSource {
    endpoint: ManagedEndpoint,
}

impl CloudShellSource {
    /// The endpoint from `MSI_ENDPOINT`. A user-assigned `selector` (or `AZURE_CLIENT_ID`) is an
    /// error.
    pub fn new(env: &Env, selector: Option<UserAssignedId>, audience: &str) -> Result<Self, Error> {
        Self::with_policy(env, selector, audience, RetryPolicy::default())
    }

    /// As [`CloudShellSource::new`] with an explicit retry policy.
    pub fn with_policy(
        env: &Env,
        selector: Option<UserAssignedId>,
        audience: &str,
        policy: RetryPolicy,
    ) -> Result<Self, Error> {
        endpoint::refuse_selector("Cloud Shell", selector, env)?;
        let raw = env.require(
            MSI_ENDPOINT,
            "Cloud Shell managed identity",
            &[MSI_ENDPOINT],
        )?;
        let url = endpoint::parse(raw, MSI_ENDPOINT)?;
        let endpoint = ManagedEndpoint::direct(url, audience, policy, RetryStatuses::Service)?;
        Ok(Self { endpoint })
    }

    async fn fetch(&self) -> Result<AadToken, Error> {
        let form = [("resource", self.endpoint.resource())];
        let url = self.endpoint.url();
        self.endpoint
            .request(
                |http| {
                    http.post(url.clone())
                        .header("Metadata", "true")
                        .form(&form)
                },
                None,
            )
            .await
    }
}

#[async_trait::async_trait]
impl AadTokenSource for CloudShellSource {
    fn describe(&self) -> String {
        format!(
            "managed identity (Cloud Shell endpoint {})",
            self.endpoint.shown()
        )
    }

    async fn aad_token(&self) -> Result<AadToken, Error> {
        self.endpoint.cached(|| self.fetch()).await
    }
}
