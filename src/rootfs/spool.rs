//! An ordered byte queue between one inflater thread and the layer applier that can run ahead.
//!
//! The inflater of a later layer starts while earlier layers are still being applied, so its
//! output has to wait somewhere. A [`Spool`] keeps a little of it in memory and, while no
//! reader is attached yet, writes the rest to an unlinked file in the staging area (the
//! *spill*) instead of stopping the inflater: that keeps the other cores busy when the applier
//! is the slow stage. Once the applier attaches, or when the spill reaches its limit, the
//! inflater blocks instead, so disk and memory stay bounded. Bytes leave in the order they
//! came in, whatever mix of memory and spill they went through.
//!
//! The spill files of one pull come from a [`SpillArea`]: a spool done with its file hands it
//! back, and the next layer that spills writes over the same pages from offset 0 instead of
//! allocating new ones (and freeing them again when the file closes). Only files that held at
//! most [`KEEP_BYTES`] are kept, so little dirty spill waits in the page cache between layers,
//! and the area closes them all when the pull's last spool and the area itself are gone.
//!
//! The spill is an optimisation, never a cause of failure: if its file cannot be created or
//! written, the inflater blocks as if the limit was reached. Bytes are hashed (diff_id) before
//! they enter the spool; the spill file has no name, so nothing else can open it.

use std::collections::VecDeque;
use std::fs::File;
use std::os::unix::fs::FileExt as _;
use std::path::PathBuf;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};

/// Spill files larger than this are closed when their spool is done, not kept for reuse.
pub(crate) const KEEP_BYTES: u64 = 64 << 20;
/// Most idle spill files an area keeps.
const KEEP_FILES: usize = 8;

/// Where the spools of one pull spill: a directory, and the spill files spools are done with.
#[derive(Debug, Clone)]
pub(crate) struct SpillArea {
    dir: PathBuf,
    idle: Arc<Mutex<Vec<File>>>,
}

impl SpillArea {
    /// Spill files go to (unnamed files in) `dir`.
    pub(crate) fn new(dir: PathBuf) -> Self {
        Self {
            dir,
            idle: Arc::default(),
        }
    }

    fn idle(&self) -> MutexGuard<'_, Vec<File>> {
        self.idle.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A file to spill to: one a spool is done with, else a new unnamed one.
    fn take(&self) -> std::io::Result<File> {
        match self.idle().pop() {
            Some(file) => Ok(file),
            None => tempfile::tempfile_in(&self.dir),
        }
    }

    /// A spool is done with `file`, which it filled up to `used` bytes.
    fn give_back(&self, file: File, used: u64) {
        let mut idle = self.idle();
        if used <= KEEP_BYTES && idle.len() < KEEP_FILES {
            idle.push(file);
        }
    }

    /// Idle files kept for reuse.
    #[cfg(test)]
    pub(crate) fn idle_files(&self) -> usize {
        self.idle().len()
    }
}

/// How much a spool may hold.
#[derive(Debug, Clone, Copy)]
pub(crate) struct SpoolLimits {
    /// Bytes kept in memory.
    pub memory: usize,
    /// Bytes written to the spill file and not yet read; 0 disables spilling.
    pub spill: u64,
}

/// Where the bytes of one queued piece are.
enum Segment {
    /// `data[..length]`.
    Memory { data: Vec<u8>, length: usize },
    /// `length` bytes of the spill file at `offset`.
    Spilled { offset: u64, length: u64 },
}

struct State<T> {
    segments: VecDeque<Segment>,
    /// Bytes in memory segments.
    memory: usize,
    /// Bytes in spilled segments.
    spilled: u64,
    /// Total bytes ever spilled (for tests and the log).
    spilled_total: u64,
    file: Option<Arc<File>>,
    file_end: u64,
    /// Set when the spill file could not be used: block from then on.
    spill_broken: bool,
    /// The reader is consuming: block rather than spill.
    attached: bool,
    /// The reader is gone: the producer stops.
    closed: bool,
    /// The producer's last word (end of stream or failure).
    end: Option<T>,
    /// Emptied buffers, handed back to the producer.
    free: Vec<Vec<u8>>,
    /// Who sleeps on the condition variable: wake-ups (a system call each) only then.
    producer_waits: bool,
    reader_waits: bool,
}

