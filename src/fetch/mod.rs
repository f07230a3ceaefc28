//! Downloading one blob to a file: verified while it streams, resumed with `Range` when the
//! body breaks, and renamed into place only after the digest and size match.
//!
//! The async task only receives. Each chunk goes through a bounded channel to a blocking
//! writer that hashes and writes it: `tokio::fs` would cost a blocking-pool round trip per
//! write. A [`BlobTap`] lets a consumer read the file while it grows (the rootfs applier starts
//! on a layer as soon as its first bytes arrive); the consumer sees end-of-file only once the
//! whole blob is verified, and an error if the download fails or is cancelled. A download
//! resumed from bytes an earlier run left (the cache's partial files) shows the consumer
//! nothing until the whole blob verified: an unverified prefix never reaches the applier.

use std::io::Seek as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use futures_util::StreamExt;

use crate::error::{Error, Internal, Result};
use crate::manifest::Descriptor;
use crate::registry::retry::RetryPolicy;
use crate::report::Reporter;
use crate::source::{BlobBody, ImageSource};

/// Chunks in flight between the network task and the writer (a chunk is what one socket
/// read returned: at most a few hundred KiB).
const WRITE_QUEUE: usize = 4;

/// How to store one blob.
#[derive(Debug, Clone, Default)]
pub struct FetchOptions {
    /// `fsync` the file before it is renamed into place (layout output). Staging files that
    /// are deleted after use skip it.
    pub sync: bool,
    /// Share the file with a reader while it downloads.
    pub tap: Option<Arc<BlobTap>>,
    /// Permits for the ranges a blob fetches beyond its first at once, shared by all the
    /// downloads of a pull ([`pull_range_connections`]): without a bound, eight large blobs at
    /// twelve connections each would hold about a hundred connections and their buffers.
    /// `None`: each blob is bounded only by its own plan.
    pub extra_ranges: Option<Arc<RankedPermits>>,
    /// This blob's place in the order its reader needs the blobs (0 first): a freed range
    /// permit goes to the waiting blob with the lowest rank.
    pub rank: usize,
}

/// Connections a pull may open for ranges beyond the first of each blob: enough for the lan
/// profile's debianish (37 in all over 5 blobs), about half a MiB of buffers each.
pub const EXTRA_RANGE_CONNECTIONS: usize = 32;

/// The same bound for a reader that takes the blobs strictly in order (a root filesystem's
/// layers): a quarter, so that the blob applied next holds most of the extra connections and
/// of the bandwidth they share, instead of every layer arriving at once near the end and the
/// applier catching up afterwards. Through the lan link profile (debianish, root filesystem)
/// 4, 8, 16 and 32 took 1.87, 1.62, 1.68 and 1.82 s; wan 8: 5.21 s, 16: 5.37 s, 32: 5.61 s.
pub const IN_ORDER_RANGE_CONNECTIONS: usize = 8;

/// The pull-wide pool for [`FetchOptions::extra_ranges`]: [`IN_ORDER_RANGE_CONNECTIONS`] when
/// the blobs are read in order as they arrive, else [`EXTRA_RANGE_CONNECTIONS`].
pub fn pull_range_connections(in_order: bool) -> Arc<RankedPermits> {
    RankedPermits::new(if in_order {
        IN_ORDER_RANGE_CONNECTIONS
    } else {
        EXTRA_RANGE_CONNECTIONS
    })
}

/// Download `descriptor` into the fixed file `partial`, continuing from the bytes it already
/// holds (re-hashed first: a download interrupted in an earlier run resumes with `Range`), and
/// leave it there verified for the caller to move into place. On failure the file stays for
/// the next try, unless its bytes proved wrong. The caller must hold the file's lock.
pub async fn fetch_blob_resumable(
    source: &dyn ImageSource,
    descriptor: &Descriptor,
    partial: &Path,
    reporter: &dyn Reporter,
    retry: &RetryPolicy,
    options: &FetchOptions,
) -> Result<u64> {
    let mut ingest = PartialFile::open(partial)?;
    fetch_into(source, descriptor, &mut ingest, reporter, retry, options).await
}

/// Download `descriptor` from `source` to `final_path` (atomically). Returns the number of
/// bytes transferred (more than the size if a server made us restart).
pub async fn fetch_blob(
    source: &dyn ImageSource,
    descriptor: &Descriptor,
    final_path: &Path,
    reporter: &dyn Reporter,
    retry: &RetryPolicy,
    options: &FetchOptions,
) -> Result<u64> {
    let mut ingest = TempFile::beside(final_path, &descriptor.digest)?;
    fetch_into(source, descriptor, &mut ingest, reporter, retry, options).await
}

