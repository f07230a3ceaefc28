//! The pull orchestrator: resolve the reference to manifests, download every blob
//! concurrently (the only place that spawns download tasks), and hand verified blobs to the
//! output writer.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;
use std::time::Instant;

use serde::Serialize;

use crate::cache::{BlobCache, CachedManifests};
use crate::cancel::Cancel;
use crate::credential::Credential;
use crate::destination::{Destination, Output};
use crate::digest::Digest;
use crate::error::{Error, Result};
use crate::fetch::{BlobTap, FetchOptions};
use crate::layout::{self, LayoutWriter};
use crate::manifest::{Descriptor, ImageConfigSummary, ImageIndex, ImageManifest, REF_NAME};
use crate::media_type::{self, ManifestKind};
use crate::platform::Platform;
use crate::reference::Reference;
use crate::referrers::{Discovery, DiscoveryOptions};
use crate::registry::{build_http, ClientOptions, RegistryClient};
use crate::report::{BlobKind, Reporter};
use crate::source::{FetchedManifest, ImageSource, LayoutSource};

pub use crate::archive_source::ArchiveKind;

/// Where to pull from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SourceSpec {
    /// A registry reference.
    Registry(Reference),
    /// A local OCI layout: `oci:PATH[:TAG|@DIGEST]`.
    Layout {
        /// The layout directory.
        path: PathBuf,
        /// Tag, digest, or empty for the layout's only image.
        reference: String,
    },
    /// An image archive read in place: `docker-archive:PATH[:REPO:TAG|:@N]` (skopeo's syntax:
    /// the path ends at the first `:`) or `oci-archive:PATH[:TAG|@DIGEST]` (as `oci:`).
    Archive {
        /// Which format.
        kind: ArchiveKind,
        /// The archive file.
        path: PathBuf,
        /// `REPO:TAG`, `@N`, a tag or digest, or empty for the archive's only image.
        reference: String,
    },
}

impl FromStr for SourceSpec {
    type Err = crate::reference::ReferenceError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if let Some(rest) = s.strip_prefix("docker-archive:") {
            let (path, reference) = rest.split_once(':').unwrap_or((rest, ""));
            let valid = match reference.strip_prefix('@') {
                Some(number) => number.parse::<usize>().is_ok(),
                None => {
                    reference.is_empty()
                        || reference
                            .parse::<Reference>()
                            .is_ok_and(|r| r.digest().is_none())
                }
            };
            if path.is_empty() || !valid {
                return Err(crate::reference::ReferenceError::BadArchiveImage {
                    input: s.to_string(),
                });
            }
            return Ok(SourceSpec::Archive {
                kind: ArchiveKind::Docker,
                path: PathBuf::from(path),
                reference: reference.to_string(),
            });
        }
        if let Some(rest) = s.strip_prefix("oci-archive:") {
            let (path, reference) = split_layout_reference(s, rest)?;
            return Ok(SourceSpec::Archive {
                kind: ArchiveKind::Oci,
                path,
                reference,
            });
        }
        let Some(rest) = s.strip_prefix("oci:") else {
            return Ok(SourceSpec::Registry(s.parse()?));
        };
        let (path, reference) = split_layout_reference(s, rest)?;
        Ok(SourceSpec::Layout { path, reference })
    }
}

/// `PATH[:TAG|@DIGEST]` of `oci:` and `oci-archive:` (the tag follows the last `:` after the
/// last `/`).
fn split_layout_reference(
    input: &str,
    rest: &str,
) -> Result<(PathBuf, String), crate::reference::ReferenceError> {
    if let Some((path, digest)) = rest.rsplit_once('@') {
        digest
            .parse::<Digest>()
            .map_err(|source| crate::reference::ReferenceError::BadDigest {
                input: input.to_string(),
                source,
            })?;
        return Ok((PathBuf::from(path), digest.to_string()));
    }
    let last_slash = rest.rfind('/').map_or(0, |i| i + 1);
    Ok(match rest[last_slash..].rfind(':') {
        Some(i) => (
            PathBuf::from(&rest[..last_slash + i]),
            rest[last_slash + i + 1..].to_string(),
        ),
        None => (PathBuf::from(rest), String::new()),
    })
}

impl std::fmt::Display for SourceSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SourceSpec::Registry(r) => write!(f, "{r}"),
            SourceSpec::Layout { path, reference } if reference.is_empty() => {
                write!(f, "oci:{}", path.display())
            }
            SourceSpec::Layout { path, reference } if reference.contains(':') => {
                write!(f, "oci:{}@{reference}", path.display())
            }
            SourceSpec::Layout { path, reference } => {
                write!(f, "oci:{}:{reference}", path.display())
            }
            SourceSpec::Archive {
                kind,
                path,
                reference,
            } => {
                write!(f, "{}:{}", kind.scheme(), path.display())?;
                match reference.as_str() {
                    "" => Ok(()),
                    r if *kind == ArchiveKind::Oci && r.contains(':') => write!(f, "@{r}"),
                    r => write!(f, ":{r}"),
                }
            }
        }
    }
}

/// What to write.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum OutputFormat {
    /// A root filesystem directory.
    Rootfs,
    /// An OCI image layout.
    Oci,
    /// A tar of an OCI image layout (`oci-archive:`).
    OciArchive,
    /// A `docker save` tar (`docker load`, `podman load`).
    DockerArchive,
}

/// Which platform(s) to pull from an index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PlatformChoice {
    /// One platform, asked for: a single-platform image of another platform is refused.
    One(Platform),
    /// This machine's platform, by default: a single-platform image of another platform is
    /// pulled with a warning.
    Host,
    /// Every manifest of the index (OCI layout output only).
    All,
}

impl PlatformChoice {
    /// The one platform wanted (`None` for every platform).
    pub fn wanted(&self) -> Option<Platform> {
        match self {
            PlatformChoice::One(platform) => Some(platform.clone()),
            PlatformChoice::Host => Some(Platform::host()),
            PlatformChoice::All => None,
        }
    }
}

/// How to pull.
#[derive(Debug, Clone)]
pub struct PullOptions {
    /// Output format.
    pub format: OutputFormat,
    /// Platform choice.
    pub platform: PlatformChoice,
    /// Concurrent blob downloads.
    pub jobs: usize,
    /// Replace a non-empty rootfs destination.
    pub force: bool,
    /// Write an OCI runtime bundle (`rootfs/` + `config.json`).
    pub bundle: bool,
    /// Registry connection settings.
    pub client: ClientOptions,
    /// The tag to record in an OCI layout instead of the source's (`copy SRC oci:DIR:TAG`).
    pub layout_tag: Option<String>,
    /// Make the output durable: each layout blob is fsynced before its rename, a root
    /// filesystem gets one `syncfs` at the end (`--no-sync` turns both off).
    pub sync: bool,
    /// Mirrors to try before the origin, each with its credential, and the origin last
    /// (empty: the origin alone, with the credential given to [`pull`]).
    pub mirrors: Vec<(crate::mirror::Endpoint, Credential)>,
    /// The shared blob cache: blobs it holds are not downloaded, downloads land in it (and
    /// resume from it after an interrupted run). Not used for layout sources.
    pub cache: Option<BlobCache>,
    /// Carry the image's referrers (signatures, SBOMs, attestations, recursively) into the
    /// OCI layout (`--referrers`; OCI layout and OCI archive output only).
    pub referrers: bool,
    /// Rewrite Docker media types to OCI ones (`--manifest-format oci`): new manifests, the
    /// original digests in the [`crate::convert::CONVERTED_FROM`] annotation.
    pub convert_to_oci: bool,
    /// Stops the pull when cancelled (the binary cancels it on SIGINT and SIGTERM).
    pub cancel: Cancel,
    /// Limits on each layer applied to a root filesystem (decompression bombs, entry floods):
    /// on by default, lifted with `--max-layer-size none` / `--max-layer-entries none`.
    pub layer_limits: LayerLimits,
    /// Signatures or policy the image must satisfy (`--verify`), checked once the manifest
    /// is resolved and before any layer is downloaded.
    pub verify: crate::verify::VerifyOptions,
}

