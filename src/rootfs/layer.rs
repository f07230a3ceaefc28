//! Applying one layer: the entry loop, whiteouts, hardlinks and the end-of-layer pass.
//!
//! This is docs/unpack.md section 4 in code. The "upper" set ([`UpperPaths`], bounded memory)
//! holds every path this layer wrote and their ancestors, so whiteouts and opaque markers only
//! remove lower content, whatever their position in the layer. Directory modes and times are
//! collected and applied after all entries, deepest first, so read-only directories can still
//! receive children and mtimes stay exact. What each tar header says (entry kind, metadata) is
//! read and checked in `header`.

use std::collections::BTreeMap;
use std::io::{self, Read};
use std::os::fd::{AsFd, OwnedFd};

use rustix::fs::{self as rfs, AtFlags, FileType, Mode, OFlags};
use rustix::io::Errno;

use super::decompress::{self, Inflating, LayerReader, SharedBudget, Tripped};
use super::entry::{process_umask, Degraded, FileError, Metadata, NewFile, Target};
use super::error::{display, Error};
use super::filler::Filler;
use super::header::{device_numbers, metadata, EntryKind};
use super::path::{proc_path, ResolveError, Resolver};
use super::remove::Remover;
use super::upper::{SpillPlace, UpperPaths};
use super::whiteout::{classify, is_aufs_path, join, normalize, split, Kind};
use super::writeback::Writeback;
use super::{ApplyOptions, LayerStats};
use crate::digest::Digest;
use crate::media_type::LayerCompression;

/// Header blocks and padding allowed on top of the extension headers in one header window.
const HEADER_SLACK: u64 = 16 * 512;
/// Bytes copied per write into a regular file.
const FILE_BUFFER: usize = 256 * 1024;

/// The state of one layer application.
struct Layer<'a> {
    resolver: &'a mut Resolver,
    degraded: &'a mut Degraded,
    upper: UpperPaths,
    deferred: BTreeMap<Vec<u8>, Metadata>,
    stats: LayerStats,
    /// Writes regular files' contents and metadata on a second thread, if it runs.
    filler: Option<Filler<'a>>,
    /// Reused for copying file contents when there is no filler.
    buffer: Vec<u8>,
    /// The parent directory of the previous entry, reused while entries share it (tar
    /// streams are mostly grouped by directory). Dropped whenever anything is removed or
    /// replaced, since that may change what a path resolves to.
    parent: Option<Parent>,
    /// Set when the current entry removed something: the cached parent must not be kept.
    removed: bool,
    /// Our effective user and group: the owner of what we create.
    owner: (u32, u32),
    /// Where finished large files go to be written to disk early, if anywhere.
    writeback: Option<&'a Writeback>,
    /// The process umask (see `entry::file_create_mode`).
    umask: Option<u32>,
}

/// A resolved parent directory and who owns what is created in it.
struct Parent {
    path: Vec<u8>,
    fd: OwnedFd,
    /// The owner the kernel gives a new file in this directory (root extraction), when it is
    /// certain: the directory is setgid or already has our group.
    created_owner: Option<(u32, u32)>,
}

/// Apply one layer blob; see [`super::Applier::apply_layer`]. Decompression runs on a scoped
/// thread of its own, which has exited when this call returns.
pub(crate) fn apply(
    resolver: &mut Resolver,
    options: &ApplyOptions,
    writeback: Option<&Writeback>,
    degraded: &mut Degraded,
    blob: impl Read + Send,
    compression: LayerCompression,
    diff_id: &Digest,
) -> Result<LayerStats, Error> {
    resolver.restore.clear();
    std::thread::scope(|scope| {
        let (reader, budget, inflater) = LayerReader::spawn(
            scope,
            blob,
            compression,
            diff_id.algorithm(),
            options.max_uncompressed_bytes,
        )
        .map_err(Error::CorruptLayer)?;
        let result = apply_stream(
            (resolver, degraded, writeback),
            reader,
            &budget,
            options,
            diff_id,
        );
        // The reader is gone, so the thread stops at its next chunk. Joined here, not left to
        // the scope, which waits only for the thread's closure: the thread may still be
        // running its thread-local destructors then (LeakSanitizer, checking after each
        // `layer_apply` fuzz input, once reported their allocation as a leak).
        if let Err(panic) = inflater.join() {
            std::panic::resume_unwind(panic);
        }
        result
    })
}

