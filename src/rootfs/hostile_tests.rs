//! One test per escape class of docs/unpack.md section 3.2, each named after what it proves. Every
//! test applies through `apply_checked`, which fails if anything beside the root changed.

use std::fs;
use std::io::Write;

use super::test_support::{Sandbox, Tar};
use super::{ApplyOptions, Error};
use crate::digest::Digest;
use crate::media_type::LayerCompression;

fn sentinel(sandbox: &Sandbox) -> String {
    sandbox.sentinel().to_string_lossy().into_owned()
}

#[test]
fn dotdot_entry_names_are_rejected() {
    let mut sandbox = Sandbox::new();
    for name in [
        "../evil-sibling.txt",
        &format!("{}tmp/evil", "../".repeat(40)),
        "a/../../b",
    ] {
        let error = sandbox
            .apply_checked(&Tar::new().file(name, b"x").bytes())
            .unwrap_err();
        assert!(
            matches!(error, Error::UnsafePath { .. }) && error.is_integrity(),
            "{name}: {error}"
        );
    }
}

#[test]
fn absolute_entry_names_land_inside_the_root() {
    let mut sandbox = Sandbox::new();
    let outside = format!("{}/pwned-abs.txt", sentinel(&sandbox));
    sandbox
        .apply_checked(
            &Tar::new()
                .file("/abs.txt", b"a")
                .file(&outside, b"b")
                .bytes(),
        )
        .unwrap();
    assert_eq!(sandbox.read("abs.txt").unwrap(), b"a");
    assert_eq!(sandbox.read(outside.trim_start_matches('/')).unwrap(), b"b");
}

#[test]
fn symlink_parent_in_same_layer_resolves_inside_the_root() {
    let mut sandbox = Sandbox::new();
    let tar = Tar::new()
        .symlink("esc", &sentinel(&sandbox))
        .file("esc/pwned.txt", b"x")
        .dir("sub", 0o755)
        .symlink("sub/up", "../..")
        .file("sub/up/rel.txt", b"y")
        .bytes();
    sandbox.apply_checked(&tar).unwrap();
    let inside = format!("{}/pwned.txt", sentinel(&sandbox));
    assert_eq!(sandbox.read(inside.trim_start_matches('/')).unwrap(), b"x");
    assert_eq!(sandbox.read("rel.txt").unwrap(), b"y");
}

#[test]
fn symlink_planted_by_lower_layer_resolves_inside_the_root() {
    let mut sandbox = Sandbox::new();
    sandbox
        .apply_checked(
            &Tar::new()
                .symlink("esc", &sentinel(&sandbox))
                .symlink("rel", "../../../..")
                .bytes(),
        )
        .unwrap();
    sandbox
        .apply_checked(
            &Tar::new()
                .file("esc/pwned.txt", b"x")
                .file("rel/sentinel/victim.txt", b"y")
                .bytes(),
        )
        .unwrap();
    assert_eq!(sandbox.read("sentinel/victim.txt").unwrap(), b"y");
}

#[test]
fn root_dot_symlink_is_refused() {
    let mut sandbox = Sandbox::new();
    let error = sandbox
        .apply_checked(
            &Tar::new()
                .symlink("./", &sentinel(&sandbox))
                .file("x", b"")
                .bytes(),
        )
        .unwrap_err();
    assert!(matches!(error, Error::RootTypeChange { .. }));
    assert!(fs::symlink_metadata(sandbox.root()).unwrap().is_dir());
}

#[test]
fn file_over_symlink_replaces_the_link_not_its_target() {
    let mut sandbox = Sandbox::new();
    let victim = format!("{}/victim.txt", sentinel(&sandbox));
    sandbox
        .apply_checked(&Tar::new().symlink("victim", &victim).bytes())
        .unwrap();
    sandbox
        .apply_checked(&Tar::new().file("victim", b"overwritten?").bytes())
        .unwrap();
    assert_eq!(sandbox.read("victim").unwrap(), b"overwritten?");
    assert_eq!(fs::read(&victim).unwrap(), b"host data");
}

#[test]
fn dir_over_symlink_does_not_chmod_the_target() {
    let mut sandbox = Sandbox::new();
    sandbox
        .apply_checked(
            &Tar::new()
                .symlink("d", &format!("{}/dir", sentinel(&sandbox)))
                .bytes(),
        )
        .unwrap();
    sandbox
        .apply_checked(&Tar::new().dir("d", 0o777).bytes())
        .unwrap();
    assert!(fs::symlink_metadata(sandbox.root().join("d"))
        .unwrap()
        .is_dir());
    assert_eq!(sandbox.mode("d"), 0o777);
}

