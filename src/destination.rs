//! The destination of a pull, guarded from the first step to the last, so that a pull never
//! replaces something it was not allowed to and never reports what did not happen:
//!
//! - **One rule for every output**, checked before anything is downloaded: an absent
//!   destination (or an empty directory, for directory outputs) is written; an existing OCI
//!   layout is added to (`--format oci`); anything else that exists is replaced only with
//!   `--force`.
//! - **One writer at a time**: a lock file beside the destination (`.NAME.acrpull.lock`, `flock`)
//!   is held for the whole pull; a second acrpull waits for it, saying so, then applies the
//!   rule to what the first one left.
//! - **Put in place only if unchanged**: the finished output replaces the destination with a
//!   rename that fails if the destination is no longer what it was at the start (a file
//!   written into an empty directory meanwhile is never deleted).
//! - **Directories that cannot be renamed over** (a mount point, the current directory) are
//!   filled in place: the output is built in a staging directory inside them, and its entries
//!   are moved in at the end.

use std::fs::File;
use std::io::{Read as _, Write as _};
use std::path::{Path, PathBuf};
use std::time::Duration;

use rustix::fs::RenameFlags;

use crate::cache::BlobCache;
use crate::cancel::Cancel;
use crate::error::{Error, Result};
use crate::layout::{self, DestinationError, Staging};
use crate::report::Reporter;

/// What a pull writes at its destination.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Output {
    /// A directory tree (a root filesystem or runtime bundle).
    Directory,
    /// An OCI image layout: created, or added to.
    Layout,
    /// One file (an archive).
    File,
}

/// What the destination held when the pull started.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Found {
    Absent,
    EmptyDir,
    Layout,
    NonEmptyDir,
    /// A regular file, a symlink, or anything else that is not a directory.
    NotDir,
}

/// How often a pull waiting for another one's lock looks again.
const LOCK_POLL: Duration = Duration::from_millis(100);

/// A destination claimed for one pull: locked, checked, and put in place by
/// [`Destination::publish_dir`] or [`Destination::publish_file`].
#[derive(Debug)]
pub struct Destination {
    /// The path operated on: as given, or made absolute when it ends in `.` or `..`.
    target: PathBuf,
    output: Output,
    found: Found,
    /// Filled in place (a mount point or the current directory) instead of renamed over.
    in_place: bool,
    cancel: Cancel,
    cache: Option<BlobCache>,
    _lock: DestinationLock,
}

impl Destination {
    /// Lock `path` for this pull (waiting for another acrpull that holds it, with a warning
    /// through `reporter`) and check that `output` may be written there.
    pub async fn claim(
        path: &Path,
        output: Output,
        force: bool,
        cache: Option<&BlobCache>,
        cancel: &Cancel,
        reporter: &dyn Reporter,
    ) -> Result<Self> {
        let target = operable(path)?;
        let lock = DestinationLock::acquire(&target, cancel, reporter).await?;
        let found = inspect(&target).map_err(|source| DestinationError::Io {
            action: "reading",
            path: target.clone(),
            source,
        })?;
        check_rule(&target, output, found, force)?;
        let adds_to_layout = output == Output::Layout && found == Found::Layout;
        let in_place = output != Output::File
            && matches!(found, Found::EmptyDir | Found::NonEmptyDir | Found::Layout)
            && !adds_to_layout
            && cannot_be_renamed_over(&target);
        if in_place && found != Found::EmptyDir {
            return Err(unusable(
                &target,
                "is a mount point or holds the current directory, so it cannot be replaced; \
                 empty it first, or choose another destination",
            ));
        }
        Ok(Self {
            target,
            output,
            found,
            in_place,
            cancel: cancel.clone(),
            cache: cache.cloned(),
            _lock: lock,
        })
    }

    /// The destination path.
    pub fn path(&self) -> &Path {
        &self.target
    }

    /// Whether the destination is an existing OCI layout that the pull adds to in place.
    pub fn adds_to_layout(&self) -> bool {
        self.output == Output::Layout && self.found == Found::Layout
    }

