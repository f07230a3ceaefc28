//! Turning a registry's `401` challenge plus a [`Credential`] into an `Authorization` header.
//!
//! Tokens are cached per scope and fetched once even when many requests need the same scope
//! at the same moment (a per-scope async lock). A request that gets `401` with a token evicts
//! exactly that token, so a burst of failures triggers a single refresh. For Azure identities
//! the ACR refresh token (from `/oauth2/exchange`) is cached per registry.

pub mod token;

/// The `WWW-Authenticate` parser, from the one HTTP stack (kept here under its old path).
pub use crate::http::challenge;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine as _;

use crate::credential::Credential;
use crate::registry::error::{Error, Result};
use crate::secret::Secret;
use challenge::{Challenge, Scheme};
use token::{CachedToken, TokenGrant};

/// What the registry told us about how it authenticates.
#[derive(Debug, Clone)]
enum Learned {
    Unknown,
    Basic,
    Bearer {
        realm: url::Url,
        service: Option<String>,
    },
}

type TokenSlot = Arc<tokio::sync::Mutex<Option<CachedToken>>>;

/// Authentication state for one registry.
pub struct Authenticator {
    registry: String,
    credential: Credential,
    learned: Mutex<Learned>,
    tokens: Mutex<HashMap<String, TokenSlot>>,
    acr_refresh: tokio::sync::Mutex<Option<CachedToken>>,
}

impl std::fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authenticator")
            .field("registry", &self.registry)
            .field("credential", &self.credential.kind())
            .finish_non_exhaustive()
    }
}

/// The header value that was sent, so a `401` can evict exactly that token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SentAuthorization(pub Secret);

impl Authenticator {
    /// Authentication for `registry` (`host[:port]`) with `credential`.
    pub fn new(registry: impl Into<String>, credential: Credential) -> Self {
        Self {
            registry: registry.into(),
            credential,
            learned: Mutex::new(Learned::Unknown),
            tokens: Mutex::new(HashMap::new()),
            acr_refresh: tokio::sync::Mutex::new(None),
        }
    }

    /// The credential in use.
    pub fn credential(&self) -> &Credential {
        &self.credential
    }

    /// Whether a challenge has told how the registry authenticates.
    pub fn knows_scheme(&self) -> bool {
        !matches!(self.learned(), Learned::Unknown)
    }

