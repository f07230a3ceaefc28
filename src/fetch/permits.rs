//! The pull-wide pool of connections for ranges beyond each blob's first, granted in the order
//! the blobs are needed.
//!
//! Every blob keeps its own first connection; the extra ones are what a link's bandwidth is
//! shared by. A root filesystem applies its layers strictly in order, so bandwidth spent on a
//! later layer while an earlier one is still arriving only makes the applier wait: a freed
//! permit goes to the waiting range of the blob that comes first (the lowest rank), and a
//! blob's later ranges compete again each time one of its ranges ends. With equal ranks (or
//! none waiting) this is a plain counting semaphore.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::oneshot;

/// A pool of range connections shared by the downloads of one pull.
#[derive(Debug)]
pub struct RangePermits {
    state: Mutex<State>,
}

#[derive(Debug)]
struct State {
    free: usize,
    /// Waiting ranges by (rank, arrival): the first entry is served first. An entry whose
    /// waiter went away is skipped when its turn comes.
    waiting: BTreeMap<(usize, u64), oneshot::Sender<RangePermit>>,
    arrivals: u64,
}

/// One extra range connection, returned to the pool (or handed to the first waiter) on drop.
#[derive(Debug)]
pub struct RangePermit {
    pool: Option<Arc<RangePermits>>,
}

impl RangePermits {
    /// A pool of `permits` connections.
    pub fn new(permits: usize) -> Arc<Self> {
        Arc::new(RangePermits {
            state: Mutex::new(State {
                free: permits,
                waiting: BTreeMap::new(),
                arrivals: 0,
            }),
        })
    }

    /// Wait for a permit; among waiters, the lowest `rank` (the blob needed first) wins, then
    /// the one that waited longest.
    pub async fn acquire(self: &Arc<Self>, rank: usize) -> RangePermit {
        let granted = {
            let mut state = self.lock();
            if state.free > 0 {
                state.free -= 1;
                return RangePermit {
                    pool: Some(self.clone()),
                };
            }
            let (sender, granted) = oneshot::channel();
            state.arrivals += 1;
            let arrival = state.arrivals;
            state.waiting.insert((rank, arrival), sender);
            granted
        };
        // The sender lives in the pool, which `self` keeps alive, until it sends a permit.
        match granted.await {
            Ok(permit) => permit,
            Err(_) => unreachable!("a waiting range's sender is only dropped after it sent"),
        }
    }

    /// Permits neither held nor handed over (for tests).
    #[cfg(test)]
    fn free(&self) -> usize {
        self.lock().free
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Hand a freed permit to the first waiter still there, else back to the pool. The lock
    /// is never held while a permit is sent: one that comes back (its waiter left) could
    /// otherwise be dropped under it.
    fn release(self: &Arc<Self>) {
        let mut permit = RangePermit {
            pool: Some(self.clone()),
        };
        loop {
            let waiter = {
                let mut state = self.lock();
                match state.waiting.pop_first() {
                    Some((_, waiter)) => waiter,
                    None => {
                        state.free += 1;
                        // Disarmed: it is counted as free now.
                        permit.pool = None;
                        return;
                    }
                }
            };
            match waiter.send(permit) {
                Ok(()) => return,
                Err(back) => permit = back,
            }
        }
    }
}

impl Drop for RangePermit {
    fn drop(&mut self) {
        if let Some(pool) = self.pool.take() {
            pool.release();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_freed_permit_goes_to_the_waiting_blob_that_comes_first() {
        let pool = RangePermits::new(1);
        let held = pool.acquire(5).await;
        let (order_tx, mut order) = tokio::sync::mpsc::unbounded_channel();
        let mut waiters = Vec::new();
        // Later blobs start waiting first; the earliest blob still wins.
        for rank in [3, 2, 0, 1] {
            let (pool, order_tx) = (pool.clone(), order_tx.clone());
            waiters.push(tokio::spawn(async move {
                let permit = pool.acquire(rank).await;
                order_tx.send(rank).unwrap();
                tokio::task::yield_now().await;
                drop(permit);
            }));
            tokio::task::yield_now().await;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        drop(held);
        for waiter in waiters {
            waiter.await.unwrap();
        }
        drop(order_tx);
        let mut granted = Vec::new();
        while let Some(rank) = order.recv().await {
            granted.push(rank);
        }
        assert_eq!(granted, [0, 1, 2, 3]);
        assert_eq!(pool.free(), 1, "every permit came back");
    }

    #[tokio::test]
    async fn a_waiter_that_gave_up_neither_keeps_nor_loses_a_permit() {
        let pool = RangePermits::new(1);
        let held = pool.acquire(0).await;
        // Waits, then is dropped while still waiting.
        let gave_up =
            tokio::time::timeout(std::time::Duration::from_millis(10), pool.acquire(0)).await;
        assert!(gave_up.is_err());
        let (pool2, ready) = (pool.clone(), tokio::sync::oneshot::channel::<()>());
        let (ready_tx, ready_rx) = ready;
        let later = tokio::spawn(async move {
            let _permit = pool2.acquire(1).await;
            ready_tx.send(()).unwrap();
        });
        tokio::task::yield_now().await;
        drop(held);
        ready_rx
            .await
            .expect("the permit passed over the waiter that left");
        later.await.unwrap();
        assert_eq!(pool.free(), 1);
        // Two at once from a pool of two, then both back.
        let pool = RangePermits::new(2);
        let (a, b) = (pool.acquire(1).await, pool.acquire(0).await);
        assert_eq!(pool.free(), 0);
        drop((a, b));
        assert_eq!(pool.free(), 2);
    }
}
