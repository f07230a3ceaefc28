//! Mirrors and pull-through caches, configured the containers way (`registries.conf`, see
//! [`registries_conf`]), the containerd way (`hosts.toml`, see [`hosts_toml`]) or one-off with
//! `--mirror HOST`. A pull tries the mirrors in order and falls back to the origin; blobs and
//! digest-pinned manifests are verified by digest, so any mirror may serve them, while a
//! digest-only mirror (`pull-from-mirror = "digest-only"`, a `hosts.toml` host without
//! `resolve`) is skipped for tags. Which endpoint served what is recorded for `-v` and `--json`.

pub mod hosts_toml;
pub mod registries_conf;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use reqwest::header::HeaderMap;

use crate::digest::Digest;
use crate::http::{CertsDirError, TlsFiles};
use crate::reference::Reference;
use crate::registry::{ClientOptions, Error, RegistryClient, Result, Route};
use crate::source::{BlobBody, FetchedManifest, ImageSource};
pub use hosts_toml::HostsDir;
use registries_conf::{ConfFiles, MirrorUse};

/// Why the registry configuration (registries.conf, hosts.toml, certificates directories)
/// cannot be used. The binary exits with 2 for all of these.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// A file could not be read.
    #[error("reading {path} failed")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A registries.conf or hosts.toml file is malformed or refused.
    #[error("{} is not a valid {}: {message}", path.display(), kind_of(path))]
    Parse {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// The configuration blocks the registry.
    #[error("pulls from `{0}` are blocked by registries.conf")]
    Blocked(String),
    /// A location that is not `host[:port][/path]`, or that gives the reference an invalid
    /// registry or repository once its prefix is replaced (containers tools refuse such a
    /// rewritten reference too).
    #[error("invalid mirror location `{0}`")]
    BadLocation(String),
    /// A hosts.toml leaves no host that may pull (every host lacks the `pull` capability).
    #[error("hosts.toml for `{0}` lists no host with the `pull` capability")]
    NoPullHosts(String),
    /// A certificates directory is unusable (a client certificate without its key, ...).
    #[error(transparent)]
    CertsDir(#[from] CertsDirError),
}

fn kind_of(path: &Path) -> &'static str {
    if path.file_name().is_some_and(|name| name == "hosts.toml") {
        "hosts.toml"
    } else {
        "registries.conf"
    }
}

/// How to reach one endpoint beyond its host: what a `hosts.toml` entry may set.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Connection {
    /// Plain HTTP (`http://` host).
    pub plain_http: bool,
    /// Accept any TLS certificate (`skip_verify`).
    pub skip_verify: bool,
    /// The API root when not `v2/` (see [`Route::api_root`]).
    pub api_root: Option<String>,
    /// `?ns=<registry>` on pull requests (containerd's mirror convention).
    pub namespace: Option<String>,
    /// Headers for every request to the endpoint.
    pub headers: HeaderMap,
    /// CA files and client certificates, besides those of the host's certificates directory.
    pub tls: TlsFiles,
}

/// One place to pull an image from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// `host[:port]`.
    pub host: String,
    /// The repository at that host (mirrors may nest it under a path).
    pub repository: String,
    /// Plain HTTP or unverified TLS allowed.
    pub insecure: bool,
    /// Only digest-pinned manifests may come from here.
    pub digest_only: bool,
    /// The origin (last resort).
    pub origin: bool,
    /// Scheme, API path, headers and TLS files.
    pub connection: Connection,
}

impl Endpoint {
    /// The client options for this endpoint: `base` with the endpoint's TLS settings and its
    /// host's certificates directory.
    pub fn client_options(
        &self,
        base: &ClientOptions,
    ) -> std::result::Result<ClientOptions, ConfigError> {
        let mut options = base.clone();
        options.http_fallback |= self.insecure;
        options.insecure |= self.insecure || self.connection.skip_verify;
        options.plain_http |= self.connection.plain_http;
        options
            .ca_files
            .extend(self.connection.tls.ca_files.iter().cloned());
        if let Some(certificate) = self.connection.tls.client_certificates.first() {
            options.client_certificate = Some(certificate.clone());
        }
        Ok(options.for_host(&self.host)?)
    }

    /// Where the API is at the endpoint's host and what requests carry.
    pub fn route(&self) -> Route {
        let mut route = Route::default();
        if let Some(root) = &self.connection.api_root {
            route.api_root = root.clone();
        }
        route.namespace = self.connection.namespace.clone();
        route.headers = self.connection.headers.clone();
        route
    }

