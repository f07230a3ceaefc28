//! containerd's registry host configuration: `DIR/<host[:port]>/hosts.toml` (default
//! `DIR` = `/etc/containerd/certs.d`), the form in which P2P and caching engines (Spegel,
//! Dragonfly, Harbor or distribution as pull-through caches) configure a node.
//!
//! Read as containerd's `remotes/docker/config` reads it: the directory for a registry is
//! `host_port_`, then `host:port`, then `_default`; in `hosts.toml`, the `[host."URL"]` tables
//! are mirrors tried in the order they are written, then `server` (or the registry itself).
//! Each may set `capabilities` (`pull`: blobs and digest-pinned manifests; `resolve`: tags
//! too), `ca`, `client`, `skip_verify`, `header` and `override_path`. A directory without
//! `hosts.toml` contributes its certificate files (`*.crt`, `*.cert`/`*.key`) to the registry
//! itself. Mirrors are asked with `?ns=<registry>`, as containerd asks them.
//!
//! Where acrpull differs (docs/mirrors.md): a `hosts.toml` containerd cannot decode is an
//! error here, not a warning followed by the directory's certificate files; `dial_timeout`
//! is ignored (`--timeout` applies); of several client certificates the first is presented.

use std::path::{Path, PathBuf};

use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use serde::de::{MapAccess, Visitor};
use serde::Deserialize;

use super::{ConfigError, Connection, Endpoint};
use crate::http::certs_dir::{self, KeyRule};
use crate::http::{ClientCertificate, TlsFiles};
use crate::reference::Reference;

/// containerd's default configuration directory.
pub const DEFAULT_DIR: &str = "/etc/containerd/certs.d";

/// A `certs.d`-style directory of per-registry `hosts.toml` files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostsDir {
    root: PathBuf,
}

/// The root table of a `hosts.toml`: the `server` entry's settings and the `host` tables.
#[derive(Debug, Default, Deserialize)]
struct HostsFile {
    server: Option<String>,
    #[serde(flatten)]
    settings: HostSettings,
    #[serde(default)]
    host: Ordered,
}

/// What a `[host."URL"]` table (or the root, for `server`) may set. Unknown keys are ignored,
/// as containerd's decoder ignores them.
#[derive(Debug, Default, Deserialize)]
struct HostSettings {
    capabilities: Option<Vec<String>>,
    ca: Option<toml::Value>,
    client: Option<toml::Value>,
    skip_verify: Option<bool>,
    header: Option<toml::Table>,
    #[serde(default)]
    override_path: bool,
}

/// The `host` tables in the order the file writes them (the order mirrors are tried in).
#[derive(Debug, Default)]
struct Ordered(Vec<(String, HostSettings)>);

impl<'de> Deserialize<'de> for Ordered {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct InOrder;
        impl<'de> Visitor<'de> for InOrder {
            type Value = Ordered;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a table of host URLs")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Ordered, A::Error> {
                let mut hosts = Vec::new();
                while let Some((url, settings)) = map.next_entry()? {
                    hosts.push((url, settings));
                }
                Ok(Ordered(hosts))
            }
        }
        deserializer.deserialize_map(InOrder)
    }
}

/// One host of a `hosts.toml`, as containerd makes it of the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostEntry {
    /// `http` or `https`; `None` for the registry itself when `server` is not set.
    pub scheme: Option<String>,
    /// `host[:port]`; `None` for the registry itself when `server` is not set.
    pub host: Option<String>,
    /// The API root path (`/v2`, `/cache/v2`, or the path as written with `override_path`).
    pub path: String,
    /// May resolve tags (`resolve`).
    pub resolve: bool,
    /// May serve content (`pull`).
    pub pull: bool,
    /// CA files and client certificates.
    pub tls: TlsFiles,
    /// `skip_verify`.
    pub skip_verify: bool,
    /// `header`.
    pub headers: HeaderMap,
}

impl HostsDir {
    /// A configuration directory.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    /// containerd's default directory, when it exists.
    pub fn system() -> Option<Self> {
        Path::new(DEFAULT_DIR)
            .is_dir()
            .then(|| Self::new(DEFAULT_DIR))
    }

