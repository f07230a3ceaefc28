//! In-root path resolution with chroot semantics.
//!
//! Every path the layer names is resolved relative to one root directory descriptor, opened
//! once: `..` stops at the root and absolute symlinks restart at the root (docs/unpack.md 3.3).
//! The kernel does this for us with `openat2(RESOLVE_IN_ROOT)`; where that is missing (Linux
//! < 5.6, seccomp filters) or when a component is inaccessible to an unprivileged caller, an
//! fd-by-fd walk emulates it: `lstat` each component, open directories with
//! `O_PATH|O_NOFOLLOW|O_DIRECTORY`, and expand symlinks by hand within a 40-link budget, like
//! the kernel. Only directories (and, for config reads, final files) are resolved here; the
//! final component of an entry is always handled by the caller with no-follow `*at` calls.
//!
//! Rootless callers cannot search or write directories with modes such as 0000 or 0555 that a
//! lower layer legitimately created. As umoci's `pkg/unpriv` does, such a directory is
//! temporarily given `u+rwx` and remembered in [`Resolver::restore`]; the applier puts the old
//! mode back at the end of the layer.

use std::collections::VecDeque;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};

use rustix::fs::{self as rfs, AtFlags, FileType, Mode, OFlags, ResolveFlags};
use rustix::io::Errno;

use super::whiteout::components;

/// Symlinks followed in one resolution before giving up (the kernel's limit).
const MAX_SYMLINKS: usize = 40;

/// How paths inside the root are resolved.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum PathResolution {
    /// `openat2(RESOLVE_IN_ROOT)` where the kernel supports it, the userspace walk otherwise.
    #[default]
    Auto,
    /// Always use the userspace walk (for tests and for kernels whose openat2 misbehaves).
    UserspaceWalk,
}

/// Why a path could not be resolved.
#[derive(Debug)]
pub(crate) enum ResolveError {
    /// A component does not exist (and creation was not requested).
    NotFound,
    /// A component exists but is not a directory (or a symlink to one).
    NotDirectory,
    /// Too many symlinks.
    Loop,
    /// Any other error.
    Io(std::io::Error),
}

impl From<Errno> for ResolveError {
    fn from(errno: Errno) -> Self {
        match errno {
            Errno::NOENT => ResolveError::NotFound,
            Errno::NOTDIR => ResolveError::NotDirectory,
            Errno::LOOP => ResolveError::Loop,
            other => ResolveError::Io(other.into()),
        }
    }
}

/// A directory whose mode was widened to `u+rwx` and must be restored.
#[derive(Debug)]
pub(crate) struct Widened {
    pub(crate) fd: OwnedFd,
    pub(crate) inode: u64,
    pub(crate) mode: u32,
}

/// Resolves paths inside one root directory descriptor.
#[derive(Debug)]
pub(crate) struct Resolver {
    root: OwnedFd,
    use_openat2: bool,
    rootless: bool,
    /// Directories temporarily widened for a rootless caller, oldest first.
    pub(crate) restore: Vec<Widened>,
}

impl Resolver {
    pub(crate) fn new(root: OwnedFd, resolution: PathResolution, rootless: bool) -> Self {
        let use_openat2 = resolution == PathResolution::Auto && openat2_works(&root);
        Resolver {
            root,
            use_openat2,
            rootless,
            restore: Vec::new(),
        }
    }

    pub(crate) fn rootless(&self) -> bool {
        self.rootless
    }

    /// Whether the kernel's `RESOLVE_IN_ROOT` is in use.
    pub(crate) fn uses_openat2(&self) -> bool {
        self.use_openat2
    }

