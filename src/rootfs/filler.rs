//! Filling regular files on a second thread while the applier goes on with the next entries.
//!
//! A layer is applied by one thread in tar order: resolving parents, creating entries,
//! whiteouts. Yet most of its system time is writing file contents into the page cache and
//! setting each file's owner, mode and times, which needs only the descriptor of a file
//! already created. So the applier creates each regular file (`O_CREAT|O_EXCL`, in order, so
//! names, replacements, hardlinks and whiteouts mean what they meant) and copies its contents
//! into a batch; the filler thread writes them, sets the metadata and closes the file or hands
//! it to early writeback. No name depends on the contents: a later entry that replaces or
//! removes the file unlinks a name, and the descriptor keeps the inode.
//!
//! Bounded: at most [`BATCHES`] batches of [`BATCH_BYTES`] bytes and [`BATCH_FILES`] open files
//! exist. The applier waits for the thread at the end of the layer, before directory modes and
//! times are set and before the layer counts as applied; the thread's first error fails the
//! layer (the applier notices it at the next batch at the latest).

use std::io::{ErrorKind, Read};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{channel, sync_channel, Receiver, Sender, SyncSender};
use std::sync::Arc;
use std::thread::{Scope, ScopedJoinHandle};

use super::entry::{Degraded, FileError, NewFile};
use super::error::Error;
use super::writeback::Writeback;

/// Contents bytes per batch.
const BATCH_BYTES: usize = 256 << 10;
/// Files that start in one batch (each holds a descriptor until the thread closes it).
const BATCH_FILES: usize = 32;
/// Batches in existence: one being filled, the others queued or being written.
const BATCHES: usize = 4;

/// A stretch of contents for one file.
struct Job {
    /// Set on a file's first job: the file the following bytes belong to.
    file: Option<NewFile>,
    start: usize,
    end: usize,
    /// The file's contents end here.
    last: bool,
}

/// Contents of consecutive files, in order.
struct Batch {
    data: Vec<u8>,
    filled: usize,
    jobs: Vec<Job>,
    files: usize,
}

impl Batch {
    fn new() -> Self {
        Batch {
            data: vec![0; BATCH_BYTES],
            filled: 0,
            jobs: Vec::new(),
            files: 0,
        }
    }

    /// A placeholder that holds no memory.
    fn empty() -> Self {
        Batch {
            data: Vec::new(),
            filled: 0,
            jobs: Vec::new(),
            files: 0,
        }
    }

    fn has_room(&self, new_file: bool) -> bool {
        self.filled < self.data.len() && (!new_file || self.files < BATCH_FILES)
    }
}

/// What the thread reports when it ends.
struct Report {
    degraded: Degraded,
    error: Option<Error>,
}

/// The applier's side: batches being filled, and the thread writing them.
pub(crate) struct Filler<'scope> {
    batch: Batch,
    work: Option<SyncSender<Batch>>,
    free: Receiver<Batch>,
    /// Batches that may still be allocated.
    unallocated: usize,
    /// Set by the thread on its first error, and by the applier when it gives up early.
    failed: Arc<AtomicBool>,
    thread: Option<ScopedJoinHandle<'scope, Report>>,
}

