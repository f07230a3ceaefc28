//! The layer applier under fuzzing: a tar stream applied into `root/` of a sandbox whose
//! `sentinel/` directory sits beside it. After every input the sandbox is compared with its
//! state before: nothing outside `root/` may appear, change, disappear or gain a hard link.

use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};

use acrpull::media_type::LayerCompression;
use acrpull::rootfs::{Applier, ApplyOptions, EarlyWriteback, PathResolution};
use acrpull::Digest;

/// Where the fuzz target keeps its sandbox (fixed, so corpus entries can name the sentinel).
pub const FUZZ_SANDBOX: &str = "/tmp/acrpull-fuzz-sandbox";

/// Limits small enough that bombs stop fast.
fn options(control: u8) -> ApplyOptions {
    ApplyOptions {
        max_uncompressed_bytes: 4 << 20,
        max_entries: 1000,
        max_extension_header: 64 << 10,
        // Bit 3: as root (owners, device nodes), when the process is root.
        rootless: control & 0b1000 == 0 || !is_root(),
        path_resolution: if control & 0b100 == 0 {
            PathResolution::Auto
        } else {
            PathResolution::UserspaceWalk
        },
        spill_dir: None,
        // Bit 5: the whiteout bookkeeping spills after every path (to an unnamed file in the
        // root), so whiteouts are checked against spilled runs.
        upper_paths_memory: if control & 0b10_0000 == 0 { 1 << 20 } else { 0 },
        // Bit 6: files handed to the early-writeback thread (made durable there).
        early_writeback: if control & 0b100_0000 == 0 {
            EarlyWriteback::Off
        } else {
            EarlyWriteback::Durable
        },
        // Bit 7: regular files are written by the applier itself, not the filler thread.
        fill_thread: control & 0b1000_0000 == 0,
    }
}

fn is_root() -> bool {
    fs::metadata("/proc/self").is_ok_and(|meta| meta.uid() == 0)
}

/// `root/` (emptied before each input) and `sentinel/` (host files that must never change).
#[derive(Debug)]
pub struct Sandbox {
    base: PathBuf,
    before: Snapshot,
}

type Snapshot = BTreeMap<PathBuf, String>;

impl Sandbox {
    /// Create (or reset) a sandbox at `base`.
    pub fn create(base: &Path) -> io::Result<Self> {
        if base.exists() {
            make_removable(base)?;
            fs::remove_dir_all(base)?;
        }
        fs::create_dir_all(base.join("root"))?;
        let sentinel = base.join("sentinel");
        fs::create_dir_all(sentinel.join("dir"))?;
        fs::write(sentinel.join("victim.txt"), b"host data")?;
        fs::write(sentinel.join("dir/victim.txt"), b"more host data")?;
        std::os::unix::fs::symlink("victim.txt", sentinel.join("link"))?;
        let before = snapshot_outside_root(base)?;
        Ok(Sandbox {
            base: base.to_path_buf(),
            before,
        })
    }

    /// The root directory layers are applied to.
    pub fn root(&self) -> PathBuf {
        self.base.join("root")
    }

    /// Empty `root/`, whatever modes the last input left.
    fn reset_root(&self) -> io::Result<()> {
        let root = self.root();
        make_removable(&root)?;
        fs::remove_dir_all(&root)?;
        fs::create_dir(&root)
    }

    /// Panic if anything outside `root/` differs from when the sandbox was created.
    fn assert_untouched(&self, input: &str) {
        let after = snapshot_outside_root(&self.base).expect("cannot list the sandbox");
        if after != self.before {
            let changed: Vec<_> = self
                .before
                .iter()
                .filter(|(path, state)| after.get(*path) != Some(*state))
                .map(|(path, _)| path)
                .chain(after.keys().filter(|path| !self.before.contains_key(*path)))
                .collect();
            panic!("applying {input} changed the sandbox outside the root: {changed:?}");
        }
    }
}

/// Every path under `base` except inside `root/`, with type, mode, owner, link count, mtime and
/// content (files) or target (symlinks).
fn snapshot_outside_root(base: &Path) -> io::Result<Snapshot> {
    let mut out = BTreeMap::new();
    let mut stack = vec![base.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in fs::read_dir(&dir)? {
            let path = entry?.path();
            let meta = fs::symlink_metadata(&path)?;
            let relative = path.strip_prefix(base).unwrap_or(&path).to_path_buf();
            let mut state = format!(
                "mode={:o} uid={} gid={} nlink={} mtime={}.{}",
                meta.mode(),
                meta.uid(),
                meta.gid(),
                meta.nlink(),
                meta.mtime(),
                meta.mtime_nsec()
            );
            if relative == Path::new("root") {
                // Its content is the layer's; only the directory itself must stay a directory.
                out.insert(relative, format!("dir={}", meta.is_dir()));
                continue;
            }
            if meta.file_type().is_symlink() {
                state += &format!(" -> {:?}", fs::read_link(&path)?);
            } else if meta.is_file() {
                state += &format!(" content={:?}", fs::read(&path)?);
            } else if meta.is_dir() {
                stack.push(path);
            }
            out.insert(relative, state);
        }
    }
    Ok(out)
}

/// Give the owner rwx on every directory under `path` (symlinks are not followed), so a tree
/// with 0000 or 0555 directories can be removed.
fn make_removable(path: &Path) -> io::Result<()> {
    let meta = fs::symlink_metadata(path)?;
    if !meta.is_dir() {
        return Ok(());
    }
    if meta.mode() & 0o700 != 0o700 {
        fs::set_permissions(path, fs::Permissions::from_mode(meta.mode() | 0o700))?;
    }
    for entry in fs::read_dir(path)? {
        make_removable(&entry?.path())?;
    }
    Ok(())
}

/// Apply one input: byte 0 chooses the mode, the rest is the layer blob.
///
/// Byte 0, bits 0-1: compression (0 and 3 none, 1 gzip, 2 zstd); bit 2: the userspace path
/// walk instead of `openat2`; bit 3: as root when possible; bit 4: apply the blob twice (the
/// second copy as an upper layer over the first, so whiteouts and replacements meet lower
/// content); bit 5: spill the whiteout bookkeeping after every path. Uncompressed blobs are given their true diff_id, so a well-formed layer succeeds;
/// compressed ones a wrong one (entries are applied before the digest is checked at EOF).
pub fn apply(sandbox: &Sandbox, data: &[u8]) {
    let Some((&control, blob)) = data.split_first() else {
        return;
    };
    let compression = match control & 0b11 {
        1 => LayerCompression::Gzip,
        2 => LayerCompression::Zstd,
        _ => LayerCompression::None,
    };
    let diff_id = Digest::sha256_of(blob);
    sandbox.reset_root().expect("cannot reset the sandbox root");
    let options = options(control);
    let max_entries = options.max_entries;
    let mut applier = Applier::new(&sandbox.root(), options).expect("cannot open the root");
    let times = if control & 0b1_0000 == 0 { 1 } else { 2 };
    for _ in 0..times {
        match applier.apply_layer(blob, compression, &diff_id) {
            Ok(stats) => {
                assert!(stats.entries <= max_entries);
                assert!(stats.uncompressed_bytes <= 4 << 20);
            }
            Err(_) => break,
        }
    }
    sandbox.assert_untouched(&format!("{} bytes", data.len()));
}