/// The queue; see the module docs. `T` is what the producer says at the end.
pub(crate) struct Spool<T> {
    state: Mutex<State<T>>,
    changed: Condvar,
    limits: SpoolLimits,
    spill: Option<SpillArea>,
}

/// The reader went away: the producer should stop.
#[derive(Debug)]
pub(crate) struct Closed;

/// What the reader gets next.
pub(crate) enum Next<T> {
    /// The first `.1` bytes of `.0` come next.
    Data(Vec<u8>, usize),
    /// The producer ended with this (every byte before it was read).
    End(T),
    /// Reading the spill file failed.
    Failed(std::io::Error),
}

impl<T> Spool<T> {
    /// An empty spool; spilled bytes go to a file from `spill` (none: never spill).
    pub(crate) fn new(limits: SpoolLimits, spill: Option<SpillArea>) -> Self {
        Spool {
            state: Mutex::new(State {
                segments: VecDeque::new(),
                memory: 0,
                spilled: 0,
                spilled_total: 0,
                file: None,
                file_end: 0,
                spill_broken: false,
                attached: false,
                closed: false,
                end: None,
                free: Vec::new(),
                producer_waits: false,
                reader_waits: false,
            }),
            changed: Condvar::new(),
            limits,
            spill,
        }
    }

    fn lock(&self) -> MutexGuard<'_, State<T>> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Sleep until the other side changed something (`producer`: who is sleeping).
    fn wait<'a>(
        &self,
        mut guard: MutexGuard<'a, State<T>>,
        producer: bool,
    ) -> MutexGuard<'a, State<T>> {
        if producer {
            guard.producer_waits = true;
        } else {
            guard.reader_waits = true;
        }
        let mut guard = self
            .changed
            .wait(guard)
            .unwrap_or_else(PoisonError::into_inner);
        if producer {
            guard.producer_waits = false;
        } else {
            guard.reader_waits = false;
        }
        guard
    }

    /// Release the lock, waking the other side if it sleeps.
    fn wake(&self, guard: MutexGuard<'_, State<T>>) {
        let sleeping = guard.producer_waits || guard.reader_waits;
        drop(guard);
        if sleeping {
            self.changed.notify_all();
        }
    }

    /// A buffer of `size` bytes for the producer to fill (recycled when possible).
    pub(crate) fn buffer(&self, size: usize) -> Vec<u8> {
        let mut buffer = self.lock().free.pop().unwrap_or_default();
        buffer.resize(size, 0);
        buffer
    }

    /// Queue the first `length` bytes of `data`. Blocks while the spool is full; fails once
    /// the reader is gone.
    pub(crate) fn push(&self, data: Vec<u8>, length: usize) -> Result<(), Closed> {
        let mut state = self.lock();
        loop {
            if state.closed {
                return Err(Closed);
            }
            // Always accept one piece into an empty memory queue, whatever the limit.
            if state.memory == 0 || state.memory + length <= self.limits.memory {
                // Memory goes after any spilled bytes: order is kept by the segment queue.
                state.memory += length;
                state.segments.push_back(Segment::Memory { data, length });
                self.wake(state);
                return Ok(());
            }
            if !state.attached
                && !state.spill_broken
                && state.spilled + length as u64 <= self.limits.spill
            {
                state = self.spill(state, &data[..length]);
                if !state.spill_broken {
                    state.free.push(data);
                    return Ok(());
                }
                continue;
            }
            state = self.wait(state, true);
        }
    }

    /// Append `bytes` to the spill file; on any failure mark the spill broken (the caller
    /// then blocks instead) and queue nothing.
    fn spill<'a>(
        &'a self,
        mut state: MutexGuard<'a, State<T>>,
        bytes: &[u8],
    ) -> MutexGuard<'a, State<T>> {
        if state.file.is_none() {
            let created = self
                .spill
                .as_ref()
                .map(SpillArea::take)
                .and_then(Result::ok);
            match created {
                Some(file) => state.file = Some(Arc::new(file)),
                None => {
                    state.spill_broken = true;
                    return state;
                }
            }
        }
        let Some(file) = state.file.clone() else {
            state.spill_broken = true;
            return state;
        };
        // Only this thread appends, so the offset is ours while the lock is released.
        let offset = state.file_end;
        drop(state);
        let written = file.write_all_at(bytes, offset);
        let mut state = self.lock();
        if written.is_err() {
            state.spill_broken = true;
            return state;
        }
        let length = bytes.len() as u64;
        state.file_end = offset + length;
        state.spilled += length;
        state.spilled_total += length;
        match state.segments.back_mut() {
            Some(Segment::Spilled {
                offset: last,
                length: last_length,
            }) if *last + *last_length == offset => *last_length += length,
            _ => state
                .segments
                .push_back(Segment::Spilled { offset, length }),
        }
        if state.reader_waits {
            self.changed.notify_all();
        }
        state
    }

    /// The producer's last word, after its last byte.
    pub(crate) fn end(&self, last: T) {
        let mut state = self.lock();
        state.end = Some(last);
        self.wake(state);
    }

    /// The reader starts consuming: from now on the producer blocks instead of spilling.
    pub(crate) fn attach(&self) {
        let mut state = self.lock();
        state.attached = true;
        self.wake(state);
    }

    /// The reader is gone: a blocked or later `push` fails.
    pub(crate) fn close(&self) {
        let mut state = self.lock();
        state.closed = true;
        state.segments.clear();
        let file = state.file.take();
        let used = state.file_end;
        drop(state);
        self.changed.notify_all();
        self.give_back(file, used);
    }

    /// Hand the spill file back to the area, unless a reader still holds it (then it closes
    /// with the last holder).
    fn give_back(&self, file: Option<Arc<File>>, used: u64) {
        if let (Some(area), Some(file)) = (&self.spill, file.and_then(Arc::into_inner)) {
            area.give_back(file, used);
        }
    }

    /// Bytes that went through the spill file so far.
    pub(crate) fn spilled_total(&self) -> u64 {
        self.lock().spilled_total
    }

    /// The next bytes (blocking until there are some), or the end. `scratch` is a buffer the
    /// reader is done with: recycled, or filled from the spill file.
    pub(crate) fn take(&self, mut scratch: Vec<u8>) -> Next<T> {
        let mut state = self.lock();
        loop {
            match state.segments.front_mut() {
                Some(Segment::Memory { .. }) => {
                    let Some(Segment::Memory { data, length }) = state.segments.pop_front() else {
                        unreachable!("the front segment is in memory");
                    };
                    state.memory -= length;
                    if scratch.capacity() > 0 {
                        state.free.push(scratch);
                    }
                    self.wake(state);
                    return Next::Data(data, length);
                }
                Some(Segment::Spilled { offset, length }) => {
                    let (at, available) = (*offset, *length);
                    let Some(file) = state.file.clone() else {
                        return Next::Failed(std::io::Error::other("the spill file is gone"));
                    };
                    drop(state);
                    if scratch.len() < SPILL_READ {
                        scratch.resize(SPILL_READ, 0);
                    }
                    let wanted = scratch
                        .len()
                        .min(usize::try_from(available).unwrap_or(usize::MAX));
                    if let Err(error) = file.read_exact_at(&mut scratch[..wanted], at) {
                        return Next::Failed(error);
                    }
                    let mut state = self.lock();
                    // Only the reader removes from the front; the producer may have grown it.
                    if let Some(Segment::Spilled { offset, length }) = state.segments.front_mut() {
                        *offset += wanted as u64;
                        *length -= wanted as u64;
                        if *length == 0 {
                            state.segments.pop_front();
                        }
                    }
                    state.spilled -= wanted as u64;
                    self.wake(state);
                    return Next::Data(scratch, wanted);
                }
                None => {
                    if let Some(last) = state.end.take() {
                        return Next::End(last);
                    }
                    state = self.wait(state, false);
                }
            }
        }
    }
}

