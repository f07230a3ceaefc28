//! Differential test against `umoci unpack --rootless`: the same layers, written into a
//! hand-made OCI layout, must give the same tree (names, types, modes, link targets, contents,
//! hardlink grouping, recorded owners) from umoci and from the applier.

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::Command;

use super::test_support::Tar;
use super::{Applier, ApplyOptions};
use crate::digest::Digest;
use crate::media_type::LayerCompression;

const PASSWD: &[u8] = b"root:x:0:0:root:/root:/bin/sh\nuser:x:1000:1000::/home/user:/bin/sh\n";
const GROUP: &[u8] = b"root:x:0:\nstaff:x:50:user\nuser:x:1000:\n";

pub(crate) fn layers() -> Vec<Vec<u8>> {
    let first = Tar::new()
        .dir("etc", 0o755)
        .file("etc/passwd", PASSWD)
        .file("etc/group", GROUP)
        .dir("usr/lib", 0o755)
        .symlink("lib", "usr/lib")
        .symlink("etc/abs", "/etc/passwd")
        .file_owned("usr/bin/prog", b"#!/bin/sh\n", 0o4755, 1000, 1000)
        .file("usr/bin/a", b"shared")
        .hardlink("usr/bin/b", "usr/bin/a")
        .dir("ro", 0o555)
        .file("ro/f", b"ro")
        .file("d/old", b"old")
        .file("d/sub/old", b"old")
        .file("removed", b"gone")
        .file("dir_then_file/x", b"x")
        .file("file_then_dir", b"f")
        .node("run/fifo", tar::EntryType::Fifo, 0, 0)
        .bytes();
    let second = Tar::new()
        .file(".wh.removed", b"")
        .file("d/new", b"new")
        .file("d/.wh..wh..opq", b"")
        .file("lib/new.so", b"so")
        .hardlink("usr/bin/c", "usr/bin/a")
        .file("dir_then_file", b"now a file")
        .dir("file_then_dir", 0o700)
        .file_mode("file_then_dir/secret", b"s", 0o600)
        .file("ro/newfile", b"added")
        .file_owned("home/user/.profile", b"export A=1\n", 0o640, 1000, 1000)
        .bytes();
    vec![first, second]
}

fn sha256_hex(bytes: &[u8]) -> String {
    Digest::sha256_of(bytes).hex().to_string()
}

fn write_blob(layout: &Path, bytes: &[u8]) -> serde_json::Value {
    let hex = sha256_hex(bytes);
    fs::write(layout.join("blobs/sha256").join(&hex), bytes).unwrap();
    serde_json::json!({ "digest": format!("sha256:{hex}"), "size": bytes.len() })
}

/// Write an OCI layout with gzip layers and `config`, tagged `test`.
pub(crate) fn write_layout(layout: &Path, layers: &[Vec<u8>], config: serde_json::Value) {
    fs::create_dir_all(layout.join("blobs/sha256")).unwrap();
    fs::write(
        layout.join("oci-layout"),
        br#"{"imageLayoutVersion":"1.0.0"}"#,
    )
    .unwrap();
    let mut descriptors = Vec::new();
    let mut diff_ids = Vec::new();
    for layer in layers {
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        encoder.write_all(layer).unwrap();
        let mut descriptor = write_blob(layout, &encoder.finish().unwrap());
        descriptor["mediaType"] = "application/vnd.oci.image.layer.v1.tar+gzip".into();
        descriptors.push(descriptor);
        diff_ids.push(format!("sha256:{}", sha256_hex(layer)));
    }
    let mut config = config;
    config["rootfs"] = serde_json::json!({ "type": "layers", "diff_ids": diff_ids });
    let mut config_descriptor = write_blob(layout, config.to_string().as_bytes());
    config_descriptor["mediaType"] = "application/vnd.oci.image.config.v1+json".into();
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": config_descriptor,
        "layers": descriptors,
    });
    let mut manifest_descriptor = write_blob(layout, manifest.to_string().as_bytes());
    manifest_descriptor["mediaType"] = "application/vnd.oci.image.manifest.v1+json".into();
    manifest_descriptor["annotations"] =
        serde_json::json!({ "org.opencontainers.image.ref.name": "test" });
    let index = serde_json::json!({ "schemaVersion": 2, "manifests": [manifest_descriptor] });
    fs::write(layout.join("index.json"), index.to_string()).unwrap();
}