    /// The root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The directory that configures `registry` (`host[:port]`): `host_port_`, `host:port`,
    /// then `_default`, the first that exists; `None` when none does.
    pub fn dir_for(&self, registry: &str) -> Result<Option<PathBuf>, ConfigError> {
        let mut candidates = Vec::new();
        if let Some((host, port)) = registry.rsplit_once(':').filter(|(h, _)| !h.is_empty()) {
            candidates.push(self.root.join(format!("{host}_{port}_")));
        }
        candidates.push(self.root.join(registry));
        candidates.push(self.root.join("_default"));
        for dir in candidates {
            match std::fs::metadata(&dir) {
                Ok(_) => return Ok(Some(dir)),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(source) => return Err(ConfigError::Read { path: dir, source }),
            }
        }
        Ok(None)
    }

    /// The hosts configured for `registry`, in the order to try, the registry itself (or
    /// `server`) last; `None` when no directory applies.
    pub fn hosts(&self, registry: &str) -> Result<Option<Vec<HostEntry>>, ConfigError> {
        let Some(dir) = self.dir_for(registry)? else {
            return Ok(None);
        };
        let file = dir.join("hosts.toml");
        let text = match std::fs::read_to_string(&file) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
            Err(source) => return Err(ConfigError::Read { path: file, source }),
        };
        if text.trim().is_empty() {
            // No hosts.toml: the directory's certificate files, for the registry itself.
            let tls = certs_dir::read_dir(&dir, KeyRule::MayBeInCert)?;
            return Ok(Some(vec![HostEntry::registry_itself(tls)]));
        }
        parse(&dir, &text)
            .map(Some)
            .map_err(|message| ConfigError::Parse {
                path: file,
                message,
            })
    }

    /// The endpoints for `reference`, or `None` when no directory applies to its registry.
    pub fn endpoints(&self, reference: &Reference) -> Result<Option<Vec<Endpoint>>, ConfigError> {
        let Some(hosts) = self.hosts(reference.registry())? else {
            return Ok(None);
        };
        let registry = reference.registry();
        let count = hosts.len();
        let mut endpoints = Vec::new();
        for (index, entry) in hosts.into_iter().enumerate() {
            // containerd asks every host for `pull`, and for `resolve` too when the reference
            // is a tag: a host without `pull` serves nothing to a pull.
            if !entry.pull {
                continue;
            }
            let host = entry.host.clone().unwrap_or_else(|| registry.to_string());
            let is_proxy = host != registry
                && !(registry == crate::reference::DOCKER_HUB && host == "registry-1.docker.io");
            let api_root = api_root(&entry.path);
            endpoints.push(Endpoint {
                repository: reference.repository().to_string(),
                insecure: false,
                digest_only: !entry.resolve,
                origin: index + 1 == count,
                connection: Connection {
                    plain_http: entry.scheme.as_deref() == Some("http"),
                    skip_verify: entry.skip_verify,
                    api_root: (api_root != "v2/").then_some(api_root),
                    namespace: is_proxy.then(|| registry.to_string()),
                    headers: entry.headers,
                    tls: entry.tls,
                },
                host,
            });
        }
        if endpoints.is_empty() {
            return Err(ConfigError::NoPullHosts(registry.to_string()));
        }
        Ok(Some(endpoints))
    }
}

impl HostEntry {
    /// The registry itself with containerd's defaults: every capability, `/v2`.
    fn registry_itself(tls: TlsFiles) -> Self {
        Self {
            scheme: None,
            host: None,
            path: "/v2".to_string(),
            resolve: true,
            pull: true,
            tls,
            skip_verify: false,
            headers: HeaderMap::new(),
        }
    }
}

/// `/cache/v2` -> `cache/v2/`; `` -> `` (the API at the host's root, with `override_path`).
fn api_root(path: &str) -> String {
    let trimmed = path.trim_matches('/');
    if trimmed.is_empty() {
        String::new()
    } else {
        format!("{trimmed}/")
    }
}