/// The one download path: `descriptor` from `source` into `ingest`, resumed after what it
/// holds; committed only once size and digest matched. Bytes kept from an earlier run that do
/// not verify are dropped and the download starts over once. A tap, if any, sees the end.
pub async fn fetch_into(
    source: &dyn ImageSource,
    descriptor: &Descriptor,
    ingest: &mut dyn Ingest,
    reporter: &dyn Reporter,
    retry: &RetryPolicy,
    options: &FetchOptions,
) -> Result<u64> {
    // Whatever happens to this future (error, abort), a tap reader is released.
    let _tap_guard = options.tap.clone().map(TapGuard);
    let held = ingest.offset();
    let mut result = download(
        source,
        descriptor,
        ingest.path(),
        held,
        reporter,
        retry,
        options,
    )
    .await;
    if held > 0 && matches!(result, Err(Error::Integrity { .. })) {
        // The bytes kept from an earlier run were wrong (a crash can leave a torn tail):
        // start over once.
        tracing::info!(digest = %descriptor.digest, held, "discarding a partial download that does not verify");
        ingest.truncate();
        if let Some(tap) = &options.tap {
            tap.restart();
        }
        result = download(
            source,
            descriptor,
            ingest.path(),
            0,
            reporter,
            retry,
            options,
        )
        .await;
    }
    let result = match result {
        Ok(transferred) => ingest.commit().map(|()| transferred),
        Err(e) => {
            ingest.abort(matches!(e, Error::Integrity { .. }));
            Err(e)
        }
    };
    if let Some(tap) = &options.tap {
        tap.finish(result.as_ref().map(|_| ()).map_err(ToString::to_string));
    }
    result
}

