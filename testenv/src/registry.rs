//! The real distribution registry (`docker-registry serve`, v2.8) on loopback.
//!
//! [`Registry::start`] writes a config into a fresh temp dir (filesystem
//! storage, deletes enabled, log level `warn` into `registry.log`), picks a
//! free port on 127.0.0.1, starts the process and waits until `/v2/` answers.
//! Dropping the [`Registry`] (also while unwinding from a panic) kills and
//! reaps it. A small `sh` watchdog kills it too if the test process dies
//! without unwinding (abort, SIGKILL), so no registry outlives its tests.
//!
//! [`skopeo_copy`] and [`seed`] push images into it with skopeo.

use std::fmt::Write as _;
use std::fs;
use std::io::{Read as _, Write as _};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context as _};
use tempfile::TempDir;

use crate::fixtures::{Layout, DOCKER_MANIFEST};

/// The registry binary; `ACRPULL_TEST_REGISTRY_BIN` overrides it.
const DEFAULT_BINARY: &str = "/usr/bin/docker-registry";
/// How long to wait for `/v2/` to answer.
const READY_TIMEOUT: Duration = Duration::from_secs(10);
/// How many ports to try when another process grabs ours first.
const PORT_ATTEMPTS: usize = 5;

/// How the registry authenticates clients.
#[derive(Debug, Clone)]
enum Auth {
    Anonymous,
    Htpasswd {
        user: String,
        password: String,
    },
    Token {
        realm: String,
        service: String,
        issuer: String,
        rootcertbundle: PathBuf,
    },
}

/// Options for [`Registry::start`].
#[derive(Debug, Clone)]
pub struct RegistryOptions {
    auth: Auth,
    proxy: Option<String>,
    tls: bool,
    client_certs: bool,
    foreign_urls: bool,
}

impl RegistryOptions {
    /// No authentication: anyone may pull and push.
    pub fn anonymous() -> RegistryOptions {
        RegistryOptions {
            auth: Auth::Anonymous,
            proxy: None,
            tls: false,
            client_certs: false,
            foreign_urls: false,
        }
    }

    /// Serve HTTPS with a fresh self-signed certificate for `127.0.0.1` (its PEM is
    /// [`Registry::ca_cert`]).
    #[must_use]
    pub fn tls(mut self) -> RegistryOptions {
        self.tls = true;
        self
    }

    /// Serve HTTPS (as [`RegistryOptions::tls`]) and require a client certificate issued by a
    /// fresh CA (`http: tls: clientcas`); [`Registry::client_certificate`] is one it accepts.
    #[must_use]
    pub fn require_client_certs(mut self) -> RegistryOptions {
        self.tls = true;
        self.client_certs = true;
        self
    }

    /// Basic authentication against a bcrypt htpasswd file with one user
    /// (`auth: htpasswd: {realm, path}`).
    #[must_use]
    pub fn htpasswd(mut self, user: &str, password: &str) -> RegistryOptions {
        self.auth = Auth::Htpasswd {
            user: user.to_owned(),
            password: password.to_owned(),
        };
        self
    }

    /// Bearer tokens issued by an external token service
    /// (`auth: token: {realm, service, issuer, rootcertbundle}`).
    #[must_use]
    pub fn token_auth(
        mut self,
        realm_url: &str,
        service: &str,
        issuer: &str,
        rootcertbundle_path: &Path,
    ) -> RegistryOptions {
        self.auth = Auth::Token {
            realm: realm_url.to_owned(),
            service: service.to_owned(),
            issuer: issuer.to_owned(),
            rootcertbundle: rootcertbundle_path.to_owned(),
        };
        self
    }

    /// Accept manifests whose foreign (non-distributable) layers list `http(s)` URLs
    /// (`validation: manifests: urls: allow`); distribution refuses them otherwise.
    #[must_use]
    pub fn allow_foreign_urls(mut self) -> RegistryOptions {
        self.foreign_urls = true;
        self
    }

    /// Run as a pull-through cache of `remote_url` (`proxy: {remoteurl}`).
    /// The remote must be on loopback too.
    #[must_use]
    pub fn proxy(mut self, remote_url: &str) -> RegistryOptions {
        self.proxy = Some(remote_url.to_owned());
        self
    }

