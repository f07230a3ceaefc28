//! The pull orchestrator: claim the destination, open the source, resolve the reference
//! (`resolve`), and hand the image(s) with one download handle (`download`) to the output
//! asked for (`output`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use serde::Serialize;

use crate::cache::{BlobCache, CachedManifests};
use crate::cancel::Cancel;
use crate::credential::Credential;
use crate::destination::Destination;
use crate::digest::Digest;
use crate::download::{blobs_of, discard_partials, Downloads, FetchedAhead};
use crate::error::{Error, Result};
use crate::layout;
use crate::media_type::ManifestKind;
use crate::output::archive::ArchiveOutput;
use crate::output::layout::LayoutOutput;
use crate::output::rootfs::RootfsOutput;
use crate::output::{Job, Output};
use crate::referrers::Discovery;
use crate::registry::ClientOptions;
use crate::report::Reporter;
use crate::resolve::{discover_referrers, open_source, resolve};
use crate::source::ImageSource;

pub use crate::archive_source::ArchiveKind;
pub use crate::output::rootfs::LayerLimits;
pub use crate::resolve::{layout_names, PlatformChoice, SourceSpec};

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
    /// The digest the source's tag was resolved to earlier in the run ([`ahead`]):
    /// the pull asks for that digest, whose manifests the cache then holds, instead of the tag.
    pub resolved_ahead: Option<Digest>,
    /// Blobs downloaded into the cache ahead of this pull ([`ahead`]): taken from it,
    /// they count as downloaded, not reused.
    pub fetched_ahead: Option<Arc<FetchedAhead>>,
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
            resolved_ahead: None,
            fetched_ahead: None,
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

/// How long a stopped pull may take to stop in order (downloads ended, staging removed)
/// before it is dropped where it stands.
const STOP_GRACE: std::time::Duration = std::time::Duration::from_secs(5);

/// How many tags [`ahead`] resolves at once.
pub const RESOLVE_AHEAD: usize = 8;

/// A listed image whose tag was resolved ahead of its pull.
struct ResolvedAhead {
    /// The digest the tag resolved to.
    digest: Digest,
    /// Where its blobs come from.
    source: Arc<dyn ImageSource>,
    /// Its blobs: the config and layers of each platform chosen.
    blobs: Vec<crate::manifest::Descriptor>,
}

/// `spec`'s tag resolved, its manifests kept in the cache (for [`ahead`]). `None` for a
/// source that is not a registry tag, has no cache, or did not resolve.
async fn resolve_one(
    spec: &SourceSpec,
    credential: &Credential,
    options: &PullOptions,
) -> Option<ResolvedAhead> {
    let SourceSpec::Registry(reference) = spec else {
        return None;
    };
    if reference.digest().is_some() {
        return None;
    }
    let cache = options.cache.clone()?;
    let (source, tag) =
        open_source(spec, credential.clone(), &options.client, &options.mirrors).ok()?;
    let manifests = CachedManifests::new(source.clone(), cache);
    let display = spec.to_string();
    let resolving = resolve(&manifests, &tag, &display, &options.platform);
    tokio::select! {
        resolved = resolving => match resolved {
            Ok(resolved) => Some(ResolvedAhead {
                digest: resolved.root.digest.clone(),
                source,
                blobs: blobs_of(&resolved).into_iter().map(|(blob, _)| blob).collect(),
            }),
            Err(error) => {
                tracing::debug!(%spec, %error, "not resolved ahead");
                None
            }
        },
        _ = options.cancel.cancelled() => None,
    }
}

/// The later images of a list, resolved and their blobs downloaded ahead of their pulls on a
/// task of their own ([`ahead`]). Dropping it stops that task (what it left in the cache is
/// resumed or verified by the next download).
pub struct Ahead {
    digests: Vec<Option<tokio::sync::oneshot::Receiver<Digest>>>,
    fetched: Arc<FetchedAhead>,
    task: tokio::task::JoinHandle<()>,
}

impl Ahead {
    /// The digest the tag of the `index`th source given to [`ahead`] resolved to, once it has:
    /// the image's pull asks for it ([`PullOptions::resolved_ahead`]) and finds its manifests
    /// in the cache, its blobs marked as fetched ahead. `None` when it was not resolved ahead
    /// (not a registry tag, no cache, or it failed: its pull resolves it and reports why).
    pub async fn digest(&mut self, index: usize) -> Option<Digest> {
        let resolved = self.digests.get_mut(index)?.take()?;
        resolved.await.ok()
    }

    /// What was downloaded ahead, for [`PullOptions::fetched_ahead`].
    pub fn fetched(&self) -> Arc<FetchedAhead> {
        self.fetched.clone()
    }
}

