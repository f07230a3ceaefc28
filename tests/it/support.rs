//! Running the binary hermetically and checking what it left behind.

use std::io::Write as _;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

/// Variables that must never leak from the machine into a test run.
const INHERITED: &[&str] = &[
    "AZURE_CLIENT_ID",
    "AZURE_TENANT_ID",
    "AZURE_CLIENT_SECRET",
    "AZURE_FEDERATED_TOKEN_FILE",
    "AZURE_AUTHORITY_HOST",
    "AZURE_POD_IDENTITY_AUTHORITY_HOST",
    "IDENTITY_ENDPOINT",
    "IDENTITY_HEADER",
    "IDENTITY_SERVER_THUMBPRINT",
    "IMDS_ENDPOINT",
    "MSI_ENDPOINT",
    "MSI_SECRET",
    "DOCKER_CONFIG",
    "REGISTRY_AUTH_FILE",
    "XDG_RUNTIME_DIR",
    "XDG_CONFIG_HOME",
    "CONTAINERS_REGISTRIES_CONF",
    "HTTPS_PROXY",
    "HTTP_PROXY",
    "https_proxy",
    "http_proxy",
    "RUST_LOG",
    "XDG_CACHE_HOME",
    "ACRPULL_CACHE_DIR",
    "ACRPULL_PARALLEL_RANGES",
    "ACRPULL_INFLATE_AHEAD",
    "ACRPULL_AZURE_REGISTRIES",
];

/// A command for the binary with a clean environment and an empty HOME.
pub fn acrpull(home: &Path) -> Command {
    acrpull_as(Path::new(env!("CARGO_BIN_EXE_acrpull")), home)
}

/// [`acrpull`] run through `program` (a symlink to the binary under another name).
pub fn acrpull_as(program: &Path, home: &Path) -> Command {
    let mut command = Command::new(program);
    for name in INHERITED {
        command.env_remove(name);
    }
    command.env("HOME", home).env("NO_COLOR", "1");
    command
}

/// Run with `args` (and optional stdin), returning the output.
pub fn run(home: &Path, args: &[&str], stdin: Option<&str>) -> Output {
    let mut command = acrpull(home);
    command.args(args);
    output_of(command, stdin)
}

/// Run `command` off the async threads with `stdin` written to its standard input (a secret
/// or a request, as a caller would pipe it), capturing stdout and stderr.
pub async fn output_with_stdin(command: Command, stdin: String) -> Output {
    tokio::task::spawn_blocking(move || output_of(command, Some(&stdin)))
        .await
        .expect("join")
}

/// Run `command` with `stdin` (none: `/dev/null`), capturing stdout and stderr.
fn output_of(mut command: Command, stdin: Option<&str>) -> Output {
    command.stdin(if stdin.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    });
    command.stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = command.spawn().expect("acrpull starts");
    if let Some(input) = stdin {
        child
            .stdin
            .take()
            .expect("stdin piped")
            .write_all(input.as_bytes())
            .expect("stdin written");
    }
    child.wait_with_output().expect("acrpull finishes")
}

