//! Blocking work (waiting for a file lock another acrpull holds, a credential helper process)
//! kept off the async runtime's worker threads, so downloads and progress keep running while it
//! waits.

use std::fs::File;
use std::time::{Duration, Instant};

/// How long a lock another acrpull holds is waited for before giving up: longer than any one
/// download of a blob should take, short of forever.
pub const LOCK_WAIT_LIMIT: Duration = Duration::from_secs(30 * 60);

/// Run blocking `work` without stalling the runtime: on a multi-threaded runtime's worker thread
/// the worker first hands its other tasks to a new thread (`block_in_place`); anywhere else
/// (a blocking-pool thread, no runtime) `work` just runs.
pub fn off_async_threads<T>(work: impl FnOnce() -> T) -> T {
    match tokio::runtime::Handle::try_current() {
        Ok(handle) if handle.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
            tokio::task::block_in_place(work)
        }
        _ => work(),
    }
}

/// Take an exclusive `flock` on `file`, waiting for another process that holds it: says once
/// that it waits (naming `what`), polls, and fails with `TimedOut` after `limit`. Released when
/// every descriptor of that open file is closed, which includes the holder's death.
pub fn lock_exclusive_waiting(file: &File, what: &str, limit: Duration) -> std::io::Result<()> {
    if try_lock_exclusive(file) {
        return Ok(());
    }
    tracing::warn!("waiting for another acrpull that holds the lock on {what}");
    off_async_threads(|| {
        let started = Instant::now();
        loop {
            std::thread::sleep(Duration::from_millis(50));
            if try_lock_exclusive(file) {
                return Ok(());
            }
            if started.elapsed() >= limit {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    format!(
                        "another acrpull held the lock on {what} for more than {} s",
                        limit.as_secs()
                    ),
                ));
            }
        }
    })
}

/// Take an exclusive `flock` on `file` if nobody holds it.
pub fn try_lock_exclusive(file: &File) -> bool {
    rustix::fs::flock(file, rustix::fs::FlockOperation::NonBlockingLockExclusive).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_held_lock_times_out_and_a_free_one_is_taken() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("lock");
        let holder = File::create(&path).unwrap();
        lock_exclusive_waiting(&holder, "test", Duration::ZERO).unwrap();
        let waiter = File::open(&path).unwrap();
        let started = Instant::now();
        let error =
            lock_exclusive_waiting(&waiter, "test", Duration::from_millis(200)).unwrap_err();
        assert_eq!(error.kind(), std::io::ErrorKind::TimedOut);
        assert!(started.elapsed() >= Duration::from_millis(200));
        drop(holder);
        lock_exclusive_waiting(&waiter, "test", Duration::from_millis(200)).unwrap();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn waiting_does_not_stall_other_tasks() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("lock");
        let holder = File::create(&path).unwrap();
        assert!(try_lock_exclusive(&holder));
        let ticks = tokio::spawn(async {
            let mut ticks = 0;
            for _ in 0..10 {
                tokio::time::sleep(Duration::from_millis(20)).await;
                ticks += 1;
            }
            ticks
        });
        let waiter = File::open(&path).unwrap();
        let waited = tokio::spawn(async move {
            lock_exclusive_waiting(&waiter, "test", Duration::from_millis(400)).is_err()
        });
        assert_eq!(ticks.await.unwrap(), 10);
        assert!(waited.await.unwrap());
    }
}
