//! Applying one layer: the entry loop, whiteouts, hardlinks and the end-of-layer pass.
//!
//! This is docs/unpack.md section 4 in code. The "upper" set holds every path this layer wrote and
//! their ancestors, so whiteouts and opaque markers only remove lower content, whatever their
//! position in the layer. Directory modes and times are collected and applied after all
//! entries, deepest first, so read-only directories can still receive children and mtimes stay
//! exact.

use std::collections::{BTreeMap, HashSet};
use std::fs::File;
use std::io::{self, Read};
use std::os::fd::{AsFd, OwnedFd};

use rustix::fs::{self as rfs, AtFlags, FileType, Mode, OFlags, Timespec};
use rustix::io::Errno;

use super::decompress::{self, Inflating, LayerReader, SharedBudget, Tripped};
use super::entry::{parse_pax_time, Degraded, FileError, Metadata, Target};
use super::error::{display, Error};
use super::path::{proc_path, ResolveError, Resolver};
use super::remove::Remover;
use super::whiteout::{classify, is_aufs_path, join, normalize, split, with_ancestors, Kind};
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
    upper: HashSet<Vec<u8>>,
    deferred: BTreeMap<Vec<u8>, Metadata>,
    stats: LayerStats,
    /// Reused for copying file contents.
    buffer: Vec<u8>,
    /// The parent directory of the previous entry, reused while entries share it (tar
    /// streams are mostly grouped by directory). Dropped whenever anything is removed or
    /// replaced, since that may change what a path resolves to.
    parent: Option<Parent>,
    /// Set when the current entry removed something: the cached parent must not be kept.
    removed: bool,
    /// Our effective user and group: the owner of what we create.
    owner: (u32, u32),
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
        let result = apply_stream(resolver, degraded, reader, &budget, options, diff_id);
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
    degraded: &mut Degraded,
    layer: Inflating,
    diff_id: &Digest,
) -> Result<LayerStats, Error> {
    resolver.restore.clear();
    let (reader, budget) = LayerReader::from_inflating(layer, options.max_uncompressed_bytes);
    apply_stream(resolver, degraded, reader, &budget, options, diff_id)
}

/// Apply the entries of the layer stream, then check its diff_id.
fn apply_stream<R: Read + Send>(
    resolver: &mut Resolver,
    degraded: &mut Degraded,
    reader: LayerReader<R>,
    budget: &SharedBudget,
    options: &ApplyOptions,
    diff_id: &Digest,
) -> Result<LayerStats, Error> {
    let mut layer = Layer {
        resolver,
        degraded,
        upper: HashSet::new(),
        deferred: BTreeMap::new(),
        stats: LayerStats::default(),
        buffer: vec![0; FILE_BUFFER],
        parent: None,
        removed: false,
        owner: (
            rustix::process::geteuid().as_raw(),
            rustix::process::getegid().as_raw(),
        ),
    };
    let mut archive = tar::Archive::new(reader);
    layer.apply_entries(&mut archive, budget, options)?;
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
    Ok(layer.stats)
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

/// The entry types the applier creates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum EntryKind {
    File,
    Directory,
    Symlink,
    Hardlink,
    Node(FileType),
    /// Global PAX headers: ignored.
    Ignored,
}

impl EntryKind {
    fn of(header: &tar::Header, raw_name: &[u8], path: &[u8]) -> Result<EntryKind, Error> {
        let kind = match header.entry_type() {
            // An old-style regular entry with a trailing slash is a directory (as in Go).
            tar::EntryType::Regular if header.as_bytes()[156] == 0 && raw_name.ends_with(b"/") => {
                EntryKind::Directory
            }
            tar::EntryType::Regular | tar::EntryType::Continuous => EntryKind::File,
            tar::EntryType::Directory => EntryKind::Directory,
            tar::EntryType::Symlink => EntryKind::Symlink,
            tar::EntryType::Link => EntryKind::Hardlink,
            tar::EntryType::Fifo => EntryKind::Node(FileType::Fifo),
            tar::EntryType::Char => EntryKind::Node(FileType::CharacterDevice),
            tar::EntryType::Block => EntryKind::Node(FileType::BlockDevice),
            tar::EntryType::XGlobalHeader => EntryKind::Ignored,
            other => {
                return Err(Error::Unsupported {
                    path: display(path),
                    what: format!("tar entry type {:?} (byte {:#04x})", other, other.as_byte()),
                })
            }
        };
        Ok(kind)
    }

