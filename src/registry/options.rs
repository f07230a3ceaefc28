//! How to reach registries: the options every client shares (TLS roots, proxies, timeouts,
//! pacing) and the route to one registry (its endpoint and the repository path there).

use std::path::PathBuf;
use std::time::Duration;

use reqwest::header::HeaderMap;

use super::retry::RetryPolicy;

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
    /// Reuse the clients (and their connections) of earlier pulls in the same run: `pull -f`
    /// sets it; `None` builds a client per registry client.
    pub shared_clients: Option<crate::http::SharedClients>,
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
pub fn build_http(options: &ClientOptions) -> Result<reqwest::Client, crate::http::ClientError> {
    let http = crate::http::HttpOptions {
        read_timeout: Some(options.read_timeout.unwrap_or(Duration::from_secs(60))),
        insecure: options.insecure,
        ca_files: options.ca_files.clone(),
        client_certificate: options.client_certificate.clone(),
        ..crate::http::HttpOptions::default()
    };
    match &options.shared_clients {
        Some(shared) => shared.client(&http),
        None => crate::http::build_client(&http),
    }
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
