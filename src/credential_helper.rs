//! acrpull as a Docker credential helper (`docker-credential-acrpull`), so docker, podman,
//! containerd/crictl, helm and oras pull from Azure Container Registry with this machine's
//! managed identity.
//!
//! `get` reads a server URL on standard input and answers
//! `{"ServerURL", "Username": "00000000-0000-0000-0000-000000000000", "Secret": <ACR refresh
//! token>}`, the pair `az acr login` hands docker (docs/azure-auth.md 3.4). The refresh token
//! comes from exchanging the Azure identity's AAD token at the registry's `/oauth2/exchange`. With
//! `"credsStore": "acrpull"` every registry the client pulls from is sent here, so the helper
//! serves only ACR login servers and the registries the user listed ([`AzureRegistries`]);
//! any other host gets "credentials not found" before an identity token is minted. The token
//! then goes only to a realm on the registry's own origin, over TLS unless loopback
//! ([`azure::realm_trusted`]). `store` and `erase` are accepted and do nothing (the identity
//! is the store); `list` answers `{}`.

use std::str::FromStr;

use crate::azure::{self, env::AZURE_CLIENT_ID, AzureRegistries, UserAssignedId};
use crate::registry::{build_http, ClientOptions, RegistryClient};

/// The username ACR reads as "the password is an ACR token".
pub const NULL_GUID_USERNAME: &str = "00000000-0000-0000-0000-000000000000";

/// What clients (docker, containers/image) compare a helper's output with to mean "nothing
/// stored for this server; go on anonymously".
pub const NOT_FOUND_MESSAGE: &str = "credentials not found in native keychain";

/// A credential-helper protocol action.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Credentials for a server.
    Get,
    /// Save credentials (a no-op here).
    Store,
    /// Forget credentials (a no-op here).
    Erase,
    /// Known servers (none are stored).
    List,
}

impl FromStr for Action {
    type Err = Error;

    fn from_str(text: &str) -> Result<Self, Error> {
        match text {
            "get" => Ok(Action::Get),
            "store" => Ok(Action::Store),
            "erase" => Ok(Action::Erase),
            "list" => Ok(Action::List),
            other => Err(Error::UnknownAction(other.to_string())),
        }
    }
}

