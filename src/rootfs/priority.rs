//! Layers inflated ahead run at a lower CPU priority until their turn.
//!
//! On a machine with fewer cores than busy threads, the scheduler shares the cores evenly
//! between the layer being applied (its inflater and hasher: the pull's critical path), the
//! downloads, and the layers inflating ahead, whose output only waits in a spill file. The
//! threads of a layer inflated ahead therefore raise their nice value by [`AHEAD_NICE`] while
//! ahead, and the layer's turn ([`AheadPriority::promote`]) puts them back where they were,
//! so they use the cores the current layer leaves idle instead of slowing it down. With cores
//! to spare, nice changes nothing.
//!
//! Putting a thread back needs `CAP_SYS_NICE` (or an `RLIMIT_NICE` that allows it): without
//! it a thread could never return to its priority, so nothing is lowered at all unless a
//! probe at the first use ([`can_restore`]) showed that lowering can be undone.

use std::sync::{Mutex, MutexGuard, OnceLock, PoisonError};

use rustix::process::{getpriority_process, setpriority_process, Pid};

/// How much nicer the threads of a layer inflated ahead are (the scheduler's weight for nice
/// 10 is about a tenth of nice 0's).
pub(super) const AHEAD_NICE: i32 = 10;

/// The nice values of one layer's pipeline threads, shared by the threads and the layer.
#[derive(Debug, Default)]
pub(crate) struct AheadPriority {
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    /// The layer's turn came: threads starting now stay as they are.
    promoted: bool,
    /// Threads lowered and still running, with the nice value to give back.
    lowered: Vec<(Pid, i32)>,
}

/// A thread's hold on its lowered priority; dropping it (the thread ends) forgets the thread,
/// so that its id, once reused, is never touched.
pub(crate) struct Lowered<'a> {
    priority: &'a AheadPriority,
    thread: Option<Pid>,
}

impl AheadPriority {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Called by a pipeline thread as it starts: lower its priority unless its layer's turn
    /// already came (or the priority could not be restored later).
    pub(crate) fn lower_this_thread(&self) -> Lowered<'_> {
        let mut state = self.lock();
        let mut lowered = Lowered {
            priority: self,
            thread: None,
        };
        if state.promoted || !can_restore() {
            return lowered;
        }
        let thread = rustix::thread::gettid();
        if let Ok(nice) = getpriority_process(Some(thread)) {
            if nice < 19 && setpriority_process(Some(thread), nice + AHEAD_NICE).is_ok() {
                state.lowered.push((thread, nice));
                lowered.thread = Some(thread);
            }
        }
        lowered
    }

    /// The layer's turn: every thread lowered so far gets its priority back, and threads
    /// starting later are not lowered.
    pub(crate) fn promote(&self) {
        let mut state = self.lock();
        state.promoted = true;
        for (thread, nice) in state.lowered.drain(..) {
            // Fails only if the thread is gone, which `Lowered` prevents (it forgets a thread
            // under this lock before the thread ends), or without the capability the probe saw.
            let _ = setpriority_process(Some(thread), nice);
        }
    }

    /// The threads lowered and not yet promoted (for tests).
    #[cfg(test)]
    pub(super) fn lowered_threads(&self) -> Vec<Pid> {
        self.lock()
            .lowered
            .iter()
            .map(|(thread, _)| *thread)
            .collect()
    }
}

impl Drop for Lowered<'_> {
    fn drop(&mut self) {
        if let Some(thread) = self.thread {
            self.priority
                .lock()
                .lowered
                .retain(|(lowered, _)| *lowered != thread);
        }
    }
}

/// Whether this process may lower a thread's priority and then restore it: tried once, on a
/// thread of its own.
pub(super) fn can_restore() -> bool {
    static CAN: OnceLock<bool> = OnceLock::new();
    *CAN.get_or_init(|| {
        std::thread::Builder::new()
            .name("acrpull-nice".into())
            .spawn(|| {
                let thread = rustix::thread::gettid();
                let Ok(nice) = getpriority_process(Some(thread)) else {
                    return false;
                };
                nice < 19
                    && setpriority_process(Some(thread), nice + 1).is_ok()
                    && setpriority_process(Some(thread), nice).is_ok()
            })
            .ok()
            .and_then(|probe| probe.join().ok())
            .unwrap_or(false)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nice() -> i32 {
        getpriority_process(Some(rustix::thread::gettid())).expect("getpriority")
    }

    /// Run `test` on a thread of its own (its priority changes die with it) and wait for it.
    fn on_a_new_thread(test: impl FnOnce() + Send) {
        std::thread::scope(|scope| scope.spawn(test).join().expect("thread"));
    }

    #[test]
    fn a_thread_ahead_is_lowered_until_its_layer_is_promoted() {
        let priority = AheadPriority::default();
        on_a_new_thread(|| {
            let before = nice();
            let _lowered = priority.lower_this_thread();
            if can_restore() && before < 19 {
                assert_eq!(nice(), (before + AHEAD_NICE).min(19));
                assert_eq!(priority.lowered_threads().len(), 1);
                priority.promote();
                assert_eq!(nice(), before);
            } else {
                // Unprivileged: nothing is lowered that could not be restored.
                assert_eq!(nice(), before);
                assert_eq!(priority.lowered_threads().len(), 0);
            }
        });
        assert_eq!(priority.lowered_threads().len(), 0);
    }

    #[test]
    fn a_thread_starting_after_the_promotion_keeps_its_priority() {
        let priority = AheadPriority::default();
        priority.promote();
        on_a_new_thread(|| {
            let before = nice();
            let _lowered = priority.lower_this_thread();
            assert_eq!(nice(), before);
        });
        assert_eq!(priority.lowered_threads().len(), 0);
    }

    #[test]
    fn a_thread_that_ended_is_forgotten_before_the_promotion() {
        let priority = AheadPriority::default();
        on_a_new_thread(|| drop(priority.lower_this_thread()));
        // Its id may belong to another thread or process by now: promote must not touch it.
        assert_eq!(priority.lowered_threads().len(), 0);
        priority.promote();
    }
}
