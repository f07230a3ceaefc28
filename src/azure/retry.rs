//! How identity endpoints are retried: the one retry loop of [`crate::http::retry`], with the
//! IMDS rules on top.
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

use super::response::describe_error_body;
use super::Error;
use crate::http::{body::TOKEN_BODY_LIMIT, retry, Failure, Pace, SafeUrl, Verdict};

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

    /// The backoff schedule, in the form the one retry loop takes.
    fn backoff(&self) -> retry::RetryPolicy {
        retry::RetryPolicy {
            retries: self.retries,
            base_delay: self.first_delay,
            max_delay: self.max_delay,
        }
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
    /// The `WWW-Authenticate` header, if any (Azure Arc names its key file there).
    pub(crate) www_authenticate: Option<String>,
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
    let shown = SafeUrl::from(endpoint);
    let judge = |response: &reqwest::Response| {
        reached.store(true, Ordering::Relaxed);
        let status = response.status().as_u16();
        if statuses == RetryStatuses::Imds && status == 410 {
            // Retried for its own window, not counted against `retries`.
            if started.elapsed() + policy.gone_delay > policy.gone_window {
                Verdict::Done
            } else {
                Verdict::Wait(policy.gone_delay)
            }
        } else if statuses.retries(status) {
            Verdict::Retry
        } else {
            Verdict::Done
        }
    };
    let first_connect_fails_fast =
        |failure: Failure| failure == Failure::Connect && !reached.load(Ordering::Relaxed);
    let sent = retry::send(
        &policy.backoff(),
        &shown,
        || build().timeout(policy.request_timeout),
        judge,
        |_, failure| {
            if first_connect_fails_fast(failure) {
                0
            } else {
                policy.retries
            }
        },
    )
    .await
    .map_err(|error| {
        if first_connect_fails_fast(error.failure) {
            Error::EndpointUnreachable {
                endpoint: shown.to_string(),
                source: error.source,
            }
        } else {
            Error::Transport {
                url: shown.to_string(),
                source: error.source,
            }
        }
    })?;
    let status = sent.response.status().as_u16();
    let www_authenticate = sent
        .response
        .headers()
        .get(reqwest::header::WWW_AUTHENTICATE)
        .and_then(|value| value.to_str().ok())
        .map(str::to_string);
    let body = crate::http::read_capped(sent.response, TOKEN_BODY_LIMIT, Pace::default())
        .await
        .map_err(|error| super::acr::body_error(endpoint, error))?;
    if statuses.retries(status) || (statuses == RetryStatuses::Imds && status == 410) {
        return Err(Error::RetriesExhausted {
            endpoint: shown.to_string(),
            attempts: sent.attempts,
            status,
            description: describe_error_body(&body),
        });
    }
    Ok(Answer {
        status,
        www_authenticate,
        body,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_backoff_doubles_and_caps() {
        let backoff = RetryPolicy::default().backoff();
        for (retry, ceiling) in [(1, 1), (2, 2), (3, 4), (6, 32), (7, 60), (12, 60)] {
            let delay = backoff.delay(retry, None);
            let ceiling = Duration::from_secs(ceiling);
            assert!(
                delay >= ceiling / 2 && delay <= ceiling,
                "{retry}: {delay:?}"
            );
        }
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
