//! Option groups and value parsers several commands share: registry connection and
//! credentials ([`RegistryArgs`]), the manifest format, and sizes and counts with their
//! `none`. Kept apart so each group is defined once and flattened wherever it applies (the
//! `--verify` group is `cli/verify_args.rs`).

use std::path::PathBuf;

use clap::{Args, ValueEnum};

/// `10G`, `512M`, `1500`: bytes with an optional binary suffix.
pub(super) fn parse_size(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let (number, shift) = match text.char_indices().last() {
        Some((i, c)) if c.is_ascii_alphabetic() => {
            let shift = match c.to_ascii_uppercase() {
                'K' => 10,
                'M' => 20,
                'G' => 30,
                'T' => 40,
                _ => return Err(format!("unknown size suffix `{c}` (use K, M, G or T)")),
            };
            (&text[..i], shift)
        }
        _ => (text, 0),
    };
    let number: u64 = number
        .parse()
        .map_err(|_| format!("`{text}` is not a size (e.g. 10G)"))?;
    number
        .checked_shl(shift)
        .filter(|n| n >> shift == number)
        .ok_or_else(|| format!("`{text}` is too large"))
}

/// A `--max-layer-size`: a size as [`parse_size`] reads it, or `none` (no limit).
pub(super) fn parse_size_limit(text: &str) -> Result<u64, String> {
    if text.trim().eq_ignore_ascii_case("none") {
        return Ok(u64::MAX);
    }
    parse_size(text)
}

/// A `--max-layer-entries`: a count, or `none` (no limit).
pub(super) fn parse_count_limit(text: &str) -> Result<u64, String> {
    let text = text.trim();
    if text.eq_ignore_ascii_case("none") {
        return Ok(u64::MAX);
    }
    text.parse()
        .map_err(|_| format!("`{text}` is not a count (a whole number, or `none`)"))
}

/// `--manifest-format`: keep manifests as the source has them, or rewrite them to OCI.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, ValueEnum)]
pub enum ManifestFormatArg {
    /// As the source has them, byte for byte (digests unchanged).
    #[default]
    Keep,
    /// OCI media types throughout (Docker manifests, lists, configs and layers rewritten; new
    /// digests; the original in the `io.acrpull.converted-from` annotation).
    Oci,
}

/// Connection and credential flags shared by commands that talk to registries.
#[derive(Debug, Args)]
pub struct RegistryArgs {
    /// User name for basic authentication (password from --password-stdin).
    #[arg(long, requires = "password_stdin")]
    pub username: Option<String>,
    /// Read the password (or token) from standard input.
    #[arg(long, requires = "username")]
    pub password_stdin: bool,
    /// Use the Azure identity chain (service principal, workload identity, managed identity)
    /// even for registries outside azurecr.io.
    #[arg(long, conflicts_with = "username")]
    pub identity: bool,
    /// Client id of the user-assigned managed identity to use (default: AZURE_CLIENT_ID).
    #[arg(long, value_name = "ID", conflicts_with_all = ["object_id", "resource_id", "username"])]
    pub client_id: Option<String>,
    /// Object (principal) id of the user-assigned managed identity to use.
    #[arg(long, value_name = "ID", conflicts_with_all = ["resource_id", "username"])]
    pub object_id: Option<String>,
    /// ARM resource id of the user-assigned managed identity to use.
    #[arg(long, value_name = "ID", conflicts_with = "username")]
    pub resource_id: Option<String>,
    /// Read credentials only from this auth file (Docker config.json or containers auth.json
    /// format), instead of the default locations.
    #[arg(long, value_name = "PATH", conflicts_with_all = ["username", "identity"])]
    pub authfile: Option<PathBuf>,
    /// Audience of the Entra ID token exchanged at the registry.
    #[arg(long, value_name = "URI", default_value = acrpull::azure::ACR_AUDIENCE)]
    pub azure_audience: String,
    /// Talk plain HTTP to the registry.
    #[arg(long)]
    pub plain_http: bool,
    /// Accept any TLS certificate (test registries only).
    #[arg(long)]
    pub insecure: bool,
    /// Trust the CA certificates in this PEM file (repeatable; SSL_CERT_FILE also works).
    #[arg(long, value_name = "PEM")]
    pub ca_file: Vec<PathBuf>,
    /// Use the certificates in DIR for every registry: `*.crt` CAs to trust, `*.cert` with
    /// `*.key` a client certificate (as skopeo's --cert-dir). Default: the registry's
    /// directory in ~/.config/containers/certs.d, /etc/containers/certs.d or
    /// /etc/docker/certs.d.
    #[arg(long, value_name = "DIR")]
    pub cert_dir: Option<PathBuf>,
    /// Retries for each request and each interrupted download.
    #[arg(long, default_value_t = 5)]
    pub retries: u32,
    /// Seconds without data before a request counts as stalled.
    #[arg(long, value_name = "SECONDS", default_value_t = 60)]
    pub timeout: u64,
    /// Fail a transfer that averages fewer than BYTES per second over --speed-time seconds
    /// (0: no minimum).
    #[arg(long, value_name = "BYTES", default_value_t = 1024)]
    pub speed_limit: u64,
    /// The window --speed-limit is averaged over, in seconds.
    #[arg(long, value_name = "SECONDS", default_value_t = 60)]
    pub speed_time: u64,
    /// Stop every request and download still running SECONDS after the command started
    /// (default: no deadline).
    #[arg(long, value_name = "SECONDS")]
    pub deadline: Option<u64>,
}
