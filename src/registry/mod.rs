//! The registry client: the only code that speaks HTTP to registries.
//!
//! It picks the scheme (HTTPS, falling back to plain HTTP for loopback registries as Docker
//! does), authenticates lazily from challenges, retries transient failures with backoff, and
//! follows redirects itself so that `Authorization` never leaves the registry's origin.

pub mod auth;
pub mod error;
mod fetched;
mod listing;
pub mod referrers;
mod upload;

pub use crate::http::redact_url;
/// The retry policy, from the one HTTP stack (kept here under its old path).
pub use crate::http::retry;

use std::path::PathBuf;
use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt;
use reqwest::header::{HeaderMap, ACCEPT, AUTHORIZATION, CONTENT_LENGTH, CONTENT_RANGE, RANGE};
use reqwest::{Method, Response, StatusCode};
use tokio::sync::OnceCell;

use self::auth::{Authenticator, SentAuthorization};
pub use self::fetched::{BlobBody, FetchedManifest};
use crate::credential::Credential;
use crate::digest::Digest;
use crate::http::challenge::{self, Challenge};
use crate::http::{BodyError, SafeUrl, SendError, Verdict};
use crate::media_type;
pub use error::{Error, Missing, Result};
use retry::RetryPolicy;

/// Manifests larger than this are refused.
pub const MANIFEST_LIMIT: u64 = 4 * 1024 * 1024;
const MAX_REDIRECTS: usize = 5;
/// Retries for a refused connection to a loopback registry (see `RegistryClient::retries_after`).
const LOOPBACK_REFUSED_RETRIES: u32 = 1;

/// How to reach registries.
#[derive(Debug, Clone, Default)]
pub struct ClientOptions {
    /// Use plain HTTP.
    pub plain_http: bool,
    /// Accept any TLS certificate.
    pub insecure: bool,
    /// Fall back to plain HTTP when HTTPS fails, for any host (loopback hosts always may).
    pub http_fallback: bool,
    /// Extra PEM files with CA certificates to trust.
    pub ca_files: Vec<PathBuf>,
    /// The client certificate to present (mutual TLS).
    pub client_certificate: Option<crate::http::ClientCertificate>,
    /// Where per-registry certificates directories are (`certs.d`, `--cert-dir`); the
    /// default looks nowhere. Applied by [`ClientOptions::for_host`].
    pub cert_dirs: crate::http::CertDirs,
    /// Retry policy.
    pub retry: RetryPolicy,
    /// Per-request timeout for connecting and for each read.
    pub read_timeout: Option<Duration>,
    /// The slowest a response body may arrive, and when every request must have ended.
    pub pace: crate::http::Pace,
    /// Fetch large blobs in concurrent `Range` segments: `None` lets each registry decide
    /// (yes across a network, no on loopback, where one stream is as fast as the CPU);
    /// `Some(false)` for a server that handles ranges badly, `Some(true)` to force them
    /// (measurements, tests against loopback registries). The binary fills it from
    /// `ACRPULL_PARALLEL_RANGES`.
    pub parallel_ranges: Option<bool>,
}

impl ClientOptions {
    /// These options for a connection to `host` (`host[:port]`): the CA files and client
    /// certificate of its certificates directory ([`Self::cert_dirs`]) added. A client
    /// certificate already set (from `hosts.toml`) is kept; of several in a directory the
    /// first (by file name) is presented.
    pub fn for_host(&self, host: &str) -> Result<ClientOptions, crate::http::CertsDirError> {
        let files = self.cert_dirs.for_host(host)?;
        let mut options = self.clone();
        if !files.ca_files.is_empty() || !files.client_certificates.is_empty() {
            tracing::debug!(
                host,
                cas = files.ca_files.len(),
                client_certificates = files.client_certificates.len(),
                "certificates directory"
            );
        }
        options.ca_files.extend(files.ca_files);
        if options.client_certificate.is_none() {
            if files.client_certificates.len() > 1 {
                tracing::warn!(host, "several client certificates for one registry; presenting the first by file name");
            }
            options.client_certificate = files.client_certificates.into_iter().next();
        }
        Ok(options)
    }
}

