//! Changeset semantics on a real file system (docs/unpack.md section 1).

use std::fs;
use std::os::unix::fs::{FileTypeExt, MetadataExt};

use super::test_support::{is_root, snapshot, Sandbox, Tar};
use super::{ApplyOptions, Error, PathResolution};
use crate::digest::Digest;
use crate::media_type::LayerCompression;

fn rootless_options() -> ApplyOptions {
    ApplyOptions {
        rootless: true,
        ..ApplyOptions::default()
    }
}

#[test]
fn creates_files_dirs_symlinks_fifos_with_exact_modes() {
    let mut sandbox = Sandbox::new();
    let tar = Tar::new()
        .dir("etc", 0o755)
        .file_mode("etc/hosts", b"127.0.0.1", 0o640)
        .symlink("etc/abs", "/usr/lib")
        .symlink("etc/rel", "../x")
        .node("run/fifo", tar::EntryType::Fifo, 0, 0)
        .bytes();
    let stats = sandbox.apply_checked(&tar).unwrap();
    assert_eq!(stats.entries, 5);
    assert_eq!(sandbox.read("etc/hosts").unwrap(), b"127.0.0.1");
    assert_eq!(sandbox.mode("etc/hosts"), 0o640);
    assert_eq!(sandbox.mode("etc"), 0o755);
    assert_eq!(
        fs::read_link(sandbox.root().join("etc/abs"))
            .unwrap()
            .to_str(),
        Some("/usr/lib")
    );
    assert_eq!(
        fs::read_link(sandbox.root().join("etc/rel"))
            .unwrap()
            .to_str(),
        Some("../x")
    );
    assert!(fs::symlink_metadata(sandbox.root().join("run/fifo"))
        .unwrap()
        .file_type()
        .is_fifo());
    assert_eq!(sandbox.mode("run/fifo"), 0o640);
    assert_eq!(sandbox.mode("run"), 0o755, "implied parents are 0755");
}

#[test]
fn applier_can_move_to_a_blocking_thread() {
    fn assert_send<T: Send>() {}
    assert_send::<super::Applier>();
}

#[test]
fn rootless_dir_merge_replaces_the_recorded_owner() {
    let mut sandbox = Sandbox::with_options(rootless_options());
    let mut owned = Tar::new();
    owned.dir("d", 0o755);
    let mut lower = owned.bytes();
    // Give the directory header uid/gid 1000 and recompute its checksum.
    let mut header = tar::Header::from_byte_slice(&lower[..512]).clone();
    header.set_uid(1000);
    header.set_gid(1000);
    header.set_cksum();
    lower[..512].copy_from_slice(header.as_bytes());
    sandbox.apply_checked(&lower).unwrap();
    let mut buffer = [0u8; 64];
    let path = sandbox.root().join("d");
    if rustix::fs::lgetxattr(&path, "user.rootlesscontainers", &mut buffer[..]).is_err() {
        return; // no user xattrs on this file system
    }
    sandbox
        .apply_checked(&Tar::new().dir("d", 0o755).bytes())
        .unwrap();
    assert!(rustix::fs::lgetxattr(&path, "user.rootlesscontainers", &mut buffer[..]).is_err());
}

#[test]
fn whiteout_removes_lower_file_and_tree() {
    let mut sandbox = Sandbox::new();
    sandbox
        .apply_checked(
            &Tar::new()
                .file("a/f", b"1")
                .file("a/sub/g", b"2")
                .file("b", b"3")
                .bytes(),
        )
        .unwrap();
    let stats = sandbox
        .apply_checked(&Tar::new().file(".wh.b", b"").file("a/.wh.sub", b"").bytes())
        .unwrap();
    assert_eq!(stats.whiteouts, 2);
    assert!(!sandbox.exists("b") && !sandbox.exists("a/sub") && !sandbox.exists(".wh.b"));
    assert_eq!(sandbox.read("a/f").unwrap(), b"1");
}

#[test]
fn whiteout_after_same_layer_entry_keeps_the_entry() {
    let mut sandbox = Sandbox::new();
    sandbox
        .apply_checked(&Tar::new().file("d/lower", b"old").bytes())
        .unwrap();
    let tar = Tar::new()
        .file("f", b"new")
        .file(".wh.f", b"")
        .file("d/upper", b"u")
        .file(".wh.d", b"")
        .bytes();
    sandbox.apply_checked(&tar).unwrap();
    assert_eq!(sandbox.read("f").unwrap(), b"new");
    assert_eq!(sandbox.read("d/upper").unwrap(), b"u");
    assert!(
        !sandbox.exists("d/lower"),
        "lower children of an upper dir are whited out"
    );
}