/// Assert success and return stdout.
pub fn ok(output: &Output) -> String {
    assert!(
        output.status.success(),
        "acrpull failed ({:?}):\n{}",
        output.status.code(),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// Assert failure with `code` and return stderr.
pub fn fails(output: &Output, code: i32) -> String {
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert_eq!(
        output.status.code(),
        Some(code),
        "expected exit {code}; stderr:\n{stderr}"
    );
    stderr
}

/// A scratch area: `home` for the binary and a parent directory for destinations, so
/// leftovers (staging directories) can be checked.
pub struct Scratch {
    pub dir: tempfile::TempDir,
}

impl Scratch {
    pub fn new() -> Self {
        let dir = tempfile::Builder::new()
            .prefix("acrpull-it-")
            .tempdir()
            .expect("tempdir");
        std::fs::create_dir(dir.path().join("home")).expect("home");
        std::fs::create_dir(dir.path().join("out")).expect("out");
        Self { dir }
    }

    pub fn home(&self) -> PathBuf {
        self.dir.path().join("home")
    }

    pub fn dest(&self, name: &str) -> PathBuf {
        self.dir.path().join("out").join(name)
    }

    /// Names in the destination parent (to prove nothing half-written is left).
    pub fn out_entries(&self) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(self.dir.path().join("out"))
            .expect("read out")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }
}

/// `skopeo inspect --raw` of an `oci:` or `docker://` reference, hashed.
pub fn skopeo_raw_digest(reference: &str) -> String {
    let raw =
        acrpull_testenv::registry::skopeo(&["inspect", "--raw", "--tls-verify=false", reference])
            .or_else(|_| acrpull_testenv::registry::skopeo(&["inspect", "--raw", reference]))
            .expect("skopeo inspect");
    acrpull_testenv::fixtures::sha256_digest(&raw)
}

/// Run a command, panicking with its stderr on failure.
pub fn must(command: &mut Command) -> Output {
    let output = command.output().expect("command starts");
    assert!(
        output.status.success(),
        "{command:?} failed:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

/// Write an OCI layout at `dir` tagged `v1` with one gzip layer per entry of `layers` (each a
/// list of regular files), returning the blob sizes (config first, then layers).
pub fn make_layout(dir: &Path, layers: &[Vec<(&str, Vec<u8>)>]) -> Vec<u64> {
    use sha2::Digest as _;
    fn put(dir: &Path, bytes: &[u8]) -> (String, u64) {
        let hex = hex::encode(sha2::Sha256::digest(bytes));
        std::fs::write(dir.join("blobs/sha256").join(&hex), bytes).expect("blob written");
        (format!("sha256:{hex}"), bytes.len() as u64)
    }
    std::fs::create_dir_all(dir.join("blobs/sha256")).expect("layout dirs");
    std::fs::write(dir.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
    let mut diff_ids = Vec::new();
    let mut descriptors = Vec::new();
    let mut sizes = Vec::new();
    for files in layers {
        let mut builder = tar::Builder::new(Vec::new());
        for (name, data) in files {
            let mut header = tar::Header::new_ustar();
            header.set_size(data.len() as u64);
            header.set_mode(0o644);
            header.set_uid(0);
            header.set_gid(0);
            header.set_mtime(1_700_000_000);
            header.set_entry_type(tar::EntryType::Regular);
            builder
                .append_data(&mut header, name, data.as_slice())
                .expect("tar entry");
        }
        let tar = builder.into_inner().expect("tar");
        diff_ids.push(format!(
            "sha256:{}",
            hex::encode(sha2::Sha256::digest(&tar))
        ));
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&tar).unwrap();
        let (digest, size) = put(dir, &gz.finish().unwrap());
        sizes.push(size);
        descriptors.push(serde_json::json!({
            "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": digest, "size": size
        }));
    }
    let config = serde_json::to_vec(&serde_json::json!({
        "architecture": "amd64", "os": "linux", "config": {},
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
    }))
    .unwrap();
    let (config_digest, config_size) = put(dir, &config);
    sizes.insert(0, config_size);
    let manifest = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config_digest, "size": config_size},
        "layers": descriptors,
    }))
    .unwrap();
    let (manifest_digest, manifest_size) = put(dir, &manifest);
    let index = serde_json::json!({"schemaVersion": 2, "manifests": [{
        "mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": manifest_digest,
        "size": manifest_size, "annotations": {"org.opencontainers.image.ref.name": "v1"}}]});
    std::fs::write(dir.join("index.json"), serde_json::to_vec(&index).unwrap()).unwrap();
    sizes
}

/// `n` bytes that do not compress (seeded, so the same every run).
pub fn noise(seed: u64, n: usize) -> Vec<u8> {
    let mut rng = fastrand::Rng::with_seed(seed);
    (0..n).map(|_| rng.u8(..)).collect()
}

/// Runs acrpull on a pseudo-terminal with `script` (util-linux) and returns everything it
/// drew, escapes included, on a terminal `columns` wide (TERM=xterm-256color unless
/// `extra_env` says otherwise).
pub fn on_a_terminal(
    scratch: &Scratch,
    columns: u16,
    args: &[&str],
    extra_env: &[(&str, &str)],
) -> String {
    let typescript = scratch.dir.path().join("typescript");
    let mut command_line = format!(
        "stty cols {columns} rows 40; exec {}",
        env!("CARGO_BIN_EXE_acrpull")
    );
    for arg in args {
        command_line.push_str(&format!(" '{arg}'"));
    }
    let mut script = Command::new("script");
    script
        .args(["-q", "-e", "-c", &command_line])
        .arg(&typescript)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", scratch.home())
        .env("TERM", "xterm-256color")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    for (name, value) in extra_env {
        script.env(name, value);
    }
    let output = script.output().expect("script (util-linux) runs");
    assert!(
        output.status.success(),
        "acrpull on a pty failed: {}\n{}",
        String::from_utf8_lossy(&output.stderr),
        String::from_utf8_lossy(&std::fs::read(&typescript).unwrap_or_default())
    );
    String::from_utf8_lossy(&std::fs::read(&typescript).expect("typescript")).into_owned()
}

/// The `org.opencontainers.image.ref.name` of each entry of the layout's `index.json`, in order.
pub fn layout_ref_names(dest: &Path) -> Vec<String> {
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dest.join("index.json")).expect("index.json"))
            .expect("valid index.json");
    index["manifests"]
        .as_array()
        .expect("manifests")
        .iter()
        .map(|m| {
            m["annotations"]["org.opencontainers.image.ref.name"]
                .as_str()
                .expect("a ref name")
                .to_string()
        })
        .collect()
}
