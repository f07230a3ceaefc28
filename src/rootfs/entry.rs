//! Creating one entry and applying its metadata, in the order umoci, containerd and moby use:
//! create → owner → xattrs → mode → times (docs/unpack.md 1.9).
//!
//! Everything acts on `(parent dirfd, name)` with no-follow calls, or on the descriptor just
//! created, so a symlink at the final component is never followed (docs/unpack.md 3.2 classes
//! 6, 7). Regular files are created with `O_CREAT|O_EXCL|O_NOFOLLOW` after any old path was
//! removed; nothing is ever opened with `O_TRUNC`. Directory mode and times are not set here: the layer
//! applies them after the directory's children exist.

use std::collections::BTreeSet;
use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsFd, BorrowedFd};

use rustix::fs::{
    self as rfs, AtFlags, FileType, Gid, Mode, OFlags, Timespec, Timestamps, Uid, XattrFlags,
};
use rustix::io::Errno;

use super::error::Error;
use super::path::proc_path;
use super::writeback::Writeback;

/// The xattr umoci uses to record the owner a rootless extraction could not set.
pub(crate) const ROOTLESS_XATTR: &str = "user.rootlesscontainers";

/// What the layer says about an entry, already validated.
#[derive(Debug, Clone)]
pub(crate) struct Metadata {
    pub(crate) mode: u32,
    pub(crate) uid: u32,
    pub(crate) gid: u32,
    pub(crate) atime: Timespec,
    pub(crate) mtime: Timespec,
    pub(crate) xattrs: Vec<(String, Vec<u8>)>,
}

impl Metadata {
    pub(crate) fn timestamps(&self) -> Timestamps {
        Timestamps {
            last_access: self.atime,
            last_modification: self.mtime,
        }
    }
}

/// Things skipped or degraded, summarised as one warning each at the end of a layer.
#[derive(Debug, Default)]
pub(crate) struct Degraded {
    pub(crate) devices: u64,
    pub(crate) symlink_owners: u64,
    pub(crate) dropped_xattrs: BTreeSet<String>,
    pub(crate) failed_xattrs: BTreeSet<String>,
}

impl Degraded {
    /// Add what another thread counted.
    pub(crate) fn absorb(&mut self, other: Degraded) {
        self.devices += other.devices;
        self.symlink_owners += other.symlink_owners;
        self.dropped_xattrs.extend(other.dropped_xattrs);
        self.failed_xattrs.extend(other.failed_xattrs);
    }
}

/// Where an entry goes, and how to treat owners.
pub(crate) struct Target<'a> {
    pub(crate) dir: BorrowedFd<'a>,
    pub(crate) name: &'a [u8],
    /// The normalised entry path, for error messages.
    pub(crate) path: &'a [u8],
    pub(crate) rootless: bool,
    /// The owner a regular file created in `dir` already has, when known: `chown` to the
    /// same owner is then skipped.
    pub(crate) created_owner: Option<(u32, u32)>,
    /// The process umask, when known: a regular file is then created with its final mode.
    pub(crate) umask: Option<u32>,
}

/// The mode to create a regular file with, and whether that is already its final mode (no
/// `fchmod` needed afterwards: one system call less per file). The file stays writable by its
/// owner while it is filled (rootless owners are recorded in a `user.*` xattr, which needs
/// that), and set-id and sticky bits are only ever added by `fchmod`, after owner and contents.
fn file_create_mode(mode: u32, umask: Option<u32>) -> (Mode, bool) {
    let permissions = mode & 0o777;
    let exact = mode & 0o7000 == 0
        && permissions & 0o200 != 0
        && umask.is_some_and(|umask| umask & permissions == 0);
    if exact {
        (Mode::from_raw_mode(permissions), true)
    } else {
        (Mode::from_raw_mode(0o600), false)
    }
}

/// The process umask from `/proc/self/status` (Linux 4.7+); `None` if it cannot be read.
/// Read, not set: `umask(2)` would change it for every thread while it is being read.
pub(crate) fn process_umask() -> Option<u32> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let value = status
        .lines()
        .find_map(|line| line.strip_prefix("Umask:"))?;
    u32::from_str_radix(value.trim(), 8).ok()
}

