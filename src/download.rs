//! The one scheduler that spawns downloads: every blob of a pull (or of one output) with
//! `jobs` at once, through the shared cache when there is one (taken from it, resumed in it,
//! placed from it), verified while it streams, shared with a reader through its tap.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::cache::BlobCache;
use crate::cancel::Cancel;
use crate::digest::Digest;
use crate::error::{Error, Internal, Result};
use crate::fetch::{BlobTap, FetchOptions};
use crate::layout;
use crate::manifest::Descriptor;
use crate::media_type;
use crate::referrers::Discovery;
use crate::registry::retry::RetryPolicy;
use crate::report::{BlobKind, Reporter};
use crate::resolve::Resolved;
use crate::source::ImageSource;

mod ahead;
pub use ahead::{fetch_marked, FetchedAhead, MarkedBlob};

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

/// After a disk filled up, drop the partial downloads of `blobs` from the cache: they would
/// keep the disk full. Downloads of this pull that were just stopped release their locks
/// within moments, so each lock is tried for a little while; a blob another process is
/// downloading keeps its partial file.
pub async fn discard_partials(cache: &BlobCache, blobs: &[(Descriptor, BlobKind)]) {
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

/// What every download of one pull shares: where blobs come from, how many at once, the
/// cache, the retry policy, the stop signal and the reporter. Outputs are handed this, not the
/// pull's options.
#[derive(Clone)]
pub struct Downloads {
    /// Where blobs come from.
    pub source: Arc<dyn ImageSource>,
    /// Blobs downloaded at once.
    pub jobs: usize,
    /// The shared blob cache, if any.
    pub cache: Option<BlobCache>,
    /// Retries of an interrupted download.
    pub retry: RetryPolicy,
    /// Sync each blob before its rename (outputs that are kept).
    pub sync: bool,
    /// Stops the downloads.
    pub cancel: Cancel,
    /// Told of every blob's progress.
    pub reporter: Arc<dyn Reporter>,
    /// Blobs downloaded into the cache ahead of this pull ([`fetch_marked`]): counted as
    /// downloaded when taken from it.
    pub fetched_ahead: Option<Arc<FetchedAhead>>,
}

impl Downloads {
    /// Download `blobs` into `dir` (layout-style paths) with `jobs` at once, skipping blobs
    /// already present. Each blob is synced (with `sync`) before it is renamed into place.
    pub async fn all(&self, blobs: Vec<(Descriptor, BlobKind)>, dir: &Path) -> Result<Transfer> {
        self.tapped(blobs, Some(dir), &HashMap::new(), self.sync)
            .await
    }

    /// Where a blob downloaded by [`Self::tapped`] can be read: in `dir` when given, else
    /// in the cache.
    pub fn blob_file(&self, dir: Option<&Path>, digest: &Digest) -> PathBuf {
        match (dir, &self.cache) {
            (None, Some(cache)) => cache.blob_path(digest),
            (dir, _) => layout::blob_path(dir.unwrap_or(Path::new(".")), digest),
        }
    }

    /// [`Self::all`], sharing each blob listed in `taps` with its readers while it downloads
    /// (already present blobs are handed over whole), so a consumer can start on a blob as soon
    /// as its first bytes arrive. With `sync` false, files are not synced (staging files that are
    /// deleted after use).
    ///
    /// With a cache, blobs it holds are not downloaded, and downloads go into it
    /// first (resumable across runs, one process per blob at a time); `dir` then receives a
    /// reflink, hardlink or copy, and may be `None` when the caller only reads through `taps`.
    pub async fn tapped(
        &self,
        blobs: Vec<(Descriptor, BlobKind)>,
        dir: Option<&Path>,
        taps: &HashMap<Digest, Arc<BlobTap>>,
        sync: bool,
    ) -> Result<Transfer> {
        let reporter = &self.reporter;
        let dir = match (dir, &self.cache) {
            (None, None) => {
                return Err(Internal::Broken("blobs need a directory or a cache").into())
            }
            (dir, _) => dir.map(Path::to_path_buf),
        };
        // Download slots are reserved below in list order, so blobs start in that order
        // (spawned tasks run in no particular order).
        let slots = crate::fetch::RankedPermits::new(self.jobs.max(1));
        // Blobs read as they arrive (a root filesystem's layers) are read in the list's order:
        // the earlier ones get the extra range connections first.
        let extra_ranges = crate::fetch::pull_range_connections(!taps.is_empty());
        let mut tasks = tokio::task::JoinSet::new();
        let mut total = Transfer::default();
        for (rank, (descriptor, kind)) in blobs.into_iter().enumerate() {
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
            let source = self.source.clone();
            let reporter = reporter.clone();
            let slot = slots.reserve(rank);
            let retry = self.retry.clone();
            let cache = self.cache.clone();
            let fetched_ahead = self.fetched_ahead.clone();
            let fetch_options = FetchOptions {
                sync,
                tap,
                extra_ranges: Some(extra_ranges.clone()),
                rank,
            };
            let foreign = ForeignLayer::of(&descriptor);
            tasks.spawn(async move {
                let result = async move {
                    let _slot = slot.granted().await;
                    let Some(cache) = cache else {
                        let Some(path) = path else {
                            return Err(
                                Internal::Broken("a blob with neither a cache nor a path").into()
                            );
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
                        fetched_ahead.as_deref(),
                    )
                    .await
                }
                .await;
                match (result, foreign) {
                    (
                        Err(Error::Registry(crate::registry::Error::NotFound {
                            kind: crate::registry::Missing::Blob,
                            ..
                        })),
                        Some(foreign),
                    ) => Err(foreign.missing()),
                    (result, _) => result,
                }
            });
        }
        let failure = loop {
            let joined = tokio::select! {
                joined = tasks.join_next() => joined,
                signal = self.cancel.cancelled() => break Error::Stopped(signal),
            };
            match joined {
                None => return Ok(total),
                Some(Ok(Ok(n))) => total += n,
                Some(Ok(Err(e))) => break e,
                Some(Err(e)) => break Internal::join("blob download", e).into(),
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

/// The cache's download lock of `digest`, taken by `take` ([`BlobCache::lock`], which waits,
/// or [`BlobCache::try_lock`]) on a blocking thread.
async fn cache_lock<T: Send + 'static>(
    cache: &BlobCache,
    digest: &Digest,
    take: fn(&BlobCache, &Digest) -> std::result::Result<T, crate::cache::CacheError>,
) -> Result<T> {
    let (cache, digest) = (cache.clone(), digest.clone());
    tokio::task::spawn_blocking(move || take(&cache, &digest))
        .await
        .map_err(|e| Internal::join("cache lock", e))?
        .map_err(Error::Cache)
}

/// One blob through the cache: taken from it when held; else downloaded into it under its lock
/// (another process downloading it makes us wait, then find it there), continuing a partial
/// download, and placed at `path`. A blob being fetched `ahead` is waited for, and counted as
/// downloaded when taken.
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
    ahead: Option<&FetchedAhead>,
) -> Result<Transfer> {
    let digest = &descriptor.digest;
    let tap = fetch_options.tap.as_ref();
    // A held blob that could not be placed names where it was going.
    let take_held = |file: std::io::Result<std::fs::File>| {
        let file = file.map_err(|source| Error::Io {
            path: path.map_or_else(|| cache.blob_path(digest), Path::to_path_buf),
            source,
        });
        let held = use_held(descriptor, kind, file, reporter, tap)?;
        Ok(match ahead.and_then(|ahead| ahead.take(digest)) {
            Some(downloaded) => Transfer {
                downloaded,
                reused: descriptor.size.saturating_sub(downloaded),
            },
            None => held,
        })
    };
    if let Some(ahead) = ahead {
        ahead.finished(digest).await;
    }
    if let Some(file) = place_from_cache(cache, descriptor, path, fetch_options.sync).await {
        return take_held(file);
    }
    let lock = cache_lock(cache, digest, BlobCache::lock).await?;
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