/// Parse `hosts.toml` text; relative `ca` and `client` paths are relative to `dir`.
pub fn parse(dir: &Path, text: &str) -> Result<Vec<HostEntry>, String> {
    let mut file: HostsFile = toml::from_str(text).map_err(|e| e.to_string())?;
    // The deserializer may visit tables in key order: put them back in the file's order.
    let order = header_order(text);
    file.host
        .0
        .sort_by_key(|(url, _)| order.iter().position(|o| o == url).unwrap_or(usize::MAX));
    let mut hosts = Vec::new();
    for (url, settings) in &file.host.0 {
        let entry =
            host_entry(Some(url), dir, settings).map_err(|e| format!("[host.\"{url}\"]: {e}"))?;
        hosts.push(entry);
    }
    let server = file.server.as_deref().filter(|s| !s.is_empty());
    let entry = host_entry(server, dir, &file.settings).map_err(|e| match server {
        Some(server) => format!("server \"{server}\": {e}"),
        None => e,
    })?;
    hosts.push(entry);
    Ok(hosts)
}

/// The `[host."URL"]` table headers in the order the file writes them (as containerd's
/// `getSortedHosts` reads them); sub-tables (`[host."URL".header]`) count where first seen.
fn header_order(text: &str) -> Vec<String> {
    let mut order: Vec<String> = Vec::new();
    for line in text.lines() {
        let line = line.trim_start();
        let Some(rest) = line.strip_prefix('[').filter(|r| !r.starts_with('[')) else {
            continue;
        };
        let Some(rest) = rest.trim_start().strip_prefix("host").map(str::trim_start) else {
            continue;
        };
        let Some(rest) = rest.strip_prefix('.').map(str::trim_start) else {
            continue;
        };
        let name = match rest.chars().next() {
            Some(quote @ ('"' | '\'')) => rest[1..].split(quote).next().unwrap_or(""),
            _ => rest.split(['.', ']']).next().unwrap_or("").trim(),
        };
        if !name.is_empty() && !order.iter().any(|o| o == name) {
            order.push(name.to_string());
        }
    }
    order
}

fn host_entry(
    server: Option<&str>,
    dir: &Path,
    settings: &HostSettings,
) -> Result<HostEntry, String> {
    let mut entry = HostEntry::registry_itself(TlsFiles::default());
    if let Some(server) = server {
        let (scheme, host, path) = parse_server(server, settings.override_path)?;
        entry.scheme = Some(scheme);
        entry.host = Some(host);
        entry.path = path;
    } else if settings.override_path {
        entry.path = String::new();
    }
    if let Some(capabilities) = &settings.capabilities {
        entry.pull = false;
        entry.resolve = false;
        for capability in capabilities {
            match capability.to_ascii_lowercase().as_str() {
                "pull" => entry.pull = true,
                "resolve" => entry.resolve = true,
                // Pushes do not read hosts.toml here; referrers come from the registry.
                "push" | "referrers" => {}
                other => {
                    return Err(format!(
                        "unknown capability `{other}` (pull, resolve, push)"
                    ))
                }
            }
        }
    }
    entry.skip_verify = settings.skip_verify.unwrap_or(false);
    if let Some(ca) = &settings.ca {
        entry.tls.ca_files = strings("ca", ca)?
            .into_iter()
            .map(|p| absolute(dir, &p))
            .collect();
    }
    if let Some(client) = &settings.client {
        entry.tls.client_certificates = client_pairs(dir, client)?;
    }
    if let Some(header) = &settings.header {
        entry.headers = headers(header)?;
    }
    Ok(entry)
}

/// `https://host[:port][/path]` (`https://` assumed without a scheme) -> scheme, host, path.
fn parse_server(server: &str, override_path: bool) -> Result<(String, String, String), String> {
    let text = if server.starts_with("http://") || server.starts_with("https://") {
        server.to_string()
    } else if let Some((scheme, _)) = server.split_once("://") {
        return Err(format!("scheme `{scheme}` is not http or https"));
    } else {
        format!("https://{server}")
    };
    let url = url::Url::parse(&text).map_err(|e| format!("not a URL: {e}"))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(format!("scheme `{}` is not http or https", url.scheme()));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err("user information in the URL is not allowed".into());
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err("a query or fragment in the URL is not allowed".into());
    }
    let host = match (url.host_str(), url.port()) {
        (Some(host), Some(port)) => format!("{host}:{port}"),
        (Some(host), None) => host.to_string(),
        (None, _) => return Err("no host".into()),
    };
    let raw_path = url.path().trim_end_matches('/');
    let path = if raw_path.is_empty() {
        if override_path {
            String::new()
        } else {
            "/v2".to_string()
        }
    } else {
        let cleaned = clean_path(raw_path)?;
        if cleaned.ends_with("/v2") || override_path {
            cleaned
        } else {
            format!("{cleaned}/v2")
        }
    };
    Ok((url.scheme().to_string(), host, path))
}

