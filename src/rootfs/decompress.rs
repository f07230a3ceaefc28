//! The layer byte pipeline: blob → decompressor → diff_id hasher → limits → tar parser.
//!
//! Decompression and the diff_id hash run on two threads of their own (one inflates, the next
//! hashes: `stages`), which hand the tar parser fixed-size chunks through a [`Spool`] (buffers recycled),
//! so inflating, hashing and the file system work of the applier overlap on as many cores, and
//! memory stays bounded whatever the layer size: either scoped
//! to one application ([`LayerReader::spawn`]), or started earlier, while lower layers are
//! still being applied ([`Inflating::start`]), when it may spill what it inflated ahead to the
//! staging area. [`LayerReader::new`] runs the same pipeline inline.
//!
//! Limits live in the reader because the tar crate buffers PAX and GNU long-name headers with
//! `read_all` and no cap (docs/unpack.md 3.5). The applier opens a *header window* around each call
//! to the entry iterator: bytes read while it is open are extension headers (plus a few header
//! blocks and padding), and exceeding the window fails the read. A total byte budget stops
//! decompression bombs. Which limit tripped (or whether the blob source itself failed) is
//! recorded in shared state, because the tar crate may wrap our `io::Error` in its own.

use std::cell::RefCell;
use std::io::{self, BufReader, Read};
use std::rc::Rc;
use std::sync::Arc;
use std::thread::ScopedJoinHandle;

use super::priority::AheadPriority;
use super::spool::{Next, SpillArea, Spool, SpoolLimits};
use super::stages::{start_threads, Last};
use crate::digest::{Algorithm, Digest, Digester};
use crate::gzip::GzipMembers;
use crate::media_type::LayerCompression;

/// Uncompressed bytes per chunk handed from the decompression thread to the applier.
pub(super) const CHUNK: usize = 256 * 1024;
/// Chunks queued in memory between the two threads.
const QUEUE: usize = 4;
/// Most uncompressed bytes a layer inflated ahead may keep in its spill file; past that its
/// inflater waits for the applier.
const SPILL_LIMIT: u64 = 512 << 20;

/// Which guard stopped the stream, if any.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Tripped {
    /// The header window was exceeded.
    ExtensionHeader,
    /// The total uncompressed budget was exceeded.
    TotalBytes,
    /// The blob reader returned an error.
    BlobRead,
}

/// Shared limit state between the applier and the reader owned by the tar parser.
#[derive(Debug, Default)]
pub(crate) struct Budget {
    total: u64,
    total_limit: u64,
    window_remaining: Option<u64>,
    tripped: Option<Tripped>,
}

pub(crate) type SharedBudget = Rc<RefCell<Budget>>;

/// Start a header window of `limit` bytes.
pub(crate) fn open_window(budget: &SharedBudget, limit: u64) {
    budget.borrow_mut().window_remaining = Some(limit);
}

/// End the header window.
pub(crate) fn close_window(budget: &SharedBudget) {
    budget.borrow_mut().window_remaining = None;
}

/// Which limit tripped, if any.
pub(crate) fn tripped(budget: &SharedBudget) -> Option<Tripped> {
    budget.borrow().tripped
}

/// Counts compressed bytes and remembers whether the blob source itself failed.
pub(crate) struct BlobReader<R> {
    inner: R,
    count: u64,
    failed: bool,
}

impl<R: Read> Read for BlobReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self.inner.read(buf) {
            Ok(read) => {
                self.count += read as u64;
                Ok(read)
            }
            Err(error) => {
                if error.kind() != io::ErrorKind::Interrupted {
                    self.failed = true;
                }
                Err(error)
            }
        }
    }
}

/// The decompressor for one layer.
pub(crate) enum Decoder<R: Read> {
    Plain(BlobReader<R>),
    Gzip(Box<GzipMembers<BlobReader<R>>>),
    Zstd(zstd::stream::read::Decoder<'static, BufReader<BlobReader<R>>>),
}

impl<R: Read> Read for Decoder<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Decoder::Plain(reader) => reader.read(buf),
            Decoder::Gzip(reader) => reader.read(buf),
            Decoder::Zstd(reader) => reader.read(buf),
        }
    }
}