    /// The root directory's descriptor (`O_PATH`).
    pub(crate) fn root(&self) -> BorrowedFd<'_> {
        self.root.as_fd()
    }

    /// Open the directory named by the normalised `path` (following symlinks in-root) as an
    /// `O_PATH` descriptor; with `create`, missing components become 0755 directories.
    pub(crate) fn open_dir(&mut self, path: &[u8], create: bool) -> Result<OwnedFd, ResolveError> {
        if self.use_openat2 {
            let flags = OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC;
            match self.openat2(path, flags) {
                Ok(fd) => return Ok(fd),
                Err(Errno::NOENT) if create => {}
                Err(Errno::ACCESS) if self.rootless => {}
                Err(
                    Errno::AGAIN | Errno::NOSYS | Errno::INVAL | Errno::PERM | Errno::NAMETOOLONG,
                ) => {}
                Err(errno) => return Err(errno.into()),
            }
        }
        self.walk(path, create, true)
    }

    /// Open the regular file named by the normalised `path` for reading, following symlinks
    /// in-root. Anything but a regular file (a FIFO or device planted by the image) is refused
    /// before it is opened for reading.
    pub(crate) fn open_file(&mut self, path: &[u8]) -> Result<std::fs::File, ResolveError> {
        let mut located = None;
        if self.use_openat2 {
            match self.openat2(path, OFlags::PATH | OFlags::CLOEXEC) {
                Ok(fd) => located = Some(fd),
                Err(Errno::ACCESS) if self.rootless => {}
                Err(
                    Errno::AGAIN | Errno::NOSYS | Errno::INVAL | Errno::PERM | Errno::NAMETOOLONG,
                ) => {}
                Err(errno) => return Err(errno.into()),
            }
        }
        let fd = match located {
            Some(fd) => fd,
            None => self.walk(path, false, false)?,
        };
        let stat = rfs::fstat(&fd).map_err(ResolveError::from)?;
        if FileType::from_raw_mode(stat.st_mode) != FileType::RegularFile {
            return Err(ResolveError::NotFound);
        }
        let flags = OFlags::RDONLY | OFlags::CLOEXEC | OFlags::NONBLOCK;
        let reopened = rfs::open(proc_path(&fd), flags, Mode::empty())?;
        Ok(reopened.into())
    }

    fn openat2(&self, path: &[u8], flags: OFlags) -> Result<OwnedFd, Errno> {
        let path: &[u8] = if path.is_empty() { b"." } else { path };
        let resolve = ResolveFlags::IN_ROOT | ResolveFlags::NO_MAGICLINKS;
        let mut attempts = 0;
        loop {
            match rfs::openat2(&self.root, path, flags, Mode::empty(), resolve) {
                Err(Errno::AGAIN) if attempts < 8 => attempts += 1,
                result => return result,
            }
        }
    }

    /// The userspace emulation of `RESOLVE_IN_ROOT`. With `want_dir` the final object must be
    /// a directory; otherwise it may be anything but a symlink (which is followed).
    fn walk(&mut self, path: &[u8], create: bool, want_dir: bool) -> Result<OwnedFd, ResolveError> {
        let mut stack: Vec<OwnedFd> = vec![self.root.try_clone().map_err(ResolveError::Io)?];
        let mut pending: VecDeque<Vec<u8>> = components(path).map(<[u8]>::to_vec).collect();
        let mut symlinks = 0;
        while let Some(name) = pending.pop_front() {
            if name == b"." {
                continue;
            }
            if name == b".." {
                if stack.len() > 1 {
                    stack.pop();
                }
                continue;
            }
            let current = stack.last().ok_or(ResolveError::NotFound)?;
            let stat = self.lstat_child(current.as_fd(), &name, create)?;
            match FileType::from_raw_mode(stat.st_mode) {
                FileType::Directory => {
                    let flags =
                        OFlags::PATH | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
                    let next = rfs::openat(current, name.as_slice(), flags, Mode::empty())?;
                    stack.push(next);
                }
                FileType::Symlink => {
                    symlinks += 1;
                    if symlinks > MAX_SYMLINKS {
                        return Err(ResolveError::Loop);
                    }
                    let target = rfs::readlinkat(current, name.as_slice(), Vec::new())?;
                    let target = target.into_bytes();
                    if target.first() == Some(&b'/') {
                        stack.truncate(1);
                    }
                    for component in target.rsplit(|&byte| byte == b'/') {
                        if !component.is_empty() {
                            pending.push_front(component.to_vec());
                        }
                    }
                }
                _ if pending.is_empty() && !want_dir => {
                    let flags = OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC;
                    return Ok(rfs::openat(current, name.as_slice(), flags, Mode::empty())?);
                }
                _ => return Err(ResolveError::NotDirectory),
            }
        }
        stack.pop().ok_or(ResolveError::NotFound)
    }

    /// `lstat` one child, creating it as a 0755 directory when missing and `create` is set, and
    /// widening an inaccessible parent when rootless.
    fn lstat_child(
        &mut self,
        dir: BorrowedFd<'_>,
        name: &[u8],
        create: bool,
    ) -> Result<rfs::Stat, ResolveError> {
        let mut widened = false;
        loop {
            match rfs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW) {
                Ok(stat) => return Ok(stat),
                Err(Errno::ACCESS) if self.rootless && !widened => {
                    self.widen(dir).map_err(ResolveError::Io)?;
                    widened = true;
                }
                Err(Errno::NOENT) if create => {
                    match rfs::mkdirat(dir, name, Mode::from_raw_mode(0o755)) {
                        Ok(()) | Err(Errno::EXIST) => {}
                        Err(Errno::ACCESS) if self.rootless && !widened => {
                            self.widen(dir).map_err(ResolveError::Io)?;
                            widened = true;
                        }
                        Err(errno) => return Err(errno.into()),
                    }
                }
                Err(errno) => return Err(errno.into()),
            }
        }
    }

    /// For a rootless caller: make the directory `dir` searchable and writable by its owner,
    /// remembering its mode for [`Resolver::restore`]. A no-op when running as root.
    pub(crate) fn widen(&mut self, dir: BorrowedFd<'_>) -> std::io::Result<()> {
        if !self.rootless {
            return Ok(());
        }
        let stat = rfs::fstat(dir)?;
        let mode = stat.st_mode & 0o7777;
        if mode & 0o700 == 0o700 {
            return Ok(());
        }
        rfs::chmod(proc_path(&dir), Mode::from_raw_mode(mode | 0o700))?;
        if !self
            .restore
            .iter()
            .any(|widened| widened.inode == stat.st_ino)
        {
            let fd = rustix::io::fcntl_dupfd_cloexec(dir, 0)?;
            self.restore.push(Widened {
                fd,
                inode: stat.st_ino,
                mode,
            });
        }
        Ok(())
    }

    /// Record that a widened directory's final mode is now `mode` (set by a directory entry).
    pub(crate) fn update_restore(&mut self, inode: u64, mode: u32) -> bool {
        let mut found = false;
        for widened in self
            .restore
            .iter_mut()
            .filter(|widened| widened.inode == inode)
        {
            widened.mode = mode;
            found = true;
        }
        found
    }

    /// Put back the modes of every widened directory, newest (deepest) first.
    pub(crate) fn restore_modes(&mut self) -> std::io::Result<()> {
        while let Some(widened) = self.restore.pop() {
            rfs::chmod(proc_path(&widened.fd), Mode::from_raw_mode(widened.mode))?;
        }
        Ok(())
    }
}

/// `/proc/self/fd/N`: lets path-based calls (chmod, lsetxattr) act on an `O_PATH` descriptor.
pub(crate) fn proc_path(fd: &impl AsRawFd) -> String {
    format!("/proc/self/fd/{}", fd.as_raw_fd())
}

/// Probe `openat2(RESOLVE_IN_ROOT)` once on the root.
fn openat2_works(root: &OwnedFd) -> bool {
    let flags = OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC;
    rfs::openat2(root, ".", flags, Mode::empty(), ResolveFlags::IN_ROOT).is_ok()
}
