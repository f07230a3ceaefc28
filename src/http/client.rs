//! Building HTTP clients, in one place: trusted roots and extra CA files, proxies, timeouts,
//! and never following redirects by itself (callers follow them, so that credentials never
//! cross to another origin).

use std::path::PathBuf;
use std::time::Duration;

/// Which proxy a client uses.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Proxy {
    /// `HTTPS_PROXY`, `HTTP_PROXY`, `NO_PROXY` from the environment, as reqwest reads them.
    #[default]
    System,
    /// None: identity endpoints on the local machine or link (IMDS must not be reached through a
    /// proxy) and loopback fakes.
    Direct,
}

/// How to build a client.
#[derive(Debug, Clone)]
pub struct HttpOptions {
    /// Proxy use.
    pub proxy: Proxy,
    /// Timeout for connecting.
    pub connect_timeout: Duration,
    /// Timeout for each read (none: only the per-request timeouts the caller sets).
    pub read_timeout: Option<Duration>,
    /// Accept any TLS certificate.
    pub insecure: bool,
    /// PEM files with extra CA certificates to trust.
    pub ca_files: Vec<PathBuf>,
}

impl Default for HttpOptions {
    fn default() -> Self {
        Self {
            proxy: Proxy::System,
            connect_timeout: Duration::from_secs(15),
            read_timeout: Some(Duration::from_secs(60)),
            insecure: false,
            ca_files: Vec::new(),
        }
    }
}

/// Why a client could not be built.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// A CA file could not be read.
    #[error("reading CA file {} failed", path.display())]
    ReadCaFile {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A CA file holds no usable PEM certificates.
    #[error("CA file {} is not PEM", path.display())]
    BadCaFile {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: reqwest::Error,
    },
    /// The TLS backend refused the configuration.
    #[error("the HTTP client could not be built")]
    Build(#[source] reqwest::Error),
}

/// A client as `options` describe it.
pub fn build_client(options: &HttpOptions) -> Result<reqwest::Client, ClientError> {
    let mut builder = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("acrpull/", env!("CARGO_PKG_VERSION")))
        .connect_timeout(options.connect_timeout)
        .danger_accept_invalid_certs(options.insecure);
    if let Some(timeout) = options.read_timeout {
        builder = builder.read_timeout(timeout);
    }
    if options.proxy == Proxy::Direct {
        builder = builder.no_proxy();
    }
    for path in &options.ca_files {
        let pem = std::fs::read(path).map_err(|source| ClientError::ReadCaFile {
            path: path.clone(),
            source,
        })?;
        let certificates = reqwest::Certificate::from_pem_bundle(&pem).map_err(|source| {
            ClientError::BadCaFile {
                path: path.clone(),
                source,
            }
        })?;
        for certificate in certificates {
            builder = builder.add_root_certificate(certificate);
        }
    }
    builder.build().map_err(ClientError::Build)
}
