//! Blobs downloaded ahead of the pull that needs them: `pull -f` fetches the next images'
//! blobs into the cache while one image is written, and each pull waits here, in the process,
//! for a blob still on its way instead of downloading it a second time.

use std::collections::HashMap;
use std::sync::Arc;

use crate::cache::BlobCache;
use crate::digest::Digest;
use crate::error::{Error, Result};
use crate::fetch::FetchOptions;
use crate::manifest::Descriptor;
use crate::registry::retry::RetryPolicy;
use crate::source::ImageSource;

/// Blobs this run downloads into the cache ahead of the pull that needs them ([`fetch_marked`]:
/// `pull -f` fetches the next images' blobs while one is written). A pull that needs a blob
/// being fetched ahead waits for it here (in the process, not on the cache's file lock, which
/// is polled) and takes it from the cache; it then counts the bytes as downloaded, once,
/// instead of as reused, so that the summaries of a list add up to what crossed the network.
#[derive(Debug, Default)]
pub struct FetchedAhead(std::sync::Mutex<HashMap<Digest, AheadState>>);

#[derive(Debug)]
enum AheadState {
    /// Being downloaded; notified when it ends.
    Fetching(Arc<tokio::sync::Notify>),
    /// Downloaded: this many bytes, not yet counted by a pull.
    Fetched(u64),
}

impl FetchedAhead {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Digest, AheadState>> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Mark `digest` as being fetched ahead until the returned guard ends it; `None` if it
    /// already was.
    fn start(self: &Arc<Self>, digest: &Digest) -> Option<FetchingBlob> {
        let mut map = self.lock();
        if map.contains_key(digest) {
            return None;
        }
        let notify = Arc::new(tokio::sync::Notify::new());
        map.insert(digest.clone(), AheadState::Fetching(notify.clone()));
        Some(FetchingBlob {
            fetched: self.clone(),
            digest: digest.clone(),
            notify,
            downloaded: None,
        })
    }

    /// Mark `descriptor` (from `source`) as being fetched ahead; `None` if it already is or
    /// was.
    pub fn mark(
        self: &Arc<Self>,
        source: &Arc<dyn ImageSource>,
        descriptor: &Descriptor,
    ) -> Option<MarkedBlob> {
        let fetching = self.start(&descriptor.digest)?;
        Some(MarkedBlob {
            source: source.clone(),
            descriptor: descriptor.clone(),
            fetching,
        })
    }

    /// Wait until `digest` is no longer being fetched ahead (at once if it is not).
    pub(super) async fn finished(&self, digest: &Digest) {
        loop {
            let notify = match self.lock().get(digest) {
                Some(AheadState::Fetching(notify)) => notify.clone(),
                _ => return,
            };
            let notified = notify.notified();
            tokio::pin!(notified);
            // Registered before the state is read again: an end in between still wakes it.
            notified.as_mut().enable();
            if !matches!(self.lock().get(digest), Some(AheadState::Fetching(_))) {
                return;
            }
            notified.await;
        }
    }

    /// The bytes downloaded ahead for `digest`, forgotten once taken.
    pub(super) fn take(&self, digest: &Digest) -> Option<u64> {
        let mut map = self.lock();
        match map.get(digest) {
            Some(AheadState::Fetched(bytes)) => {
                let bytes = *bytes;
                map.remove(digest);
                Some(bytes)
            }
            _ => None,
        }
    }
}

/// One blob being fetched ahead: ends its [`AheadState::Fetching`] when dropped, recording
/// the bytes downloaded if it got that far, and wakes the pulls waiting for it.
struct FetchingBlob {
    fetched: Arc<FetchedAhead>,
    digest: Digest,
    notify: Arc<tokio::sync::Notify>,
    downloaded: Option<u64>,
}

impl Drop for FetchingBlob {
    fn drop(&mut self) {
        let mut map = self.fetched.lock();
        match self.downloaded {
            Some(bytes) => map.insert(self.digest.clone(), AheadState::Fetched(bytes)),
            None => map.remove(&self.digest),
        };
        drop(map);
        self.notify.notify_waiters();
    }
}