#[test]
fn hardlink_escapes_are_refused() {
    let mut sandbox = Sandbox::new();
    let victim = format!("{}/victim.txt", sentinel(&sandbox));
    let dotdot = Tar::new().hardlink("hl", "../sentinel/victim.txt").bytes();
    assert!(matches!(
        sandbox.apply_checked(&dotdot),
        Err(Error::UnsafePath { .. })
    ));
    let absolute = Tar::new().hardlink("hl", &victim).bytes();
    assert!(matches!(
        sandbox.apply_checked(&absolute),
        Err(Error::InvalidHardlink { .. })
    ));
    let via_dir = Tar::new()
        .symlink("d", &sentinel(&sandbox))
        .hardlink("hl", "d/victim.txt")
        .bytes();
    assert!(matches!(
        sandbox.apply_checked(&via_dir),
        Err(Error::InvalidHardlink { .. })
    ));
    assert!(!sandbox.exists("hl"));
}

#[test]
fn hardlink_to_symlink_links_the_symlink_itself() {
    let mut sandbox = Sandbox::new();
    let victim = format!("{}/victim.txt", sentinel(&sandbox));
    sandbox
        .apply_checked(&Tar::new().symlink("l", &victim).bytes())
        .unwrap();
    sandbox
        .apply_checked(&Tar::new().hardlink("hl", "l").bytes())
        .unwrap();
    let link = fs::symlink_metadata(sandbox.root().join("hl")).unwrap();
    assert!(link.file_type().is_symlink());
}

#[test]
fn hardlink_to_directory_is_refused() {
    let mut sandbox = Sandbox::new();
    let error = sandbox
        .apply_checked(&Tar::new().dir("d", 0o755).hardlink("hl", "d").bytes())
        .unwrap_err();
    assert!(matches!(error, Error::InvalidHardlink { .. }));
}

#[test]
fn whiteouts_naming_dot_or_dotdot_are_rejected() {
    let mut sandbox = Sandbox::new();
    sandbox
        .apply_checked(&Tar::new().file("sub/keep", b"k").bytes())
        .unwrap();
    for name in [".wh.", ".wh..", ".wh...", "sub/.wh...", "sub/.wh.."] {
        let error = sandbox
            .apply_checked(&Tar::new().file(name, b"").bytes())
            .unwrap_err();
        assert!(
            matches!(error, Error::InvalidWhiteout { .. }),
            "{name}: {error}"
        );
    }
    assert_eq!(sandbox.read("sub/keep").unwrap(), b"k");
}

#[test]
fn whiteout_and_opaque_through_symlink_stay_inside_the_root() {
    let mut sandbox = Sandbox::new();
    sandbox
        .apply_checked(
            &Tar::new()
                .symlink("lnk", &format!("{}/dir", sentinel(&sandbox)))
                .bytes(),
        )
        .unwrap();
    sandbox
        .apply_checked(
            &Tar::new()
                .file("lnk/.wh.victim.txt", b"")
                .file("lnk/.wh..wh..opq", b"")
                .bytes(),
        )
        .unwrap();
    assert!(sandbox.exists("lnk"));
}

#[test]
fn whiteout_removes_the_symlink_not_its_target() {
    let mut sandbox = Sandbox::new();
    sandbox
        .apply_checked(
            &Tar::new()
                .symlink("lnk", &format!("{}/dir", sentinel(&sandbox)))
                .symlink("top", &sentinel(&sandbox))
                .bytes(),
        )
        .unwrap();
    sandbox
        .apply_checked(&Tar::new().file(".wh.lnk", b"").file(".wh.top", b"").bytes())
        .unwrap();
    assert!(!sandbox.exists("lnk") && !sandbox.exists("top"));
}

#[test]
fn whiteout_with_dotdot_path_is_rejected_before_removal() {
    let mut sandbox = Sandbox::new();
    let error = sandbox
        .apply_checked(&Tar::new().file("../.wh.sentinel", b"").bytes())
        .unwrap_err();
    assert!(matches!(error, Error::UnsafePath { .. }));
}

#[test]
fn implied_parents_are_created_inside_the_root() {
    let mut sandbox = Sandbox::new();
    let tar = Tar::new()
        .symlink("esc", &sentinel(&sandbox))
        .file("esc/sub/deep.txt", b"d")
        .bytes();
    sandbox.apply_checked(&tar).unwrap();
    let inside = format!("{}/sub/deep.txt", sentinel(&sandbox));
    assert_eq!(sandbox.read(inside.trim_start_matches('/')).unwrap(), b"d");
}