/// `path.Clean` for the URL paths containerd accepts; `..` is refused rather than resolved.
fn clean_path(path: &str) -> Result<String, String> {
    let mut parts = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => return Err("`..` in the path is not allowed".into()),
            part => parts.push(part),
        }
    }
    Ok(format!("/{}", parts.join("/")))
}

/// A string, or an array of strings (`ca`, header values).
fn strings(key: &str, value: &toml::Value) -> Result<Vec<String>, String> {
    match value {
        toml::Value::String(s) => Ok(vec![s.clone()]),
        toml::Value::Array(items) => items
            .iter()
            .map(|item| match item {
                toml::Value::String(s) => Ok(s.clone()),
                other => Err(format!(
                    "`{key}` must hold strings (found {})",
                    other.type_str()
                )),
            })
            .collect(),
        other => Err(format!(
            "`{key}` must be a string or an array of strings (found {})",
            other.type_str()
        )),
    }
}

/// `client`: `"both.pem"`, `["a.pem", "b.pem"]` or `[["a.cert", "a.key"], ...]`.
fn client_pairs(dir: &Path, value: &toml::Value) -> Result<Vec<ClientCertificate>, String> {
    let single = |path: &str| ClientCertificate {
        cert: absolute(dir, path),
        key: None,
    };
    match value {
        toml::Value::String(path) => Ok(vec![single(path)]),
        toml::Value::Array(items) => items
            .iter()
            .map(|item| match item {
                toml::Value::String(path) => Ok(single(path)),
                toml::Value::Array(_) => match strings("client", item)?.as_slice() {
                    [cert, key] => Ok(ClientCertificate {
                        cert: absolute(dir, cert),
                        key: (!key.is_empty()).then(|| absolute(dir, key)),
                    }),
                    other => Err(format!(
                        "a `client` pair has {} entries, expected [certificate, key]",
                        other.len()
                    )),
                },
                other => Err(format!(
                    "`client` must hold paths or [certificate, key] pairs (found {})",
                    other.type_str()
                )),
            })
            .collect(),
        other => Err(format!(
            "`client` must be a path or an array (found {})",
            other.type_str()
        )),
    }
}

fn headers(table: &toml::Table) -> Result<HeaderMap, String> {
    let mut map = HeaderMap::new();
    for (name, value) in table {
        let header = HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| format!("`{name}` is not a valid header name"))?;
        for value in strings(&format!("header.{name}"), value)? {
            let value = HeaderValue::from_str(&value)
                .map_err(|_| format!("the value of header `{name}` is not a valid header value"))?;
            map.append(header.clone(), value);
        }
    }
    Ok(map)
}

