//! A blob shared with readers while it downloads: they follow the file as it grows and see
//! end-of-file only once the whole blob verified.

use std::fs::File;
use std::os::unix::fs::FileExt as _;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};

/// A blob file shared, while it downloads, with one or more blocking readers
/// ([`BlobTap::reader`]). Readers see the bytes written so far, wait for more, reach
/// end-of-file only when the download finished *and verified*, and fail if it failed.
#[derive(Debug, Default)]
pub struct BlobTap {
    state: Mutex<TapState>,
    changed: Condvar,
}

#[derive(Debug, Default)]
struct TapState {
    file: Option<Arc<File>>,
    written: u64,
    end: Option<std::result::Result<(), String>>,
    /// Bumped when the download starts over ([`BlobTap::restart`]).
    generation: u32,
}

impl BlobTap {
    fn lock(&self) -> MutexGuard<'_, TapState> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub(super) fn open(&self, file: File) {
        let mut state = self.lock();
        state.file = Some(Arc::new(file));
        state.written = 0;
        drop(state);
        self.changed.notify_all();
    }

    pub(super) fn advance(&self, written: u64) {
        self.lock().written = written;
        self.changed.notify_all();
    }

    /// Mark the download finished; the first call wins.
    pub fn finish(&self, result: std::result::Result<(), String>) {
        let mut state = self.lock();
        if state.end.is_none() {
            state.end = Some(result);
        }
        drop(state);
        self.changed.notify_all();
    }

    /// The download starts over in a new file: readers must not have consumed anything yet
    /// (a reader that did fails).
    pub(super) fn restart(&self) {
        let mut state = self.lock();
        state.file = None;
        state.written = 0;
        state.generation += 1;
        drop(state);
        self.changed.notify_all();
    }

    /// Whether the download failed (or was cancelled).
    pub fn failed(&self) -> bool {
        matches!(self.lock().end, Some(Err(_)))
    }

    /// Whether the download ended (verified, failed or cancelled).
    pub fn ended(&self) -> bool {
        self.lock().end.is_some()
    }

    /// Use an already complete and verified file (a blob that was present).
    pub fn complete(&self, file: File) {
        let length = file.metadata().map(|m| m.len());
        let mut state = self.lock();
        match length {
            Ok(length) => {
                state.file = Some(Arc::new(file));
                state.written = length;
                state.end.get_or_insert(Ok(()));
            }
            Err(e) => {
                state.end.get_or_insert(Err(e.to_string()));
            }
        }
        drop(state);
        self.changed.notify_all();
    }

    /// Block until the blob has a file to read (its download began, or it was present) or
    /// it ended without one; returns whether there is a file. Reporters heard about the
    /// blob (`on_blob_start`) by then.
    pub fn wait_started(&self) -> bool {
        let mut state = self.lock();
        while state.file.is_none() && state.end.is_none() {
            state = self
                .changed
                .wait(state)
                .unwrap_or_else(std::sync::PoisonError::into_inner);
        }
        state.file.is_some()
    }

    /// A reader from the start of the blob. It blocks: use it on a blocking thread.
    pub fn reader(self: &Arc<Self>) -> TapReader {
        TapReader {
            tap: Arc::clone(self),
            position: 0,
            generation: 0,
        }
    }
}

/// Marks the tap failed if the download future is dropped before it finished.
pub(super) struct TapGuard(pub(super) Arc<BlobTap>);

impl Drop for TapGuard {
    fn drop(&mut self) {
        self.0.finish(Err("the download was cancelled".into()));
    }
}

/// A blocking reader over a [`BlobTap`].
#[derive(Debug)]
pub struct TapReader {
    tap: Arc<BlobTap>,
    position: u64,
    /// The download generation this reader's bytes came from.
    generation: u32,
}

impl std::io::Read for TapReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let mut state = self.tap.lock();
        loop {
            if self.position == 0 {
                self.generation = state.generation;
            } else if self.generation != state.generation {
                return Err(std::io::Error::other(
                    "the download started over after these bytes were read",
                ));
            }
            if let Some(Err(message)) = &state.end {
                return Err(std::io::Error::other(format!("download failed: {message}")));
            }
            if state.written > self.position {
                let available = state.written - self.position;
                let length = buf
                    .len()
                    .min(usize::try_from(available).unwrap_or(usize::MAX));
                let Some(file) = state.file.clone() else {
                    return Err(std::io::Error::other("blob tap has no file"));
                };
                drop(state);
                let read = file.read_at(&mut buf[..length], self.position)?;
                if read == 0 {
                    return Err(std::io::ErrorKind::UnexpectedEof.into());
                }
                self.position += read as u64;
                return Ok(read);
            }
            if state.end.is_some() {
                return Ok(0);
            }
            state = self
                .tap
                .changed
                .wait(state)
                .unwrap_or_else(std::sync::PoisonError::into_inner);
        }
    }
}