/// Build the HTTP client shared by registry and token requests. The library reads no
/// environment variable: the binary adds `SSL_CERT_FILE` to [`ClientOptions::ca_files`].
pub fn build_http(options: &ClientOptions) -> Result<reqwest::Client, std::io::Error> {
    crate::http::build_client(&crate::http::HttpOptions {
        read_timeout: Some(options.read_timeout.unwrap_or(Duration::from_secs(60))),
        insecure: options.insecure,
        ca_files: options.ca_files.clone(),
        client_certificate: options.client_certificate.clone(),
        ..crate::http::HttpOptions::default()
    })
    .map_err(|error| {
        let kind = match &error {
            crate::http::ClientError::ReadCaFile { source, .. }
            | crate::http::ClientError::ReadClientCertificate { source, .. } => source.kind(),
            _ => std::io::ErrorKind::InvalidData,
        };
        let cause = std::error::Error::source(&error)
            .map(|source| format!(": {source}"))
            .unwrap_or_default();
        std::io::Error::new(kind, format!("{error}{cause}"))
    })
}

/// A client for one repository on one registry.
#[derive(Debug)]
pub struct RegistryClient {
    http: reqwest::Client,
    host: String,
    repository: String,
    options: ClientOptions,
    base: OnceCell<url::Url>,
    auth: Authenticator,
    push: bool,
    mount_from: Vec<String>,
    catalog: bool,
    route: Route,
}

/// Where a registry's API is at its host and what every request to it carries: what a
/// containerd `hosts.toml` entry may change (`server` path, `override_path`, `header`).
#[derive(Debug, Clone)]
pub struct Route {
    /// The API root, relative to the host, ending in `/`: `v2/` by default, `mirror/v2/` for
    /// `https://host/mirror`, exactly the configured path with `override_path`.
    pub api_root: String,
    /// `?ns=<registry>` on pull requests, as containerd sends to mirrors so that one mirror can
    /// serve several upstream registries.
    pub namespace: Option<String>,
    /// Headers sent with every request to the registry itself (never to redirect targets or
    /// token services).
    pub headers: HeaderMap,
}

impl Default for Route {
    fn default() -> Self {
        Self {
            api_root: "v2/".to_string(),
            namespace: None,
            headers: HeaderMap::new(),
        }
    }
}

/// Makes a request body afresh for each attempt.
pub type BodyFactory<'a> = &'a (dyn Fn() -> reqwest::Body + Send + Sync);

impl RegistryClient {
    /// A client for `repository` at `registry` (the reference's registry) using `host` for the
    /// API (differs for Docker Hub).
    pub fn new(
        http: reqwest::Client,
        registry: &str,
        api_host: &str,
        repository: &str,
        credential: Credential,
        options: ClientOptions,
    ) -> Self {
        Self {
            http,
            host: api_host.to_string(),
            repository: repository.to_string(),
            options,
            base: OnceCell::new(),
            auth: Authenticator::new(registry, credential),
            push: false,
            mount_from: Vec::new(),
            catalog: false,
            route: Route::default(),
        }
    }

    /// This client, asking for the registry-wide `registry:catalog:*` scope (for
    /// [`RegistryClient::catalog`]; make it with an empty repository).
    #[must_use]
    pub fn for_catalog(mut self) -> Self {
        self.catalog = true;
        self
    }

    /// This client, reaching the API where `route` says.
    #[must_use]
    pub fn with_route(mut self, route: Route) -> Self {
        self.route = route;
        self
    }

    /// The path (relative to the host) of `rest` under this client's repository, e.g.
    /// `v2/team/app/manifests/v1`, with the `ns` query when the route has one.
    fn repository_path(&self, rest: &str) -> String {
        let mut path = format!("{}{}/{rest}", self.route.api_root, self.repository);
        if let Some(namespace) = &self.route.namespace {
            let query: String = url::form_urlencoded::Serializer::new(String::new())
                .append_pair("ns", namespace)
                .finish();
            path.push('?');
            path.push_str(&query);
        }
        path
    }