/// Limits on one layer applied to a root filesystem. A layer over either is refused (the
/// integrity class) and the pull leaves nothing at the destination.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LayerLimits {
    /// Largest uncompressed layer, in bytes (`u64::MAX`: no limit).
    pub max_uncompressed_bytes: u64,
    /// Most tar entries in one layer (`u64::MAX`: no limit).
    pub max_entries: u64,
}

impl Default for LayerLimits {
    fn default() -> Self {
        let apply = crate::rootfs::ApplyOptions::default();
        Self {
            max_uncompressed_bytes: apply.max_uncompressed_bytes,
            max_entries: apply.max_entries,
        }
    }
}

impl Default for PullOptions {
    fn default() -> Self {
        Self {
            format: OutputFormat::Rootfs,
            platform: PlatformChoice::Host,
            jobs: 4,
            force: false,
            bundle: false,
            client: ClientOptions::default(),
            layout_tag: None,
            sync: true,
            mirrors: Vec::new(),
            cache: None,
            referrers: false,
            convert_to_oci: false,
            cancel: Cancel::default(),
            layer_limits: LayerLimits::default(),
            verify: crate::verify::VerifyOptions::default(),
        }
    }
}

/// One layer in the summary.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LayerSummary {
    /// Digest.
    pub digest: Digest,
    /// Compressed size.
    pub size: u64,
    /// Media type.
    pub media_type: String,
}

/// What a pull did (the `--json` summary).
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PullOutcome {
    /// The reference as given, normalised.
    pub reference: String,
    /// Digest of the manifest written (the index with `--platform all`).
    pub digest: Digest,
    /// Media type of that manifest.
    pub media_type: String,
    /// The platform pulled (`all` for a whole index; absent when unknown).
    pub platform: Option<String>,
    /// Output format.
    pub format: OutputFormat,
    /// Destination path.
    pub destination: PathBuf,
    /// Layers of the (first) image.
    pub layers: Vec<LayerSummary>,
    /// Bytes transferred.
    pub bytes_downloaded: u64,
    /// Bytes of blobs not downloaded: already in the destination, or in the blob cache.
    pub bytes_reused: u64,
    /// With `--manifest-format oci`: the digest of the source's manifest that `digest` was
    /// converted from (absent when nothing needed converting).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub converted_from: Option<Digest>,
    /// Which endpoint served each manifest and blob, when mirrors were configured.
    #[serde(skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub served_by: BTreeMap<String, String>,
    /// The referrers carried (`--referrers`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub referrers: Vec<crate::referrers::CarriedReferrer>,
    /// Referrers ignored, and why (`--referrers`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
    /// What `--verify` accepted.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub verification: Option<crate::verify::Verification>,
    /// Wall time.
    pub seconds: f64,
}

/// Blob bytes a pull moved: downloaded, or reused (already in the destination or the cache).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Transfer {
    /// Bytes transferred from the source (more than the blobs' sizes if a server made us
    /// restart one).
    pub downloaded: u64,
    /// Bytes of blobs that were not downloaded.
    pub reused: u64,
}

impl std::ops::AddAssign for Transfer {
    fn add_assign(&mut self, other: Transfer) {
        self.downloaded += other.downloaded;
        self.reused += other.reused;
    }
}

impl Transfer {
    fn downloaded(bytes: u64) -> Self {
        Self {
            downloaded: bytes,
            reused: 0,
        }
    }

    fn reused(bytes: u64) -> Self {
        Self {
            downloaded: 0,
            reused: bytes,
        }
    }
}

/// What an output writer did.
#[derive(Debug, Clone, Default)]
pub struct Written {
    /// Blob bytes downloaded and reused.
    pub transferred: Transfer,
    /// The image's platform from its config (`os/arch[/variant]`), when it names one.
    pub platform: Option<String>,
}

/// One image manifest to materialise.
#[derive(Debug, Clone)]
pub struct ResolvedImage {
    /// The manifest bytes.
    pub manifest: FetchedManifest,
    /// Parsed.
    pub parsed: ImageManifest,
    /// Its platform, if known from the index.
    pub platform: Option<Platform>,
}

/// A reference resolved to what must be written.
#[derive(Debug, Clone)]
pub struct Resolved {
    /// The manifest the reference points at (image or index).
    pub root: FetchedManifest,
    /// Images to write (one, or every index entry with `All`).
    pub images: Vec<ResolvedImage>,
    /// The manifest to name in the output (root for `All` or a plain image, else the chosen image).
    pub top: FetchedManifest,
    /// The reference as shown in messages.
    pub display: String,
}

impl Resolved {
    /// The one entry of the index `root` chosen for a platform.
    fn chosen(
        root: FetchedManifest,
        child: FetchedManifest,
        parsed: ImageManifest,
        platform: Option<Platform>,
        display: &str,
    ) -> Self {
        Resolved {
            root,
            top: child.clone(),
            images: vec![ResolvedImage {
                manifest: child,
                parsed,
                platform,
            }],
            display: display.to_string(),
        }
    }
}

