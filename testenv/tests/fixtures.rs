//! The committed fixtures: deterministic, self-consistent, and readable by
//! skopeo and umoci.

use std::fs;
use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};
use std::path::Path;
use std::process::Command;

use acrpull_testenv::fixtures::{
    self, fixture_layout, fixtures_dir, sha256_digest, Layout, DOCKER_MANIFEST, FIXTURE_NAMES,
    FIXTURE_TAG, OCI_INDEX, OCI_MANIFEST,
};
use acrpull_testenv::registry::{skopeo, skopeo_copy};

/// Every file under `dir`, relative, sorted.
fn tree(dir: &Path) -> Vec<String> {
    fn walk(root: &Path, dir: &Path, out: &mut Vec<String>) {
        for entry in fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            out.push(path.strip_prefix(root).unwrap().display().to_string());
            if path.is_dir() && !path.is_symlink() {
                walk(root, &path, out);
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out);
    out.sort();
    out
}

fn umoci_unpack(layout: &Path, tag: &str, bundle: &Path) {
    fixtures::umoci_unpack(layout, tag, bundle).unwrap();
}

/// Copies a fixture to a plain OCI layout with gzip layers (and one
/// platform), so umoci can unpack Docker and zstd images too.
fn to_plain_oci(src: &str, out: &Path, extra: &[&str]) -> String {
    let dst = format!("oci:{}:{FIXTURE_TAG}", out.display());
    skopeo_copy(src, &dst, extra).unwrap();
    out.display().to_string()
}

#[test]
fn regenerating_gives_the_same_bytes() {
    let out = tempfile::tempdir().unwrap();
    let status = Command::new("python3")
        .arg(fixtures_dir().join("make_fixtures.py"))
        .arg("--out")
        .arg(out.path())
        .stderr(std::process::Stdio::null())
        .status()
        .unwrap();
    assert!(status.success());
    let committed = fixtures_dir().join("images");
    let names = tree(out.path());
    assert_eq!(names, tree(&committed));
    for name in names {
        let fresh = out.path().join(&name);
        if fresh.is_file() {
            assert!(
                fs::read(&fresh).unwrap() == fs::read(committed.join(&name)).unwrap(),
                "{name} differs from the committed fixture; rerun make_fixtures.py"
            );
        }
    }
}

#[test]
fn fixtures_are_small_and_self_consistent() {
    let mut total = 0;
    for name in FIXTURE_NAMES {
        let layout = Layout::fixture(name).unwrap();
        for digest in layout.blob_digests().unwrap() {
            let bytes = layout.blob(&digest).unwrap();
            assert_eq!(sha256_digest(&bytes), digest, "{name}");
            total += bytes.len();
        }
        let main = layout.main_ref().unwrap();
        assert_eq!(main.tag(), Some(FIXTURE_TAG));
        let reachable = layout.reachable(&main.digest).unwrap();
        // No stray blobs, and every descriptor's size is right.
        assert_eq!(
            reachable.len(),
            layout.blob_digests().unwrap().len(),
            "{name}"
        );
        let (media_type, digest, bytes) = layout.manifest(FIXTURE_TAG).unwrap();
        assert_eq!(digest, main.digest);
        assert_eq!(media_type, main.media_type);
        assert_eq!(bytes.len() as u64, main.size);
    }
    assert!(total < 512 * 1024, "fixtures grew to {total} bytes");
}

#[test]
fn media_types_are_as_documented() {
    let types = |name: &str| {
        let layout = Layout::fixture(name).unwrap();
        let main = layout.main_ref().unwrap();
        let (config, layers) = if main.media_type == OCI_INDEX {
            let first = &layout.index_entries(&main.digest).unwrap()[0];
            layout.image_parts(&first.digest).unwrap()
        } else {
            layout.image_parts(&main.digest).unwrap()
        };
        let layers: Vec<String> = layers.into_iter().map(|d| d.media_type).collect();
        (main.media_type, config.media_type, layers)
    };
    let gzip = "application/vnd.oci.image.layer.v1.tar+gzip";
    let config = "application/vnd.oci.image.config.v1+json";
    assert_eq!(
        types("simple"),
        (OCI_MANIFEST.into(), config.into(), vec![gzip.into(); 2])
    );
    assert_eq!(types("whiteouts").2, vec![gzip.to_owned(); 3]);
    assert_eq!(
        types("dockerv2"),
        (
            DOCKER_MANIFEST.into(),
            "application/vnd.docker.container.image.v1+json".into(),
            vec!["application/vnd.docker.image.rootfs.diff.tar.gzip".into(); 2]
        )
    );
    assert_eq!(
        types("uncompressed").2,
        vec!["application/vnd.oci.image.layer.v1.tar".to_owned()]
    );
    assert_eq!(
        types("zstd").2,
        vec!["application/vnd.oci.image.layer.v1.tar+zstd".to_owned()]
    );
    assert_eq!(types("multiarch").0, OCI_INDEX);
}

#[test]
fn skopeo_inspects_every_fixture_with_the_layout_digest() {
    for name in FIXTURE_NAMES {
        let layout = Layout::fixture(name).unwrap();
        let main = layout.main_ref().unwrap();
        if main.media_type == DOCKER_MANIFEST {
            // skopeo's oci: transport only lists OCI media types; `seed`
            // goes through dir: for this one (see the registry tests).
            continue;
        }
        let src = format!("oci:{}:{FIXTURE_TAG}", fixture_layout(name).display());
        let raw = skopeo(&["inspect", "--raw", &src]).unwrap();
        assert_eq!(sha256_digest(&raw), main.digest, "{name}");
        let info: serde_json::Value =
            serde_json::from_slice(&skopeo(&["inspect", &src]).unwrap()).unwrap();
        assert_eq!(info["Os"], "linux", "{name}");
        assert_eq!(info["Architecture"], "amd64", "{name}");
    }
}

#[test]
fn simple_unpacks_with_umoci() {
    let tmp = tempfile::tempdir().unwrap();
    let bundle = tmp.path().join("bundle");
    umoci_unpack(&fixture_layout("simple"), FIXTURE_TAG, &bundle);
    let root = bundle.join("rootfs");
    let mode = |p: &str| fs::symlink_metadata(root.join(p)).unwrap().mode() & 0o7777;
    assert_eq!(mode("usr/bin/hello"), 0o755);
    assert_eq!(mode("app/config.json"), 0o600);
    assert_eq!(mode("tmp"), 0o1777);
    assert_eq!(mode("root"), 0o700);
    assert_eq!(
        fs::read_link(root.join("bin/hello")).unwrap(),
        Path::new("../usr/bin/hello")
    );
    assert_eq!(
        fs::read_link(root.join("app/current")).unwrap(),
        Path::new("/app/releases/1")
    );
    let hello = fs::metadata(root.join("usr/bin/hello")).unwrap();
    let hard = fs::metadata(root.join("usr/bin/hello-hardlink")).unwrap();
    assert_eq!(hello.ino(), hard.ino(), "hardlink");
    assert_eq!(
        fs::read_to_string(root.join("etc/hostname")).unwrap(),
        "acrpull-fixture-overwritten\n"
    );
    let config: serde_json::Value =
        serde_json::from_slice(&fs::read(bundle.join("config.json")).unwrap()).unwrap();
    assert_eq!(config["process"]["cwd"], "/app");
    assert_eq!(config["process"]["args"][0], "/app/run.sh");
    assert!(config["process"]["env"]
        .as_array()
        .unwrap()
        .contains(&"APP_MODE=fixture".into()));
}

#[test]
fn whiteouts_unpack_to_the_documented_tree() {
    let tmp = tempfile::tempdir().unwrap();
    let bundle = tmp.path().join("bundle");
    umoci_unpack(&fixture_layout("whiteouts"), FIXTURE_TAG, &bundle);
    let root = bundle.join("rootfs");
    assert_eq!(
        tree(&root),
        [
            "data",
            "data/dir-to-file",
            "etc",
            "etc/kept.conf",
            "etc/recreated.conf",
            "later",
            "later/keep",
            "opt",
            "opt/cache",
            "opt/cache/new",
            "srv",
            "var",
            "var/lib",
            "var/lib/thing",
            "var/lib/thing/inner",
        ]
    );
    assert!(root.join("data/dir-to-file").is_file());
    assert_eq!(
        fs::read_to_string(root.join("etc/recreated.conf")).unwrap(),
        "third\n"
    );
}

#[test]
fn uncompressed_unpacks_with_umoci() {
    let tmp = tempfile::tempdir().unwrap();
    let bundle = tmp.path().join("bundle");
    umoci_unpack(&fixture_layout("uncompressed"), FIXTURE_TAG, &bundle);
    assert!(bundle.join("rootfs/usr/bin/hello").is_file());
}

#[test]
fn zstd_layer_decodes() {
    // umoci 0.4 cannot read zstd layers; skopeo recompresses them to gzip.
    let tmp = tempfile::tempdir().unwrap();
    let src = format!("oci:{}:{FIXTURE_TAG}", fixture_layout("zstd").display());
    let plain = to_plain_oci(
        &src,
        &tmp.path().join("gzip"),
        &["--dest-compress", "--dest-compress-format", "gzip"],
    );
    let bundle = tmp.path().join("bundle");
    umoci_unpack(Path::new(&plain), FIXTURE_TAG, &bundle);
    let hello = bundle.join("rootfs/usr/bin/hello");
    assert_eq!(
        fs::metadata(&hello).unwrap().permissions().mode() & 0o777,
        0o755
    );
}

#[test]
fn multiarch_platforms_have_their_own_content() {
    let layout = Layout::fixture("multiarch").unwrap();
    let index = layout.main_ref().unwrap();
    let entries = layout.index_entries(&index.digest).unwrap();
    let platforms: Vec<String> = entries
        .iter()
        .map(|d| {
            let p = d.platform.as_ref().unwrap();
            let variant = p
                .variant
                .as_deref()
                .map(|v| format!("/{v}"))
                .unwrap_or_default();
            format!("{}/{}{variant}", p.os, p.architecture)
        })
        .collect();
    assert_eq!(platforms, ["linux/amd64", "linux/arm64/v8", "linux/arm/v7"]);
    // One base layer shared by all three.
    let firsts: Vec<String> = entries
        .iter()
        .map(|d| layout.image_parts(&d.digest).unwrap().1[0].digest.clone())
        .collect();
    assert!(firsts.iter().all(|d| *d == firsts[0]));

    let src = format!(
        "oci:{}:{FIXTURE_TAG}",
        fixture_layout("multiarch").display()
    );
    for (arch, variant) in [("amd64", None), ("arm64", Some("v8")), ("arm", Some("v7"))] {
        let tmp = tempfile::tempdir().unwrap();
        let mut extra = vec!["--override-os", "linux", "--override-arch", arch];
        if let Some(variant) = variant {
            extra.extend(["--override-variant", variant]);
        }
        let info: serde_json::Value =
            serde_json::from_slice(&skopeo(&[&["inspect"], &extra[..], &[&src]].concat()).unwrap())
                .unwrap();
        assert_eq!(info["Architecture"], arch);
        let plain = to_plain_oci(&src, &tmp.path().join("one"), &extra);
        let bundle = tmp.path().join("bundle");
        umoci_unpack(Path::new(&plain), FIXTURE_TAG, &bundle);
        let expected = format!(
            "linux/{arch}{}\n",
            variant.map(|v| format!("/{v}")).unwrap_or_default()
        );
        assert_eq!(
            fs::read_to_string(bundle.join("rootfs/etc/arch")).unwrap(),
            expected
        );
        assert!(bundle.join("rootfs/usr/bin/hello").is_file());
    }
}

#[test]
fn dockerv2_content_unpacks_after_conversion() {
    // umoci only reads OCI manifests: convert through skopeo's dir: copy.
    let layout = Layout::fixture("dockerv2").unwrap();
    let main = layout.main_ref().unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("dir");
    fs::create_dir(&dir).unwrap();
    fs::write(dir.join("version"), "Directory Transport Version: 1.1\n").unwrap();
    fs::copy(
        layout.blob_path(&main.digest).unwrap(),
        dir.join("manifest.json"),
    )
    .unwrap();
    for digest in layout.blob_digests().unwrap() {
        if digest != main.digest {
            let hex = digest.trim_start_matches("sha256:");
            fs::copy(layout.blob_path(&digest).unwrap(), dir.join(hex)).unwrap();
        }
    }
    let src = format!("dir:{}", dir.display());
    let raw = skopeo(&["inspect", "--raw", &src]).unwrap();
    assert_eq!(sha256_digest(&raw), main.digest);
    let plain = to_plain_oci(&src, &tmp.path().join("oci"), &["--format", "oci"]);
    let bundle = tmp.path().join("bundle");
    umoci_unpack(Path::new(&plain), FIXTURE_TAG, &bundle);
    let config = fs::read_to_string(bundle.join("rootfs/app/config.json")).unwrap();
    assert!(config.contains("docker"), "{config}");
}

#[test]
fn simple_rootfs_snapshot() {
    let tmp = tempfile::tempdir().unwrap();
    let rootfs = fixtures::umoci_unpack(
        &fixture_layout("simple"),
        FIXTURE_TAG,
        &tmp.path().join("bundle"),
    )
    .unwrap();
    let snapshot = fixtures::tree_snapshot(&rootfs).unwrap();
    assert_eq!(snapshot, SIMPLE_SNAPSHOT);
}

const SIMPLE_SNAPSHOT: &[&str] = &[
    "app dir 0755",
    "app/config.json file 0600 30 sha256:e46bb4c7395f7bb824ea780a2608d08b5e18a1f12cd036a2052ec44be2f5b913",
    "app/current symlink -> /app/releases/1",
    "app/releases dir 0755",
    "app/releases/1 dir 0755",
    "app/releases/1/VERSION file 0644 2 sha256:4355a46b19d348dc2f57c046f8ef63d4538ebb936000f3c9ee954a27460dd865",
    "app/run.sh file 0755 35 sha256:6be32e81ba55a755045c552ce775523d520bd581816f98271b1273498c449de0",
    "bin dir 0755",
    "bin/hello symlink -> ../usr/bin/hello",
    "bin/sh-absolute symlink -> /usr/bin/hello",
    "etc dir 0755",
    "etc/hostname file 0644 28 sha256:88a0b30344797b4946f550a38fe937beff7e4cb82bbab1d9cd7bc756589a4a36",
    "etc/passwd file 0644 71 sha256:1495b44255617fda7128cf07a7b3350be7992e25ed128c3e4107ce51a13dbbc2",
    "etc/shadow file 0640 26 sha256:06de388e010f24186c76ca43ba51e29c4510b52356d5e27047bd30189563fa24",
    "root dir 0700",
    "tmp dir 1777",
    "usr dir 0755",
    "usr/bin dir 0755",
    "usr/bin/hello file 0755 42 sha256:2ff1db75d085745fc70c665ead3886281ad5578a0c5e47382cdfef006bf280f5",
    "usr/bin/hello-hardlink file 0755 42 sha256:2ff1db75d085745fc70c665ead3886281ad5578a0c5e47382cdfef006bf280f5",
    "usr/share dir 0755",
    "usr/share/doc dir 0755",
    "usr/share/doc/README file 0644 380 sha256:27d8b3ddc1038a5f4f23232d58a2a56d0c56ffcdeacdb78497945f0ea69c712a",
    "var dir 0755",
    "var/empty dir 0555",
];
