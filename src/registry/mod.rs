//! The registry client: the only code that speaks HTTP to registries.
//!
//! It picks the scheme (HTTPS, falling back to plain HTTP for loopback registries as Docker
//! does), authenticates lazily from challenges, retries transient failures with backoff, and
//! follows redirects itself so that `Authorization` never leaves the registry's origin.

pub mod auth;
pub mod error;
mod fetched;
mod listing;
mod options;
pub mod referrers;
mod send;
mod upload;

pub use crate::http::redact_url;
/// The retry policy, from the one HTTP stack (kept here under its old path).
pub use crate::http::retry;

use bytes::Bytes;
use futures_util::StreamExt;
use reqwest::header::{HeaderMap, ACCEPT, CONTENT_LENGTH, CONTENT_RANGE, RANGE};
use reqwest::{Method, Response, StatusCode};
use tokio::sync::OnceCell;

use self::auth::Authenticator;
pub use self::fetched::{BlobBody, FetchedManifest};
use crate::credential::Credential;
use crate::digest::Digest;
use crate::http::BodyError;
use crate::media_type;
pub use error::{Error, Missing, Result};
pub use options::{build_http, ClientOptions, Route};
pub use send::BodyFactory;

/// Manifests larger than this are refused.
pub const MANIFEST_LIMIT: u64 = 4 * 1024 * 1024;
const MAX_REDIRECTS: usize = 5;
/// Retries for a refused connection to a loopback registry (see `RegistryClient::retries_after`).
const LOOPBACK_REFUSED_RETRIES: u32 = 1;

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

    /// The base URL (`scheme://host`), probed on first use where HTTPS and plain HTTP are
    /// both allowed.
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
    use super::send::registry_error_message;
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
