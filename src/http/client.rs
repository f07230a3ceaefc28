//! Building HTTP clients, in one place: trusted roots and extra CA files, a client certificate
//! for registries that require one, proxies, timeouts, and never following redirects by itself
//! (callers follow them, so that credentials never cross to another origin).

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
#[derive(Debug, Clone, PartialEq, Eq)]
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
    /// The certificate (and key) to present to servers that ask for one.
    pub client_certificate: Option<ClientCertificate>,
}

/// A TLS client certificate: a PEM certificate chain and its PEM private key, in two files
/// (`client.cert` + `client.key`) or in one (`key: None`, as containerd's `client = "file.pem"`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientCertificate {
    /// The certificate chain, leaf first.
    pub cert: PathBuf,
    /// The private key (PKCS#8, PKCS#1 or SEC1), when not in `cert`.
    pub key: Option<PathBuf>,
}

impl Default for HttpOptions {
    fn default() -> Self {
        Self {
            proxy: Proxy::System,
            connect_timeout: Duration::from_secs(15),
            read_timeout: Some(Duration::from_secs(60)),
            insecure: false,
            ca_files: Vec::new(),
            client_certificate: None,
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
    /// A client certificate or key file could not be read.
    #[error("reading client certificate file {} failed", path.display())]
    ReadClientCertificate {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The client certificate files hold no certificate, no private key, or not PEM.
    #[error(
        "client certificate {} is unusable: it needs a PEM certificate and a PEM private key{}",
        cert.display(),
        key.as_ref().map(|k| format!(" (key file {})", k.display())).unwrap_or_default()
    )]
    BadClientCertificate {
        /// The certificate file.
        cert: PathBuf,
        /// The key file, when separate.
        key: Option<PathBuf>,
        /// Why (never the file's content).
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
    if let Some(certificate) = &options.client_certificate {
        builder = builder.identity(identity(certificate)?);
    }
    builder.build().map_err(ClientError::Build)
}

/// Clients kept for a run of several pulls (`pull -f`), one per set of [`HttpOptions`], so
/// that the next image reuses the connections (and TLS sessions) the previous one opened
/// instead of connecting again: on a link every new connection costs a round trip or two.
/// Also the scheme each host was found to speak where both were allowed (loopback, insecure
/// registries), so that the next image does not try HTTPS again. Made per run, never
/// process-wide: a client's pooled connections belong to the tokio runtime that opened them.
/// Credentials are per request, so sharing a pool between registries or credentials shares
/// no secret.
#[derive(Clone, Default)]
pub struct SharedClients {
    built: std::sync::Arc<std::sync::Mutex<Vec<(HttpOptions, reqwest::Client)>>>,
    schemes: std::sync::Arc<std::sync::Mutex<Vec<(String, &'static str)>>>,
}

impl SharedClients {
    /// The client built for `options` earlier in this run, else a new one, kept.
    pub fn client(&self, options: &HttpOptions) -> Result<reqwest::Client, ClientError> {
        let mut built = self
            .built
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some((_, client)) = built.iter().find(|(kept, _)| kept == options) {
            return Ok(client.clone());
        }
        let client = build_client(options)?;
        built.push((options.clone(), client.clone()));
        Ok(client)
    }

    /// The scheme (`https` or `http`) `host` was found to speak earlier in this run.
    pub fn scheme_of(&self, host: &str) -> Option<&'static str> {
        let schemes = self
            .schemes
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        schemes.iter().find(|(h, _)| h == host).map(|(_, s)| *s)
    }

    /// Remember that `host` speaks `scheme`.
    pub fn remember_scheme(&self, host: &str, scheme: &'static str) {
        let mut schemes = self
            .schemes
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if !schemes.iter().any(|(h, _)| h == host) {
            schemes.push((host.to_string(), scheme));
        }
    }
}

impl std::fmt::Debug for SharedClients {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let built = self.built.lock().map_or(0, |built| built.len());
        f.debug_struct("SharedClients")
            .field("built", &built)
            .finish()
    }
}

/// The identity a client certificate's files make: certificate chain and key in one PEM buffer.
fn identity(certificate: &ClientCertificate) -> Result<reqwest::Identity, ClientError> {
    let read = |path: &PathBuf| {
        std::fs::read(path).map_err(|source| ClientError::ReadClientCertificate {
            path: path.clone(),
            source,
        })
    };
    let mut pem = read(&certificate.cert)?;
    if let Some(key) = &certificate.key {
        pem.push(b'\n');
        pem.extend_from_slice(&read(key)?);
    }
    let identity = reqwest::Identity::from_pem(&pem);
    // The buffer holds a private key: do not leave it in freed memory longer than needed.
    pem.fill(0);
    identity.map_err(|source| ClientError::BadClientCertificate {
        cert: certificate.cert.clone(),
        key: certificate.key.clone(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shared_clients_build_one_client_per_set_of_options_and_remember_schemes() {
        let shared = SharedClients::default();
        let plain = HttpOptions::default();
        let insecure = HttpOptions {
            insecure: true,
            ..HttpOptions::default()
        };
        for options in [&plain, &insecure, &plain, &insecure] {
            shared.client(options).unwrap();
        }
        assert_eq!(shared.built.lock().unwrap().len(), 2);
        assert_eq!(shared.scheme_of("127.0.0.1:5000"), None);
        shared.remember_scheme("127.0.0.1:5000", "http");
        shared.remember_scheme("127.0.0.1:5000", "https");
        assert_eq!(
            shared.scheme_of("127.0.0.1:5000"),
            Some("http"),
            "the first answer stays"
        );
        assert_eq!(shared.scheme_of("127.0.0.1:5001"), None);
    }
}
