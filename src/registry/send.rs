//! Sending one request to the registry: the probe that decides between HTTPS and plain HTTP
//! (only where both are allowed), authentication from challenges, retries with backoff,
//! redirects followed without credentials, and the mapping of an unsuccessful status to a
//! typed error.

use reqwest::header::{HeaderMap, AUTHORIZATION};
use reqwest::{Method, Response, StatusCode};

use super::auth::SentAuthorization;
use super::{redact_url, retry, Error, Missing, RegistryClient, Result, LOOPBACK_REFUSED_RETRIES};
use crate::http::challenge::{self, Challenge};
use crate::http::{SafeUrl, SendError, Verdict};

/// Makes a request body afresh for each attempt.
pub type BodyFactory<'a> = &'a (dyn Fn() -> reqwest::Body + Send + Sync);

impl RegistryClient {
    pub(super) async fn probe(&self) -> Result<url::Url> {
        // One scheme leaves nothing to decide: no request (a `/v2/` ping would cost a round
        // trip; the first real request learns how the registry authenticates from its answer).
        let loopback = crate::reference::is_loopback_host(crate::reference::host_of(&self.host));
        if self.options.plain_http {
            return self.base_for("http");
        }
        if !loopback && !self.options.http_fallback {
            return self.base_for("https");
        }
        // Both allowed (loopback, or an insecure registry): what an earlier pull of this run
        // found, else one HTTPS attempt, then plain HTTP.
        let shared = self.options.shared_clients.as_ref();
        if let Some(scheme) = shared.and_then(|shared| shared.scheme_of(&self.host)) {
            return self.base_for(scheme);
        }
        let base = self.https_or_http().await?;
        if let Some(shared) = shared {
            let scheme = if base.scheme() == "https" {
                "https"
            } else {
                "http"
            };
            shared.remember_scheme(&self.host, scheme);
        }
        Ok(base)
    }

    /// `scheme://host/`.
    fn base_for(&self, scheme: &str) -> Result<url::Url> {
        url::Url::parse(&format!("{scheme}://{}/", self.host)).map_err(|e| Error::Unsupported {
            url: self.host.clone(),
            reason: format!("not a usable host: {e}"),
        })
    }

    /// One HTTPS attempt, then plain HTTP: the base URL of the scheme the registry speaks.
    async fn https_or_http(&self) -> Result<url::Url> {
        let https = self.base_for("https")?;
        let ping = self.api_root(&https)?;
        let once = retry::RetryPolicy {
            retries: 0,
            ..retry::RetryPolicy::default()
        };
        let sent = retry::send(
            &once,
            &SafeUrl::from(&ping),
            || {
                self.http
                    .get(ping.clone())
                    .headers(self.route.headers.clone())
            },
            |_| Verdict::Done,
            |_, _| 0,
        )
        .await;
        let tls_failure = match sent {
            Ok(sent) => {
                self.learn_from_ping(&ping, &sent.response);
                return Ok(https);
            }
            // The server speaks TLS but its certificate is not trusted: falling back to plain
            // HTTP would only hide the real problem.
            Err(error) if error.failure == crate::http::Failure::Certificate => {
                return Err(transport_error(error))
            }
            // The server answered the handshake in plain HTTP: that is the scheme, and pinging
            // `/v2/` over it would only cost a round trip.
            Err(error) if crate::http::classify::answered_in_plain_http(&error.source) => {
                tracing::debug!(url = %ping, "the server answered TLS in plain HTTP");
                return self.base_for("http");
            }
            Err(error) => {
                tracing::debug!(url = %ping, error = %error, "ping failed");
                error
            }
        };
        let http = self.base_for("http")?;
        let response = self.ping(&self.api_root(&http)?).await?;
        // A registry answers `/v2/` with 200 or 401, never 400: a 400 over plain HTTP after
        // HTTPS failed is a TLS server refusing a plain request (Go's "Client sent an HTTP
        // request to an HTTPS server"). Its TLS failure is the error, e.g. a handshake refused
        // for want of a client certificate.
        if response.status() == StatusCode::BAD_REQUEST {
            tracing::debug!(url = %response.url(), "plain HTTP refused with 400: the server speaks TLS");
            return Err(Error::Tls {
                url: tls_failure.url.to_string(),
                source: tls_failure.source,
            });
        }
        Ok(http)
    }

    /// Ask the API root at `url` and learn from its answer how the registry authenticates.
    async fn ping(&self, url: &url::Url) -> Result<Response> {
        let response = self
            .send_with_retries(Method::GET, url, None, self.route.headers.clone())
            .await?;
        self.learn_from_ping(url, &response);
        Ok(response)
    }

    /// A `401` to a ping names how the registry authenticates: learn it now, so the first
    /// real request carries credentials.
    fn learn_from_ping(&self, url: &url::Url, response: &Response) {
        tracing::debug!(%url, status = %response.status(), "ping");
        if response.status() == StatusCode::UNAUTHORIZED {
            if let Some(c) = challenge_of(response) {
                self.auth.learn(&c);
            }
        }
    }