/// Bytes read from the spill file at a time.
const SPILL_READ: usize = 256 * 1024;

impl<T> Drop for Spool<T> {
    fn drop(&mut self) {
        let state = self.state.get_mut().unwrap_or_else(PoisonError::into_inner);
        let (file, used) = (state.file.take(), state.file_end);
        self.give_back(file, used);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn drain(spool: &Spool<&'static str>) -> (Vec<u8>, &'static str) {
        let mut out = Vec::new();
        let mut scratch = Vec::new();
        loop {
            match spool.take(scratch) {
                Next::Data(data, length) => {
                    out.extend_from_slice(&data[..length]);
                    scratch = data;
                }
                Next::End(last) => return (out, last),
                Next::Failed(error) => panic!("{error}"),
            }
        }
    }

    fn piece(index: usize, size: usize) -> Vec<u8> {
        (0..size).map(|i| (i * 7 + index) as u8).collect()
    }

    #[test]
    fn a_producer_ahead_of_its_reader_spills_and_the_order_holds() {
        let dir = tempfile::tempdir().unwrap();
        let limits = SpoolLimits {
            memory: 3000,
            spill: 1 << 20,
        };
        let spool = Spool::new(limits, Some(SpillArea::new(dir.path().to_path_buf())));
        let mut expected = Vec::new();
        // Nobody reads yet: everything past the memory limit goes to the spill file.
        for index in 0..20 {
            let data = piece(index, 1500);
            expected.extend_from_slice(&data);
            spool.push(data, 1500).unwrap();
        }
        spool.end("done");
        assert_eq!(spool.spilled_total(), 18 * 1500);
        // The spill file has no name in the staging directory.
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
        spool.attach();
        let (out, last) = drain(&spool);
        assert_eq!(out, expected);
        assert_eq!(last, "done");
    }

    #[test]
    fn a_spill_file_is_reused_by_the_next_spool_of_the_area() {
        let dir = tempfile::tempdir().unwrap();
        let area = SpillArea::new(dir.path().to_path_buf());
        let limits = SpoolLimits {
            memory: 1000,
            spill: 1 << 20,
        };
        let fill = |pieces: std::ops::Range<usize>, size: usize| {
            let spool = Spool::new(limits, Some(area.clone()));
            let mut expected = Vec::new();
            for index in pieces {
                expected.extend_from_slice(&piece(index, size));
                spool.push(piece(index, size), size).unwrap();
            }
            spool.end("done");
            spool.attach();
            let (out, _) = drain(&spool);
            assert_eq!(out, expected);
            spool.spilled_total()
        };
        // The first spool writes 20 pieces; the second overwrites the same file with fewer,
        // different ones, and reads back only its own (no stale byte after them).
        assert_eq!(fill(0..20, 1500), 19 * 1500);
        assert_eq!(area.idle_files(), 1);
        assert_eq!(fill(100..105, 700), 4 * 700);
        assert_eq!(area.idle_files(), 1, "the same file went back");
        // One spilling more than KEEP_BYTES closes its file instead.
        let big = usize::try_from(KEEP_BYTES).unwrap() + 4096;
        let spool: Spool<&str> = Spool::new(
            SpoolLimits {
                memory: 1,
                spill: KEEP_BYTES * 2,
            },
            Some(area.clone()),
        );
        spool.push(vec![1], 1).unwrap();
        spool.push(vec![2; big], big).unwrap();
        assert_eq!(area.idle_files(), 0, "the spool holds the file");
        drop(spool);
        assert_eq!(area.idle_files(), 0, "too large to keep");
    }

    #[test]
    fn memory_after_spill_comes_out_after_the_spilled_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let limits = SpoolLimits {
            memory: 1000,
            spill: 1 << 20,
        };
        let spool = Spool::new(limits, Some(SpillArea::new(dir.path().to_path_buf())));
        spool.push(piece(0, 1000), 1000).unwrap(); // memory
        spool.push(piece(1, 1000), 1000).unwrap(); // spilled
        let Next::Data(first, 1000) = spool.take(Vec::new()) else {
            panic!("the first piece comes first, whole");
        };
        assert_eq!(first, piece(0, 1000));
        spool.push(piece(2, 1000), 1000).unwrap(); // memory again, behind the spill
        spool.end("done");
        let (out, _) = drain(&spool);
        assert_eq!(out, [piece(1, 1000), piece(2, 1000)].concat());
    }