#[test]
fn opaque_whiteout_clears_lower_content_whatever_its_position() {
    let mut sandbox = Sandbox::new();
    sandbox
        .apply_checked(
            &Tar::new()
                .file("d/old", b"1")
                .file("d/sub/old", b"2")
                .file("e/keep", b"3")
                .bytes(),
        )
        .unwrap();
    let tar = Tar::new()
        .file("d/sub/new", b"n")
        .file("d/.wh..wh..opq", b"")
        .file("d/later", b"l")
        .bytes();
    sandbox.apply_checked(&tar).unwrap();
    assert!(!sandbox.exists("d/old") && !sandbox.exists("d/sub/old"));
    assert_eq!(sandbox.read("d/sub/new").unwrap(), b"n");
    assert_eq!(sandbox.read("d/later").unwrap(), b"l");
    assert_eq!(sandbox.read("e/keep").unwrap(), b"3");
    assert!(!sandbox.exists("d/.wh..wh..opq"));
}

/// Lower content under `d`, `e` and `f`, then a layer whose own files under them are written
/// before and after its whiteout bookkeeping spills to disk, followed by a whiteout and an opaque
/// marker over them at the end of the layer.
fn whiteouts_after_spills(options: ApplyOptions) -> (Sandbox, super::LayerStats) {
    let mut sandbox = Sandbox::with_options(options);
    let lower = Tar::new()
        .file("d/lower", b"old")
        .file("d/sub/old", b"old")
        .file("e/lower", b"old")
        .file("e/sub/old", b"old")
        .file("f", b"old")
        .bytes();
    sandbox.apply_checked(&lower).unwrap();
    let mut upper = Tar::new();
    upper
        .file("f", b"new")
        .file("d/upper", b"u")
        .file("e/early", b"1");
    for index in 0..200 {
        upper.file(&format!("filler/dir{}/file{index}", index % 7), b"");
    }
    upper.file("d/sub/new", b"n").file("e/sub/late", b"2");
    upper
        .file(".wh.f", b"")
        .file(".wh.d", b"")
        .file("e/.wh..wh..opq", b"");
    let stats = sandbox.apply_checked(&upper.bytes()).unwrap();
    (sandbox, stats)
}

#[test]
fn whiteouts_spare_this_layers_paths_after_the_bookkeeping_spilled() {
    let tiny = ApplyOptions {
        upper_paths_memory: 2000,
        ..ApplyOptions::default()
    };
    let (sandbox, stats) = whiteouts_after_spills(tiny);
    assert!(stats.spilled_paths > 200, "spilled {}", stats.spilled_paths);
    assert_eq!(sandbox.read("f").unwrap(), b"new");
    assert_eq!(sandbox.read("d/upper").unwrap(), b"u");
    assert_eq!(sandbox.read("d/sub/new").unwrap(), b"n");
    assert_eq!(sandbox.read("e/early").unwrap(), b"1");
    assert_eq!(sandbox.read("e/sub/late").unwrap(), b"2");
    for lower in ["d/lower", "d/sub/old", "e/lower", "e/sub/old"] {
        assert!(!sandbox.exists(lower), "{lower} is lower content");
    }
    // The same tree as with everything in memory, and no spill file left in the root.
    let (in_memory, stats) = whiteouts_after_spills(ApplyOptions::default());
    assert_eq!(stats.spilled_paths, 0);
    let without_times = |root| {
        let tree = snapshot(root).into_iter();
        tree.map(|(path, description)| {
            (
                path,
                description
                    .split(" mtime ")
                    .next()
                    .unwrap_or_default()
                    .to_string(),
            )
        })
        .collect::<Vec<_>>()
    };
    assert_eq!(
        without_times(&sandbox.root()),
        without_times(&in_memory.root())
    );
}

#[test]
fn a_spill_directory_that_fails_is_an_io_error_of_the_layer() {
    let missing = tempfile::tempdir().unwrap().path().join("gone");
    let options = ApplyOptions {
        upper_paths_memory: 0,
        spill_dir: Some(missing),
        ..ApplyOptions::default()
    };
    let mut sandbox = Sandbox::with_options(options);
    let error = sandbox
        .apply_checked(&Tar::new().file("a/b", b"").bytes())
        .unwrap_err();
    assert!(!error.is_integrity());
    let Error::Io {
        action,
        path,
        source,
    } = &error
    else {
        panic!("{error:?}");
    };
    assert_eq!((*action, path.as_str()), ("keep track of", "a/b"));
    assert!(source.to_string().contains("gone"), "{source}");
}

#[test]
fn aufs_metadata_is_skipped() {
    let mut sandbox = Sandbox::new();
    let tar = Tar::new()
        .file(".wh..wh.aufs", b"")
        .file(".wh..wh.plnk/1234.5", b"x")
        .file("f", b"")
        .bytes();
    let stats = sandbox.apply_checked(&tar).unwrap();
    assert_eq!(stats.skipped, 2);
    assert!(!sandbox.exists(".wh..wh.plnk") && !sandbox.exists(".wh..wh.aufs"));
    let plnk_link = Tar::new().hardlink("h", ".wh..wh.plnk/1234.5").bytes();
    assert!(matches!(
        sandbox.apply_checked(&plnk_link),
        Err(Error::InvalidHardlink { .. })
    ));
}