/// Why the helper could not answer.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Not one of get/store/erase/list.
    #[error("unknown credential helper action `{0}` (expected get, store, erase or list)")]
    UnknownAction(String),
    /// Standard input did not hold a usable server URL.
    #[error("`{0}` is not a registry server URL")]
    BadServerUrl(String),
    /// The HTTP client could not be built.
    #[error("setting up HTTP")]
    Http(#[source] crate::http::ClientError),
    /// The registry could not be reached.
    #[error("reaching {registry}")]
    Registry {
        /// The registry.
        registry: String,
        /// Why.
        #[source]
        source: Box<crate::registry::Error>,
    },
    /// The registry does not run the ACR token exchange (no Bearer challenge), so there is
    /// nothing to offer; clients go on without credentials.
    #[error("credentials not found in native keychain")]
    NotFound {
        /// The registry.
        registry: String,
        /// Why there is nothing to offer.
        #[source]
        source: azure::Error,
    },
    /// The registry is neither an ACR login server nor listed: no identity token is minted
    /// for it; clients go on without credentials.
    #[error("credentials not found in native keychain")]
    NotAzureRegistry(#[source] azure::NotAzureRegistry),
    /// The Azure identity or the exchange failed.
    #[error("minting an ACR token for {registry} from the Azure identity")]
    Azure {
        /// The registry.
        registry: String,
        /// Why.
        #[source]
        source: azure::Error,
    },
}

impl Error {
    /// The line to print on standard output: docker and containers/image read a helper's
    /// error from there (and recognise [`NOT_FOUND_MESSAGE`] exactly); the full cause chain
    /// goes to standard error.
    pub fn protocol_message(&self) -> String {
        self.to_string()
    }
}

/// Run `action` with the bytes read from standard input; returns what to print on standard
/// output. `env` selects the Azure identity (`AZURE_CLIENT_ID` picks a user-assigned one);
/// `registries` says which registries may be offered it.
pub async fn run(
    action: Action,
    input: &[u8],
    env: &azure::Env,
    registries: &AzureRegistries,
    options: &ClientOptions,
) -> Result<String, Error> {
    match action {
        Action::Store | Action::Erase => Ok(String::new()),
        Action::List => Ok("{}\n".to_string()),
        Action::Get => {
            let server_url = String::from_utf8_lossy(input).trim().to_string();
            let secret = get(&server_url, env, registries, options).await?;
            let answer = serde_json::json!({
                "ServerURL": server_url,
                "Username": NULL_GUID_USERNAME,
                "Secret": secret.expose(),
            });
            Ok(format!("{answer}\n"))
        }
    }
}

/// An ACR refresh token for the registry named by `server_url` (`host[:port]`, with or without
/// a scheme and path), minted from the Azure identity in `env`, for a registry `registries`
/// serves ([`Error::NotAzureRegistry`] for the rest, before anything is minted or sent).
pub async fn get(
    server_url: &str,
    env: &azure::Env,
    registries: &AzureRegistries,
    options: &ClientOptions,
) -> Result<crate::secret::Secret, Error> {
    let host = registry_host(server_url)?;
    registries.check(&host).map_err(Error::NotAzureRegistry)?;
    let azure_error = |source| Error::Azure {
        registry: host.clone(),
        source,
    };
    let selector = env
        .get(AZURE_CLIENT_ID)
        .map(|id| UserAssignedId::ClientId(id.to_string()));
    let source = azure::default_chain(env, selector, azure::ACR_AUDIENCE).map_err(azure_error)?;
    tracing::info!(registry = %host, identity = %source.describe(), "credential helper: minting an ACR refresh token");
    let http = build_http(options).map_err(Error::Http)?;
    let client = RegistryClient::new(
        http.clone(),
        &host,
        &host,
        "",
        crate::credential::Credential::Anonymous,
        options.clone(),
    );
    let base = client.base().await.map_err(|source| Error::Registry {
        registry: host.clone(),
        source: Box::new(source),
    })?;
    let (refresh, _) = azure::acr::refresh_token_for_registry(&http, base, source.as_ref())
        .await
        .map_err(|error| match error {
            azure::Error::NoBearerChallenge { .. } => Error::NotFound {
                registry: host.clone(),
                source: error,
            },
            other => azure_error(other),
        })?;
    Ok(refresh)
}

/// `host[:port]` from what a client sends: `myreg.azurecr.io`, `https://myreg.azurecr.io`,
/// `https://myreg.azurecr.io/v2/`.
fn registry_host(server_url: &str) -> Result<String, Error> {
    let bad = || Error::BadServerUrl(server_url.to_string());
    let trimmed = server_url.trim();
    let without_scheme = trimmed
        .strip_prefix("https://")
        .or_else(|| trimmed.strip_prefix("http://"))
        .unwrap_or(trimmed);
    let host = without_scheme.split('/').next().unwrap_or_default();
    if host.is_empty() {
        return Err(bad());
    }
    let url = url::Url::parse(&format!("https://{host}/")).map_err(|_| bad())?;
    if !url.username().is_empty() || url.password().is_some() || url.host().is_none() {
        return Err(bad());
    }
    Ok(host.to_ascii_lowercase())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_urls() {
        assert_eq!(
            registry_host("myreg.azurecr.io").unwrap(),
            "myreg.azurecr.io"
        );
        assert_eq!(
            registry_host("https://MyReg.azurecr.io/v2/\n").unwrap(),
            "myreg.azurecr.io"
        );
        assert_eq!(
            registry_host("http://127.0.0.1:5000").unwrap(),
            "127.0.0.1:5000"
        );
        assert!(registry_host("").is_err());
        assert!(registry_host("user@host").is_err());
        assert!(registry_host("bad host").is_err());
    }

    #[tokio::test]
    async fn store_erase_list() {
        let env = azure::Env::default();
        let options = ClientOptions::default();
        let registries = AzureRegistries::default();
        let run = |action, input: &'static [u8]| {
            let (env, options, registries) = (&env, &options, &registries);
            async move { run(action, input, env, registries, options).await.unwrap() }
        };
        assert_eq!(run(Action::Store, b"{}").await, "");
        assert_eq!(run(Action::Erase, b"h").await, "");
        assert_eq!(run(Action::List, b"").await, "{}\n");
        assert!("bogus".parse::<Action>().is_err());
    }

    #[tokio::test]
    async fn hosts_that_are_not_azure_registries_get_not_found_before_any_token() {
        // The identity endpoint is a closed loopback port (never IMDS itself): a host that
        // passed the rule would fail reaching the registry or that endpoint, not with "not found".
        let env =
            azure::Env::from_pairs([("AZURE_POD_IDENTITY_AUTHORITY_HOST", "http://127.0.0.1:9")]);
        let options = ClientOptions::default();
        let registries = AzureRegistries::parse("127.0.0.1:9").unwrap();
        for host in [
            "evil.example",
            "https://evil.example/v2/",
            "myreg.azurecr.io.evil.example",
        ] {
            let error = get(host, &env, &registries, &options).await.unwrap_err();
            assert!(
                matches!(error, Error::NotAzureRegistry(_)),
                "{host}: {error:?}"
            );
            assert_eq!(error.protocol_message(), NOT_FOUND_MESSAGE);
        }
        // A listed host passes the rule (and fails later: nothing listens on port 9).
        let listed = get("127.0.0.1:9", &env, &registries, &options)
            .await
            .unwrap_err();
        assert!(!matches!(listed, Error::NotAzureRegistry(_)), "{listed:?}");
    }
}