    /// The repository.
    pub fn repository(&self) -> &str {
        &self.repository
    }

    /// The token scope requests need: pull, or pull and push (plus pull on the repositories
    /// blobs may be mounted from), space-separated.
    fn scope(&self) -> String {
        if self.catalog {
            return "registry:catalog:*".to_string();
        }
        if self.push {
            let mut scope = format!("repository:{}:pull,push", self.repository);
            for from in &self.mount_from {
                scope.push_str(&format!(" repository:{from}:pull"));
            }
            scope
        } else {
            format!("repository:{}:pull", self.repository)
        }
    }

    /// This client, asking for push access too (and pull on `mount_from`, for blob mounts).
    #[must_use]
    pub fn for_push(mut self, mount_from: Vec<String>) -> Self {
        self.push = true;
        self.mount_from = mount_from;
        self
    }

    /// The base URL (`scheme://host`), probing `/v2/` on first use.
    pub async fn base(&self) -> Result<&url::Url> {
        self.base.get_or_try_init(|| self.probe()).await
    }

    /// Whether the registry is on this machine (127.0.0.0/8, ::1, localhost).
    pub fn is_loopback(&self) -> bool {
        crate::reference::is_loopback_host(crate::reference::host_of(&self.host))
    }

    /// Whether large blobs come in concurrent ranges: as [`ClientOptions::parallel_ranges`]
    /// says, else only from a registry across a network.
    pub fn parallel_ranges(&self) -> bool {
        self.options
            .parallel_ranges
            .unwrap_or_else(|| !self.is_loopback())
    }

