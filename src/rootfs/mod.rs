//! The root filesystem applier: turns OCI/Docker layer blobs into one directory tree.
//!
//! A layer is a *changeset* (docs/unpack.md section 1): entries are created or replace what lower
//! layers left, `.wh.NAME` removes lower content, `.wh..wh..opq` clears a directory's lower
//! content. Layers are hostile input (section 3), so the tar crate is used only as a streaming
//! parser, and all file system work is done by hand with `*at` calls relative to one root
//! descriptor: every path resolves inside the root with chroot semantics (`path`), the final
//! component is never followed (`entry`, `remove`), and the byte stream is bounded and
//! verified against the diff_id (`decompress`).
//!
//! One layer keeps up to four threads busy, joined by bounded queues: inflating, hashing the
//! diff_id (`decompress`), the applier itself (tar order: names, replacements, whiteouts), and
//! the filler, which writes each created file's contents and metadata through its descriptor
//! (`filler`). Nothing of a layer counts as applied until all of them finished and the diff_id
//! matched. The threads of a layer inflated ahead of its turn run at a lower CPU priority
//! while they wait for it (`priority`), so that they use what the current layer leaves idle.
//!
//! Running unprivileged ([`ApplyOptions::rootless`]) follows umoci `--rootless`: owners go to the
//! `user.rootlesscontainers` xattr, device nodes are skipped, and unreadable directories are
//! widened while a layer writes into them. Degradations are reported once per layer through
//! [`Applier::warnings`].

mod bundle;
mod decompress;
mod entry;
mod error;
mod filler;
mod header;
mod layer;
mod path;
mod priority;
mod remove;
mod spool;
mod stages;
mod upper;
pub(crate) mod whiteout;
mod writeback;

#[cfg(test)]
mod hostile_tests;
#[cfg(test)]
mod test_support;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod umoci_tests;

use std::path::{Path, PathBuf};

use rustix::fs::{self as rfs, FileType, Mode, OFlags};

pub use bundle::{runtime_config, ExecutionConfig, ImageConfig};
pub use error::Error;
pub use path::PathResolution;
pub use writeback::EarlyWriteback;

pub(crate) use decompress::Inflating;
pub(crate) use spool::SpillArea;

use crate::digest::Digest;
use crate::media_type::LayerCompression;

/// Limits and mode of one application run.
#[derive(Debug, Clone)]
pub struct ApplyOptions {
    /// Largest uncompressed layer accepted (decompression bomb guard). Default 64 GiB.
    pub max_uncompressed_bytes: u64,
    /// Most entries accepted in one layer. Default 10 000 000.
    pub max_entries: u64,
    /// Largest total size of one entry's extension headers (PAX, GNU long names). Default 1 MiB,
    /// as Go's `archive/tar`.
    pub max_extension_header: u64,
    /// Unprivileged extraction (umoci `--rootless` semantics). Default: not running as root.
    pub rootless: bool,
    /// How in-root paths are resolved. Default: `openat2(RESOLVE_IN_ROOT)` when available.
    pub path_resolution: PathResolution,
    /// Where the applier's temporary files go (unnamed, gone when closed): the list of paths a
    /// large layer wrote, kept for its whiteouts, spills there. Give a directory on the
    /// destination's file system (a pull uses its staging directory). Default `None`: an
    /// unnamed `O_TMPFILE` in the root directory itself, else the system's temporary directory.
    pub spill_dir: Option<PathBuf>,
    /// Bytes of that list kept in memory before it spills (about 80 bytes plus the path's
    /// length each). Default 8 MiB, about 80 000 paths.
    pub upper_paths_memory: usize,
    /// What to do with each large file as soon as it is complete: make it durable
    /// (`fdatasync` on a background thread) for a caller that ends with a `syncfs` of the tree
    /// anyway, so the disk works while later entries are applied; or only start its writeback,
    /// for a caller that syncs nothing. Default: neither.
    pub early_writeback: EarlyWriteback,
    /// Write the contents, owner, mode and times of regular files on a second thread while
    /// the applier creates the next entries (names are still created in layer order).
    /// Default: on.
    pub fill_thread: bool,
}

impl Default for ApplyOptions {
    fn default() -> Self {
        ApplyOptions {
            max_uncompressed_bytes: 64 << 30,
            max_entries: 10_000_000,
            max_extension_header: 1 << 20,
            rootless: !rustix::process::geteuid().is_root(),
            path_resolution: PathResolution::Auto,
            spill_dir: None,
            upper_paths_memory: upper::DEFAULT_MEMORY_BUDGET,
            early_writeback: EarlyWriteback::Off,
            fill_thread: true,
        }
    }
}