#[test]
fn dir_over_dir_merges_and_takes_the_new_attributes() {
    let mut sandbox = Sandbox::new();
    sandbox
        .apply_checked(&Tar::new().dir("d", 0o700).file("d/old", b"1").bytes())
        .unwrap();
    sandbox
        .apply_checked(&Tar::new().dir_mtime("d", 0o751, 1234).bytes())
        .unwrap();
    assert_eq!(sandbox.read("d/old").unwrap(), b"1");
    assert_eq!(sandbox.mode("d"), 0o751);
    assert_eq!(
        fs::metadata(sandbox.root().join("d")).unwrap().mtime(),
        1234
    );
}

#[test]
fn replacements_remove_the_old_path_first() {
    let mut sandbox = Sandbox::new();
    let lower = Tar::new()
        .file("dir_to_file/x", b"1")
        .file("file_to_dir", b"2")
        .dir("real", 0o755)
        .symlink("link_to_dir", "real")
        .bytes();
    sandbox.apply_checked(&lower).unwrap();
    let upper = Tar::new()
        .file("dir_to_file", b"f")
        .dir("file_to_dir", 0o755)
        .dir("link_to_dir", 0o700)
        .bytes();
    sandbox.apply_checked(&upper).unwrap();
    assert_eq!(sandbox.read("dir_to_file").unwrap(), b"f");
    assert!(fs::symlink_metadata(sandbox.root().join("file_to_dir"))
        .unwrap()
        .is_dir());
    let link = fs::symlink_metadata(sandbox.root().join("link_to_dir")).unwrap();
    assert!(link.is_dir(), "a dir entry replaces a symlink to a dir");
    assert_eq!(sandbox.mode("real"), 0o755);
}

#[test]
fn hardlinks_to_same_and_lower_layers_share_the_inode() {
    let mut sandbox = Sandbox::new();
    sandbox
        .apply_checked(
            &Tar::new()
                .file("lower", b"L")
                .file("existing", b"E")
                .bytes(),
        )
        .unwrap();
    let tar = Tar::new()
        .file("same", b"S")
        .hardlink("same2", "same")
        .hardlink("lower2", "/lower")
        .hardlink("existing", "lower")
        .bytes();
    sandbox.apply_checked(&tar).unwrap();
    let inode = |path: &str| {
        fs::symlink_metadata(sandbox.root().join(path))
            .unwrap()
            .ino()
    };
    assert_eq!(inode("same"), inode("same2"));
    assert_eq!(inode("lower"), inode("lower2"));
    assert_eq!(
        inode("lower"),
        inode("existing"),
        "hardlink over an existing file replaces it"
    );
}

#[test]
fn overwriting_one_name_of_a_hardlinked_pair_breaks_the_link() {
    let mut sandbox = Sandbox::new();
    sandbox
        .apply_checked(&Tar::new().file("a", b"old").hardlink("b", "a").bytes())
        .unwrap();
    sandbox
        .apply_checked(&Tar::new().file("a", b"new").bytes())
        .unwrap();
    assert_eq!(sandbox.read("a").unwrap(), b"new");
    assert_eq!(sandbox.read("b").unwrap(), b"old");
}

fn readonly_dirs(mut sandbox: Sandbox) {
    let tar = Tar::new()
        .dir("ro", 0o555)
        .file("ro/f", b"1")
        .dir("none", 0o000)
        .file("none/g", b"2")
        .bytes();
    sandbox.apply_checked(&tar).unwrap();
    assert_eq!(sandbox.mode("ro"), 0o555);
    assert_eq!(sandbox.mode("none"), 0o000);
    let later = Tar::new()
        .file("ro/h", b"3")
        .file("none/i", b"4")
        .file("none/.wh.g", b"")
        .file("ro/.wh.f", b"")
        .bytes();
    sandbox.apply_checked(&later).unwrap();
    assert_eq!(sandbox.mode("ro"), 0o555, "mode restored after the layer");
    assert_eq!(sandbox.mode("none"), 0o000);
    fs::set_permissions(
        sandbox.root().join("none"),
        std::os::unix::fs::PermissionsExt::from_mode(0o700),
    )
    .unwrap();
    assert_eq!(sandbox.read("ro/h").unwrap(), b"3");
    assert_eq!(sandbox.read("none/i").unwrap(), b"4");
    assert!(!sandbox.exists("none/g") && !sandbox.exists("ro/f"));
}

