//! Retrying identity endpoints: exponential backoff, the IMDS `410` window and fast failure off Azure.
//!
//! IMDS asks clients to retry 404 (identity being assigned), 429, 5xx and timeouts with
//! exponential backoff, and to keep retrying 410 for up to 70 s while it is updated (spec 1.5;
//! every SDK has shipped a bug fix for retrying 410 too briefly). The other 4xx are caller errors.
//! Off Azure, the link-local address may hang rather than refuse, so a connection failure on the
//! very first request fails at once instead of after the whole retry budget (spec 1.6).
//!
//! All delays live in [`RetryPolicy`] so tests can run the real schedule in milliseconds.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use super::error::display_url;
use super::response::describe_error_body;
use super::Error;

/// How an identity source retries. The default follows the IMDS guidance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Retries after a retryable status or timeout (the 410 window is counted separately).
    pub retries: u32,
    /// Delay before the first retry; it doubles on each further retry.
    pub first_delay: Duration,
    /// Upper bound of one backoff delay.
    pub max_delay: Duration,
    /// How long `410 Gone` keeps being retried, counted from the first request.
    pub gone_window: Duration,
    /// Delay between retries of a `410 Gone`.
    pub gone_delay: Duration,
    /// Connect timeout; short, because the endpoint is on the local machine or link.
    pub connect_timeout: Duration,
    /// Timeout of one whole request.
    pub request_timeout: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            retries: 5,
            first_delay: Duration::from_secs(1),
            max_delay: Duration::from_secs(60),
            gone_window: Duration::from_secs(70),
            gone_delay: Duration::from_secs(10),
            connect_timeout: Duration::from_secs(1),
            request_timeout: Duration::from_secs(30),
        }
    }
}

impl RetryPolicy {
    /// The same schedule with every delay replaced by `delay` (tests).
    pub fn with_delays(delay: Duration) -> Self {
        Self {
            first_delay: delay,
            max_delay: delay,
            gone_delay: delay,
            gone_window: delay * 20,
            ..Self::default()
        }
    }

    /// The backoff delay before retry number `retry` (0-based).
    fn backoff(&self, retry: u32) -> Duration {
        let factor = 2u32.saturating_pow(retry.min(16));
        self.first_delay.saturating_mul(factor).min(self.max_delay)
    }
}

/// Which statuses a source retries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RetryStatuses {
    /// IMDS: 404, 410 (with its own window), 429, 5xx.
    Imds,
    /// App Service and Entra ID: 408, 429, 5xx.
    Service,
}

impl RetryStatuses {
    fn retries(self, status: u16) -> bool {
        match self {
            RetryStatuses::Imds => matches!(status, 404 | 429 | 500..=599),
            RetryStatuses::Service => matches!(status, 408 | 429 | 500..=599),
        }
    }
}

/// The final answer of an endpoint: status and body.
pub(crate) struct Answer {
    pub(crate) status: u16,
    pub(crate) body: bytes::Bytes,
}

/// Send the request `build` makes until it succeeds, fails permanently, or the policy runs out.
/// Success and non-retryable statuses are returned; exhausted retries become an error.
/// `reached` records whether the endpoint ever answered (shared across calls of one source).
pub(crate) async fn send(
    build: impl Fn() -> reqwest::RequestBuilder,
    endpoint: &url::Url,
    policy: &RetryPolicy,
    statuses: RetryStatuses,
    reached: &AtomicBool,
) -> Result<Answer, Error> {
    let started = Instant::now();
    let shown = display_url(endpoint);
    let mut attempts = 0u32;
    let mut backoff_retries = 0u32;
    loop {
        attempts += 1;
        let delay = match build().timeout(policy.request_timeout).send().await {
            Err(source) => {
                if source.is_connect() && !reached.load(Ordering::Relaxed) {
                    return Err(Error::EndpointUnreachable {
                        endpoint: shown,
                        source,
                    });
                }
                let transient = source.is_timeout() || source.is_connect() || source.is_request();
                if !transient || backoff_retries >= policy.retries {
                    return Err(Error::Transport { url: shown, source });
                }
                tracing::debug!(endpoint = %shown, error = %source, "identity request failed, retrying");
                backoff_retries += 1;
                policy.backoff(backoff_retries - 1)
            }
            Ok(response) => {
                reached.store(true, Ordering::Relaxed);
                let status = response.status().as_u16();
                let body = response.bytes().await.map_err(|source| Error::Transport {
                    url: shown.clone(),
                    source,
                })?;
                let exhausted = |description: &[u8]| Error::RetriesExhausted {
                    endpoint: shown.clone(),
                    attempts,
                    status,
                    description: describe_error_body(description),
                };
                if statuses == RetryStatuses::Imds && status == 410 {
                    if started.elapsed() + policy.gone_delay > policy.gone_window {
                        return Err(exhausted(&body));
                    }
                    tracing::debug!(endpoint = %shown, "IMDS is being updated (410), retrying");
                    policy.gone_delay
                } else if statuses.retries(status) {
                    if backoff_retries >= policy.retries {
                        return Err(exhausted(&body));
                    }
                    tracing::debug!(endpoint = %shown, status, "identity endpoint busy, retrying");
                    backoff_retries += 1;
                    policy.backoff(backoff_retries - 1)
                } else {
                    return Ok(Answer { status, body });
                }
            }
        };
        tokio::time::sleep(delay).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_backoff_doubles_and_caps() {
        let policy = RetryPolicy::default();
        let delays: Vec<u64> = (0..8)
            .map(|retry| policy.backoff(retry).as_secs())
            .collect();
        assert_eq!(delays, [1, 2, 4, 8, 16, 32, 60, 60]);
    }

    #[test]
    fn retryable_statuses() {
        for status in [404, 429, 500, 503, 511] {
            assert!(RetryStatuses::Imds.retries(status), "{status}");
        }
        for status in [400, 401, 403, 408] {
            assert!(!RetryStatuses::Imds.retries(status), "{status}");
        }
        assert!(RetryStatuses::Service.retries(408));
        assert!(!RetryStatuses::Service.retries(404));
    }
}
