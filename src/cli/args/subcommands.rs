//! The arguments of each command (`acrpull pull`, `push`/`copy`, `inspect`, `verify`, `tags`,
//! `digest`, `catalog`, `token`, `cache`, `man`, `credential-helper`): one struct a command,
//! each flattening the option groups it needs. Apart from the top level so a command's flags
//! are read in one place.

use std::path::PathBuf;

use clap::{Args, Subcommand, ValueEnum};

use super::shared::{
    parse_count_limit, parse_size, parse_size_limit, ManifestFormatArg, RegistryArgs,
};
use crate::cli::progress;
use crate::cli::verify_args::VerifyArgs;

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
    /// Blobs downloaded at once. Default 8: on a link where each connection is capped (blob
    /// storage), a blob that waits for a slot later runs alone on one capped connection.
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u16).range(1..=64))]
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