    /// Retries for a request that failed with `error`: nothing listens on a loopback port
    /// that refused a connection, so that is tried [`LOOPBACK_REFUSED_RETRIES`] more times
    /// at most, not the whole policy.
    pub(super) fn retries_after(&self, error: &reqwest::Error) -> u32 {
        let retries = self.options.retry.retries;
        if self.is_loopback() && retry::is_connection_refused(error) {
            retries.min(LOOPBACK_REFUSED_RETRIES)
        } else {
            retries
        }
    }

    /// Send a request, retrying transient failures; returns the final response whatever its
    /// status (except retryable statuses that ran out of retries, returned as they are).
    pub(super) async fn send_with_retries(
        &self,
        method: Method,
        url: &url::Url,
        authorization: Option<&SentAuthorization>,
        headers: HeaderMap,
    ) -> Result<Response> {
        self.send_body_with_retries(method, url, authorization, headers, None)
            .await
    }

    /// [`Self::send_with_retries`] with a request body made afresh for every attempt.
    pub(super) async fn send_body_with_retries(
        &self,
        method: Method,
        url: &url::Url,
        authorization: Option<&SentAuthorization>,
        headers: HeaderMap,
        body: Option<BodyFactory<'_>>,
    ) -> Result<Response> {
        let authorization = match authorization {
            Some(auth) => {
                Some(
                    crate::http::sensitive_header(auth.0.expose()).ok_or_else(|| Error::Token {
                        realm: redact_url(url),
                        source: "the credential cannot be sent as an Authorization header \
                             (it holds line breaks or other characters a header cannot carry)"
                            .into(),
                    })?,
                )
            }
            None => None,
        };
        let sent = retry::send(
            &self.options.retry,
            &SafeUrl::from(url),
            || {
                let mut request = self
                    .http
                    .request(method.clone(), url.clone())
                    .headers(headers.clone());
                if let Some(auth) = &authorization {
                    request = request.header(AUTHORIZATION, auth.clone());
                }
                if let Some(body) = body {
                    request = request.body(body());
                }
                if let Some(remaining) = self.options.pace.remaining() {
                    request = request.timeout(remaining);
                }
                request
            },
            retry::by_status,
            |error, _| {
                if self.options.pace.expired() {
                    0
                } else {
                    self.retries_after(error)
                }
            },
        )
        .await
        .map_err(transport_error)?;
        Ok(sent.response)
    }

    /// A request to the registry itself, authenticated, re-authenticating once on `401`.
    pub(super) async fn send_authenticated(
        &self,
        method: Method,
        path: &str,
        headers: HeaderMap,
    ) -> Result<Response> {
        let url = self.url_for(path).await?;
        self.send_authenticated_url(method, &url, headers, None)
            .await
    }

    /// `path` (relative to the registry, or an absolute URL from a `Location` header).
    pub(super) async fn url_for(&self, path: &str) -> Result<url::Url> {
        self.base()
            .await?
            .join(path)
            .map_err(|e| Error::Unsupported {
                url: path.to_string(),
                reason: e.to_string(),
            })
    }

    /// [`Self::send_authenticated`] for a full URL, with an optional body.
    pub(super) async fn send_authenticated_url(
        &self,
        method: Method,
        url: &url::Url,
        headers: HeaderMap,
        body: Option<BodyFactory<'_>>,
    ) -> Result<Response> {
        if url.origin() != self.base().await?.origin() {
            // An upload Location on another origin gets no credentials (the same rule as
            // blob redirects).
            tracing::debug!(to = %redact_url(url), "request to another origin without credentials");
            return self
                .send_body_with_retries(method, url, None, headers, body)
                .await;
        }
        // The route's headers, where the request does not set its own (Accept, Range).
        let mut headers = headers;
        let own: Vec<_> = headers.keys().cloned().collect();
        for (name, value) in &self.route.headers {
            if !own.contains(name) {
                headers.append(name.clone(), value.clone());
            }
        }
        let scope = self.scope();
        let mut sent = self.auth.authorization(&self.http, &scope).await?;
        let mut retried_auth = false;
        loop {
            let response = self
                .send_body_with_retries(method.clone(), url, sent.as_ref(), headers.clone(), body)
                .await?;
            if response.status() != StatusCode::UNAUTHORIZED || retried_auth {
                return Ok(response);
            }
            let Some(c) = challenge_of(&response) else {
                return Ok(response);
            };
            retried_auth = true;
            match self
                .auth
                .on_challenge(&self.http, &c, &scope, sent.as_ref())
                .await?
            {
                Some(next) => sent = Some(next),
                None => return Ok(response),
            }
        }
    }