/// Apply a layer whose inflater runs already; see [`super::Applier::apply_inflating`].
pub(crate) fn apply_inflating(
    resolver: &mut Resolver,
    options: &ApplyOptions,
    writeback: Option<&Writeback>,
    degraded: &mut Degraded,
    layer: Inflating,
    diff_id: &Digest,
) -> Result<LayerStats, Error> {
    resolver.restore.clear();
    let (reader, budget) = LayerReader::from_inflating(layer, options.max_uncompressed_bytes);
    apply_stream(
        (resolver, degraded, writeback),
        reader,
        &budget,
        options,
        diff_id,
    )
}

/// Apply the entries of the layer stream, then check its diff_id.
fn apply_stream<R: Read + Send>(
    (resolver, degraded, writeback): (&mut Resolver, &mut Degraded, Option<&Writeback>),
    reader: LayerReader<R>,
    budget: &SharedBudget,
    options: &ApplyOptions,
    diff_id: &Digest,
) -> Result<LayerStats, Error> {
    let place = match &options.spill_dir {
        Some(dir) => SpillPlace::Dir(dir.clone()),
        None => SpillPlace::Root(
            resolver
                .root()
                .try_clone_to_owned()
                .map_err(|error| Error::io("open", b"", error))?,
        ),
    };
    std::thread::scope(|scope| {
        let filler = if options.fill_thread {
            Filler::start(scope, writeback)
        } else {
            None
        };
        let mut layer = Layer {
            resolver,
            degraded,
            upper: UpperPaths::new(options.upper_paths_memory, place),
            deferred: BTreeMap::new(),
            stats: LayerStats::default(),
            filler,
            buffer: Vec::new(),
            parent: None,
            removed: false,
            owner: (
                rustix::process::geteuid().as_raw(),
                rustix::process::getegid().as_raw(),
            ),
            writeback,
            umask: process_umask(),
        };
        let mut archive = tar::Archive::new(reader);
        layer.apply_entries(&mut archive, budget, options)?;
        if let Some(filler) = layer.filler.take() {
            filler.finish(layer.degraded)?;
        }
        layer.finish_directories()?;
        let reader = archive.into_inner();
        let (actual, uncompressed, compressed) = reader
            .finish()
            .map_err(|error| stream_error(error, budget, options))?;
        if actual != *diff_id {
            return Err(Error::DiffIdMismatch {
                expected: diff_id.clone(),
                actual,
            });
        }
        layer.stats.uncompressed_bytes = uncompressed;
        layer.stats.compressed_bytes = compressed;
        layer.stats.spilled_paths = layer.upper.spilled();
        Ok(layer.stats)
    })
}

/// Map a read error of the layer stream to the limit that tripped, or to corruption.
fn stream_error(error: io::Error, budget: &SharedBudget, options: &ApplyOptions) -> Error {
    match decompress::tripped(budget) {
        Some(Tripped::ExtensionHeader) => Error::ExtensionHeaderTooLarge {
            limit: options.max_extension_header,
        },
        Some(Tripped::TotalBytes) => Error::TooLarge {
            limit: options.max_uncompressed_bytes,
        },
        Some(Tripped::BlobRead) => Error::ReadBlob(error),
        None => Error::CorruptLayer(error),
    }
}

fn resolve_error(path: &[u8], error: ResolveError) -> Error {
    match error {
        ResolveError::NotDirectory => Error::ParentNotDirectory {
            path: display(path),
        },
        ResolveError::Loop => Error::SymlinkLoop {
            path: display(path),
        },
        ResolveError::NotFound => Error::io("resolve", path, Errno::NOENT.into()),
        ResolveError::Io(source) => Error::io("resolve", path, source),
    }
}