impl<'scope> Filler<'scope> {
    /// Start the thread in `scope`; `None` if the system refuses a thread (the applier then
    /// writes the files itself).
    pub(crate) fn start<'env>(
        scope: &'scope Scope<'scope, 'env>,
        writeback: Option<&'env Writeback>,
    ) -> Option<Self> {
        let (work, queued) = sync_channel::<Batch>(BATCHES);
        let (recycle, free) = channel::<Batch>();
        let failed = Arc::new(AtomicBool::new(false));
        let thread = std::thread::Builder::new()
            .name("acrpull-fill".into())
            .spawn_scoped(scope, {
                let failed = Arc::clone(&failed);
                move || run(queued, recycle, writeback, &failed)
            })
            .ok()?;
        Some(Filler {
            batch: Batch::new(),
            work: Some(work),
            free,
            unallocated: BATCHES - 1,
            failed,
            thread: Some(thread),
        })
    }

    /// Copy the contents of `file` from `data` (an entry of the layer stream) and hand them
    /// over. Read errors of `data` are `Err(FileError::Stream)` for the caller to classify.
    pub(crate) fn fill(&mut self, file: NewFile, data: &mut dyn Read) -> Result<(), FileError> {
        let mut file = Some(file);
        // Whether the current batch's last job is this file's.
        let mut open_job = false;
        loop {
            if !self.batch.has_room(file.is_some()) {
                self.hand_over()?;
                open_job = false;
            }
            let batch = &mut self.batch;
            let start = batch.filled;
            let read = match data.read(&mut batch.data[start..]) {
                Ok(read) => read,
                Err(error) if error.kind() == ErrorKind::Interrupted => continue,
                Err(error) => return Err(FileError::Stream(error)),
            };
            if read == 0 {
                break;
            }
            batch.filled += read;
            match batch.jobs.last_mut() {
                Some(job) if open_job => job.end = batch.filled,
                _ => {
                    batch.files += usize::from(file.is_some());
                    batch.jobs.push(Job {
                        file: file.take(),
                        start,
                        end: batch.filled,
                        last: false,
                    });
                    open_job = true;
                }
            }
        }
        match self.batch.jobs.last_mut() {
            Some(job) if open_job => job.last = true,
            _ => {
                // Empty, or its contents ended right at a batch boundary.
                let batch = &mut self.batch;
                batch.files += usize::from(file.is_some());
                batch.jobs.push(Job {
                    file: file.take(),
                    start: batch.filled,
                    end: batch.filled,
                    last: true,
                });
            }
        }
        Ok(())
    }

    /// Queue the current batch and take an empty one (waiting for the thread when every
    /// batch is in use); fails with the thread's error once it has one.
    fn hand_over(&mut self) -> Result<(), Error> {
        if self.failed.load(Ordering::Relaxed) {
            return Err(self.stop());
        }
        let next = match self.free.try_recv() {
            Ok(batch) => batch,
            Err(_) if self.unallocated > 0 => {
                self.unallocated -= 1;
                Batch::new()
            }
            Err(_) => match self.free.recv() {
                Ok(batch) => batch,
                Err(_) => return Err(self.stop()),
            },
        };
        let full = std::mem::replace(&mut self.batch, next);
        match &self.work {
            Some(work) if work.send(full).is_ok() => Ok(()),
            _ => Err(self.stop()),
        }
    }

    /// Wait until every file handed over is written and closed; add what the thread degraded
    /// to `degraded`, and return its first error.
    pub(crate) fn finish(mut self, degraded: &mut Degraded) -> Result<(), Error> {
        if let Some(work) = self.work.take() {
            if !self.batch.jobs.is_empty() {
                let last = std::mem::replace(&mut self.batch, Batch::empty());
                // A thread that is gone says why when joined.
                let _ = work.send(last);
            }
        }
        let report = self.join()?;
        degraded.absorb(report.degraded);
        report.error.map_or(Ok(()), Err)
    }

    /// End the thread after a failure and return its error.
    fn stop(&mut self) -> Error {
        match self.join() {
            Ok(Report {
                error: Some(error), ..
            }) => error,
            Ok(_) => stopped(),
            Err(error) => error,
        }
    }

    /// Close the queue and wait for the thread's report (a panic of the thread goes on here).
    fn join(&mut self) -> Result<Report, Error> {
        self.work.take();
        match self.thread.take().map(ScopedJoinHandle::join) {
            Some(Ok(report)) => Ok(report),
            Some(Err(panic)) => std::panic::resume_unwind(panic),
            None => Err(stopped()),
        }
    }
}

