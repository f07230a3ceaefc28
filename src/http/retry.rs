//! The one retry policy: when to send a request again and how long to wait first.
//!
//! Jittered exponential backoff (so that many clients failing together do not come back
//! together), capped, honouring `Retry-After`. [`send`] is the one loop that applies it, for the
//! registry client, the token endpoints, the identity endpoints and the ACR exchange alike; each
//! caller says which answers are worth another try ([`Verdict`]), and transport failures are
//! retried when [`Failure::is_transient`] says so.

use std::time::{Duration, SystemTime};

use super::classify::{classify, Failure};
use super::safe_url::SafeUrl;

/// How often and how patiently to retry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Retries after the first attempt.
    pub retries: u32,
    /// First backoff.
    pub base_delay: Duration,
    /// Largest backoff (and cap on `Retry-After`).
    pub max_delay: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            retries: 5,
            base_delay: Duration::from_millis(200),
            max_delay: Duration::from_secs(30),
        }
    }
}

impl RetryPolicy {
    /// The wait before retry number `attempt` (1-based): exponential with full jitter in the
    /// upper half, or `Retry-After` when the server gave one (capped at `max_delay`).
    pub fn delay(&self, attempt: u32, retry_after: Option<Duration>) -> Duration {
        if let Some(after) = retry_after {
            return after.min(self.max_delay);
        }
        let exp = self
            .base_delay
            .saturating_mul(1u32 << attempt.saturating_sub(1).min(16));
        let capped = exp.min(self.max_delay);
        let half = capped / 2;
        half + half.mul_f64(fastrand::f64())
    }
}

/// Whether an HTTP status is worth retrying at a registry or token service.
pub fn is_retryable_status(status: u16) -> bool {
    matches!(status, 408 | 429 | 500..=599) && status != 501 && status != 505
}

/// Parse `Retry-After`: delta seconds or an HTTP date.
pub fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let date = httpdate::parse_http_date(value).ok()?;
    Some(date.duration_since(now).unwrap_or(Duration::ZERO))
}

/// A response's `Retry-After`, if it has a readable one.
pub fn retry_after(response: &reqwest::Response) -> Option<Duration> {
    response
        .headers()
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| parse_retry_after(value, SystemTime::now()))
}

/// What to do with a response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Return it to the caller.
    Done,
    /// Retry with backoff (or after `Retry-After`) while retries remain; when they have run out,
    /// the response is returned as it is.
    Retry,
    /// Wait this long and send again without counting a retry (IMDS `410`: the caller decides
    /// when to stop, by answering [`Verdict::Done`]).
    Wait(Duration),
}

/// The default verdict: retry the statuses [`is_retryable_status`] names.
pub fn by_status(response: &reqwest::Response) -> Verdict {
    if is_retryable_status(response.status().as_u16()) {
        Verdict::Retry
    } else {
        Verdict::Done
    }
}

/// A response and how many requests it took.
#[derive(Debug)]
pub struct Sent {
    /// The last response.
    pub response: reqwest::Response,
    /// Requests sent.
    pub attempts: u32,
}

/// A transport failure that retrying did not cure (or that retrying cannot cure).
#[derive(Debug, thiserror::Error)]
#[error("request to {url} failed after {attempts} attempt(s)")]
pub struct SendError {
    /// The URL asked.
    pub url: SafeUrl,
    /// Requests sent.
    pub attempts: u32,
    /// What kind of failure the last one was.
    pub failure: Failure,
    /// The last failure, without its URL (which may carry a signature in its query).
    #[source]
    pub source: reqwest::Error,
}

/// Whether the connection was refused (nothing listens at that address), by the I/O error kind
/// in the chain.
pub fn is_connection_refused(error: &reqwest::Error) -> bool {
    super::classify::io_kind(error) == Some(std::io::ErrorKind::ConnectionRefused)
}

