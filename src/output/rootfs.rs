//! Root filesystem output: download the layers concurrently and apply them strictly in order,
//! into a staging directory beside the destination that is swapped into place only when the
//! whole image applied.
//!
//! Application streams: each layer is downloaded to a staging file (hashed as it arrives, not
//! synced), and the applier reads that file while it grows through a [`BlobTap`], so layer *i*
//! is decompressed and applied as its bytes arrive, overlapping the downloads of later layers.
//! The tap reaches end-of-file only once the layer's digest is verified and fails otherwise, so
//! a layer whose digest fails fails its application, and the whole staging tree is discarded.
//!
//! Decompression runs on other cores: each layer inflates (and hashes its diff_id) on a thread
//! of its own, started a few layers before its turn (`apply_in_order`), so later layers are
//! decompressed while earlier ones are applied. What they inflate ahead waits in a spill file
//! in the staging directory ([`crate::rootfs`]'s spool) and reaches the applier in order.

use std::collections::{HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::cancel::StoppableReader;
use crate::destination::Destination;
use crate::digest::Digest;
use crate::download::{Downloads, Transfer};
use crate::error::{Error, Internal, Result};
use crate::fetch::BlobTap;
use crate::layout;
use crate::manifest::{Descriptor, ImageConfigSummary};
use crate::media_type::{self, layer_compression, LayerCompression};
use crate::report::BlobKind;
use crate::resolve::{check_single_platform, PlatformChoice};
use crate::rootfs::{Applier, ApplyOptions, EarlyWriteback, Inflating, SpillArea};

use super::{Job, Output, Written};

/// Limits on one layer applied to a root filesystem. A layer over either is refused (the
/// integrity class) and the pull leaves nothing at the destination.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LayerLimits {
    /// Largest uncompressed layer, in bytes (`u64::MAX`: no limit).
    pub max_uncompressed_bytes: u64,
    /// Most tar entries in one layer (`u64::MAX`: no limit).
    pub max_entries: u64,
    /// How many layers may inflate ahead of the one being applied (`None`: the cores left
    /// over by the applier, at most 8; `Some(0)`: none).
    pub inflate_ahead: Option<usize>,
}

impl Default for LayerLimits {
    fn default() -> Self {
        let apply = ApplyOptions::default();
        Self {
            max_uncompressed_bytes: apply.max_uncompressed_bytes,
            max_entries: apply.max_entries,
            inflate_ahead: None,
        }
    }
}

/// A root filesystem (or an OCI runtime bundle) at a claimed destination.
pub struct RootfsOutput<'a> {
    /// Where it goes.
    pub destination: &'a Destination,
    /// `rootfs/` plus `config.json` instead of the bare tree.
    pub bundle: bool,
    /// Limits on each layer.
    pub limits: LayerLimits,
}

#[async_trait::async_trait]
impl Output for RootfsOutput<'_> {
    async fn write(&self, job: &Job<'_>) -> Result<Written> {
        write_rootfs(self, job).await
    }
}

/// Write the resolved image as a root filesystem (or a runtime bundle) at its destination.
async fn write_rootfs(output: &RootfsOutput<'_>, job: &Job<'_>) -> Result<Written> {
    let (resolved, destination) = (job.resolved, output.destination);
    let [image] = &resolved.images[..] else {
        return Err(Internal::Broken("a root filesystem is built from exactly one image").into());
    };
    let config = &image.parsed.config;
    if !media_type::is_image_config(&config.media_type) {
        // An artifact (Helm chart, signature, SBOM...): its layers are not a file system.
        return Err(Error::Unsupported(format!(
            "{} is an artifact (config media type `{}`), not a container image: it has no root filesystem",
            image.manifest.digest, config.media_type
        )));
    }
    let layers: Vec<(Descriptor, LayerCompression)> = image
        .parsed
        .layers
        .iter()
        .map(|layer| {
            layer_compression(&layer.media_type)
                .map(|c| (layer.clone(), c))
                .ok_or_else(|| {
                    Error::Unsupported(format!(
                        "layer {} has media type `{}`, which cannot be applied to a root filesystem",
                        layer.digest, layer.media_type
                    ))
                })
        })
        .collect::<Result<_>>()?;
    let staging = destination.staging()?;
    let result = build(output, job, config, layers, staging.path()).await;
    match result {
        Ok((written, out)) => {
            finish_tree(staging.path(), &out, job.downloads.sync)?;
            // Dropping the staging directory removes it (with the old tree after --force).
            destination.publish_dir(&out)?;
            Ok(written)
        }
        Err(e) => Err(e),
    }
}

