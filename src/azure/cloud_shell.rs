//! Managed identity in Azure Cloud Shell (`MSI_ENDPOINT` without `MSI_SECRET`).
//!
//! Cloud Shell's endpoint takes a form POST: `resource=<audience>` with `Metadata: true`
//! (spec 2.4; MSAL Go `cloud_shell.go`). It answers for the signed-in user's identity only, so
//! user-assigned identities are refused, as the SDKs do.

use std::sync::atomic::AtomicBool;

use url::Url;

use super::cache::TokenCache;
use super::env::{Env, MSI_ENDPOINT};
use super::retry::{self, RetryPolicy, RetryStatuses};
use super::{resource_of, AadToken, AadTokenSource, Error, UserAssignedId};

/// A token from the Cloud Shell endpoint.
#[derive(Debug)]
pub struct CloudShellSource {
    endpoint: Url,
    resource: String,
    http: reqwest::Client,
    policy: RetryPolicy,
    reached: AtomicBool,
    cache: TokenCache,
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
        super::refuse_selector("Cloud Shell", selector, env)?;
        let raw = env.get(MSI_ENDPOINT).ok_or_else(|| Error::Configuration {
            detail: format!("{MSI_ENDPOINT} is not set (Cloud Shell managed identity needs it)"),
        })?;
        let endpoint = super::identity_endpoint(raw, MSI_ENDPOINT)?;
        let http = super::identity_http_client(policy.connect_timeout, &endpoint)?;
        Ok(Self {
            endpoint,
            resource: resource_of(audience),
            http,
            policy,
            reached: AtomicBool::new(false),
            cache: TokenCache::default(),
        })
    }

    async fn fetch(&self) -> Result<AadToken, Error> {
        let form = [("resource", self.resource.as_str())];
        let answer = retry::send(
            || {
                self.http
                    .post(self.endpoint.clone())
                    .header("Metadata", "true")
                    .form(&form)
            },
            &self.endpoint,
            &self.policy,
            RetryStatuses::Service,
            &self.reached,
        )
        .await?;
        super::token_from_answer(&self.endpoint, &answer, None)
    }
}

#[async_trait::async_trait]
impl AadTokenSource for CloudShellSource {
    fn describe(&self) -> String {
        format!(
            "managed identity (Cloud Shell endpoint {})",
            crate::http::redact_url(&self.endpoint)
        )
    }

    async fn aad_token(&self) -> Result<AadToken, Error> {
        self.cache.get_or_fetch(|| self.fetch()).await
    }
}