/// The innermost error of a chain (`Connection refused (os error 111)` rather than
/// `error sending request`), for a one-line message.
pub fn root_cause(error: &(dyn std::error::Error + 'static)) -> String {
    let mut current = error;
    while let Some(source) = current.source() {
        current = source;
    }
    current.to_string()
}

/// Send the request `build` makes until `judge` accepts the answer, a transport failure is not
/// transient, or the retries run out: `policy.retries` for answers, `budget(error, failure)`
/// for a transport failure (`policy.retries`, or fewer: 0 gives up at once). The first retry
/// is announced at normal verbosity (a warning), so a wait is never silent; later ones at `-v`.
pub async fn send(
    policy: &RetryPolicy,
    url: &SafeUrl,
    build: impl Fn() -> reqwest::RequestBuilder,
    mut judge: impl FnMut(&reqwest::Response) -> Verdict,
    budget: impl Fn(&reqwest::Error, Failure) -> u32,
) -> Result<Sent, SendError> {
    let mut attempts = 0u32;
    let mut retries = 0u32;
    loop {
        attempts += 1;
        let delay = match build().send().await {
            Ok(response) => match judge(&response) {
                Verdict::Done => return Ok(Sent { response, attempts }),
                Verdict::Retry if retries >= policy.retries => {
                    return Ok(Sent { response, attempts })
                }
                Verdict::Retry => {
                    retries += 1;
                    let status = response.status().as_u16();
                    let delay = policy.delay(retries, retry_after(&response));
                    if retries == 1 {
                        tracing::warn!(
                            "{url}: HTTP {status}; retrying ({} attempt(s) left)",
                            policy.retries
                        );
                    }
                    tracing::info!(%url, status, ?delay, "retrying");
                    delay
                }
                Verdict::Wait(delay) => {
                    tracing::info!(%url, status = response.status().as_u16(), ?delay, "waiting, then asking again");
                    delay
                }
            },
            Err(error) => {
                let error = error.without_url();
                let failure = classify(&error);
                let budget = budget(&error, failure);
                if !failure.is_transient() || retries >= budget {
                    return Err(SendError {
                        url: url.clone(),
                        attempts,
                        failure,
                        source: error,
                    });
                }
                retries += 1;
                let delay = policy.delay(retries, None);
                if retries == 1 {
                    tracing::warn!(
                        "{url}: {}; retrying ({budget} attempt(s) left)",
                        root_cause(&error)
                    );
                }
                tracing::info!(%url, error = %error, ?failure, ?delay, "retrying after transport error");
                delay
            }
        };
        tokio::time::sleep(delay).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_forms() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000_000);
        assert_eq!(parse_retry_after("7", now), Some(Duration::from_secs(7)));
        let later = httpdate::fmt_http_date(now + Duration::from_secs(30));
        assert_eq!(
            parse_retry_after(&later, now),
            Some(Duration::from_secs(30))
        );
        let earlier = httpdate::fmt_http_date(now - Duration::from_secs(30));
        assert_eq!(parse_retry_after(&earlier, now), Some(Duration::ZERO));
        assert_eq!(parse_retry_after("soon", now), None);
    }

    #[test]
    fn backoff_grows_and_is_capped() {
        let policy = RetryPolicy {
            retries: 10,
            base_delay: Duration::from_millis(100),
            max_delay: Duration::from_secs(1),
        };
        let d1 = policy.delay(1, None);
        assert!(d1 >= Duration::from_millis(50) && d1 <= Duration::from_millis(100));
        let d4 = policy.delay(4, None);
        assert!(d4 >= Duration::from_millis(400) && d4 <= Duration::from_millis(800));
        assert!(policy.delay(30, None) <= Duration::from_secs(1));
        assert_eq!(
            policy.delay(1, Some(Duration::from_secs(99))),
            Duration::from_secs(1)
        );
    }

    #[test]
    fn statuses() {
        for s in [408, 429, 500, 502, 503, 504] {
            assert!(is_retryable_status(s), "{s}");
        }
        for s in [400, 401, 403, 404, 501] {
            assert!(!is_retryable_status(s), "{s}");
        }
    }
}