#[test]
fn readonly_and_mode_0000_dirs_accept_children_in_same_and_later_layers() {
    readonly_dirs(Sandbox::new());
}

#[test]
fn readonly_dirs_work_in_rootless_mode() {
    readonly_dirs(Sandbox::with_options(rootless_options()));
}

#[test]
fn directory_mtimes_are_set_after_their_children() {
    let mut sandbox = Sandbox::new();
    let tar = Tar::new()
        .dir_mtime("d", 0o755, 1000)
        .dir_mtime("d/e", 0o755, 2000)
        .file("d/e/f", b"")
        .file("d/g", b"")
        .bytes();
    sandbox.apply_checked(&tar).unwrap();
    let mtime = |path: &str| fs::metadata(sandbox.root().join(path)).unwrap().mtime();
    assert_eq!(
        (mtime("d"), mtime("d/e"), mtime("d/e/f")),
        (1000, 2000, 1_600_000_000)
    );
}

/// Issue 16 item 8: empty (NUL-filled) device fields read as zero, as GNU tar and Go read
/// them; a FIFO's are never read.
#[test]
fn nul_filled_device_numbers_read_as_zero() {
    let tar = Tar::new()
        .node_without_device_numbers("run/fifo", tar::EntryType::Fifo)
        .node_without_device_numbers("dev/zeroes", tar::EntryType::Char)
        .bytes();
    let mut sandbox = Sandbox::new();
    sandbox.apply_checked(&tar).unwrap();
    assert!(fs::symlink_metadata(sandbox.root().join("run/fifo"))
        .unwrap()
        .file_type()
        .is_fifo());
    if is_root() {
        let meta = fs::symlink_metadata(sandbox.root().join("dev/zeroes")).unwrap();
        assert!(meta.file_type().is_char_device());
        assert_eq!(meta.rdev(), 0);
    }
}

#[test]
fn device_nodes_are_created_as_root_and_skipped_with_one_warning_rootless() {
    let tar = Tar::new()
        .node("dev/null", tar::EntryType::Char, 1, 3)
        .node("dev/loop0", tar::EntryType::Block, 7, 0)
        .bytes();
    let mut rootless = Sandbox::with_options(rootless_options());
    let stats = rootless.apply_checked(&tar).unwrap();
    assert_eq!(stats.skipped, 2);
    assert!(!rootless.exists("dev/null"));
    assert_eq!(
        rootless.applier.warnings().len(),
        1,
        "{:?}",
        rootless.applier.warnings()
    );
    if is_root() {
        let mut sandbox = Sandbox::new();
        sandbox.apply_checked(&tar).unwrap();
        let meta = fs::symlink_metadata(sandbox.root().join("dev/null")).unwrap();
        assert!(meta.file_type().is_char_device());
        assert_eq!(meta.rdev(), rustix::fs::makedev(1, 3));
        assert!(sandbox.applier.warnings().is_empty());
    }
}

#[test]
fn owners_and_setuid_bits_are_kept() {
    let tar = Tar::new()
        .file_owned("bin/userprog", b"#!", 0o4755, 1000, 1000)
        .dir("tmp", 0o1777)
        .bytes();
    let mut sandbox = Sandbox::new();
    sandbox.apply_checked(&tar).unwrap();
    assert_eq!(
        sandbox.mode("bin/userprog"),
        0o4755,
        "chmod after chown keeps setuid"
    );
    assert_eq!(sandbox.mode("tmp"), 0o1777);
    let meta = fs::metadata(sandbox.root().join("bin/userprog")).unwrap();
    if is_root() {
        assert_eq!((meta.uid(), meta.gid()), (1000, 1000));
    }
}

/// Files created with their final mode (no fchmod) and those that still need one, with the
/// early writeback on, root and rootless alike.
#[test]
fn every_file_mode_comes_out_exact() {
    let modes = [
        0o644, 0o755, 0o600, 0o666, 0o777, 0o444, 0o400, 0o4755, 0o2711, 0o1644,
    ];
    let mut tar = Tar::new();
    for mode in modes {
        // Large enough for the writeback thread too.
        tar.file_mode(&format!("m/{mode:o}"), &vec![1; 300 * 1024], mode);
    }
    let tar = tar.bytes();
    for rootless in [false, true] {
        if !rootless && !is_root() {
            continue;
        }
        let options = ApplyOptions {
            early_writeback: super::EarlyWriteback::Durable,
            ..if rootless {
                rootless_options()
            } else {
                ApplyOptions::default()
            }
        };
        let mut sandbox = Sandbox::with_options(options);
        sandbox.apply_checked(&tar).unwrap();
        for mode in modes {
            assert_eq!(
                sandbox.mode(&format!("m/{mode:o}")),
                mode,
                "mode {mode:o} (rootless: {rootless})"
            );
            assert_eq!(
                sandbox.read(&format!("m/{mode:o}")).unwrap().len(),
                300 * 1024
            );
        }
    }
}

