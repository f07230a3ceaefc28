//! Azure identities (managed identity, workload identity, service principal) and the ACR
//! token exchange. See `shared/spec/azure-acr-auth.md`.

use std::time::SystemTime;

use crate::secret::Secret;

/// An Entra ID (AAD) access token for the registry audience.
#[derive(Debug, Clone)]
pub struct AadToken {
    /// The bearer token.
    pub token: Secret,
    /// When it stops being valid.
    pub expires_at: SystemTime,
}

/// Errors from Azure identity sources and the ACR exchange.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Placeholder until the identity sources land.
    #[error("Azure identity is not available: {0}")]
    Unavailable(String),
}

/// Something that can produce an AAD token for the ACR audience.
#[async_trait::async_trait]
pub trait AadTokenSource: Send + Sync + std::fmt::Debug {
    /// A description for `-v` and errors, e.g. `managed identity (IMDS, client_id=...)`.
    /// Never contains a secret.
    fn describe(&self) -> String;
    /// A token; implementations cache until shortly before expiry.
    async fn aad_token(&self) -> Result<AadToken, Error>;
}
pub mod acr;
