//! A service principal with a client secret (`AZURE_CLIENT_ID`, `AZURE_TENANT_ID`,
//! `AZURE_CLIENT_SECRET`), the first source of every DefaultAzureCredential chain (spec 2.7).
//!
//! ACR would also take `appId:secret` as Basic credentials, but exchanging for an AAD token keeps
//! one code path for every Azure identity and lets the registry see a normal AAD principal.

use super::cache::TokenCache;
use super::entra::{scope_of, TokenEndpoint};
use super::env::{Env, AZURE_CLIENT_ID, AZURE_CLIENT_SECRET, AZURE_TENANT_ID};
use super::retry::RetryPolicy;
use super::{AadToken, AadTokenSource, Error};
use crate::secret::Secret;

/// A service principal token, cached until shortly before it expires.
#[derive(Debug)]
pub struct ClientSecretSource {
    client_id: String,
    tenant: String,
    secret: Secret,
    scope: String,
    endpoint: TokenEndpoint,
    cache: TokenCache,
}

impl ClientSecretSource {
    /// The service principal described by the environment, for `audience`.
    pub fn new(env: &Env, audience: &str) -> Result<Self, Error> {
        Self::with_policy(env, audience, RetryPolicy::default())
    }

    /// As [`ClientSecretSource::new`] with an explicit retry policy.
    pub fn with_policy(env: &Env, audience: &str, policy: RetryPolicy) -> Result<Self, Error> {
        let require = |name| {
            env.require(
                name,
                "a service principal",
                &[AZURE_CLIENT_ID, AZURE_TENANT_ID, AZURE_CLIENT_SECRET],
            )
        };
        let client_id = require(AZURE_CLIENT_ID)?.to_string();
        let tenant = require(AZURE_TENANT_ID)?.to_string();
        let secret = Secret::new(require(AZURE_CLIENT_SECRET)?);
        let endpoint = TokenEndpoint::new(env, &tenant, policy)?;
        Ok(Self {
            client_id,
            tenant,
            secret,
            scope: scope_of(audience),
            endpoint,
            cache: TokenCache::default(),
        })
    }

    async fn fetch(&self) -> Result<AadToken, Error> {
        self.endpoint
            .request(&[
                ("client_id", &self.client_id),
                ("client_secret", self.secret.expose()),
                ("grant_type", "client_credentials"),
                ("scope", &self.scope),
            ])
            .await
    }
}

#[async_trait::async_trait]
impl AadTokenSource for ClientSecretSource {
    fn describe(&self) -> String {
        format!(
            "service principal (client_id={}, tenant {}, authority {})",
            self.client_id,
            self.tenant,
            crate::http::redact_url(self.endpoint.url())
        )
    }

    fn tenant(&self) -> Option<String> {
        Some(self.tenant.clone())
    }

    async fn aad_token(&self) -> Result<AadToken, Error> {
        self.cache.get_or_fetch(|| self.fetch()).await
    }
}