    /// The config file for a registry on `port` with its files under `dir`;
    /// every response carries `X-Acrpull-Testenv: <marker>`.
    fn config_yaml(&self, dir: &Path, port: u16, marker: &str) -> String {
        // Values are quoted as YAML double-quoted strings via JSON, which is a
        // subset of YAML; paths and URLs then need no escaping thought.
        let q = |s: &str| serde_json::Value::from(s).to_string();
        let path = |p: &Path| q(&p.to_string_lossy());
        let mut yaml = format!(
            "version: 0.1
log:
  level: warn
  formatter: text
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: {storage}
  delete:
    enabled: true
  maintenance:
    uploadpurging:
      enabled: false
http:
  addr: {addr}
  secret: acrpull-testenv-not-a-secret
{tls}  headers:
    X-Content-Type-Options: [nosniff]
    X-Acrpull-Testenv: [{marker}]
health:
  storagedriver:
    enabled: false
",
            storage = path(&dir.join("storage")),
            addr = q(&format!("127.0.0.1:{port}")),
            marker = q(marker),
            tls = if self.tls {
                let client_cas = if self.client_certs {
                    format!(
                        "    clientcas:\n      - {}\n",
                        path(&dir.join("client-ca.pem"))
                    )
                } else {
                    String::new()
                };
                format!(
                    "  tls:\n    certificate: {}\n    key: {}\n{client_cas}",
                    path(&dir.join("cert.pem")),
                    path(&dir.join("key.pem"))
                )
            } else {
                String::new()
            },
        );
        match &self.auth {
            Auth::Anonymous => {}
            Auth::Htpasswd { .. } => {
                let _ = write!(
                    yaml,
                    "auth:\n  htpasswd:\n    realm: acrpull-testenv\n    path: {}\n",
                    path(&dir.join("htpasswd"))
                );
            }
            Auth::Token {
                realm,
                service,
                issuer,
                rootcertbundle,
            } => {
                let _ = write!(
                    yaml,
                    "auth:\n  token:\n    realm: {}\n    service: {}\n    issuer: {}\n    rootcertbundle: {}\n",
                    q(realm),
                    q(service),
                    q(issuer),
                    path(rootcertbundle)
                );
            }
        }
        if self.foreign_urls {
            yaml.push_str(
                "validation:\n  manifests:\n    urls:\n      allow:\n        - \"^https?://\"\n",
            );
        }
        if let Some(remote) = &self.proxy {
            let _ = write!(yaml, "proxy:\n  remoteurl: {}\n", q(remote));
        }
        yaml
    }
}

/// A running `docker-registry` on 127.0.0.1, killed on drop.
#[derive(Debug)]
pub struct Registry {
    child: Child,
    watchdog: Option<Child>,
    port: u16,
    credentials: Option<(String, String)>,
    log_path: PathBuf,
    // Dropped last: the process must be gone before its files are removed.
    dir: TempDir,
}

impl Registry {
    /// Starts a registry and waits until `/v2/` answers (401 counts).
    ///
    /// Synchronous: it blocks the calling thread for the start-up (well
    /// under a second, 10 s at most), which is fine in `#[tokio::test]`s.
    pub fn start(options: RegistryOptions) -> anyhow::Result<Registry> {
        let dir = tempfile::Builder::new()
            .prefix("acrpull-registry-")
            .tempdir()
            .context("creating the registry temp dir")?;
        if let Auth::Htpasswd { user, password } = &options.auth {
            let line = htpasswd_line(user, password)?;
            fs::write(dir.path().join("htpasswd"), line).context("writing htpasswd")?;
        }
        if options.tls {
            let certified = rcgen::generate_simple_self_signed(vec![
                "127.0.0.1".to_string(),
                "localhost".to_string(),
            ])
            .context("generating a TLS certificate")?;
            fs::write(dir.path().join("cert.pem"), certified.cert.pem())?;
            fs::write(
                dir.path().join("key.pem"),
                certified.key_pair.serialize_pem(),
            )?;
        }
        if options.client_certs {
            write_client_ca_and_certificate(dir.path())?;
        }
        let credentials = match &options.auth {
            Auth::Htpasswd { user, password } => Some((user.clone(), password.clone())),
            _ => None,
        };
        let mut last_error = None;
        for _ in 0..PORT_ATTEMPTS {
            match Registry::spawn(&options, &dir)? {
                Spawned::Ready(child, port) => {
                    let watchdog = spawn_watchdog(child.id()).ok();
                    return Ok(Registry {
                        child,
                        watchdog,
                        port,
                        credentials,
                        log_path: dir.path().join("registry.log"),
                        dir,
                    });
                }
                Spawned::PortTaken(error) => last_error = Some(error),
            }
        }
        Err(last_error.unwrap_or_else(|| anyhow::anyhow!("no port attempt made")))
    }