impl<R: Read> Decoder<R> {
    fn blob_failed(&self) -> bool {
        match self {
            Decoder::Plain(reader) => reader.failed,
            Decoder::Gzip(reader) => reader.get_ref().failed,
            Decoder::Zstd(reader) => reader.get_ref().get_ref().failed,
        }
    }

    /// Drain the compressed blob to EOF (after the decompressor reached its end) and return
    /// the number of compressed bytes read, or the error and whether the blob source failed.
    pub(super) fn finish(self) -> Result<u64, StreamError> {
        let mut blob = match self {
            Decoder::Plain(reader) => reader,
            Decoder::Gzip(reader) => reader.into_inner(),
            Decoder::Zstd(reader) => reader.finish().into_inner(),
        };
        match io::copy(&mut blob, &mut io::sink()) {
            Ok(_) => Ok(blob.count),
            Err(error) => Err(StreamError {
                error,
                blob: blob.failed,
            }),
        }
    }
}

/// A failure of the pipeline, and whether it came from the blob source.
#[derive(Debug)]
pub(crate) struct StreamError {
    pub(super) error: io::Error,
    pub(super) blob: bool,
}

/// What the pipeline reports at its end: diff_id, uncompressed and compressed byte counts.
pub(super) type Totals = (Digest, u64, u64);

/// Decompression, plus the diff_id hash when the pipeline runs inline (on threads, the hash
/// runs on a second one: `stages`).
pub(super) struct Pipeline<R: Read> {
    pub(super) decoder: Decoder<R>,
    pub(super) digester: Option<Digester>,
    pub(super) count: u64,
}

impl<R: Read> Pipeline<R> {
    pub(super) fn read(&mut self, buf: &mut [u8]) -> Result<usize, StreamError> {
        match self.decoder.read(buf) {
            Ok(read) => {
                if let Some(digester) = &mut self.digester {
                    digester.update(&buf[..read]);
                }
                self.count += read as u64;
                Ok(read)
            }
            Err(error) => Err(StreamError {
                error,
                blob: self.decoder.blob_failed(),
            }),
        }
    }

    /// The totals once the uncompressed stream was read to its end; drains the blob.
    fn finish(self) -> Result<Totals, StreamError> {
        let compressed = self.decoder.finish()?;
        let digester = self.digester.ok_or_else(|| StreamError {
            error: io::Error::other("the diff_id is hashed on another thread"),
            blob: false,
        })?;
        Ok((digester.finish(), self.count, compressed))
    }
}

/// Where the uncompressed bytes come from.
enum Upstream<R: Read> {
    /// The pipeline runs in the reading thread (the unit tests of the limits use it).
    #[cfg_attr(not(test), allow(dead_code))]
    Inline(Box<Pipeline<R>>),
    /// The pipeline runs on its own thread.
    Thread(SpoolReader),
}

/// The applier's end of the spool filled by a decompression thread.
struct SpoolReader {
    spool: Arc<Spool<Last>>,
    /// The thread, when it is not scoped: joined once it said its last word.
    thread: Option<std::thread::JoinHandle<()>>,
    /// The chunk being read: `current[start..end]` is still unread.
    current: Vec<u8>,
    start: usize,
    end: usize,
    totals: Option<Totals>,
    failed: bool,
}

impl SpoolReader {
    fn new(spool: Arc<Spool<Last>>, thread: Option<std::thread::JoinHandle<()>>) -> Self {
        SpoolReader {
            spool,
            thread,
            current: Vec::new(),
            start: 0,
            end: 0,
            totals: None,
            failed: false,
        }
    }