impl Target<'_> {
    fn io(&self, action: &'static str) -> impl FnOnce(Errno) -> Error + '_ {
        move |errno| Error::io(action, self.path, errno.into())
    }

    /// Where metadata goes when nothing is open: the name, never followed.
    fn subject(&self) -> Subject<'_> {
        Subject {
            place: Place::At(self.dir, self.name),
            path: self.path,
            rootless: self.rootless,
            created_owner: self.created_owner,
        }
    }

    /// Create an empty regular file for its contents to be written into; an existing entry
    /// at the name is an error.
    pub(crate) fn create_file(&self, meta: &Metadata) -> Result<NewFile, Error> {
        self.create_file_if_absent(meta)?
            .ok_or_else(|| self.io("create")(Errno::EXIST))
    }

    /// [`Target::create_file`], or `Ok(None)` when something already has the name
    /// (`O_CREAT|O_EXCL` fails whatever it is, a dangling symlink included).
    pub(crate) fn create_file_if_absent(&self, meta: &Metadata) -> Result<Option<NewFile>, Error> {
        let flags =
            OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        let (mode, exact) = file_create_mode(meta.mode, self.umask);
        match rfs::openat(self.dir, self.name, flags, mode) {
            Ok(fd) => Ok(Some(NewFile {
                file: File::from(fd),
                exact,
                meta: meta.clone(),
                path: self.path.to_vec(),
                rootless: self.rootless,
                created_owner: self.created_owner,
            })),
            Err(Errno::EXIST) => Ok(None),
            Err(errno) => Err(self.io("create")(errno)),
        }
    }

    /// Create a directory (unless merging into an existing one) and set owner and xattrs.
    pub(crate) fn create_dir(
        &self,
        exists: bool,
        meta: &Metadata,
        degraded: &mut Degraded,
    ) -> Result<(), Error> {
        if !exists {
            rfs::mkdirat(self.dir, self.name, Mode::from_raw_mode(0o700))
                .map_err(self.io("create"))?;
        }
        let subject = self.subject();
        subject.set_owner(meta, false, degraded)?;
        subject.set_xattrs(meta, degraded)
    }

    /// Create a symlink with its target stored verbatim.
    pub(crate) fn create_symlink(
        &self,
        link: &[u8],
        meta: &Metadata,
        degraded: &mut Degraded,
    ) -> Result<(), Error> {
        rfs::symlinkat(link, self.dir, self.name).map_err(self.io("create"))?;
        let subject = self.subject();
        subject.set_owner(meta, true, degraded)?;
        subject.set_xattrs(meta, degraded)?;
        self.set_times(meta)
    }

    /// Create a FIFO or device node. Devices need root: rootless callers skip them.
    pub(crate) fn create_node(
        &self,
        file_type: FileType,
        device: (u32, u32),
        meta: &Metadata,
        degraded: &mut Degraded,
    ) -> Result<(), Error> {
        if file_type != FileType::Fifo && self.rootless {
            degraded.devices += 1;
            return Ok(());
        }
        let device = rfs::makedev(device.0, device.1);
        rfs::mknodat(
            self.dir,
            self.name,
            file_type,
            Mode::from_raw_mode(0o600),
            device,
        )
        .map_err(self.io("create"))?;
        let subject = self.subject();
        subject.set_owner(meta, false, degraded)?;
        subject.set_xattrs(meta, degraded)?;
        self.set_mode(meta.mode)?;
        self.set_times(meta)
    }

    /// chmod without following a final symlink (symlinks are left alone).
    pub(crate) fn set_mode(&self, mode: u32) -> Result<(), Error> {
        let flags = OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        let fd = rfs::openat(self.dir, self.name, flags, Mode::empty()).map_err(self.io("open"))?;
        let stat = rfs::fstat(&fd).map_err(self.io("inspect"))?;
        if FileType::from_raw_mode(stat.st_mode) == FileType::Symlink {
            return Ok(());
        }
        rfs::chmod(proc_path(&fd), Mode::from_raw_mode(mode)).map_err(self.io("set the mode of"))
    }

    pub(crate) fn set_times(&self, meta: &Metadata) -> Result<(), Error> {
        rfs::utimensat(
            self.dir,
            self.name,
            &meta.timestamps(),
            AtFlags::SYMLINK_NOFOLLOW,
        )
        .map_err(self.io("set the times of"))
    }
}

/// A regular file just created (empty, writable, maybe already with its final mode), and what
/// it still needs once its contents are written. It owns everything it needs, so the contents
/// and metadata can be written on another thread than the one that created it.
#[derive(Debug)]
pub(crate) struct NewFile {
    file: File,
    /// Created with its final mode ([`file_create_mode`]): no `fchmod` needed.
    exact: bool,
    meta: Metadata,
    /// The normalised entry path, for error messages.
    path: Vec<u8>,
    rootless: bool,
    created_owner: Option<(u32, u32)>,
}

impl NewFile {
    /// Append contents.
    pub(crate) fn write(&mut self, data: &[u8]) -> Result<(), Error> {
        self.file
            .write_all(data)
            .map_err(|error| Error::io("write", &self.path, error))
    }