/// Open the source for a spec.
pub fn open_source(
    spec: &SourceSpec,
    credential: Credential,
    client: &ClientOptions,
    mirrors: &[(crate::mirror::Endpoint, Credential)],
) -> Result<(Arc<dyn ImageSource>, String)> {
    match spec {
        SourceSpec::Registry(reference) if !mirrors.is_empty() => {
            let mut endpoints = Vec::new();
            for (endpoint, credential) in mirrors {
                let mut options = client.clone();
                options.http_fallback |= endpoint.insecure;
                options.insecure |= endpoint.insecure;
                let http = build_http(&options).map_err(|source| Error::Io {
                    path: PathBuf::from("<CA files>"),
                    source,
                })?;
                let api_host = if endpoint.origin {
                    reference.api_host()
                } else {
                    &endpoint.host
                };
                let registry = RegistryClient::new(
                    http,
                    &endpoint.host,
                    api_host,
                    &endpoint.repository,
                    credential.clone(),
                    options,
                );
                endpoints.push((endpoint.clone(), Arc::new(registry)));
            }
            let source = crate::mirror::MirroredSource::new(endpoints);
            Ok((Arc::new(source), reference.manifest_reference()))
        }
        SourceSpec::Registry(reference) => {
            let http = build_http(client).map_err(|source| Error::Io {
                path: PathBuf::from("<CA files>"),
                source,
            })?;
            let registry = RegistryClient::new(
                http,
                reference.registry(),
                reference.api_host(),
                reference.repository(),
                credential,
                client.clone(),
            );
            Ok((Arc::new(registry), reference.manifest_reference()))
        }
        SourceSpec::Layout { path, reference } => {
            let (path, reference) = locate_layout(path, reference);
            let source = LayoutSource::open(&path)?;
            Ok((Arc::new(source), reference))
        }
        SourceSpec::Archive {
            kind,
            path,
            reference,
        } => {
            let source = crate::archive_source::ArchiveSource::new(*kind, path);
            Ok((Arc::new(source), reference.clone()))
        }
    }
}

/// The layout directory and reference of `oci:PATH:REF`. The reference is what follows the
/// last `:` after the last `/`, so PATH may hold colons; when that PATH is not a layout, the
/// split at an earlier `:` that names one is taken instead (skopeo splits at the first), so a
/// full reference such as `registry:5000/repo:tag` (as `pull -f` names images that share a tag)
/// can be asked for.
fn locate_layout(path: &Path, reference: &str) -> (PathBuf, String) {
    let is_layout = |dir: &Path| dir.join("oci-layout").is_file();
    if is_layout(path) || reference.is_empty() {
        return (path.to_path_buf(), reference.to_string());
    }
    let separator = if reference.parse::<Digest>().is_ok() {
        '@'
    } else {
        ':'
    };
    let whole = format!("{}{separator}{reference}", path.display());
    whole
        .match_indices(':')
        .map(|(at, _)| (Path::new(&whole[..at]), &whole[at + 1..]))
        .find(|(dir, _)| is_layout(dir))
        .map_or_else(
            || (path.to_path_buf(), reference.to_string()),
            |(dir, reference)| (dir.to_path_buf(), reference.to_string()),
        )
}

/// The `org.opencontainers.image.ref.name` each listed image gets in one layout (`pull -f`), so
/// that no image replaces another: its tag where no other listed image has that tag, else its
/// full reference (`registry/repository:tag`, which the image-layout ref grammar allows).
/// `None` for untagged (digest) references. Fails, before anything is written, when images
/// sharing a tag cannot be named apart (layout sources, names outside the grammar).
pub fn layout_names(specs: &[SourceSpec]) -> Result<Vec<Option<String>>> {
    let mut by_tag: HashMap<String, std::collections::BTreeSet<String>> = HashMap::new();
    for spec in specs {
        if let Some(tag) = tag_of(spec) {
            by_tag.entry(tag).or_default().insert(spec.to_string());
        }
    }
    specs
        .iter()
        .map(|spec| {
            let Some(tag) = tag_of(spec) else {
                return Ok(None);
            };
            if by_tag.get(&tag).is_none_or(|images| images.len() < 2) {
                return Ok(Some(tag));
            }
            let full = match spec {
                SourceSpec::Registry(reference) => Some(reference.to_string()),
                SourceSpec::Layout { .. } | SourceSpec::Archive { .. } => None,
            };
            full.filter(|name| layout::is_valid_ref_name(name))
                .map(Some)
                .ok_or_else(|| {
                    Error::Usage(format!(
                        "{spec} shares the tag `{tag}` with another listed image and cannot be \
                         named apart in one layout: pull it into a layout of its own"
                    ))
                })
        })
        .collect()
}

fn parse_json<T: serde::de::DeserializeOwned>(manifest: &FetchedManifest) -> Result<T> {
    serde_json::from_slice(&manifest.bytes).map_err(|e| {
        Error::Unsupported(format!(
            "manifest {} ({}) is not valid: {e}",
            manifest.digest, manifest.media_type
        ))
    })
}

/// Fetch an index entry's manifest, checking its digest and size against the entry.
pub(crate) async fn fetch_child(
    source: &dyn ImageSource,
    descriptor: &Descriptor,
) -> Result<FetchedManifest> {
    let child = source.manifest(&descriptor.digest.to_string()).await?;
    if child.digest != descriptor.digest || child.bytes.len() as u64 != descriptor.size {
        return Err(Error::Integrity {
            what: "manifest",
            digest: descriptor.digest.clone(),
            expected: format!("{} ({} bytes)", descriptor.digest, descriptor.size),
            actual: format!("{} ({} bytes)", child.digest, child.bytes.len()),
        });
    }
    // The index said what the child is; the child must agree (CVE-2021-41190).
    if child.media_type != descriptor.media_type {
        return Err(Error::Registry(crate::registry::Error::AmbiguousManifest {
            url: format!("{} {}", source.describe(), descriptor.digest),
            reason: format!(
                "the index entry says `{}` but the manifest is `{}`",
                descriptor.media_type, child.media_type
            ),
        }));
    }
    Ok(child)
}

/// Largest image config read into memory (configs are a few KiB; this only bounds a bad one).
pub const CONFIG_LIMIT: u64 = 16 * 1024 * 1024;

/// The bytes of a config blob, read into memory and checked against its digest and size.
pub async fn read_config(source: &dyn ImageSource, config: &Descriptor) -> Result<Vec<u8>> {
    let integrity = |expected: String, actual: String| Error::Integrity {
        what: "config",
        digest: config.digest.clone(),
        expected,
        actual,
    };
    if config.size > CONFIG_LIMIT {
        return Err(integrity(
            format!("at most {CONFIG_LIMIT} bytes"),
            format!("{} bytes", config.size),
        ));
    }
    let mut body = source.open_blob(&config.digest, 0, None).await?;
    let mut bytes = Vec::new();
    while let Some(chunk) = futures_util::StreamExt::next(&mut body.stream).await {
        let chunk = chunk.map_err(|source| Error::Io {
            path: format!("config {}", config.digest).into(),
            source,
        })?;
        bytes.extend_from_slice(&chunk);
        if bytes.len() as u64 > config.size {
            break;
        }
    }
    let mut digester = crate::digest::Digester::new(config.digest.algorithm());
    digester.update(&bytes);
    let actual = digester.finish();
    if actual != config.digest || bytes.len() as u64 != config.size {
        return Err(integrity(
            format!("{} ({} bytes)", config.digest, config.size),
            format!("{actual} ({} bytes)", bytes.len()),
        ));
    }
    Ok(bytes)
}

/// The platform an image's config names: `None` when the config is not an image config (an
/// artifact) or names none.
async fn config_platform(
    source: &dyn ImageSource,
    image: &ImageManifest,
) -> Result<Option<Platform>> {
    if !media_type::is_image_config(&image.config.media_type) {
        return Ok(None);
    }
    let bytes = read_config(source, &image.config).await?;
    Ok(serde_json::from_slice::<ImageConfigSummary>(&bytes)
        .ok()
        .and_then(|summary| summary.platform()))
}