    /// Whether this is `reference`'s own registry reached as usual, so that nothing about
    /// mirrors needs doing.
    pub fn is_plain_origin_of(&self, reference: &Reference) -> bool {
        self.origin
            && !self.insecure
            && self.host == reference.registry()
            && self.repository == reference.repository()
            && self.connection == Connection::default()
    }
}

/// The locations of registries.conf (containers) and hosts.toml (containerd) files, for
/// [`MirrorConfig::load`].
#[derive(Debug, Clone, Default)]
pub struct ConfigFiles {
    /// registries.conf and its drop-ins (see [`ConfFiles::locate`]).
    pub registries_conf: ConfFiles,
    /// The hosts.toml directory (`--hosts-dir`, or [`HostsDir::system`]).
    pub hosts_dir: Option<HostsDir>,
}

/// The parsed mirror configuration.
#[derive(Debug, Default)]
pub struct MirrorConfig {
    registries: Vec<registries_conf::Registry>,
    hosts_dir: Option<HostsDir>,
}

/// The registries.conf paths when only one file is named: `--registries-conf`, then
/// `CONTAINERS_REGISTRIES_CONF`, then `/etc/containers/registries.conf` (if present). Kept for
/// callers of the first version; [`ConfFiles::locate`] finds drop-ins and the user's file too.
pub fn config_path(flag: Option<&Path>, env: Option<PathBuf>) -> Option<PathBuf> {
    flag.map(Path::to_path_buf).or(env).or_else(|| {
        let system = PathBuf::from("/etc/containers/registries.conf");
        system.is_file().then_some(system)
    })
}

impl MirrorConfig {
    /// Read one registries.conf file.
    pub fn load_file(path: &Path) -> std::result::Result<Self, ConfigError> {
        Self::load(&ConfigFiles {
            registries_conf: ConfFiles {
                main: Some((path.to_path_buf(), true)),
                drop_in_dirs: Vec::new(),
            },
            hosts_dir: None,
        })
    }

    /// Read every file `files` names.
    pub fn load(files: &ConfigFiles) -> std::result::Result<Self, ConfigError> {
        Ok(Self {
            registries: files.registries_conf.load()?,
            hosts_dir: files.hosts_dir.clone(),
        })
    }

    /// Parse registries.conf text (unknown keys are ignored, as containers tools do).
    pub fn parse(text: &str) -> std::result::Result<Self, String> {
        Ok(Self {
            registries: registries_conf::parse(text)?,
            hosts_dir: None,
        })
    }

    /// The endpoints to try for `reference`, mirrors first, then the origin; `extra` mirrors
    /// (from `--mirror`) come before configured ones. When a hosts.toml directory applies to
    /// the registry, it decides the endpoints after `extra`, and registries.conf only whether
    /// the registry is blocked.
    pub fn endpoints(
        &self,
        reference: &Reference,
        extra: &[String],
    ) -> std::result::Result<Vec<Endpoint>, ConfigError> {
        let full = format!("{}/{}", reference.registry(), reference.repository());
        let matched = registries_conf::find(&self.registries, &full);
        if let Some((entry, _)) = matched {
            if entry.blocked {
                return Err(ConfigError::Blocked(full));
            }
        }
        let mut endpoints = Vec::new();
        for location in extra {
            endpoints.push(rewrite(
                &full,
                reference.registry().len(),
                location,
                false,
                false,
            )?);
        }
        if let Some(hosts) = &self.hosts_dir {
            if let Some(configured) = hosts.endpoints(reference)? {
                endpoints.extend(configured);
                return Ok(endpoints);
            }
        }
        let Some((entry, matched_len)) = matched else {
            endpoints.push(origin(reference, false));
            return Ok(endpoints);
        };
        let pinned = reference.digest().is_some();
        for mirror in &entry.mirrors {
            // A tag-only mirror serves nothing to a pull by digest.
            if mirror.usage == MirrorUse::TagOnly && pinned {
                continue;
            }
            endpoints.push(rewrite(
                &full,
                matched_len,
                &mirror.location,
                mirror.insecure,
                mirror.usage == MirrorUse::DigestOnly,
            )?);
        }
        let mut last = if entry.location.is_empty() {
            origin(reference, entry.insecure)
        } else {
            rewrite(&full, matched_len, &entry.location, entry.insecure, false)?
        };
        last.origin = true;
        endpoints.push(last);
        Ok(endpoints)
    }
}

