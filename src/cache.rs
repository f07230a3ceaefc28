//! The shared blob cache: verified blobs and manifests by digest, shared by every pull on the
//! machine, so a second pull of an image (or of one sharing layers) downloads only what is new.
//!
//! ```text
//! <root>/blobs/<alg>/<hex>          verified content, read-only, renamed in whole
//! <root>/partial/<alg>/<hex>        a download in progress (or interrupted: resumed next time)
//! <root>/partial/<alg>/<hex>.lock   held (flock) by the process downloading that blob
//! <root>/staging/<random>           names the staging directory of a running pull
//! ```
//!
//! Only verified bytes are ever renamed into `blobs/`, so a reader never sees a torn file. The
//! partial file has a fixed name, so a pull killed with `kill -9` leaves it for the next run,
//! which re-hashes the prefix and asks the registry for the rest. Two processes that want the
//! same blob serialise on its lock file: the second finds the blob complete when it gets the
//! lock. Files reach outputs by reflink, else hardlink (cache files are read-only, so an
//! in-place edit of a hardlinked copy is refused), else copy. Pulls list their staging
//! directories under `staging/`, so that a staging directory whose pull died (its `flock` is
//! free) is removed by `prune` and by the next pull, wherever its destination was.

use std::fs::File;
use std::io::{Read as _, Write as _};
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use crate::digest::Digest;
use crate::fsutil::{same_file, try_lock_exclusive};
use crate::registry::MANIFEST_LIMIT;
use crate::source::{BlobBody, FetchedManifest, ImageSource};

/// Why the cache could not be used.
#[derive(Debug, thiserror::Error)]
#[error("{action} {path}: {source}")]
pub struct CacheError {
    action: &'static str,
    path: PathBuf,
    #[source]
    source: std::io::Error,
}

fn err(action: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> CacheError {
    let path = path.to_path_buf();
    move |source| CacheError {
        action,
        path,
        source,
    }
}

/// How a blob reached an output.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Placement {
    /// It was already there.
    Present,
    /// A copy-on-write clone (`FICLONE`).
    Reflink,
    /// A second name for the cache's file.
    Hardlink,
    /// A byte copy.
    Copy,
}

/// A blob cache directory.
#[derive(Debug, Clone)]
pub struct BlobCache {
    root: PathBuf,
}

/// The exclusive right to download one blob into the cache; released on drop (or when the
/// process dies, whatever way it dies).
#[derive(Debug)]
pub struct BlobLock {
    _file: File,
}

impl BlobCache {
    /// The default location: `$ACRPULL_CACHE_DIR`, else `$XDG_CACHE_HOME/acrpull`, else
    /// `~/.cache/acrpull`, with the variables looked up by `var` (the binary passes
    /// `std::env::var_os`; the library reads no environment itself). Empty values count as
    /// unset.
    pub fn default_dir(var: impl Fn(&str) -> Option<std::ffi::OsString>) -> Option<PathBuf> {
        let non_empty = |name: &str| var(name).filter(|v| !v.is_empty());
        if let Some(dir) = non_empty("ACRPULL_CACHE_DIR") {
            return Some(PathBuf::from(dir));
        }
        if let Some(dir) = non_empty("XDG_CACHE_HOME") {
            return Some(PathBuf::from(dir).join("acrpull"));
        }
        non_empty("HOME").map(|home| PathBuf::from(home).join(".cache").join("acrpull"))
    }

    /// Open (creating if needed) the cache at `root`.
    pub fn open(root: &Path) -> Result<Self, CacheError> {
        for dir in ["blobs", "partial"] {
            let path = root.join(dir);
            std::fs::create_dir_all(&path).map_err(err("creating", &path))?;
        }
        // A cache we cannot write is no cache: find out now, not in the middle of a pull.
        let probe = root.join("partial");
        tempfile::tempfile_in(&probe).map_err(err("writing in", &probe))?;
        Ok(Self {
            root: root.to_path_buf(),
        })
    }

    /// The cache directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Where a verified blob lives.
    pub fn blob_path(&self, digest: &Digest) -> PathBuf {
        self.root
            .join("blobs")
            .join(digest.algorithm().as_str())
            .join(digest.hex())
    }

    /// Where the download of a blob in progress lives (fixed, so that it can be resumed).
    pub fn partial_path(&self, digest: &Digest) -> PathBuf {
        self.root
            .join("partial")
            .join(digest.algorithm().as_str())
            .join(digest.hex())
    }