    fn learned(&self) -> Learned {
        self.learned
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    fn slot(&self, scope: &str) -> TokenSlot {
        let mut tokens = self
            .tokens
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        tokens.entry(scope.to_string()).or_default().clone()
    }

    fn basic_header(&self) -> Option<Secret> {
        match &self.credential {
            Credential::Basic { username, password } => {
                let encoded = base64::engine::general_purpose::STANDARD
                    .encode(format!("{username}:{}", password.expose()));
                Some(Secret::new(format!("Basic {encoded}")))
            }
            _ => None,
        }
    }

    /// The `Authorization` value to send for `scope` before any challenge, if we already know
    /// the scheme (from the ping or an earlier request). May fetch a token.
    pub async fn authorization(
        &self,
        http: &reqwest::Client,
        scope: &str,
    ) -> Result<Option<SentAuthorization>> {
        match self.learned() {
            Learned::Unknown => Ok(None),
            Learned::Basic => Ok(self.basic_header().map(SentAuthorization)),
            Learned::Bearer { realm, service } => self
                .bearer(http, &realm, service.as_deref(), scope, None)
                .await
                .map(Some),
        }
    }

    /// Remember how the registry authenticates (from the `/v2/` ping), without fetching
    /// anything yet.
    pub fn learn(&self, challenge: &Challenge) {
        let learned = match challenge.scheme {
            Scheme::Basic => Learned::Basic,
            Scheme::Bearer => match challenge
                .realm()
                .and_then(|r| url::Url::parse(r).ok())
                .filter(|r| matches!(r.scheme(), "http" | "https"))
            {
                Some(realm) => Learned::Bearer {
                    realm,
                    service: challenge.service().map(str::to_string),
                },
                None => return,
            },
            Scheme::Other(_) => return,
        };
        *self
            .learned
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = learned;
    }

    /// Learn from a `401` response's challenge and return the header to retry with, or `None`
    /// if we have nothing better to offer. `sent` is what the failed request carried.
    pub async fn on_challenge(
        &self,
        http: &reqwest::Client,
        challenge: &Challenge,
        scope: &str,
        sent: Option<&SentAuthorization>,
    ) -> Result<Option<SentAuthorization>> {
        match challenge.scheme {
            Scheme::Basic => {
                *self
                    .learned
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner) = Learned::Basic;
                let header = self.basic_header().map(SentAuthorization);
                // Sending the same credentials again would only fail again.
                Ok(header.filter(|h| Some(h) != sent))
            }
            Scheme::Bearer => {
                let Some(realm) = challenge.realm() else {
                    return Ok(None);
                };
                let realm = url::Url::parse(realm).map_err(|e| Error::Token {
                    realm: crate::http::excerpt(realm),
                    source: Box::new(e),
                })?;
                if !matches!(realm.scheme(), "http" | "https") {
                    return Ok(None);
                }
                *self
                    .learned
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner) = Learned::Bearer {
                    realm: realm.clone(),
                    service: challenge.service().map(str::to_string),
                };
                let header = self
                    .bearer(http, &realm, challenge.service(), scope, sent)
                    .await?;
                Ok(Some(header))
            }
            Scheme::Other(_) => Ok(None),
        }
    }

    /// A bearer token for `scope`, fetched once per scope; `stale` is evicted if it is the
    /// cached one.
    async fn bearer(
        &self,
        http: &reqwest::Client,
        realm: &url::Url,
        service: Option<&str>,
        scope: &str,
        stale: Option<&SentAuthorization>,
    ) -> Result<SentAuthorization> {
        let slot = self.slot(scope);
        let mut cached = slot.lock().await;
        if let Some(token) = cached.as_ref() {
            let header = SentAuthorization(Secret::new(format!("Bearer {}", token.token.expose())));
            if token.is_fresh() && Some(&header) != stale {
                return Ok(header);
            }
        }
        *cached = None;
        let scopes: Vec<String> = scope.split_whitespace().map(str::to_string).collect();
        let token = self.fetch_token(http, realm, service, &scopes).await?;
        let header = SentAuthorization(Secret::new(format!("Bearer {}", token.token.expose())));
        *cached = Some(token);
        Ok(header)
    }

    async fn fetch_token(
        &self,
        http: &reqwest::Client,
        realm: &url::Url,
        service: Option<&str>,
        scopes: &[String],
    ) -> Result<CachedToken> {
        let grant = match &self.credential {
            Credential::Anonymous => TokenGrant::Anonymous,
            Credential::Basic { username, password } => TokenGrant::Basic { username, password },
            Credential::RefreshToken(refresh) => TokenGrant::RefreshToken(refresh),
            Credential::Azure(source) => {
                return self
                    .azure_token(http, realm, service, scopes, source.as_ref())
                    .await;
            }
            Credential::AzureOrAnonymous(source) => {
                return self
                    .azure_or_anonymous_token(http, realm, service, scopes, source.as_ref())
                    .await;
            }
        };
        // Credentials (anything but anonymous) only go to HTTPS or loopback realms.
        if !matches!(grant, TokenGrant::Anonymous) && !realm_may_receive_secrets(realm) {
            return Err(plain_http_realm(realm));
        }
        token::fetch(http, realm, service, scopes, grant)
            .await
            .map_err(|source| token_error(realm, source))
    }

    /// The Azure identity chosen automatically for an ACR host. When this machine has no
    /// identity (no endpoint, or IMDS knows none), the token is asked for anonymously, which
    /// registries with anonymous pull grant; if the registry refuses that too, the identity
    /// failure is the error (it says what to set up).
    async fn azure_or_anonymous_token(
        &self,
        http: &reqwest::Client,
        realm: &url::Url,
        service: Option<&str>,
        scopes: &[String],
        source: &dyn crate::azure::AadTokenSource,
    ) -> Result<CachedToken> {
        let identity_error = match self.azure_token(http, realm, service, scopes, source).await {
            Err(Error::Azure { source, registry }) if source.is_no_identity() => {
                Error::Azure { source, registry }
            }
            other => return other,
        };
        tracing::info!(
            registry = %self.registry,
            "no Azure identity on this machine ({identity_error}); asking for an anonymous pull token"
        );
        match token::fetch(http, realm, service, scopes, TokenGrant::Anonymous).await {
            Ok(token) => Ok(token),
            Err(refused) if refused.is_denied() => {
                tracing::debug!(registry = %self.registry, error = %refused, "anonymous pull refused");
                Err(identity_error)
            }
            Err(other) => Err(token_error(realm, other)),
        }
    }

    /// AAD token -> ACR refresh token (cached per registry) -> access token for `scopes`.
    async fn azure_token(
        &self,
        http: &reqwest::Client,
        realm: &url::Url,
        service: Option<&str>,
        scopes: &[String],
        source: &dyn crate::azure::AadTokenSource,
    ) -> Result<CachedToken> {
        let registry_host = crate::reference::host_of(&self.registry);
        if !crate::azure::acr::realm_trusted(registry_host, realm) {
            return Err(token_error(
                realm,
                format!(
                    "the token realm's host is not the registry `{}`: refusing to send an Azure token there",
                    self.registry
                ),
            ));
        }
        // A refresh token that stopped working (revoked, expired early) is replaced once by a
        // fresh exchange.
        let mut last = None;
        for attempt in 0..2 {
            let refresh = self
                .acr_refresh_token(http, realm, service, source, attempt > 0)
                .await?;
            match token::fetch(
                http,
                realm,
                service,
                scopes,
                TokenGrant::RefreshToken(&refresh),
            )
            .await
            {
                Ok(token) => return Ok(token),
                Err(e) if e.is_denied() => last = Some(e),
                Err(e) => return Err(token_error(realm, e)),
            }
        }
        Err(match last {
            Some(e) => token_error(realm, e),
            None => token_error(realm, "no token after a fresh exchange"),
        })
    }

    async fn acr_refresh_token(
        &self,
        http: &reqwest::Client,
        realm: &url::Url,
        service: Option<&str>,
        source: &dyn crate::azure::AadTokenSource,
        force: bool,
    ) -> Result<Secret> {
        let mut cached = self.acr_refresh.lock().await;
        if let Some(token) = cached.as_ref() {
            if token.is_fresh() && !force {
                return Ok(token.token.clone());
            }
        }
        let azure_error = |source| Error::Azure {
            registry: self.registry.clone(),
            source,
        };
        let aad = source.aad_token().await.map_err(azure_error)?;
        let service = service.unwrap_or(crate::reference::host_of(&self.registry));
        let refresh = crate::azure::acr::exchange_for_refresh_token(
            http,
            realm,
            service,
            &aad,
            source.tenant().as_deref(),
        )
        .await
        .map_err(azure_error)?;
        let token = CachedToken::from_jwt_or(refresh, Duration::from_secs(3 * 3600));
        let secret = token.token.clone();
        *cached = Some(token);
        Ok(secret)
    }
}

/// Secrets go to HTTPS realms, or plain HTTP on loopback (test registries).
fn realm_may_receive_secrets(realm: &url::Url) -> bool {
    realm.scheme() == "https"
        || realm
            .host_str()
            .map(|h| {
                crate::reference::is_loopback_host(h.trim_start_matches('[').trim_end_matches(']'))
            })
            .unwrap_or(false)
}

fn plain_http_realm(realm: &url::Url) -> Error {
    token_error(
        realm,
        "refusing to send credentials to a token endpoint over plain HTTP",
    )
}

/// The token endpoint `realm` (shown without its query) failed for `source`.
fn token_error(
    realm: &url::Url,
    source: impl Into<Box<dyn std::error::Error + Send + Sync>>,
) -> Error {
    Error::Token {
        realm: crate::http::redact_url(realm),
        source: source.into(),
    }
}
