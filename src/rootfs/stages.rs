//! The two threads of a layer's byte pipeline: one decompresses, the next hashes the
//! uncompressed bytes (diff_id) and queues them in the [`Spool`] the applier reads.
//!
//! Hashing on a thread of its own lets the decompressor run on: the SHA-256 of a layer costs
//! about a third of what inflating it does. The hasher says the stream's last word, and only it
//! carries a diff_id: a decompression thread that stops without saying how the stream ended
//! (it panicked) ends the spool with an error, never with the digest of a partial stream.

use std::io::{self, Read};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::sync::Arc;

use super::decompress::{Pipeline, StreamError, Totals, CHUNK};
use super::priority::AheadPriority;
use super::spool::Spool;
use crate::digest::Digester;

/// What the decompression thread says after its last chunk.
pub(super) type Last = Result<Totals, StreamError>;

/// Ends the spool with a failure if the pipeline stops without a last word (a thread
/// panicked), so the reader never waits forever.
struct LastWord<'a> {
    spool: &'a Spool<Last>,
    said: bool,
}

impl LastWord<'_> {
    fn say(mut self, last: Last) {
        self.said = true;
        self.spool.end(last);
    }
}

impl Drop for LastWord<'_> {
    fn drop(&mut self) {
        if !self.said {
            self.spool.end(Err(StreamError {
                error: io::Error::other("the decompression thread stopped"),
                blob: false,
            }));
        }
    }
}

/// What the decompression thread hands the hashing thread.
enum Piece {
    /// The first `.1` bytes of `.0`, next in the stream.
    Data(Vec<u8>, usize),
    /// The end: uncompressed and compressed byte counts, or why the stream failed.
    End(Result<(u64, u64), StreamError>),
}

/// Chunks between the decompression and hashing threads.
const HASH_QUEUE: usize = 2;

/// The decompression thread: fill chunks until the end of the stream, or until more than
/// `total_limit` bytes came out (the reader trips its own limit on them first), and hand
/// them to the hashing thread. Returns when the stream ended or the hasher stopped.
fn run_inflater<R: Read>(
    mut pipeline: Pipeline<R>,
    spool: &Spool<Last>,
    hasher: &SyncSender<Piece>,
    total_limit: u64,
) {
    let end = |result| {
        // A hasher that is gone said its last word already.
        let _ = hasher.send(Piece::End(result));
    };
    loop {
        let mut buffer = spool.buffer(CHUNK);
        let mut filled = 0;
        while filled < buffer.len() {
            match pipeline.read(&mut buffer[filled..]) {
                Ok(0) => break,
                Ok(read) => filled += read,
                Err(error) if error.error.kind() == io::ErrorKind::Interrupted => {}
                Err(error) => return end(Err(error)),
            }
        }
        if filled == 0 {
            let count = pipeline.count;
            return end(pipeline
                .decoder
                .finish()
                .map(|compressed| (count, compressed)));
        }
        if hasher.send(Piece::Data(buffer, filled)).is_err() {
            // The applier stopped reading (it failed), and so did the hasher.
            return;
        }
        if pipeline.count > total_limit {
            return end(Err(StreamError {
                error: io::Error::other("uncompressed size limit exceeded"),
                blob: false,
            }));
        }
    }
}

/// The hashing thread: hash each chunk (diff_id) and queue it for the applier; the last word
/// carries the diff_id. Hashing on a thread of its own lets the decompressor run on: the
/// SHA-256 of a layer costs about a third of what inflating it does.
fn run_hasher(pieces: Receiver<Piece>, mut digester: Digester, spool: &Spool<Last>) {
    let last_word = LastWord { spool, said: false };
    for piece in pieces {
        match piece {
            Piece::Data(buffer, filled) => {
                digester.update(&buffer[..filled]);
                if spool.push(buffer, filled).is_err() {
                    // The applier stopped reading (it failed): nothing more to do.
                    return last_word.say(Err(StreamError {
                        error: io::Error::other("the applier stopped reading"),
                        blob: false,
                    }));
                }
            }
            Piece::End(result) => {
                return last_word
                    .say(result.map(|(count, compressed)| (digester.finish(), count, compressed)))
            }
        }
    }
    // The decompression thread ended without a word: `last_word` reports it.
}

