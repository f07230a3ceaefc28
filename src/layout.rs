//! OCI image layouts (`oci-layout`, `index.json`, `blobs/<alg>/<hex>`): reading them as a
//! source and writing them as an output.
//!
//! A new layout is built in a temporary directory beside the destination and renamed into
//! place when complete, so a failed pull leaves nothing behind. Adding to an existing layout
//! writes each blob atomically (temporary file, fsync, rename) and replaces `index.json`
//! atomically last, so the layout is valid at every instant.

use std::io::Write as _;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};

use crate::digest::Digest;
use crate::manifest::{Descriptor, ImageIndex, REF_NAME};

/// The `oci-layout` file's content.
pub const OCI_LAYOUT_FILE: &str = r#"{"imageLayoutVersion":"1.0.0"}"#;

/// Where a blob lives in a layout.
pub fn blob_path(root: &Path, digest: &Digest) -> PathBuf {
    root.join("blobs")
        .join(digest.algorithm().as_str())
        .join(digest.hex())
}

/// Read `index.json`.
pub fn read_index(root: &Path) -> std::io::Result<ImageIndex> {
    let bytes = std::fs::read(root.join("index.json"))?;
    serde_json::from_slice(&bytes).map_err(|e| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("index.json is not a valid OCI index: {e}"),
        )
    })
}