    /// A new staging directory for the output: beside the destination (same file system, so a
    /// rename publishes it), or inside it when it is filled in place. Registered with the blob
    /// cache, so that `acrpull cache prune` removes it if this process dies.
    pub fn staging(&self) -> Result<Staging, DestinationError> {
        let staging = if self.in_place {
            layout::staging_dir_inside(&self.target)?
        } else {
            layout::staging_dir_beside(&self.target)?
        };
        Ok(match &self.cache {
            Some(cache) => cache.register(staging),
            None => staging,
        })
    }

    /// Put the finished directory `built` (inside a staging directory of this destination) at
    /// the destination, if the destination is still what it was at the start.
    pub fn publish_dir(&self, built: &Path) -> Result<()> {
        self.cancel.check()?;
        layout::sync_dir(built);
        if self.in_place {
            self.fill_in_place(built)?;
        } else {
            let replaced = match self.found {
                // A plain rename replaces an absent or empty destination and fails if something
                // was written there meanwhile.
                Found::Absent | Found::EmptyDir => rename(built, &self.target),
                // `--force`: swap, so the old tree lands in staging and is removed with it.
                _ => match exchange(built, &self.target) {
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                        rename_no_replace(built, &self.target)
                    }
                    other => other,
                },
            };
            replaced.map_err(|source| self.publish_error(source))?;
        }
        if let Some(parent) = self.target.parent() {
            layout::sync_dir(parent);
        }
        Ok(())
    }

    /// Put the finished file `built` (inside a staging directory of this destination) at the
    /// destination, if the destination is still what it was at the start.
    pub fn publish_file(&self, built: &Path) -> Result<()> {
        self.cancel.check()?;
        let placed = match self.found {
            Found::Absent => rename_no_replace(built, &self.target),
            // `--force`: replace the file.
            _ => std::fs::rename(built, &self.target),
        };
        placed.map_err(|source| self.publish_error(source))?;
        if let Some(parent) = self.target.parent() {
            layout::sync_dir(parent);
        }
        Ok(())
    }

    fn publish_error(&self, source: std::io::Error) -> Error {
        let changed = matches!(
            source.raw_os_error(),
            Some(libc::ENOTEMPTY | libc::EEXIST | libc::ENOTDIR | libc::EISDIR)
        );
        if changed {
            return DestinationError::Changed {
                path: self.target.clone(),
            }
            .into();
        }
        DestinationError::Io {
            action: "putting the finished output at",
            path: self.target.clone(),
            source,
        }
        .into()
    }

    /// Move the entries of `built` into the destination directory, which must hold nothing but
    /// the staging directory; `index.json` last, so a layout is valid once it is there. On
    /// failure the entries already moved go back.
    fn fill_in_place(&self, built: &Path) -> Result<()> {
        let io = |source: std::io::Error| DestinationError::Io {
            action: "moving the finished output into",
            path: self.target.clone(),
            source,
        };
        let staging_name = built
            .strip_prefix(&self.target)
            .ok()
            .and_then(|inside| inside.components().next())
            .map(|first| first.as_os_str().to_owned());
        let others = std::fs::read_dir(&self.target)
            .map_err(io)?
            .flatten()
            .any(|entry| Some(entry.file_name()) != staging_name);
        if others {
            return Err(DestinationError::Changed {
                path: self.target.clone(),
            }
            .into());
        }
        let mut names: Vec<_> = std::fs::read_dir(built)
            .map_err(io)?
            .flatten()
            .map(|entry| entry.file_name())
            .collect();
        names.sort_by_key(|name| (name == "index.json", name.clone()));
        let mut moved = Vec::new();
        for name in names {
            if let Err(source) = rename_no_replace(&built.join(&name), &self.target.join(&name)) {
                for back in moved.iter().rev() {
                    let _ = std::fs::rename(self.target.join(back), built.join(back));
                }
                return Err(self.publish_error(source));
            }
            moved.push(name);
        }
        Ok(())
    }
}