    fn spawn(options: &RegistryOptions, dir: &TempDir) -> anyhow::Result<Spawned> {
        let port = free_port()?;
        let config = dir.path().join("config.yml");
        // The marker tells our registry apart from whatever else might have
        // grabbed the port between free_port() and the registry's bind.
        let marker = format!("{}-{port}", dir.path().display());
        fs::write(&config, options.config_yaml(dir.path(), port, &marker))
            .context("writing config")?;
        let log_path = dir.path().join("registry.log");
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .context("opening registry.log")?;
        let binary =
            std::env::var("ACRPULL_TEST_REGISTRY_BIN").unwrap_or_else(|_| DEFAULT_BINARY.into());
        let mut command = Command::new(&binary);
        command
            .arg("serve")
            .arg(&config)
            .current_dir(dir.path())
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log);
        // REGISTRY_* variables would override the config file.
        for (key, _) in std::env::vars_os() {
            if key.to_string_lossy().starts_with("REGISTRY_") {
                command.env_remove(key);
            }
        }
        let mut child = command
            .spawn()
            .with_context(|| format!("starting {binary} (is docker-registry installed?)"))?;
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if let Some(status) = child.try_wait()? {
                let tail = log_tail(&log_path);
                if tail.contains("address already in use") {
                    return Ok(Spawned::PortTaken(anyhow::anyhow!(
                        "port {port} taken; registry log:\n{tail}"
                    )));
                }
                bail!("docker-registry exited with {status} before answering; log:\n{tail}");
            }
            if ping(port, &marker, options.tls).is_ok() {
                return Ok(Spawned::Ready(child, port));
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                bail!(
                    "docker-registry did not answer /v2/ on 127.0.0.1:{port} within {READY_TIMEOUT:?}; log:\n{}",
                    log_tail(&log_path)
                );
            }
            std::thread::sleep(Duration::from_millis(25));
        }
    }

    /// `127.0.0.1:PORT`.
    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// `http://127.0.0.1:PORT` (`https://` when started with [`RegistryOptions::tls`]).
    pub fn url(&self) -> String {
        let scheme = if self.ca_cert().is_some() {
            "https"
        } else {
            "http"
        };
        format!("{scheme}://127.0.0.1:{}", self.port)
    }

    /// The self-signed certificate (PEM) of a TLS registry.
    pub fn ca_cert(&self) -> Option<PathBuf> {
        let path = self.dir.path().join("cert.pem");
        path.is_file().then_some(path)
    }

    /// A client certificate and its key (PEM files `(cert, key)`) the registry accepts, when
    /// started with [`RegistryOptions::require_client_certs`].
    pub fn client_certificate(&self) -> Option<(PathBuf, PathBuf)> {
        let cert = self.dir.path().join("client.cert");
        cert.is_file()
            .then(|| (cert, self.dir.path().join("client.key")))
    }

    /// The port the registry listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The process id of `docker-registry`.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// `(user, password)` when started with [`RegistryOptions::htpasswd`].
    pub fn credentials(&self) -> Option<(&str, &str)> {
        self.credentials
            .as_ref()
            .map(|(u, p)| (u.as_str(), p.as_str()))
    }

    /// The registry's log file (level `warn`).
    pub fn log_path(&self) -> &Path {
        &self.log_path
    }

    /// The last lines of the registry log, for error messages.
    pub fn log_tail(&self) -> String {
        log_tail(&self.log_path)
    }

    /// The directory holding config, storage and log.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if let Some(watchdog) = &mut self.watchdog {
            let _ = watchdog.kill();
            let _ = watchdog.wait();
        }
        if std::thread::panicking() {
            eprintln!(
                "registry {} log tail:\n{}",
                self.host(),
                log_tail(&self.log_path)
            );
        }
    }
}