/// Resolve `reference` at `source` for `platform`.
///
/// An index entry is chosen by its `platform`; entries without one (the field is optional)
/// are candidates too, matched by the platform their config names, as containerd does. A
/// single image is held to an explicit `--platform` by its config the same way; for the
/// default platform a mismatch is only a warning.
pub async fn resolve(
    source: &dyn ImageSource,
    reference: &str,
    display: &str,
    platform: &PlatformChoice,
) -> Result<Resolved> {
    let root = source.manifest(reference).await?;
    if root.kind == ManifestKind::Image {
        // Its platform is judged by the writer, which reads the config anyway
        // ([`check_single_platform`]).
        let parsed: ImageManifest = parse_json(&root)?;
        return Ok(Resolved {
            top: root.clone(),
            images: vec![ResolvedImage {
                manifest: root.clone(),
                parsed,
                platform: None,
            }],
            root,
            display: display.to_string(),
        });
    }
    let index: ImageIndex = parse_json(&root)?;
    let Some(wanted) = platform.wanted() else {
        // Every entry (none, for an empty index: it is written as it is, as skopeo does).
        let mut images = Vec::new();
        for entry in &index.manifests {
            let child = fetch_image(source, entry, display).await?;
            images.push(ResolvedImage {
                parsed: parse_json(&child)?,
                manifest: child,
                platform: entry.platform.as_ref().map(|p| p.to_platform()),
            });
        }
        return Ok(Resolved {
            top: root.clone(),
            root,
            images,
            display: display.to_string(),
        });
    };
    let listed = index.manifests.iter().find(|entry| {
        entry
            .platform
            .as_ref()
            .is_some_and(|p| wanted.matches(&p.os, &p.architecture, p.variant.as_deref()))
    });
    if let Some(entry) = listed {
        let child = fetch_image(source, entry, display).await?;
        let parsed = parse_json(&child)?;
        let platform = entry.platform.as_ref().map(|p| p.to_platform());
        return Ok(Resolved::chosen(root, child, parsed, platform, display));
    }
    let mut available: Vec<String> = index
        .manifests
        .iter()
        .filter_map(|e| e.platform.as_ref())
        .map(|p| p.to_platform().to_string())
        .filter(|p| !p.starts_with("unknown/"))
        .collect();
    // Entries that name no platform: their config says.
    let unnamed = index.manifests.iter().filter(|entry| {
        entry.platform.is_none()
            && media_type::manifest_kind(&entry.media_type) == Some(ManifestKind::Image)
    });
    for entry in unnamed {
        let child = fetch_child(source, entry).await?;
        if child.kind != ManifestKind::Image {
            continue;
        }
        let parsed: ImageManifest = parse_json(&child)?;
        let Some(found) = config_platform(source, &parsed).await? else {
            continue;
        };
        if wanted.matches(&found.os, &found.architecture, found.variant.as_deref()) {
            return Ok(Resolved::chosen(root, child, parsed, Some(found), display));
        }
        available.push(found.to_string());
    }
    let mut seen = std::collections::HashSet::new();
    available.retain(|p| seen.insert(p.clone()));
    Err(Error::PlatformNotFound {
        reference: display.to_string(),
        wanted: wanted.to_string(),
        available,
    })
}

/// Hold a single-platform image (the reference named an image, not an index) to the platform
/// asked for, once its config is read: an explicit `--platform` it does not match is refused
/// (not found, as containerd refuses it); for the default platform a mismatch is a warning.
/// Indexes were matched by [`resolve`]; configs that name no platform pass.
pub fn check_single_platform(
    resolved: &Resolved,
    choice: &PlatformChoice,
    config: &ImageConfigSummary,
    reporter: &dyn Reporter,
) -> Result<()> {
    let (Some(wanted), Some(found)) = (choice.wanted(), config.platform()) else {
        return Ok(());
    };
    if resolved.root.kind != ManifestKind::Image
        || wanted.matches(&found.os, &found.architecture, found.variant.as_deref())
    {
        return Ok(());
    }
    if *choice == PlatformChoice::Host {
        reporter.on_warning(&format!(
            "{} is a single-platform image for {found}, not for this machine ({wanted}); \
             pass --platform {found} if that is intended",
            resolved.display
        ));
        return Ok(());
    }
    Err(Error::PlatformNotFound {
        reference: resolved.display.clone(),
        wanted: wanted.to_string(),
        available: vec![found.to_string()],
    })
}

/// An index entry that must be an image manifest (nested indexes are not supported).
async fn fetch_image(
    source: &dyn ImageSource,
    entry: &Descriptor,
    display: &str,
) -> Result<FetchedManifest> {
    let child = fetch_child(source, entry).await?;
    if child.kind != ManifestKind::Image {
        return Err(Error::Unsupported(format!(
            "nested index {} inside {display} is not supported",
            entry.digest
        )));
    }
    Ok(child)
}

/// How long a stopped pull may take to stop in order (downloads ended, staging removed)
/// before it is dropped where it stands.
const STOP_GRACE: std::time::Duration = std::time::Duration::from_secs(5);

/// Pull `spec` to `destination`.
///
/// The destination is claimed first ([`Destination::claim`]: locked, and checked against the
/// rule for every output) before anything is downloaded. When `options.cancel` is cancelled,
/// the pull stops, leaves the destination as it was, and fails with [`Error::Stopped`].
pub async fn pull(
    spec: &SourceSpec,
    credential: Credential,
    destination: &Path,
    options: &PullOptions,
    reporter: Arc<dyn Reporter>,
) -> Result<PullOutcome> {
    let cancel = options.cancel.clone();
    let work = pull_unguarded(spec, credential, destination, options, reporter);
    tokio::pin!(work);
    let result = tokio::select! {
        biased;
        result = &mut work => result,
        signal = cancel.cancelled() => {
            // Let the pull stop in order (it watches the same signal); drop it if it hangs.
            tokio::time::timeout(STOP_GRACE, &mut work)
                .await
                .unwrap_or(Err(Error::Stopped(signal)))
        }
    };
    match (result, cancel.signal()) {
        // Whatever failed after the stop failed because of it.
        (Err(_), Some(signal)) => Err(Error::Stopped(signal)),
        (result, _) => result,
    }
}