#[test]
fn rootless_records_owners_in_the_rootlesscontainers_xattr() {
    let mut sandbox = Sandbox::with_options(rootless_options());
    let tar = Tar::new()
        .file_owned("f", b"x", 0o644, 1000, 1000)
        .file("root_owned", b"")
        .bytes();
    sandbox.apply_checked(&tar).unwrap();
    let mut buffer = [0u8; 64];
    let path = sandbox.root().join("f");
    match rustix::fs::lgetxattr(&path, "user.rootlesscontainers", &mut buffer[..]) {
        Ok(length) => assert_eq!(&buffer[..length], &[0x08, 0xe8, 0x07, 0x10, 0xe8, 0x07]),
        Err(rustix::io::Errno::NOTSUP) => assert!(!sandbox.applier.warnings().is_empty()),
        Err(errno) => panic!("lgetxattr: {errno}"),
    }
    let root_owned = sandbox.root().join("root_owned");
    assert!(
        rustix::fs::lgetxattr(&root_owned, "user.rootlesscontainers", &mut buffer[..]).is_err()
    );
}

#[test]
fn xattrs_are_applied_and_host_specific_ones_dropped() {
    let mut sandbox = Sandbox::new();
    let tar = Tar::new()
        .pax(vec![
            ("SCHILY.xattr.user.comment", &b"hi"[..]),
            ("SCHILY.xattr.trusted.evil", b"x"),
            ("SCHILY.xattr.security.selinux", b"y"),
        ])
        .file("f", b"")
        .bytes();
    sandbox.apply_checked(&tar).unwrap();
    let mut buffer = [0u8; 64];
    let path = sandbox.root().join("f");
    if let Ok(length) = rustix::fs::lgetxattr(&path, "user.comment", &mut buffer[..]) {
        assert_eq!(&buffer[..length], b"hi");
    }
    assert!(rustix::fs::lgetxattr(&path, "trusted.evil", &mut buffer[..]).is_err());
    assert!(sandbox
        .applier
        .warnings()
        .iter()
        .any(|warning| warning.contains("trusted.evil")));
}

#[test]
fn gzip_and_zstd_layers_verify_the_uncompressed_diff_id() {
    use std::io::Write;
    let tar = Tar::new().file("a", b"A").bytes();
    let diff_id = Digest::sha256_of(&tar);
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    encoder.write_all(&tar[..700]).unwrap();
    let mut gzip = encoder.finish().unwrap();
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    encoder.write_all(&tar[700..]).unwrap();
    gzip.extend(encoder.finish().unwrap());
    let mut sandbox = Sandbox::new();
    let stats = sandbox
        .applier
        .apply_layer(&gzip[..], LayerCompression::Gzip, &diff_id)
        .unwrap();
    assert_eq!(
        (stats.uncompressed_bytes, stats.compressed_bytes),
        (tar.len() as u64, gzip.len() as u64)
    );
    let zstd = zstd::encode_all(&tar[..], 3).unwrap();
    sandbox
        .applier
        .apply_layer(&zstd[..], LayerCompression::Zstd, &diff_id)
        .unwrap();
    assert_eq!(sandbox.read("a").unwrap(), b"A");
}

#[test]
fn trailing_junk_after_the_tar_is_drained_and_hashed() {
    let mut tar = Tar::new().file("a", b"A").bytes();
    tar.extend(vec![0u8; 4096]);
    tar.extend(b"junk");
    let mut sandbox = Sandbox::new();
    let stats = sandbox.apply_checked(&tar).unwrap();
    assert_eq!(stats.uncompressed_bytes, tar.len() as u64);
    let without_junk = Digest::sha256_of(&tar[..tar.len() - 4]);
    let error = sandbox
        .applier
        .apply_layer(&tar[..], LayerCompression::None, &without_junk)
        .unwrap_err();
    assert!(matches!(error, Error::DiffIdMismatch { .. }) && error.is_integrity());
}

#[test]
fn long_names_via_pax_are_applied() {
    let long = format!("{}/file", ["component-of-a-long-path"; 24].join("/"));
    let mut sandbox = Sandbox::new();
    sandbox
        .apply_checked(&Tar::new().file(&long, b"deep").symlink("l", &long).bytes())
        .unwrap();
    assert!(long.len() > 600);
    assert_eq!(sandbox.read(&long).unwrap(), b"deep");
    assert_eq!(
        fs::read_link(sandbox.root().join("l")).unwrap().to_str(),
        Some(long.as_str())
    );
}