/// `path`, made absolute when its last component is `.` or `..` (or it is `/`), so that it has
/// a parent and a name.
fn operable(path: &Path) -> Result<PathBuf> {
    if path.file_name().is_some() {
        return Ok(path.to_path_buf());
    }
    std::fs::canonicalize(path).map_err(|source| {
        DestinationError::Io {
            action: "resolving",
            path: path.to_path_buf(),
            source,
        }
        .into()
    })
}

fn unusable(path: &Path, reason: &str) -> Error {
    DestinationError::Unusable {
        path: path.to_path_buf(),
        reason: reason.into(),
    }
    .into()
}

fn inspect(target: &Path) -> std::io::Result<Found> {
    let meta = match std::fs::symlink_metadata(target) {
        Ok(meta) => meta,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Found::Absent),
        Err(e) => return Err(e),
    };
    let is_layout = || target.join("oci-layout").is_file() && target.join("index.json").is_file();
    if !meta.is_dir() {
        // A symlink to a layout is added to through the link, as before.
        let to_layout = meta.is_symlink() && target.is_dir() && is_layout();
        return Ok(if to_layout {
            Found::Layout
        } else {
            Found::NotDir
        });
    }
    layout::remove_abandoned_staging_inside(target);
    Ok(if layout::is_empty_dir(target) {
        Found::EmptyDir
    } else if is_layout() {
        Found::Layout
    } else {
        Found::NonEmptyDir
    })
}

/// The rule, the same for every output: see the module documentation.
fn check_rule(target: &Path, output: Output, found: Found, force: bool) -> Result<()> {
    match (output, found) {
        (_, Found::Absent)
        | (Output::Directory | Output::Layout, Found::EmptyDir)
        | (Output::Layout, Found::Layout) => Ok(()),
        (Output::Directory, Found::Layout | Found::NonEmptyDir)
        | (Output::Layout, Found::NonEmptyDir)
        | (Output::File, Found::NotDir)
            if force =>
        {
            Ok(())
        }
        (Output::Directory, Found::Layout | Found::NonEmptyDir) => {
            Err(unusable(target, "is not empty (use --force to replace it)"))
        }
        (Output::Layout, Found::NonEmptyDir) => Err(unusable(
            target,
            "exists and is neither empty nor an OCI image layout (use --force to replace it)",
        )),
        (Output::Directory | Output::Layout, Found::NotDir) => {
            Err(unusable(target, "exists and is not a directory"))
        }
        (Output::File, Found::NotDir) => {
            Err(unusable(target, "exists (use --force to replace it)"))
        }
        (Output::File, Found::EmptyDir | Found::NonEmptyDir | Found::Layout) => Err(unusable(
            target,
            "is a directory; an archive is written as a file",
        )),
    }
}

/// Whether `dir` cannot be replaced by renaming a sibling over it: a mount point (the rename
/// fails with `EBUSY`, and a sibling is on another file system), `/`, or the current directory
/// or one of its ancestors (the rename would leave the shell that runs us in a deleted
/// directory).
fn cannot_be_renamed_over(dir: &Path) -> bool {
    let mount_root = rustix::fs::statx(
        rustix::fs::CWD,
        dir,
        rustix::fs::AtFlags::empty(),
        rustix::fs::StatxFlags::BASIC_STATS,
    )
    .is_ok_and(|stat| {
        let mount_root = rustix::fs::StatxAttributes::MOUNT_ROOT;
        stat.stx_attributes_mask.contains(mount_root) && stat.stx_attributes.contains(mount_root)
    });
    let other_device = {
        use std::os::unix::fs::MetadataExt as _;
        let parent = dir.parent().filter(|p| !p.as_os_str().is_empty());
        match (std::fs::metadata(dir), parent.map(std::fs::metadata)) {
            (Ok(own), Some(Ok(parent))) => own.dev() != parent.dev(),
            (_, None) => true,
            _ => false,
        }
    };
    let holds_cwd = match (std::fs::canonicalize(dir), std::env::current_dir()) {
        (Ok(dir), Ok(cwd)) => cwd.starts_with(dir),
        _ => false,
    };
    mount_root || other_device || holds_cwd
}

