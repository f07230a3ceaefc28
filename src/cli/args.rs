//! Command-line definitions (clap): what the user may type. `request` turns them into
//! library requests; `commands` runs them.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

use super::{progress, suggest};

const AFTER_HELP: &str = "\
Examples:
  # On an Azure VM with a managed identity (nothing else installed):
  acrpull myregistry.azurecr.io/aci-helloworld:v1 ./rootfs

  # Stage an image as an OCI layout for a disconnected site, then unpack it there:
  acrpull pull --format oci myregistry.azurecr.io/app:v1 ./app-layout
  acrpull pull oci:./app-layout:v1 ./rootfs

  # With one of several user-assigned managed identities:
  acrpull pull --client-id 11111111-2222-3333-4444-555555555555 myregistry.azurecr.io/app:v1 ./rootfs

  # Another platform, or every platform of an index:
  acrpull pull --platform linux/arm64 --format oci registry.example/app:v1 ./layout
  acrpull pull --platform all --format oci registry.example/app:v1 ./layout

  # What a tag points at (digest, platforms, layers), or the exact manifest or config:
  acrpull inspect myregistry.azurecr.io/app:v1
  acrpull inspect --raw --platform linux/arm64 myregistry.azurecr.io/app:v1

  # For scripts: a JSON summary, or JSON lines for every step, on stdout:
  acrpull pull --json myregistry.azurecr.io/app:v1 ./rootfs
  acrpull pull --json-events myregistry.azurecr.io/app:v1 ./rootfs

  # Basic credentials (the password is read from stdin, never from the command line):
  echo \"$PASSWORD\" | acrpull pull --username me --password-stdin registry.example/app:v1 ./out

  # Otherwise credentials come from Docker's config.json, containers' auth.json and the
  # credential helpers they name (or only from --authfile PATH); -v says which source answered.

  # Let docker, podman, skopeo, crictl, helm or oras pull from ACR with this machine's identity:
  ln -s \"$(command -v acrpull)\" /usr/local/bin/docker-credential-acrpull
  # and in ~/.docker/config.json: {\"credHelpers\": {\"myregistry.azurecr.io\": \"acrpull\"}}

Exit codes:
  0 success, 1 other failure (I/O, destination), 2 usage error or bad reference,
  3 authentication or permission, 4 not found (repository, tag, blob, platform),
  5 network failure after retries, 6 integrity failure, unsafe or unusable content,
  7 signature or policy verification refused the image (--verify)";

/// `--version`: the crate version and the git commit it was built from (see `build.rs`).
pub const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (",
    env!("ACRPULL_GIT_COMMIT"),
    ")"
);