    /// Whether the blob is held, with the expected size.
    pub fn contains(&self, digest: &Digest, size: u64) -> bool {
        std::fs::metadata(self.blob_path(digest)).is_ok_and(|m| m.is_file() && m.len() == size)
    }

    /// Open a held blob for reading, marking it used (for `prune`).
    pub fn open_blob(&self, digest: &Digest, size: u64) -> Option<File> {
        let file = File::open(self.blob_path(digest)).ok()?;
        if file.metadata().ok()?.len() != size {
            return None;
        }
        mark_used(&file);
        Some(file)
    }

    /// A small held blob (a manifest), checked against its digest on the way out.
    pub fn read_small(&self, digest: &Digest, limit: u64) -> Option<Vec<u8>> {
        let file = File::open(self.blob_path(digest)).ok()?;
        let mut bytes = Vec::new();
        file.take(limit + 1).read_to_end(&mut bytes).ok()?;
        if bytes.len() as u64 > limit || !digest.matches(&bytes) {
            return None;
        }
        Some(bytes)
    }

    /// Store a small blob (a manifest) whose digest the caller verified.
    pub fn put_small(&self, digest: &Digest, bytes: &[u8]) -> Result<(), CacheError> {
        let path = self.blob_path(digest);
        if path.is_file() {
            return Ok(());
        }
        let dir = path.parent().unwrap_or(&self.root);
        std::fs::create_dir_all(dir).map_err(err("creating", dir))?;
        let mut file = tempfile::Builder::new()
            .prefix(".tmp-")
            .tempfile_in(dir)
            .map_err(err("writing in", dir))?;
        file.write_all(bytes).map_err(err("writing in", dir))?;
        read_only(file.as_file()).map_err(err("writing in", dir))?;
        file.persist(&path)
            .map_err(|e| CacheError {
                action: "storing",
                path: path.clone(),
                source: e.error,
            })
            .map(drop)
    }

    /// Take the download lock of a blob, waiting for another process that holds it. Blocks:
    /// call it from a blocking thread.
    pub fn lock(&self, digest: &Digest) -> Result<BlobLock, CacheError> {
        loop {
            if let Some(lock) = self.take_lock(digest, true)? {
                return Ok(lock);
            }
        }
    }

    /// The download lock of a blob if nobody holds it now, without waiting.
    pub fn try_lock(&self, digest: &Digest) -> Result<Option<BlobLock>, CacheError> {
        self.take_lock(digest, false)
    }

    fn take_lock(&self, digest: &Digest, wait: bool) -> Result<Option<BlobLock>, CacheError> {
        let partial = self.partial_path(digest);
        let dir = partial.parent().unwrap_or(&self.root);
        std::fs::create_dir_all(dir).map_err(err("creating", dir))?;
        let path = lock_path(&partial);
        loop {
            let file = File::options()
                .create(true)
                .truncate(false)
                .write(true)
                .open(&path)
                .map_err(err("opening", &path))?;
            if wait {
                crate::blocking::lock_exclusive_waiting(
                    &file,
                    &format!("the cache entry of {digest}"),
                    crate::blocking::LOCK_WAIT_LIMIT,
                )
                .map_err(err("locking", &path))?;
            } else if !try_lock_exclusive(&file) {
                return Ok(None);
            }
            // A prune may have removed the lock file while we waited on it: then the lock we
            // hold is on a file nobody else will open. Lock the file at the path instead.
            if same_file(&file, &path) {
                return Ok(Some(BlobLock { _file: file }));
            }
        }
    }

    /// Move a verified partial download into the cache (the caller holds its lock).
    pub fn commit(&self, digest: &Digest) -> Result<PathBuf, CacheError> {
        let partial = self.partial_path(digest);
        let path = self.blob_path(digest);
        let dir = path.parent().unwrap_or(&self.root);
        std::fs::create_dir_all(dir).map_err(err("creating", dir))?;
        std::fs::set_permissions(&partial, std::fs::Permissions::from_mode(0o444))
            .map_err(err("storing", &partial))?;
        std::fs::rename(&partial, &path).map_err(err("storing", &path))?;
        Ok(path)
    }