    fn read(&mut self, buf: &mut [u8]) -> Result<usize, StreamError> {
        while self.start == self.end {
            if self.totals.is_some() || buf.is_empty() {
                return Ok(0);
            }
            if self.failed {
                return Err(StreamError {
                    error: io::Error::other("the layer stream failed earlier"),
                    blob: false,
                });
            }
            let next = self.spool.take(std::mem::take(&mut self.current));
            if !matches!(next, Next::Data(..)) {
                if let Some(thread) = self.thread.take() {
                    // It has nothing left to do but return.
                    let _ = thread.join();
                }
            }
            match next {
                Next::Data(data, length) => {
                    self.current = data;
                    self.start = 0;
                    self.end = length;
                }
                Next::End(Ok(totals)) => self.totals = Some(totals),
                Next::End(Err(error)) => {
                    self.failed = true;
                    return Err(error);
                }
                Next::Failed(error) => {
                    self.failed = true;
                    return Err(StreamError { error, blob: false });
                }
            }
        }
        let length = buf.len().min(self.end - self.start);
        buf[..length].copy_from_slice(&self.current[self.start..self.start + length]);
        self.start += length;
        Ok(length)
    }
}

impl Drop for SpoolReader {
    fn drop(&mut self) {
        // A blocked decompression thread wakes up and stops; one waiting for blob bytes stops
        // when they come or when the download ends.
        self.spool.close();
    }
}

/// A layer whose decompression thread already runs, ahead of its application: what it
/// inflates waits in memory, then in an unlinked spill file, until the applier reads it with
/// [`LayerReader::from_inflating`]. Dropping it stops the thread (at its next chunk, or when
/// its blob ends).
pub(crate) struct Inflating {
    reader: SpoolReader,
    /// Its threads' CPU priority, lowered while the layer waits for its turn.
    priority: Arc<AheadPriority>,
}

impl Inflating {
    /// Start inflating `blob` (and hashing its uncompressed bytes with `algorithm`) on a new
    /// thread, spilling to `spill` while nobody reads. Stops after `total_limit` bytes.
    pub(crate) fn start<R: Read + Send + 'static>(
        blob: R,
        compression: LayerCompression,
        algorithm: Algorithm,
        total_limit: u64,
        spill: Option<SpillArea>,
    ) -> io::Result<Self> {
        let pipeline = pipeline(blob, compression, algorithm)?;
        let limits = SpoolLimits {
            memory: QUEUE * CHUNK,
            spill: if spill.is_some() { SPILL_LIMIT } else { 0 },
        };
        let spool = Arc::new(Spool::new(limits, spill));
        let priority = Arc::new(AheadPriority::default());
        let thread = start_threads(
            pipeline,
            &spool,
            total_limit,
            Some(&priority),
            |builder, run| builder.spawn(run),
        )?;
        Ok(Inflating {
            reader: SpoolReader::new(spool, Some(thread)),
            priority,
        })
    }

    /// Uncompressed bytes that went through the spill file so far.
    #[cfg_attr(not(test), allow(dead_code))]
    pub(crate) fn spilled(&self) -> u64 {
        self.reader.spool.spilled_total()
    }
}

/// The reader handed to the tar parser: enforces the limits on the uncompressed stream.
pub(crate) struct LayerReader<R: Read> {
    upstream: Upstream<R>,
    budget: SharedBudget,
}

pub(super) fn pipeline<R: Read>(
    blob: R,
    compression: LayerCompression,
    algorithm: Algorithm,
) -> io::Result<Pipeline<R>> {
    let blob = BlobReader {
        inner: blob,
        count: 0,
        failed: false,
    };
    let decoder = match compression {
        LayerCompression::None => Decoder::Plain(blob),
        LayerCompression::Gzip => Decoder::Gzip(Box::new(GzipMembers::new(blob))),
        LayerCompression::Zstd => Decoder::Zstd(zstd::stream::read::Decoder::new(blob)?),
    };
    Ok(Pipeline {
        decoder,
        digester: Some(Digester::new(algorithm)),
        count: 0,
    })
}

fn new_budget(total_limit: u64) -> SharedBudget {
    Rc::new(RefCell::new(Budget {
        total_limit,
        ..Budget::default()
    }))
}

