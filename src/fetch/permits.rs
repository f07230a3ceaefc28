//! Pools of download connections granted in the order the blobs are needed.
//!
//! Two pools per pull use this: the download slots (`--jobs`: one connection per blob at
//! first) and the connections for ranges beyond each blob's first, which a link's bandwidth
//! is shared by. A root filesystem applies its layers strictly in order, so bandwidth spent on
//! a later layer while an earlier one is still arriving only makes the applier wait: a freed
//! permit goes to the waiting blob that comes first (the lowest rank), and a blob's later
//! ranges compete again each time one of its ranges ends. A blob takes its place in the queue
//! when [`RankedPermits::reserve`] is called, not when its task first runs: tasks spawned in
//! list order are not polled in list order, and the first free slots would otherwise go to
//! whichever ran first. With equal ranks (or none waiting) this is a plain counting semaphore.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::oneshot;

/// A pool of connections shared by the downloads of one pull.
#[derive(Debug)]
pub struct RankedPermits {
    state: Mutex<State>,
}

#[derive(Debug)]
struct State {
    free: usize,
    /// Waiting blobs by (rank, arrival): the first entry is served first. An entry whose
    /// waiter went away is skipped when its turn comes.
    waiting: BTreeMap<(usize, u64), oneshot::Sender<RankedPermit>>,
    arrivals: u64,
}

/// One connection, returned to the pool (or handed to the first waiter) on drop.
#[derive(Debug)]
pub struct RankedPermit {
    pool: Option<Arc<RankedPermits>>,
}

impl RankedPermits {
    /// A pool of `permits` connections.
    pub fn new(permits: usize) -> Arc<Self> {
        Arc::new(RankedPermits {
            state: Mutex::new(State {
                free: permits,
                waiting: BTreeMap::new(),
                arrivals: 0,
            }),
        })
    }

    /// Wait for a permit; among waiters, the lowest `rank` (the blob needed first) wins, then
    /// the one that waited longest.
    pub async fn acquire(self: &Arc<Self>, rank: usize) -> RankedPermit {
        self.reserve(rank).granted().await
    }

    /// Take a place in the queue now (a free permit at once, else a wait by `rank`); the
    /// permit is collected later with [`Reservation::granted`]. A reservation dropped before
    /// it was granted neither keeps nor loses a permit.
    pub fn reserve(self: &Arc<Self>, rank: usize) -> Reservation {
        let mut state = self.lock();
        if state.free > 0 {
            state.free -= 1;
            return Reservation::Granted(RankedPermit {
                pool: Some(self.clone()),
            });
        }
        let (sender, granted) = oneshot::channel();
        state.arrivals += 1;
        let arrival = state.arrivals;
        state.waiting.insert((rank, arrival), sender);
        // The sender lives in the pool, which the permit it sends keeps alive, until it sends.
        Reservation::Waiting(granted, self.clone())
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
        let mut permit = RankedPermit {
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

/// A place in a [`RankedPermits`] queue.
#[derive(Debug)]
pub enum Reservation {
    /// A permit was free.
    Granted(RankedPermit),
    /// Waiting for a freed permit (the pool is kept alive: it holds the sender).
    Waiting(oneshot::Receiver<RankedPermit>, Arc<RankedPermits>),
}

impl Reservation {
    /// The permit, once it is this reservation's turn.
    pub async fn granted(self) -> RankedPermit {
        match self {
            Reservation::Granted(permit) => permit,
            Reservation::Waiting(granted, _pool) => match granted.await {
                Ok(permit) => permit,
                Err(_) => unreachable!("a waiter's sender is only dropped after it sent"),
            },
        }
    }
}

impl Drop for RankedPermit {
    fn drop(&mut self) {
        if let Some(pool) = self.pool.take() {
            pool.release();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender};

    /// The ranks in the order `waiters` were granted their permits (each sends its rank on
    /// `order_tx` once granted).
    async fn granted_order(
        waiters: Vec<tokio::task::JoinHandle<()>>,
        order_tx: UnboundedSender<usize>,
        mut order: UnboundedReceiver<usize>,
    ) -> Vec<usize> {
        for waiter in waiters {
            waiter.await.unwrap();
        }
        drop(order_tx);
        let mut granted = Vec::new();
        while let Some(rank) = order.recv().await {
            granted.push(rank);
        }
        granted
    }

    #[tokio::test]
    async fn a_freed_permit_goes_to_the_waiting_blob_that_comes_first() {
        let pool = RankedPermits::new(1);
        let held = pool.acquire(5).await;
        let (order_tx, order) = tokio::sync::mpsc::unbounded_channel();
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
        let granted = granted_order(waiters, order_tx, order).await;
        assert_eq!(granted, [0, 1, 2, 3]);
        assert_eq!(pool.free(), 1, "every permit came back");
    }

    #[tokio::test]
    async fn reservations_are_granted_in_the_order_they_were_made_not_awaited() {
        let pool = RankedPermits::new(1);
        let reservations: Vec<_> = (0..4).map(|rank| (rank, pool.reserve(rank))).collect();
        let (order_tx, order) = tokio::sync::mpsc::unbounded_channel();
        let mut waiters = Vec::new();
        // The last reservation is awaited first, as a task spawned last may run first.
        for (rank, reservation) in reservations.into_iter().rev() {
            let order_tx = order_tx.clone();
            waiters.push(tokio::spawn(async move {
                let permit = reservation.granted().await;
                order_tx.send(rank).unwrap();
                tokio::task::yield_now().await;
                drop(permit);
            }));
            tokio::task::yield_now().await;
        }
        let granted = granted_order(waiters, order_tx, order).await;
        assert_eq!(granted, [0, 1, 2, 3]);
        assert_eq!(pool.free(), 1);
    }

    #[tokio::test]
    async fn a_waiter_that_gave_up_neither_keeps_nor_loses_a_permit() {
        let pool = RankedPermits::new(1);
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
        let pool = RankedPermits::new(2);
        let (a, b) = (pool.acquire(1).await, pool.acquire(0).await);
        assert_eq!(pool.free(), 0);
        drop((a, b));
        assert_eq!(pool.free(), 2);
    }
}
