//! File-system helpers every layer that writes shares (below the stores and outputs).

use std::fs::File;
use std::path::{Path, PathBuf};

pub use crate::blocking::try_lock_exclusive;

/// Remove a tree even where layers left read-only directories (running unprivileged).
pub fn remove_tree(path: PathBuf) {
    use std::os::unix::fs::PermissionsExt as _;
    if std::fs::remove_dir_all(&path).is_ok() {
        return;
    }
    let mut stack = vec![path.clone()];
    while let Some(dir) = stack.pop() {
        let _ = std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700));
        if let Ok(entries) = std::fs::read_dir(&dir) {
            for entry in entries.flatten() {
                if entry.file_type().is_ok_and(|t| t.is_dir()) {
                    stack.push(entry.path());
                }
            }
        }
    }
    if let Err(e) = std::fs::remove_dir_all(&path) {
        tracing::warn!(path = %path.display(), error = %e, "could not remove a staging directory");
    }
}

/// Take an exclusive `flock` on `file`, waiting for its holder. Released when every descriptor
/// of that open file is closed, which includes the holder's death.
pub fn lock_exclusive(file: &File) -> std::io::Result<()> {
    rustix::fs::flock(file, rustix::fs::FlockOperation::LockExclusive).map_err(Into::into)
}

/// Whether `path` still names the file open as `file`.
pub fn same_file(file: &File, path: &Path) -> bool {
    use std::os::unix::fs::MetadataExt as _;
    match (file.metadata(), std::fs::metadata(path)) {
        (Ok(open), Ok(named)) => open.dev() == named.dev() && open.ino() == named.ino(),
        _ => false,
    }
}