/// What one layer contained.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct LayerStats {
    /// Tar entries read (including whiteouts and skipped entries).
    pub entries: u64,
    /// Bytes of the uncompressed stream, trailing padding included.
    pub uncompressed_bytes: u64,
    /// Bytes of the compressed blob.
    pub compressed_bytes: u64,
    /// Whiteout and opaque-whiteout entries applied.
    pub whiteouts: u64,
    /// Entries skipped (AUFS metadata, device nodes when rootless, global headers).
    pub skipped: u64,
    /// Paths of this layer's whiteout bookkeeping written to a spill file (0 unless the layer
    /// is large; see [`ApplyOptions::upper_paths_memory`]).
    pub spilled_paths: u64,
}

/// Applies layers, lowest first, to one root directory.
#[derive(Debug)]
pub struct Applier {
    resolver: path::Resolver,
    options: ApplyOptions,
    warnings: Vec<String>,
    /// Present with [`ApplyOptions::early_writeback`]; dropped (joined) with the applier.
    writeback: Option<writeback::Writeback>,
}

impl Applier {
    /// Open `root`, which must be an existing directory (empty, or holding the layers applied
    /// so far). It is opened once; later renames of its path do not redirect the applier.
    pub fn new(root: &Path, options: ApplyOptions) -> Result<Self, Error> {
        let open_error = |source: std::io::Error| Error::OpenRoot {
            path: root.to_path_buf(),
            source,
        };
        let flags = OFlags::PATH | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        let fd = rfs::open(root, flags, Mode::empty()).map_err(|errno| open_error(errno.into()))?;
        let stat = rfs::fstat(&fd).map_err(|errno| open_error(errno.into()))?;
        if FileType::from_raw_mode(stat.st_mode) != FileType::Directory {
            return Err(open_error(std::io::Error::from(rustix::io::Errno::NOTDIR)));
        }
        Ok(Applier {
            resolver: path::Resolver::new(fd, options.path_resolution, options.rootless),
            writeback: writeback::Writeback::start(options.early_writeback),
            options,
            warnings: Vec::new(),
        })
    }

    /// Apply one layer. `blob` yields the compressed bytes (the caller verifies their digest);
    /// they are decompressed per `compression`, the uncompressed stream is verified against
    /// `diff_id` (both drained to EOF), and the tar is applied as a changeset. Decompression
    /// runs on a thread of its own for the duration of the call.
    ///
    /// On error the root may be partly modified; the caller must discard the whole tree.
    pub fn apply_layer(
        &mut self,
        blob: impl std::io::Read + Send,
        compression: LayerCompression,
        diff_id: &Digest,
    ) -> Result<LayerStats, Error> {
        let mut degraded = entry::Degraded::default();
        let stats = layer::apply(
            &mut self.resolver,
            &self.options,
            self.writeback.as_ref(),
            &mut degraded,
            blob,
            compression,
            diff_id,
        )?;
        self.summarise(diff_id, &degraded);
        Ok(stats)
    }

    /// Apply one layer whose decompression already runs ([`Inflating::start`], started ahead
    /// by the rootfs scheduler), with the same checks as [`Applier::apply_layer`].
    pub(crate) fn apply_inflating(
        &mut self,
        layer: Inflating,
        diff_id: &Digest,
    ) -> Result<LayerStats, Error> {
        let mut degraded = entry::Degraded::default();
        let stats = layer::apply_inflating(
            &mut self.resolver,
            &self.options,
            self.writeback.as_ref(),
            &mut degraded,
            layer,
            diff_id,
        )?;
        self.summarise(diff_id, &degraded);
        Ok(stats)
    }

    /// The largest uncompressed layer this applier accepts.
    pub(crate) fn max_uncompressed_bytes(&self) -> u64 {
        self.options.max_uncompressed_bytes
    }

    /// Warnings collected so far: at most one line per kind of degradation per layer.
    pub fn warnings(&self) -> &[String] {
        &self.warnings
    }

    /// Whether the kernel's `openat2(RESOLVE_IN_ROOT)` is used (false: userspace walk).
    pub fn uses_openat2(&self) -> bool {
        self.resolver.uses_openat2()
    }

    fn summarise(&mut self, diff_id: &Digest, degraded: &entry::Degraded) {
        let layer = diff_id.to_string();
        if degraded.devices > 0 {
            self.warnings.push(format!(
                "layer {layer}: skipped {} device node(s): creating devices needs root",
                degraded.devices
            ));
        }
        if degraded.symlink_owners > 0 {
            self.warnings.push(format!(
                "layer {layer}: could not record the owner of {} symlink(s) (user.* xattrs are not allowed on symlinks)",
                degraded.symlink_owners
            ));
        }
        if !degraded.dropped_xattrs.is_empty() {
            let names: Vec<&str> = degraded.dropped_xattrs.iter().map(String::as_str).collect();
            self.warnings.push(format!(
                "layer {layer}: dropped host-specific xattrs: {}",
                names.join(", ")
            ));
        }
        if !degraded.failed_xattrs.is_empty() {
            let names: Vec<&str> = degraded.failed_xattrs.iter().map(String::as_str).collect();
            self.warnings.push(format!(
                "layer {layer}: the file system refused xattrs (not supported or not permitted): {}",
                names.join(", ")
            ));
        }
    }
}