/// Pull container images without Docker.
#[derive(Debug, Parser)]
#[command(name = "acrpull", version = VERSION, about, after_help = AFTER_HELP)]
pub struct Cli {
    /// The command (`pull` when omitted: `acrpull REF DEST`).
    #[command(subcommand)]
    pub command: Command,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Pull an image into a root filesystem or an OCI image layout.
    Pull(PullArgs),
    /// Push an image (or a whole index) from an OCI layout to a registry:
    /// `acrpull push oci:./layout:v1 registry.example/app:v1`.
    Push(PushArgs),
    /// Copy an image between registries and OCI layouts (`oci:DIR[:TAG]`); between two
    /// registries blobs stream through without touching the disk.
    Copy(PushArgs),
    /// Print a registry token minted from the Azure identity, as `az acr login --expose-token`
    /// does: `{"loginServer": ..., "accessToken": <ACR refresh token>}`. Log in elsewhere with
    /// the user 00000000-0000-0000-0000-000000000000 and that token as the password.
    Token(TokenArgs),
    /// Speak the Docker credential-helper protocol (also run as `docker-credential-acrpull`,
    /// e.g. through a symlink): `get` reads a server URL on stdin and prints the null-GUID
    /// username with an ACR refresh token minted from the Azure identity. `store` and `erase`
    /// do nothing; `list` prints `{}`.
    CredentialHelper(CredentialHelperArgs),
    /// Answer the kubelet as an image credential provider (also run as
    /// `acrpull-credential-provider`): read a CredentialProviderRequest
    /// (credentialprovider.kubelet.k8s.io/v1 or v1beta1) on stdin and print a
    /// CredentialProviderResponse with the null-GUID user and an ACR refresh token from the
    /// node's Azure identity, for ACR hosts and ACRPULL_AZURE_REGISTRIES hosts only.
    KubeletCredentialProvider,
    /// Show what an image reference points at: manifest digest, media type, platforms of an
    /// index, config and layers (JSON on stdout), or the exact manifest (--raw) or config
    /// (--config) bytes.
    Inspect(InspectArgs),
    /// Verify an image's signatures without pulling it (no layer is downloaded):
    /// `acrpull verify --verify cosign --cosign-key cosign.pub IMAGE`. Exit 0 when accepted,
    /// 7 when refused.
    Verify(VerifyCommandArgs),
    /// List a repository's tags, one a line (`acrpull tags registry.example/app`), as
    /// `crane ls` and `skopeo list-tags` do; pages are followed.
    Tags(TagsArgs),
    /// Print the manifest digest an image reference resolves to, one line, as `crane digest`
    /// does (HEAD, else GET with the body's digest checked).
    Digest(DigestArgs),
    /// List the repositories of a registry, one a line (`/v2/_catalog`, where the registry
    /// allows it).
    Catalog(CatalogArgs),
    /// Show or trim the shared blob cache.
    #[command(subcommand)]
    Cache(CacheCommand),
    /// Print a shell completion script (e.g. `acrpull completions bash > /etc/bash_completion.d/acrpull`).
    Completions {
        /// The shell.
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print a man page (roff): `acrpull man` for acrpull(1), `acrpull man pull` for
    /// acrpull-pull(1); `acrpull man --dir /usr/local/share/man/man1` writes every page.
    Man(ManArgs),
}

/// `acrpull man`.
#[derive(Debug, Args)]
pub struct ManArgs {
    /// The command whose page to print, e.g. `pull` or `cache prune` (default: acrpull(1)).
    #[arg(value_name = "COMMAND")]
    pub command: Vec<String>,
    /// Write every page (acrpull.1, acrpull-pull.1, ...) into DIR and list them on stdout.
    #[arg(long, value_name = "DIR", conflicts_with = "command")]
    pub dir: Option<PathBuf>,
}

/// `acrpull cache`.
#[derive(Debug, Subcommand)]
pub enum CacheCommand {
    /// Print where the cache is and what it holds (JSON).
    Info(CacheDirArg),
    /// Remove incomplete downloads nobody is working on and blobs not used for 30 days (or
    /// as chosen below). Safe while pulls run.
    Prune(PruneArgs),
}

/// The cache to act on.
#[derive(Debug, Args)]
pub struct CacheDirArg {
    /// The cache directory (default as for `pull`).
    #[arg(long, value_name = "DIR")]
    pub cache_dir: Option<PathBuf>,
}

/// `acrpull cache prune`.
#[derive(Debug, Args)]
pub struct PruneArgs {
    /// Remove every blob.
    #[arg(long, conflicts_with_all = ["older_than", "max_size"])]
    pub all: bool,
    /// Remove blobs not used for this many days.
    #[arg(long, value_name = "DAYS")]
    pub older_than: Option<u64>,
    /// Then remove the least recently used blobs until the cache holds at most this much
    /// (bytes, or with a K, M, G or T suffix: 10G).
    #[arg(long, value_name = "SIZE", value_parser = parse_size)]
    pub max_size: Option<u64>,
    /// The cache.
    #[command(flatten)]
    pub dir: CacheDirArg,
}

impl PruneArgs {
    /// The policy the flags describe (30 days unused when none is given).
    pub fn policy(&self) -> acrpull::cache::PrunePolicy {
        const DAY: u64 = 86_400;
        let older_than = match (self.older_than, self.max_size, self.all) {
            (None, None, false) => Some(30),
            (days, _, _) => days,
        };
        acrpull::cache::PrunePolicy {
            all: self.all,
            unused_for: older_than.map(|days| std::time::Duration::from_secs(days * DAY)),
            max_bytes: self.max_size,
        }
    }
}

/// `10G`, `512M`, `1500`: bytes with an optional binary suffix.
fn parse_size(text: &str) -> Result<u64, String> {
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
fn parse_size_limit(text: &str) -> Result<u64, String> {
    if text.trim().eq_ignore_ascii_case("none") {
        return Ok(u64::MAX);
    }
    parse_size(text)
}

/// A `--max-layer-entries`: a count, or `none` (no limit).
fn parse_count_limit(text: &str) -> Result<u64, String> {
    let text = text.trim();
    if text.eq_ignore_ascii_case("none") {
        return Ok(u64::MAX);
    }
    text.parse()
        .map_err(|_| format!("`{text}` is not a count (a whole number, or `none`)"))
}

/// `acrpull credential-helper`.
#[derive(Debug, Args)]
pub struct CredentialHelperArgs {
    /// get, store, erase or list.
    pub action: String,
}

/// `acrpull push` and `acrpull copy`.
#[derive(Debug, Args)]
pub struct PushArgs {
    /// Source: a registry reference, oci:PATH[:TAG|@DIGEST], docker-archive:PATH[:REPO:TAG|:@N]
    /// or oci-archive:PATH[:TAG|@DIGEST].
    pub source: String,
    /// Destination: a registry reference (or, for `copy`, oci:PATH[:TAG]).
    pub destination: String,
    /// Platform os/arch[/variant] to copy from an index (default: all of them).
    #[arg(long)]
    pub platform: Option<String>,
    /// Manifests as the source has them (`keep`), or with Docker media types rewritten to OCI
    /// ones (`oci`, as `skopeo copy --format oci`; new digests).
    #[arg(long, value_enum, default_value = "keep")]
    pub manifest_format: ManifestFormatArg,
    /// Blobs transferred at once.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u16).range(1..=64))]
    pub jobs: u16,
    /// Upload blobs larger than this many MiB in chunks.
    #[arg(long, value_name = "MIB", default_value_t = 64)]
    pub chunk_size: u64,
    /// Copy the image's referrers too (signatures, SBOMs, attestations, recursively). A push
    /// from an OCI layout always carries the referrers the layout holds.
    #[arg(long)]
    pub referrers: bool,
    /// Print a JSON summary on stdout.
    #[arg(long)]
    pub json: bool,
    /// No progress output.
    #[arg(short, long)]
    pub quiet: bool,
    /// More logging on stderr.
    #[arg(short, long, action = clap::ArgAction::Count)]
    pub verbose: u8,
    /// Connection settings and the destination's credentials (the source uses the Azure chain
    /// for ACR hosts, else anonymous).
    #[command(flatten)]
    pub registry: RegistryArgs,
    /// Signature verification of the source (last: its help heading applies to what follows).
    #[command(flatten)]
    pub verify: VerifyArgs,
}

pub use super::verify_args::VerifyArgs;

/// `acrpull verify`.
#[derive(Debug, Args)]
pub struct VerifyCommandArgs {
    /// Image: REGISTRY/REPOSITORY[:TAG][@DIGEST], or oci:PATH[:TAG|@DIGEST] for a local layout
    /// (verified offline with the signatures it carries: stage it with `pull --referrers`).
    pub image: String,
    /// Print the verification as JSON on stdout.
    #[arg(long)]
    pub json: bool,
    /// More logging on stderr.
    #[arg(short, long, action = clap::ArgAction::Count)]
    pub verbose: u8,
    /// Registry connection and credentials.
    #[command(flatten)]
    pub registry: RegistryArgs,
    /// What to verify with (last: its help heading applies to what follows it).
    #[command(flatten)]
    pub verify: VerifyArgs,
}

/// `acrpull inspect`.
#[derive(Debug, Args)]
pub struct InspectArgs {
    /// Image: REGISTRY/REPOSITORY[:TAG][@DIGEST], oci:PATH[:TAG|@DIGEST] for a local layout, or
    /// docker-archive:PATH[:REPO:TAG|:@N] / oci-archive:PATH[:TAG|@DIGEST] for an archive.
    pub image: String,
    /// Describe this platform's image of an index (default: this machine's, if listed).
    #[arg(long)]
    pub platform: Option<String>,
    /// Print the manifest exactly as served (the chosen platform's with --platform).
    #[arg(long, conflicts_with = "config")]
    pub raw: bool,
    /// Print the image config blob exactly as stored.
    #[arg(long)]
    pub config: bool,
    /// Print the image's referrers (signatures, SBOMs, attestations, recursively) as a tree;
    /// for an index, those of each manifest too.
    #[arg(long, conflicts_with_all = ["raw", "config"])]
    pub referrers: bool,
    /// With --referrers: JSON instead of the tree.
    #[arg(long, requires = "referrers")]
    pub json: bool,
    /// With --referrers: only referrers of this artifact type.
    #[arg(long, value_name = "TYPE", requires = "referrers")]
    pub artifact_type: Option<String>,
    /// More logging on stderr.
    #[arg(short, long, action = clap::ArgAction::Count)]
    pub verbose: u8,
    /// Registry connection and credentials.
    #[command(flatten)]
    pub registry: RegistryArgs,
}

/// `acrpull tags`.
#[derive(Debug, Args)]
pub struct TagsArgs {
    /// The repository: REGISTRY/REPOSITORY (a tag or digest is ignored).
    #[arg(value_name = "REPO")]
    pub repository: String,
    /// Ask the registry for pages of N tags (`?n=N`; default: the registry's choice).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub page_size: Option<u32>,
    /// Print `{"repository": ..., "tags": [...]}` instead.
    #[arg(long)]
    pub json: bool,
    /// More logging on stderr.
    #[arg(short, long, action = clap::ArgAction::Count)]
    pub verbose: u8,
    /// Registry connection and credentials.
    #[command(flatten)]
    pub registry: RegistryArgs,
}

/// `acrpull digest`.
#[derive(Debug, Args)]
pub struct DigestArgs {
    /// The image: REGISTRY/REPOSITORY[:TAG][@DIGEST].
    #[arg(value_name = "IMAGE")]
    pub image: String,
    /// Print `{"reference": ..., "digest": ...}` instead.
    #[arg(long)]
    pub json: bool,
    /// More logging on stderr.
    #[arg(short, long, action = clap::ArgAction::Count)]
    pub verbose: u8,
    /// Registry connection and credentials.
    #[command(flatten)]
    pub registry: RegistryArgs,
}

/// `acrpull catalog`.
#[derive(Debug, Args)]
pub struct CatalogArgs {
    /// The registry, e.g. myregistry.azurecr.io or 127.0.0.1:5000.
    #[arg(value_name = "REGISTRY")]
    pub registry_host: String,
    /// Ask the registry for pages of N repositories (`?n=N`).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub page_size: Option<u32>,
    /// Print `{"registry": ..., "repositories": [...]}` instead.
    #[arg(long)]
    pub json: bool,
    /// More logging on stderr.
    #[arg(short, long, action = clap::ArgAction::Count)]
    pub verbose: u8,
    /// Registry connection and credentials.
    #[command(flatten)]
    pub registry: RegistryArgs,
}

/// `acrpull token`.
#[derive(Debug, Args)]
pub struct TokenArgs {
    /// The registry, e.g. myregistry.azurecr.io.
    pub registry: String,
    /// Print an access token for this scope instead (e.g. repository:app:pull).
    #[arg(long)]
    pub scope: Option<String>,
    /// More logging on stderr.
    #[arg(short, long, action = clap::ArgAction::Count)]
    pub verbose: u8,
    /// Registry connection and credentials.
    #[command(flatten)]
    pub registry_args: RegistryArgs,
}

/// Output format flag.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum FormatArg {
    /// A root filesystem directory.
    Rootfs,
    /// An OCI image layout (what skopeo, umoci and podman read; for images with Docker media
    /// types, add --manifest-format oci).
    Oci,
    /// A tar of an OCI image layout (skopeo `oci-archive:`, `podman load`).
    OciArchive,
    /// A `docker save` tar (`docker load`, `podman load`).
    DockerArchive,
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

/// `acrpull pull`.
#[derive(Debug, Args)]
pub struct PullArgs {
    /// Image: REGISTRY/REPOSITORY[:TAG][@DIGEST], oci:PATH[:TAG|@DIGEST] for a local layout, or
    /// docker-archive:PATH[:REPO:TAG|:@N] / oci-archive:PATH[:TAG|@DIGEST] for an archive.
    pub image: String,
    /// Destination directory (or file, for the archive formats).
    #[arg(value_name = "DEST")]
    pub destination: Option<PathBuf>,
    /// What to write.
    #[arg(long, value_enum, default_value = "rootfs")]
    pub format: FormatArg,
    /// Platform os/arch[/variant] (default: this machine's), or `all` (with --format oci).
    #[arg(long)]
    pub platform: Option<String>,
    /// With --format oci or oci-archive: keep manifests byte for byte (`keep`), or rewrite
    /// Docker media types to OCI ones (`oci`, for readers of OCI only; new digests).
    #[arg(long, value_enum, default_value = "keep")]
    pub manifest_format: ManifestFormatArg,
    /// Skip the final sync to disk (faster; the output may be incomplete after a power loss).
    #[arg(long)]
    pub no_sync: bool,
    /// The shared blob cache (default: ACRPULL_CACHE_DIR, else $XDG_CACHE_HOME/acrpull, else
    /// ~/.cache/acrpull). Blobs it holds are not downloaded again; an interrupted download
    /// continues from it on the next run.
    #[arg(long, value_name = "DIR", conflicts_with = "no_cache")]
    pub cache_dir: Option<PathBuf>,
    /// Do not use the blob cache (every blob is downloaded; nothing is kept).
    #[arg(long)]
    pub no_cache: bool,
    /// Pull every reference listed in FILE (one per line; `#` comments) into the one OCI
    /// layout given as the only positional argument; shared blobs are stored once.
    #[arg(short = 'f', long = "from-file", value_name = "FILE")]
    pub from_file: Option<PathBuf>,
    /// Try this mirror or pull-through cache (host[:port][/path]) before the registry
    /// (repeatable; tried before those in registries.conf).
    #[arg(long, value_name = "HOST")]
    pub mirror: Vec<String>,
    /// Mirror configuration in containers registries.conf (v2) format, read alone (default:
    /// CONTAINERS_REGISTRIES_CONF, else ~/.config/containers/registries.conf or
    /// /etc/containers/registries.conf, with their registries.conf.d drop-ins).
    #[arg(long, value_name = "PATH")]
    pub registries_conf: Option<PathBuf>,
    /// containerd registry host configuration: DIR/<host[:port]>/hosts.toml (mirrors in
    /// order, then `server`) and DIR/_default (default: /etc/containerd/certs.d when present).
    #[arg(long, value_name = "DIR")]
    pub hosts_dir: Option<PathBuf>,
    /// Blobs downloaded at once.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u16).range(1..=64))]
    pub jobs: u16,
    /// Replace what is at DEST: a non-empty directory, or the file an archive format would
    /// write (an existing OCI layout is added to, never replaced).
    #[arg(long)]
    pub force: bool,
    /// Write an OCI runtime bundle: DEST/rootfs plus DEST/config.json.
    #[arg(long)]
    pub bundle: bool,
    /// Carry the image's referrers (signatures, SBOMs, attestations, recursively) into the
    /// layout (--format oci or oci-archive).
    #[arg(long)]
    pub referrers: bool,
    /// Largest uncompressed layer a root filesystem accepts (decompression-bomb guard; bytes or
    /// with a K, M, G or T suffix), or `none` to lift the limit.
    #[arg(long, value_name = "SIZE", default_value = "64G", value_parser = parse_size_limit)]
    pub max_layer_size: u64,
    /// Most tar entries a root filesystem accepts in one layer, or `none` to lift the limit.
    #[arg(long, value_name = "N", default_value = "10000000", value_parser = parse_count_limit)]
    pub max_layer_entries: u64,
    /// Print a JSON summary on stdout (fields in docs/cli.md).
    #[arg(long, conflicts_with = "json_events")]
    pub json: bool,
    /// Print one JSON object per line on stdout for every step, ending with a `done` or
    /// `error` event (for tools that drive acrpull).
    #[arg(long)]
    pub json_events: bool,
    /// Progress on stderr: `auto` draws bars on a terminal and prints only the final line
    /// elsewhere; `plain` prints a line per step (CI logs). ACRPULL_NO_PROGRESS=1 turns bars
    /// off, and so does TERM=dumb; NO_COLOR only drops colour.
    #[arg(long, value_enum, default_value = "auto", value_name = "WHEN")]
    pub progress: progress::ProgressMode,
    /// Print nothing but errors on stderr (not with --progress, which asks for output).
    #[arg(short, long, conflicts_with = "progress")]
    pub quiet: bool,
    /// More logging on stderr (-v info, -vv debug); RUST_LOG also works.
    #[arg(short, long, action = clap::ArgAction::Count)]
    pub verbose: u8,
    /// Registry connection and credentials.
    #[command(flatten)]
    pub registry: RegistryArgs,
    /// Signature verification (last: its help heading applies to what follows it).
    #[command(flatten)]
    pub verify: VerifyArgs,
}

/// Known subcommand names, for `acrpull REF DEST` shorthand.
pub const SUBCOMMANDS: &[&str] = &[
    "pull",
    "push",
    "copy",
    "token",
    "credential-helper",
    "kubelet-credential-provider",
    "inspect",
    "verify",
    "tags",
    "digest",
    "catalog",
    "cache",
    "completions",
    "man",
    "help",
];

/// The program name under which acrpull acts as a Docker credential helper.
const HELPER_PROGRAM: &str = "docker-credential-acrpull";
/// The program name under which acrpull acts as a kubelet image credential provider (not
/// `acr-credential-provider`, the name of cloud-provider-azure's, which takes other arguments).
const KUBELET_PROVIDER_PROGRAM: &str = "acrpull-credential-provider";

/// Parse the process arguments, inserting `pull` when no subcommand is named,
/// `credential-helper` when invoked as `docker-credential-acrpull`, and
/// `kubelet-credential-provider` when invoked as `acrpull-credential-provider`.
pub fn parse_args(args: Vec<std::ffi::OsString>) -> Result<Cli, clap::Error> {
    let mut args = args;
    let invoked_as = args
        .first()
        .and_then(|argv0| std::path::Path::new(argv0).file_name())
        .and_then(|name| name.to_str())
        .unwrap_or("");
    if invoked_as == HELPER_PROGRAM {
        args[0] = "acrpull".into();
        args.insert(1, "credential-helper".into());
        return Cli::try_parse_from(args);
    }
    if invoked_as == KUBELET_PROVIDER_PROGRAM {
        args[0] = "acrpull".into();
        args.insert(1, "kubelet-credential-provider".into());
        return Cli::try_parse_from(args);
    }
    let first = args.get(1).and_then(|a| a.to_str()).unwrap_or("");
    let is_top_level_flag = matches!(first, "-h" | "--help" | "-V" | "--version");
    if let Some(meant) = suggest::subcommand_typo(first, SUBCOMMANDS) {
        // `acrpull pul REF DEST` would pull an image called `pul` from Docker Hub.
        return Err(unknown_subcommand(first, meant));
    }
    if args.len() > 1 && !SUBCOMMANDS.contains(&first) && !is_top_level_flag {
        args.insert(1, "pull".into());
    }
    Cli::try_parse_from(args)
}

/// The usage error for a mistyped subcommand (exit 2, like every clap error).
fn unknown_subcommand(typed: &str, meant: &str) -> clap::Error {
    let mut command = <Cli as clap::CommandFactory>::command();
    command.error(
        clap::error::ErrorKind::InvalidSubcommand,
        format!(
            "unrecognized subcommand `{typed}`; did you mean `{meant}`?\n\n  \
             tip: to pull an image named `{typed}`, write `acrpull pull {typed} DEST`"
        ),
    )
}