#[test]
fn root_entry_must_be_a_directory() {
    let mut sandbox = Sandbox::new();
    sandbox
        .apply_checked(&Tar::new().dir("./", 0o700).file("a", b"").bytes())
        .unwrap();
    assert_eq!(sandbox.mode(""), 0o755, "root metadata is ignored");
    let error = sandbox
        .apply_checked(&Tar::new().symlink(".", "/etc").bytes())
        .unwrap_err();
    assert!(matches!(error, Error::RootTypeChange { .. }));
}

#[test]
fn userspace_walk_resolves_like_openat2() {
    let options = ApplyOptions {
        path_resolution: PathResolution::UserspaceWalk,
        ..ApplyOptions::default()
    };
    for mut sandbox in [Sandbox::new(), Sandbox::with_options(options.clone())] {
        let lower = Tar::new()
            .dir("usr/lib", 0o755)
            .symlink("lib", "usr/lib")
            .symlink("alias", "/x/target")
            .dir("x/target", 0o755)
            .symlink("up", "../../..")
            .bytes();
        sandbox.apply_checked(&lower).unwrap();
        let upper = Tar::new()
            .file("lib/new.so", b"so")
            .file("alias/file", b"f")
            .file("up/escaped", b"e")
            .bytes();
        sandbox.apply_checked(&upper).unwrap();
        assert_eq!(sandbox.read("usr/lib/new.so").unwrap(), b"so");
        assert_eq!(sandbox.read("x/target/file").unwrap(), b"f");
        assert_eq!(
            sandbox.read("escaped").unwrap(),
            b"e",
            "`..` stops at the root"
        );
    }
    assert!(!Sandbox::with_options(options).applier.uses_openat2());
}

#[test]
fn too_many_entries_is_an_integrity_error() {
    let options = ApplyOptions {
        max_entries: 2,
        ..ApplyOptions::default()
    };
    let mut sandbox = Sandbox::with_options(options);
    let error = sandbox
        .apply_checked(
            &Tar::new()
                .file("a", b"")
                .file("b", b"")
                .file("c", b"")
                .bytes(),
        )
        .unwrap_err();
    assert!(matches!(error, Error::TooManyEntries { limit: 2 }) && error.is_integrity());
}

#[test]
fn paths_longer_than_path_max_are_applied_component_by_component() {
    let component = "c".repeat(250);
    let deep = format!("{}/file", vec![component.as_str(); 20].join("/"));
    assert!(deep.len() > 4096);
    let mut sandbox = Sandbox::new();
    sandbox
        .apply_checked(&Tar::new().file(&deep, b"deep").bytes())
        .unwrap();
    sandbox
        .apply_checked(
            &Tar::new()
                .file(&format!("{deep}2"), b"2")
                .hardlink("h", &deep)
                .bytes(),
        )
        .unwrap();
    assert_eq!(sandbox.read("h").unwrap(), b"deep");
}

#[test]
#[ignore = "measurement, run by hand"]
fn measure_pax_bomb_and_many_files() {
    use std::io::Write;
    let comment = vec![b'a'; 256 << 20];
    let tar = Tar::new()
        .pax(vec![("comment", &comment[..])])
        .file("f", b"")
        .bytes();
    drop(comment);
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    encoder.write_all(&tar).unwrap();
    let gzip = encoder.finish().unwrap();
    let diff_id = Digest::sha256_of(&tar);
    drop(tar);
    let mut sandbox = Sandbox::new();
    fs::write("/proc/self/clear_refs", "5").unwrap();
    let start = std::time::Instant::now();
    let error = sandbox
        .applier
        .apply_layer(&gzip[..], LayerCompression::Gzip, &diff_id)
        .unwrap_err();
    eprintln!(
        "pax bomb ({} bytes gz): {error} after {:?}",
        gzip.len(),
        start.elapsed()
    );
    let status = fs::read_to_string("/proc/self/status").unwrap();
    eprintln!(
        "{}",
        status
            .lines()
            .filter(|line| line.starts_with("VmHWM") || line.starts_with("VmRSS"))
            .collect::<Vec<_>>()
            .join(" ")
    );
    let mut many = Tar::new();
    let data = vec![b'x'; 4096];
    for index in 0..20_000 {
        many.file(&format!("d{}/f{index}", index % 100), &data);
    }
    let many = many.bytes();
    let start = std::time::Instant::now();
    let stats = sandbox.apply(&many).unwrap();
    eprintln!(
        "20000 x 4 KiB files: {} entries, {} bytes in {:?}",
        stats.entries,
        stats.uncompressed_bytes,
        start.elapsed()
    );
}