async fn pull_unguarded(
    spec: &SourceSpec,
    credential: Credential,
    destination: &Path,
    options: &PullOptions,
    reporter: Arc<dyn Reporter>,
) -> Result<PullOutcome> {
    let started = Instant::now();
    if options.referrers && !matches!(options.format, OutputFormat::Oci | OutputFormat::OciArchive)
    {
        return Err(Error::Usage(
            "--referrers needs --format oci (or oci-archive): referrers are stored in an OCI layout"
                .into(),
        ));
    }
    if options.format == OutputFormat::Rootfs && options.platform == PlatformChoice::All {
        // A usage error (exit 2), not unsupported content: the flags contradict each other.
        return Err(Error::Usage(
            "--platform all needs --format oci: a root filesystem holds one platform".into(),
        ));
    }
    if options.convert_to_oci
        && matches!(
            options.format,
            OutputFormat::Rootfs | OutputFormat::DockerArchive
        )
    {
        return Err(Error::Usage(
            "--manifest-format oci changes the manifests an OCI layout or oci-archive stores: \
             use it with --format oci or --format oci-archive"
                .into(),
        ));
    }
    // Keys and policies load before anything else: a broken trust setup fails fast.
    let verifier = options.verify.verifier()?;
    let output = match options.format {
        OutputFormat::Rootfs => Output::Directory,
        OutputFormat::Oci => Output::Layout,
        OutputFormat::OciArchive | OutputFormat::DockerArchive => Output::File,
    };
    let cache = options
        .cache
        .as_ref()
        .filter(|_| matches!(spec, SourceSpec::Registry(_)));
    if let Some(cache) = cache {
        // Staging directories of pulls that died, wherever they were.
        cache.remove_abandoned_staging();
    }
    let claimed = Destination::claim(
        destination,
        output,
        options.force,
        cache,
        &options.cancel,
        reporter.as_ref(),
    )
    .await?;
    let (mut source, reference) = open_source(spec, credential, &options.client, &options.mirrors)?;
    let mut options = options.clone();
    if matches!(spec, SourceSpec::Layout { .. } | SourceSpec::Archive { .. }) {
        // A local layout or archive is its own cache.
        options.cache = None;
    }
    if let Some(cache) = &options.cache {
        source = Arc::new(CachedManifests::new(source, cache.clone()));
    }
    let options = &options;
    let source_for_report = source.clone();
    let display = spec.to_string();
    let resolved = resolve(source.as_ref(), &reference, &display, &options.platform).await?;
    // Before any layer is downloaded, and before conversion: signers sign the source's bytes.
    let verification = crate::verify::check(
        verifier.as_deref(),
        spec,
        &resolved.root,
        source.as_ref(),
        reporter.as_ref(),
    )
    .await?;
    let (resolved, converted_from) = if options.convert_to_oci {
        crate::convert::to_oci(resolved)?
    } else {
        (resolved, None)
    };
    let platform = match (&options.platform, resolved.root.kind) {
        (PlatformChoice::All, ManifestKind::Index) => Some("all".to_string()),
        _ => resolved
            .images
            .first()
            .and_then(|image| image.platform.as_ref())
            .map(ToString::to_string),
    };
    reporter.on_resolved(&display, &resolved.top.digest, platform.as_deref());
    let discovery = if options.referrers {
        // Its warnings are logged as they are found (and listed in the summary).
        discover_referrers(source.as_ref(), &resolved).await?
    } else {
        Discovery::default()
    };
    let written = match options.format {
        OutputFormat::Oci => match LayoutWriter::prepare(&claimed) {
            Ok(writer) => {
                let carried = Carried {
                    resolved: &resolved,
                    referrers: &discovery,
                };
                write_layout(spec, carried, source, writer, options, &reporter).await
            }
            Err(e) => Err(e.into()),
        },
        OutputFormat::Rootfs => {
            crate::unpack::write_rootfs(&resolved, source, &claimed, options, &reporter).await
        }
        OutputFormat::OciArchive | OutputFormat::DockerArchive => {
            let carried = Carried {
                resolved: &resolved,
                referrers: &discovery,
            };
            write_archive(spec, carried, source, &claimed, options, &reporter).await
        }
    };
    let written = match (written, &options.cache) {
        (Err(e), Some(cache)) if e.is_out_of_space() => {
            discard_partials(cache, &blobs_of(&resolved)).await;
            return Err(e);
        }
        (written, _) => written?,
    };
    let bytes_downloaded = written.transferred.downloaded;
    let bytes_reused = written.transferred.reused;
    let platform = platform.or(written.platform);
    let layers = resolved
        .images
        .first()
        .map_or(&[][..], |image| &image.parsed.layers[..]);
    Ok(PullOutcome {
        reference: display,
        digest: resolved.top.digest.clone(),
        media_type: resolved.top.media_type.clone(),
        platform,
        format: options.format,
        destination: destination.to_path_buf(),
        layers: layers
            .iter()
            .map(|l| LayerSummary {
                digest: l.digest.clone(),
                size: l.size,
                media_type: l.media_type.clone(),
            })
            .collect(),
        bytes_downloaded,
        bytes_reused,
        converted_from,
        served_by: source_for_report.served_by(),
        referrers: discovery.carried(),
        warnings: discovery.warnings,
        verification,
        seconds: started.elapsed().as_secs_f64(),
    })
}

