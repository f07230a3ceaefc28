//! The layer byte pipeline: blob → decompressor → diff_id hasher → limits → tar parser.
//!
//! Limits live in the reader because the tar crate buffers PAX and GNU long-name headers with
//! `read_all` and no cap (unpack.md 3.5). The applier opens a *header window* around each call
//! to the entry iterator: bytes read while it is open are extension headers (plus a few header
//! blocks and padding), and exceeding the window fails the read. A total byte budget stops
//! decompression bombs. Which limit tripped (or whether the blob source itself failed) is
//! recorded in shared state, because the tar crate may wrap our `io::Error` in its own.

use std::cell::RefCell;
use std::io::{self, BufReader, Read};
use std::rc::Rc;

use flate2::read::MultiGzDecoder;

use crate::digest::{Algorithm, Digest, HashingReader};
use crate::media_type::LayerCompression;

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

/// Counts compressed bytes and records a failure of the blob source.
pub(crate) struct BlobReader<R> {
    inner: R,
    count: u64,
    budget: SharedBudget,
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
                    self.budget.borrow_mut().tripped = Some(Tripped::BlobRead);
                }
                Err(error)
            }
        }
    }
}

/// The decompressor for one layer.
pub(crate) enum Decoder<R: Read> {
    Plain(BlobReader<R>),
    Gzip(Box<MultiGzDecoder<BlobReader<R>>>),
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
    /// Drain the compressed blob to EOF (after the decompressor reached its end) and return
    /// the number of compressed bytes read.
    pub(crate) fn finish(self) -> io::Result<u64> {
        let mut blob = match self {
            Decoder::Plain(reader) => reader,
            Decoder::Gzip(reader) => reader.into_inner(),
            Decoder::Zstd(reader) => reader.finish().into_inner(),
        };
        io::copy(&mut blob, &mut io::sink())?;
        Ok(blob.count)
    }
}

/// The reader handed to the tar parser: hashes for the diff_id and enforces the limits.
pub(crate) struct LayerReader<R: Read> {
    inner: HashingReader<Decoder<R>>,
    budget: SharedBudget,
}

impl<R: Read> LayerReader<R> {
    /// Build the pipeline for one blob.
    pub(crate) fn new(
        blob: R,
        compression: LayerCompression,
        algorithm: Algorithm,
        total_limit: u64,
    ) -> io::Result<(Self, SharedBudget)> {
        let budget = Rc::new(RefCell::new(Budget {
            total_limit,
            ..Budget::default()
        }));
        let blob = BlobReader {
            inner: blob,
            count: 0,
            budget: Rc::clone(&budget),
        };
        let decoder = match compression {
            LayerCompression::None => Decoder::Plain(blob),
            LayerCompression::Gzip => Decoder::Gzip(Box::new(MultiGzDecoder::new(blob))),
            LayerCompression::Zstd => Decoder::Zstd(zstd::stream::read::Decoder::new(blob)?),
        };
        let reader = LayerReader {
            inner: HashingReader::new(decoder, algorithm),
            budget: Rc::clone(&budget),
        };
        Ok((reader, budget))
    }

    /// Drain the uncompressed stream to EOF (trailing zero blocks and junk are hashed too),
    /// then the blob; returns (diff_id, uncompressed bytes, compressed bytes).
    pub(crate) fn finish(mut self) -> io::Result<(Digest, u64, u64)> {
        io::copy(&mut self, &mut io::sink())?;
        let (digest, uncompressed, decoder) = self.inner.finish();
        let compressed = decoder.finish()?;
        Ok((digest, uncompressed, compressed))
    }
}

impl<R: Read> Read for LayerReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let read = self.inner.read(buf)?;
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
}