fn origin(reference: &Reference, insecure: bool) -> Endpoint {
    Endpoint {
        host: reference.registry().to_string(),
        repository: reference.repository().to_string(),
        insecure,
        digest_only: false,
        origin: true,
        connection: Connection::default(),
    }
}

/// Replace the first `matched` bytes of `full` by `location` and split into host and
/// repository.
fn rewrite(
    full: &str,
    matched: usize,
    location: &str,
    insecure: bool,
    digest_only: bool,
) -> std::result::Result<Endpoint, ConfigError> {
    let bad = || ConfigError::BadLocation(location.to_string());
    let remainder = full.get(matched..).ok_or_else(bad)?;
    let location = location
        .trim_start_matches("https://")
        .trim_start_matches("http://")
        .trim_end_matches('/');
    let rewritten = format!("{location}{remainder}");
    let (host, repository) = rewritten.split_once('/').ok_or_else(bad)?;
    // The endpoint's host goes into URLs and its repository into paths and token scopes.
    if !crate::reference::valid_name(host, repository) {
        return Err(bad());
    }
    Ok(Endpoint {
        host: host.to_string(),
        repository: repository.to_string(),
        insecure,
        digest_only,
        origin: false,
        connection: Connection::default(),
    })
}

/// An [`ImageSource`] over several endpoints, tried in order.
pub struct MirroredSource {
    endpoints: Vec<(Endpoint, Arc<RegistryClient>)>,
    served: Mutex<BTreeMap<String, String>>,
}

impl MirroredSource {
    /// Endpoints with their clients, in the order to try.
    pub fn new(endpoints: Vec<(Endpoint, Arc<RegistryClient>)>) -> Self {
        Self {
            endpoints,
            served: Mutex::new(BTreeMap::new()),
        }
    }

    fn record(&self, what: String, endpoint: &Endpoint) {
        tracing::info!(%what, endpoint = %endpoint.host, "served");
        if let Ok(mut served) = self.served.lock() {
            served.insert(what, endpoint.host.clone());
        }
    }
}

#[async_trait::async_trait]
impl ImageSource for MirroredSource {
    fn describe(&self) -> String {
        self.endpoints
            .iter()
            .map(|(e, _)| format!("{}/{}", e.host, e.repository))
            .collect::<Vec<_>>()
            .join(", ")
    }

    async fn manifest(&self, reference: &str) -> Result<FetchedManifest> {
        let pinned = reference.parse::<Digest>().is_ok();
        let mut last = None;
        for (endpoint, client) in &self.endpoints {
            if endpoint.digest_only && !pinned {
                continue;
            }
            match client.manifest(reference).await {
                Ok(manifest) => {
                    self.record(format!("manifest {reference}"), endpoint);
                    return Ok(manifest);
                }
                Err(e) => {
                    tracing::warn!(endpoint = %endpoint.host, error = %e, "endpoint failed; trying the next");
                    last = Some(e);
                }
            }
        }
        Err(last.unwrap_or_else(|| Error::NotFound {
            kind: crate::registry::Missing::Manifest,
            what: format!("manifest `{reference}`"),
            url: self.describe(),
        }))
    }

    async fn open_blob(&self, digest: &Digest, offset: u64, end: Option<u64>) -> Result<BlobBody> {
        let mut last = None;
        for (endpoint, client) in &self.endpoints {
            match client.open_blob(digest, offset, end).await {
                Ok(body) => {
                    self.record(digest.to_string(), endpoint);
                    return Ok(body);
                }
                Err(e) => {
                    tracing::warn!(endpoint = %endpoint.host, error = %e, "endpoint failed; trying the next");
                    last = Some(e);
                }
            }
        }
        Err(last.unwrap_or_else(|| Error::NotFound {
            kind: crate::registry::Missing::Blob,
            what: format!("blob {digest}"),
            url: self.describe(),
        }))
    }

    fn prefers_parallel_ranges(&self) -> bool {
        self.endpoints
            .iter()
            .any(|(_, client)| client.prefers_parallel_ranges())
    }

    fn served_by(&self) -> BTreeMap<String, String> {
        self.served.lock().map(|s| s.clone()).unwrap_or_default()
    }