#[test]
fn pax_header_bomb_stops_at_the_extension_header_limit() {
    let mut sandbox = Sandbox::new();
    let comment = vec![b'a'; 4 << 20];
    let tar = Tar::new()
        .pax(vec![("comment", &comment[..])])
        .file("f", b"")
        .bytes();
    let error = sandbox.apply_checked(&tar).unwrap_err();
    assert!(
        matches!(error, Error::ExtensionHeaderTooLarge { limit } if limit == 1 << 20),
        "{error}"
    );
    assert!(!sandbox.exists("f"));
}

#[test]
fn huge_declared_extension_header_that_is_truncated_fails_cleanly() {
    let mut header = tar::Header::new_ustar();
    header.set_entry_type(tar::EntryType::XHeader);
    header.set_size(8 << 30);
    header.set_cksum();
    let mut tar = header.as_bytes().to_vec();
    tar.extend(vec![b'9'; 4096]);
    let mut sandbox = Sandbox::new();
    let error = sandbox.apply_checked(&tar).unwrap_err();
    assert!(error.is_integrity(), "{error}");
}

#[test]
fn zero_bomb_stops_at_the_uncompressed_limit() {
    let options = ApplyOptions {
        max_uncompressed_bytes: 8 << 20,
        ..ApplyOptions::default()
    };
    let mut sandbox = Sandbox::with_options(options);
    let tar = Tar::new().file("zeros", &vec![0u8; 64 << 20]).bytes();
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    encoder.write_all(&tar).unwrap();
    let gzip = encoder.finish().unwrap();
    assert!(gzip.len() < 256 << 10);
    let error = sandbox
        .applier
        .apply_layer(&gzip[..], LayerCompression::Gzip, &Digest::sha256_of(&tar))
        .unwrap_err();
    assert!(
        matches!(error, Error::TooLarge { .. }) && error.is_integrity(),
        "{error}"
    );
}

#[test]
fn diff_id_mismatch_is_an_integrity_error() {
    let mut sandbox = Sandbox::new();
    let tar = Tar::new().file("f", b"x").bytes();
    let error = sandbox
        .applier
        .apply_layer(
            &tar[..],
            LayerCompression::None,
            &Digest::sha256_of(b"other"),
        )
        .unwrap_err();
    assert!(matches!(error, Error::DiffIdMismatch { .. }) && error.is_integrity());
}

#[test]
fn symlink_loop_ends_with_an_error() {
    let mut sandbox = Sandbox::new();
    let error = sandbox
        .apply_checked(
            &Tar::new()
                .symlink("loop1", "loop2")
                .symlink("loop2", "loop1")
                .file("loop1/x", b"")
                .bytes(),
        )
        .unwrap_err();
    assert!(matches!(error, Error::SymlinkLoop { .. }), "{error}");
}

#[test]
fn parent_that_is_a_file_is_an_error() {
    let mut sandbox = Sandbox::new();
    let error = sandbox
        .apply_checked(&Tar::new().file("f", b"").file("f/child", b"").bytes())
        .unwrap_err();
    assert!(matches!(error, Error::ParentNotDirectory { .. }), "{error}");
}

#[test]
fn corrupt_gzip_is_an_integrity_error() {
    let mut sandbox = Sandbox::new();
    let error = sandbox
        .applier
        .apply_layer(
            &b"\x1f\x8b\x08\x00garbage"[..],
            LayerCompression::Gzip,
            &Digest::sha256_of(b""),
        )
        .unwrap_err();
    assert!(matches!(error, Error::CorruptLayer(_)), "{error}");
}

/// The same classes, written by Python's `tarfile` (fixtures/hostile/make.py), so the applier
/// is also checked against archives produced by another implementation.
#[test]
fn python_generated_hostile_fixtures_are_contained() {
    let fixtures = tempfile::tempdir().unwrap();
    let world = tempfile::tempdir().unwrap();
    let sentinel = world.path().join("sentinel");
    fs::create_dir_all(sentinel.join("dir")).unwrap();
    fs::write(sentinel.join("victim.txt"), b"host data").unwrap();
    fs::write(sentinel.join("dir/victim.txt"), b"more host data").unwrap();
    fs::create_dir(world.path().join("roots")).unwrap();
    // ACRPULL_FIXTURES_DIR lets scripts/rootless-tests.sh run a copied test binary elsewhere.
    let fixtures_dir = std::env::var_os("ACRPULL_FIXTURES_DIR").map_or_else(
        || std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures"),
        std::path::PathBuf::from,
    );
    let script = fixtures_dir.join("hostile/make.py");
    let status = std::process::Command::new("python3")
        .arg(&script)
        .arg(fixtures.path())
        .arg("--sentinel")
        .arg(&sentinel)
        .status();
    let Ok(status) = status else {
        eprintln!("skipping: python3 is not available");
        return;
    };
    assert!(status.success());
    let manifest: serde_json::Value =
        serde_json::from_slice(&fs::read(fixtures.path().join("manifest.json")).unwrap()).unwrap();
    let outside = |world: &std::path::Path| {
        let mut tree = super::test_support::snapshot(world);
        tree.retain(|path, _| !path.starts_with("roots"));
        tree
    };
    let before = outside(world.path());
    let cases = manifest.as_array().unwrap();
    for case in cases {
        let name = case["name"].as_str().unwrap();
        let root = world.path().join("roots").join(name);
        fs::create_dir(&root).unwrap();
        let result = apply_fixture(case, fixtures.path(), &root);
        assert_eq!(result.is_ok(), case["expect"] == "ok", "{name}: {result:?}");
        assert_eq!(
            before,
            outside(world.path()),
            "{name} changed files outside its root"
        );
        check_fixture_expectations(case, &root);
    }
    assert!(cases.len() >= 40);
}