fn absolute(dir: &Path, path: &str) -> PathBuf {
    let path = Path::new(path);
    if path.is_absolute() {
        path.to_path_buf()
    } else {
        dir.join(path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The fixture of containerd's `TestParseHostFile` (core/remotes/docker/config/
    /// hosts_test.go), rewritten here, with the results containerd expects.
    #[test]
    fn containerds_own_example_parses_as_containerd_reads_it() {
        let text = r#"
server = "https://test-default.registry"
ca = "/etc/path/default"
[header]
  x-custom-1 = "custom header"

[host."https://mirror.registry"]
  capabilities = ["pull"]
  ca = "/etc/certs/mirror.pem"
  skip_verify = false
  [host."https://mirror.registry".header]
    x-custom-2 = ["value1", "value2"]

[host."https://mirror-bak.registry/us"]
  capabilities = ["pull"]
  skip_verify = true

[host."http://mirror.registry"]
  capabilities = ["pull"]

[host."https://test-1.registry"]
  capabilities = ["pull", "resolve", "push"]
  ca = ["/etc/certs/test-1-ca.pem", "/etc/certs/special.pem"]
  client = [["/etc/certs/client.cert", "/etc/certs/client.key"],["/etc/certs/client.pem", ""]]

[host."https://test-2.registry"]
  client = "/etc/certs/client.pem"

[host."https://noncompliantmirror.registry/v2/namespaceprefix"]
  capabilities = ["pull"]
  override_path = true

[host."https://noprefixnoncompliant.registry"]
  override_path = true

[host."https://onlyheader.registry".header]
  x-custom-1 = "justaheader"
"#;
        let hosts = parse(Path::new("/base"), text).unwrap();
        let summary: Vec<(String, String, &str, bool, bool)> = hosts
            .iter()
            .map(|h| {
                (
                    format!(
                        "{}://{}",
                        h.scheme.as_deref().unwrap(),
                        h.host.as_deref().unwrap()
                    ),
                    h.path.clone(),
                    "",
                    h.pull,
                    h.resolve,
                )
            })
            .collect();
        let expected = [
            ("https://mirror.registry", "/v2", true, false),
            ("https://mirror-bak.registry", "/us/v2", true, false),
            ("http://mirror.registry", "/v2", true, false),
            ("https://test-1.registry", "/v2", true, true),
            ("https://test-2.registry", "/v2", true, true),
            (
                "https://noncompliantmirror.registry",
                "/v2/namespaceprefix",
                true,
                false,
            ),
            ("https://noprefixnoncompliant.registry", "", true, true),
            ("https://onlyheader.registry", "/v2", true, true),
            ("https://test-default.registry", "/v2", true, true),
        ];
        assert_eq!(summary.len(), expected.len(), "{summary:?}");
        for (got, want) in summary.iter().zip(expected) {
            assert_eq!((got.0.as_str(), got.1.as_str(), got.3, got.4), want);
        }
        assert_eq!(
            hosts[0].tls.ca_files,
            [PathBuf::from("/etc/certs/mirror.pem")]
        );
        assert_eq!(hosts[0].headers.get_all("x-custom-2").iter().count(), 2);
        assert!(!hosts[0].skip_verify && hosts[1].skip_verify);
        assert_eq!(
            hosts[3].tls.client_certificates,
            [
                ClientCertificate {
                    cert: "/etc/certs/client.cert".into(),
                    key: Some("/etc/certs/client.key".into())
                },
                ClientCertificate {
                    cert: "/etc/certs/client.pem".into(),
                    key: None
                },
            ]
        );
        assert_eq!(hosts[4].tls.client_certificates[0].key, None);
        let default = hosts.last().unwrap();
        assert_eq!(default.tls.ca_files, [PathBuf::from("/etc/path/default")]);
        assert_eq!(default.headers["x-custom-1"], "custom header");
    }

    #[test]
    fn relative_paths_are_under_the_host_directory_and_no_server_means_the_registry() {
        let hosts = parse(
            Path::new("/etc/containerd/certs.d/reg.example"),
            "[host.\"mirror.local:5000\"]\nca = \"ca.crt\"\nclient = [[\"c.cert\", \"c.key\"]]\n",
        )
        .unwrap();
        assert_eq!(hosts[0].scheme.as_deref(), Some("https"));
        assert_eq!(hosts[0].host.as_deref(), Some("mirror.local:5000"));
        assert_eq!(
            hosts[0].tls.ca_files,
            [PathBuf::from("/etc/containerd/certs.d/reg.example/ca.crt")]
        );
        assert_eq!(hosts[1].host, None);
        assert!(hosts[1].pull && hosts[1].resolve);
    }

    #[test]
    fn malformed_files_say_what_is_wrong() {
        for (text, expected) in [
            ("server = ", "TOML parse error"),
            (
                "[host.\"https://m\"]\ncapabilities = [\"pull\", \"fly\"]\n",
                "unknown capability `fly`",
            ),
            (
                "[host.\"https://m\"]\nca = 5\n",
                "`ca` must be a string or an array of strings (found integer)",
            ),
            (
                "[host.\"https://m\"]\nclient = [[\"a\"]]\n",
                "expected [certificate, key]",
            ),
            (
                "[host.\"https://m\"]\nheader = {\"bad name\" = \"v\"}\n",
                "not a valid header name",
            ),
            (
                "[host.\"https://m\"]\nheader = {x = \"a\\nb\"}\n",
                "not a valid header value",
            ),
            ("[host.\"ftp://m\"]\n", "not http or https"),
            ("[host.\"https://u:p@m\"]\n", "user information"),
            ("server = \"https://m?x=1\"\n", "query"),
            (
                "[host.\"https://m\"]\nskip_verify = \"yes\"\n",
                "invalid type",
            ),
        ] {
            let error = parse(Path::new("/d"), text).unwrap_err();
            assert!(error.contains(expected), "{text:?}: {error}");
        }
        // Dot segments are resolved as containerd's path.Clean resolves them.
        let hosts = parse(Path::new("/d"), "[host.\"https://m/a/../b\"]\n").unwrap();
        assert_eq!(hosts[0].path, "/b/v2");
    }

    fn write(path: &Path, text: &str) {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }

    #[test]
    fn directories_are_looked_up_as_containerd_does() {
        let root = tempfile::tempdir().unwrap();
        let dir = HostsDir::new(root.path());
        assert_eq!(dir.dir_for("reg.example:5000").unwrap(), None);
        write(&root.path().join("_default/hosts.toml"), "");
        assert_eq!(
            dir.dir_for("reg.example:5000").unwrap(),
            Some(root.path().join("_default"))
        );
        std::fs::create_dir(root.path().join("reg.example:5000")).unwrap();
        assert_eq!(
            dir.dir_for("reg.example:5000").unwrap(),
            Some(root.path().join("reg.example:5000"))
        );
        std::fs::create_dir(root.path().join("reg.example_5000_")).unwrap();
        assert_eq!(
            dir.dir_for("reg.example:5000").unwrap(),
            Some(root.path().join("reg.example_5000_"))
        );
        // An empty directory: the registry itself, with the directory's certificate files.
        std::fs::write(root.path().join("reg.example_5000_/ca.crt"), "x").unwrap();
        let hosts = dir.hosts("reg.example:5000").unwrap().unwrap();
        assert_eq!(hosts.len(), 1);
        assert_eq!(hosts[0].host, None);
        assert_eq!(
            hosts[0].tls.ca_files,
            [root.path().join("reg.example_5000_/ca.crt")]
        );
    }

    #[test]
    fn endpoints_mirrors_in_order_with_ns_then_the_registry() {
        let root = tempfile::tempdir().unwrap();
        write(
            &root.path().join("docker.io/hosts.toml"),
            r#"server = "https://registry-1.docker.io"
[host."http://127.0.0.1:5001"]
  capabilities = ["pull", "resolve"]
  [host."http://127.0.0.1:5001".header]
    X-Dragonfly-Registry = ["https://registry-1.docker.io"]
[host."https://digest-cache.local/cache"]
  capabilities = ["pull"]
[host."https://push-only.local"]
  capabilities = ["push"]
"#,
        );
        let reference: Reference = "alpine:3".parse().unwrap();
        let endpoints = HostsDir::new(root.path())
            .endpoints(&reference)
            .unwrap()
            .unwrap();
        let summary: Vec<_> = endpoints
            .iter()
            .map(|e| {
                (
                    e.host.as_str(),
                    e.repository.as_str(),
                    e.connection.api_root.as_deref(),
                    e.connection.namespace.as_deref(),
                    e.connection.plain_http,
                    e.digest_only,
                    e.origin,
                )
            })
            .collect();
        assert_eq!(
            summary,
            [
                (
                    "127.0.0.1:5001",
                    "library/alpine",
                    None,
                    Some("docker.io"),
                    true,
                    false,
                    false
                ),
                (
                    "digest-cache.local",
                    "library/alpine",
                    Some("cache/v2/"),
                    Some("docker.io"),
                    false,
                    true,
                    false
                ),
                (
                    "registry-1.docker.io",
                    "library/alpine",
                    None,
                    None,
                    false,
                    false,
                    true
                ),
            ]
        );
        assert_eq!(
            endpoints[0].connection.headers["x-dragonfly-registry"],
            "https://registry-1.docker.io"
        );
        // No directory for the registry: not configured here.
        let other: Reference = "quay.io/x/y:1".parse().unwrap();
        assert_eq!(HostsDir::new(root.path()).endpoints(&other).unwrap(), None);
        // Nothing that may pull: an error, not a silent fall-through to the registry.
        write(
            &root.path().join("quay.io/hosts.toml"),
            "server = \"https://quay.io\"\ncapabilities = [\"push\"]\n",
        );
        assert!(matches!(
            HostsDir::new(root.path()).endpoints(&other),
            Err(ConfigError::NoPullHosts(_))
        ));
    }
}