impl<R: Read> LayerReader<R> {
    /// Build the pipeline for one blob, run inline by the reading thread.
    #[cfg_attr(not(test), allow(dead_code))]
    pub(crate) fn new(
        blob: R,
        compression: LayerCompression,
        algorithm: Algorithm,
        total_limit: u64,
    ) -> io::Result<(Self, SharedBudget)> {
        let budget = new_budget(total_limit);
        let reader = LayerReader {
            upstream: Upstream::Inline(Box::new(pipeline(blob, compression, algorithm)?)),
            budget: Rc::clone(&budget),
        };
        Ok((reader, budget))
    }

    /// Drain the uncompressed stream to EOF (trailing zero blocks and junk are hashed too),
    /// then the blob; returns (diff_id, uncompressed bytes, compressed bytes).
    pub(crate) fn finish(mut self) -> io::Result<(Digest, u64, u64)> {
        io::copy(&mut self, &mut io::sink())?;
        let result = match self.upstream {
            Upstream::Inline(pipeline) => pipeline.finish(),
            Upstream::Thread(ref mut reader) => reader.totals.take().ok_or_else(|| StreamError {
                error: io::Error::other("the layer stream ended without its totals"),
                blob: false,
            }),
        };
        result.map_err(|error| {
            if error.blob {
                self.budget.borrow_mut().tripped = Some(Tripped::BlobRead);
            }
            error.error
        })
    }
}

impl<R: Read + Send> LayerReader<R> {
    /// Build the pipeline for one blob on a new thread of `scope`. When this reader is
    /// dropped early, the thread stops at its next chunk. Join the thread (the handle) after
    /// dropping the reader to be sure it has exited: the scope only waits for its closure.
    pub(crate) fn spawn<'scope>(
        scope: &'scope std::thread::Scope<'scope, '_>,
        blob: R,
        compression: LayerCompression,
        algorithm: Algorithm,
        total_limit: u64,
    ) -> io::Result<(Self, SharedBudget, ScopedJoinHandle<'scope, ()>)>
    where
        R: 'scope,
    {
        let pipeline = pipeline(blob, compression, algorithm)?;
        let limits = SpoolLimits {
            memory: QUEUE * CHUNK,
            spill: 0,
        };
        let spool = Arc::new(Spool::new(limits, None));
        spool.attach();
        let thread = start_threads(pipeline, &spool, total_limit, None, |builder, run| {
            builder.spawn_scoped(scope, run)
        })?;
        let budget = new_budget(total_limit);
        let reader = LayerReader {
            upstream: Upstream::Thread(SpoolReader::new(spool, None)),
            budget: Rc::clone(&budget),
        };
        Ok((reader, budget, thread))
    }
}

impl LayerReader<io::Empty> {
    /// Read a layer whose inflater was started earlier; the limits count from its first byte.
    pub(crate) fn from_inflating(layer: Inflating, total_limit: u64) -> (Self, SharedBudget) {
        layer.reader.spool.attach();
        layer.priority.promote();
        let budget = new_budget(total_limit);
        let reader = LayerReader {
            upstream: Upstream::Thread(layer.reader),
            budget: Rc::clone(&budget),
        };
        (reader, budget)
    }
}