/// Start a layer's pipeline on two threads, decompressing and hashing, filling `spool`. The
/// returned closure runs the decompression thread (which joins the hasher before it returns,
/// so joining it is joining both); `spawn` starts it.
pub(super) fn start_threads<'scope, R, T>(
    mut pipeline: Pipeline<R>,
    spool: &Arc<Spool<Last>>,
    total_limit: u64,
    ahead: Option<&Arc<AheadPriority>>,
    spawn: impl FnOnce(std::thread::Builder, Box<dyn FnOnce() + Send + 'scope>) -> io::Result<T>,
) -> io::Result<T>
where
    R: Read + Send + 'scope,
{
    let digester = pipeline
        .digester
        .take()
        .ok_or_else(|| io::Error::other("the pipeline has no digester"))?;
    let (sender, receiver) = sync_channel(HASH_QUEUE);
    let hasher = std::thread::Builder::new()
        .name("acrpull-diffid".into())
        .spawn({
            let spool = Arc::clone(spool);
            let ahead = ahead.cloned();
            move || {
                let _lowered = ahead.as_deref().map(AheadPriority::lower_this_thread);
                run_hasher(receiver, digester, &spool);
            }
        })?;
    let spool = Arc::clone(spool);
    let ahead = ahead.cloned();
    spawn(
        std::thread::Builder::new().name("acrpull-inflate".into()),
        Box::new(move || {
            let _lowered = ahead.as_deref().map(AheadPriority::lower_this_thread);
            run_inflater(pipeline, &spool, &sender, total_limit);
            drop(sender);
            if let Err(panic) = hasher.join() {
                std::panic::resume_unwind(panic);
            }
        }),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::digest::{Algorithm, Digest};
    use crate::media_type::LayerCompression;
    use crate::rootfs::decompress::pipeline;
    use crate::rootfs::spool::{Next, SpoolLimits};

    /// Read every chunk of `spool` until its last word.
    fn drain(spool: &Spool<Last>) -> (Vec<u8>, Last) {
        let mut out = Vec::new();
        loop {
            match spool.take(Vec::new()) {
                Next::Data(data, length) => out.extend_from_slice(&data[..length]),
                Next::End(last) => return (out, last),
                Next::Failed(error) => panic!("spool failed: {error}"),
            }
        }
    }

    fn spool() -> Spool<Last> {
        let spool = Spool::new(
            SpoolLimits {
                memory: 64 * CHUNK,
                spill: 0,
            },
            None,
        );
        spool.attach();
        spool
    }

    #[test]
    fn the_hashing_thread_queues_every_piece_in_order_and_ends_with_their_diff_id() {
        let spool = spool();
        let (sender, receiver) = sync_channel(HASH_QUEUE);
        std::thread::scope(|scope| {
            scope.spawn(|| run_hasher(receiver, Digester::new(Algorithm::Sha256), &spool));
            for piece in [&b"hello "[..], b"wor", b"ld"] {
                let mut buffer = piece.to_vec();
                buffer.extend_from_slice(b"unused tail");
                sender.send(Piece::Data(buffer, piece.len())).unwrap();
            }
            sender.send(Piece::End(Ok((11, 5)))).unwrap();
        });
        let (out, last) = drain(&spool);
        assert_eq!(out, b"hello world");
        let (digest, uncompressed, compressed) = last.unwrap();
        assert_eq!(digest, Digest::sha256_of(b"hello world"));
        assert_eq!((uncompressed, compressed), (11, 5));
    }

    #[test]
    fn an_inflater_that_stops_without_its_end_fails_the_layer_instead_of_ending_it() {
        let spool = spool();
        let (sender, receiver) = sync_channel(HASH_QUEUE);
        sender.send(Piece::Data(b"partial".to_vec(), 7)).unwrap();
        // The decompression thread went away (it panicked) before saying how the stream ended.
        drop(sender);
        run_hasher(receiver, Digester::new(Algorithm::Sha256), &spool);
        let (out, last) = drain(&spool);
        assert_eq!(out, b"partial");
        let error = last.expect_err("a partial stream must never end with a diff_id");
        assert!(
            error.error.to_string().contains("stopped"),
            "{}",
            error.error
        );
    }

    #[test]
    fn an_inflater_error_reaches_the_reader_after_the_bytes_before_it() {
        let spool = spool();
        let (sender, receiver) = sync_channel(HASH_QUEUE);
        sender.send(Piece::Data(b"ok".to_vec(), 2)).unwrap();
        sender
            .send(Piece::End(Err(StreamError {
                error: io::Error::other("corrupt deflate stream"),
                blob: true,
            })))
            .unwrap();
        drop(sender);
        run_hasher(receiver, Digester::new(Algorithm::Sha256), &spool);
        let (out, last) = drain(&spool);
        assert_eq!(out, b"ok");
        let error = last.expect_err("the inflater failed");
        assert!(error.blob);
    }

    #[test]
    fn the_inflater_stops_when_the_hashing_thread_is_gone() {
        let spool = spool();
        let (sender, receiver) = sync_channel(HASH_QUEUE);
        drop(receiver);
        // An endless blob: this returns only because nobody hashes any more.
        let pipeline = pipeline(io::repeat(7), LayerCompression::None, Algorithm::Sha256).unwrap();
        run_inflater(pipeline, &spool, &sender, u64::MAX);
    }
}