    #[test]
    fn an_attached_reader_makes_the_producer_block_instead_of_spilling() {
        let dir = tempfile::tempdir().unwrap();
        let limits = SpoolLimits {
            memory: 1000,
            spill: 1 << 20,
        };
        let spool = Arc::new(Spool::new(
            limits,
            Some(SpillArea::new(dir.path().to_path_buf())),
        ));
        spool.attach();
        let producer = std::thread::spawn({
            let spool = Arc::clone(&spool);
            move || {
                for index in 0..50 {
                    spool.push(piece(index, 1000), 1000).unwrap();
                }
                spool.end("done");
            }
        });
        let (out, _) = drain(&spool);
        producer.join().unwrap();
        let expected: Vec<u8> = (0..50).flat_map(|index| piece(index, 1000)).collect();
        assert_eq!(out, expected);
        assert_eq!(spool.spilled_total(), 0);
    }

    #[test]
    fn a_full_spill_blocks_the_producer_until_the_reader_catches_up() {
        let dir = tempfile::tempdir().unwrap();
        let limits = SpoolLimits {
            memory: 1000,
            spill: 4000,
        };
        let spool = Arc::new(Spool::new(
            limits,
            Some(SpillArea::new(dir.path().to_path_buf())),
        ));
        let (progress, pushed) = std::sync::mpsc::channel();
        let producer = std::thread::spawn({
            let spool = Arc::clone(&spool);
            move || {
                for index in 0..10 {
                    spool.push(piece(index, 1000), 1000).unwrap();
                    progress.send(index).unwrap();
                }
                spool.end("done");
            }
        });
        // 1000 bytes in memory and 4000 spilled: the sixth push cannot go anywhere.
        let seen: Vec<usize> = (0..5).map(|_| pushed.recv().unwrap()).collect();
        assert_eq!(seen, [0, 1, 2, 3, 4]);
        let waited = pushed.recv_timeout(std::time::Duration::from_millis(300));
        assert!(waited.is_err(), "the producer went past the spill limit");
        let (out, _) = drain(&spool);
        producer.join().unwrap();
        let expected: Vec<u8> = (0..10).flat_map(|index| piece(index, 1000)).collect();
        assert_eq!(out, expected);
    }