impl<R: Read> Read for LayerReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let result = match &mut self.upstream {
            Upstream::Inline(pipeline) => pipeline.read(buf),
            Upstream::Thread(reader) => reader.read(buf),
        };
        let read = match result {
            Ok(read) => read,
            Err(error) => {
                if error.blob {
                    self.budget.borrow_mut().tripped = Some(Tripped::BlobRead);
                }
                return Err(error.error);
            }
        };
        let mut budget = self.budget.borrow_mut();
        budget.total += read as u64;
        if budget.total > budget.total_limit {
            budget.tripped = Some(Tripped::TotalBytes);
            return Err(io::Error::other("uncompressed size limit exceeded"));
        }
        if let Some(remaining) = budget.window_remaining {
            if read as u64 > remaining {
                budget.tripped = Some(Tripped::ExtensionHeader);
                return Err(io::Error::other("extension header limit exceeded"));
            }
            budget.window_remaining = Some(remaining - read as u64);
        }
        Ok(read)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn gzip(data: &[u8]) -> Vec<u8> {
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        encoder.write_all(data).unwrap();
        encoder.finish().unwrap()
    }

    fn read_all(
        blob: Vec<u8>,
        compression: LayerCompression,
        limit: u64,
    ) -> io::Result<(Vec<u8>, Digest, u64)> {
        let (mut reader, _) = LayerReader::new(&blob[..], compression, Algorithm::Sha256, limit)?;
        let mut out = Vec::new();
        reader.read_to_end(&mut out)?;
        let (digest, _, compressed) = reader.finish()?;
        Ok((out, digest, compressed))
    }

    #[test]
    fn gzip_multimember_is_read_completely() {
        let mut blob = gzip(b"hello ");
        blob.extend(gzip(b"world"));
        let (out, digest, compressed) =
            read_all(blob.clone(), LayerCompression::Gzip, 1 << 20).unwrap();
        assert_eq!(out, b"hello world");
        assert_eq!(digest, Digest::sha256_of(b"hello world"));
        assert_eq!(compressed, blob.len() as u64);
    }

    #[test]
    fn zstd_multiframe_with_skippable_frame() {
        let mut blob = zstd::encode_all(&b"hello "[..], 1).unwrap();
        // A skippable frame: magic 0x184D2A50, little-endian length, payload.
        blob.extend([0x50, 0x2a, 0x4d, 0x18, 3, 0, 0, 0, 1, 2, 3]);
        blob.extend(zstd::encode_all(&b"world"[..], 1).unwrap());
        let (out, _, _) = read_all(blob, LayerCompression::Zstd, 1 << 20).unwrap();
        assert_eq!(out, b"hello world");
    }

    #[test]
    fn total_budget_stops_a_zero_bomb() {
        let blob = gzip(&vec![0u8; 4 << 20]);
        let (mut reader, budget) = LayerReader::new(
            &blob[..],
            LayerCompression::Gzip,
            Algorithm::Sha256,
            1 << 20,
        )
        .unwrap();
        assert!(io::copy(&mut reader, &mut io::sink()).is_err());
        assert_eq!(tripped(&budget), Some(Tripped::TotalBytes));
    }

    #[test]
    fn header_window_trips() {
        let data = vec![7u8; 10_000];
        let (mut reader, budget) = LayerReader::new(
            &data[..],
            LayerCompression::None,
            Algorithm::Sha256,
            1 << 20,
        )
        .unwrap();
        open_window(&budget, 1000);
        let mut buf = [0u8; 4096];
        assert!(reader.read(&mut buf).is_err());
        assert_eq!(tripped(&budget), Some(Tripped::ExtensionHeader));
    }

    #[test]
    fn threaded_pipeline_matches_inline() {
        let data: Vec<u8> = (0..3 * CHUNK + 123).map(|i| (i % 251) as u8).collect();
        let blob = gzip(&data);
        std::thread::scope(|scope| {
            let (mut reader, budget, _) = spawn_gzip(scope, &blob);
            let mut out = Vec::new();
            let mut small = [0u8; 1000];
            loop {
                let read = reader.read(&mut small).unwrap();
                if read == 0 {
                    break;
                }
                out.extend_from_slice(&small[..read]);
            }
            let (digest, uncompressed, compressed) = reader.finish().unwrap();
            assert_eq!(out, data);
            assert_eq!(digest, Digest::sha256_of(&data));
            assert_eq!(uncompressed, data.len() as u64);
            assert_eq!(compressed, blob.len() as u64);
            assert_eq!(tripped(&budget), None);
        });
    }

    /// Wait until `layer` spilled `bytes` (its inflater ran ahead with nobody reading).
    fn wait_spilled(layer: &Inflating, bytes: u64) {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        while layer.spilled() < bytes {
            assert!(
                std::time::Instant::now() < deadline,
                "spilled {}",
                layer.spilled()
            );
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
    }

    #[test]
    fn a_layer_inflated_ahead_spills_then_reads_back_whole_and_verified() {
        let data: Vec<u8> = (0..8 * CHUNK + 77).map(|i| (i * 31 % 253) as u8).collect();
        let blob = gzip(&data);
        let dir = tempfile::tempdir().unwrap();
        let layer = Inflating::start(
            io::Cursor::new(blob.clone()),
            LayerCompression::Gzip,
            Algorithm::Sha256,
            1 << 30,
            Some(SpillArea::new(dir.path().to_path_buf())),
        )
        .unwrap();
        // Four chunks wait in memory, the other five in the spill file.
        wait_spilled(&layer, (data.len() - QUEUE * CHUNK) as u64);
        let (mut reader, budget) = LayerReader::from_inflating(layer, 1 << 30);
        let mut out = Vec::new();
        reader.read_to_end(&mut out).unwrap();
        let (digest, uncompressed, compressed) = reader.finish().unwrap();
        assert!(out == data, "the bytes read back differ");
        assert_eq!(digest, Digest::sha256_of(&data));
        assert_eq!(uncompressed, data.len() as u64);
        assert_eq!(compressed, blob.len() as u64);
        assert_eq!(tripped(&budget), None);
    }

    #[test]
    fn a_layer_inflated_ahead_stops_at_the_size_limit() {
        let blob = gzip(&vec![0u8; 64 * CHUNK]);
        let dir = tempfile::tempdir().unwrap();
        let limit = 6 * CHUNK as u64;
        let layer = Inflating::start(
            io::Cursor::new(blob),
            LayerCompression::Gzip,
            Algorithm::Sha256,
            limit,
            Some(SpillArea::new(dir.path().to_path_buf())),
        )
        .unwrap();
        // It stops one chunk past the limit, however long nobody reads.
        wait_spilled(&layer, 3 * CHUNK as u64);
        std::thread::sleep(std::time::Duration::from_millis(100));
        assert_eq!(layer.spilled(), 3 * CHUNK as u64);
        let (mut reader, budget) = LayerReader::from_inflating(layer, limit);
        assert!(io::copy(&mut reader, &mut io::sink()).is_err());
        assert_eq!(tripped(&budget), Some(Tripped::TotalBytes));
    }

    #[test]
    fn a_failing_blob_inflated_ahead_fails_its_reader() {
        let blob = FailingBlob {
            data: vec![3u8; 100_000],
            good: 50_000,
        };
        let layer = Inflating::start(
            blob,
            LayerCompression::None,
            Algorithm::Sha256,
            1 << 30,
            None,
        )
        .unwrap();
        let (mut reader, budget) = LayerReader::from_inflating(layer, 1 << 30);
        assert!(io::copy(&mut reader, &mut io::sink()).is_err());
        assert_eq!(tripped(&budget), Some(Tripped::BlobRead));
    }

    /// A blob whose bytes come only when the test sends them (end: the sender is dropped).
    struct SentBlob(std::sync::mpsc::Receiver<Vec<u8>>, Vec<u8>);

    impl Read for SentBlob {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            if self.1.is_empty() {
                match self.0.recv() {
                    Ok(data) => self.1 = data,
                    Err(_) => return Ok(0),
                }
            }
            let length = buf.len().min(self.1.len());
            buf[..length].copy_from_slice(&self.1[..length]);
            self.1.drain(..length);
            Ok(length)
        }
    }

    #[test]
    fn a_layer_inflated_ahead_runs_nicer_until_its_turn() {
        use crate::rootfs::priority::{can_restore, AHEAD_NICE};
        use rustix::process::getpriority_process;
        let (sender, receiver) = std::sync::mpsc::channel();
        let layer = Inflating::start(
            SentBlob(receiver, Vec::new()),
            LayerCompression::None,
            Algorithm::Sha256,
            1 << 30,
            None,
        )
        .unwrap();
        let base = getpriority_process(None).unwrap();
        let expected = if can_restore() && base < 19 { 2 } else { 0 };
        // Both threads (inflater and hasher) lower themselves as they start; they then wait
        // for the blob's first bytes, so they are still there when the layer's turn comes.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        while layer.priority.lowered_threads().len() < expected {
            assert!(std::time::Instant::now() < deadline);
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        let threads = layer.priority.lowered_threads();
        assert_eq!(threads.len(), expected);
        for thread in &threads {
            assert_eq!(
                getpriority_process(Some(*thread)).unwrap(),
                (base + AHEAD_NICE).min(19)
            );
        }
        let (mut reader, _) = LayerReader::from_inflating(layer, 1 << 30);
        for thread in &threads {
            assert_eq!(getpriority_process(Some(*thread)).unwrap(), base);
        }
        sender.send(b"all of it".to_vec()).unwrap();
        drop(sender);
        let mut out = Vec::new();
        reader.read_to_end(&mut out).unwrap();
        assert_eq!(out, b"all of it");
        let (digest, _, _) = reader.finish().unwrap();
        assert_eq!(digest, Digest::sha256_of(b"all of it"));
    }

    /// Yields `good` bytes of its data, then fails.
    struct FailingBlob {
        data: Vec<u8>,
        good: usize,
    }

    impl Read for FailingBlob {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            if self.good == 0 {
                return Err(io::Error::other("connection reset"));
            }
            let length = buf.len().min(self.good);
            buf[..length].copy_from_slice(&self.data[..length]);
            self.data.drain(..length);
            self.good -= length;
            Ok(length)
        }
    }

    #[test]
    fn threaded_pipeline_reports_a_failing_blob() {
        let data = vec![3u8; 100_000];
        let blob = FailingBlob {
            data: data.clone(),
            good: 50_000,
        };
        std::thread::scope(|scope| {
            let (mut reader, budget, _) = LayerReader::spawn(
                scope,
                blob,
                LayerCompression::None,
                Algorithm::Sha256,
                1 << 30,
            )
            .unwrap();
            assert!(io::copy(&mut reader, &mut io::sink()).is_err());
            assert_eq!(tripped(&budget), Some(Tripped::BlobRead));
        });
    }

    #[test]
    fn dropping_a_threaded_reader_stops_its_thread() {
        let blob = gzip(&vec![1u8; 64 * CHUNK]);
        std::thread::scope(|scope| {
            let (mut reader, _, thread) = spawn_gzip(scope, &blob);
            let mut buf = [0u8; 10];
            assert_eq!(reader.read(&mut buf).unwrap(), 10);
            drop(reader);
            // This returns only if the thread stopped.
            thread.join().unwrap();
        });
    }

    /// A gzip layer's threaded pipeline (SHA-256, a generous size limit) in `scope`.
    fn spawn_gzip<'scope>(
        scope: &'scope std::thread::Scope<'scope, '_>,
        blob: &'scope [u8],
    ) -> (
        LayerReader<&'scope [u8]>,
        SharedBudget,
        ScopedJoinHandle<'scope, ()>,
    ) {
        LayerReader::spawn(
            scope,
            blob,
            LayerCompression::Gzip,
            Algorithm::Sha256,
            1 << 30,
        )
        .unwrap()
    }

    #[test]
    fn a_threaded_layer_hashes_on_a_second_thread() {
        let blob = gzip(&vec![3u8; 8 * CHUNK]);
        std::thread::scope(|scope| {
            let (mut reader, _, thread) = spawn_gzip(scope, &blob);
            // A byte has come through the hasher, so it runs (and named itself); it stays
            // blocked on the full spool while the names are read.
            let mut first = [0u8; 1];
            reader.read_exact(&mut first).unwrap();
            let names = thread_names(std::process::id());
            assert!(
                names.iter().any(|name| name == "acrpull-diffid"),
                "{names:?}"
            );
            io::copy(&mut reader, &mut io::sink()).unwrap();
            let (digest, _, _) = reader.finish().unwrap();
            assert_eq!(digest, Digest::sha256_of(&vec![3u8; 8 * CHUNK]));
            thread.join().unwrap();
        });
    }

    /// The names of the threads of process `pid` (Linux).
    fn thread_names(pid: u32) -> Vec<String> {
        std::fs::read_dir(format!("/proc/{pid}/task"))
            .unwrap()
            .filter_map(|task| std::fs::read_to_string(task.ok()?.path().join("comm")).ok())
            .map(|name| name.trim().to_string())
            .collect()
    }
}