fn rename(from: &Path, to: &Path) -> std::io::Result<()> {
    std::fs::rename(from, to)
}

fn exchange(from: &Path, to: &Path) -> std::io::Result<()> {
    rustix::fs::renameat_with(
        rustix::fs::CWD,
        from,
        rustix::fs::CWD,
        to,
        RenameFlags::EXCHANGE,
    )
    .map_err(Into::into)
}

/// Rename, failing with `EEXIST` if `to` exists (checked atomically where the file system
/// supports it).
fn rename_no_replace(from: &Path, to: &Path) -> std::io::Result<()> {
    match rustix::fs::renameat_with(
        rustix::fs::CWD,
        from,
        rustix::fs::CWD,
        to,
        RenameFlags::NOREPLACE,
    ) {
        Err(rustix::io::Errno::INVAL | rustix::io::Errno::NOSYS) => {
            // A file system without RENAME_NOREPLACE (some network and FUSE ones).
            if std::fs::symlink_metadata(to).is_ok() {
                return Err(std::io::Error::from_raw_os_error(libc::EEXIST));
            }
            std::fs::rename(from, to)
        }
        other => other.map_err(Into::into),
    }
}

/// The lock of one destination: `flock` on `.NAME.acrpull.lock` beside it (on the destination
/// directory itself when its parent cannot be written). The lock file holds the owner's pid
/// and is removed by its owner when the pull ends.
#[derive(Debug)]
struct DestinationLock {
    file: File,
    /// The lock file, removed on drop (while still locked: a waiter then finds the name gone
    /// and locks a new file).
    path: Option<PathBuf>,
}

impl Drop for DestinationLock {
    fn drop(&mut self) {
        if let Some(path) = &self.path {
            if crate::fsutil::same_file(&self.file, path) {
                let _ = std::fs::remove_file(path);
            }
        }
    }
}

impl DestinationLock {
    async fn acquire(target: &Path, cancel: &Cancel, reporter: &dyn Reporter) -> Result<Self> {
        let parent = match target.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        let name = target
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let lock_path = parent.join(format!(".{name}.acrpull.lock"));
        let io = |action: &'static str, path: &Path| {
            let path = path.to_path_buf();
            move |source: std::io::Error| {
                Error::from(DestinationError::Io {
                    action,
                    path,
                    source,
                })
            }
        };
        std::fs::create_dir_all(&parent).map_err(io("creating", &parent))?;
        let mut announced = false;
        loop {
            let opened = File::options()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .open(&lock_path);
            let (file, path) = match opened {
                Ok(file) => (file, Some(lock_path.clone())),
                // A parent we may not write (a mount point under a system directory): lock
                // the destination directory itself.
                Err(e) if target.is_dir() && is_not_writable(&e) => {
                    let dir = File::open(target).map_err(io("opening", target))?;
                    (dir, None)
                }
                Err(e) => return Err(io("creating a lock file in", &parent)(e)),
            };
            if crate::fsutil::try_lock_exclusive(&file) {
                let Some(path) = path else {
                    return Ok(Self { file, path: None });
                };
                // Its previous owner may have removed it as we opened it: lock the file
                // that has the name now.
                if !crate::fsutil::same_file(&file, &path) {
                    continue;
                }
                let mut lock = Self {
                    file,
                    path: Some(path),
                };
                let _ = lock.file.set_len(0);
                let _ = writeln!(lock.file, "{}", std::process::id());
                return Ok(lock);
            }
            if !announced {
                announced = true;
                let mut holder = String::new();
                let _ = (&file).read_to_string(&mut holder);
                let holder = match holder.trim() {
                    "" => String::new(),
                    pid => format!(" (pid {pid})"),
                };
                reporter.on_warning(&format!(
                    "{} is being written by another acrpull{holder}; waiting for it to finish",
                    target.display()
                ));
            }
            drop(file);
            tokio::select! {
                () = tokio::time::sleep(LOCK_POLL) => {}
                signal = cancel.cancelled() => return Err(Error::Stopped(signal)),
            }
        }
    }
}

