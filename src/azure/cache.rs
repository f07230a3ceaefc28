//! The in-memory AAD token cache every identity source uses.
//!
//! One slot per source (a source serves exactly one audience). The lock is held across the
//! fetch, so concurrent callers wait for the one request in flight instead of each asking IMDS
//! (which throttles with 429) - the single-flight behaviour containerd's `authHandler` has.

use std::future::Future;
use std::time::{Duration, SystemTime};

use super::{AadToken, Error};

/// Tokens are refreshed this long before they expire (the Azure SDKs use 5 minutes).
pub const REFRESH_MARGIN: Duration = Duration::from_secs(300);

/// A single cached token with single-flight refresh.
#[derive(Debug, Default)]
pub(crate) struct TokenCache {
    slot: tokio::sync::Mutex<Option<AadToken>>,
}

impl TokenCache {
    /// The cached token if it is still fresh, otherwise the result of `fetch` (cached on success).
    pub(crate) async fn get_or_fetch<F, Fut>(&self, fetch: F) -> Result<AadToken, Error>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<AadToken, Error>>,
    {
        let mut slot = self.slot.lock().await;
        if let Some(token) = slot.as_ref() {
            if is_fresh(token, SystemTime::now()) {
                return Ok(token.clone());
            }
        }
        let token = fetch().await?;
        *slot = Some(token.clone());
        Ok(token)
    }
}

/// Whether `token` is still good for at least [`REFRESH_MARGIN`].
pub(crate) fn is_fresh(token: &AadToken, now: SystemTime) -> bool {
    now + REFRESH_MARGIN < token.expires_at
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    use super::*;
    use crate::secret::Secret;

    fn token(lifetime: Duration) -> AadToken {
        AadToken {
            token: Secret::new("t"),
            expires_at: SystemTime::now() + lifetime,
        }
    }

    #[tokio::test]
    async fn fetches_once_under_concurrency() {
        let cache = Arc::new(TokenCache::default());
        let fetches = Arc::new(AtomicUsize::new(0));
        let mut tasks = Vec::new();
        for _ in 0..8 {
            let cache = cache.clone();
            let fetches = fetches.clone();
            tasks.push(tokio::spawn(async move {
                cache
                    .get_or_fetch(|| async {
                        fetches.fetch_add(1, Ordering::SeqCst);
                        tokio::time::sleep(Duration::from_millis(20)).await;
                        Ok(token(Duration::from_secs(3600)))
                    })
                    .await
            }));
        }
        for task in tasks {
            task.await.unwrap().unwrap();
        }
        assert_eq!(fetches.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn refetches_within_the_margin_and_after_errors() {
        let cache = TokenCache::default();
        let fetches = AtomicUsize::new(0);
        let fetch = |lifetime| {
            fetches.fetch_add(1, Ordering::SeqCst);
            async move { Ok(token(lifetime)) }
        };
        cache
            .get_or_fetch(|| fetch(Duration::from_secs(200)))
            .await
            .unwrap();
        cache
            .get_or_fetch(|| fetch(Duration::from_secs(3600)))
            .await
            .unwrap();
        cache
            .get_or_fetch(|| fetch(Duration::from_secs(3600)))
            .await
            .unwrap();
        assert_eq!(fetches.load(Ordering::SeqCst), 2);

        let failing = TokenCache::default();
        let error = failing
            .get_or_fetch(|| async { Err(Error::Unavailable("down".into())) })
            .await;
        assert!(error.is_err());
        failing
            .get_or_fetch(|| fetch(Duration::from_secs(3600)))
            .await
            .unwrap();
        assert_eq!(fetches.load(Ordering::SeqCst), 3);
    }
}
