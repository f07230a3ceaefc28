//! Progress events. The library reports; the binary decides how to draw them (bars, plain
//! lines, JSON events, nothing).

use crate::digest::Digest;

/// What a blob is, for display.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlobKind {
    /// An image config.
    Config,
    /// A layer.
    Layer,
    /// A manifest or index (child manifests of `--platform all`).
    Manifest,
}

/// Receives progress events. Implementations must be cheap: `on_blob_progress` is called for
/// every chunk read.
pub trait Reporter: Send + Sync {
    /// The reference resolved to a manifest.
    fn on_resolved(&self, _reference: &str, _digest: &Digest, _platform: Option<&str>) {}
    /// A blob download starts (or is found already present, with `cached`).
    fn on_blob_start(&self, _digest: &Digest, _kind: BlobKind, _size: u64, _cached: bool) {}
    /// `bytes` more bytes of a blob arrived.
    fn on_blob_progress(&self, _digest: &Digest, _bytes: u64) {}
    /// A download was retried or resumed at `offset`.
    fn on_blob_retry(&self, _digest: &Digest, _offset: u64, _reason: &str) {}
    /// A blob is complete and verified.
    fn on_blob_done(&self, _digest: &Digest) {}
    /// A layer starts being applied to the root filesystem.
    fn on_layer_apply_start(&self, _digest: &Digest, _index: usize, _count: usize) {}
    /// A layer was applied.
    fn on_layer_applied(&self, _digest: &Digest, _index: usize, _count: usize) {}
    /// A warning worth showing once (e.g. rootless ownership skipped).
    fn on_warning(&self, _message: &str) {}
}

/// A reporter that ignores everything.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoopReporter;

impl Reporter for NoopReporter {}