    async fn probe(&self) -> Result<url::Url> {
        let loopback = crate::reference::is_loopback_host(crate::reference::host_of(&self.host));
        let schemes: &[&str] = if self.options.plain_http {
            &["http"]
        } else if loopback || self.options.http_fallback {
            &["https", "http"]
        } else {
            &["https"]
        };
        let mut last_error = None;
        for scheme in schemes {
            let base = url::Url::parse(&format!("{scheme}://{}/", self.host)).map_err(|e| {
                Error::Unsupported {
                    url: self.host.clone(),
                    reason: format!("not a usable host: {e}"),
                }
            })?;
            let ping = base
                .join(&self.route.api_root)
                .map_err(|e| Error::Unsupported {
                    url: format!("{base}{}", self.route.api_root),
                    reason: format!("not a usable API path: {e}"),
                })?;
            // With a plain-HTTP fallback ahead, one HTTPS attempt is enough.
            let result = if *scheme == "https" && schemes.len() > 1 {
                let once = retry::RetryPolicy {
                    retries: 0,
                    ..retry::RetryPolicy::default()
                };
                match retry::send(
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
                .await
                {
                    Ok(sent) => Ok(sent.response),
                    // The server speaks TLS but its certificate is not trusted: falling back
                    // to plain HTTP would only hide the real problem.
                    Err(error) if error.failure == crate::http::Failure::Certificate => {
                        return Err(transport_error(error))
                    }
                    Err(error) => Err(Error::Transport {
                        url: error.url.to_string(),
                        attempts: error.attempts,
                        source: error.source,
                    }),
                }
            } else {
                self.send_with_retries(Method::GET, &ping, None, self.route.headers.clone())
                    .await
            };
            match result {
                // A registry answers `/v2/` with 200 or 401, never 400: a 400 over plain HTTP
                // after HTTPS failed is a TLS server refusing a plain request (Go's "Client
                // sent an HTTP request to an HTTPS server"). Its TLS failure is the error, e.g.
                // a handshake refused for want of a client certificate.
                Ok(response)
                    if *scheme == "http" && response.status() == StatusCode::BAD_REQUEST =>
                {
                    if let Some(Error::Transport { url, source, .. }) = last_error {
                        tracing::debug!(url = %ping, "plain HTTP refused with 400: the server speaks TLS");
                        return Err(Error::Tls { url, source });
                    }
                    return Ok(base);
                }
                Ok(response) => {
                    tracing::debug!(url = %ping, status = %response.status(), "ping");
                    if response.status() == StatusCode::UNAUTHORIZED {
                        if let Some(c) = challenge_of(&response) {
                            // Learn the scheme now so the first real request carries a token.
                            self.auth.learn(&c);
                        }
                    }
                    return Ok(base);
                }
                Err(e) => {
                    tracing::debug!(url = %ping, error = %e, "ping failed");
                    last_error = Some(e);
                }
            }
        }
        Err(last_error.expect("at least one scheme is tried"))
    }

    /// Retries for a request that failed with `error`: nothing listens on a loopback port
    /// that refused a connection, so that is tried [`LOOPBACK_REFUSED_RETRIES`] more times
    /// at most, not the whole policy.
    fn retries_after(&self, error: &reqwest::Error) -> u32 {
        let retries = self.options.retry.retries;
        if self.is_loopback() && retry::is_connection_refused(error) {
            retries.min(LOOPBACK_REFUSED_RETRIES)
        } else {
            retries
        }
    }

    /// Send a request, retrying transient failures; returns the final response whatever its
    /// status (except retryable statuses that ran out of retries, returned as they are).
    async fn send_with_retries(
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
    async fn send_body_with_retries(
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
    async fn send_authenticated(
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
    async fn url_for(&self, path: &str) -> Result<url::Url> {
        self.base()
            .await?
            .join(path)
            .map_err(|e| Error::Unsupported {
                url: path.to_string(),
                reason: e.to_string(),
            })
    }

    /// [`Self::send_authenticated`] for a full URL, with an optional body.
    async fn send_authenticated_url(
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

    /// A bearer token for `scope` as this client's credential obtains it (for `acrpull token`).
    /// `None` if the registry does not use bearer tokens.
    pub async fn bearer_token(&self, scope: &str) -> Result<Option<crate::secret::Secret>> {
        self.base().await?;
        let header = self.auth.authorization(&self.http, scope).await?;
        Ok(header.and_then(|h| {
            h.0.expose()
                .strip_prefix("Bearer ")
                .map(crate::secret::Secret::new)
        }))
    }

    /// Fetch a manifest or index by tag or digest, verified against `Docker-Content-Digest` and
    /// (when `reference` is a digest) against the reference.
    pub async fn manifest(&self, reference: &str) -> Result<FetchedManifest> {
        let path = self.repository_path(&format!("manifests/{reference}"));
        let mut headers = HeaderMap::new();
        headers.insert(
            ACCEPT,
            reqwest::header::HeaderValue::from_static(media_type::MANIFEST_ACCEPT),
        );
        let response = self.send_authenticated(Method::GET, &path, headers).await?;
        let url = redact_url(response.url());
        let what = || format!("manifest `{reference}` of repository `{}`", self.repository);
        let kind = Missing::Manifest;
        let response = self.check_status(response, kind, what).await?;
        let header_digest = response
            .headers()
            .get("docker-content-digest")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<Digest>().ok());
        let content_type = response
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(|v| v.split(';').next().unwrap_or(v).trim().to_string());
        let bytes = read_capped(response, MANIFEST_LIMIT, &url, self.options.pace).await?;
        let pinned = reference.parse::<Digest>().ok();
        FetchedManifest::verify(
            bytes,
            content_type,
            pinned.as_ref(),
            header_digest.as_ref(),
            &url,
        )
    }

    /// Open a blob at `offset`, up to `end` (exclusive) when given. Follows redirects without
    /// sending credentials to other origins.
    pub async fn open_blob(
        &self,
        digest: &Digest,
        offset: u64,
        end: Option<u64>,
    ) -> Result<BlobBody> {
        let path = self.repository_path(&format!("blobs/{digest}"));
        let mut headers = HeaderMap::new();
        let range = match end {
            Some(end) if end > offset => Some(format!("bytes={offset}-{}", end - 1)),
            _ if offset > 0 => Some(format!("bytes={offset}-")),
            _ => None,
        };
        let ranged = range.is_some();
        if let Some(range) = range {
            headers.insert(RANGE, range.parse().expect("valid header"));
        }
        // A redirect target (blob storage) that refuses with 400/403 has usually seen its
        // signed URL expire: ask the registry once more for a fresh one.
        let mut response = self.blob_response(&path, &headers).await?;
        if matches!(
            response.status(),
            StatusCode::FORBIDDEN | StatusCode::BAD_REQUEST
        ) && response.url().origin() != self.base().await?.origin()
        {
            tracing::info!(to = %redact_url(response.url()), status = %response.status(), "blob storage refused; asking the registry for a new redirect");
            response = self.blob_response(&path, &headers).await?;
        }
        if ranged && response.status() == StatusCode::RANGE_NOT_SATISFIABLE {
            // We only ask for bytes below the descriptor's size: the blob is shorter than the
            // manifest says, so the manifest (or the blob) is wrong.
            return Err(Error::Integrity {
                what: "blob".into(),
                digest: digest.clone(),
                expected: format!("more than {offset} bytes (the descriptor's size)"),
                actual: "fewer: the registry answered 416 Range Not Satisfiable".into(),
            });
        }
        let what = || format!("blob {digest} in repository `{}`", self.repository);
        let kind = Missing::Blob;
        let response = self.check_status(response, kind, what).await?;
        self.blob_body(response, offset, ranged)
    }

    /// GET a blob path, following redirects (no credentials to other origins).
    async fn blob_response(&self, path: &str, headers: &HeaderMap) -> Result<Response> {
        let mut response = self
            .send_authenticated(Method::GET, path, headers.clone())
            .await?;
        let registry_origin = self.base().await?.origin();
        for _ in 0..MAX_REDIRECTS {
            if !response.status().is_redirection() {
                break;
            }
            let from = response.url().clone();
            let location = response
                .headers()
                .get(reqwest::header::LOCATION)
                .and_then(|v| v.to_str().ok())
                .ok_or_else(|| Error::Redirect {
                    url: redact_url(&from),
                    reason: "no Location header".into(),
                })?;
            let target = from.join(location).map_err(|e| Error::Redirect {
                url: redact_url(&from),
                reason: format!("bad Location: {e}"),
            })?;
            if !matches!(target.scheme(), "http" | "https") {
                return Err(Error::Redirect {
                    url: redact_url(&from),
                    reason: format!("unsupported scheme `{}`", target.scheme()),
                });
            }
            let authorization = if target.origin() == registry_origin {
                self.auth.authorization(&self.http, &self.scope()).await?
            } else {
                tracing::debug!(to = %redact_url(&target), "following blob redirect without credentials");
                None
            };
            response = self
                .send_with_retries(
                    Method::GET,
                    &target,
                    authorization.as_ref(),
                    headers.clone(),
                )
                .await?;
        }
        if response.status().is_redirection() {
            return Err(Error::Redirect {
                url: redact_url(response.url()),
                reason: format!("more than {MAX_REDIRECTS} redirects"),
            });
        }
        Ok(response)
    }

    /// The body of a successful blob response, with where it starts. `ranged` says whether the
    /// request asked for a range: a `206` to a request without one is a protocol violation.
    fn blob_body(&self, response: Response, offset: u64, ranged: bool) -> Result<BlobBody> {
        tracing::debug!(url = %redact_url(response.url()), version = ?response.version(), status = %response.status(), "blob response");
        let start = match response.status() {
            StatusCode::PARTIAL_CONTENT if !ranged => {
                return Err(Error::Protocol {
                    url: redact_url(response.url()),
                    reason: "answered 206 Partial Content to a request without Range".into(),
                });
            }
            StatusCode::PARTIAL_CONTENT => {
                let range = response
                    .headers()
                    .get(CONTENT_RANGE)
                    .and_then(|v| v.to_str().ok())
                    .and_then(parse_content_range_start);
                if range != Some(offset) {
                    return Err(Error::Protocol {
                        url: redact_url(response.url()),
                        reason: format!(
                            "answered 206 with a Content-Range that does not start at the requested offset {offset}"
                        ),
                    });
                }
                offset
            }
            _ => 0,
        };
        let content_length = response
            .headers()
            .get(CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        let stream = crate::http::body::body_stream(response, self.options.pace).boxed();
        Ok(BlobBody {
            offset: start,
            content_length,
            stream,
        })
    }

    async fn check_status(
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
}

impl RegistryClient {
    /// Whether requests carry tokens minted from an Azure identity.
    fn uses_azure_identity(&self) -> bool {
        use crate::credential::Credential;
        matches!(
            self.auth.credential(),
            Credential::Azure(_) | Credential::AzureOrAnonymous(_)
        )
    }

    /// What to say when the registry accepted our token but it grants no pull.
    fn permission_message(&self) -> String {
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

fn challenge_of(response: &Response) -> Option<Challenge> {
    challenge::from_headers(response.headers())
}

/// A transport failure as a registry error: TLS failures by their own variant.
fn transport_error(error: SendError) -> Error {
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
fn registry_error_message(body: &str) -> Option<String> {
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

/// `bytes START-END/TOTAL` -> START.
pub fn parse_content_range_start(value: &str) -> Option<u64> {
    let rest = value.trim().strip_prefix("bytes")?.trim_start();
    let (range, _total) = rest.split_once('/')?;
    let (start, end) = range.split_once('-')?;
    let start: u64 = start.trim().parse().ok()?;
    let end: u64 = end.trim().parse().ok()?;
    (end >= start).then_some(start)
}

/// A manifest-like body (manifest, referrers list), capped at `limit`, held to `pace`.
async fn read_capped(
    response: Response,
    limit: u64,
    url: &str,
    pace: crate::http::Pace,
) -> Result<Bytes> {
    crate::http::read_capped(response, limit, pace)
        .await
        .map_err(|error| match error {
            BodyError::TooLarge { limit } => Error::ManifestTooLarge {
                url: url.to_string(),
                limit,
            },
            BodyError::Transport(source) => Error::Body {
                url: url.to_string(),
                source,
            },
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_range() {
        assert_eq!(parse_content_range_start("bytes 100-199/200"), Some(100));
        assert_eq!(parse_content_range_start("bytes 100-199/*"), Some(100));
        assert_eq!(parse_content_range_start("bytes 5-1/9"), None);
        assert_eq!(parse_content_range_start("items 1-2/3"), None);
    }

    #[test]
    fn registry_errors() {
        assert_eq!(
            registry_error_message(
                r#"{"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown"}]}"#
            )
            .as_deref(),
            Some("MANIFEST_UNKNOWN: manifest unknown")
        );
        assert_eq!(registry_error_message("<html>"), None);
    }

    fn client_at(host: &str, parallel_ranges: Option<bool>) -> RegistryClient {
        let options = ClientOptions {
            parallel_ranges,
            ..ClientOptions::default()
        };
        let http = build_http(&options).unwrap();
        RegistryClient::new(http, host, host, "app", Credential::Anonymous, options)
    }

    #[test]
    fn parallel_ranges_are_an_option_not_an_environment_variable() {
        // Unset: a registry across the network gets ranges, a loopback one does not.
        assert!(client_at("registry.example", None).parallel_ranges());
        assert!(!client_at("127.0.0.1:5000", None).parallel_ranges());
        // Set: the option decides, wherever the registry is.
        assert!(client_at("127.0.0.1:5000", Some(true)).parallel_ranges());
        assert!(!client_at("registry.example", Some(false)).parallel_ranges());
    }
}