#[test]
fn files_in_a_setgid_directory_get_the_owner_the_layer_names() {
    // New files inherit a setgid directory's group: the applier must still chown them to
    // the owner in the layer (it only skips a chown that would change nothing).
    if !is_root() {
        return;
    }
    let mut sandbox = Sandbox::new();
    let shared = sandbox.root().join("shared");
    fs::create_dir(&shared).unwrap();
    std::os::unix::fs::chown(&shared, Some(0), Some(5)).unwrap();
    let mode = <fs::Permissions as std::os::unix::fs::PermissionsExt>::from_mode(0o2775);
    fs::set_permissions(&shared, mode).unwrap();
    let tar = Tar::new()
        .file_owned("shared/root-group", b"a", 0o644, 0, 0)
        .file_owned("shared/dir-group", b"b", 0o644, 0, 5)
        .file_owned("plain/other", b"c", 0o644, 7, 8)
        .file_owned("plain/root", b"d", 0o644, 0, 0)
        .bytes();
    sandbox.apply_checked(&tar).unwrap();
    let owner = |path: &str| {
        let meta = fs::metadata(sandbox.root().join(path)).unwrap();
        (meta.uid(), meta.gid())
    };
    assert_eq!(owner("shared/root-group"), (0, 0));
    assert_eq!(owner("shared/dir-group"), (0, 5));
    assert_eq!(owner("plain/other"), (7, 8));
    assert_eq!(owner("plain/root"), (0, 0));
}

