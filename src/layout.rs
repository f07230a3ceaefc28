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

/// Whether `name` may be an `org.opencontainers.image.ref.name` in a layout (the image-layout
/// grammar): `component ("/" component)*`, a component being alphanumeric runs joined by one
/// of `-._:@+` or by `--`.
pub fn is_valid_ref_name(name: &str) -> bool {
    name.split('/').all(|component| {
        let bytes = component.as_bytes();
        let mut index = 0;
        let mut expect_alphanumeric = true;
        while index < bytes.len() {
            if bytes[index].is_ascii_alphanumeric() {
                while index < bytes.len() && bytes[index].is_ascii_alphanumeric() {
                    index += 1;
                }
                expect_alphanumeric = false;
            } else if expect_alphanumeric {
                return false;
            } else {
                index += if bytes[index..].starts_with(b"--") {
                    2
                } else if b"-._:@+".contains(&bytes[index]) {
                    1
                } else {
                    return false;
                };
                expect_alphanumeric = true;
            }
        }
        !expect_alphanumeric
    })
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
    /// The destination changed while the pull ran (something else wrote to it): the output
    /// was not put there.
    #[error(
        "destination {path} changed during the pull (something else wrote to it); it was left \
         as it is and the pulled output was discarded"
    )]
    Changed {
        /// The destination.
        path: PathBuf,
    },
    /// A blob the output needs is missing or has the wrong size: the output was not put there.
    #[error("the output is incomplete: {path} {reason}; nothing was put at the destination")]
    Incomplete {
        /// The blob file.
        path: PathBuf,
        /// What is wrong with it.
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

/// A staging directory beside a destination (or inside one filled in place): locked (`flock`
/// on the directory) while its pull runs, removed on drop unless it was renamed away. A pull
/// killed with `kill -9` leaves it behind with the lock released; the next pull to the same
/// destination removes it, and so do `acrpull cache prune` and the next pull anywhere when it
/// was registered with the blob cache ([`crate::cache::BlobCache::register`]).
#[derive(Debug)]
pub struct Staging {
    path: PathBuf,
    _lock: std::fs::File,
    /// Its entry in the blob cache's list of staging directories.
    registration: Option<PathBuf>,
}

impl Staging {
    /// The directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Remember its entry in the blob cache's list ([`crate::cache::BlobCache::register`]),
    /// removed with the directory.
    pub fn with_registration(mut self, registration: Option<PathBuf>) -> Self {
        self.registration = registration;
        self
    }
}

impl Drop for Staging {
    fn drop(&mut self) {
        if std::fs::symlink_metadata(&self.path).is_ok() {
            crate::fsutil::remove_tree(self.path.clone());
        }
        if let Some(registration) = &self.registration {
            let _ = std::fs::remove_file(registration);
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
    locked_temporary_dir(&parent, &prefix)
}

/// The prefix of staging directories inside a destination that is filled in place.
const INSIDE_PREFIX: &str = ".acrpull-";

/// A staging directory inside `dest`, for a destination filled in place (a mount point).
pub fn staging_dir_inside(dest: &Path) -> Result<Staging, DestinationError> {
    remove_abandoned_staging_inside(dest);
    locked_temporary_dir(dest, INSIDE_PREFIX)
}

/// Remove the staging directories that pulls which died left inside `dest`.
pub fn remove_abandoned_staging_inside(dest: &Path) {
    remove_abandoned_staging(dest, INSIDE_PREFIX);
}

fn locked_temporary_dir(parent: &Path, prefix: &str) -> Result<Staging, DestinationError> {
    let staging = tempfile::Builder::new()
        .prefix(prefix)
        .tempdir_in(parent)
        .map_err(io_error("creating a staging directory in", parent))?;
    let path = staging.keep();
    let lock = std::fs::File::open(&path)
        .and_then(|dir| crate::fsutil::lock_exclusive(&dir).map(|()| dir))
        .map_err(io_error("locking a staging directory in", parent));
    let lock = match lock {
        Ok(lock) => lock,
        Err(e) => {
            let _ = std::fs::remove_dir(&path);
            return Err(e);
        }
    };
    let staging = Staging {
        path,
        _lock: lock,
        registration: None,
    };
    // tempfile creates 0700; the published directory should look like any other.
    std::fs::set_permissions(staging.path(), std::fs::Permissions::from_mode(0o755))
        .map_err(io_error("creating a staging directory in", parent))?;
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
        remove_if_abandoned(&entry.path());
    }
}

/// Remove the staging directory `path` if its lock is free (its pull died). Whether it did.
pub fn remove_if_abandoned(path: &Path) -> bool {
    let Ok(dir) = std::fs::File::open(path) else {
        return false;
    };
    if !crate::fsutil::try_lock_exclusive(&dir) {
        return false;
    }
    tracing::info!(path = %path.display(), "removing the staging directory of a pull that died");
    crate::fsutil::remove_tree(path.to_path_buf());
    remove_abandoned_lock_beside(path);
    true
}

/// The lock file `.NAME.acrpull.lock` of the destination that the staging directory
/// `.NAME.acrpull-XXXX` was made for, removed if nobody holds it (a waiter that opened it
/// meanwhile notices the name is gone and locks a new file).
fn remove_abandoned_lock_beside(staging: &Path) {
    let Some((destination, _)) = staging
        .file_name()
        .and_then(|name| name.to_str())
        .and_then(|name| name.rsplit_once(".acrpull-"))
    else {
        return;
    };
    if destination.is_empty() {
        // Staging inside a destination filled in place: its lock is elsewhere.
        return;
    }
    let lock = staging.with_file_name(format!("{destination}.acrpull.lock"));
    if let Ok(file) = std::fs::File::options().write(true).open(&lock) {
        if crate::fsutil::try_lock_exclusive(&file) {
            let _ = std::fs::remove_file(&lock);
        }
    }
}

/// Whether `path` is an empty directory.
pub fn is_empty_dir(path: &Path) -> bool {
    std::fs::read_dir(path).is_ok_and(|mut entries| entries.next().is_none())
}

/// `fsync` a directory (best effort: its entries are durable once it is).
pub fn sync_dir(path: &Path) {
    if let Ok(dir) = std::fs::File::open(path) {
        let _ = dir.sync_all();
    }
}

/// An OCI layout being written.
#[derive(Debug)]
pub struct LayoutWriter {
    root: PathBuf,
    /// A new layout: its staging directory, handed back by the commit to be published.
    staging: Option<Staging>,
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
    /// Add to the existing layout at `dest`, in place (the destination's lock keeps other
    /// acrpull processes out).
    pub fn add_to(dest: &Path) -> Result<Self, DestinationError> {
        remove_temporary_files(dest);
        read_index(dest).map_err(io_error("reading the existing layout", dest))?;
        Ok(Self {
            root: dest.to_path_buf(),
            staging: None,
        })
    }

    /// Write a new layout in `staging`; the commit hands the directory back for publishing.
    pub fn in_staging(staging: Staging) -> Result<Self, DestinationError> {
        let mut writer = Self::create(staging.path())?;
        writer.staging = Some(staging);
        Ok(writer)
    }

    /// Start a new layout at `root`, an empty directory the caller owns (an archive's staging
    /// directory); it stays there.
    pub fn create(root: &Path) -> Result<Self, DestinationError> {
        std::fs::create_dir_all(root.join("blobs")).map_err(io_error("creating blobs in", root))?;
        std::fs::write(root.join("oci-layout"), OCI_LAYOUT_FILE)
            .map_err(io_error("writing oci-layout in", root))?;
        Ok(Self {
            root: root.to_path_buf(),
            staging: None,
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

    /// Check that every blob `descriptor` reaches is present with its size, add it to
    /// `index.json` (replacing an entry with the same tag, or the same digest when untagged),
    /// and hand back a new layout's staging directory, for the caller to publish.
    pub fn commit(self, descriptor: Descriptor) -> Result<Option<Staging>, DestinationError> {
        self.commit_with_referrers(descriptor, &[])
    }

    /// [`Self::commit`], listing `referrers` in `index.json` too (untagged entries found by
    /// their `subject`, or cosign manifests under their tag), as tools reading layouts
    /// (oras, regctl) look for them. Their manifests and blobs must be written already; they
    /// are checked complete too.
    pub fn commit_with_referrers(
        mut self,
        descriptor: Descriptor,
        referrers: &[crate::referrer::ReferrerDescriptor],
    ) -> Result<Option<Staging>, DestinationError> {
        verify_complete(&self.root, &descriptor)?;
        for referrer in referrers {
            let referrer = Descriptor {
                media_type: referrer.media_type.clone(),
                digest: referrer.digest.clone(),
                size: referrer.size,
                urls: None,
                annotations: None,
                platform: None,
            };
            verify_complete(&self.root, &referrer)?;
        }
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
        Ok(self.staging.take())
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

/// Check that every blob `descriptor` reaches in the layout at `root` (manifests, indexes,
/// configs, layers) is there with the size its descriptor gives: the last check before a
/// layout is published, whatever wrote its blobs.
pub fn verify_complete(root: &Path, descriptor: &Descriptor) -> Result<(), DestinationError> {
    use crate::media_type::{manifest_kind, ManifestKind};
    let mut pending = vec![descriptor.clone()];
    let mut seen = std::collections::HashSet::new();
    while let Some(descriptor) = pending.pop() {
        if !seen.insert(descriptor.digest.clone()) {
            continue;
        }
        let path = blob_path(root, &descriptor.digest);
        let incomplete = |reason: String| DestinationError::Incomplete {
            path: path.clone(),
            reason,
        };
        let size = match std::fs::metadata(&path) {
            Ok(meta) if meta.is_file() => meta.len(),
            Ok(_) => return Err(incomplete("is not a file".into())),
            Err(e) => return Err(incomplete(format!("is missing ({e})"))),
        };
        if size != descriptor.size {
            return Err(incomplete(format!(
                "has {size} bytes; its descriptor says {}",
                descriptor.size
            )));
        }
        let Some(kind) = manifest_kind(&descriptor.media_type) else {
            continue;
        };
        let bytes = std::fs::read(&path).map_err(io_error("reading", &path))?;
        let invalid = |e: serde_json::Error| incomplete(format!("is not a valid manifest: {e}"));
        match kind {
            ManifestKind::Image => {
                let manifest: crate::manifest::ImageManifest =
                    serde_json::from_slice(&bytes).map_err(invalid)?;
                pending.push(manifest.config);
                pending.extend(manifest.layers);
            }
            ManifestKind::Index => {
                let index: ImageIndex = serde_json::from_slice(&bytes).map_err(invalid)?;
                pending.extend(index.manifests);
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::is_valid_ref_name;

    #[test]
    fn ref_names_follow_the_image_layout_grammar() {
        for good in [
            "v1",
            "latest",
            "127.0.0.1:5000/it/a:latest",
            "docker.io/library/alpine:3.19",
            "repo--x/a_b:1.0+build@sha256:abc",
        ] {
            assert!(is_valid_ref_name(good), "{good}");
        }
        for bad in [
            "",
            "/a",
            "a/",
            "a//b",
            "-a",
            "a-",
            "[::1]:5000/a:b",
            "a b",
            "a__b",
        ] {
            assert!(!is_valid_ref_name(bad), "{bad}");
        }
    }
}
