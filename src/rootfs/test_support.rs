//! Test helpers: in-process tar building (including names the tar crate refuses to write),
//! a sandbox with a sentinel directory beside the root, and tree snapshots.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use super::{Applier, ApplyOptions, Error, LayerStats};
use crate::digest::Digest;
use crate::media_type::LayerCompression;

/// Builds a tar in memory. Names and link targets are written raw (ustar fields or PAX
/// records), so hostile values such as `../x` survive.
pub(crate) struct Tar {
    builder: tar::Builder<Vec<u8>>,
}

impl Tar {
    pub(crate) fn new() -> Self {
        Tar {
            builder: tar::Builder::new(Vec::new()),
        }
    }

    fn header(kind: tar::EntryType, name: &str, mode: u32, size: u64) -> tar::Header {
        let mut header = tar::Header::new_ustar();
        header.set_entry_type(kind);
        header.set_mode(mode);
        header.set_size(size);
        header.set_mtime(1_600_000_000);
        header.set_uid(0);
        header.set_gid(0);
        let short = &name.as_bytes()[..name.len().min(99)];
        set_raw(&mut header.as_mut_bytes()[..100], short);
        header
    }

    fn append(
        &mut self,
        mut header: tar::Header,
        name: &str,
        link: Option<&str>,
        data: &[u8],
    ) -> &mut Self {
        let mut pax: Vec<(&str, &[u8])> = Vec::new();
        if name.len() > 99 {
            pax.push(("path", name.as_bytes()));
        }
        if let Some(link) = link {
            if link.len() > 99 {
                pax.push(("linkpath", link.as_bytes()));
            } else {
                set_raw(&mut header.as_mut_bytes()[157..257], link.as_bytes());
            }
        }
        if !pax.is_empty() {
            self.builder.append_pax_extensions(pax).unwrap();
        }
        header.set_cksum();
        self.builder.append(&header, data).unwrap();
        self
    }

    pub(crate) fn file(&mut self, name: &str, data: &[u8]) -> &mut Self {
        self.file_mode(name, data, 0o644)
    }

    pub(crate) fn file_mode(&mut self, name: &str, data: &[u8], mode: u32) -> &mut Self {
        let header = Self::header(tar::EntryType::Regular, name, mode, data.len() as u64);
        self.append(header, name, None, data)
    }

    pub(crate) fn file_owned(
        &mut self,
        name: &str,
        data: &[u8],
        mode: u32,
        uid: u64,
        gid: u64,
    ) -> &mut Self {
        let mut header = Self::header(tar::EntryType::Regular, name, mode, data.len() as u64);
        header.set_uid(uid);
        header.set_gid(gid);
        self.append(header, name, None, data)
    }

    pub(crate) fn dir(&mut self, name: &str, mode: u32) -> &mut Self {
        let header = Self::header(tar::EntryType::Directory, name, mode, 0);
        self.append(header, name, None, &[])
    }

    pub(crate) fn dir_mtime(&mut self, name: &str, mode: u32, mtime: u64) -> &mut Self {
        let mut header = Self::header(tar::EntryType::Directory, name, mode, 0);
        header.set_mtime(mtime);
        self.append(header, name, None, &[])
    }

    pub(crate) fn symlink(&mut self, name: &str, target: &str) -> &mut Self {
        let header = Self::header(tar::EntryType::Symlink, name, 0o777, 0);
        self.append(header, name, Some(target), &[])
    }

    pub(crate) fn hardlink(&mut self, name: &str, target: &str) -> &mut Self {
        let header = Self::header(tar::EntryType::Link, name, 0o644, 0);
        self.append(header, name, Some(target), &[])
    }

    pub(crate) fn node(
        &mut self,
        name: &str,
        kind: tar::EntryType,
        major: u32,
        minor: u32,
    ) -> &mut Self {
        let mut header = Self::header(kind, name, 0o640, 0);
        header.set_device_major(major).unwrap();
        header.set_device_minor(minor).unwrap();
        self.append(header, name, None, &[])
    }

    /// A FIFO or device whose `devmajor`/`devminor` fields are all NUL bytes, as Python's
    /// `tarfile` writes them for FIFOs.
    pub(crate) fn node_without_device_numbers(
        &mut self,
        name: &str,
        kind: tar::EntryType,
    ) -> &mut Self {
        let mut header = Self::header(kind, name, 0o640, 0);
        header.as_mut_bytes()[329..345].fill(0);
        self.append(header, name, None, &[])
    }

    pub(crate) fn pax(&mut self, records: Vec<(&str, &[u8])>) -> &mut Self {
        self.builder.append_pax_extensions(records).unwrap();
        self
    }

