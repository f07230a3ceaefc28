//! `--json-events`: one JSON object per line on stdout for every step of a pull, for tools
//! that drive acrpull. Every object has an `event` key naming it; field names are camelCase,
//! like the `--json` summary. The schema is documented in `docs/cli.md`.
//!
//! `blob_progress` is throttled per blob: at most one line per [`PROGRESS_BYTES`] received or
//! per [`PROGRESS_INTERVAL`], whichever comes first (and never for a blob that arrives in one
//! piece; `blob_done` follows).

use std::collections::HashMap;
use std::io::Write;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use acrpull::report::{BlobKind, Reporter};
use acrpull::{Digest, PullOutcome};
use serde::Serialize;

/// Bytes between two `blob_progress` lines of one blob.
pub const PROGRESS_BYTES: u64 = 256 * 1024;
/// Time between two `blob_progress` lines of one blob.
pub const PROGRESS_INTERVAL: Duration = Duration::from_millis(100);

/// One line of `--json-events`.
#[derive(Debug, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event<'a> {
    /// The reference resolved to a manifest.
    #[serde(rename_all = "camelCase")]
    Resolved {
        /// The reference.
        reference: &'a str,
        /// The manifest that will be written.
        digest: &'a Digest,
        /// The platform chosen (`all` for a whole index), or null.
        platform: Option<&'a str>,
    },
    /// A blob download starts, or a blob is already present (`cached`).
    #[serde(rename_all = "camelCase")]
    BlobStart {
        /// The blob.
        digest: &'a Digest,
        /// `config`, `layer` or `manifest`.
        kind: &'static str,
        /// Its size from the manifest.
        size: u64,
        /// Already present at the destination; nothing is downloaded.
        cached: bool,
    },
    /// Bytes received so far (throttled).
    #[serde(rename_all = "camelCase")]
    BlobProgress {
        /// The blob.
        digest: &'a Digest,
        /// Bytes of the blob received so far.
        downloaded: u64,
        /// Its size.
        size: u64,
    },
    /// A download was retried or resumed.
    #[serde(rename_all = "camelCase")]
    BlobRetry {
        /// The blob.
        digest: &'a Digest,
        /// Where the download resumes.
        offset: u64,
        /// Why.
        reason: &'a str,
    },
    /// A blob is complete and verified.
    #[serde(rename_all = "camelCase")]
    BlobDone {
        /// The blob.
        digest: &'a Digest,
        /// Its size.
        size: u64,
    },
    /// A layer starts being applied to the root filesystem.
    #[serde(rename_all = "camelCase")]
    LayerApplyStart {
        /// The layer.
        digest: &'a Digest,
        /// 0-based position in the image.
        index: usize,
        /// Number of layers.
        count: usize,
    },
    /// A layer was applied.
    #[serde(rename_all = "camelCase")]
    LayerApplied {
        /// The layer.
        digest: &'a Digest,
        /// 0-based position in the image.
        index: usize,
        /// Number of layers.
        count: usize,
    },
    /// Something worth knowing that did not stop the pull.
    #[serde(rename_all = "camelCase")]
    Warning {
        /// The message.
        message: &'a str,
    },
    /// The pull succeeded: the `--json` summary fields follow.
    Done {
        /// The summary.
        #[serde(flatten)]
        outcome: &'a PullOutcome,
    },
    /// The command failed.
    #[serde(rename_all = "camelCase")]
    Error {
        /// `usage`, `auth`, `not_found`, `network`, `integrity` or `other`.
        class: &'static str,
        /// The process exit code that follows.
        exit_code: u8,
        /// What failed, then each cause, joined by `: `.
        message: String,
        /// What to do about it, when known.
        hint: Option<String>,
    },
}

/// Write one event line to stdout (locked, flushed). Output errors (a closed pipe) are ignored:
/// the pull's own result decides the exit code.
pub fn emit(event: &Event<'_>) {
    let mut stdout = std::io::stdout().lock();
    let _ = write_event(&mut stdout, event);
}

fn write_event(out: &mut impl Write, event: &Event<'_>) -> std::io::Result<()> {
    serde_json::to_writer(&mut *out, event)?;
    out.write_all(b"\n")?;
    out.flush()
}