/// Why an output destination cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum DestinationError {
    /// Something other than what we can write into is there.
    #[error("destination {path} {reason}")]
    Unusable {
        /// The destination.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// I/O failed.
    #[error("{action} {path} failed")]
    Io {
        /// What we were doing.
        action: &'static str,
        /// Where.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

fn io_error(action: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> DestinationError {
    let path = path.to_path_buf();
    move |source| DestinationError::Io {
        action,
        path,
        source,
    }
}

/// A staging directory beside a destination: locked (`flock` on the directory) while its
/// pull runs, removed on drop unless it was renamed away. A pull killed with `kill -9` leaves
/// its staging directory behind with the lock released; the next pull to the same destination
/// removes it.
#[derive(Debug)]
pub struct Staging {
    path: PathBuf,
    _lock: std::fs::File,
}

impl Staging {
    /// The directory.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for Staging {
    fn drop(&mut self) {
        if std::fs::symlink_metadata(&self.path).is_ok() {
            crate::unpack::remove_tree(self.path.clone());
        }
    }
}

/// A temporary directory beside `dest` (same filesystem, so a rename can publish it). Staging
/// directories of earlier pulls to `dest` that died are removed first.
pub fn staging_dir_beside(dest: &Path) -> Result<Staging, DestinationError> {
    let parent = match dest.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    std::fs::create_dir_all(&parent).map_err(io_error("creating", &parent))?;
    let name = dest
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "out".into());
    let prefix = format!(".{name}.acrpull-");
    remove_abandoned_staging(&parent, &prefix);
    let staging = tempfile::Builder::new()
        .prefix(&prefix)
        .tempdir_in(&parent)
        .map_err(io_error("creating a staging directory in", &parent))?;
    let path = staging.keep();
    let lock = std::fs::File::open(&path)
        .and_then(|dir| crate::cache::lock_exclusive(&dir).map(|()| dir))
        .map_err(io_error("locking a staging directory in", &parent));
    let lock = match lock {
        Ok(lock) => lock,
        Err(e) => {
            let _ = std::fs::remove_dir(&path);
            return Err(e);
        }
    };
    let staging = Staging { path, _lock: lock };
    // tempfile creates 0700; the published directory should look like any other.
    std::fs::set_permissions(staging.path(), std::fs::Permissions::from_mode(0o755))
        .map_err(io_error("creating a staging directory in", &parent))?;
    Ok(staging)
}

/// Remove the staging directories named `prefix*` in `parent` whose lock nobody holds (their
/// pull died).
fn remove_abandoned_staging(parent: &Path, prefix: &str) {
    let Ok(entries) = std::fs::read_dir(parent) else {
        return;
    };
    for entry in entries.flatten() {
        if !entry.file_name().to_string_lossy().starts_with(prefix)
            || !entry.file_type().is_ok_and(|t| t.is_dir())
        {
            continue;
        }
        let path = entry.path();
        let Ok(dir) = std::fs::File::open(&path) else {
            continue;
        };
        if crate::cache::try_lock_exclusive(&dir) {
            tracing::info!(path = %path.display(), "removing the staging directory of a pull that died");
            crate::unpack::remove_tree(path);
        }
    }
}

/// Whether `path` is an empty directory.
pub fn is_empty_dir(path: &Path) -> bool {
    std::fs::read_dir(path).is_ok_and(|mut entries| entries.next().is_none())
}

/// Publish a finished staging directory at `dest`: a rename, which also replaces an empty
/// directory atomically.
pub fn publish(staging: Staging, dest: &Path) -> Result<(), DestinationError> {
    let path = staging.path();
    sync_dir(path);
    if let Err(source) = std::fs::rename(path, dest) {
        return Err(DestinationError::Io {
            action: "renaming the finished output to",
            path: dest.to_path_buf(),
            source,
        });
    }
    if let Some(parent) = dest.parent() {
        sync_dir(parent);
    }
    Ok(())
}

fn sync_dir(path: &Path) {
    if let Ok(dir) = std::fs::File::open(path) {
        let _ = dir.sync_all();
    }
}

/// An OCI layout being written.
#[derive(Debug)]
pub struct LayoutWriter {
    dest: PathBuf,
    root: PathBuf,
    staging: Option<Staging>,
    /// The lock on an existing layout, held until the pull is done with it.
    _lock: Option<std::fs::File>,
}

/// Lock an existing layout for writing (`flock` on its directory), waiting for another acrpull
/// that holds it.
fn lock_layout(dest: &Path) -> Result<std::fs::File, DestinationError> {
    let dir = std::fs::File::open(dest).map_err(io_error("opening", dest))?;
    if !crate::cache::try_lock_exclusive(&dir) {
        tracing::info!(path = %dest.display(), "waiting for another acrpull writing to this layout");
        crate::cache::lock_exclusive(&dir).map_err(io_error("locking", dest))?;
    }
    Ok(dir)
}

/// Remove the temporary files a killed writer left in a layout we hold the lock of.
fn remove_temporary_files(root: &Path) {
    let mut dirs = vec![root.to_path_buf()];
    if let Ok(algorithms) = std::fs::read_dir(root.join("blobs")) {
        dirs.extend(algorithms.flatten().map(|entry| entry.path()));
    }
    for dir in dirs {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            if entry.file_name().to_string_lossy().starts_with(".tmp-")
                && entry.file_type().is_ok_and(|t| t.is_file())
            {
                let _ = std::fs::remove_file(entry.path());
            }
        }
    }
}

impl LayoutWriter {
    /// Prepare to write a layout at `dest`: a new one (absent or empty directory) or an
    /// existing layout to add to. Anything else is refused.
    pub fn prepare(dest: &Path) -> Result<Self, DestinationError> {
        let existing_layout =
            dest.join("oci-layout").is_file() && dest.join("index.json").is_file();
        if dest.exists() && !existing_layout && !is_empty_dir(dest) {
            return Err(DestinationError::Unusable {
                path: dest.to_path_buf(),
                reason: "exists and is neither empty nor an OCI image layout".into(),
            });
        }
        if existing_layout {
            // One writer at a time: `index.json` is read, changed and replaced.
            let lock = lock_layout(dest)?;
            remove_temporary_files(dest);
            read_index(dest).map_err(io_error("reading the existing layout", dest))?;
            return Ok(Self {
                dest: dest.to_path_buf(),
                root: dest.to_path_buf(),
                staging: None,
                _lock: Some(lock),
            });
        }
        let staging = staging_dir_beside(dest)?;
        let root = staging.path().to_path_buf();
        std::fs::write(root.join("oci-layout"), OCI_LAYOUT_FILE)
            .map_err(io_error("writing oci-layout in", &root))?;
        std::fs::create_dir_all(root.join("blobs"))
            .map_err(io_error("creating blobs in", &root))?;
        Ok(Self {
            dest: dest.to_path_buf(),
            root,
            staging: Some(staging),
            _lock: None,
        })
    }

    /// The directory blobs are written under now (the staging directory for a new layout).
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Whether the blob is already there (then it is trusted: blobs are only ever renamed into
    /// place after verification).
    pub fn has_blob(&self, digest: &Digest) -> bool {
        blob_path(&self.root, digest).is_file()
    }

    /// Write a small blob (a manifest) from memory, atomically, unless present.
    pub fn put_bytes(&self, digest: &Digest, bytes: &[u8]) -> Result<(), DestinationError> {
        if self.has_blob(digest) {
            return Ok(());
        }
        let path = blob_path(&self.root, digest);
        write_atomic(&path, bytes)
    }

    /// Add `descriptor` to `index.json` (replacing an entry with the same tag, or the same
    /// digest when untagged) and publish the layout.
    pub fn commit(self, descriptor: Descriptor) -> Result<(), DestinationError> {
        self.commit_with_referrers(descriptor, &[])
    }

    /// [`Self::commit`], listing `referrers` in `index.json` too (untagged entries found by
    /// their `subject`, or cosign manifests under their tag), as tools reading layouts
    /// (oras, regctl) look for them. Their manifests and blobs must be written already.
    pub fn commit_with_referrers(
        mut self,
        descriptor: Descriptor,
        referrers: &[crate::referrers::ReferrerDescriptor],
    ) -> Result<(), DestinationError> {
        let index_path = self.root.join("index.json");
        let mut index: serde_json::Value = match std::fs::read(&index_path) {
            Ok(bytes) => {
                serde_json::from_slice(&bytes).map_err(|e| DestinationError::Unusable {
                    path: index_path.clone(),
                    reason: format!("is not valid JSON: {e}"),
                })?
            }
            Err(_) => {
                serde_json::json!({"schemaVersion": 2, "mediaType": crate::media_type::OCI_INDEX, "manifests": []})
            }
        };
        let unusable = |reason: String| DestinationError::Unusable {
            path: index_path.clone(),
            reason,
        };
        let mut entries =
            vec![serde_json::to_value(&descriptor).map_err(|e| unusable(e.to_string()))?];
        for referrer in referrers {
            entries.push(serde_json::to_value(referrer).map_err(|e| unusable(e.to_string()))?);
        }
        let manifests = index
            .get_mut("manifests")
            .and_then(serde_json::Value::as_array_mut)
            .ok_or_else(|| unusable("has no `manifests` array".into()))?;
        let ref_name_of = |entry: &serde_json::Value| {
            entry
                .pointer(&format!("/annotations/{}", REF_NAME.replace('/', "~1")))
                .and_then(serde_json::Value::as_str)
                .map(str::to_string)
        };
        let digest_of = |entry: &serde_json::Value| {
            entry
                .get("digest")
                .and_then(serde_json::Value::as_str)
                .map(str::to_string)
        };
        for entry in entries {
            let new_ref = ref_name_of(&entry);
            let new_digest = digest_of(&entry);
            manifests.retain(|existing| match &new_ref {
                Some(tag) => ref_name_of(existing).as_ref() != Some(tag),
                None => !(ref_name_of(existing).is_none() && digest_of(existing) == new_digest),
            });
            manifests.push(entry);
        }
        let bytes = serde_json::to_vec(&index).map_err(|e| unusable(e.to_string()))?;
        write_atomic(&index_path, &bytes)?;
        if let Some(staging) = self.staging.take() {
            publish(staging, &self.dest)?;
        }
        Ok(())
    }
}

/// Write a file atomically: temporary file in the same directory, fsync, rename.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), DestinationError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(io_error("creating", dir))?;
    let mut file = tempfile::Builder::new()
        .prefix(".tmp-")
        .tempfile_in(dir)
        .map_err(io_error("creating a temporary file in", dir))?;
    // tempfile creates 0600; layouts are read by other tools and users.
    std::fs::set_permissions(file.path(), std::fs::Permissions::from_mode(0o644))
        .map_err(io_error("writing", path))?;
    file.write_all(bytes).map_err(io_error("writing", path))?;
    file.as_file()
        .sync_all()
        .map_err(io_error("syncing", path))?;
    file.persist(path)
        .map_err(|e| io_error("renaming into place", path)(e.error))?;
    Ok(())
}
