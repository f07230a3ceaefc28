//! AKS workload identity: a projected service-account token exchanged at Entra ID.
//!
//! The webhook injects `AZURE_FEDERATED_TOKEN_FILE`, `AZURE_CLIENT_ID`, `AZURE_TENANT_ID` and
//! `AZURE_AUTHORITY_HOST` (spec 2.6). Kubelet rotates the file, so it is read again on every
//! fetch rather than once; fetches happen only when the cached AAD token nears expiry, so this
//! costs one small read an hour.

use std::path::PathBuf;

use super::cache::TokenCache;
use super::entra::{scope_of, TokenEndpoint};
use super::env::{Env, AZURE_CLIENT_ID, AZURE_FEDERATED_TOKEN_FILE, AZURE_TENANT_ID};
use super::retry::RetryPolicy;
use super::{AadToken, AadTokenSource, Error};

const ASSERTION_TYPE: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// A workload identity token, cached until shortly before it expires.
#[derive(Debug)]
pub struct WorkloadIdentitySource {
    token_file: PathBuf,
    client_id: String,
    tenant: String,
    scope: String,
    endpoint: TokenEndpoint,
    cache: TokenCache,
}

impl WorkloadIdentitySource {
    /// The workload identity described by the environment, for `audience`.
    pub fn new(env: &Env, audience: &str) -> Result<Self, Error> {
        Self::with_policy(env, audience, RetryPolicy::default())
    }

    /// As [`WorkloadIdentitySource::new`] with an explicit retry policy.
    pub fn with_policy(env: &Env, audience: &str, policy: RetryPolicy) -> Result<Self, Error> {
        let require = |name| {
            env.require(
                name,
                "workload identity",
                &[AZURE_FEDERATED_TOKEN_FILE, AZURE_CLIENT_ID, AZURE_TENANT_ID],
            )
        };
        let token_file = PathBuf::from(require(AZURE_FEDERATED_TOKEN_FILE)?);
        let client_id = require(AZURE_CLIENT_ID)?.to_string();
        let tenant = require(AZURE_TENANT_ID)?.to_string();
        let endpoint = TokenEndpoint::new(env, &tenant, policy)?;
        Ok(Self {
            token_file,
            client_id,
            tenant,
            scope: scope_of(audience),
            endpoint,
            cache: TokenCache::default(),
        })
    }

    async fn fetch(&self) -> Result<AadToken, Error> {
        let assertion = tokio::fs::read_to_string(&self.token_file)
            .await
            .map_err(|source| Error::FederatedTokenFile {
                path: self.token_file.clone(),
                source,
            })?;
        let assertion = assertion.trim();
        if assertion.is_empty() {
            return Err(Error::FederatedTokenFile {
                path: self.token_file.clone(),
                source: std::io::Error::new(std::io::ErrorKind::InvalidData, "the file is empty"),
            });
        }
        self.endpoint
            .request(&[
                ("client_assertion", assertion),
                ("client_assertion_type", ASSERTION_TYPE),
                ("client_id", &self.client_id),
                ("grant_type", "client_credentials"),
                ("scope", &self.scope),
            ])
            .await
    }
}

#[async_trait::async_trait]
impl AadTokenSource for WorkloadIdentitySource {
    fn describe(&self) -> String {
        format!(
            "workload identity (client_id={}, tenant {}, token file {}, authority {})",
            self.client_id,
            self.tenant,
            self.token_file.display(),
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