    pub(crate) fn bytes(&mut self) -> Vec<u8> {
        let builder = std::mem::replace(&mut self.builder, tar::Builder::new(Vec::new()));
        builder.into_inner().unwrap()
    }
}

fn set_raw(field: &mut [u8], value: &[u8]) {
    field.fill(0);
    field[..value.len()].copy_from_slice(value);
}

/// A temporary directory holding `root/` (the rootfs) and `sentinel/` (host files that
/// hostile layers try to reach).
pub(crate) struct Sandbox {
    pub(crate) dir: tempfile::TempDir,
    pub(crate) applier: Applier,
}

impl Sandbox {
    /// Default options; `ACRPULL_TEST_PATH_WALK=1` forces the userspace resolver so the whole
    /// suite can be run against the fallback.
    pub(crate) fn new() -> Self {
        Self::with_options(ApplyOptions::default())
    }

    pub(crate) fn with_options(mut options: ApplyOptions) -> Self {
        if std::env::var_os("ACRPULL_TEST_PATH_WALK").is_some_and(|value| value == "1") {
            options.path_resolution = super::PathResolution::UserspaceWalk;
        }
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir(dir.path().join("root")).unwrap();
        let sentinel = dir.path().join("sentinel");
        fs::create_dir_all(sentinel.join("dir")).unwrap();
        fs::write(sentinel.join("victim.txt"), b"host data").unwrap();
        fs::write(sentinel.join("dir/victim.txt"), b"more host data").unwrap();
        fs::write(dir.path().join("beside.txt"), b"beside the root").unwrap();
        let applier = Applier::new(&dir.path().join("root"), options).unwrap();
        Sandbox { dir, applier }
    }

    pub(crate) fn root(&self) -> PathBuf {
        self.dir.path().join("root")
    }

    pub(crate) fn sentinel(&self) -> PathBuf {
        self.dir.path().join("sentinel")
    }

    /// Everything outside `root/`.
    pub(crate) fn outside(&self) -> BTreeMap<String, String> {
        let mut tree = snapshot(self.dir.path());
        tree.retain(|path, _| path != "root" && !path.starts_with("root/"));
        tree
    }

    pub(crate) fn apply(&mut self, tar: &[u8]) -> Result<LayerStats, Error> {
        self.applier
            .apply_layer(tar, LayerCompression::None, &Digest::sha256_of(tar))
    }

    /// Apply `tar` and check that nothing outside the root changed, whatever the outcome.
    pub(crate) fn apply_checked(&mut self, tar: &[u8]) -> Result<LayerStats, Error> {
        let before = self.outside();
        let result = self.apply(tar);
        assert_eq!(before, self.outside(), "files outside the root changed");
        result
    }

    pub(crate) fn read(&self, path: &str) -> Option<Vec<u8>> {
        fs::read(self.root().join(path)).ok()
    }

    pub(crate) fn exists(&self, path: &str) -> bool {
        fs::symlink_metadata(self.root().join(path)).is_ok()
    }

    pub(crate) fn mode(&self, path: &str) -> u32 {
        fs::symlink_metadata(self.root().join(path))
            .unwrap()
            .permissions()
            .mode()
            & 0o7777
    }
}

/// A listing of a tree: relative path → "type mode content-or-target". Directories are read
/// even when their mode forbids it for the caller's uid... only as far as the caller can.
pub(crate) fn snapshot(base: &Path) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    walk(base, base, &mut out);
    out
}

fn walk(base: &Path, dir: &Path, out: &mut BTreeMap<String, String>) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let relative = path
            .strip_prefix(base)
            .unwrap()
            .to_string_lossy()
            .into_owned();
        let Ok(meta) = fs::symlink_metadata(&path) else {
            continue;
        };
        let mode = meta.permissions().mode() & 0o7777;
        let kind = meta.file_type();
        let description = if kind.is_symlink() {
            format!("symlink -> {}", fs::read_link(&path).unwrap().display())
        } else if kind.is_dir() {
            walk(base, &path, out);
            format!("dir {mode:o} mtime {}", meta.mtime())
        } else if kind.is_file() {
            let content = fs::read(&path)
                .map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
                .unwrap_or_default();
            format!("file {mode:o} nlink {} {content:?}", meta.nlink())
        } else if kind.is_fifo() {
            format!("fifo {mode:o}")
        } else {
            format!("other {mode:o} rdev {}", meta.rdev())
        };
        out.insert(relative, description);
    }
}

pub(crate) fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}
