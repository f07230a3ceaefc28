//! Serving axum apps on their own thread and runtime, so they keep answering while a test
//! blocks (on a CLI child process, say), and stop when the handle is dropped.

use std::net::TcpListener;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

use anyhow::Context as _;
use axum::serve::ListenerExt as _;
use axum::Router;
use tokio::sync::oneshot;

/// Apps running in the background; dropping it stops them and their connections.
#[derive(Debug)]
pub(crate) struct Background {
    shutdown: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
    /// Connections each app has accepted, in the order the apps were given.
    accepted: Vec<Arc<AtomicU64>>,
}

/// Serve each `(listener, app)` pair (listeners already bound, non-blocking) until dropped.
pub(crate) fn spawn(name: &str, apps: Vec<(TcpListener, Router)>) -> anyhow::Result<Background> {
    let (shutdown, stopped) = oneshot::channel::<()>();
    let (ready_tx, ready_rx) = std::sync::mpsc::channel::<anyhow::Result<()>>();
    let accepted: Vec<Arc<AtomicU64>> = apps.iter().map(|_| Arc::default()).collect();
    let counters = accepted.clone();
    let thread = std::thread::Builder::new()
        .name(name.to_string())
        .spawn(move || {
            let runtime = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(runtime) => runtime,
                Err(error) => {
                    let _ = ready_tx.send(Err(error.into()));
                    return;
                }
            };
            runtime.block_on(async move {
                for ((listener, app), counter) in apps.into_iter().zip(counters) {
                    let listener = match tokio::net::TcpListener::from_std(listener) {
                        Ok(listener) => listener,
                        Err(error) => {
                            let _ = ready_tx.send(Err(error.into()));
                            return;
                        }
                    };
                    let listener = listener.tap_io(move |_| {
                        counter.fetch_add(1, Ordering::SeqCst);
                    });
                    tokio::spawn(async move {
                        let _ = axum::serve(listener, app).await;
                    });
                }
                let _ = ready_tx.send(Ok(()));
                let _ = stopped.await;
            });
            // Dropping the runtime aborts the servers and open connections.
        })
        .with_context(|| format!("spawning the {name} thread"))?;
    ready_rx
        .recv()
        .with_context(|| format!("{name} thread died during start"))??;
    Ok(Background {
        shutdown: Some(shutdown),
        thread: Some(thread),
        accepted,
    })
}

impl Background {
    /// Connections the `index`th app (in the order given to [`spawn`]) has accepted so far.
    pub(crate) fn accepted(&self, index: usize) -> u64 {
        self.accepted[index].load(Ordering::SeqCst)
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