impl Drop for Filler<'_> {
    /// On an early return of the applier (its own error), the thread skips what is queued,
    /// and is joined here rather than by the scope (which would only wait for its closure).
    fn drop(&mut self) {
        self.failed.store(true, Ordering::Relaxed);
        self.work.take();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn stopped() -> Error {
    Error::io(
        "write",
        b"",
        std::io::Error::other("the file writing thread stopped"),
    )
}

/// The thread: write each batch's contents in order, finish each file after its last job,
/// and give the batch back. After the first error (its own, or the applier's: `failed`) it
/// only recycles batches, dropping (so closing) their files: the layer fails and its output
/// is discarded.
fn run(
    queued: Receiver<Batch>,
    recycle: Sender<Batch>,
    writeback: Option<&Writeback>,
    failed: &AtomicBool,
) -> Report {
    let mut report = Report {
        degraded: Degraded::default(),
        error: None,
    };
    let mut current: Option<(NewFile, u64)> = None;
    for mut batch in queued {
        for job in batch.jobs.drain(..) {
            if report.error.is_some() || failed.load(Ordering::Relaxed) {
                break;
            }
            if let Err(error) = write_job(job, &batch.data, &mut current, &mut report, writeback) {
                failed.store(true, Ordering::Relaxed);
                report.error = Some(error);
                current = None;
            }
        }
        batch.jobs.clear();
        batch.filled = 0;
        batch.files = 0;
        if recycle.send(batch).is_err() {
            break;
        }
    }
    report
}

fn write_job(
    job: Job,
    data: &[u8],
    current: &mut Option<(NewFile, u64)>,
    report: &mut Report,
    writeback: Option<&Writeback>,
) -> Result<(), Error> {
    if let Some(file) = job.file {
        *current = Some((file, 0));
    }
    let Some((file, length)) = current.as_mut() else {
        return Err(Error::io(
            "write",
            b"",
            std::io::Error::other("file contents without their file"),
        ));
    };
    let bytes = &data[job.start..job.end];
    if !bytes.is_empty() {
        file.write(bytes)?;
        *length += bytes.len() as u64;
    }
    if job.last {
        if let Some((file, length)) = current.take() {
            file.finish(length, &mut report.degraded, writeback)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rootfs::entry::{Metadata, Target};
    use rustix::fs::Timespec;
    use std::os::fd::AsFd;
    use std::os::unix::fs::MetadataExt;

    fn metadata(mode: u32, xattrs: Vec<(String, Vec<u8>)>) -> Metadata {
        let time = Timespec {
            tv_sec: 1_500_000_000,
            tv_nsec: 7,
        };
        Metadata {
            mode,
            uid: 0,
            gid: 0,
            atime: time,
            mtime: time,
            xattrs,
        }
    }

    fn create(dir: &std::fs::File, name: &str, meta: &Metadata) -> NewFile {
        Target {
            dir: dir.as_fd(),
            name: name.as_bytes(),
            path: name.as_bytes(),
            rootless: true,
            created_owner: None,
            umask: None,
        }
        .create_file(meta)
        .unwrap()
    }

    fn contents(seed: usize, length: usize) -> Vec<u8> {
        (0..length)
            .map(|index| ((index + seed) % 253) as u8)
            .collect()
    }

    #[test]
    fn files_of_every_size_get_their_contents_mode_and_times_in_any_batch_layout() {
        let temp = tempfile::tempdir().unwrap();
        let dir = std::fs::File::open(temp.path()).unwrap();
        // Around the batch boundaries, and more files than one batch starts.
        let mut lengths = vec![0, 1, BATCH_BYTES - 1, BATCH_BYTES, BATCH_BYTES + 1, 0];
        lengths.extend([2 * BATCH_BYTES + 17, 5]);
        lengths.extend((0..3 * BATCH_FILES).map(|index| index * 100));
        std::thread::scope(|scope| {
            let mut filler = Filler::start(scope, None).unwrap();
            for (index, &length) in lengths.iter().enumerate() {
                let file = create(&dir, &index.to_string(), &metadata(0o640, Vec::new()));
                filler
                    .fill(file, &mut &contents(index, length)[..])
                    .unwrap_or_else(|_| panic!("file {index}"));
            }
            let mut degraded = Degraded::default();
            filler.finish(&mut degraded).unwrap();
        });
        for (index, &length) in lengths.iter().enumerate() {
            let path = temp.path().join(index.to_string());
            assert_eq!(
                std::fs::read(&path).unwrap(),
                contents(index, length),
                "{index}"
            );
            let meta = std::fs::metadata(&path).unwrap();
            assert_eq!(meta.mode() & 0o7777, 0o640);
            assert_eq!((meta.mtime(), meta.mtime_nsec()), (1_500_000_000, 7));
        }
    }

    #[test]
    fn the_first_failure_of_the_thread_fails_the_applier_and_names_the_file() {
        let temp = tempfile::tempdir().unwrap();
        let dir = std::fs::File::open(temp.path()).unwrap();
        // An xattr name longer than the kernel's limit: ERANGE, a real error (unlike an
        // unsupported namespace, which is only degraded).
        let bad = metadata(
            0o644,
            vec![(format!("user.{}", "x".repeat(300)), b"v".to_vec())],
        );
        let (filled, result) = std::thread::scope(|scope| {
            let mut filler = Filler::start(scope, None).unwrap();
            filler
                .fill(create(&dir, "bad", &bad), &mut &b"x"[..])
                .unwrap();
            // The applier goes on until a batch boundary tells it.
            let mut filled = 0;
            let stopped = loop {
                let file = create(&dir, &format!("next{filled}"), &metadata(0o644, Vec::new()));
                match filler.fill(file, &mut &contents(0, BATCH_BYTES)[..]) {
                    Ok(()) if filled < 2 * BATCHES + 2 => filled += 1,
                    Ok(()) => break None,
                    Err(error) => break Some(error),
                }
            };
            let error = match stopped {
                Some(FileError::Apply(error)) => error,
                Some(FileError::Stream(error)) => panic!("not a stream error: {error}"),
                None => filler.finish(&mut Degraded::default()).unwrap_err(),
            };
            (filled, error)
        });
        assert!(
            filled <= 2 * BATCHES + 1,
            "the applier stopped early: {filled}"
        );
        let message = result.to_string();
        assert!(message.contains("set an xattr on `bad`"), "{message}");
    }

    #[test]
    fn a_stream_error_while_reading_contents_is_the_callers_to_classify() {
        struct Broken;
        impl Read for Broken {
            fn read(&mut self, _: &mut [u8]) -> std::io::Result<usize> {
                Err(std::io::Error::other("corrupt deflate stream"))
            }
        }
        let temp = tempfile::tempdir().unwrap();
        let dir = std::fs::File::open(temp.path()).unwrap();
        std::thread::scope(|scope| {
            let mut filler = Filler::start(scope, None).unwrap();
            let file = create(&dir, "f", &metadata(0o644, Vec::new()));
            assert!(matches!(
                filler.fill(file, &mut Broken),
                Err(FileError::Stream(_))
            ));
        });
    }
}
