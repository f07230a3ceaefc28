//! Stopping a pull from outside: the binary turns SIGINT and SIGTERM into [`Cancel::cancel`].
//! The pull then stops its downloads (partial blobs stay in the cache, resumable), removes its
//! staging directory, leaves the destination as it was, and fails with
//! [`crate::Error::Stopped`]. A flag and a watch channel, not a dropped future, so that every
//! part stops in order and nothing is removed while a thread still writes into it.

use std::sync::Arc;

use tokio::sync::watch;

/// Why a pull was asked to stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopSignal {
    /// `SIGINT` (Ctrl-C): exit code 130.
    Interrupt,
    /// `SIGTERM`: exit code 143.
    Terminate,
}

impl std::fmt::Display for StopSignal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            StopSignal::Interrupt => "SIGINT",
            StopSignal::Terminate => "SIGTERM",
        })
    }
}

/// A request to stop, shared by every part of one pull (clones share it).
#[derive(Debug, Clone)]
pub struct Cancel(Arc<watch::Sender<Option<StopSignal>>>);

impl Default for Cancel {
    fn default() -> Self {
        Self(Arc::new(watch::Sender::new(None)))
    }
}

impl Cancel {
    /// Ask the pull to stop; the first reason given wins.
    pub fn cancel(&self, signal: StopSignal) {
        self.0.send_if_modified(|current| {
            if current.is_some() {
                return false;
            }
            *current = Some(signal);
            true
        });
    }

    /// Why the pull was asked to stop, if it was.
    pub fn signal(&self) -> Option<StopSignal> {
        *self.0.borrow()
    }

    /// Fail with the signal if the pull was asked to stop (`?` turns it into
    /// [`crate::Error::Stopped`]).
    pub fn check(&self) -> Result<(), StopSignal> {
        match self.signal() {
            Some(signal) => Err(signal),
            None => Ok(()),
        }
    }

    /// Resolves when the pull is asked to stop.
    pub async fn cancelled(&self) -> StopSignal {
        let mut receiver = self.0.subscribe();
        let signal = match receiver.wait_for(Option::is_some).await {
            Ok(signal) => *signal,
            Err(_) => None,
        };
        match signal {
            Some(signal) => signal,
            // The sender lives as long as `self`: this never happens.
            None => std::future::pending().await,
        }
    }
}

/// A reader that fails once the pull is asked to stop (a layer being applied from a blob that
/// is already complete stops at its next read, not at its end).
pub struct StoppableReader<R> {
    inner: R,
    cancel: Cancel,
}

impl<R> StoppableReader<R> {
    /// Wrap `inner`.
    pub fn new(inner: R, cancel: Cancel) -> Self {
        Self { inner, cancel }
    }
}

impl<R: std::io::Read> std::io::Read for StoppableReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if let Some(signal) = self.cancel.signal() {
            // Not `Interrupted`: readers retry that kind.
            return Err(std::io::Error::other(format!("stopped by {signal}")));
        }
        self.inner.read(buf)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read as _;

    #[tokio::test]
    async fn the_first_signal_wins_and_wakes_waiters() {
        let cancel = Cancel::default();
        assert_eq!(cancel.signal(), None);
        assert!(cancel.check().is_ok());
        let waiter = tokio::spawn({
            let cancel = cancel.clone();
            async move { cancel.cancelled().await }
        });
        cancel.cancel(StopSignal::Terminate);
        cancel.cancel(StopSignal::Interrupt);
        assert_eq!(waiter.await.unwrap(), StopSignal::Terminate);
        assert_eq!(cancel.cancelled().await, StopSignal::Terminate);
        assert_eq!(cancel.check(), Err(StopSignal::Terminate));
    }

    #[test]
    fn a_stoppable_reader_fails_after_the_stop() {
        let cancel = Cancel::default();
        let mut reader = StoppableReader::new(&b"abcdef"[..], cancel.clone());
        let mut buf = [0u8; 3];
        assert_eq!(reader.read(&mut buf).unwrap(), 3);
        cancel.cancel(StopSignal::Interrupt);
        let error = reader.read(&mut buf).unwrap_err();
        assert_eq!(error.to_string(), "stopped by SIGINT");
    }
}