/// A blob marked in [`FetchedAhead`] as being fetched ahead, for [`fetch_marked`]: until it is
/// downloaded (or dropped), a pull that needs it waits.
pub struct MarkedBlob {
    source: Arc<dyn ImageSource>,
    descriptor: Descriptor,
    fetching: FetchingBlob,
}

/// Download the `marked` blobs into `cache` as they come, each from its own source, `jobs` at
/// a time and started in the order given, ahead of the pulls that will take them from there.
/// A blob the cache holds, or that another download is writing (its lock is taken), is left
/// alone. Nothing is reported and a failure is only logged: the pull that needs the blob
/// fetches it itself and reports what goes wrong. Dropping the future ends the marks of the
/// blobs not done.
pub async fn fetch_marked(
    marked: impl futures_util::Stream<Item = MarkedBlob> + Send,
    cache: BlobCache,
    jobs: usize,
    retry: RetryPolicy,
    sync: bool,
) {
    use futures_util::StreamExt as _;
    let fetch_options = FetchOptions {
        sync,
        ..FetchOptions::default()
    };
    let (cache, retry, fetch_options) = (&cache, &retry, &fetch_options);
    marked
        .map(|blob: MarkedBlob| async move {
            let MarkedBlob {
                source,
                descriptor,
                mut fetching,
            } = blob;
            let result =
                fetch_one_ahead(source.as_ref(), cache, &descriptor, retry, fetch_options).await;
            match result {
                Ok(downloaded) => fetching.downloaded = downloaded,
                Err(error) => {
                    tracing::debug!(digest = %descriptor.digest, %error, "not fetched ahead");
                }
            }
        })
        .buffer_unordered(jobs.max(1))
        .for_each(|()| async {})
        .await;
}

/// One blob of [`fetch_marked`] into the cache, under its lock; `None` when there was nothing
/// to do (held, or locked by another download).
async fn fetch_one_ahead(
    source: &dyn ImageSource,
    cache: &BlobCache,
    descriptor: &Descriptor,
    retry: &RetryPolicy,
    fetch_options: &FetchOptions,
) -> Result<Option<u64>> {
    let digest = &descriptor.digest;
    if cache.contains(digest, descriptor.size) {
        return Ok(None);
    }
    let Some(lock) = super::cache_lock(cache, digest, BlobCache::try_lock).await? else {
        return Ok(None);
    };
    if cache.contains(digest, descriptor.size) {
        return Ok(None);
    }
    let transferred = crate::fetch::fetch_blob_resumable(
        source,
        descriptor,
        &cache.partial_path(digest),
        &crate::report::NoopReporter,
        retry,
        fetch_options,
    )
    .await?;
    cache.commit(digest).map_err(Error::Cache)?;
    drop(lock);
    Ok(Some(transferred))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// A pull that needs a blob being fetched ahead waits for that download to end, and
    /// counts its bytes once; a blob fetched ahead twice is started once.
    #[tokio::test]
    async fn a_blob_fetched_ahead_is_waited_for_and_counted_once() {
        let fetched = Arc::new(FetchedAhead::default());
        let digest = Digest::sha256_of(b"layer");
        let mut fetching = fetched.start(&digest).expect("not fetched yet");
        assert!(fetched.start(&digest).is_none(), "started twice");
        assert_eq!(fetched.take(&digest), None, "not downloaded yet");
        let waited = tokio::time::timeout(Duration::from_millis(50), fetched.finished(&digest));
        assert!(
            waited.await.is_err(),
            "a pull went on before the download ended"
        );
        let download = async {
            tokio::time::sleep(Duration::from_millis(20)).await;
            fetching.downloaded = Some(42);
            drop(fetching);
        };
        tokio::join!(download, fetched.finished(&digest));
        assert_eq!(fetched.take(&digest), Some(42));
        assert_eq!(fetched.take(&digest), None, "counted twice");
        // A download that failed (or was stopped) records nothing and wakes its waiters too.
        drop(fetched.start(&digest).expect("ended"));
        fetched.finished(&digest).await;
        assert_eq!(fetched.take(&digest), None);
    }
}
