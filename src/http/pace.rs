//! How slow and how long a transfer may be: a minimum average speed over a window (curl's
//! `--speed-limit`/`--speed-time`) and an overall deadline.
//!
//! The read timeout alone does not bound a transfer: a body that drips one byte a second never
//! leaves a read idle for long. [`Paced`] wraps a body stream and fails it with
//! `io::ErrorKind::TimedOut` when fewer than `bytes_per_second × window` bytes arrived in a
//! whole window, or when the deadline passes, whether or not bytes are arriving.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use futures_util::Stream;
use tokio::time::{Instant, Sleep};

/// The pace a transfer must keep.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pace {
    /// The slowest acceptable average, in bytes per second (0: no minimum).
    pub min_bytes_per_second: u64,
    /// The window the average is taken over.
    pub window: Duration,
    /// When every transfer must have ended, if ever.
    pub deadline: Option<Instant>,
}

impl Default for Pace {
    /// 1 KiB/s averaged over 60 s, no deadline: a real network that slow would take a day for
    /// a 100 MiB layer; a server that slow is stalling.
    fn default() -> Self {
        Self {
            min_bytes_per_second: 1024,
            window: Duration::from_secs(60),
            deadline: None,
        }
    }
}

impl Pace {
    /// No minimum speed and no deadline.
    pub fn unlimited() -> Self {
        Self {
            min_bytes_per_second: 0,
            window: Duration::from_secs(60),
            deadline: None,
        }
    }

    /// Whether the deadline has passed.
    pub fn expired(&self) -> bool {
        self.deadline
            .is_some_and(|deadline| Instant::now() >= deadline)
    }

    /// Time left before the deadline (`None`: no deadline).
    pub fn remaining(&self) -> Option<Duration> {
        self.deadline
            .map(|deadline| deadline.saturating_duration_since(Instant::now()))
    }

    /// `stream`, failed when it falls below this pace.
    pub fn apply<S>(self, stream: S) -> Paced<S> {
        let now = Instant::now();
        let next = self.next_check(now);
        Paced {
            inner: stream,
            pace: self,
            window_start: now,
            window_bytes: 0,
            timer: next.map(|at| Box::pin(tokio::time::sleep_until(at))),
        }
    }

    /// When to look next: the end of the window, or the deadline if sooner.
    fn next_check(&self, window_start: Instant) -> Option<Instant> {
        let window_end = (self.min_bytes_per_second > 0)
            .then(|| window_start + self.window.max(Duration::from_millis(1)));
        match (window_end, self.deadline) {
            (Some(end), Some(deadline)) => Some(end.min(deadline)),
            (end, deadline) => end.or(deadline),
        }
    }
}

/// A body stream held to a [`Pace`].
pub struct Paced<S> {
    inner: S,
    pace: Pace,
    window_start: Instant,
    window_bytes: u64,
    timer: Option<Pin<Box<Sleep>>>,
}

impl<S> Paced<S> {
    /// `Err` when the transfer broke the pace by `now`; otherwise moves the window on.
    fn check(&mut self, now: Instant) -> Result<(), std::io::Error> {
        if self.pace.deadline.is_some_and(|deadline| now >= deadline) {
            return Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "the transfer ran past the deadline (--deadline)",
            ));
        }
        if self.pace.min_bytes_per_second == 0 {
            return Ok(());
        }
        let elapsed = now.duration_since(self.window_start);
        if elapsed < self.pace.window {
            return Ok(());
        }
        let wanted = self
            .pace
            .min_bytes_per_second
            .saturating_mul(self.pace.window.as_secs().max(1));
        if self.window_bytes < wanted {
            return Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!(
                    "the transfer was slower than {} bytes/s over {} s (--speed-limit, --speed-time): {} bytes arrived",
                    self.pace.min_bytes_per_second,
                    self.pace.window.as_secs(),
                    self.window_bytes
                ),
            ));
        }
        self.window_start = now;
        self.window_bytes = 0;
        if let (Some(timer), Some(at)) = (self.timer.as_mut(), self.pace.next_check(now)) {
            timer.as_mut().reset(at);
        }
        Ok(())
    }
}