#[derive(Debug)]
struct Blob {
    size: u64,
    downloaded: u64,
    reported: u64,
    reported_at: Instant,
}

/// A [`Reporter`] that prints [`Event`]s.
#[derive(Debug, Default)]
pub struct EventsReporter {
    blobs: Mutex<HashMap<Digest, Blob>>,
}

fn kind_name(kind: BlobKind) -> &'static str {
    match kind {
        BlobKind::Config => "config",
        BlobKind::Layer => "layer",
        BlobKind::Manifest => "manifest",
    }
}

impl Reporter for EventsReporter {
    fn on_resolved(&self, reference: &str, digest: &Digest, platform: Option<&str>) {
        emit(&Event::Resolved {
            reference,
            digest,
            platform,
        });
    }

    fn on_blob_start(&self, digest: &Digest, kind: BlobKind, size: u64, cached: bool) {
        if let Ok(mut blobs) = self.blobs.lock() {
            blobs.insert(
                digest.clone(),
                Blob {
                    size,
                    downloaded: 0,
                    reported: 0,
                    reported_at: Instant::now(),
                },
            );
        }
        emit(&Event::BlobStart {
            digest,
            kind: kind_name(kind),
            size,
            cached,
        });
    }

    fn on_blob_progress(&self, digest: &Digest, bytes: u64) {
        let due = {
            let Ok(mut blobs) = self.blobs.lock() else {
                return;
            };
            let Some(blob) = blobs.get_mut(digest) else {
                return;
            };
            blob.downloaded += bytes;
            let now = Instant::now();
            let due = blob.downloaded < blob.size
                && (blob.downloaded - blob.reported >= PROGRESS_BYTES
                    || now.duration_since(blob.reported_at) >= PROGRESS_INTERVAL);
            if due {
                blob.reported = blob.downloaded;
                blob.reported_at = now;
            }
            due.then_some((blob.downloaded, blob.size))
        };
        if let Some((downloaded, size)) = due {
            emit(&Event::BlobProgress {
                digest,
                downloaded,
                size,
            });
        }
    }

    fn on_blob_retry(&self, digest: &Digest, offset: u64, reason: &str) {
        if let Ok(mut blobs) = self.blobs.lock() {
            if let Some(blob) = blobs.get_mut(digest) {
                blob.downloaded = offset;
                blob.reported = offset;
            }
        }
        emit(&Event::BlobRetry {
            digest,
            offset,
            reason,
        });
    }

    fn on_blob_done(&self, digest: &Digest) {
        let size = self
            .blobs
            .lock()
            .ok()
            .and_then(|mut blobs| blobs.remove(digest))
            .map_or(0, |blob| blob.size);
        emit(&Event::BlobDone { digest, size });
    }

    fn on_layer_apply_start(&self, digest: &Digest, index: usize, count: usize) {
        emit(&Event::LayerApplyStart {
            digest,
            index,
            count,
        });
    }

    fn on_layer_applied(&self, digest: &Digest, index: usize, count: usize) {
        emit(&Event::LayerApplied {
            digest,
            index,
            count,
        });
    }

    fn on_warning(&self, message: &str) {
        emit(&Event::Warning { message });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn digest() -> Digest {
        "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
            .parse()
            .unwrap()
    }

    fn line(event: &Event<'_>) -> serde_json::Value {
        let mut out = Vec::new();
        write_event(&mut out, event).unwrap();
        assert!(out.ends_with(b"\n") && !out[..out.len() - 1].contains(&b'\n'));
        serde_json::from_slice(&out).unwrap()
    }

    #[test]
    fn events_are_tagged_single_lines_with_camel_case_fields() {
        let d = digest();
        let start = line(&Event::BlobStart {
            digest: &d,
            kind: "layer",
            size: 3,
            cached: false,
        });
        assert_eq!(start["event"], "blob_start");
        assert_eq!(start["digest"], d.to_string());
        let error = line(&Event::Error {
            class: "not_found",
            exit_code: 4,
            message: "x".into(),
            hint: None,
        });
        assert_eq!(error["event"], "error");
        assert_eq!(error["exitCode"], 4);
        let apply = line(&Event::LayerApplyStart {
            digest: &d,
            index: 0,
            count: 2,
        });
        assert_eq!(apply["event"], "layer_apply_start");
    }
}