    /// Referrers lists change like tags, and pull-through caches do not serve the API: they
    /// come from the origin.
    async fn referrers_page(
        &self,
        subject: &Digest,
        artifact_type: Option<&str>,
        page: Option<&url::Url>,
    ) -> Result<crate::registry::referrers::ReferrersPage> {
        match self.endpoints.iter().find(|(endpoint, _)| endpoint.origin) {
            Some((_, client)) => client.referrers_page(subject, artifact_type, page).await,
            None => Ok(crate::registry::referrers::ReferrersPage::Unsupported),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reference(s: &str) -> Reference {
        s.parse().unwrap()
    }

    #[test]
    fn mirrors_first_then_origin_with_prefix_rewriting() {
        let config = MirrorConfig::parse(
            r#"
unqualified-search-registries = ["docker.io"]
[[registry]]
prefix = "docker.io/library"
location = "docker.io/library"
[[registry.mirror]]
location = "mirror.local:5000/hub/library"
[[registry.mirror]]
location = "cache.local"
insecure = true
pull-from-mirror = "digest-only"
[[registry]]
location = "blocked.example"
blocked = true
"#,
        )
        .unwrap();
        let endpoints = config.endpoints(&reference("alpine:3"), &[]).unwrap();
        let hosts: Vec<(&str, &str)> = endpoints
            .iter()
            .map(|e| (e.host.as_str(), e.repository.as_str()))
            .collect();
        assert_eq!(
            hosts,
            vec![
                ("mirror.local:5000", "hub/library/alpine"),
                ("cache.local", "alpine"),
                ("docker.io", "library/alpine")
            ]
        );
        assert!(endpoints[1].digest_only && endpoints[1].insecure);
        assert!(endpoints[2].origin);
        assert!(matches!(
            config.endpoints(&reference("blocked.example/x"), &[]),
            Err(ConfigError::Blocked(_))
        ));
        // No entry: extra mirrors, then the origin.
        let endpoints = config
            .endpoints(
                &reference("other.example/team/app:v1"),
                &["127.0.0.1:5001".into()],
            )
            .unwrap();
        assert_eq!(endpoints[0].host, "127.0.0.1:5001");
        assert_eq!(endpoints[0].repository, "team/app");
        assert_eq!(endpoints[1].host, "other.example");
    }

    /// Found by the `registries_conf` fuzz target: a location was used as long as it had a
    /// `/`, so `m.example/x?y` made the repository `x?y/...` (a query in every request URL)
    /// and `user@m.example` a host with user info.
    #[test]
    fn locations_that_make_invalid_names_are_refused() {
        for location in [
            "m.example/x?y",
            "user@m.example",
            "m.example#frag",
            "m.example/Upper",
            "m.example:99999",
            "m.example//x",
            "-m.example",
        ] {
            let config = MirrorConfig::parse(&format!(
                "[[registry]]\nlocation = \"a.example\"\n[[registry.mirror]]\nlocation = \"{location}\"\n"
            ))
            .unwrap();
            let result = config.endpoints(&reference("a.example/team/app:v1"), &[]);
            assert!(
                matches!(&result, Err(ConfigError::BadLocation(l)) if l == location),
                "{location}: {result:?}"
            );
            let result = MirrorConfig::default()
                .endpoints(&reference("a.example/team/app:v1"), &[location.to_string()]);
            assert!(
                matches!(result, Err(ConfigError::BadLocation(_))),
                "{location}"
            );
        }
        // Bare hosts, ports, IPv6 literals and nested paths stay usable.
        for (location, host, repository) in [
            ("mirror", "mirror", "team/app"),
            (
                "https://m.example:5000/cache/",
                "m.example:5000",
                "cache/team/app",
            ),
            ("[::1]:5000/v6", "[::1]:5000", "v6/team/app"),
        ] {
            let endpoints = MirrorConfig::default()
                .endpoints(&reference("a.example/team/app:v1"), &[location.to_string()])
                .unwrap();
            assert_eq!(
                (endpoints[0].host.as_str(), endpoints[0].repository.as_str()),
                (host, repository)
            );
        }
    }

    #[test]
    fn bad_files_are_errors() {
        assert!(MirrorConfig::parse("[[registry]\n").is_err());
        assert!(MirrorConfig::parse("[[registry]]\nlocation = 5\n").is_err());
    }
}