pub(crate) fn image_config() -> serde_json::Value {
    serde_json::json!({
        "architecture": "amd64",
        "os": "linux",
        "config": {
            "User": "user:staff",
            "Env": ["PATH=/usr/bin:/bin", "A=1"],
            "Entrypoint": ["/usr/bin/prog"],
            "Cmd": ["--flag"],
            "WorkingDir": "/home/user",
            "Volumes": { "/data": {} },
            "Labels": { "a": "b" },
        },
    })
}

/// Describe a tree: path → type, mode, content or target, owner xattr; plus hardlink groups.
fn describe(root: &Path) -> (BTreeMap<String, String>, Vec<Vec<String>>) {
    let mut entries = BTreeMap::new();
    let mut inodes: BTreeMap<u64, Vec<String>> = BTreeMap::new();
    describe_into(root, root, &mut entries, &mut inodes);
    let groups = inodes
        .into_values()
        .filter(|paths| paths.len() > 1)
        .collect();
    (entries, groups)
}

fn describe_into(
    base: &Path,
    dir: &Path,
    entries: &mut BTreeMap<String, String>,
    inodes: &mut BTreeMap<u64, Vec<String>>,
) {
    let mut children: Vec<_> = fs::read_dir(dir)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .collect();
    children.sort();
    for path in children {
        let relative = path
            .strip_prefix(base)
            .unwrap()
            .to_string_lossy()
            .into_owned();
        let meta = fs::symlink_metadata(&path).unwrap();
        let mode = meta.permissions().mode() & 0o7777;
        let mut owner = [0u8; 64];
        let owner = rustix::fs::lgetxattr(&path, "user.rootlesscontainers", &mut owner[..])
            .map(|length| owner[..length].to_vec())
            .ok();
        let kind = meta.file_type();
        let description = if kind.is_symlink() {
            format!("symlink {}", fs::read_link(&path).unwrap().display())
        } else if kind.is_dir() {
            let restore = meta.permissions().mode();
            fs::set_permissions(&path, fs::Permissions::from_mode(restore | 0o700)).unwrap();
            describe_into(base, &path, entries, inodes);
            fs::set_permissions(&path, fs::Permissions::from_mode(restore)).unwrap();
            format!("dir {mode:o} owner {owner:?}")
        } else if kind.is_fifo() {
            format!("fifo {mode:o} owner {owner:?}")
        } else {
            inodes.entry(meta.ino()).or_default().push(relative.clone());
            let content = String::from_utf8_lossy(&fs::read(&path).unwrap()).into_owned();
            format!(
                "file {mode:o} mtime {} owner {owner:?} {content:?}",
                meta.mtime()
            )
        };
        entries.insert(relative, description);
    }
}

#[test]
fn matches_umoci_unpack_rootless() {
    if Command::new("umoci").arg("--version").output().is_err() {
        eprintln!("skipping: umoci is not installed");
        return;
    }
    let work = tempfile::tempdir().unwrap();
    let layers = layers();
    write_layout(&work.path().join("layout"), &layers, image_config());
    let bundle = work.path().join("bundle");
    let output = Command::new("umoci")
        .args(["unpack", "--rootless", "--image"])
        .arg(format!("{}:test", work.path().join("layout").display()))
        .arg(&bundle)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "umoci failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let ours = work.path().join("ours");
    fs::create_dir(&ours).unwrap();
    let mut applier = Applier::new(
        &ours,
        ApplyOptions {
            rootless: true,
            ..ApplyOptions::default()
        },
    )
    .unwrap();
    for layer in &layers {
        applier
            .apply_layer(
                &layer[..],
                LayerCompression::None,
                &Digest::sha256_of(layer),
            )
            .unwrap();
    }
    let (umoci_tree, umoci_links) = describe(&bundle.join("rootfs"));
    let (our_tree, our_links) = describe(&ours);
    for (path, description) in &umoci_tree {
        assert_eq!(
            our_tree.get(path),
            Some(description),
            "{path} differs from umoci"
        );
    }
    assert_eq!(umoci_tree.len(), our_tree.len(), "ours: {our_tree:#?}");
    assert_eq!(umoci_links, our_links);
    eprintln!(
        "compared {} paths with umoci; hardlink groups {umoci_links:?}",
        umoci_tree.len()
    );
    assert!(
        our_links.iter().any(|group| group.len() == 3),
        "a, b, c share an inode"
    );
}