/// After a disk filled up, drop the partial downloads of `blobs` from the cache: they would
/// keep the disk full. Downloads of this pull that were just stopped release their locks
/// within moments, so each lock is tried for a little while; a blob another process is
/// downloading keeps its partial file.
async fn discard_partials(cache: &BlobCache, blobs: &[(Descriptor, BlobKind)]) {
    for (descriptor, _) in blobs {
        let digest = &descriptor.digest;
        for _ in 0..20 {
            if !cache.partial_path(digest).exists() {
                break;
            }
            if cache.discard_partial(digest) {
                tracing::info!(%digest, "dropped a partial download: the disk is full");
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    }
}

/// The tag to record in a layout for `spec`, if any.
fn tag_of(spec: &SourceSpec) -> Option<String> {
    match spec {
        SourceSpec::Registry(r) => r.tag().map(str::to_string),
        SourceSpec::Layout { reference, .. } => {
            (!reference.is_empty() && !reference.contains(':')).then(|| reference.clone())
        }
        // `REPO:TAG` names the tag; `@N` and digests name none.
        SourceSpec::Archive {
            kind: ArchiveKind::Docker,
            reference,
            ..
        } => reference
            .parse::<Reference>()
            .ok()
            .filter(|_| !reference.is_empty() && !reference.starts_with('@'))
            .and_then(|r| r.tag().map(str::to_string)),
        SourceSpec::Archive { reference, .. } => {
            (!reference.is_empty() && !reference.contains(':')).then(|| reference.clone())
        }
    }
}

/// Every distinct blob (config and layers) of the resolved images, in order.
pub fn blobs_of(resolved: &Resolved) -> Vec<(Descriptor, BlobKind)> {
    let mut seen = BTreeMap::new();
    let mut out = Vec::new();
    for image in &resolved.images {
        let blobs = std::iter::once((&image.parsed.config, BlobKind::Config))
            .chain(image.parsed.layers.iter().map(|l| (l, BlobKind::Layer)));
        for (descriptor, kind) in blobs {
            if seen.insert(descriptor.digest.clone(), ()).is_none() {
                out.push((descriptor.clone(), kind));
            }
        }
    }
    out
}

/// Download `blobs` into `dir` (layout-style paths) with `jobs` at once, skipping blobs already
/// present. Each blob is synced before it is renamed into place.
pub async fn download_all(
    source: Arc<dyn ImageSource>,
    blobs: Vec<(Descriptor, BlobKind)>,
    dir: &Path,
    options: &PullOptions,
    reporter: &Arc<dyn Reporter>,
) -> Result<Transfer> {
    download_all_tapped(
        source,
        blobs,
        Some(dir),
        options,
        reporter,
        &HashMap::new(),
        options.sync,
    )
    .await
}

/// A foreign (non-distributable) layer: a Windows base layer and the like, whose publisher
/// serves it from the `urls` of its descriptor. acrpull fetches it from the image's source like
/// any blob and never from those URLs (their hosts were not chosen by the user), so a source
/// without it fails with [`Error::ForeignLayerMissing`].
#[derive(Debug, Clone)]
pub struct ForeignLayer {
    digest: Digest,
    hosts: Vec<String>,
}

impl ForeignLayer {
    /// `Some` when `descriptor` is a foreign layer (by media type, or by carrying `urls`).
    pub fn of(descriptor: &Descriptor) -> Option<Self> {
        let urls = descriptor.urls.as_deref().unwrap_or_default();
        if !media_type::is_foreign_layer(&descriptor.media_type) && urls.is_empty() {
            return None;
        }
        let mut hosts: Vec<String> = urls
            .iter()
            .map(|u| {
                url::Url::parse(u)
                    .ok()
                    .and_then(|u| u.host_str().map(str::to_string))
                    .unwrap_or_else(|| "an unparsable URL".into())
            })
            .collect();
        hosts.dedup();
        Some(Self {
            digest: descriptor.digest.clone(),
            hosts,
        })
    }

    fn missing(self) -> Error {
        Error::ForeignLayerMissing {
            digest: self.digest,
            hosts: self.hosts,
        }
    }
}

/// Where a blob downloaded by [`download_all_tapped`] can be read: in `dir` when given, else
/// in the cache.
pub fn blob_file(dir: Option<&Path>, options: &PullOptions, digest: &Digest) -> PathBuf {
    match (dir, &options.cache) {
        (None, Some(cache)) => cache.blob_path(digest),
        (dir, _) => layout::blob_path(dir.unwrap_or(Path::new(".")), digest),
    }
}

/// [`download_all`], sharing each blob listed in `taps` with its readers while it downloads
/// (already present blobs are handed over whole), so a consumer can start on a blob as soon
/// as its first bytes arrive. With `sync` false, files are not synced (staging files that are
/// deleted after use).
///
/// With a cache in `options`, blobs it holds are not downloaded, and downloads go into it
/// first (resumable across runs, one process per blob at a time); `dir` then receives a
/// reflink, hardlink or copy, and may be `None` when the caller only reads through `taps`.
pub async fn download_all_tapped(
    source: Arc<dyn ImageSource>,
    blobs: Vec<(Descriptor, BlobKind)>,
    dir: Option<&Path>,
    options: &PullOptions,
    reporter: &Arc<dyn Reporter>,
    taps: &HashMap<Digest, Arc<BlobTap>>,
    sync: bool,
) -> Result<Transfer> {
    let dir = match (dir, &options.cache) {
        (None, None) => return Err(Error::Task("blobs need a directory or a cache".into())),
        (dir, _) => dir.map(Path::to_path_buf),
    };
    let semaphore = Arc::new(tokio::sync::Semaphore::new(options.jobs.max(1)));
    let mut tasks = tokio::task::JoinSet::new();
    let mut total = Transfer::default();
    for (descriptor, kind) in blobs {
        let path = dir
            .as_deref()
            .map(|d| layout::blob_path(d, &descriptor.digest));
        let tap = taps.get(&descriptor.digest).cloned();
        // Present in the destination: trusted (blobs are only renamed in after verification).
        // The cache's blobs are placed by the tasks below (a copy can take a while).
        let held = match &path {
            Some(path) if path.is_file() => {
                Some(std::fs::File::open(path).map_err(|source| Error::Io {
                    path: path.clone(),
                    source,
                }))
            }
            _ => None,
        };
        if let Some(file) = held {
            let used = use_held(&descriptor, kind, file, reporter.as_ref(), tap.as_ref());
            match used {
                Ok(reused) => total += reused,
                Err(e) => {
                    failed_before_start(taps, &e);
                    return Err(e);
                }
            }
            continue;
        }
        let source = source.clone();
        let reporter = reporter.clone();
        let semaphore = semaphore.clone();
        let retry = options.client.retry.clone();
        let cache = options.cache.clone();
        let fetch_options = FetchOptions { sync, tap };
        let foreign = ForeignLayer::of(&descriptor);
        tasks.spawn(async move {
            let result = async move {
                let _permit = semaphore
                    .acquire_owned()
                    .await
                    .map_err(|e| Error::Task(e.to_string()))?;
                let Some(cache) = cache else {
                    let Some(path) = path else {
                        return Err(Error::Task("no place for a blob".into()));
                    };
                    reporter.on_blob_start(&descriptor.digest, kind, descriptor.size, false);
                    let n = crate::fetch::fetch_blob(
                        source.as_ref(),
                        &descriptor,
                        &path,
                        reporter.as_ref(),
                        &retry,
                        &fetch_options,
                    )
                    .await?;
                    reporter.on_blob_done(&descriptor.digest);
                    return Ok(Transfer::downloaded(n));
                };
                fetch_through_cache(
                    source.as_ref(),
                    &cache,
                    &descriptor,
                    kind,
                    path.as_deref(),
                    reporter.as_ref(),
                    &retry,
                    &fetch_options,
                )
                .await
            }
            .await;
            match (result, foreign) {
                (Err(Error::Registry(crate::registry::Error::NotFound { .. })), Some(foreign)) => {
                    Err(foreign.missing())
                }
                (result, _) => result,
            }
        });
    }
    let failure = loop {
        let joined = tokio::select! {
            joined = tasks.join_next() => joined,
            signal = options.cancel.cancelled() => break Error::Stopped(signal),
        };
        match joined {
            None => return Ok(total),
            Some(Ok(Ok(n))) => total += n,
            Some(Ok(Err(e))) => break e,
            Some(Err(e)) => break Error::Task(e.to_string()),
        }
    };
    tasks.abort_all();
    // Wait until the other downloads have stopped: their partial files are closed and their
    // cache locks released before anything is removed.
    while tasks.join_next().await.is_some() {}
    placements_finished().await;
    failed_before_start(taps, &failure);
    Err(failure)
}

/// Downloads that never started hold no guard: release their readers (a tap that already
/// finished keeps its result).
fn failed_before_start(taps: &HashMap<Digest, Arc<BlobTap>>, failure: &Error) {
    for tap in taps.values() {
        tap.finish(Err(format!("the pull stopped: {failure}")));
    }
}

/// Cache placements running on blocking threads. A placement outlives the download task that
/// started it when that task is aborted, so a failed pull waits for them before its staging
/// directory (where they write) is removed.
static PLACEMENTS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// One placement in flight (counted in [`PLACEMENTS`] until dropped).
struct Placing;

impl Placing {
    fn start() -> Self {
        PLACEMENTS.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        Placing
    }
}

impl Drop for Placing {
    fn drop(&mut self) {
        PLACEMENTS.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
    }
}

/// Wait (a few seconds at most) until no cache placement is running.
async fn placements_finished() {
    for _ in 0..500 {
        if PLACEMENTS.load(std::sync::atomic::Ordering::SeqCst) == 0 {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
}

/// A blob the cache holds, placed at `path` (when given) and opened for a tap, on a blocking
/// thread. `None` when the cache does not hold it, or it vanished (a concurrent prune).
async fn place_from_cache(
    cache: &BlobCache,
    descriptor: &Descriptor,
    path: Option<&Path>,
    sync: bool,
) -> Option<std::io::Result<std::fs::File>> {
    if !cache.contains(&descriptor.digest, descriptor.size) {
        return None;
    }
    let cache = cache.clone();
    let descriptor = descriptor.clone();
    let path = path.map(Path::to_path_buf);
    let placing = Placing::start();
    let placed = tokio::task::spawn_blocking(move || {
        let _placing = placing;
        match path {
            Some(path) => match cache.place(&descriptor.digest, &path, sync) {
                Ok(how) => {
                    tracing::debug!(digest = %descriptor.digest, ?how, "blob from the cache");
                    Some(std::fs::File::open(&path))
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
                Err(e) => Some(Err(e)),
            },
            None => cache.open_blob(&descriptor.digest, descriptor.size).map(Ok),
        }
    })
    .await;
    placed.unwrap_or_else(|e| Some(Err(std::io::Error::other(e))))
}

/// Hand a blob taken whole (from the destination or the cache) to its tap and the reporter.
/// A blob that could not be placed or opened fails the pull, whether or not anything reads
/// it now: an output missing a blob must never be reported complete.
fn use_held(
    descriptor: &Descriptor,
    kind: BlobKind,
    file: Result<std::fs::File>,
    reporter: &dyn Reporter,
    tap: Option<&Arc<BlobTap>>,
) -> Result<Transfer> {
    let file = match file {
        Ok(file) => file,
        Err(e) => {
            if let Some(tap) = tap {
                tap.finish(Err(e.to_string()));
            }
            return Err(e);
        }
    };
    reporter.on_blob_start(&descriptor.digest, kind, descriptor.size, true);
    if let Some(tap) = tap {
        tap.complete(file);
    }
    reporter.on_blob_done(&descriptor.digest);
    Ok(Transfer::reused(descriptor.size))
}

/// One blob through the cache: taken from it when held; else downloaded into it under its lock
/// (another process downloading it makes us wait, then find it there), continuing a partial
/// download, and placed at `path`.
#[allow(clippy::too_many_arguments)]
async fn fetch_through_cache(
    source: &dyn ImageSource,
    cache: &BlobCache,
    descriptor: &Descriptor,
    kind: BlobKind,
    path: Option<&Path>,
    reporter: &dyn Reporter,
    retry: &crate::registry::retry::RetryPolicy,
    fetch_options: &FetchOptions,
) -> Result<Transfer> {
    let digest = &descriptor.digest;
    let tap = fetch_options.tap.as_ref();
    // A held blob that could not be placed names where it was going.
    let take_held = |file: std::io::Result<std::fs::File>| {
        let file = file.map_err(|source| Error::Io {
            path: path.map_or_else(|| cache.blob_path(digest), Path::to_path_buf),
            source,
        });
        use_held(descriptor, kind, file, reporter, tap)
    };
    if let Some(file) = place_from_cache(cache, descriptor, path, fetch_options.sync).await {
        return take_held(file);
    }
    let lock = {
        let cache = cache.clone();
        let digest = digest.clone();
        tokio::task::spawn_blocking(move || cache.lock(&digest))
            .await
            .map_err(|e| Error::Task(e.to_string()))?
            .map_err(Error::Cache)?
    };
    if let Some(file) = place_from_cache(cache, descriptor, path, fetch_options.sync).await {
        // Another process finished it while we waited.
        return take_held(file);
    }
    reporter.on_blob_start(digest, kind, descriptor.size, false);
    let transferred = crate::fetch::fetch_blob_resumable(
        source,
        descriptor,
        &cache.partial_path(digest),
        reporter,
        retry,
        fetch_options,
    )
    .await?;
    cache.commit(digest).map_err(Error::Cache)?;
    drop(lock);
    if let Some(path) = path {
        match place_from_cache(cache, descriptor, Some(path), fetch_options.sync).await {
            Some(Ok(_)) => {}
            Some(Err(source)) => {
                return Err(Error::Io {
                    path: path.to_path_buf(),
                    source,
                })
            }
            None => {
                return Err(Error::Io {
                    path: path.to_path_buf(),
                    source: std::io::Error::new(
                        std::io::ErrorKind::NotFound,
                        "the blob was pruned from the cache as it was stored",
                    ),
                })
            }
        }
    }
    reporter.on_blob_done(digest);
    // Bytes kept from an interrupted download were not transferred now: they count as
    // reused, so downloaded + reused adds up to the blob (more only when a server made us
    // start over).
    Ok(Transfer {
        downloaded: transferred,
        reused: descriptor.size.saturating_sub(transferred),
    })
}

/// What goes into a layout: the resolved image(s) and the referrers found for them.
#[derive(Clone, Copy)]
struct Carried<'a> {
    resolved: &'a Resolved,
    referrers: &'a Discovery,
}

/// The manifests a pull writes (the top manifest and each image), as referrer subjects: a
/// single platform taken from an index leaves the index out, and its referrers with it.
pub fn written_subjects(resolved: &Resolved) -> Vec<Descriptor> {
    let mut subjects = vec![crate::referrers::subject_descriptor(&resolved.top)];
    for image in &resolved.images {
        if image.manifest.digest != resolved.top.digest {
            let mut subject = crate::referrers::subject_descriptor(&image.manifest);
            subject.platform = image
                .platform
                .as_ref()
                .map(|p| crate::manifest::PlatformSpec {
                    architecture: p.architecture.clone(),
                    os: p.os.clone(),
                    variant: p.variant.clone(),
                    os_version: None,
                });
            subjects.push(subject);
        }
    }
    subjects
}

/// Every referrer (recursively) of the manifests a pull or push writes.
pub async fn discover_referrers(
    source: &dyn ImageSource,
    resolved: &Resolved,
) -> Result<Discovery> {
    let subjects = written_subjects(resolved);
    Ok(crate::referrers::discover_all(source, &subjects, &DiscoveryOptions::default()).await?)
}

/// The distinct blobs of the referrers found, after those in `taken`.
pub fn referrer_blobs(
    discovery: &Discovery,
    taken: &[(Descriptor, BlobKind)],
) -> Vec<(Descriptor, BlobKind)> {
    let mut seen: std::collections::HashSet<Digest> =
        taken.iter().map(|(d, _)| d.digest.clone()).collect();
    discovery
        .all()
        .into_iter()
        .flat_map(|r| r.blobs.iter())
        .filter(|b| seen.insert(b.digest.clone()))
        .map(|b| (b.clone(), BlobKind::Layer))
        .collect()
}

/// Fill the layout `writer` with the resolved images and commit it (verified complete first).
async fn write_layout(
    spec: &SourceSpec,
    carried: Carried<'_>,
    source: Arc<dyn ImageSource>,
    writer: LayoutWriter<'_>,
    options: &PullOptions,
    reporter: &Arc<dyn Reporter>,
) -> Result<Written> {
    let resolved = carried.resolved;
    let mut blobs = blobs_of(resolved);
    blobs.extend(referrer_blobs(carried.referrers, &blobs));
    let mut transferred = Transfer::default();
    let config_summary = |config: &Descriptor| {
        std::fs::read(layout::blob_path(writer.root(), &config.digest))
            .ok()
            .and_then(|bytes| serde_json::from_slice::<ImageConfigSummary>(&bytes).ok())
    };
    if let (ManifestKind::Image, Some(image)) = (resolved.root.kind, resolved.images.first()) {
        // A single image's config first: it is held to the platform asked for before its
        // layers are fetched.
        let config = &image.parsed.config;
        blobs.retain(|(blob, _)| blob.digest != config.digest);
        let first = vec![(config.clone(), BlobKind::Config)];
        transferred +=
            download_all(source.clone(), first, writer.root(), options, reporter).await?;
        if let Some(summary) = config_summary(config) {
            check_single_platform(resolved, &options.platform, &summary, reporter.as_ref())?;
        }
    }
    transferred += download_all(source, blobs, writer.root(), options, reporter).await?;
    // An empty index (`--platform all`) has no image, so no platform.
    let platform = resolved
        .images
        .first()
        .and_then(|image| config_summary(&image.parsed.config))
        .and_then(|summary| summary.platform())
        .map(|p| p.to_string());
    for image in &resolved.images {
        writer.put_bytes(&image.manifest.digest, &image.manifest.bytes)?;
    }
    writer.put_bytes(&resolved.top.digest, &resolved.top.bytes)?;
    for referrer in carried.referrers.all() {
        for child in &referrer.children {
            writer.put_bytes(&child.digest, &child.bytes)?;
        }
        writer.put_bytes(&referrer.digest, &referrer.manifest.bytes)?;
    }
    let annotations = options
        .layout_tag
        .clone()
        .or_else(|| tag_of(spec))
        .map(|tag| BTreeMap::from([(REF_NAME.to_string(), tag)]));
    let descriptor = Descriptor {
        media_type: resolved.top.media_type.clone(),
        digest: resolved.top.digest.clone(),
        size: resolved.top.bytes.len() as u64,
        urls: None,
        annotations,
        platform: None,
    };
    writer.commit_with_referrers(
        descriptor,
        &crate::referrers::layout_entries(carried.referrers),
    )?;
    Ok(Written {
        transferred,
        platform,
    })
}

/// An archive: the layout is built in a staging directory beside `destination`, tarred into a
/// file there, and that file is put at the destination.
async fn write_archive(
    spec: &SourceSpec,
    carried: Carried<'_>,
    source: Arc<dyn ImageSource>,
    destination: &Destination,
    options: &PullOptions,
    reporter: &Arc<dyn Reporter>,
) -> Result<Written> {
    let resolved = carried.resolved;
    if options.format == OutputFormat::DockerArchive && resolved.images.len() != 1 {
        return Err(Error::Unsupported(
            "a docker-archive holds one image: choose one platform with --platform".into(),
        ));
    }
    let staging = destination.staging()?;
    let layout_dir = staging.path().join("layout");
    let writer = LayoutWriter::create(&layout_dir)?;
    let written = write_layout(spec, carried, source, writer, options, reporter).await?;
    let archive = staging.path().join("archive");
    let format = options.format;
    let image = resolved.images.first().map(|image| image.parsed.clone());
    let repo_tag = match spec {
        SourceSpec::Registry(r) => r
            .tag()
            .map(|t| format!("{}/{}:{t}", r.registry(), r.repository())),
        SourceSpec::Layout { .. } | SourceSpec::Archive { .. } => None,
    };
    let archived = tokio::task::spawn_blocking({
        let archive = archive.clone();
        move || match format {
            OutputFormat::DockerArchive => {
                let Some(image) = image else {
                    return Err(Error::Task("a docker-archive needs one image".into()));
                };
                let config_path = layout::blob_path(&layout_dir, &image.config.digest);
                let config: crate::manifest::ImageConfigSummary = std::fs::read(&config_path)
                    .map_err(|source| Error::Io {
                        path: config_path.clone(),
                        source,
                    })
                    .and_then(|bytes| {
                        serde_json::from_slice(&bytes)
                            .map_err(|e| Error::Unsupported(format!("image config: {e}")))
                    })?;
                let diff_ids = config.rootfs.map(|r| r.diff_ids).unwrap_or_default();
                crate::archive::write_docker_archive(
                    &layout_dir,
                    &image,
                    &diff_ids,
                    repo_tag.as_deref(),
                    &archive,
                )
            }
            _ => crate::archive::write_oci_archive(&layout_dir, &archive),
        }
    })
    .await
    .map_err(|e| Error::Task(e.to_string()))?;
    archived?;
    destination.publish_file(&archive)?;
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Issue 16 item 4: listed images that share a tag get their full reference; the rest
    /// keep their tag; layout sources that collide are refused.
    #[test]
    fn layout_names_keep_every_listed_image_apart() {
        let specs: Vec<SourceSpec> = [
            "reg:5000/a:latest",
            "reg:5000/b:latest",
            "reg:5000/c:v2",
            "reg:5000/a:latest",
            "reg:5000/d@sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
        ]
        .iter()
        .map(|s| s.parse().unwrap())
        .collect();
        let names = layout_names(&specs).unwrap();
        assert_eq!(
            names,
            [
                Some("reg:5000/a:latest".to_string()),
                Some("reg:5000/b:latest".to_string()),
                Some("v2".to_string()),
                Some("reg:5000/a:latest".to_string()),
                None,
            ]
        );
        let layouts: Vec<SourceSpec> = ["oci:/x:v1", "oci:/y:v1"]
            .iter()
            .map(|s| s.parse().unwrap())
            .collect();
        assert!(matches!(layout_names(&layouts), Err(Error::Usage(_))));
    }

    #[test]
    fn parses_layout_specs() {
        let d = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
        assert_eq!(
            "oci:/tmp/x:v1".parse::<SourceSpec>().unwrap(),
            SourceSpec::Layout {
                path: "/tmp/x".into(),
                reference: "v1".into()
            }
        );
        assert_eq!(
            format!("oci:./a/b@{d}").parse::<SourceSpec>().unwrap(),
            SourceSpec::Layout {
                path: "./a/b".into(),
                reference: d.into()
            }
        );
        assert_eq!(
            "oci:relative".parse::<SourceSpec>().unwrap(),
            SourceSpec::Layout {
                path: "relative".into(),
                reference: String::new()
            }
        );
        assert!(matches!(
            "alpine".parse::<SourceSpec>().unwrap(),
            SourceSpec::Registry(_)
        ));
        assert!("oci:/x@sha256:bad".parse::<SourceSpec>().is_err());
    }
}