    /// Copy `data` (an entry of the layer stream) into the file with `buffer`; returns the
    /// bytes copied. Read errors of `data` are `Err(FileError::Stream)` for the caller to
    /// classify.
    pub(crate) fn copy_from(
        &mut self,
        data: &mut dyn Read,
        buffer: &mut [u8],
    ) -> Result<u64, FileError> {
        let mut length = 0u64;
        loop {
            let read = match data.read(buffer) {
                Ok(0) => return Ok(length),
                Ok(read) => read,
                Err(error) if error.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(error) => return Err(FileError::Stream(error)),
            };
            self.write(&buffer[..read])?;
            length += read as u64;
        }
    }

    /// Once the contents are written: owner, xattrs, mode, times, in that order (a write
    /// after them would clear file capabilities and set-id bits), then hand the file of
    /// `length` bytes to `writeback` or close it.
    pub(crate) fn finish(
        self,
        length: u64,
        degraded: &mut Degraded,
        writeback: Option<&Writeback>,
    ) -> Result<(), Error> {
        let path = self.path.as_slice();
        let io = |action| move |errno: Errno| Error::io(action, path, errno.into());
        let subject = Subject {
            place: Place::Fd(self.file.as_fd()),
            path,
            rootless: self.rootless,
            created_owner: self.created_owner,
        };
        subject.set_owner(&self.meta, false, degraded)?;
        subject.set_xattrs(&self.meta, degraded)?;
        if !self.exact {
            rfs::fchmod(&self.file, Mode::from_raw_mode(self.meta.mode))
                .map_err(io("set the mode of"))?;
        }
        rfs::futimens(&self.file, &self.meta.timestamps()).map_err(io("set the times of"))?;
        if let Some(writeback) = writeback {
            // Handed over (closed by the writeback thread) or closed here.
            drop(writeback.submit(self.file, length));
        }
        Ok(())
    }
}

/// What owner and xattr changes act on: a descriptor we hold, or a name in a directory
/// (never followed).
#[derive(Clone, Copy)]
enum Place<'a> {
    Fd(BorrowedFd<'a>),
    At(BorrowedFd<'a>, &'a [u8]),
}

impl Place<'_> {
    /// `/proc/self/fd/DIR/NAME` for the l*xattr calls (no-follow by name).
    fn proc_name(dir: BorrowedFd<'_>, name: &[u8]) -> Vec<u8> {
        let mut path = proc_path(&dir).into_bytes();
        path.push(b'/');
        path.extend_from_slice(name);
        path
    }
}

/// An entry whose owner and xattrs are being set, and how to treat owners.
struct Subject<'a> {
    place: Place<'a>,
    path: &'a [u8],
    rootless: bool,
    created_owner: Option<(u32, u32)>,
}

impl Subject<'_> {
    fn io(&self, action: &'static str) -> impl FnOnce(Errno) -> Error + '_ {
        move |errno| Error::io(action, self.path, errno.into())
    }

    /// chown (root), or record the owner in `user.rootlesscontainers` like umoci (rootless).
    fn set_owner(
        &self,
        meta: &Metadata,
        symlink: bool,
        degraded: &mut Degraded,
    ) -> Result<(), Error> {
        if !self.rootless {
            let (uid, gid) = (Some(Uid::from_raw(meta.uid)), Some(Gid::from_raw(meta.gid)));
            let result = match self.place {
                Place::Fd(_) if self.created_owner == Some((meta.uid, meta.gid)) => {
                    // A file we just created with O_EXCL: the kernel gave it this owner already.
                    return Ok(());
                }
                Place::Fd(fd) => rfs::fchown(fd, uid, gid),
                Place::At(dir, name) => {
                    rfs::chownat(dir, name, uid, gid, AtFlags::SYMLINK_NOFOLLOW)
                }
            };
            return result.map_err(self.io("change the owner of"));
        }
        if meta.uid == 0 && meta.gid == 0 {
            if let (Place::At(dir, name), false) = (self.place, symlink) {
                // A merged directory may carry a lower layer's recorded owner: drop it, as umoci.
                let _ = rfs::lremovexattr(Place::proc_name(dir, name).as_slice(), ROOTLESS_XATTR);
            }
            return Ok(());
        }
        if symlink {
            // The kernel refuses user.* xattrs on symlinks; umoci loses these owners too.
            degraded.symlink_owners += 1;
            return Ok(());
        }
        let value = rootless_owner(meta.uid, meta.gid);
        self.set_xattr(ROOTLESS_XATTR, &value, degraded)
    }

    fn set_xattrs(&self, meta: &Metadata, degraded: &mut Degraded) -> Result<(), Error> {
        for (name, value) in &meta.xattrs {
            let host_specific = name == "security.selinux" || name.starts_with("trusted.");
            if host_specific || (self.rootless && name == ROOTLESS_XATTR) {
                degraded.dropped_xattrs.insert(name.clone());
                continue;
            }
            self.set_xattr(name, value, degraded)?;
        }
        Ok(())
    }

    fn set_xattr(&self, name: &str, value: &[u8], degraded: &mut Degraded) -> Result<(), Error> {
        let result = match self.place {
            Place::Fd(fd) => rfs::fsetxattr(fd, name, value, XattrFlags::empty()),
            Place::At(dir, base) => rfs::lsetxattr(
                Place::proc_name(dir, base).as_slice(),
                name,
                value,
                XattrFlags::empty(),
            ),
        };
        match result {
            Ok(()) => Ok(()),
            Err(Errno::NOTSUP | Errno::PERM | Errno::ACCESS) => {
                degraded.failed_xattrs.insert(name.to_string());
                Ok(())
            }
            Err(errno) => Err(Error::io("set an xattr on", self.path, errno.into())),
        }
    }
}