    /// Give `destination` the content of a held blob: reflink, else hardlink, else copy (to a
    /// temporary name, synced if `sync`, then renamed). `NotFound` when the blob is gone (a
    /// concurrent prune): download it instead.
    pub fn place(
        &self,
        digest: &Digest,
        destination: &Path,
        sync: bool,
    ) -> std::io::Result<Placement> {
        if destination.is_file() {
            return Ok(Placement::Present);
        }
        let source_path = self.blob_path(digest);
        let source = File::open(&source_path)?;
        mark_used(&source);
        let dir = destination.parent().unwrap_or(Path::new("."));
        std::fs::create_dir_all(dir)?;
        let temp = tempfile::Builder::new().prefix(".tmp-").tempfile_in(dir)?;
        if rustix::fs::ioctl_ficlone(temp.as_file(), &source).is_ok() {
            finish_copy(temp, destination, sync)?;
            return Ok(Placement::Reflink);
        }
        match std::fs::hard_link(&source_path, destination) {
            Ok(()) => return Ok(Placement::Hardlink),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                return Ok(Placement::Present)
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(e),
            Err(_) => {}
        }
        let mut from = &source;
        std::io::copy(&mut from, &mut temp.as_file())?;
        finish_copy(temp, destination, sync)?;
        Ok(Placement::Copy)
    }

    /// Drop the partial download of a blob unless another process is downloading it (after a
    /// disk filled up: its bytes would keep the disk full). Whether it was dropped.
    pub fn discard_partial(&self, digest: &Digest) -> bool {
        let partial = self.partial_path(digest);
        if !partial.exists() {
            return false;
        }
        let Ok(lock) = File::options()
            .write(true)
            .create(true)
            .truncate(false)
            .open(lock_path(&partial))
        else {
            return false;
        };
        if !try_lock_exclusive(&lock) {
            return false;
        }
        let removed = std::fs::remove_file(&partial).is_ok();
        let _ = std::fs::remove_file(lock_path(&partial));
        removed
    }

    /// Record `staging` in this cache, so that it is removed if this process dies.
    pub fn register(&self, staging: crate::layout::Staging) -> crate::layout::Staging {
        let registration = self.register_staging(staging.path());
        staging.with_registration(registration)
    }

    /// Record the staging directory `path` of a running pull (locked by it), so that it is
    /// removed if the pull dies. Returns the record, which the pull removes when done; `None`
    /// if it could not be written (best effort).
    pub fn register_staging(&self, path: &Path) -> Option<PathBuf> {
        use std::os::unix::ffi::OsStrExt as _;
        let dir = self.root.join("staging");
        std::fs::create_dir_all(&dir).ok()?;
        let absolute = std::path::absolute(path).ok()?;
        let mut file = tempfile::Builder::new()
            .prefix(".tmp-")
            .tempfile_in(&dir)
            .ok()?;
        file.write_all(absolute.as_os_str().as_bytes()).ok()?;
        let record = dir.join(format!("{:016x}", fastrand::u64(..)));
        file.persist_noclobber(&record).ok()?;
        Some(record)
    }

    /// Remove the staging directories of pulls that died (their lock is free), wherever they
    /// are, and the records of those that are gone. Returns how many directories it removed.
    pub fn remove_abandoned_staging(&self) -> u64 {
        use std::os::unix::ffi::OsStrExt as _;
        let Ok(records) = std::fs::read_dir(self.root.join("staging")) else {
            return 0;
        };
        let mut removed = 0;
        for record in records.flatten() {
            if record.file_name().to_string_lossy().starts_with(".tmp-") {
                continue;
            }
            let record = record.path();
            let Ok(bytes) = std::fs::read(&record) else {
                continue;
            };
            let staging = PathBuf::from(std::ffi::OsStr::from_bytes(&bytes));
            // Only ever a staging directory of ours, whatever the record says.
            let ours = staging
                .file_name()
                .is_some_and(|name| name.to_string_lossy().contains(".acrpull-"));
            if !ours || std::fs::symlink_metadata(&staging).is_err() {
                let _ = std::fs::remove_file(&record);
                continue;
            }
            if crate::layout::remove_if_abandoned(&staging) {
                removed += 1;
                let _ = std::fs::remove_file(&record);
            }
        }
        removed
    }

    /// What the cache holds.
    pub fn usage(&self) -> Usage {
        let mut usage = Usage::default();
        for entry in files_under(&self.root.join("blobs")) {
            usage.blobs += 1;
            usage.bytes += entry.size;
        }
        for entry in files_under(&self.root.join("partial")) {
            if !is_lock(&entry.path) {
                usage.partial += 1;
                usage.partial_bytes += entry.size;
            }
        }
        usage
    }