    fn name(self) -> &'static str {
        match self {
            EntryKind::File => "regular file",
            EntryKind::Directory => "directory",
            EntryKind::Symlink => "symlink",
            EntryKind::Hardlink => "hardlink",
            EntryKind::Node(_) => "special file",
            EntryKind::Ignored => "global header",
        }
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
        // Deepest first: once an ancestor is present, so are all of its own ancestors (every
        // insertion adds the whole chain), which saves an allocation per level and entry.
        let ancestors: Vec<&[u8]> = with_ancestors(&path).collect();
        for ancestor in ancestors.into_iter().rev() {
            if self.upper.contains(ancestor) {
                break;
            }
            self.upper.insert(ancestor.to_vec());
        }
        Ok(())
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
        };
        // Fast paths for the common case, nothing there yet: `O_CREAT|O_EXCL` and `mkdirat`
        // fail with EEXIST whatever exists (a dangling symlink included), and only then is it
        // inspected and replaced below. This saves an `fstatat` per entry.
        match kind {
            EntryKind::File => {
                let flags = OFlags::WRONLY
                    | OFlags::CREATE
                    | OFlags::EXCL
                    | OFlags::NOFOLLOW
                    | OFlags::CLOEXEC;
                match rfs::openat(dir, base, flags, Mode::from_raw_mode(0o600)) {
                    Ok(fd) => {
                        return target.write_file(
                            File::from(fd),
                            entry,
                            &meta,
                            self.degraded,
                            &mut self.buffer,
                        );
                    }
                    Err(Errno::EXIST) => {}
                    Err(errno) => return Err(Error::io("create", path, errno.into()).into()),
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
                target.create_file(entry, &meta, self.degraded, &mut self.buffer)?;
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
            .remove_lower(dir.as_fd(), name, &path, &self.upper)
            .map_err(|error| Error::io("remove", &path, error))
    }

    /// `.wh..wh..opq` in `dir_path`: remove the directory's lower children.
    fn opaque(&mut self, dir_path: &[u8]) -> Result<(), Error> {
        self.stats.whiteouts += 1;
        let Some(dir) = self.open_existing_dir(dir_path)? else {
            return Ok(());
        };
        self.remover()
            .clear_lower(dir.as_fd(), dir_path, &self.upper)
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
        };
        target.set_times(meta)
    }
}

fn depth(path: &[u8]) -> usize {
    path.iter().filter(|&&byte| byte == b'/').count()
}

/// The validated metadata of an entry, PAX overrides included.
fn metadata<R: Read>(entry: &mut tar::Entry<'_, R>, path: &[u8]) -> Result<Metadata, Error> {
    let header = entry.header();
    let invalid = |field| Error::InvalidHeader {
        path: display(path),
        field,
    };
    let mode = header.mode().map_err(|_| invalid("mode"))? & 0o7777;
    let uid = u32::try_from(header.uid().map_err(|_| invalid("uid"))?)
        .ok()
        .filter(|&id| id != u32::MAX)
        .ok_or_else(|| invalid("uid"))?;
    let gid = u32::try_from(header.gid().map_err(|_| invalid("gid"))?)
        .ok()
        .filter(|&id| id != u32::MAX)
        .ok_or_else(|| invalid("gid"))?;
    let seconds = i64::try_from(header.mtime().map_err(|_| invalid("mtime"))?)
        .map_err(|_| invalid("mtime"))?;
    let mut meta = Metadata {
        mode,
        uid,
        gid,
        atime: Timespec {
            tv_sec: seconds,
            tv_nsec: 0,
        },
        mtime: Timespec {
            tv_sec: seconds,
            tv_nsec: 0,
        },
        xattrs: Vec::new(),
    };
    let mut atime = None;
    if let Some(extensions) = entry.pax_extensions().map_err(|_| invalid("PAX header"))? {
        for extension in extensions {
            let extension = extension.map_err(|_| invalid("PAX header"))?;
            let key = extension.key().map_err(|_| invalid("PAX key"))?;
            let value = extension.value_bytes();
            if let Some(name) = key.strip_prefix("SCHILY.xattr.") {
                meta.xattrs.push((name.to_string(), value.to_vec()));
            } else if key.starts_with("GNU.sparse.") {
                return Err(Error::Unsupported {
                    path: display(path),
                    what: "PAX sparse file".to_string(),
                });
            } else if key == "mtime" || key == "atime" {
                let time = std::str::from_utf8(value)
                    .ok()
                    .and_then(parse_pax_time)
                    .ok_or_else(|| invalid("PAX time"))?;
                if key == "mtime" {
                    meta.mtime = time
                } else {
                    atime = Some(time)
                }
            }
        }
    }
    meta.atime = atime.unwrap_or(meta.mtime);
    Ok(meta)
}

