//! Where a blob's bytes land while it downloads, and what happens to them at the end: the
//! ingest seam (containerd's `content.Writer`: an offset to resume from, a truncate, a commit
//! once size and digest matched). The download itself (receive, hash, write, resume with
//! `Range`) is written once in [`super::fetch_into`]; the two places a blob can be received
//! differ only here:
//!
//! - [`PartialFile`]: the blob cache's fixed partial file. Bytes an earlier run left are kept
//!   and resumed after; on failure they stay for the next try unless they proved wrong; the
//!   commit leaves the verified file for the cache to move into place (under its lock).
//! - [`TempFile`]: a fresh temporary file beside the destination (layouts, staging). Nothing
//!   is resumed across runs; the commit renames it into place, a failure removes it.

use std::path::{Path, PathBuf};

use crate::digest::Digest;
use crate::error::{Error, Result};

/// A place that receives one blob's bytes.
pub trait Ingest: Send {
    /// The file the writer appends to.
    fn path(&self) -> &Path;
    /// How many bytes the file already holds (a download resumes after them, re-hashing
    /// them first).
    fn offset(&self) -> u64;
    /// Drop the bytes held: they did not verify.
    fn truncate(&mut self);
    /// The blob is complete and verified: make it available.
    fn commit(&mut self) -> Result<()>;
    /// The download failed; `bytes_wrong` when what was received proved wrong (an integrity
    /// failure), as opposed to a transfer that stopped.
    fn abort(&mut self, bytes_wrong: bool);
}

/// The blob cache's partial file for one blob (the caller holds its lock).
#[derive(Debug)]
pub struct PartialFile {
    path: PathBuf,
    held: u64,
}

impl PartialFile {
    /// The partial file at `path`, with whatever an earlier run left in it.
    pub fn open(path: &Path) -> Result<Self> {
        create_parent(path)?;
        let held = std::fs::metadata(path).map_or(0, |m| m.len());
        Ok(Self {
            path: path.to_path_buf(),
            held,
        })
    }
}

impl Ingest for PartialFile {
    fn path(&self) -> &Path {
        &self.path
    }

    fn offset(&self) -> u64 {
        self.held
    }

    fn truncate(&mut self) {
        let _ = std::fs::remove_file(&self.path);
        self.held = 0;
    }

    fn commit(&mut self) -> Result<()> {
        // Left where it is, verified: the cache moves it into place.
        Ok(())
    }

    fn abort(&mut self, bytes_wrong: bool) {
        // A stopped transfer keeps its bytes for the next try; wrong bytes never stay.
        if bytes_wrong {
            self.truncate();
        }
    }
}

/// A temporary file beside `destination`, renamed onto it by the commit.
#[derive(Debug)]
pub struct TempFile {
    temp: PathBuf,
    destination: PathBuf,
}

impl TempFile {
    /// A fresh temporary name for `digest` in `destination`'s directory.
    pub fn beside(destination: &Path, digest: &Digest) -> Result<Self> {
        let dir = create_parent(destination)?;
        let temp = dir.join(format!(".tmp-{}-{:08x}", digest.hex(), fastrand::u32(..)));
        Ok(Self {
            temp,
            destination: destination.to_path_buf(),
        })
    }
}

impl Ingest for TempFile {
    fn path(&self) -> &Path {
        &self.temp
    }

    fn offset(&self) -> u64 {
        0
    }

    fn truncate(&mut self) {
        let _ = std::fs::remove_file(&self.temp);
    }

    fn commit(&mut self) -> Result<()> {
        std::fs::rename(&self.temp, &self.destination).map_err(|source| {
            self.truncate();
            Error::Io {
                path: self.destination.clone(),
                source,
            }
        })
    }

    fn abort(&mut self, _bytes_wrong: bool) {
        self.truncate();
    }
}

/// Create the directory `path` lives in; return it.
fn create_parent(path: &Path) -> Result<PathBuf> {
    let dir = path.parent().unwrap_or(Path::new(".")).to_path_buf();
    std::fs::create_dir_all(&dir).map_err(|source| Error::Io {
        path: dir.clone(),
        source,
    })?;
    Ok(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_partial_file_keeps_a_stopped_transfer_and_drops_wrong_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("blobs/partial");
        let partial = PartialFile::open(&path).unwrap();
        assert_eq!(partial.offset(), 0);
        std::fs::write(&path, b"12345").unwrap();
        let mut partial = PartialFile::open(&path).unwrap();
        assert_eq!(partial.offset(), 5);
        partial.abort(false);
        assert_eq!(
            std::fs::read(&path).unwrap(),
            b"12345",
            "kept for the next try"
        );
        partial.abort(true);
        assert!(!path.exists(), "wrong bytes never stay");
        assert_eq!(partial.offset(), 0);
    }

    #[test]
    fn a_temp_file_is_renamed_by_the_commit_and_removed_by_an_abort() {
        let dir = tempfile::tempdir().unwrap();
        let destination = dir.path().join("sha256/abc");
        let digest = Digest::sha256_of(b"x");
        let mut temp = TempFile::beside(&destination, &digest).unwrap();
        assert_eq!(temp.offset(), 0);
        std::fs::write(temp.path(), b"x").unwrap();
        temp.commit().unwrap();
        assert_eq!(std::fs::read(&destination).unwrap(), b"x");

        let mut failed = TempFile::beside(&dir.path().join("sha256/def"), &digest).unwrap();
        std::fs::write(failed.path(), b"partial").unwrap();
        failed.abort(false);
        assert!(!failed.path().exists());
        assert!(!dir.path().join("sha256/def").exists());
    }
}