impl<S> Stream for Paced<S>
where
    S: Stream<Item = Result<Bytes, std::io::Error>> + Unpin,
{
    type Item = Result<Bytes, std::io::Error>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        match Pin::new(&mut this.inner).poll_next(cx) {
            Poll::Ready(Some(Ok(chunk))) => {
                this.window_bytes += chunk.len() as u64;
                if let Err(error) = this.check(Instant::now()) {
                    return Poll::Ready(Some(Err(error)));
                }
                Poll::Ready(Some(Ok(chunk)))
            }
            Poll::Ready(Some(Err(error))) => Poll::Ready(Some(Err(error))),
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => {
                let Some(timer) = this.timer.as_mut() else {
                    return Poll::Pending;
                };
                if timer.as_mut().poll(cx).is_pending() {
                    return Poll::Pending;
                }
                if let Err(error) = this.check(Instant::now()) {
                    return Poll::Ready(Some(Err(error)));
                }
                // The window moved on: arm the timer for the next check.
                let _ = this.timer.as_mut().map(|timer| timer.as_mut().poll(cx));
                Poll::Pending
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::StreamExt;

    fn drip(every: Duration) -> impl Stream<Item = Result<Bytes, std::io::Error>> + Unpin {
        Box::pin(futures_util::stream::unfold((), move |()| async move {
            tokio::time::sleep(every).await;
            Some((Ok(Bytes::from_static(b"x")), ()))
        }))
    }

    fn silent() -> impl Stream<Item = Result<Bytes, std::io::Error>> + Unpin {
        Box::pin(futures_util::stream::pending())
    }

    #[tokio::test]
    async fn a_drip_fails_after_one_window() {
        let pace = Pace {
            min_bytes_per_second: 100,
            window: Duration::from_secs(1),
            deadline: None,
        };
        let started = Instant::now();
        let mut paced = pace.apply(drip(Duration::from_millis(50)));
        let error = loop {
            match paced.next().await {
                Some(Ok(_)) => continue,
                Some(Err(error)) => break error,
                None => panic!("the drip ended"),
            }
        };
        assert_eq!(error.kind(), std::io::ErrorKind::TimedOut);
        assert!(error.to_string().contains("--speed-limit"), "{error}");
        let took = started.elapsed();
        assert!(
            took >= Duration::from_secs(1) && took < Duration::from_secs(3),
            "{took:?}"
        );
    }

    #[tokio::test]
    async fn silence_fails_at_the_window_and_at_the_deadline() {
        let started = Instant::now();
        let pace = Pace {
            min_bytes_per_second: 1,
            window: Duration::from_secs(1),
            deadline: None,
        };
        assert!(pace.apply(silent()).next().await.unwrap().is_err());
        assert!(started.elapsed() >= Duration::from_secs(1));
        let started = Instant::now();
        let deadline = Pace {
            deadline: Some(Instant::now() + Duration::from_millis(300)),
            ..Pace::unlimited()
        };
        let error = deadline.apply(silent()).next().await.unwrap().unwrap_err();
        assert!(error.to_string().contains("deadline"), "{error}");
        let took = started.elapsed();
        assert!(
            took >= Duration::from_millis(300) && took < Duration::from_secs(2),
            "{took:?}"
        );
    }

    #[tokio::test]
    async fn a_steady_stream_passes_window_after_window() {
        let pace = Pace {
            min_bytes_per_second: 1,
            window: Duration::from_secs(1),
            deadline: None,
        };
        let steady = drip(Duration::from_millis(25)).take(100);
        let chunks: Vec<_> = pace.apply(steady).collect().await;
        assert_eq!(chunks.len(), 100);
        assert!(chunks.iter().all(Result::is_ok));
    }
}