/// A CA (`client-ca.pem`, what the registry trusts for clients) and a client certificate it
/// issued (`client.cert` + `client.key`), in `dir`.
fn write_client_ca_and_certificate(dir: &Path) -> anyhow::Result<()> {
    use rcgen::{
        BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose,
        IsCa, KeyPair, KeyUsagePurpose,
    };
    let ca_key = KeyPair::generate().context("CA key")?;
    let mut ca = CertificateParams::new(Vec::<String>::new()).context("CA params")?;
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    ca.distinguished_name = DistinguishedName::new();
    ca.distinguished_name
        .push(DnType::CommonName, "acrpull-testenv client CA");
    let ca = ca.self_signed(&ca_key).context("signing the CA")?;
    let client_key = KeyPair::generate().context("client key")?;
    let mut client = CertificateParams::new(Vec::<String>::new()).context("client params")?;
    client.distinguished_name = DistinguishedName::new();
    client
        .distinguished_name
        .push(DnType::CommonName, "acrpull-testenv client");
    client.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    let client = client
        .signed_by(&client_key, &ca, &ca_key)
        .context("signing the client certificate")?;
    fs::write(dir.join("client-ca.pem"), ca.pem())?;
    fs::write(dir.join("client.cert"), client.pem())?;
    fs::write(dir.join("client.key"), client_key.serialize_pem())?;
    Ok(())
}

enum Spawned {
    Ready(Child, u16),
    PortTaken(anyhow::Error),
}

/// A port that was free a moment ago (bind 127.0.0.1:0, then release).
fn free_port() -> anyhow::Result<u16> {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).context("binding 127.0.0.1:0")?;
    Ok(listener.local_addr()?.port())
}

/// One `GET /v2/` over plain TCP (no async runtime needed). Any status
/// counts (an authenticated registry answers 401), as long as the response
/// carries our `marker` header.
fn ping(port: u16, marker: &str, tls: bool) -> anyhow::Result<()> {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_millis(200))?;
    stream.set_read_timeout(Some(Duration::from_millis(500)))?;
    write!(
        stream,
        "GET /v2/ HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n"
    )?;
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 64 * 1024 {
        let n = stream.read(&mut buf)?;
        if n == 0 {
            break;
        }
        head.extend_from_slice(&buf[..n]);
    }
    let head = String::from_utf8_lossy(&head).to_ascii_lowercase();
    ensure!(head.starts_with("http/1."), "not an HTTP answer");
    if tls {
        // Go's TLS server answers a plain request with this 400; the marker header cannot be
        // checked without a TLS client.
        ensure!(
            head.contains("http request to an https server"),
            "127.0.0.1:{port} is not a TLS server"
        );
        return Ok(());
    }
    ensure!(
        head.contains(&format!(
            "x-acrpull-testenv: {}",
            marker.to_ascii_lowercase()
        )),
        "127.0.0.1:{port} is answered by another server"
    );
    Ok(())
}

/// Kills `pid` once the current process is gone (checked every second);
/// exits by itself when `pid` is gone.
fn spawn_watchdog(pid: u32) -> anyhow::Result<Child> {
    let me = std::process::id();
    let script = format!(
        "while kill -0 {me} 2>/dev/null && kill -0 {pid} 2>/dev/null; do sleep 1; done; kill {pid} 2>/dev/null; exit 0"
    );
    Ok(Command::new("sh")
        .arg("-c")
        .arg(script)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()?)
}

fn log_tail(path: &Path) -> String {
    let text = fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(30)..].join("\n")
}

/// One htpasswd line `user:$2y$...` (bcrypt, as distribution requires).
pub fn htpasswd_line(user: &str, password: &str) -> anyhow::Result<String> {
    let hash = bcrypt::hash_with_result(password, 5).context("bcrypt")?;
    Ok(format!(
        "{user}:{}\n",
        hash.format_for_version(bcrypt::Version::TwoY)
    ))
}