fn is_not_writable(error: &std::io::Error) -> bool {
    matches!(
        error.raw_os_error(),
        Some(libc::EACCES | libc::EPERM | libc::EROFS)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claim(path: &Path, output: Output, force: bool) -> Result<Destination> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap();
        runtime.block_on(Destination::claim(
            path,
            output,
            force,
            None,
            &Cancel::default(),
            &crate::NoopReporter,
        ))
    }

    fn refusal(result: Result<Destination>) -> String {
        match result {
            Err(Error::Destination(e)) => e.to_string(),
            other => panic!("expected a refusal, got {other:?}"),
        }
    }

    #[test]
    fn one_rule_for_every_output() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("file");
        std::fs::write(&file, b"x").unwrap();
        let full = dir.path().join("full");
        std::fs::create_dir(&full).unwrap();
        std::fs::write(full.join("a"), b"a").unwrap();
        let empty = dir.path().join("empty");
        std::fs::create_dir(&empty).unwrap();
        let absent = dir.path().join("absent");

        for output in [Output::Directory, Output::Layout, Output::File] {
            assert!(claim(&absent, output, false).is_ok());
        }
        assert!(claim(&empty, Output::Directory, false).is_ok());
        assert!(claim(&empty, Output::Layout, false).is_ok());
        assert!(refusal(claim(&full, Output::Directory, false)).contains("--force"));
        assert!(refusal(claim(&full, Output::Layout, false)).contains("--force"));
        assert!(refusal(claim(&file, Output::File, false)).contains("--force"));
        assert!(claim(&full, Output::Directory, true).is_ok());
        assert!(claim(&full, Output::Layout, true).is_ok());
        assert!(claim(&file, Output::File, true).is_ok());
        assert!(refusal(claim(&file, Output::Directory, true)).contains("not a directory"));
        assert!(refusal(claim(&empty, Output::File, true)).contains("is a directory"));
        assert_eq!(
            std::fs::read(&file).unwrap(),
            b"x",
            "a refusal changes nothing"
        );
    }

    #[test]
    fn the_lock_is_released_and_its_file_removed() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("out");
        let first = claim(&target, Output::Directory, false).unwrap();
        let lock_file = dir.path().join(".out.acrpull.lock");
        assert_eq!(
            std::fs::read_to_string(&lock_file).unwrap().trim(),
            std::process::id().to_string()
        );
        drop(first);
        assert!(!lock_file.exists());
        drop(claim(&target, Output::Directory, false).unwrap());
    }

    #[test]
    fn a_file_written_meanwhile_is_never_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("out");
        std::fs::create_dir(&target).unwrap();
        let destination = claim(&target, Output::Directory, false).unwrap();
        let staging = destination.staging().unwrap();
        let built = staging.path().join("out");
        std::fs::create_dir(&built).unwrap();
        std::fs::write(built.join("new"), b"new").unwrap();
        std::fs::write(target.join("theirs"), b"keep").unwrap();
        let error = destination.publish_dir(&built).unwrap_err();
        assert!(
            error.to_string().contains("changed during the pull"),
            "{error}"
        );
        assert_eq!(std::fs::read(target.join("theirs")).unwrap(), b"keep");
        assert!(!target.join("new").exists());
    }

    #[test]
    fn an_archive_destination_created_meanwhile_is_kept() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("image.tar");
        let destination = claim(&target, Output::File, false).unwrap();
        let staging = destination.staging().unwrap();
        let built = staging.path().join("archive");
        std::fs::write(&built, b"archive").unwrap();
        std::fs::write(&target, b"theirs").unwrap();
        assert!(destination.publish_file(&built).is_err());
        assert_eq!(std::fs::read(&target).unwrap(), b"theirs");
    }
}