    #[test]
    fn without_a_usable_spill_directory_the_producer_blocks() {
        let limits = SpoolLimits {
            memory: 1000,
            spill: 1 << 20,
        };
        let missing = std::env::temp_dir().join("acrpull-no-such-spill-dir-3f9c");
        let spool = Arc::new(Spool::new(limits, Some(SpillArea::new(missing))));
        let producer = std::thread::spawn({
            let spool = Arc::clone(&spool);
            move || {
                for index in 0..5 {
                    spool.push(piece(index, 1000), 1000).unwrap();
                }
                spool.end("done");
            }
        });
        let (out, _) = drain(&spool);
        producer.join().unwrap();
        assert_eq!(out.len(), 5000);
        assert_eq!(spool.spilled_total(), 0);
    }

    #[test]
    fn closing_wakes_a_blocked_producer() {
        let limits = SpoolLimits {
            memory: 1000,
            spill: 0,
        };
        let spool = Arc::new(Spool::<&'static str>::new(limits, None));
        let producer = std::thread::spawn({
            let spool = Arc::clone(&spool);
            move || {
                spool.push(piece(0, 1000), 1000)?;
                spool.push(piece(1, 1000), 1000)
            }
        });
        std::thread::sleep(std::time::Duration::from_millis(50));
        spool.close();
        assert!(producer.join().unwrap().is_err());
    }
}
