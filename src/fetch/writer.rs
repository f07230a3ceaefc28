//! The blocking half of a download: hashes and appends each chunk the network task sends,
//! replays what an earlier attempt wrote, and checks the reassembled ranges leave no gap.

use std::fs::File;
use std::io::Write as _;
use std::os::unix::fs::FileExt as _;
use std::path::Path;

use super::{io, BlobTap, Message};
use crate::digest::{Algorithm, Digest, Digester};
use crate::error::{Error, Internal, Result};
use crate::manifest::Descriptor;

/// What the writer produced.
pub(super) struct Written {
    pub(super) digester: Digester,
    pub(super) bytes: u64,
}

/// A replay of bytes already written (after a server ignored `Range`).
struct Replay {
    digester: Digester,
    remaining: u64,
    expected: Digest,
}

/// The blocking writer: hash and append each chunk, publish progress to the tap.
#[allow(clippy::too_many_arguments)]
pub(super) fn write_blob(
    mut receiver: tokio::sync::mpsc::Receiver<Message>,
    mut file: File,
    held: u64,
    path: &Path,
    algorithm: Algorithm,
    digest: &Digest,
    sync: bool,
    tap: Option<&BlobTap>,
) -> Result<Written> {
    let mut digester = Digester::new(algorithm);
    hash_range(&file, 0, held, &mut digester).map_err(io(path))?;
    let mut bytes: u64 = held;
    if let (Some(tap), true) = (tap, held > 0) {
        tap.advance(held);
    }
    let mut replay: Option<Replay> = None;
    // Segments written ahead of `bytes` (start -> end), hashed once the gap before them fills.
    let mut ahead: std::collections::BTreeMap<u64, u64> = std::collections::BTreeMap::new();
    while let Some(message) = receiver.blocking_recv() {
        let data = match message {
            Message::Data(data) => data,
            Message::At {
                offset,
                bytes: data,
            } => {
                file.write_all_at(&data, offset).map_err(io(path))?;
                let end = offset + data.len() as u64;
                if offset == bytes {
                    digester.update(&data);
                    bytes = end;
                } else {
                    // Extend the run this continues, or start one.
                    match ahead.range_mut(..offset).next_back() {
                        Some((_, run_end)) if *run_end == offset => *run_end = end,
                        _ => {
                            ahead.insert(offset, end);
                        }
                    }
                }
                while let Some((&start, &end)) = ahead.first_key_value() {
                    if start > bytes {
                        break;
                    }
                    ahead.pop_first();
                    if end > bytes {
                        hash_range(&file, bytes, end, &mut digester).map_err(io(path))?;
                        bytes = end;
                    }
                }
                if let Some(tap) = tap {
                    tap.advance(bytes);
                }
                continue;
            }
            Message::Replay => {
                if bytes > 0 {
                    let expected = match replay.take() {
                        Some(previous) => previous.expected,
                        None => digester.clone().finish(),
                    };
                    replay = Some(Replay {
                        digester: Digester::new(algorithm),
                        remaining: bytes,
                        expected,
                    });
                }
                continue;
            }
            Message::Finish => {
                if let Some((&start, _)) = ahead.first_key_value() {
                    tracing::error!(%digest, start, bytes, "ranges finished with a gap");
                    return Err(Internal::Broken("blob ranges finished with a gap").into());
                }
                if sync {
                    file.sync_all().map_err(io(path))?;
                }
                return Ok(Written { digester, bytes });
            }
        };
        let mut data = &data[..];
        if let Some(current) = &mut replay {
            let take = data
                .len()
                .min(usize::try_from(current.remaining).unwrap_or(usize::MAX));
            current.digester.update(&data[..take]);
            current.remaining -= take as u64;
            data = &data[take..];
            if current.remaining == 0 {
                let Some(done) = replay.take() else {
                    unreachable!("replay is set")
                };
                let actual = done.digester.clone().finish();
                if actual != done.expected {
                    return Err(Error::Integrity {
                        what: "blob",
                        digest: digest.clone(),
                        expected: format!("the first {bytes} bytes as first received"),
                        actual: "different bytes when the download restarted".into(),
                    });
                }
                digester = done.digester;
            }
        }
        if data.is_empty() {
            continue;
        }
        digester.update(data);
        file.write_all(data).map_err(io(path))?;
        bytes += data.len() as u64;
        if let Some(tap) = tap {
            tap.advance(bytes);
        }
    }
    // The network task stopped without finishing: it reports why.
    Err(Internal::Stopped {
        task: "blob download",
    }
    .into())
}

/// Hash bytes `start..end` of `file` (a resumed prefix, or segments written ahead).
pub(super) fn hash_range(
    file: &File,
    start: u64,
    end: u64,
    digester: &mut Digester,
) -> std::io::Result<()> {
    let mut buffer = vec![0u8; (end - start).min(1 << 20) as usize];
    let mut offset = start;
    while offset < end {
        let want = buffer
            .len()
            .min(usize::try_from(end - offset).unwrap_or(usize::MAX));
        let read = file.read_at(&mut buffer[..want], offset)?;
        if read == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        digester.update(&buffer[..read]);
        offset += read as u64;
    }
    Ok(())
}

pub(super) fn too_long(descriptor: &Descriptor, at_least: u64) -> Error {
    Error::Integrity {
        what: "blob",
        digest: descriptor.digest.clone(),
        expected: format!("{} bytes", descriptor.size),
        actual: format!("at least {at_least} bytes"),
    }
}