    /// The API root (`/v2/`, or a mirror's path) at `base`: what a ping asks.
    fn api_root(&self, base: &url::Url) -> Result<url::Url> {
        base.join(&self.route.api_root)
            .map_err(|e| Error::Unsupported {
                url: format!("{base}{}", self.route.api_root),
                reason: format!("not a usable API path: {e}"),
            })
    }

    /// A bearer token for `scope` as this client's credential obtains it (for `acrpull token`).
    /// `None` if the registry does not use bearer tokens.
    pub async fn bearer_token(&self, scope: &str) -> Result<Option<crate::secret::Secret>> {
        let base = self.base().await?;
        if !self.auth.knows_scheme() {
            // The probe did not ask `/v2/` (one scheme, or a server that answered TLS in plain
            // HTTP) or got no challenge: ask it now, for one.
            self.ping(&self.api_root(base)?).await?;
        }
        let header = self.auth.authorization(&self.http, scope).await?;
        Ok(header.and_then(|h| {
            h.0.expose()
                .strip_prefix("Bearer ")
                .map(crate::secret::Secret::new)
        }))
    }

    pub(super) async fn check_status(
        &self,
        response: Response,
        kind: Missing,
        what: impl FnOnce() -> String,
    ) -> Result<Response> {
        let status = response.status();
        if status.is_success() {
            return Ok(response);
        }
        let url = redact_url(response.url());
        // A 403 from the registry itself (not from blob storage behind a redirect) to an Azure
        // identity is ACR's `DENIED`: the identity lacks the role.
        let denied_to_identity = status == StatusCode::FORBIDDEN
            && self.uses_azure_identity()
            && self
                .base()
                .await
                .is_ok_and(|base| base.origin() == response.url().origin());
        let challenge_error = challenge_of(&response).and_then(|c| c.error().map(str::to_string));
        let body = crate::http::read_excerpt(response, self.options.pace).await;
        let registry_message = body.as_deref().and_then(registry_error_message);
        Err(match status {
            StatusCode::NOT_FOUND => Error::NotFound {
                kind,
                what: what(),
                url,
            },
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => Error::Unauthorized {
                url,
                status: status.as_u16(),
                detail: match challenge_error.as_deref() {
                    Some("insufficient_scope") => Some(self.permission_message()),
                    _ if denied_to_identity => Some(self.permission_message()),
                    _ => challenge_error.or(registry_message).or(body),
                },
            },
            _ => Error::Status {
                method: "GET".into(),
                url,
                status: status.as_u16(),
                body: registry_message.or(body),
            },
        })
    }

    /// Whether requests carry tokens minted from an Azure identity.
    pub(super) fn uses_azure_identity(&self) -> bool {
        use crate::credential::Credential;
        matches!(
            self.auth.credential(),
            Credential::Azure(_) | Credential::AzureOrAnonymous(_)
        )
    }

    /// What to say when the registry accepted our token but it grants no pull.
    pub(super) fn permission_message(&self) -> String {
        use crate::credential::Credential;
        let registry = crate::reference::host_of(&self.host);
        match self.auth.credential() {
            Credential::Azure(_) | Credential::AzureOrAnonymous(_) => format!(
                "insufficient_scope: {} has no pull permission on repository `{}` in `{registry}`; \
                 {}, e.g. `az role assignment create --assignee <principal id> \
                 --scope <registry resource id> --role acrpull`",
                self.auth.credential().kind(),
                self.repository,
                crate::azure::PERMISSION_HINT,
            ),
            other => format!(
                "insufficient_scope: {} has no pull permission on repository `{}` in `{registry}`",
                other.kind(),
                self.repository
            ),
        }
    }
}

pub(super) fn challenge_of(response: &Response) -> Option<Challenge> {
    challenge::from_headers(response.headers())
}

/// A transport failure as a registry error: TLS failures by their own variant.
pub(super) fn transport_error(error: SendError) -> Error {
    if error.failure.is_tls() {
        Error::Tls {
            url: error.url.to_string(),
            source: error.source,
        }
    } else {
        Error::Transport {
            url: error.url.to_string(),
            attempts: error.attempts,
            source: error.source,
        }
    }
}

/// `{"errors":[{"code":"MANIFEST_UNKNOWN","message":"..."}]}` -> "MANIFEST_UNKNOWN: ...".
pub(super) fn registry_error_message(body: &str) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct Envelope {
        errors: Vec<Entry>,
    }
    #[derive(serde::Deserialize)]
    struct Entry {
        code: Option<String>,
        message: Option<String>,
    }
    let envelope: Envelope = serde_json::from_str(body).ok()?;
    let parts: Vec<String> = envelope
        .errors
        .into_iter()
        .map(|e| match (e.code, e.message) {
            (Some(c), Some(m)) => format!("{c}: {m}"),
            (Some(c), None) => c,
            (None, Some(m)) => m,
            (None, None) => String::new(),
        })
        .filter(|s| !s.is_empty())
        .collect();
    (!parts.is_empty()).then(|| parts.join("; "))
}
