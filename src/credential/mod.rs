//! Where credentials for a registry come from, and what they are.
//!
//! [`resolve`] walks the sources in the order users expect from docker, podman and the Azure
//! SDKs: command line, then (for Azure Container Registry hosts) the Azure identity chain, then
//! anonymous. It says which source answered, never what the secret is.

use std::sync::Arc;

use crate::azure::{self, AadTokenSource, UserAssignedId};
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
    /// An Azure identity chosen automatically for an ACR host: when no identity endpoint is
    /// reachable (not on Azure), the pull goes on anonymously.
    AzureOrAnonymous(Arc<dyn AadTokenSource>),
}

impl Credential {
    /// A short description of the kind, for logs (never the secret).
    pub fn kind(&self) -> String {
        match self {
            Credential::Anonymous => "anonymous".to_string(),
            Credential::Basic { username, .. } => format!("basic (user {username})"),
            Credential::RefreshToken(_) => "identity token".to_string(),
            Credential::Azure(source) | Credential::AzureOrAnonymous(source) => source.describe(),
        }
    }
}

/// What the command line asked for.
#[derive(Debug, Clone, Default)]
pub struct CredentialOptions {
    /// `--username` with the password from stdin.
    pub basic: Option<(String, Secret)>,
    /// `--identity`: use the Azure identity chain whatever the registry.
    pub identity: bool,
    /// `--client-id` / `--object-id` / `--resource-id`.
    pub user_assigned: Option<UserAssignedId>,
    /// `--azure-audience` (default [`azure::ACR_AUDIENCE`]).
    pub audience: Option<String>,
}

/// A credential and the source it came from (for `-v`).
#[derive(Debug, Clone)]
pub struct ResolvedCredential {
    /// The credential.
    pub credential: Credential,
    /// Where it came from, e.g. `command line`, `Azure identity chain`.
    pub source: String,
}

/// Why no credential could be formed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The Azure identity configuration is unusable.
    #[error("cannot use an Azure identity for {registry}")]
    Azure {
        /// The registry.
        registry: String,
        /// Why.
        #[source]
        source: azure::Error,
    },
}

/// Choose the credential for `registry` (host[:port]).
pub fn resolve(
    registry: &str,
    options: &CredentialOptions,
    env: &azure::Env,
) -> Result<ResolvedCredential, Error> {
    if let Some((username, password)) = &options.basic {
        return Ok(ResolvedCredential {
            credential: Credential::Basic {
                username: username.clone(),
                password: password.clone(),
            },
            source: "command line (--username)".into(),
        });
    }
    let audience = options.audience.as_deref().unwrap_or(azure::ACR_AUDIENCE);
    let azure_error = |source| Error::Azure {
        registry: registry.to_string(),
        source,
    };
    if options.identity || options.user_assigned.is_some() {
        let source = azure::default_chain(env, options.user_assigned.clone(), audience)
            .map_err(azure_error)?;
        return Ok(ResolvedCredential {
            source: format!("Azure identity chain (--identity): {}", source.describe()),
            credential: Credential::Azure(source),
        });
    }
    if azure::is_acr_host(registry) {
        let source = azure::default_chain(env, None, audience).map_err(azure_error)?;
        return Ok(ResolvedCredential {
            source: format!("Azure identity chain (ACR host): {}", source.describe()),
            credential: Credential::AzureOrAnonymous(source),
        });
    }
    Ok(ResolvedCredential {
        credential: Credential::Anonymous,
        source: "anonymous (no credentials configured)".into(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn order_and_acr_detection() {
        let env =
            azure::Env::from_pairs([("AZURE_POD_IDENTITY_AUTHORITY_HOST", "http://127.0.0.1:9")]);
        let anonymous = resolve("127.0.0.1:5000", &CredentialOptions::default(), &env).unwrap();
        assert!(matches!(anonymous.credential, Credential::Anonymous));
        let acr = resolve("myregistry.azurecr.io", &CredentialOptions::default(), &env).unwrap();
        assert!(matches!(acr.credential, Credential::AzureOrAnonymous(_)));
        let lookalike = resolve(
            "azurecr.io.evil.example",
            &CredentialOptions::default(),
            &env,
        )
        .unwrap();
        assert!(matches!(lookalike.credential, Credential::Anonymous));
        let forced = CredentialOptions {
            identity: true,
            ..CredentialOptions::default()
        };
        let forced = resolve("127.0.0.1:5000", &forced, &env).unwrap();
        assert!(matches!(forced.credential, Credential::Azure(_)));
        let basic = CredentialOptions {
            basic: Some(("u".into(), Secret::new("p"))),
            identity: true,
            ..CredentialOptions::default()
        };
        let basic = resolve("myregistry.azurecr.io", &basic, &env).unwrap();
        assert!(matches!(basic.credential, Credential::Basic { .. }));
        assert!(!format!("{basic:?}").contains("\"p\""));
    }
}