impl Layer<'_> {
    fn apply_entries<R: Read>(
        &mut self,
        archive: &mut tar::Archive<LayerReader<R>>,
        budget: &SharedBudget,
        options: &ApplyOptions,
    ) -> Result<(), Error> {
        let mut entries = archive
            .entries()
            .map_err(|error| stream_error(error, budget, options))?;
        let window = options.max_extension_header.saturating_add(HEADER_SLACK);
        loop {
            decompress::open_window(budget, window);
            let next = entries.next();
            decompress::close_window(budget);
            let mut entry = match next {
                None => return Ok(()),
                Some(entry) => entry.map_err(|error| stream_error(error, budget, options))?,
            };
            self.stats.entries += 1;
            if self.stats.entries > options.max_entries {
                return Err(Error::TooManyEntries {
                    limit: options.max_entries,
                });
            }
            match self.apply_entry(&mut entry) {
                Ok(()) => {}
                Err(FileError::Apply(error)) => return Err(error),
                Err(FileError::Stream(error)) => return Err(stream_error(error, budget, options)),
            }
            io::copy(&mut entry, &mut io::sink())
                .map_err(|error| stream_error(error, budget, options))?;
        }
    }

    fn apply_entry<R: Read>(&mut self, entry: &mut tar::Entry<'_, R>) -> Result<(), FileError> {
        let raw_name = entry.path_bytes().into_owned();
        let path = normalize(&raw_name).map_err(|reason| Error::UnsafePath {
            path: display(&raw_name),
            reason,
        })?;
        let kind = EntryKind::of(entry.header(), &raw_name, &path)?;
        if kind == EntryKind::Ignored {
            self.stats.skipped += 1;
            return Ok(());
        }
        match classify(&path).map_err(|()| Error::InvalidWhiteout {
            path: display(&path),
        })? {
            Kind::Plain => {}
            Kind::AufsMetadata => {
                self.stats.skipped += 1;
                return Ok(());
            }
            Kind::Opaque => {
                self.parent = None;
                return Ok(self.opaque(split(&path).0)?);
            }
            Kind::Whiteout(target) => {
                self.parent = None;
                return Ok(self.whiteout(split(&path).0, target)?);
            }
        }
        if path.is_empty() {
            if kind == EntryKind::Directory {
                return Ok(());
            }
            return Err(Error::RootTypeChange {
                path: display(&raw_name),
                kind: kind.name(),
            }
            .into());
        }
        let meta = metadata(entry, &path)?;
        let (parent, base) = split(&path);
        let dir = match self.parent.take() {
            Some(cached) if cached.path == parent => cached,
            _ => self.open_parent(parent, &path)?,
        };
        self.resolver
            .widen(dir.fd.as_fd())
            .map_err(|error| Error::io("open", parent, error))?;
        self.removed = false;
        let result = if kind == EntryKind::Hardlink {
            let link = entry
                .link_name_bytes()
                .map(|link| link.into_owned())
                .unwrap_or_default();
            self.hardlink(&dir.fd, base, &path, &link)
                .map_err(FileError::from)
        } else {
            self.create(entry, kind, &dir, base, &path, meta)
        };
        if !self.removed {
            self.parent = Some(dir);
        }
        result?;
        self.upper
            .insert_with_ancestors(&path)
            .map_err(|error| Error::io("keep track of", &path, error).into())
    }

    /// Resolve (creating missing directories) the parent of an entry.
    fn open_parent(&mut self, parent: &[u8], path: &[u8]) -> Result<Parent, Error> {
        let fd = self
            .resolver
            .open_dir(parent, true)
            .map_err(|error| resolve_error(path, error))?;
        let created_owner = if self.resolver.rootless() {
            None
        } else {
            let stat =
                rfs::fstat(&fd).map_err(|errno| Error::io("inspect", parent, errno.into()))?;
            let (uid, gid) = (self.owner.0, self.owner.1);
            // New files take the directory's group when it is setgid (or, with the `grpid`
            // mount option, always): only predict when both rules agree.
            let setgid = stat.st_mode & 0o2000 != 0;
            (setgid || stat.st_gid == gid).then_some((uid, if setgid { stat.st_gid } else { gid }))
        };
        Ok(Parent {
            path: parent.to_vec(),
            fd,
            created_owner,
        })
    }

    /// Create a non-hardlink entry, replacing whatever was there unless both are directories.
    fn create<R: Read>(
        &mut self,
        entry: &mut tar::Entry<'_, R>,
        kind: EntryKind,
        parent: &Parent,
        base: &[u8],
        path: &[u8],
        meta: Metadata,
    ) -> Result<(), FileError> {
        let dir = &parent.fd;
        let target = Target {
            dir: dir.as_fd(),
            name: base,
            path,
            rootless: self.resolver.rootless(),
            created_owner: parent.created_owner,
            umask: self.umask,
        };
        // Fast paths for the common case, nothing there yet: `O_CREAT|O_EXCL` and `mkdirat`
        // fail with EEXIST whatever exists (a dangling symlink included), and only then is it
        // inspected and replaced below. This saves an `fstatat` per entry.
        match kind {
            EntryKind::File => {
                if let Some(file) = target.create_file_if_absent(&meta)? {
                    return self.fill(file, entry);
                }
            }
            EntryKind::Directory => match rfs::mkdirat(dir, base, Mode::from_raw_mode(0o700)) {
                Ok(()) => {
                    target.create_dir(true, &meta, self.degraded)?;
                    self.deferred.insert(path.to_vec(), meta);
                    return Ok(());
                }
                Err(Errno::EXIST) => {}
                Err(errno) => return Err(Error::io("create", path, errno.into()).into()),
            },
            _ => {}
        }
        let existing = match rfs::statat(dir, base, AtFlags::SYMLINK_NOFOLLOW) {
            Ok(stat) => Some(FileType::from_raw_mode(stat.st_mode)),
            Err(Errno::NOENT) => None,
            Err(errno) => return Err(Error::io("inspect", path, errno.into()).into()),
        };
        let merge = existing == Some(FileType::Directory) && kind == EntryKind::Directory;
        if existing.is_some() && !merge {
            self.remover()
                .remove_tree(dir.as_fd(), base)
                .map_err(|error| Error::io("remove", path, error))?;
        }
        match kind {
            EntryKind::File => {
                let file = target.create_file(&meta)?;
                self.fill(file, entry)?;
            }
            EntryKind::Directory => {
                target.create_dir(merge, &meta, self.degraded)?;
                self.deferred.insert(path.to_vec(), meta);
            }
            EntryKind::Symlink => {
                let link = entry
                    .link_name_bytes()
                    .map(|link| link.into_owned())
                    .unwrap_or_default();
                target.create_symlink(&link, &meta, self.degraded)?;
            }
            EntryKind::Node(file_type) => {
                let device = device_numbers(entry.header(), file_type, path)?;
                let before = self.degraded.devices;
                target.create_node(file_type, device, &meta, self.degraded)?;
                self.stats.skipped += self.degraded.devices - before;
            }
            EntryKind::Hardlink | EntryKind::Ignored => {}
        }
        Ok(())
    }

    /// Write a created file's contents from `data` and finish it: on the filler thread if it
    /// runs, else here.
    fn fill(&mut self, mut file: NewFile, data: &mut dyn Read) -> Result<(), FileError> {
        if let Some(filler) = &mut self.filler {
            return filler.fill(file, data);
        }
        self.buffer.resize(FILE_BUFFER, 0);
        let length = file.copy_from(data, &mut self.buffer)?;
        Ok(file.finish(length, self.degraded, self.writeback)?)
    }

    /// A hardlink: the target (archive-root relative) is resolved in-root without following
    /// its final component, must be an existing non-directory, and is linked, never copied.
    fn hardlink(
        &mut self,
        dir: &OwnedFd,
        base: &[u8],
        path: &[u8],
        raw_link: &[u8],
    ) -> Result<(), Error> {
        let invalid = |reason| Error::InvalidHardlink {
            path: display(path),
            target: display(raw_link),
            reason,
        };
        let link = normalize(raw_link).map_err(|reason| Error::UnsafePath {
            path: display(raw_link),
            reason,
        })?;
        if link.is_empty() {
            return Err(invalid("the target is the root directory"));
        }
        if is_aufs_path(&link) {
            return Err(invalid("the target is AUFS metadata"));
        }
        let (target_parent, target_base) = split(&link);
        let target_dir = match self.resolver.open_dir(target_parent, false) {
            Ok(fd) => fd,
            Err(ResolveError::NotFound | ResolveError::NotDirectory) => {
                return Err(invalid("the target does not exist"))
            }
            Err(error) => return Err(resolve_error(&link, error)),
        };
        let target_stat = match rfs::statat(&target_dir, target_base, AtFlags::SYMLINK_NOFOLLOW) {
            Ok(stat) => stat,
            Err(Errno::NOENT) => return Err(invalid("the target does not exist")),
            Err(errno) => return Err(Error::io("inspect", &link, errno.into())),
        };
        if FileType::from_raw_mode(target_stat.st_mode) == FileType::Directory {
            return Err(invalid("the target is a directory"));
        }
        match rfs::statat(dir, base, AtFlags::SYMLINK_NOFOLLOW) {
            Ok(stat) if stat.st_ino == target_stat.st_ino && stat.st_dev == target_stat.st_dev => {
                return Ok(())
            }
            Ok(_) => self
                .remover()
                .remove_tree(dir.as_fd(), base)
                .map_err(|error| Error::io("remove", path, error))?,
            Err(Errno::NOENT) => {}
            Err(errno) => return Err(Error::io("inspect", path, errno.into())),
        }
        match rfs::linkat(&target_dir, target_base, dir, base, AtFlags::empty()) {
            Ok(()) => Ok(()),
            Err(Errno::XDEV) => Err(invalid("the target is on another file system")),
            Err(errno) => Err(Error::io("create hardlink", path, errno.into())),
        }
    }

    /// `.wh.NAME` in `parent`: remove NAME's lower content. A missing parent is a no-op.
    fn whiteout(&mut self, parent: &[u8], name: &[u8]) -> Result<(), Error> {
        self.stats.whiteouts += 1;
        let Some(dir) = self.open_existing_dir(parent)? else {
            return Ok(());
        };
        let path = join(parent, name);
        self.remover()
            .remove_lower(dir.as_fd(), name, &path, &mut self.upper)
            .map_err(|error| Error::io("remove", &path, error))
    }

    /// `.wh..wh..opq` in `dir_path`: remove the directory's lower children.
    fn opaque(&mut self, dir_path: &[u8]) -> Result<(), Error> {
        self.stats.whiteouts += 1;
        let Some(dir) = self.open_existing_dir(dir_path)? else {
            return Ok(());
        };
        self.remover()
            .clear_lower(dir.as_fd(), dir_path, &mut self.upper)
            .map_err(|error| Error::io("clear", dir_path, error))
    }

    /// Resolve an existing directory in-root and make it writable; `None` if it is missing.
    fn open_existing_dir(&mut self, path: &[u8]) -> Result<Option<OwnedFd>, Error> {
        let dir = match self.resolver.open_dir(path, false) {
            Ok(dir) => dir,
            Err(ResolveError::NotFound | ResolveError::NotDirectory) => return Ok(None),
            Err(error) => return Err(resolve_error(path, error)),
        };
        self.resolver
            .widen(dir.as_fd())
            .map_err(|error| Error::io("open", path, error))?;
        Ok(Some(dir))
    }

    fn remover(&mut self) -> Remover {
        self.removed = true;
        Remover {
            rootless: self.resolver.rootless(),
        }
    }

    /// Apply the mode and times of this layer's directories, deepest first, then restore the
    /// modes of lower directories widened for a rootless caller.
    fn finish_directories(&mut self) -> Result<(), Error> {
        let mut deferred: Vec<(Vec<u8>, Metadata)> =
            std::mem::take(&mut self.deferred).into_iter().collect();
        deferred.sort_by(|(left, _), (right, _)| {
            depth(right).cmp(&depth(left)).then_with(|| right.cmp(left))
        });
        for (path, meta) in &deferred {
            self.finish_directory(path, meta)?;
        }
        self.resolver
            .restore_modes()
            .map_err(|error| Error::io("restore the mode of", b"", error))
    }

    fn finish_directory(&mut self, path: &[u8], meta: &Metadata) -> Result<(), Error> {
        let (parent, base) = split(path);
        let dir = match self.resolver.open_dir(parent, false) {
            Ok(dir) => dir,
            Err(ResolveError::NotFound | ResolveError::NotDirectory) => return Ok(()),
            Err(error) => return Err(resolve_error(path, error)),
        };
        let flags = OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        let fd = match rfs::openat(&dir, base, flags, Mode::empty()) {
            Ok(fd) => fd,
            Err(Errno::NOENT) => return Ok(()),
            Err(errno) => return Err(Error::io("open", path, errno.into())),
        };
        let stat = rfs::fstat(&fd).map_err(|errno| Error::io("inspect", path, errno.into()))?;
        if FileType::from_raw_mode(stat.st_mode) != FileType::Directory {
            return Ok(());
        }
        rfs::chmod(proc_path(&fd), Mode::from_raw_mode(meta.mode))
            .map_err(|errno| Error::io("set the mode of", path, errno.into()))?;
        self.resolver.update_restore(stat.st_ino, meta.mode);
        let target = Target {
            dir: dir.as_fd(),
            name: base,
            path,
            rootless: self.resolver.rootless(),
            created_owner: None,
            umask: None,
        };
        target.set_times(meta)
    }
}

fn depth(path: &[u8]) -> usize {
    path.iter().filter(|&&byte| byte == b'/').count()
}