    /// Trim the cache. Incomplete downloads nobody is working on, and temporary files, always
    /// go; blobs go when `policy` says so (least recently used first). Safe while other pulls
    /// run: a blob removed under a pull is downloaded again by it.
    pub fn prune(&self, policy: &PrunePolicy) -> Usage {
        let mut removed = Usage::default();
        let now = SystemTime::now();
        // Partial downloads whose lock is free (nobody downloading them now).
        for entry in files_under(&self.root.join("partial")) {
            if is_lock(&entry.path) {
                continue;
            }
            let lock = File::options()
                .write(true)
                .create(true)
                .truncate(false)
                .open(lock_path(&entry.path));
            let Ok(lock) = lock else { continue };
            if !try_lock_exclusive(&lock) {
                continue;
            }
            if std::fs::remove_file(&entry.path).is_ok() {
                removed.partial += 1;
                removed.partial_bytes += entry.size;
            }
            let _ = std::fs::remove_file(lock_path(&entry.path));
        }
        // Locks left without a partial file (the download finished or was pruned).
        for entry in files_under(&self.root.join("partial")) {
            let partial = entry.path.with_extension("");
            if is_lock(&entry.path) && !partial.exists() {
                if let Ok(lock) = File::options().write(true).open(&entry.path) {
                    if try_lock_exclusive(&lock) {
                        let _ = std::fs::remove_file(&entry.path);
                    }
                }
            }
        }
        let mut blobs: Vec<FileEntry> = files_under(&self.root.join("blobs"))
            .into_iter()
            .filter(|entry| {
                let temporary = entry
                    .path
                    .file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with(".tmp-"));
                if temporary {
                    let stale = now
                        .duration_since(entry.used)
                        .is_ok_and(|age| age > Duration::from_secs(3600));
                    if stale {
                        let _ = std::fs::remove_file(&entry.path);
                    }
                }
                !temporary
            })
            .collect();
        // Least recently used first.
        blobs.sort_by_key(|entry| entry.used);
        let mut total: u64 = blobs.iter().map(|entry| entry.size).sum();
        for entry in blobs {
            let too_old = policy
                .unused_for
                .is_some_and(|limit| now.duration_since(entry.used).is_ok_and(|age| age > limit));
            let too_big = policy.max_bytes.is_some_and(|limit| total > limit);
            if (policy.all || too_old || too_big) && std::fs::remove_file(&entry.path).is_ok() {
                removed.blobs += 1;
                removed.bytes += entry.size;
                total -= entry.size;
            }
        }
        removed
    }
}

/// What `prune` removes besides incomplete downloads.
#[derive(Debug, Clone, Default)]
pub struct PrunePolicy {
    /// Every blob.
    pub all: bool,
    /// Blobs not used for this long.
    pub unused_for: Option<Duration>,
    /// Least recently used blobs until the cache holds at most this many bytes.
    pub max_bytes: Option<u64>,
}

/// Counts of cache content (what is held, or what a prune removed).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Usage {
    /// Complete blobs.
    pub blobs: u64,
    /// Their bytes.
    pub bytes: u64,
    /// Incomplete downloads.
    pub partial: u64,
    /// Their bytes.
    pub partial_bytes: u64,
}

fn lock_path(partial: &Path) -> PathBuf {
    let mut name = partial.as_os_str().to_owned();
    name.push(".lock");
    PathBuf::from(name)
}

fn is_lock(path: &Path) -> bool {
    path.extension().is_some_and(|e| e == "lock")
}

/// Record a use: `prune` removes the least recently used blobs first. Best effort (a cache
/// shared read-only still works).
fn mark_used(file: &File) {
    let _ = file.set_modified(SystemTime::now());
}

fn read_only(file: &File) -> std::io::Result<()> {
    file.set_permissions(std::fs::Permissions::from_mode(0o444))
}

fn finish_copy(
    temp: tempfile::NamedTempFile,
    destination: &Path,
    sync: bool,
) -> std::io::Result<()> {
    if sync {
        temp.as_file().sync_all()?;
    }
    read_only(temp.as_file())?;
    temp.persist(destination).map_err(|e| e.error)?;
    Ok(())
}

struct FileEntry {
    path: PathBuf,
    size: u64,
    used: SystemTime,
}

