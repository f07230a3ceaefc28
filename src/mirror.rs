//! Mirrors and pull-through caches: `registries.conf` (containers format v2: `[[registry]]`
//! with `prefix`, `location`, `insecure`, `blocked` and `[[registry.mirror]]`) and one-off
//! `--mirror HOST`. A pull tries the mirrors in order and falls back to the origin; blobs and
//! digest-pinned manifests are verified by digest, so any mirror may serve them, while a
//! mirror marked `pull-from-mirror = "digest-only"` is skipped for tags. Which endpoint
//! served what is recorded for `-v` and `--json`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use serde::Deserialize;

use crate::digest::Digest;
use crate::reference::Reference;
use crate::registry::{Error, RegistryClient, Result};
use crate::source::{BlobBody, FetchedManifest, ImageSource};

/// Why a mirror configuration cannot be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The file could not be read.
    #[error("reading {path} failed")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The file is not valid registries.conf TOML.
    #[error("{path} is not a valid registries.conf: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// What the parser said.
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
}

#[derive(Debug, Default, Deserialize)]
struct File {
    #[serde(default)]
    registry: Vec<Entry>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "kebab-case")]
struct Entry {
    prefix: Option<String>,
    location: Option<String>,
    #[serde(default)]
    insecure: bool,
    #[serde(default)]
    blocked: bool,
    #[serde(default)]
    mirror: Vec<MirrorEntry>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "kebab-case")]
struct MirrorEntry {
    location: String,
    #[serde(default)]
    insecure: bool,
    pull_from_mirror: Option<String>,
}

/// Parsed `registries.conf`.
#[derive(Debug, Default)]
pub struct MirrorConfig {
    entries: Vec<Entry>,
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
}

/// The registries.conf paths, in the order containers tools use: `--registries-conf`, then
/// `CONTAINERS_REGISTRIES_CONF`, then `/etc/containers/registries.conf` (if present).
pub fn config_path(flag: Option<&Path>, env: Option<PathBuf>) -> Option<PathBuf> {
    flag.map(Path::to_path_buf).or(env).or_else(|| {
        let system = PathBuf::from("/etc/containers/registries.conf");
        system.is_file().then_some(system)
    })
}

impl MirrorConfig {
    /// Read and parse a file.
    pub fn load(path: &Path) -> std::result::Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Self::parse(&text).map_err(|message| ConfigError::Parse {
            path: path.to_path_buf(),
            message,
        })
    }

    /// Parse registries.conf text (unknown keys are ignored, as containers tools do).
    pub fn parse(text: &str) -> std::result::Result<Self, String> {
        let file: File = toml::from_str(text).map_err(|e| e.to_string())?;
        Ok(Self {
            entries: file.registry,
        })
    }

    /// The endpoints to try for `reference`, mirrors first, then the origin; `extra` mirrors
    /// (from `--mirror`) come before configured ones.
    pub fn endpoints(
        &self,
        reference: &Reference,
        extra: &[String],
    ) -> std::result::Result<Vec<Endpoint>, ConfigError> {
        let full = format!("{}/{}", reference.registry(), reference.repository());
        let matched = self
            .entries
            .iter()
            .filter_map(|entry| {
                let prefix = entry.prefix.as_deref().or(entry.location.as_deref())?;
                let prefix = prefix.trim_end_matches('/');
                let matches = full == prefix
                    || full.starts_with(&format!("{prefix}/"))
                    || reference.registry() == prefix;
                matches.then_some((prefix, entry))
            })
            .max_by_key(|(prefix, _)| prefix.len());
        let mut endpoints = Vec::new();
        for location in extra {
            endpoints.push(rewrite(
                &full,
                reference.registry(),
                location,
                false,
                false,
            )?);
        }
        let Some((prefix, entry)) = matched else {
            endpoints.push(origin(reference, false));
            return Ok(endpoints);
        };
        if entry.blocked {
            return Err(ConfigError::Blocked(full));
        }
        for mirror in &entry.mirror {
            let digest_only = mirror.pull_from_mirror.as_deref() == Some("digest-only");
            endpoints.push(rewrite(
                &full,
                prefix,
                &mirror.location,
                mirror.insecure,
                digest_only,
            )?);
        }
        let mut last = match &entry.location {
            Some(location) => rewrite(&full, prefix, location, entry.insecure, false)?,
            None => origin(reference, entry.insecure),
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
    }
}

/// Replace `prefix` in `full` by `location` and split into host and repository.
fn rewrite(
    full: &str,
    prefix: &str,
    location: &str,
    insecure: bool,
    digest_only: bool,
) -> std::result::Result<Endpoint, ConfigError> {
    let bad = || ConfigError::BadLocation(location.to_string());
    let remainder = full.strip_prefix(prefix).ok_or_else(bad)?;
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