/// The committed permissive signature policy for skopeo, so tests do not
/// depend on `/etc/containers/policy.json`.
fn skopeo_policy() -> PathBuf {
    crate::fixtures::fixtures_dir().join("skopeo-policy.json")
}

/// Runs `skopeo copy --src-tls-verify=false --dest-tls-verify=false --quiet
/// EXTRA... SRC DST` with a permissive policy and no ambient auth file.
/// Pass `--all`, `--format v2s2`, `--src-creds u:p`, `--dest-creds u:p`
/// through `extra`. The error carries skopeo's stderr.
pub fn skopeo_copy(src: &str, dst: &str, extra: &[&str]) -> anyhow::Result<()> {
    let mut args = vec![
        "copy",
        "--src-tls-verify=false",
        "--dest-tls-verify=false",
        "--quiet",
    ];
    args.extend_from_slice(extra);
    args.extend_from_slice(&[src, dst]);
    skopeo(&args).map(drop)
}

/// Runs `skopeo ARGS...` (with the test policy and no ambient auth file),
/// returning stdout; the error carries stderr.
pub fn skopeo(args: &[&str]) -> anyhow::Result<Vec<u8>> {
    let policy = skopeo_policy();
    let output = Command::new("skopeo")
        .arg("--policy")
        .arg(&policy)
        .args(args)
        // Never pick up the developer's registry credentials (the file
        // does not exist, which skopeo reads as "no credentials").
        .env(
            "REGISTRY_AUTH_FILE",
            policy.with_file_name("no-such-auth.json"),
        )
        .env_remove("DOCKER_CONFIG")
        .stdin(Stdio::null())
        .output()
        .context("running skopeo (is it installed?)")?;
    ensure!(
        output.status.success(),
        "skopeo {} failed ({}):\n{}",
        args.join(" "),
        output.status,
        String::from_utf8_lossy(&output.stderr).trim_end()
    );
    Ok(output.stdout)
}

/// Pushes the committed fixture `fixture` into `registry` as `target`
/// (`repo:tag`) and returns the pushed manifest digest, which equals the
/// layout's (`--preserve-digests`): indexes go with `--all`, Docker v2s2 images with
/// `--format v2s2` (through a `dir:` copy, since skopeo's `oci:` transport
/// only lists OCI media types). Uses the registry's htpasswd credentials.
pub fn seed(registry: &Registry, fixture: &str, target: &str) -> anyhow::Result<String> {
    let creds = registry.credentials().map(|(u, p)| format!("{u}:{p}"));
    let mut extra = Vec::new();
    if let Some(creds) = &creds {
        extra.extend(["--dest-creds", creds.as_str()]);
    }
    seed_with(registry, fixture, target, &extra)
}

/// [`seed`] with explicit extra skopeo flags (credentials, for instance).
pub fn seed_with(
    registry: &Registry,
    fixture: &str,
    target: &str,
    extra: &[&str],
) -> anyhow::Result<String> {
    let layout = Layout::fixture(fixture)?;
    let desc = layout.main_ref()?;
    let tag = desc
        .tag()
        .unwrap_or(crate::fixtures::FIXTURE_TAG)
        .to_owned();
    let dst = format!("docker://{}/{target}", registry.host());
    // Without --preserve-digests skopeo would gzip the uncompressed layer.
    let mut args: Vec<&str> = vec!["--preserve-digests"];
    args.extend_from_slice(extra);
    if desc.media_type == DOCKER_MANIFEST {
        let dir = tempfile::Builder::new().prefix("acrpull-seed-").tempdir()?;
        export_dir_transport(&layout, &desc.digest, dir.path())?;
        args.extend(["--format", "v2s2"]);
        let src = format!("dir:{}", dir.path().display());
        skopeo_copy(&src, &dst, &args)?;
    } else {
        if desc.is_index() {
            args.push("--all");
        }
        let src = format!("oci:{}:{tag}", layout.root().display());
        skopeo_copy(&src, &dst, &args)?;
    }
    Ok(desc.digest)
}

