//! Where credentials for a registry come from, and what they are.

use std::sync::Arc;

use crate::azure::AadTokenSource;
use crate::secret::Secret;

/// Credentials for one registry.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum Credential {
    /// No credentials: anonymous token flow or none at all.
    Anonymous,
    /// Username and password (or an ACR token with the null-GUID username).
    Basic {
        /// The user name.
        username: String,
        /// The password.
        password: Secret,
    },
    /// An OAuth2 refresh token (Docker `identitytoken`), exchanged at the token endpoint.
    RefreshToken(Secret),
    /// An Azure identity whose AAD token is exchanged at the registry's ACR token service.
    Azure(Arc<dyn AadTokenSource>),
}

impl Credential {
    /// A short description of the kind, for logs (never the secret).
    pub fn kind(&self) -> String {
        match self {
            Credential::Anonymous => "anonymous".to_string(),
            Credential::Basic { username, .. } => format!("basic (user {username})"),
            Credential::RefreshToken(_) => "identity token".to_string(),
            Credential::Azure(source) => source.describe(),
        }
    }
}