/// Major and minor numbers of a device entry; they must fit the kernel's 32 bits. A FIFO has
/// none (its fields are not read). Empty fields (NUL- or space-filled, as Python's `tarfile`
/// writes them) read as zero, as GNU tar and Go's `archive/tar` read them.
fn device_numbers(
    header: &tar::Header,
    file_type: FileType,
    path: &[u8],
) -> Result<(u32, u32), Error> {
    if file_type == FileType::Fifo {
        return Ok((0, 0));
    }
    let fields = match (header.as_ustar(), header.as_gnu()) {
        (Some(ustar), _) => Some((&ustar.dev_major, &ustar.dev_minor)),
        (None, Some(gnu)) => Some((&gnu.dev_major, &gnu.dev_minor)),
        // A v7 header has no device fields.
        (None, None) => None,
    };
    let Some((major, minor)) = fields else {
        return Ok((0, 0));
    };
    let number = |field: &[u8; 8]| {
        numeric_field(field)
            .and_then(|value| u32::try_from(value).ok())
            .ok_or_else(|| Error::InvalidHeader {
                path: display(path),
                field: "device number",
            })
    };
    Ok((number(major)?, number(minor)?))
}

/// A tar numeric field: octal digits padded with NULs or spaces (empty reads as zero), or the
/// GNU base-256 form (high bit set; negative values refused).
fn numeric_field(field: &[u8]) -> Option<u64> {
    if field.first().is_some_and(|byte| byte & 0x80 != 0) {
        if field[0] & 0x40 != 0 {
            return None;
        }
        return field[1..]
            .iter()
            .try_fold(u64::from(field[0] & 0x3f), |value, &byte| {
                value.checked_mul(256).map(|value| value | u64::from(byte))
            });
    }
    let text = field
        .iter()
        .position(|&byte| byte != b' ' && byte != 0)
        .map_or(&field[..0], |start| &field[start..]);
    let end = text
        .iter()
        .position(|&byte| byte == b' ' || byte == 0)
        .unwrap_or(text.len());
    let (digits, rest) = text.split_at(end);
    if rest.iter().any(|&byte| byte != b' ' && byte != 0) {
        return None;
    }
    digits.iter().try_fold(0u64, |value, &byte| match byte {
        b'0'..=b'7' => value
            .checked_mul(8)
            .map(|value| value + u64::from(byte - b'0')),
        _ => None,
    })
}

#[cfg(test)]
mod tests {
    use super::numeric_field;

    #[test]
    fn numeric_fields_read_like_gnu_tar_and_go() {
        assert_eq!(numeric_field(&[0; 8]), Some(0));
        assert_eq!(numeric_field(b"        "), Some(0));
        assert_eq!(numeric_field(b"0000012\0"), Some(10));
        assert_eq!(numeric_field(b"  17 \0\0\0"), Some(15));
        assert_eq!(numeric_field(&[0x80, 0, 0, 0, 0, 0, 1, 0]), Some(256));
        assert_eq!(numeric_field(b"0008\0\0\0\0"), None);
        assert_eq!(numeric_field(b"12 34\0\0\0"), None);
        assert_eq!(numeric_field(&[0xff; 8]), None);
    }
}