/// Writes the image `digest` of `layout` in skopeo's `dir:` format
/// (`manifest.json`, blobs named by hex digest, `version`).
fn export_dir_transport(layout: &Layout, digest: &str, out: &Path) -> anyhow::Result<()> {
    fs::write(out.join("version"), "Directory Transport Version: 1.1\n")?;
    fs::copy(layout.blob_path(digest)?, out.join("manifest.json"))?;
    let (config, layers) = layout.image_parts(digest)?;
    for desc in std::iter::once(config).chain(layers) {
        let hex = desc.digest.trim_start_matches("sha256:");
        fs::copy(layout.blob_path(&desc.digest)?, out.join(hex))?;
    }
    Ok(())
}

/// Stores a Docker v2 schema 1 manifest as `repository:tag` directly in the
/// registry's filesystem storage (distribution refuses a schema 1 PUT whose
/// libtrust signature it cannot verify, and nothing here signs): the
/// unsigned payload as a blob, linked as a revision and as the tag, with its
/// one layer (the 1024-byte empty tar). Distribution signs it afresh on every
/// GET, so the body never hashes to the `Docker-Content-Digest` it announces.
/// Returns that digest (of the stored payload).
pub fn store_schema1(registry: &Registry, repository: &str, tag: &str) -> anyhow::Result<String> {
    let v2 = registry.dir().join("storage/docker/registry/v2");
    let put_blob = |bytes: &[u8]| -> anyhow::Result<String> {
        let digest = crate::fixtures::sha256_digest(bytes);
        let hex = &digest["sha256:".len()..];
        let dir = v2.join("blobs/sha256").join(&hex[..2]).join(hex);
        fs::create_dir_all(&dir)?;
        fs::write(dir.join("data"), bytes)?;
        Ok(digest)
    };
    let link = |path: &str, digest: &str| -> anyhow::Result<()> {
        let dir = v2.join("repositories").join(repository).join(path);
        fs::create_dir_all(&dir)?;
        fs::write(dir.join("link"), digest)?;
        Ok(())
    };
    let layer = put_blob(&[0u8; 1024])?;
    let history = serde_json::json!({
        "id": "5d6e8d3a6d2c0f1b9a7e4c3b2a1908f7e6d5c4b3a29180f7e6d5c4b3a2918070",
        "created": "2023-11-14T22:13:20Z",
        "os": "linux",
        "architecture": "amd64",
        "config": {"Cmd": ["/bin/sh"]},
    });
    let manifest = serde_json::json!({
        "schemaVersion": 1,
        "name": repository,
        "tag": tag,
        "architecture": "amd64",
        "fsLayers": [{"blobSum": layer}],
        "history": [{"v1Compatibility": history.to_string()}],
    });
    let digest = put_blob(serde_json::to_string_pretty(&manifest)?.as_bytes())?;
    let hex = &digest["sha256:".len()..];
    link(
        &format!("_layers/sha256/{}", &layer["sha256:".len()..]),
        &layer,
    )?;
    link(&format!("_manifests/revisions/sha256/{hex}"), &digest)?;
    link(&format!("_manifests/tags/{tag}/current"), &digest)?;
    link(
        &format!("_manifests/tags/{tag}/index/sha256/{hex}"),
        &digest,
    )?;
    Ok(digest)
}

/// Pushes tag `tag` of the committed [`CONFORMANCE`](crate::fixtures::CONFORMANCE) layout
/// into `registry` as `target` (`repo:tag`) with skopeo, digests preserved (`--all` for an
/// index), and returns its digest. skopeo leaves foreign layers out, as it does for any
/// registry: the registry then holds the manifest but not their blobs.
pub fn seed_conformance(registry: &Registry, tag: &str, target: &str) -> anyhow::Result<String> {
    let layout = Layout::fixture(crate::fixtures::CONFORMANCE)?;
    let desc = layout.resolve_tag(tag)?;
    let mut args = vec!["--preserve-digests"];
    if desc.is_index() {
        args.push("--all");
    }
    let src = format!("oci:{}:{tag}", layout.root().display());
    let dst = format!("docker://{}/{target}", registry.host());
    skopeo_copy(&src, &dst, &args)?;
    Ok(desc.digest)
}