impl Drop for Ahead {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Start, on a task of its own, resolving the tags of `sources` (the images of a list after
/// its first, in the order they will be pulled) [`RESOLVE_AHEAD`] at a time, their manifests
/// kept in the blob cache, and downloading each image's blobs into the cache as soon as its
/// tag resolves, `--jobs` at a time in list order: while one image of a list is written, the
/// next ones resolve and their blobs arrive, and their pulls find both in the cache (`pull
/// -f`). Blobs the OCI layout `destination` already holds are left out. Nothing is fetched
/// ahead when the pulls verify signatures (no layer is downloaded before its image is
/// verified) or have no cache. Stops when `cancel` fires. Must be called within a Tokio
/// runtime.
pub fn ahead(sources: Vec<(SourceSpec, Credential, PullOptions)>, destination: &Path) -> Ahead {
    use futures_util::StreamExt as _;
    let fetched = Arc::new(FetchedAhead::default());
    let (senders, digests): (Vec<_>, Vec<_>) = sources
        .iter()
        .map(|_| {
            let (sender, receiver) = tokio::sync::oneshot::channel();
            (sender, Some(receiver))
        })
        .unzip();
    let options = sources.first().map(|(_, _, options)| options.clone());
    let cache = options
        .as_ref()
        .and_then(|o| o.cache.clone().filter(|_| !o.verify.enabled()));
    let options = options.unwrap_or_default();
    let (jobs, retry, sync, cancel) = (
        options.jobs,
        options.client.retry.clone(),
        options.sync,
        options.cancel.clone(),
    );
    let (destination, marker) = (destination.to_path_buf(), fetched.clone());
    let task = tokio::spawn(async move {
        let (queue, queued) = tokio::sync::mpsc::unbounded_channel();
        let fetching = cache.is_some();
        let resolving = async move {
            // Boxed and collected first: a future holding the mapping closure's type would not
            // be `Send` for every lifetime of its borrows (rust-lang/rust#64552).
            let resolving: Vec<futures_util::future::BoxFuture<'_, Option<ResolvedAhead>>> =
                sources
                    .iter()
                    .map(|(spec, credential, options)| {
                        Box::pin(resolve_one(spec, credential, options)) as _
                    })
                    .collect();
            let mut resolved = futures_util::stream::iter(resolving).buffered(RESOLVE_AHEAD);
            let mut senders = senders.into_iter();
            while let Some(image) = resolved.next().await {
                let sender = senders.next();
                let Some(image) = image else { continue };
                let missing = image.blobs.iter().filter(|blob| {
                    fetching && !layout::blob_path(&destination, &blob.digest).is_file()
                });
                for blob in missing {
                    if let Some(marked) = marker.mark(&image.source, blob) {
                        let _ = queue.send(marked);
                    }
                }
                // Only now, its blobs marked: the image's pull waits for them.
                if let Some(sender) = sender {
                    let _ = sender.send(image.digest);
                }
            }
        };
        let downloading = async move {
            let Some(cache) = cache else { return };
            let mut queued = queued;
            let marked = futures_util::stream::poll_fn(move |cx| queued.poll_recv(cx));
            crate::download::fetch_marked(marked, cache, jobs, retry, sync).await;
        };
        tokio::select! {
            _ = async { tokio::join!(resolving, downloading) } => {}
            _ = cancel.cancelled() => {}
        }
    });
    Ahead {
        digests,
        fetched,
        task,
    }
}

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
        OutputFormat::Rootfs => crate::destination::Output::Directory,
        OutputFormat::Oci => crate::destination::Output::Layout,
        OutputFormat::OciArchive | OutputFormat::DockerArchive => crate::destination::Output::File,
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
    let reference = match (&options.resolved_ahead, spec) {
        (Some(digest), SourceSpec::Registry(_)) => digest.to_string(),
        _ => reference,
    };
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
    let downloads = Downloads {
        source,
        jobs: options.jobs,
        cache: options.cache.clone(),
        retry: options.client.retry.clone(),
        sync: options.sync,
        cancel: options.cancel.clone(),
        reporter,
        fetched_ahead: options.fetched_ahead.clone(),
    };
    let job = Job {
        spec,
        resolved: &resolved,
        referrers: &discovery,
        platform: &options.platform,
        downloads: &downloads,
    };
    let tag = options.layout_tag.clone();
    let written = match options.format {
        OutputFormat::Oci => {
            LayoutOutput {
                destination: &claimed,
                tag,
            }
            .write(&job)
            .await
        }
        OutputFormat::Rootfs => {
            RootfsOutput {
                destination: &claimed,
                bundle: options.bundle,
                limits: options.layer_limits,
            }
            .write(&job)
            .await
        }
        OutputFormat::OciArchive | OutputFormat::DockerArchive => {
            let kind = if options.format == OutputFormat::DockerArchive {
                ArchiveKind::Docker
            } else {
                ArchiveKind::Oci
            };
            ArchiveOutput {
                destination: &claimed,
                kind,
                tag,
            }
            .write(&job)
            .await
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
/// `acrpull verify`: resolve `image` to its manifest (no platform is chosen: signatures sign
/// what the reference names) and verify it, downloading no layer.
pub async fn verify_image(
    image: &SourceSpec,
    credential: Credential,
    client: &ClientOptions,
    options: &crate::verify::VerifyOptions,
    reporter: &dyn Reporter,
) -> Result<crate::verify::Verification> {
    let Some(verifier) = options.verifier()? else {
        return Err(Error::Usage(
            "acrpull verify needs --verify cosign, --verify policy or --verify notation".into(),
        ));
    };
    let (source, reference) = open_source(image, credential, client, &[])?;
    let manifest = source.manifest(&reference).await?;
    let request = crate::verify::Request {
        image,
        manifest: &manifest,
        source: source.as_ref(),
    };
    Ok(crate::verify::verify(verifier.as_ref(), &request, reporter).await?)
}