/// Regular files one level below each algorithm directory of `dir`.
fn files_under(dir: &Path) -> Vec<FileEntry> {
    let mut out = Vec::new();
    let Ok(algorithms) = std::fs::read_dir(dir) else {
        return out;
    };
    for algorithm in algorithms.flatten() {
        let Ok(files) = std::fs::read_dir(algorithm.path()) else {
            continue;
        };
        for file in files.flatten() {
            let Ok(meta) = file.metadata() else { continue };
            if meta.is_file() {
                out.push(FileEntry {
                    path: file.path(),
                    size: meta.len(),
                    used: meta.modified().unwrap_or(SystemTime::UNIX_EPOCH),
                });
            }
        }
    }
    out
}

/// An image source whose manifests by digest come from the cache when it holds them, and
/// whose manifests (by tag or digest) are stored in it once fetched and verified. With the
/// blobs cached too, a re-pull of an unchanged tag makes one manifest request.
pub struct CachedManifests {
    inner: std::sync::Arc<dyn ImageSource>,
    cache: BlobCache,
}

impl CachedManifests {
    /// Wrap `inner`.
    pub fn new(inner: std::sync::Arc<dyn ImageSource>, cache: BlobCache) -> Self {
        Self { inner, cache }
    }
}

#[async_trait::async_trait]
impl ImageSource for CachedManifests {
    fn describe(&self) -> String {
        self.inner.describe()
    }

    async fn manifest(&self, reference: &str) -> crate::registry::Result<FetchedManifest> {
        if let Ok(digest) = reference.parse::<Digest>() {
            if let Some(bytes) = self.cache.read_small(&digest, MANIFEST_LIMIT) {
                let cached =
                    FetchedManifest::verify(bytes.into(), None, Some(&digest), None, "cache");
                if let Ok(manifest) = cached {
                    tracing::debug!(%digest, "manifest from the cache");
                    return Ok(manifest);
                }
            }
        }
        let manifest = self.inner.manifest(reference).await?;
        if let Err(e) = self.cache.put_small(&manifest.digest, &manifest.bytes) {
            tracing::debug!(error = %e, "could not cache a manifest");
        }
        Ok(manifest)
    }

    async fn open_blob(
        &self,
        digest: &Digest,
        offset: u64,
        end: Option<u64>,
    ) -> crate::registry::Result<BlobBody> {
        self.inner.open_blob(digest, offset, end).await
    }

    fn prefers_parallel_ranges(&self) -> bool {
        self.inner.prefers_parallel_ranges()
    }

    fn served_by(&self) -> std::collections::BTreeMap<String, String> {
        self.inner.served_by()
    }

