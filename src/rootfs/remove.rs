//! No-follow recursive removal, and the whiteout/opaque removal that spares this layer's paths.
//!
//! Removal works only through `unlinkat` on a parent descriptor and directories opened with
//! `O_NOFOLLOW|O_DIRECTORY`, so a symlink is removed as a link and never followed (docs/unpack.md
//! 3.2 classes 11 and 12). Whiteouts delete lower-layer content only: paths written earlier in
//! the same layer (the "upper" set, which also holds their ancestors) survive, and directories
//! in the upper set are descended into so their lower children still go.

use std::ffi::CStr;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use rustix::fs::{self as rfs, AtFlags, Dir, FileType, Mode, OFlags};
use rustix::io::Errno;

use super::upper::UpperPaths;
use super::whiteout::{join, MAX_DEPTH};

/// Removal context: whether to widen unwritable directories (rootless).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Remover {
    pub(crate) rootless: bool,
}

impl Remover {
    /// Remove `name` in `dir` without following it: a file or symlink is unlinked, a directory
    /// is emptied recursively and removed. A missing name is not an error.
    pub(crate) fn remove_tree(self, dir: BorrowedFd<'_>, name: &[u8]) -> std::io::Result<()> {
        self.remove_tree_at_depth(dir, name, 0)
    }

    fn remove_tree_at_depth(
        self,
        dir: BorrowedFd<'_>,
        name: &[u8],
        depth: usize,
    ) -> std::io::Result<()> {
        match rfs::unlinkat(dir, name, AtFlags::empty()) {
            Ok(()) | Err(Errno::NOENT) => return Ok(()),
            Err(Errno::ISDIR | Errno::PERM) => {}
            Err(errno) => return Err(errno.into()),
        }
        let Some(child) = self.open_child_dir(dir, name, depth)? else {
            return Ok(());
        };
        for entry in list(&child)? {
            self.remove_tree_at_depth(child.as_fd(), &entry, depth + 1)?;
        }
        drop(child);
        match rfs::unlinkat(dir, name, AtFlags::REMOVEDIR) {
            Ok(()) | Err(Errno::NOENT) => Ok(()),
            Err(errno) => Err(errno.into()),
        }
    }

    /// Open a child directory for listing (no-follow), widening it for a rootless caller since
    /// it is about to be emptied anyway. `None` if it is not a directory.
    fn open_child_dir(
        self,
        dir: BorrowedFd<'_>,
        name: &[u8],
        depth: usize,
    ) -> std::io::Result<Option<OwnedFd>> {
        if depth > MAX_DEPTH * 4 {
            return Err(std::io::Error::other("directory tree too deep to remove"));
        }
        let stat = match rfs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW) {
            Ok(stat) => stat,
            Err(Errno::NOENT) => return Ok(None),
            Err(errno) => return Err(errno.into()),
        };
        if FileType::from_raw_mode(stat.st_mode) != FileType::Directory {
            return Ok(None);
        }
        if self.rootless && stat.st_mode & 0o700 != 0o700 {
            // The directory was just lstat'ed as a real directory; chmodat follows only a final
            // symlink, and nothing else mutates the tree concurrently.
            let mode = (stat.st_mode & 0o7777) | 0o700;
            rfs::chmodat(dir, name, Mode::from_raw_mode(mode), AtFlags::empty())?;
        }
        let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        Ok(Some(rfs::openat(dir, name, flags, Mode::empty())?))
    }

    /// Remove `name` in `dir` (whose normalised path is `path`) unless it is in `upper`; if it
    /// is an upper directory, apply the same rule to its children instead.
    pub(crate) fn remove_lower(
        self,
        dir: BorrowedFd<'_>,
        name: &[u8],
        path: &[u8],
        upper: &mut UpperPaths,
    ) -> std::io::Result<()> {
        if !upper.contains(path)? {
            return self.remove_tree(dir, name);
        }
        let Some(child) = self.open_child_dir(dir, name, 0)? else {
            return Ok(());
        };
        self.clear_lower(child.as_fd(), path, upper)
    }

    /// Remove every child of the open directory `dir` (normalised path `path`) that is not in
    /// `upper`, recursing into upper directories: the opaque whiteout.
    pub(crate) fn clear_lower(
        self,
        dir: BorrowedFd<'_>,
        path: &[u8],
        upper: &mut UpperPaths,
    ) -> std::io::Result<()> {
        // In order, so that consecutive lookups in `upper`'s spilled runs share cached pages.
        let mut names = list(&dir)?;
        names.sort_unstable();
        for entry in names {
            let child_path = join(path, &entry);
            self.remove_lower(dir, &entry, &child_path, upper)?;
        }
        Ok(())
    }
}

/// The names in a directory (without `.` and `..`). Collected first so that removing entries
/// does not disturb the listing.
fn list(dir: &impl AsFd) -> std::io::Result<Vec<Vec<u8>>> {
    let listing_fd = rfs::openat(
        dir,
        ".",
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    let mut names = Vec::new();
    for entry in Dir::read_from(&listing_fd)? {
        let entry = entry?;
        let name: &CStr = entry.file_name();
        let bytes = name.to_bytes();
        if bytes != b"." && bytes != b".." {
            names.push(bytes.to_vec());
        }
    }
    Ok(names)
}
