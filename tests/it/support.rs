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
    "HTTPS_PROXY",
    "HTTP_PROXY",
    "https_proxy",
    "http_proxy",
    "RUST_LOG",
];

/// A command for the binary with a clean environment and an empty HOME.
pub fn acrpull(home: &Path) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_acrpull"));
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