/// Open the file a blob downloads into, keeping its first `held` bytes, positioned after
/// them; readable too (a tap reads through a clone of this descriptor).
///
/// A file already holding exactly `held` bytes (a new one holds none) is not truncated:
/// `ftruncate` to 0, even of an empty file, marks an ext4 file for a flush of all its dirty
/// pages when it is closed (`auto_da_alloc`, meant for files rewritten through a truncate).
/// A durable pull has synced the blob by then; a `--no-sync` pull paid for that flush when it
/// closed the blobs at its end: 0.25 s of a pull of the 1.1 GB benchmark image.
fn open_ingest_file(path: &Path, held: u64) -> Result<std::fs::File> {
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
        .map_err(io(path))?;
    if file.metadata().map_err(io(path))?.len() != held {
        file.set_len(held).map_err(io(path))?;
    }
    file.seek(std::io::SeekFrom::Start(held))
        .map_err(io(path))?;
    Ok(file)
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> Error {
    let path: PathBuf = path.to_path_buf();
    move |source| Error::Io { path, source }
}

/// What the network task tells the writer.
enum Message {
    /// The next bytes of the body.
    Data(Bytes),
    /// The server ignored a range request: the body starts over at 0. The bytes already in
    /// the file are not rewritten; their replay is hashed and must match.
    Replay,
    /// Bytes of a segment, at their offset in the blob (parallel ranges).
    At {
        /// Offset in the blob.
        offset: u64,
        /// The bytes.
        bytes: Bytes,
    },
    /// The body is complete: sync if asked, and return.
    Finish,
}

/// Download into `temp_path`, keeping its first `held` bytes (re-hashed, then resumed after).
async fn download(
    source: &dyn ImageSource,
    descriptor: &Descriptor,
    temp_path: &Path,
    held: u64,
    reporter: &dyn Reporter,
    retry: &RetryPolicy,
    options: &FetchOptions,
) -> Result<u64> {
    let digest = &descriptor.digest;
    let size = descriptor.size;
    let held = if held > size { 0 } else { held };
    let file = open_ingest_file(temp_path, held)?;
    if let Some(tap) = &options.tap {
        let shared = file.try_clone().map_err(io(temp_path))?;
        tap.open(shared);
    }
    let (sender, receiver) = tokio::sync::mpsc::channel(WRITE_QUEUE);
    // Bytes kept from an earlier run are unverified until the whole blob is: a hostile or
    // broken source may have left a wrong prefix (a poisoned cache). The reader then sees
    // nothing until the digest matches, and a prefix that fails is discarded by the caller
    // before any byte of it was handed out.
    let live_tap = if held == 0 { options.tap.clone() } else { None };
    let writer = {
        let path = temp_path.to_path_buf();
        let algorithm = digest.algorithm();
        let sync = options.sync;
        let tap = live_tap;
        let digest = digest.clone();
        tokio::task::spawn_blocking(move || {
            write_blob(
                receiver,
                file,
                held,
                &path,
                algorithm,
                &digest,
                sync,
                tap.as_deref(),
            )
        })
    };
    if held > 0 {
        tracing::info!(%digest, offset = held, "continuing an interrupted download");
        reporter.on_blob_progress(digest, held);
    }
    let received = receive(
        source,
        descriptor,
        held,
        &sender,
        reporter,
        retry,
        options
            .extra_ranges
            .as_ref()
            .map(|pool| (pool, options.rank)),
    )
    .await;
    let finished = match received {
        Ok(transferred) => sender
            .send(Message::Finish)
            .await
            .map(|()| transferred)
            .map_err(|_| ()),
        Err(e) => {
            // The writer stops when the channel closes. If it stopped first, its error is
            // the one that explains the failure.
            drop(sender);
            return match writer.await {
                Ok(Err(writer_error)) if is_writer_gone(&e) => Err(writer_error),
                _ => Err(e),
            };
        }
    };
    drop(sender);
    let written = writer.await.map_err(|e| Internal::join(WRITER, e))??;
    let transferred = finished.map_err(|()| writer_gone())?;
    let actual = written.digester.finish();
    if written.bytes != size {
        return Err(too_long(descriptor, written.bytes));
    }
    if &actual != digest {
        return Err(Error::Integrity {
            what: "blob",
            digest: digest.clone(),
            expected: digest.to_string(),
            actual: actual.to_string(),
        });
    }
    if let Some(tap) = &options.tap {
        // Verified: a reader held back from a resumed prefix may read it all now.
        tap.advance(written.bytes);
    }
    Ok(transferred)
}

/// Blobs with at least this much left to fetch are fetched as several ranges at once when the
/// source honours `Range` (containerd 2.1 does the same): blob storage caps the rate of each
/// connection, so one stream per blob leaves a fast link idle, and a blob left alone on one
/// connection at the end of a pull is what the whole pull waits for. Below it, the one extra
/// round trip a range costs outweighs what a second connection brings.
pub const PARALLEL_THRESHOLD: u64 = 2 * MIN_SEGMENT;
/// The smallest range (but the last, which takes a remainder below twice this): a range
/// costs one request, so one round trip during which its connection carries nothing.
const MIN_SEGMENT: u64 = 2 << 20;
/// The largest range.
const MAX_SEGMENT: u64 = 16 << 20;
/// A blob gets one connection per this many bytes (at least two, at most
/// [`MAX_CONNECTIONS_PER_BLOB`]). A shared link gives every connection about the same rate,
/// so connections in proportion to size let the blobs of a pull finish together, instead of
/// the largest ones running last on too few connections to fill the link.
const BYTES_PER_CONNECTION: u64 = 3 << 20;
/// The most ranges of one blob in flight at once (each a connection, about half a MiB of
/// buffers).
const MAX_CONNECTIONS_PER_BLOB: u64 = 12;

/// The ranges of one blob, planned as they are issued. Each takes an equal share of what is
/// still unassigned among the blob's connections (guided self-scheduling), between
/// [`MIN_SEGMENT`] and [`MAX_SEGMENT`]: ranges shrink towards the end, so the connections
/// finish close together whatever rate each one gets, instead of the last large range running
/// alone on one capped connection. Ranges are issued in order and a new one starts as soon as
/// any finishes (the writer places each at its offset, hashes the leading one from memory and
/// reads the others back from the page cache once the gap before them fills).
#[derive(Debug, Clone)]
struct SegmentPlan {
    next: u64,
    end: u64,
    /// Ranges in flight at once.
    connections: u64,
}

impl SegmentPlan {
    fn new(start: u64, end: u64) -> Self {
        let connections = (end - start)
            .div_ceil(BYTES_PER_CONNECTION)
            .clamp(2, MAX_CONNECTIONS_PER_BLOB);
        SegmentPlan {
            next: start,
            end,
            connections,
        }
    }
}

impl Iterator for SegmentPlan {
    type Item = Span;

    fn next(&mut self) -> Option<Span> {
        let left = self.end - self.next;
        if left == 0 {
            return None;
        }
        let length = if left < 2 * MIN_SEGMENT {
            left
        } else {
            (left / self.connections).clamp(MIN_SEGMENT, MAX_SEGMENT)
        };
        let span = Span {
            start: self.next,
            end: self.next + length,
            segment: true,
        };
        self.next = span.end;
        Some(span)
    }
}

/// Receive the blob from `start`: in segments when it is large and the source honours
/// `Range`, else as one body. Returns the bytes transferred.
async fn receive(
    source: &dyn ImageSource,
    descriptor: &Descriptor,
    start: u64,
    sender: &tokio::sync::mpsc::Sender<Message>,
    reporter: &dyn Reporter,
    retry: &RetryPolicy,
    extra_ranges: Option<(&Arc<RankedPermits>, usize)>,
) -> Result<u64> {
    let size = descriptor.size;
    let whole = Span {
        start,
        end: size,
        segment: false,
    };
    if size - start < PARALLEL_THRESHOLD || !source.prefers_parallel_ranges() {
        return receive_span(source, descriptor, whole, None, sender, reporter, retry).await;
    }
    let mut plan = SegmentPlan::new(start, size);
    let Some(first) = plan.next() else {
        unreachable!("at least PARALLEL_THRESHOLD bytes are left")
    };
    // The first segment's answer says whether the source honours a bounded range.
    let body = source
        .open_blob(&descriptor.digest, first.start, Some(first.end))
        .await?;
    if body.offset != first.start || body.content_length != Some(first.end - first.start) {
        tracing::debug!(digest = %descriptor.digest, "no bounded ranges: one stream");
        return receive_span(
            source,
            descriptor,
            whole,
            Some(body),
            sender,
            reporter,
            retry,
        )
        .await;
    }
    let connections = usize::try_from(plan.connections).unwrap_or(1);
    let mut opened = Some(body);
    let spans = std::iter::once(first).chain(plan);
    let mut segments = futures_util::stream::iter(spans.map(|span| {
        let body = opened.take();
        async move {
            // The first range uses the blob's own connection; the others wait for a permit.
            let _permit = match (&body, extra_ranges) {
                (None, Some((pool, rank))) => Some(pool.acquire(rank).await),
                _ => None,
            };
            receive_span(source, descriptor, span, body, sender, reporter, retry).await
        }
    }))
    .buffer_unordered(connections);
    let mut transferred = 0;
    while let Some(result) = segments.next().await {
        transferred += result?;
    }
    Ok(transferred)
}

/// Bytes `start..end` of a blob: the whole rest of it (appended in order, a server that
/// ignores `Range` replays from 0), or one segment of a parallel fetch (written at its
/// offsets, and a source that ignores `Range` is an error).
#[derive(Debug, Clone, Copy)]
struct Span {
    start: u64,
    end: u64,
    segment: bool,
}

/// Receive one span, resuming with `Range` until it is complete or retries run out. Returns
/// the bytes transferred. A send error means the writer failed: stop receiving and let the
/// caller collect the writer's error.
async fn receive_span(
    source: &dyn ImageSource,
    descriptor: &Descriptor,
    span: Span,
    mut opened: Option<BlobBody>,
    sender: &tokio::sync::mpsc::Sender<Message>,
    reporter: &dyn Reporter,
    retry: &RetryPolicy,
) -> Result<u64> {
    let digest = &descriptor.digest;
    let size = descriptor.size;
    // Offset in the blob of the next byte we receive.
    let mut position: u64 = span.start;
    let mut transferred: u64 = 0;
    let mut attempts: u32 = 0;
    if position == span.end {
        // Everything was kept from an earlier run: the digest decides.
        return Ok(0);
    }
    loop {
        attempts += 1;
        let body = match opened.take() {
            Some(body) => body,
            None => {
                let end = span.segment.then_some(span.end);
                source.open_blob(digest, position, end).await?
            }
        };
        if body.offset != position {
            if span.segment {
                return Err(Error::Registry(crate::registry::Error::Unsupported {
                    url: source.describe(),
                    reason: format!(
                        "blob {digest}: asked for bytes from {position}, got a body from {}",
                        body.offset
                    ),
                }));
            }
            // The source ignored our range: the body starts over.
            tracing::debug!(%digest, offset = position, "range ignored, replaying blob");
            sender
                .send(Message::Replay)
                .await
                .map_err(|_| writer_gone())?;
            position = 0;
        }
        if let Some(length) = body.content_length {
            // Only the bytes themselves are held against the descriptor (below): a wrong
            // Content-Length is the server's problem, and a short body is resumed.
            if position + length != span.end {
                tracing::debug!(%digest, offset = position, length, end = span.end, "Content-Length disagrees with the request");
            }
        }
        let mut stream = body.stream;
        let mut failure = None;
        while let Some(chunk) = stream.next().await {
            match chunk {
                Ok(mut bytes) => {
                    let mut length = bytes.len() as u64;
                    if position + length > span.end {
                        if !span.segment {
                            return Err(too_long(descriptor, position + length));
                        }
                        // A segment ends where we chose: the rest belongs to another.
                        length = span.end - position;
                        bytes.truncate(usize::try_from(length).unwrap_or(usize::MAX));
                    }
                    let message = if span.segment {
                        Message::At {
                            offset: position,
                            bytes,
                        }
                    } else {
                        Message::Data(bytes)
                    };
                    sender.send(message).await.map_err(|_| writer_gone())?;
                    position += length;
                    transferred += length;
                    reporter.on_blob_progress(digest, length);
                    if span.segment && position == span.end {
                        break;
                    }
                }
                Err(e) => {
                    failure = Some(e);
                    break;
                }
            }
        }
        // Every promised byte arrived: the digest decides, whatever the connection did after.
        if position == span.end {
            return Ok(transferred);
        }
        if attempts > retry.retries {
            return Err(Error::Registry(crate::registry::Error::Interrupted {
                digest: digest.clone(),
                source_name: source.describe(),
                received: position,
                expected: size,
                attempts,
                source: failure,
            }));
        }
        let reason = match &failure {
            Some(e) => format!("stream failed: {e}"),
            None => "stream ended early".to_string(),
        };
        tracing::info!(%digest, offset = position, %reason, "resuming blob");
        reporter.on_blob_retry(digest, position, &reason);
        tokio::time::sleep(retry.delay(attempts, None)).await;
    }
}

/// The task that hashes and writes a blob's bytes.
const WRITER: &str = "blob writer";

/// The writer stopped taking bytes: its own error says why.
fn writer_gone() -> Error {
    Internal::Stopped { task: WRITER }.into()
}

fn is_writer_gone(error: &Error) -> bool {
    matches!(error, Error::Internal(Internal::Stopped { task }) if *task == WRITER)
}

mod ingest;
mod permits;
mod tap;
mod writer;

pub use ingest::{Ingest, PartialFile, TempFile};
pub use permits::{RankedPermit, RankedPermits, Reservation};
use tap::TapGuard;
pub use tap::{BlobTap, TapReader};
use writer::{too_long, write_blob};

#[cfg(test)]
mod tests {
    use super::*;
    use crate::digest::{Algorithm, Digest};
    use crate::source::BlobBody;
    use std::fs::File;
    use std::io::Read as _;
    use std::io::Write as _;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Mutex;

    #[test]
    fn tap_reader_follows_a_growing_file_until_finished() {
        let dir = tempfile::tempdir().unwrap();
        let mut file = File::options()
            .read(true)
            .write(true)
            .create_new(true)
            .open(dir.path().join("blob"))
            .unwrap();
        let tap = Arc::new(BlobTap::default());
        tap.open(file.try_clone().unwrap());
        let mut reader = tap.reader();
        let consumer = std::thread::spawn(move || {
            let mut out = Vec::new();
            reader.read_to_end(&mut out).map(|_| out)
        });
        for part in [&b"hello "[..], b"growing ", b"world"] {
            file.write_all(part).unwrap();
            let length = file.metadata().unwrap().len();
            tap.advance(length);
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        tap.finish(Ok(()));
        assert_eq!(consumer.join().unwrap().unwrap(), b"hello growing world");
    }

    #[test]
    fn a_download_file_is_cut_only_when_it_holds_more_than_it_keeps() {
        use std::io::Seek as _;
        let dir = tempfile::tempdir().unwrap();
        let long_ago = std::time::SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1 << 30);
        // Holding what is kept: untouched (a truncate, even to the length a file has, sets its
        // mtime to now, and to 0 it arms ext4's flush on close).
        for (name, contents, held) in [("empty", &b""[..], 0), ("resumed", b"0123456789", 10)] {
            let path = dir.path().join(name);
            std::fs::write(&path, contents).unwrap();
            File::options()
                .write(true)
                .open(&path)
                .unwrap()
                .set_modified(long_ago)
                .unwrap();
            let mut file = open_ingest_file(&path, held).unwrap();
            assert_eq!(file.stream_position().unwrap(), held, "{name}");
            let metadata = file.metadata().unwrap();
            assert_eq!(metadata.len(), held, "{name}");
            assert_eq!(
                metadata.modified().unwrap(),
                long_ago,
                "{name} was truncated"
            );
        }
        // Longer than what is kept (a torn tail, or more than the blob's size): cut.
        let torn = dir.path().join("torn");
        std::fs::write(&torn, b"0123456789").unwrap();
        let mut file = open_ingest_file(&torn, 4).unwrap();
        assert_eq!(file.stream_position().unwrap(), 4);
        file.write_all(b"xy").unwrap();
        assert_eq!(std::fs::read(&torn).unwrap(), b"0123xy");
        // New: created, empty, readable through a clone (as a tap reads it).
        let new = dir.path().join("new");
        let mut file = open_ingest_file(&new, 0).unwrap();
        file.write_all(b"abc").unwrap();
        let mut clone = file.try_clone().unwrap();
        clone.rewind().unwrap();
        let mut read = String::new();
        clone.read_to_string(&mut read).unwrap();
        assert_eq!(read, "abc");
    }

    #[test]
    fn tap_reader_fails_when_the_download_fails() {
        let dir = tempfile::tempdir().unwrap();
        let mut file = File::options()
            .read(true)
            .write(true)
            .create_new(true)
            .open(dir.path().join("blob"))
            .unwrap();
        let tap = Arc::new(BlobTap::default());
        tap.open(file.try_clone().unwrap());
        file.write_all(b"partial").unwrap();
        tap.advance(7);
        let mut reader = tap.reader();
        let consumer = std::thread::spawn(move || {
            let mut out = Vec::new();
            reader.read_to_end(&mut out)
        });
        std::thread::sleep(std::time::Duration::from_millis(5));
        drop(TapGuard(Arc::clone(&tap)));
        assert!(consumer.join().unwrap().is_err());
    }

    /// The descriptor of a test blob.
    fn blob_descriptor(data: &[u8]) -> Descriptor {
        Descriptor {
            media_type: "application/octet-stream".into(),
            digest: Digest::sha256_of(data),
            size: data.len() as u64,
            urls: None,
            annotations: None,
            platform: None,
        }
    }

    /// Serves one blob, ignoring `Range`; the first response breaks after `break_at` bytes and
    /// the later ones serve `later` (the same bytes, or different ones).
    struct Flaky {
        first: Vec<u8>,
        later: Vec<u8>,
        break_at: usize,
        calls: Mutex<u32>,
    }

    #[async_trait::async_trait]
    impl ImageSource for Flaky {
        fn describe(&self) -> String {
            "flaky".into()
        }

        async fn manifest(
            &self,
            _reference: &str,
        ) -> crate::registry::Result<crate::source::FetchedManifest> {
            Err(crate::registry::Error::NotFound {
                kind: crate::registry::Missing::Manifest,
                what: "manifest".into(),
                url: "flaky".into(),
            })
        }

        async fn open_blob(
            &self,
            _digest: &Digest,
            _offset: u64,
            _end: Option<u64>,
        ) -> crate::registry::Result<BlobBody> {
            let call = {
                let mut calls = self.calls.lock().unwrap();
                *calls += 1;
                *calls
            };
            let (data, failing) = if call == 1 {
                (self.first[..self.break_at].to_vec(), true)
            } else {
                (self.later.clone(), false)
            };
            let chunks: Vec<std::io::Result<Bytes>> = data
                .chunks(1000)
                .map(|c| Ok(Bytes::copy_from_slice(c)))
                .chain(failing.then(|| Err(std::io::Error::other("reset"))))
                .collect();
            Ok(BlobBody {
                offset: 0,
                content_length: None,
                stream: futures_util::stream::iter(chunks).boxed(),
            })
        }
    }

    async fn fetch_flaky(later_differs: bool) -> (Result<u64>, Vec<u8>, std::io::Result<Vec<u8>>) {
        let data: Vec<u8> = (0..50_000u32).map(|i| (i % 253) as u8).collect();
        let mut later = data.clone();
        if later_differs {
            later[10] ^= 1;
        }
        let source = Flaky {
            first: data.clone(),
            later,
            break_at: 20_000,
            calls: Mutex::new(0),
        };
        let dir = tempfile::tempdir().unwrap();
        let (result, read) = fetch_tapped(&source, &data, &dir.path().join("blob")).await;
        (result, data, read)
    }

    /// `fetch_blob` of `data` from `source` to `path` with 1 ms retries, while a thread reads
    /// it through a tap: the result and what the reader saw.
    async fn fetch_tapped(
        source: &dyn ImageSource,
        data: &[u8],
        path: &Path,
    ) -> (Result<u64>, std::io::Result<Vec<u8>>) {
        let tap = Arc::new(BlobTap::default());
        let mut reader = tap.reader();
        let consumer = std::thread::spawn(move || {
            let mut out = Vec::new();
            reader.read_to_end(&mut out).map(|_| out)
        });
        let retry = RetryPolicy {
            base_delay: std::time::Duration::from_millis(1),
            ..RetryPolicy::default()
        };
        let options = FetchOptions {
            sync: false,
            tap: Some(tap),
            ..FetchOptions::default()
        };
        let result = fetch_blob(
            source,
            &blob_descriptor(data),
            path,
            &crate::report::NoopReporter,
            &retry,
            &options,
        )
        .await;
        (result, consumer.join().unwrap())
    }

    #[tokio::test]
    async fn ignored_range_replays_without_rewriting() {
        let (result, data, read) = fetch_flaky(false).await;
        assert_eq!(result.unwrap(), 20_000 + data.len() as u64);
        assert_eq!(read.unwrap(), data);
    }

    #[tokio::test]
    async fn a_replay_with_different_bytes_is_refused() {
        let (result, _, read) = fetch_flaky(true).await;
        assert!(matches!(result, Err(Error::Integrity { .. })), "{result:?}");
        assert!(read.is_err());
    }

    /// The ranges a test source was asked for: (offset, end).
    type Requests = Arc<Mutex<Vec<(u64, Option<u64>)>>>;

    /// Serves one blob honouring bounded ranges, in chunks of odd sizes with pauses that make
    /// segments finish out of order; the response for `break_at` (an offset) breaks once.
    struct Ranged {
        data: Vec<u8>,
        break_at: u64,
        broken: Mutex<bool>,
        requests: Requests,
        /// The first range's body waits until this many ranges were requested (or 5 s), and
        /// records whether they were.
        hold_first: Option<(usize, Arc<std::sync::atomic::AtomicBool>)>,
        /// Bodies open now, and the most ever open at once.
        open: Arc<(AtomicUsize, AtomicUsize)>,
    }

    /// Counts a body as open until it is dropped.
    struct OpenBody(Arc<(AtomicUsize, AtomicUsize)>);

    impl OpenBody {
        fn new(open: &Arc<(AtomicUsize, AtomicUsize)>) -> Self {
            let now = open.0.fetch_add(1, Ordering::SeqCst) + 1;
            open.1.fetch_max(now, Ordering::SeqCst);
            OpenBody(Arc::clone(open))
        }
    }

    impl Drop for OpenBody {
        fn drop(&mut self) {
            self.0 .0.fetch_sub(1, Ordering::SeqCst);
        }
    }

    impl Ranged {
        fn new(data: Vec<u8>) -> Self {
            Ranged {
                data,
                break_at: u64::MAX,
                broken: Mutex::new(false),
                requests: Arc::default(),
                hold_first: None,
                open: Arc::default(),
            }
        }
    }

    /// Wait until `wanted` ranges were requested (at most 5 s); tell `seen` if they were.
    async fn wait_for_requests(
        requests: &Mutex<Vec<(u64, Option<u64>)>>,
        wanted: usize,
        seen: &std::sync::atomic::AtomicBool,
    ) {
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(5);
        while requests.lock().unwrap().len() < wanted {
            if tokio::time::Instant::now() > deadline {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(2)).await;
        }
        seen.store(true, std::sync::atomic::Ordering::SeqCst);
    }

    #[async_trait::async_trait]
    impl ImageSource for Ranged {
        fn describe(&self) -> String {
            "ranged".into()
        }

        async fn manifest(
            &self,
            _reference: &str,
        ) -> crate::registry::Result<crate::source::FetchedManifest> {
            unreachable!("blobs only")
        }

        async fn open_blob(
            &self,
            _digest: &Digest,
            offset: u64,
            end: Option<u64>,
        ) -> crate::registry::Result<BlobBody> {
            self.requests.lock().unwrap().push((offset, end));
            let end = end.unwrap_or(self.data.len() as u64);
            let mut body = self.data[offset as usize..end as usize].to_vec();
            let mut failing = false;
            {
                let mut broken = self.broken.lock().unwrap();
                if !*broken && offset <= self.break_at && self.break_at < end {
                    *broken = true;
                    failing = true;
                    body.truncate((self.break_at - offset) as usize + 12_345);
                }
            }
            // Later segments answer faster: they complete before earlier ones.
            let pause = std::time::Duration::from_micros(4000 - (offset >> 14).min(3000));
            let chunks: Vec<std::io::Result<Bytes>> = body
                .chunks(100_003)
                .map(|c| Ok(Bytes::copy_from_slice(c)))
                .chain(failing.then(|| Err(std::io::Error::other("reset"))))
                .collect();
            let length = end - offset;
            let mut hold = match (&self.hold_first, offset) {
                (Some((wanted, seen)), 0) => {
                    Some((Arc::clone(&self.requests), *wanted, Arc::clone(seen)))
                }
                _ => None,
            };
            let open = OpenBody::new(&self.open);
            Ok(BlobBody {
                offset,
                content_length: Some(length),
                stream: futures_util::stream::iter(chunks)
                    .then(move |chunk| {
                        let _open = &open;
                        let hold = hold.take();
                        async move {
                            if let Some((requests, wanted, seen)) = hold {
                                wait_for_requests(&requests, wanted, &seen).await;
                            }
                            tokio::time::sleep(pause).await;
                            chunk
                        }
                    })
                    .boxed(),
            })
        }

        fn prefers_parallel_ranges(&self) -> bool {
            true
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn large_blobs_arrive_in_parallel_ranges_hashed_in_order() {
        let size = (40 << 20) + 777;
        let spans: Vec<Span> = SegmentPlan::new(0, size as u64).collect();
        let broken = spans[3];
        let mut rng = fastrand::Rng::with_seed(7);
        let data: Vec<u8> = (0..size).map(|_| rng.u8(..)).collect();
        let source = Ranged {
            break_at: broken.start + 1000,
            ..Ranged::new(data.clone())
        };
        let dir = tempfile::tempdir().unwrap();
        let (result, read) = fetch_tapped(&source, &data, &dir.path().join("blob")).await;
        let transferred = result.unwrap();
        assert_eq!(transferred, size as u64, "no byte fetched twice");
        assert_eq!(read.unwrap(), data);
        assert_eq!(std::fs::read(dir.path().join("blob")).unwrap(), data);
        let requests = source.requests.lock().unwrap().clone();
        // One request per planned segment, plus the resumed one.
        assert_eq!(requests.len(), spans.len() + 1, "{requests:?}");
        assert!(requests.iter().all(|(_, end)| end.is_some()));
        assert!(requests.contains(&(broken.start + 1000 + 12_345, Some(broken.end))));
    }

    /// The plan covers the blob exactly, no range is below the minimum or above the maximum,
    /// and the ranges left at the end are small: the connections of a blob finish close
    /// together instead of one large last range running alone (as 16 MiB ranges of a 37 MB
    /// blob did through a link capped per connection).
    #[test]
    fn segment_plans_tile_the_blob_and_end_in_small_ranges() {
        let sizes = [
            PARALLEL_THRESHOLD,
            9_290_741,
            15_241_079,
            35_719_936,
            37_095_755,
            300_000_000,
        ];
        for size in sizes {
            for start in [0, 1, size / 3] {
                if size - start < PARALLEL_THRESHOLD {
                    continue;
                }
                let plan = SegmentPlan::new(start, size);
                let connections = usize::try_from(plan.connections).unwrap();
                let spans: Vec<Span> = plan.collect();
                let case = format!("{size} from {start}: {spans:?}");
                assert_eq!(spans[0].start, start, "{case}");
                assert_eq!(spans.last().unwrap().end, size, "{case}");
                assert!(spans.windows(2).all(|w| w[0].end == w[1].start), "{case}");
                assert!(spans.iter().all(|s| s.segment), "{case}");
                for span in &spans {
                    let length = span.end - span.start;
                    assert!((MIN_SEGMENT..=MAX_SEGMENT).contains(&length), "{case}");
                }
                // At least one range per connection, and the last ones below 2 × MIN_SEGMENT.
                assert!(spans.len() >= connections, "{case}");
                let tail = connections;
                assert!(
                    spans[spans.len() - tail..]
                        .iter()
                        .all(|s| s.end - s.start < 2 * MIN_SEGMENT),
                    "{case}"
                );
            }
        }
    }

    /// A blob gets connections in proportion to its size (within bounds): a shared link gives
    /// each connection about the same rate, so the blobs of a pull finish together. With four
    /// for every blob, debianish's two 36 MB blobs ran last, on too few connections to fill a
    /// link that caps each one.
    #[test]
    fn connections_grow_with_the_blob() {
        let connections = |size: u64| SegmentPlan::new(0, size).connections;
        assert_eq!(connections(PARALLEL_THRESHOLD), 2);
        assert_eq!(connections(9_290_741), 3);
        assert_eq!(connections(15_241_079), 5);
        assert_eq!(connections(37_095_755), 12);
        assert_eq!(connections(300_000_000), MAX_CONNECTIONS_PER_BLOB);
        // What is left decides when a download resumes.
        assert_eq!(SegmentPlan::new(30_000_000, 37_095_755).connections, 3);
    }

    /// Mid-sized blobs are split too: a 15 MB blob on one connection capped at 25 MiB/s takes
    /// 0.6 s, and ran last and alone in a pull of debianish through the lan link profile.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn mid_sized_blobs_come_in_ranges() {
        let size = 9_290_741;
        let data: Vec<u8> = (0..size).map(|i| (i % 241) as u8).collect();
        let source = Ranged::new(data.clone());
        let dir = tempfile::tempdir().unwrap();
        let (result, read) = fetch_tapped(&source, &data, &dir.path().join("blob")).await;
        assert_eq!(result.unwrap(), size as u64);
        assert_eq!(read.unwrap(), data);
        let requests = source.requests.lock().unwrap().clone();
        assert!(requests.len() >= 3, "{requests:?}");
        assert!(
            requests.iter().all(|(_, end)| end.is_some()),
            "{requests:?}"
        );
    }

    /// A new range starts as soon as any range finishes, not only the oldest: the first range
    /// is the largest of the plan, and waiting for it left connections idle.
    #[tokio::test]
    async fn a_slow_first_range_does_not_hold_back_the_others() {
        let size: usize = 20 << 20;
        let data: Vec<u8> = (0..size).map(|i| (i % 239) as u8).collect();
        let plan = SegmentPlan::new(0, size as u64);
        let connections = usize::try_from(plan.connections).unwrap();
        let planned = plan.count();
        assert!(planned > connections);
        let seen = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let source = Ranged {
            hold_first: Some((planned, Arc::clone(&seen))),
            ..Ranged::new(data.clone())
        };
        let dir = tempfile::tempdir().unwrap();
        let (result, read) = fetch_tapped(&source, &data, &dir.path().join("blob")).await;
        assert_eq!(result.unwrap(), size as u64);
        assert_eq!(read.unwrap(), data);
        assert!(
            seen.load(std::sync::atomic::Ordering::SeqCst),
            "the other ranges waited for the first"
        );
    }

    #[tokio::test]
    async fn ranges_beyond_each_blobs_first_wait_for_the_pulls_permits() {
        let size: usize = 12 << 20;
        let data: Vec<u8> = (0..size).map(|i| (i % 233) as u8).collect();
        assert!(SegmentPlan::new(0, size as u64).connections >= 4);
        let source = Ranged::new(data.clone());
        let descriptor = blob_descriptor(&data);
        let dir = tempfile::tempdir().unwrap();
        let options = FetchOptions {
            extra_ranges: Some(RankedPermits::new(1)),
            ..FetchOptions::default()
        };
        let retry = RetryPolicy::default();
        let paths: Vec<_> = (0..3).map(|i| dir.path().join(i.to_string())).collect();
        let fetches = paths.iter().map(|path| {
            fetch_blob(
                &source,
                &descriptor,
                path,
                &crate::report::NoopReporter,
                &retry,
                &options,
            )
        });
        for result in futures_util::future::join_all(fetches).await {
            assert_eq!(result.unwrap(), size as u64);
        }
        for path in &paths {
            assert_eq!(std::fs::read(path).unwrap(), data);
        }
        let peak = source.open.1.load(Ordering::SeqCst);
        // Three first ranges, and one more at a time (with no bound: 3 x 4 and more).
        assert!((2..=4).contains(&peak), "{peak} bodies open at once");
    }

    #[tokio::test]
    async fn a_corrupt_segment_fails_the_digest() {
        let size = PARALLEL_THRESHOLD as usize + 5;
        let data: Vec<u8> = (0..size).map(|i| (i % 251) as u8).collect();
        let mut served = data.clone();
        served[MIN_SEGMENT as usize + 3] ^= 1;
        let source = Ranged::new(served);
        let descriptor = blob_descriptor(&data);
        let dir = tempfile::tempdir().unwrap();
        let result = fetch_blob(
            &source,
            &descriptor,
            &dir.path().join("blob"),
            &crate::report::NoopReporter,
            &RetryPolicy::default(),
            &FetchOptions::default(),
        )
        .await;
        assert!(matches!(result, Err(Error::Integrity { .. })), "{result:?}");
        assert!(!dir.path().join("blob").exists());
    }

    /// The writer hashes segments in blob order whatever order they arrive in (each segment's
    /// own chunks in order, as one connection delivers them), and the tap only ever exposes the
    /// contiguous prefix.
    #[test]
    fn segments_in_any_interleaving_hash_in_order() {
        let data: Vec<u8> = (0..200_000u32).map(|i| (i * 7 % 251) as u8).collect();
        let digest = Digest::sha256_of(&data);
        for seed in 0..20 {
            let mut rng = fastrand::Rng::with_seed(seed);
            // Segments of 30_000 bytes, chunks of random sizes.
            let mut queues: Vec<Vec<(u64, Bytes)>> = data
                .chunks(30_000)
                .enumerate()
                .map(|(i, segment)| {
                    let mut chunks = Vec::new();
                    let mut at = 0;
                    while at < segment.len() {
                        let n = rng.usize(1..5_000).min(segment.len() - at);
                        let offset = (i * 30_000 + at) as u64;
                        chunks.push((offset, Bytes::copy_from_slice(&segment[at..at + n])));
                        at += n;
                    }
                    chunks.reverse();
                    chunks
                })
                .collect();
            let (sender, receiver) = tokio::sync::mpsc::channel(1024);
            while queues.iter().any(|q| !q.is_empty()) {
                let live: Vec<usize> = (0..queues.len())
                    .filter(|&i| !queues[i].is_empty())
                    .collect();
                let pick = live[rng.usize(..live.len())];
                let (offset, bytes) = queues[pick].pop().unwrap();
                sender.try_send(Message::At { offset, bytes }).unwrap();
            }
            sender.try_send(Message::Finish).unwrap();
            drop(sender);
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("blob");
            let file = File::options()
                .read(true)
                .write(true)
                .create_new(true)
                .open(&path)
                .unwrap();
            let tap = BlobTap::default();
            tap.open(file.try_clone().unwrap());
            let written = write_blob(
                receiver,
                file,
                0,
                &path,
                Algorithm::Sha256,
                &digest,
                false,
                Some(&tap),
            )
            .unwrap();
            assert_eq!(written.bytes, data.len() as u64, "seed {seed}");
            assert_eq!(written.digester.finish(), digest, "seed {seed}");
            assert_eq!(std::fs::read(&path).unwrap(), data);
        }
    }
}