fn apply_fixture(
    case: &serde_json::Value,
    fixtures: &std::path::Path,
    root: &std::path::Path,
) -> Result<(), Error> {
    let mut options = ApplyOptions::default();
    if let Some(limit) = case["max_uncompressed_bytes"].as_u64() {
        options.max_uncompressed_bytes = limit;
    }
    let mut applier = super::Applier::new(root, options)?;
    let gzip = case["compression"] == "gzip";
    for layer in case["layers"].as_array().unwrap() {
        let blob = fs::read(fixtures.join(layer.as_str().unwrap())).unwrap();
        let diff_id = match case["diff_id"].as_str() {
            Some(diff_id) => diff_id.parse().unwrap(),
            None if gzip => {
                let mut tar = Vec::new();
                std::io::Read::read_to_end(
                    &mut flate2::read::MultiGzDecoder::new(&blob[..]),
                    &mut tar,
                )
                .unwrap();
                Digest::sha256_of(&tar)
            }
            None => Digest::sha256_of(&blob),
        };
        let compression = if gzip {
            LayerCompression::Gzip
        } else {
            LayerCompression::None
        };
        applier.apply_layer(&blob[..], compression, &diff_id)?;
    }
    Ok(())
}

fn check_fixture_expectations(case: &serde_json::Value, root: &std::path::Path) {
    let name = case["name"].as_str().unwrap();
    for (path, content) in case["files"].as_object().into_iter().flatten() {
        let actual = fs::read(root.join(path))
            .ok()
            .map(|bytes| String::from_utf8_lossy(&bytes).into_owned());
        let exists = fs::symlink_metadata(root.join(path)).is_ok();
        match content.as_str() {
            Some(expected) => assert_eq!(actual.as_deref(), Some(expected), "{name}: {path}"),
            None => assert!(!exists, "{name}: {path} should not exist"),
        }
    }
    for (path, target) in case["symlinks"].as_object().into_iter().flatten() {
        let actual = fs::read_link(root.join(path)).unwrap();
        assert_eq!(actual.to_str(), target.as_str(), "{name}: {path}");
    }
}

#[test]
fn runtime_config_reads_passwd_inside_the_root_only() {
    let mut sandbox = Sandbox::new();
    let host_passwd = format!("{}/victim.txt", sentinel(&sandbox));
    fs::write(&host_passwd, b"user:x:4000:4000::/host:/bin/sh\n").unwrap();
    sandbox
        .apply_checked(
            &Tar::new()
                .symlink("etc/passwd", &host_passwd)
                .node("etc/group", tar::EntryType::Fifo, 0, 0)
                .bytes(),
        )
        .unwrap();
    let config: super::ImageConfig = serde_json::from_value(serde_json::json!({
        "architecture": "amd64", "os": "linux", "config": { "User": "user" },
        "rootfs": { "type": "layers", "diff_ids": [] },
    }))
    .unwrap();
    let error = super::runtime_config(&config, &sandbox.root(), false).unwrap_err();
    assert!(matches!(error, Error::RuntimeConfig { .. }), "{error}");
    let numeric: super::ImageConfig = serde_json::from_value(serde_json::json!({
        "architecture": "amd64", "os": "linux", "config": { "User": "5:6" },
        "rootfs": { "type": "layers", "diff_ids": [] },
    }))
    .unwrap();
    let runtime = super::runtime_config(&numeric, &sandbox.root(), false).unwrap();
    assert_eq!(
        runtime["process"]["user"],
        serde_json::json!({ "uid": 5, "gid": 6 })
    );
}
