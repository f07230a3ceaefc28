//! File-system helpers every layer that writes shares (below the stores and outputs).

use std::path::PathBuf;

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
