//! A minimal starter for the real `docker-registry` with `auth: token`, and a fixture pusher.
//!
//! TEMPORARY, TO BE SWAPPED: `testenv/src/registry.rs` (written in parallel by the registry
//! engineer) will own starting `/usr/bin/docker-registry`. This copy exists so the Azure
//! end-to-end tests do not wait for it; replace [`TokenAuthRegistry`] with that starter (passing
//! [`super::FakeAzure::registry_auth_config`] as its auth block) once it lands.
//!
//! Fixtures are pushed with `skopeo copy --dest-registry-token`, through the registry's own API;
//! nothing writes to the registry's storage directory.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use sha2::{Digest as _, Sha256};

const REGISTRY_BINARY: &str = "/usr/bin/docker-registry";

/// A `docker-registry serve` process on a free loopback port; killed on drop.
pub struct TokenAuthRegistry {
    child: Child,
    address: String,
    _directory: tempfile::TempDir,
}

impl TokenAuthRegistry {
    /// Start the registry with filesystem storage in a temporary directory and the given
    /// `auth:` block; returns once `/v2/` answers.
    pub async fn start(auth_config: &str) -> anyhow::Result<Self> {
        let directory = tempfile::tempdir().context("creating the registry directory")?;
        let port = {
            let listener =
                std::net::TcpListener::bind("127.0.0.1:0").context("finding a free port")?;
            listener.local_addr()?.port()
        };
        let address = format!("127.0.0.1:{port}");
        let config = format!(
            "version: 0.1\nlog:\n  level: warn\n  accesslog:\n    disabled: true\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: {address}\n{auth_config}",
            directory.path().join("data").display()
        );
        let config_path = directory.path().join("config.yml");
        std::fs::write(&config_path, config).context("writing the registry config")?;
        let log = std::fs::File::create(directory.path().join("registry.log"))
            .context("creating the registry log")?;
        let child = Command::new(REGISTRY_BINARY)
            .arg("serve")
            .arg(&config_path)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| {
                format!("starting {REGISTRY_BINARY} (apt-get install docker-registry)")
            })?;
        let mut registry = Self {
            child,
            address,
            _directory: directory,
        };
        registry.wait_until_ready().await?;
        Ok(registry)
    }

    async fn wait_until_ready(&mut self) -> anyhow::Result<()> {
        let http = reqwest::Client::builder().no_proxy().build()?;
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if let Some(status) = self.child.try_wait()? {
                bail!("docker-registry exited early with {status}: {}", self.log());
            }
            if http.get(format!("{}/v2/", self.url())).send().await.is_ok() {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("docker-registry did not answer within 15 s: {}", self.log());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// `127.0.0.1:PORT`.
    pub fn address(&self) -> &str {
        &self.address
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.address)
    }

    /// The registry's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self._directory.path().join("registry.log")).unwrap_or_default()
    }
}

impl Drop for TokenAuthRegistry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

fn write_blob(layout: &Path, bytes: &[u8]) -> anyhow::Result<(String, usize)> {
    let hex = sha256_hex(bytes);
    std::fs::write(layout.join("blobs/sha256").join(&hex), bytes)?;
    Ok((format!("sha256:{hex}"), bytes.len()))
}

/// Push a one-layer image (an empty tar) to `registry/repository:tag` with skopeo, authenticated
/// by `token` (a registry token with pull and push on `repository`). Returns the digest of the
/// manifest as pushed.
pub fn push_tiny_image(
    registry: &str,
    repository: &str,
    tag: &str,
    token: &str,
) -> anyhow::Result<String> {
    let directory = tempfile::tempdir()?;
    let layout = directory.path().join("layout");
    std::fs::create_dir_all(layout.join("blobs/sha256"))?;
    std::fs::write(
        layout.join("oci-layout"),
        r#"{"imageLayoutVersion":"1.0.0"}"#,
    )?;
    let layer = vec![0u8; 1024];
    let (layer_digest, layer_size) = write_blob(&layout, &layer)?;
    let config = serde_json::to_vec(&serde_json::json!({
        "architecture": "amd64",
        "os": "linux",
        "config": {},
        "rootfs": {"type": "layers", "diff_ids": [layer_digest]},
    }))?;
    let (config_digest, config_size) = write_blob(&layout, &config)?;
    let manifest = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config_digest, "size": config_size},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": layer_digest, "size": layer_size}],
    }))?;
    let (local_digest, manifest_size) = write_blob(&layout, &manifest)?;
    let index = serde_json::json!({
        "schemaVersion": 2,
        "manifests": [{
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": local_digest,
            "size": manifest_size,
            "annotations": {"org.opencontainers.image.ref.name": tag},
        }],
    });
    std::fs::write(layout.join("index.json"), serde_json::to_vec(&index)?)?;
    // skopeo compresses the layer on the way, so the pushed manifest differs from the local one.
    let digest_file = directory.path().join("pushed-digest");
    let output = Command::new("skopeo")
        .args([
            "--insecure-policy",
            "copy",
            "--quiet",
            "--dest-tls-verify=false",
            "--dest-registry-token",
            token,
        ])
        .arg("--digestfile")
        .arg(&digest_file)
        .arg(format!("oci:{}:{tag}", layout.display()))
        .arg(format!("docker://{registry}/{repository}:{tag}"))
        .env("REGISTRY_AUTH_FILE", directory.path().join("auth.json"))
        .env_remove("HTTP_PROXY")
        .env_remove("HTTPS_PROXY")
        .env_remove("http_proxy")
        .env_remove("https_proxy")
        .output()
        .context("running skopeo (apt-get install skopeo)")?;
    if !output.status.success() {
        bail!(
            "skopeo copy failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let pushed = std::fs::read_to_string(&digest_file).context("reading skopeo's --digestfile")?;
    Ok(pushed.trim().to_string())
}

/// A stand-in registry that answers every `/v2/` request with `401` and the given
/// `WWW-Authenticate` value (e.g. a realm on an untrusted host). Stops on drop.
pub struct ChallengeOnlyRegistry {
    address: std::net::SocketAddr,
    server: tokio::task::JoinHandle<()>,
}

impl ChallengeOnlyRegistry {
    /// Start it on a free loopback port.
    pub async fn start(www_authenticate: &str) -> anyhow::Result<Self> {
        let value = www_authenticate.to_string();
        let app = axum::Router::new().route(
            "/v2/",
            axum::routing::get(move || {
                let value = value.clone();
                async move {
                    (
                        axum::http::StatusCode::UNAUTHORIZED,
                        [("WWW-Authenticate", value)],
                    )
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let address = listener.local_addr()?;
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(Self { address, server })
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.address)
    }
}

impl Drop for ChallengeOnlyRegistry {
    fn drop(&mut self) {
        self.server.abort();
    }
}