    async fn referrers_page(
        &self,
        subject: &Digest,
        artifact_type: Option<&str>,
        page: Option<&url::Url>,
    ) -> crate::registry::Result<crate::registry::referrers::ReferrersPage> {
        // Referrers lists change; they are never cached.
        self.inner
            .referrers_page(subject, artifact_type, page)
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cache() -> (tempfile::TempDir, BlobCache) {
        let dir = tempfile::tempdir().unwrap();
        let cache = BlobCache::open(&dir.path().join("cache")).unwrap();
        (dir, cache)
    }

    fn put(cache: &BlobCache, bytes: &[u8]) -> Digest {
        let digest = Digest::sha256_of(bytes);
        let _lock = cache.lock(&digest).unwrap();
        std::fs::write(cache.partial_path(&digest), bytes).unwrap();
        cache.commit(&digest).unwrap();
        digest
    }

    #[test]
    fn default_dir_reads_the_variables_it_is_given() {
        fn vars<'a>(
            pairs: &'a [(&'a str, &'a str)],
        ) -> impl Fn(&str) -> Option<std::ffi::OsString> + 'a {
            move |name| {
                pairs
                    .iter()
                    .find(|(key, _)| *key == name)
                    .map(|(_, value)| std::ffi::OsString::from(value))
            }
        }
        let all = [
            ("ACRPULL_CACHE_DIR", "/c"),
            ("XDG_CACHE_HOME", "/x"),
            ("HOME", "/h"),
        ];
        assert_eq!(BlobCache::default_dir(vars(&all)), Some("/c".into()));
        let no_acrpull = [
            ("ACRPULL_CACHE_DIR", ""),
            ("XDG_CACHE_HOME", "/x"),
            ("HOME", "/h"),
        ];
        assert_eq!(
            BlobCache::default_dir(vars(&no_acrpull)),
            Some("/x/acrpull".into())
        );
        assert_eq!(
            BlobCache::default_dir(vars(&[("HOME", "/h")])),
            Some("/h/.cache/acrpull".into())
        );
        assert_eq!(BlobCache::default_dir(vars(&[])), None);
    }

    #[test]
    fn committed_blobs_are_read_only_and_placed_whole() {
        let (dir, cache) = cache();
        let digest = put(&cache, b"layer bytes");
        assert!(cache.contains(&digest, 11));
        assert!(!cache.contains(&digest, 12));
        let mode = std::fs::metadata(cache.blob_path(&digest))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o222, 0, "cache blobs are read-only");
        let out = dir.path().join("out/blobs/sha256/x");
        let how = cache.place(&digest, &out, false).unwrap();
        assert_ne!(how, Placement::Present);
        assert_eq!(std::fs::read(&out).unwrap(), b"layer bytes");
        assert_eq!(
            cache.place(&digest, &out, false).unwrap(),
            Placement::Present
        );
        assert!(!dir
            .path()
            .join("out/blobs/sha256")
            .read_dir()
            .unwrap()
            .any(|e| e
                .unwrap()
                .file_name()
                .to_string_lossy()
                .starts_with(".tmp-")));
    }

    #[test]
    fn placing_a_pruned_blob_says_not_found() {
        let (dir, cache) = cache();
        let digest = Digest::sha256_of(b"gone");
        let error = cache
            .place(&digest, &dir.path().join("out"), false)
            .unwrap_err();
        assert_eq!(error.kind(), std::io::ErrorKind::NotFound);
    }

    #[test]
    fn small_blobs_are_checked_on_the_way_out() {
        let (_dir, cache) = cache();
        let digest = Digest::sha256_of(b"{}");
        cache.put_small(&digest, b"{}").unwrap();
        assert_eq!(cache.read_small(&digest, 100).unwrap(), b"{}");
        assert!(cache.read_small(&digest, 1).is_none(), "over the limit");
        let other = Digest::sha256_of(b"[]");
        // A file that does not match its name is never served.
        std::fs::write(cache.blob_path(&other), b"{}").unwrap();
        assert!(cache.read_small(&other, 100).is_none());
    }

    #[test]
    fn a_second_locker_waits_for_the_first() {
        let (_dir, cache) = cache();
        let digest = Digest::sha256_of(b"contended");
        let first = cache.lock(&digest).unwrap();
        let (sender, receiver) = std::sync::mpsc::channel();
        let waiter = {
            let cache = cache.clone();
            let digest = digest.clone();
            std::thread::spawn(move || {
                let _second = cache.lock(&digest).unwrap();
                sender.send(()).unwrap();
            })
        };
        assert!(receiver.recv_timeout(Duration::from_millis(200)).is_err());
        drop(first);
        receiver.recv_timeout(Duration::from_secs(5)).unwrap();
        waiter.join().unwrap();
    }

    #[test]
    fn prune_keeps_locked_partials_and_trims_least_recently_used() {
        let (_dir, cache) = cache();
        let old = put(&cache, &[1u8; 1000]);
        let new = put(&cache, &[2u8; 1000]);
        let past = SystemTime::now() - Duration::from_secs(3 * 86_400);
        File::open(cache.blob_path(&old))
            .unwrap()
            .set_modified(past)
            .unwrap();
        let busy = Digest::sha256_of(b"busy");
        let idle = Digest::sha256_of(b"idle");
        let _busy_lock = cache.lock(&busy).unwrap();
        std::fs::write(cache.partial_path(&busy), b"bu").unwrap();
        std::fs::write(cache.partial_path(&idle), b"id").unwrap();

        let removed = cache.prune(&PrunePolicy {
            max_bytes: Some(1500),
            ..PrunePolicy::default()
        });
        assert_eq!(
            removed,
            Usage {
                blobs: 1,
                bytes: 1000,
                partial: 1,
                partial_bytes: 2
            }
        );
        assert!(!cache.blob_path(&old).exists());
        assert!(cache.blob_path(&new).exists());
        assert!(
            cache.partial_path(&busy).exists(),
            "a download in progress stays"
        );
        assert!(!cache.partial_path(&idle).exists());

        let removed = cache.prune(&PrunePolicy {
            unused_for: Some(Duration::from_secs(86_400)),
            ..PrunePolicy::default()
        });
        assert_eq!(removed.blobs, 0, "recently used");
        let removed = cache.prune(&PrunePolicy {
            all: true,
            ..PrunePolicy::default()
        });
        assert_eq!(removed.blobs, 1);
        assert_eq!(cache.usage().blobs, 0);
    }
}