async fn build(
    output: &RootfsOutput<'_>,
    job: &Job<'_>,
    config: &Descriptor,
    layers: Vec<(Descriptor, LayerCompression)>,
    staging: &Path,
) -> Result<(Written, PathBuf)> {
    let downloads = job.downloads;
    let blobs = staging.join(STAGED_BLOBS);
    let out = staging.join("out");
    let rootfs = if output.bundle {
        out.join("rootfs")
    } else {
        out.clone()
    };
    std::fs::create_dir_all(&rootfs).map_err(|source| Error::Io {
        path: rootfs.clone(),
        source,
    })?;
    // Blobs go to the cache when there is one (kept, so synced like any output), else to
    // staging files deleted after use (not synced).
    let blobs = downloads.cache.is_none().then_some(blobs);
    let sync = downloads.sync && downloads.cache.is_some();
    // One tap per distinct layer blob; a blob listed twice is downloaded once.
    let mut taps: HashMap<Digest, Arc<BlobTap>> = HashMap::new();
    let mut list = Vec::new();
    for (layer, _) in &layers {
        if !taps.contains_key(&layer.digest) {
            taps.insert(layer.digest.clone(), Arc::new(BlobTap::default()));
            list.push((layer.clone(), BlobKind::Layer));
        }
    }
    let fetch_layers = || {
        let blobs_dir = blobs.clone();
        let downloads: Downloads = downloads.clone();
        let taps = taps.clone();
        tokio::spawn(async move {
            downloads
                .tapped(list, blobs_dir.as_deref(), &taps, sync)
                .await
        })
    };
    // The config's diff_ids are needed before any layer can be checked, not before it can be
    // downloaded: the layers start with the config (fetching it alone first costs a round trip
    // before the first layer byte), unless an explicit `--platform` the config may refuse asks
    // for it first, before any layer, as the layout output does. One download at a time
    // (`--jobs 1`) means the config first too, and so does a config that is also a layer.
    let config_first = matches!(job.platform, PlatformChoice::One(_))
        || downloads.jobs <= 1
        || taps.contains_key(&config.digest);
    let read_config = read_config(job, config, blobs.as_deref(), sync, layers.len());
    let (image_config, fetching) = if config_first {
        let image_config = read_config.await?;
        (image_config, fetch_layers())
    } else {
        let fetching = fetch_layers();
        match read_config.await {
            Ok(image_config) => (image_config, fetching),
            Err(e) => {
                fetching.abort();
                let _ = fetching.await;
                return Err(e);
            }
        }
    };
    let ConfigRead {
        mut transferred,
        bytes: config_bytes,
        diff_ids,
        platform,
    } = image_config;
    let mut applying = None;
    let mut applied = apply_in_order(
        &layers,
        &diff_ids,
        &taps,
        (&rootfs, staging),
        downloads,
        output.limits,
        &mut applying,
    )
    .await;
    if let Err(e) = applied {
        // A corrupt blob can break its layer's decompression before its download has hashed
        // the last byte and found the digest wrong. That download runs to its end on its own
        // (its bytes go to a file, not through the applier), so wait for it: the report then
        // names the cause, however loaded the machine is. The downloads' own speed limit and
        // timeouts bound the wait; the deadline is only a backstop.
        let layer_tap = applying.as_ref().and_then(|digest| taps.get(digest));
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(300);
        while !taps.values().any(|tap| tap.failed())
            && layer_tap.is_some_and(|tap| !tap.ended())
            && std::time::Instant::now() < deadline
        {
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        if !taps.values().any(|tap| tap.failed()) {
            // The layer itself was refused: stop the downloads and report why.
            fetching.abort();
            let _ = fetching.await;
            return Err(e);
        }
        // A download failed: its error (reported first, below) explains the apply error.
        applied = Err(e);
    }
    match (applied, fetching.await) {
        (Ok(()), Ok(Ok(layers))) => transferred += layers,
        // A download error explains an apply loop that stopped waiting; report it first.
        (_, Ok(Err(e))) | (Err(e), _) => return Err(e),
        (Ok(()), Err(join)) => return Err(Internal::join("layer applier", join).into()),
    }
    if output.bundle {
        let image_config: crate::rootfs::ImageConfig = serde_json::from_slice(&config_bytes)
            .map_err(|e| {
                Error::Unsupported(format!("image config {} is not valid: {e}", config.digest))
            })?;
        let rootless = ApplyOptions::default().rootless;
        let spec = crate::rootfs::runtime_config(&image_config, &rootfs, rootless)?;
        let bytes = serde_json::to_vec_pretty(&spec)
            .map_err(|e| Error::Unsupported(format!("runtime config: {e}")))?;
        layout::write_atomic(&out.join("config.json"), &bytes)?;
    }
    Ok((
        Written {
            transferred,
            platform,
        },
        out,
    ))
}

/// What applying the layers needs from the image config.
struct ConfigRead {
    /// The config's download.
    transferred: Transfer,
    /// Its bytes (a bundle's runtime config is made from them).
    bytes: Vec<u8>,
    /// One per layer, in order.
    diff_ids: Vec<Digest>,
    /// The platform it names, if any.
    platform: Option<String>,
}

/// Download the image config and read its diff_ids and platform, held to the platform asked
/// for and to the number of layers.
async fn read_config(
    job: &Job<'_>,
    config: &Descriptor,
    blobs: Option<&Path>,
    sync: bool,
    layers: usize,
) -> Result<ConfigRead> {
    let (resolved, downloads) = (job.resolved, job.downloads);
    let transferred = downloads
        .tapped(
            vec![(config.clone(), BlobKind::Config)],
            blobs,
            &HashMap::new(),
            sync,
        )
        .await?;
    let config_path = downloads.blob_file(blobs, &config.digest);
    let config_bytes = std::fs::read(&config_path).map_err(|source| Error::Io {
        path: config_path.clone(),
        source,
    })?;
    let summary: ImageConfigSummary = serde_json::from_slice(&config_bytes).map_err(|e| {
        Error::Unsupported(format!("image config {} is not valid: {e}", config.digest))
    })?;
    check_single_platform(
        resolved,
        job.platform,
        &summary,
        downloads.reporter.as_ref(),
    )?;
    let platform = summary.platform().map(|p| p.to_string());
    let diff_ids = summary.rootfs.map(|r| r.diff_ids).unwrap_or_default();
    if diff_ids.len() != layers {
        return Err(Error::Unsupported(format!(
            "image config {} lists {} diff_ids for {layers} layers",
            config.digest,
            diff_ids.len(),
        )));
    }
    Ok(ConfigRead {
        transferred,
        bytes: config_bytes,
        diff_ids,
        platform,
    })
}

/// How many layers inflate ahead of the one being applied: as configured, else the cores
/// left over by the applier and the current layer's own inflater.
fn inflate_ahead(configured: Option<usize>) -> usize {
    if let Some(ahead) = configured {
        return ahead;
    }
    let cores = std::thread::available_parallelism().map_or(1, usize::from);
    (cores - 1).min(MAX_INFLATE_AHEAD)
}

/// An upper bound on [`inflate_ahead`]: each layer inflated ahead holds a thread, about 1 MiB
/// of memory and up to 512 MiB of spill file.
const MAX_INFLATE_AHEAD: usize = 8;

/// Apply the layers strictly in order. Each layer inflates on a thread of its own, started up
/// to [`inflate_ahead`] layers before its turn, so later layers decompress on the other cores
/// while the applier works (their output waits in memory or in a spill file in `staging`).
/// Every check stays where it was: a layer's bytes reach the applier only through its blob
/// tap (which fails unless the blob's digest verified) and its diff_id is checked after its
/// last entry; a failure discards the whole staging tree.
async fn apply_in_order(
    layers: &[(Descriptor, LayerCompression)],
    diff_ids: &[Digest],
    taps: &HashMap<Digest, Arc<BlobTap>>,
    (rootfs, staging): (&Path, &Path),
    downloads: &Downloads,
    limits: LayerLimits,
    applying: &mut Option<Digest>,
) -> Result<()> {
    let (cancel, reporter) = (&downloads.cancel, &downloads.reporter);
    let apply_options = ApplyOptions {
        max_uncompressed_bytes: limits.max_uncompressed_bytes,
        max_entries: limits.max_entries,
        spill_dir: Some(staging.to_path_buf()),
        // The tree gets one `syncfs` at the end: start on the large files now. Without it,
        // still start their writeback, so the kernel does not throttle the writes later.
        early_writeback: if downloads.sync {
            EarlyWriteback::Durable
        } else {
            EarlyWriteback::Start
        },
        ..ApplyOptions::default()
    };
    let mut applier = Some(Applier::new(rootfs, apply_options)?);
    // One spill area for every layer: a spill file a layer is done with serves the next.
    // Dropped (its files closed) when this returns, before the tree is synced.
    let spill = SpillArea::new(staging.to_path_buf());
    let ahead = inflate_ahead(limits.inflate_ahead);
    let mut inflating: VecDeque<Inflating> = VecDeque::new();
    let mut warned = 0;
    for (index, ((layer, _), diff_id)) in layers.iter().zip(diff_ids).enumerate() {
        *applying = Some(layer.digest.clone());
        let tap = taps
            .get(&layer.digest)
            .ok_or(Internal::Broken("a layer without a download"))?;
        cancel.check()?;
        let mut current = applier
            .take()
            .ok_or(Internal::Broken("the applier was not handed back"))?;
        // Start the inflaters of this layer and of the next `ahead` ones. Each starts as soon
        // as its layer's first bytes arrive; see the module docs.
        let limit = current.max_uncompressed_bytes();
        for (next, (later, compression)) in layers
            .iter()
            .enumerate()
            .take(index + ahead + 1)
            .skip(index + inflating.len())
        {
            let later_tap = taps
                .get(&later.digest)
                .ok_or(Internal::Broken("a layer without a download"))?;
            let reader = StoppableReader::new(later_tap.reader(), cancel.clone());
            let started = Inflating::start(
                reader,
                *compression,
                diff_ids[next].algorithm(),
                limit,
                Some(spill.clone()),
            )
            .map_err(|source| Error::Io {
                path: staging.to_path_buf(),
                source,
            })?;
            inflating.push_back(started);
        }
        let stream = inflating
            .pop_front()
            .ok_or(Internal::Broken("a layer without an inflater"))?;
        let diff_id = diff_id.clone();
        let (tap, start_reporter, digest, count) = (
            Arc::clone(tap),
            Arc::clone(reporter),
            layer.digest.clone(),
            layers.len(),
        );
        let (returned, result) = tokio::task::spawn_blocking(move || {
            // Announced once the layer's download began, so `layer_apply_start` follows
            // its `blob_start` (the download may still wait for a `--jobs` slot).
            if tap.wait_started() {
                start_reporter.on_layer_apply_start(&digest, index, count);
            }
            let result = current
                .apply_inflating(stream, &diff_id)
                .map_err(Error::from);
            (current, result)
        })
        .await
        .map_err(|e| Internal::join("layer applier", e))?;
        result?;
        for warning in &returned.warnings()[warned..] {
            reporter.on_warning(warning);
        }
        warned = returned.warnings().len();
        applier = Some(returned);
        reporter.on_layer_applied(&layer.digest, index, layers.len());
    }
    *applying = None;
    Ok(())
}

/// Where a pull without a cache downloads its blobs, in the staging directory.
const STAGED_BLOBS: &str = "blobs";

/// Finish the tree `out` built in `staging`: delete the staged blobs (a pull without a cache),
/// then give a durable pull its one `syncfs`. Deleted first, the blobs' dirty pages are dropped
/// unwritten; left to the removal of the staging directory after the sync, they were written to
/// disk first and then freed (big: the `syncfs` took 0.34 s instead of about 0.05 s, and the
/// deletes 0.15 s after it). A blob that cannot be deleted here is left to that removal.
fn finish_tree(staging: &Path, out: &Path, sync: bool) -> Result<()> {
    let blobs = staging.join(STAGED_BLOBS);
    match std::fs::remove_dir_all(&blobs) {
        Ok(()) => {}
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
        Err(error) => {
            tracing::debug!(path = %blobs.display(), %error, "staged blobs left for later")
        }
    }
    if sync {
        sync_filesystem(out)?;
    }
    Ok(())
}

/// One `syncfs` for the whole tree instead of an fsync per file.
fn sync_filesystem(tree: &Path) -> Result<()> {
    let io = |source: std::io::Error| Error::Io {
        path: tree.to_path_buf(),
        source,
    };
    let dir = std::fs::File::open(tree).map_err(io)?;
    rustix::fs::syncfs(&dir).map_err(|e| io(e.into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finishing_a_tree_deletes_the_staged_blobs_first_and_keeps_the_tree() {
        let staging = tempfile::tempdir().unwrap();
        let blob = staging.path().join(STAGED_BLOBS).join("sha256").join("ab");
        std::fs::create_dir_all(blob.parent().unwrap()).unwrap();
        std::fs::write(&blob, b"layer").unwrap();
        let out = staging.path().join("out");
        std::fs::create_dir_all(out.join("etc")).unwrap();
        std::fs::write(out.join("etc/hostname"), b"box").unwrap();
        finish_tree(staging.path(), &out, true).unwrap();
        assert!(!staging.path().join(STAGED_BLOBS).exists());
        assert_eq!(std::fs::read(out.join("etc/hostname")).unwrap(), b"box");
        // A pull with a cache stages no blob: nothing to delete, and no error.
        finish_tree(staging.path(), &out, false).unwrap();
        assert_eq!(std::fs::read(out.join("etc/hostname")).unwrap(), b"box");
        // A durable pull whose tree cannot be synced fails.
        let gone = staging.path().join("gone");
        assert!(finish_tree(staging.path(), &gone, true).is_err());
    }
}