/// A failure while creating a regular file: either the layer stream or the file system.
#[derive(Debug)]
pub(crate) enum FileError {
    Stream(std::io::Error),
    Apply(Error),
}

impl From<Error> for FileError {
    fn from(error: Error) -> Self {
        FileError::Apply(error)
    }
}

/// The protobuf `Resource { uint32 uid = 1; uint32 gid = 2; }` umoci stores, where 0 is
/// written as `u32::MAX` ("no change").
pub(crate) fn rootless_owner(uid: u32, gid: u32) -> Vec<u8> {
    let mut out = Vec::new();
    for (tag, id) in [(0x08u8, uid), (0x10u8, gid)] {
        let mut value = if id == 0 { u32::MAX } else { id };
        out.push(tag);
        loop {
            let byte = (value & 0x7f) as u8;
            value >>= 7;
            if value == 0 {
                out.push(byte);
                break;
            }
            out.push(byte | 0x80);
        }
    }
    out
}

/// Parse a PAX time (`1700000000.123456789`, optionally negative) into a timespec.
pub(crate) fn parse_pax_time(text: &str) -> Option<Timespec> {
    let (negative, text) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    let (seconds, fraction) = text.split_once('.').unwrap_or((text, ""));
    let seconds: i64 = seconds.parse().ok()?;
    if !fraction.bytes().all(|byte| byte.is_ascii_digit()) {
        return None;
    }
    let digits: String = fraction
        .chars()
        .chain(std::iter::repeat('0'))
        .take(9)
        .collect();
    let nanos: i64 = digits.parse().ok()?;
    let time = if negative && nanos > 0 {
        Timespec {
            tv_sec: -seconds - 1,
            tv_nsec: 1_000_000_000 - nanos,
        }
    } else if negative {
        Timespec {
            tv_sec: -seconds,
            tv_nsec: 0,
        }
    } else {
        Timespec {
            tv_sec: seconds,
            tv_nsec: nanos,
        }
    };
    Some(time)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_are_created_with_their_final_mode_only_when_nothing_changes_it() {
        let exact = |mode, umask| file_create_mode(mode, umask).1;
        assert_eq!(
            file_create_mode(0o644, Some(0o022)),
            (Mode::from_raw_mode(0o644), true)
        );
        assert!(exact(0o755, Some(0o022)));
        assert!(
            !exact(0o666, Some(0o022)),
            "the umask would drop group write"
        );
        assert!(
            !exact(0o444, Some(0)),
            "the owner must be able to write it first"
        );
        assert!(
            !exact(0o4755, Some(0)),
            "set-id bits come last, with fchmod"
        );
        assert!(!exact(0o1644, Some(0)), "so does the sticky bit");
        assert!(!exact(0o644, None), "an unknown umask");
        assert_eq!(
            file_create_mode(0o444, Some(0)).0,
            Mode::from_raw_mode(0o600)
        );
    }

    #[test]
    fn the_umask_read_from_proc_is_the_one_the_kernel_applies() {
        use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
        let umask = process_umask().expect("/proc/self/status has Umask");
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("probe");
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o777)
            .open(&path)
            .unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o777 & !umask);
    }

    #[test]
    fn rootless_owner_matches_umoci_encoding() {
        assert_eq!(
            rootless_owner(1000, 1000),
            vec![0x08, 0xe8, 0x07, 0x10, 0xe8, 0x07]
        );
        assert_eq!(
            rootless_owner(0, 5),
            vec![0x08, 0xff, 0xff, 0xff, 0xff, 0x0f, 0x10, 0x05]
        );
    }

    #[test]
    fn pax_times() {
        let time = parse_pax_time("1700000000.5").unwrap();
        assert_eq!((time.tv_sec, time.tv_nsec), (1_700_000_000, 500_000_000));
        let time = parse_pax_time("42").unwrap();
        assert_eq!((time.tv_sec, time.tv_nsec), (42, 0));
        let time = parse_pax_time("-1.25").unwrap();
        assert_eq!((time.tv_sec, time.tv_nsec), (-2, 750_000_000));
        assert!(parse_pax_time("1.2x").is_none());
        assert!(parse_pax_time("abc").is_none());
    }
}