/// A layer whose inflater ran ahead (its output spilled to the staging area) is checked like
/// any other: its entries apply, and a wrong diff_id fails the layer after they did.
#[test]
fn a_layer_inflated_ahead_applies_and_its_diff_id_is_still_checked() {
    use flate2::{write::GzEncoder, Compression};
    use std::io::Write as _;
    let spill = tempfile::tempdir().unwrap();
    let mut tar = Tar::new();
    for index in 0..40 {
        let data = vec![index as u8; 100_000];
        tar.file(&format!("data/file{index}"), &data);
    }
    let tar = tar.bytes();
    let mut encoder = GzEncoder::new(Vec::new(), Compression::fast());
    encoder.write_all(&tar).unwrap();
    let blob = encoder.finish().unwrap();
    let start = || {
        super::Inflating::start(
            std::io::Cursor::new(blob.clone()),
            LayerCompression::Gzip,
            crate::digest::Algorithm::Sha256,
            1 << 30,
            Some(super::SpillArea::new(spill.path().to_path_buf())),
        )
        .unwrap()
    };
    let (ahead, wrong) = (start(), start());
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while ahead.spilled() == 0 {
        assert!(std::time::Instant::now() < deadline, "nothing spilled");
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    let mut sandbox = Sandbox::new();
    sandbox
        .applier
        .apply_inflating(ahead, &Digest::sha256_of(&tar))
        .unwrap();
    assert_eq!(sandbox.read("data/file39").unwrap(), vec![39u8; 100_000]);
    let mut other = Sandbox::new();
    let error = other
        .applier
        .apply_inflating(wrong, &Digest::sha256_of(b"another layer"))
        .unwrap_err();
    assert!(matches!(error, Error::DiffIdMismatch { .. }), "{error}");
}

/// Peak RSS of applying one layer of 1,000,000 empty files in 1,000 directories that ends with
/// an opaque marker in its first directory and a whiteout of a file in its last (issue 19,
/// "Scale"). `ACRPULL_MEASURE_DIR` (default `/var/tmp`) holds the tar and the root, which are
/// kept (the path is printed: move it away, the tree has a million inodes);
/// `ACRPULL_UPPER_MEMORY` sets [`ApplyOptions::upper_paths_memory`] (`18446744073709551615`:
/// never spill, the unbounded set this replaced) and `ACRPULL_SPILL_DIR` the spill directory.
#[test]
#[ignore = "measurement, run by hand"]
fn measure_rss_of_a_million_file_layer() {
    use std::io::Write;
    let base = std::env::var_os("ACRPULL_MEASURE_DIR").unwrap_or("/var/tmp".into());
    let work = tempfile::Builder::new()
        .prefix("acrpull-upper-")
        .tempdir_in(base)
        .unwrap()
        .keep();
    eprintln!(
        "work directory (move it away afterwards): {}",
        work.display()
    );
    let tar_path = work.join("layer.tar");
    let mut builder = tar::Builder::new(std::io::BufWriter::new(
        fs::File::create(&tar_path).unwrap(),
    ));
    let mut append = |kind, name: String| {
        let mut header = tar::Header::new_ustar();
        header.set_entry_type(kind);
        header.set_mode(if kind == tar::EntryType::Directory {
            0o755
        } else {
            0o644
        });
        header.set_size(0);
        header.set_mtime(1_600_000_000);
        header.set_uid(0);
        header.set_gid(0);
        header.set_path(name).unwrap();
        header.set_cksum();
        builder.append(&header, std::io::empty()).unwrap();
    };
    for dir in 0..1000 {
        append(tar::EntryType::Directory, format!("usr/d{dir:03}/"));
        for file in 0..1000 {
            append(tar::EntryType::Regular, format!("usr/d{dir:03}/f{file}"));
        }
    }
    // Over paths spilled early in the layer, and over the last ones, still in memory.
    append(tar::EntryType::Regular, "usr/d000/.wh..wh..opq".into());
    append(tar::EntryType::Regular, "usr/d999/.wh.f0".into());
    builder.into_inner().unwrap().flush().unwrap();
    let tar_file = fs::File::open(&tar_path).unwrap();
    let mut hashing = crate::digest::HashingReader::new(tar_file, crate::digest::Algorithm::Sha256);
    std::io::copy(&mut hashing, &mut std::io::sink()).unwrap();
    let diff_id = hashing.finish().0;
    let root = work.join("root");
    fs::create_dir(&root).unwrap();
    let mut options = ApplyOptions {
        spill_dir: std::env::var_os("ACRPULL_SPILL_DIR").map(Into::into),
        ..ApplyOptions::default()
    };
    if let Some(budget) = std::env::var_os("ACRPULL_UPPER_MEMORY") {
        options.upper_paths_memory = budget.to_str().unwrap().parse().unwrap();
    }
    let mut applier = super::Applier::new(&root, options).unwrap();
    fs::write("/proc/self/clear_refs", "5").unwrap();
    let start = std::time::Instant::now();
    let stats = applier
        .apply_layer(
            fs::File::open(&tar_path).unwrap(),
            LayerCompression::None,
            &diff_id,
        )
        .unwrap();
    let elapsed = start.elapsed();
    let status = fs::read_to_string("/proc/self/status").unwrap();
    let memory: Vec<&str> = status
        .lines()
        .filter(|line| line.starts_with("VmHWM") || line.starts_with("VmRSS"))
        .collect();
    eprintln!(
        "{} entries, {} spilled paths, {elapsed:?}; {}",
        stats.entries,
        stats.spilled_paths,
        memory.join(" ")
    );
    assert!(root.join("usr/d999/f0").exists());
    assert_eq!(fs::read_dir(root.join("usr/d000")).unwrap().count(), 1000);
}

/// Regular files of every size and history in one layer: empty, read-only, set-id, larger
/// than a filler batch, hardlinked, written twice, replaced by a directory, and more files
/// than a batch holds.
fn regular_file_histories() -> Vec<u8> {
    let pattern = |seed: u8, length: usize| -> Vec<u8> {
        (0..length)
            .map(|index| (index % 251) as u8 ^ seed)
            .collect()
    };
    let mut tar = Tar::new();
    tar.file("empty", b"")
        .file_mode("read-only", b"read only", 0o444)
        .file_mode("setuid", b"#!/bin/sh", 0o4755)
        .file("big", &pattern(1, (3 << 20) + 5))
        .hardlink("big-link", "big")
        .file("written-twice", &pattern(2, 1 << 20))
        .file("written-twice", b"second")
        .file("becomes-dir", b"first a file")
        .dir("becomes-dir", 0o755)
        .file("becomes-dir/inside", b"then a directory")
        .dir("many", 0o755);
    for index in 0..100 {
        tar.file(&format!("many/{index}"), index.to_string().as_bytes());
    }
    tar.bytes()
}

#[test]
fn the_filler_thread_gives_the_same_tree_as_the_applier_alone() {
    let tar = regular_file_histories();
    let trees = [true, false].map(|fill_thread| {
        let mut sandbox = Sandbox::with_options(ApplyOptions {
            fill_thread,
            ..ApplyOptions::default()
        });
        sandbox.apply_checked(&tar).unwrap();
        let mut tree = snapshot(&sandbox.root());
        for (path, description) in &mut tree {
            let meta = fs::symlink_metadata(sandbox.root().join(path)).unwrap();
            description.push_str(&format!(" mtime {}", meta.mtime()));
        }
        tree
    });
    let differing: Vec<_> = trees[0]
        .iter()
        .filter(|(path, description)| trees[1].get(*path) != Some(description))
        .map(|(path, _)| path)
        .collect();
    assert!(differing.is_empty(), "differing: {differing:?}");
    assert_eq!(trees[0].len(), trees[1].len());
    let tree = &trees[0];
    assert!(
        tree["big"].starts_with("file 644 nlink 2 "),
        "{}",
        tree["big"]
    );
    assert!(
        tree["big"].ends_with(" mtime 1600000000"),
        "{}",
        tree["big"]
    );
    assert!(tree["written-twice"].contains("\"second\""));
    assert!(tree["read-only"].starts_with("file 444 "));
    assert_eq!(
        tree.keys().filter(|path| path.starts_with("many/")).count(),
        100
    );
    if is_root() {
        assert!(
            tree["setuid"].starts_with("file 4755 "),
            "{}",
            tree["setuid"]
        );
    }
}
