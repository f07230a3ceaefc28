//! Archives as sources (`docker-archive:`, `oci-archive:`), read in place: `docker save`
//! archives built here as Docker writes them (classic, and Docker 25+ with an OCI layout
//! inside), OCI archives written by skopeo; pulled, inspected, pushed and copied through the
//! real `docker-registry`, checked against skopeo and umoci; hostile archives refused with
//! nothing written. Also `--manifest-format oci` (Docker media types rewritten for readers of
//! OCI only).

use std::io::Read as _;
use std::path::{Path, PathBuf};

use acrpull_testenv::fixtures::{
    fixture_layout, sha256_digest, tree_snapshot, umoci_unpack, Layout,
};
use acrpull_testenv::registry::{skopeo, skopeo_copy, Registry, RegistryOptions};

use crate::support::{fails, ok, run, skopeo_raw_digest, Scratch};

/// How `docker save` lays an archive out.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Style {
    /// Docker up to 24: `<hex>.json` config, `<id>/layer.tar` uncompressed layers.
    Classic,
    /// Classic, but layers kept as they are in the fixture (compressed).
    ClassicCompressed,
    /// Docker 25+: an OCI layout (`oci-layout`, `index.json`, `blobs/`) plus `manifest.json`
    /// pointing into `blobs/`.
    WithOciLayout,
}

/// A tar being assembled from named members (and symbolic links, as `docker save` up to
/// Docker 24 writes for a layer two images share).
#[derive(Default)]
struct Members(Vec<(String, Vec<u8>)>, Vec<(String, String)>);

impl Members {
    fn add(&mut self, name: impl Into<String>, bytes: Vec<u8>) {
        self.0.push((name.into(), bytes));
    }

    fn has(&self, name: &str) -> bool {
        self.0.iter().any(|(n, _)| n == name)
    }

    fn write(&self, path: &Path) {
        let mut builder = tar::Builder::new(Vec::new());
        for (name, target) in &self.1 {
            let mut header = tar::Header::new_gnu();
            header.set_entry_type(tar::EntryType::Symlink);
            header.set_size(0);
            builder
                .append_link(&mut header, name, target)
                .expect("tar link");
        }
        for (name, bytes) in &self.0 {
            let mut header = tar::Header::new_gnu();
            header.set_size(bytes.len() as u64);
            header.set_mode(0o644);
            header.set_entry_type(tar::EntryType::Regular);
            builder
                .append_data(&mut header, name, bytes.as_slice())
                .expect("tar member");
        }
        std::fs::write(path, builder.into_inner().expect("tar")).expect("archive written");
    }
}

fn hex_of(digest: &str) -> &str {
    digest.strip_prefix("sha256:").expect("sha256 digest")
}

fn uncompressed(bytes: &[u8], media_type: &str) -> Vec<u8> {
    if media_type.ends_with("gzip") {
        let mut out = Vec::new();
        flate2::read::MultiGzDecoder::new(bytes)
            .read_to_end(&mut out)
            .expect("gunzip");
        out
    } else {
        bytes.to_vec()
    }
}

/// The members of a `docker save` archive of the fixture images, each `(fixture, repo:tag)`.
fn docker_save(images: &[(&str, &str)], style: Style) -> Members {
    let mut members = Members::default();
    let mut manifest_json = Vec::new();
    let mut index_entries = Vec::new();
    let mut added = std::collections::BTreeSet::new();
    let mut add_blob = |members: &mut Members, layout: &Layout, digest: &str| {
        if added.insert(digest.to_string()) {
            members.add(
                format!("blobs/sha256/{}", hex_of(digest)),
                layout.blob(digest).expect("blob"),
            );
        }
    };
    for (fixture, repo_tag) in images {
        let layout = Layout::fixture(fixture).expect("fixture");
        let main = layout.main_ref().expect("main ref");
        let (config, layers) = layout.image_parts(&main.digest).expect("image");
        let mut layer_names = Vec::new();
        if style == Style::WithOciLayout {
            add_blob(&mut members, &layout, &main.digest);
            add_blob(&mut members, &layout, &config.digest);
            for layer in &layers {
                add_blob(&mut members, &layout, &layer.digest);
                layer_names.push(format!("blobs/sha256/{}", hex_of(&layer.digest)));
            }
            let tag = repo_tag
                .rsplit_once(':')
                .map(|(_, t)| t)
                .unwrap_or("latest");
            index_entries.push(serde_json::json!({
                "mediaType": main.media_type, "digest": main.digest, "size": main.size,
                "annotations": {
                    "io.containerd.image.name": format!("docker.io/{repo_tag}"),
                    "org.opencontainers.image.ref.name": tag,
                },
            }));
            manifest_json.push(serde_json::json!({
                "Config": format!("blobs/sha256/{}", hex_of(&config.digest)),
                "RepoTags": [repo_tag],
                "Layers": layer_names,
            }));
            continue;
        }
        let config_name = format!("{}.json", hex_of(&config.digest));
        members.add(&config_name, layout.blob(&config.digest).expect("config"));
        for layer in &layers {
            let blob = layout.blob(&layer.digest).expect("layer");
            let (name, bytes) = if style == Style::Classic {
                let tar = uncompressed(&blob, &layer.media_type);
                (format!("{}/layer.tar", &sha256_digest(&tar)[7..]), tar)
            } else {
                (format!("{}/layer.tar", hex_of(&layer.digest)), blob)
            };
            if members.has(&name) {
                // Shared with an earlier image: a link to it, as Docker wrote them.
                let (id, file) = name.split_once('/').unwrap();
                let link = format!("{id}-{}/{file}", layer_names.len());
                members.1.push((link.clone(), format!("../{name}")));
                layer_names.push(link);
                continue;
            }
            layer_names.push(name.clone());
            members.add(name, bytes);
        }
        manifest_json.push(serde_json::json!({
            "Config": config_name, "RepoTags": [repo_tag], "Layers": layer_names,
        }));
    }
    if style == Style::WithOciLayout {
        members.add("oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#.to_vec());
        members.add(
            "index.json",
            serde_json::to_vec(&serde_json::json!({
                "schemaVersion": 2,
                "mediaType": "application/vnd.oci.image.index.v1+json",
                "manifests": index_entries,
            }))
            .unwrap(),
        );
    }
    members.add("manifest.json", serde_json::to_vec(&manifest_json).unwrap());
    members
}

/// A directory for archives beside (not inside) the scratch output directory.
fn archive_path(scratch: &Scratch, name: &str) -> PathBuf {
    let dir = scratch.dir.path().join("archives");
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

/// umoci's root filesystem of a fixture (OCI with gzip or plain layers: umoci reads it).
fn umoci_tree(fixture: &str, scratch: &Scratch) -> Vec<String> {
    let bundle = scratch.dir.path().join(format!("umoci-{fixture}"));
    let rootfs = umoci_unpack(&fixture_layout(fixture), "v1", &bundle).expect("umoci unpacks");
    tree_snapshot(&rootfs).expect("snapshot")
}

fn inspect_digest(scratch: &Scratch, image: &str) -> String {
    let stdout = ok(&run(&scratch.home(), &["inspect", image], None));
    let value: serde_json::Value = serde_json::from_str(&stdout).expect("inspect JSON");
    value["digest"].as_str().expect("digest").to_string()
}

#[test]
fn docker_save_archive_unpacks_in_place_like_umoci() {
    let scratch = Scratch::new();
    for style in [
        Style::Classic,
        Style::ClassicCompressed,
        Style::WithOciLayout,
    ] {
        let archive = archive_path(&scratch, "saved.tar");
        docker_save(&[("simple", "it/simple:v1")], style).write(&archive);
        let dest = scratch.dest("rootfs");
        ok(&run(
            &scratch.home(),
            &[
                "pull",
                "-q",
                &format!("docker-archive:{}", archive.display()),
                dest.to_str().unwrap(),
            ],
            None,
        ));
        assert_eq!(
            tree_snapshot(&dest).unwrap(),
            umoci_tree("simple", &scratch)
        );
        // Read in place: nothing was extracted beside the archive or the destination.
        assert_eq!(scratch.out_entries(), vec!["rootfs"]);
        let beside: Vec<_> = std::fs::read_dir(archive.parent().unwrap())
            .unwrap()
            .collect();
        assert_eq!(beside.len(), 1);
        std::fs::remove_dir_all(&dest).unwrap();
        std::fs::remove_dir_all(scratch.dir.path().join("umoci-simple")).unwrap();
    }
}

#[test]
fn docker_25_archive_serves_its_oci_manifest_and_classic_ones_get_dockers_manifest() {
    let scratch = Scratch::new();
    let fixture = Layout::fixture("simple")
        .unwrap()
        .main_ref()
        .unwrap()
        .digest;
    let modern = archive_path(&scratch, "modern.tar");
    docker_save(&[("simple", "it/simple:v1")], Style::WithOciLayout).write(&modern);
    for reference in ["", ":it/simple:v1", ":docker.io/it/simple:v1", ":@0"] {
        let image = format!("docker-archive:{}{reference}", modern.display());
        assert_eq!(inspect_digest(&scratch, &image), fixture, "{image}");
    }
    // To a layout skopeo reads, the manifest kept byte for byte, tagged as in the archive.
    let dest = scratch.dest("layout");
    ok(&run(
        &scratch.home(),
        &[
            "pull",
            "-q",
            "--format",
            "oci",
            &format!("docker-archive:{}:it/simple:v1", modern.display()),
            dest.to_str().unwrap(),
        ],
        None,
    ));
    assert_eq!(
        skopeo_raw_digest(&format!("oci:{}:v1", dest.display())),
        fixture
    );

    // A classic archive has no manifest: the one Docker 25 writes is built (OCI types,
    // uncompressed layers), the same whatever the image is called, and skopeo agrees on
    // what the archive holds.
    let classic = archive_path(&scratch, "classic.tar");
    docker_save(&[("simple", "it/simple:v1")], Style::Classic).write(&classic);
    let image = format!("docker-archive:{}", classic.display());
    let stdout = ok(&run(&scratch.home(), &["inspect", &image], None));
    let summary: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(
        summary["mediaType"],
        "application/vnd.oci.image.manifest.v1+json"
    );
    let raw = run(&scratch.home(), &["inspect", "--raw", &image], None);
    let manifest: serde_json::Value = serde_json::from_slice(&raw.stdout).unwrap();
    let skopeo_view: serde_json::Value =
        serde_json::from_slice(&skopeo(&["inspect", &image]).expect("skopeo reads it")).unwrap();
    let layers: Vec<_> = manifest["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| {
            assert_eq!(l["mediaType"], "application/vnd.oci.image.layer.v1.tar");
            l["digest"].clone()
        })
        .collect();
    assert_eq!(serde_json::Value::from(layers), skopeo_view["Layers"]);
    assert_eq!(
        inspect_digest(&scratch, &format!("{image}:it/simple:v1")),
        summary["digest"].as_str().unwrap()
    );
}

#[test]
fn archive_images_are_chosen_by_name_or_number() {
    let scratch = Scratch::new();
    let archive = archive_path(&scratch, "two.tar");
    docker_save(
        &[("simple", "it/simple:v1"), ("uncompressed", "it/plain:v2")],
        Style::Classic,
    )
    .write(&archive);
    let image = |reference: &str| format!("docker-archive:{}{reference}", archive.display());
    let config_of = |reference: &str| {
        let stdout = ok(&run(&scratch.home(), &["inspect", &image(reference)], None));
        let value: serde_json::Value = serde_json::from_str(&stdout).unwrap();
        value["image"]["config"]["digest"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let plain = Layout::fixture("uncompressed").unwrap();
    let (plain_config, _) = plain
        .image_parts(&plain.main_ref().unwrap().digest)
        .unwrap();
    assert_eq!(config_of(":@1"), plain_config.digest);
    assert_eq!(config_of(":it/plain:v2"), plain_config.digest);
    assert_ne!(config_of(":@0"), plain_config.digest);
    let stderr = fails(&run(&scratch.home(), &["inspect", &image("")], None), 6);
    assert!(stderr.contains("holds 2 images"), "{stderr}");
    let stderr = fails(
        &run(&scratch.home(), &["inspect", &image(":it/absent:v1")], None),
        4,
    );
    assert!(stderr.contains("it/absent:v1"), "{stderr}");
    fails(&run(&scratch.home(), &["inspect", &image(":@7")], None), 4);
    let stderr = fails(&run(&scratch.home(), &["inspect", &image(":@x")], None), 2);
    assert!(stderr.contains("@N"), "{stderr}");
    let missing = format!(
        "docker-archive:{}",
        scratch.dir.path().join("nope.tar").display()
    );
    fails(&run(&scratch.home(), &["inspect", &missing], None), 4);
}

#[test]
fn oci_archive_from_skopeo_pulls_and_archives_push_and_copy_to_the_registry() {
    let registry = Registry::start(RegistryOptions::anonymous()).expect("registry");
    let scratch = Scratch::new();
    let fixture = Layout::fixture("simple")
        .unwrap()
        .main_ref()
        .unwrap()
        .digest;
    let oci_archive = archive_path(&scratch, "image.oci.tar");
    skopeo_copy(
        &format!("oci:{}:v1", fixture_layout("simple").display()),
        &format!("oci-archive:{}:v1", oci_archive.display()),
        &["--preserve-digests"],
    )
    .expect("skopeo writes an oci-archive");
    let source = format!("oci-archive:{}:v1", oci_archive.display());
    let dest = scratch.dest("layout");
    ok(&run(
        &scratch.home(),
        &[
            "pull",
            "-q",
            "--format",
            "oci",
            &source,
            dest.to_str().unwrap(),
        ],
        None,
    ));
    assert_eq!(
        skopeo_raw_digest(&format!("oci:{}:v1", dest.display())),
        fixture
    );
    let rootfs = scratch.dest("rootfs");
    ok(&run(
        &scratch.home(),
        &["pull", "-q", &source, rootfs.to_str().unwrap()],
        None,
    ));
    assert_eq!(
        tree_snapshot(&rootfs).unwrap(),
        umoci_tree("simple", &scratch)
    );

    // push an oci-archive, copy a classic docker-archive: what the registry serves is what
    // acrpull read from the archive.
    let pushed = format!("{}/it/from-oci-archive:v1", registry.host());
    ok(&run(
        &scratch.home(),
        &["push", "-q", &source, &pushed],
        None,
    ));
    assert_eq!(skopeo_raw_digest(&format!("docker://{pushed}")), fixture);

    let classic = archive_path(&scratch, "saved.tar");
    docker_save(&[("simple", "it/simple:v1")], Style::Classic).write(&classic);
    let saved = format!("docker-archive:{}:it/simple:v1", classic.display());
    let built = inspect_digest(&scratch, &saved);
    let copied = format!("{}/it/from-docker-archive:v1", registry.host());
    let stdout = ok(&run(
        &scratch.home(),
        &["copy", "--json", &saved, &copied],
        None,
    ));
    let outcome: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(outcome["digest"], built.as_str());
    assert_eq!(skopeo_raw_digest(&format!("docker://{copied}")), built);
    let again = scratch.dest("again");
    ok(&run(
        &scratch.home(),
        &["pull", "-q", &copied, again.to_str().unwrap()],
        None,
    ));
    assert_eq!(
        tree_snapshot(&again).unwrap(),
        tree_snapshot(&rootfs).unwrap()
    );

    // An archive is a source only.
    let stderr = fails(
        &run(
            &scratch.home(),
            &[
                "copy",
                &pushed,
                &format!("oci-archive:{}", scratch.dest("x.tar").display()),
            ],
            None,
        ),
        2,
    );
    assert!(stderr.contains("pull --format oci-archive"), "{stderr}");
}

/// Rewrite the name field of the first header whose name is `from` (same length or shorter),
/// fixing the checksum: the tar crate refuses to write hostile names itself.
fn rename_member(bytes: &mut [u8], from: &str, to: &str) {
    let mut offset = 0;
    while offset + 512 <= bytes.len() {
        let header = tar::Header::from_byte_slice(&bytes[offset..offset + 512]);
        let size = header.size().unwrap_or(0);
        if header.path_bytes().as_ref() == from.as_bytes() {
            let mut header = header.clone();
            let raw = header.as_old_mut();
            raw.name.fill(0);
            raw.name[..to.len()].copy_from_slice(to.as_bytes());
            header.set_cksum();
            bytes[offset..offset + 512].copy_from_slice(header.as_bytes());
            return;
        }
        offset += 512 + size.div_ceil(512) as usize * 512;
    }
    panic!("no member {from}");
}

/// Writes a hostile archive at the path given.
type MakeArchive = Box<dyn Fn(&Path)>;

/// A classic `docker save` archive whose `manifest.json` member is renamed to `name`.
fn manifest_json_renamed(name: &'static str) -> MakeArchive {
    Box::new(move |path: &Path| {
        docker_save(&[("simple", "it/simple:v1")], Style::Classic).write(path);
        let mut bytes = std::fs::read(path).unwrap();
        rename_member(&mut bytes, "manifest.json", name);
        std::fs::write(path, bytes).unwrap();
    })
}

#[test]
fn hostile_archives_are_refused_and_nothing_is_written() {
    let scratch = Scratch::new();
    let simple = Layout::fixture("simple").unwrap();
    let (config, layers) = simple
        .image_parts(&simple.main_ref().unwrap().digest)
        .unwrap();
    let cases: Vec<(&str, MakeArchive, &str)> = vec![
        (
            "traversal",
            manifest_json_renamed("../../manifest.json"),
            "contains `..`",
        ),
        (
            "absolute",
            manifest_json_renamed("/etc/manifest.json"),
            "is absolute",
        ),
        (
            "huge manifest.json",
            Box::new(|path: &Path| {
                // A 100 MiB manifest.json member, as a sparse file.
                let mut header = tar::Header::new_gnu();
                header.set_path("manifest.json").unwrap();
                header.set_size(100 << 20);
                header.set_mode(0o644);
                header.set_entry_type(tar::EntryType::Regular);
                header.set_cksum();
                std::fs::write(path, header.as_bytes()).unwrap();
                let file = std::fs::OpenOptions::new().write(true).open(path).unwrap();
                file.set_len(512 + (100 << 20) + 1024).unwrap();
            }),
            "limit",
        ),
        (
            "lying layer (classic)",
            Box::new(|path: &Path| {
                let mut members = docker_save(&[("simple", "it/simple:v1")], Style::Classic);
                let layer = members
                    .0
                    .iter_mut()
                    .find(|(n, _)| n.ends_with("layer.tar"))
                    .unwrap();
                let last = layer.1.len() - 1;
                layer.1[last] ^= 1;
                members.write(path);
            }),
            "diff_id",
        ),
        (
            "lying blob (Docker 25)",
            Box::new(move |path: &Path| {
                let mut members = docker_save(&[("simple", "it/simple:v1")], Style::WithOciLayout);
                let name = format!("blobs/sha256/{}", hex_of(&layers[1].digest));
                let blob = members.0.iter_mut().find(|(n, _)| *n == name).unwrap();
                let replacement = layers[0].digest.clone();
                *blob = (
                    name,
                    Layout::fixture("simple")
                        .unwrap()
                        .blob(&replacement)
                        .unwrap(),
                );
                members.write(path);
            }),
            "failed verification",
        ),
        (
            "missing layer",
            Box::new(|path: &Path| {
                let mut members = docker_save(&[("simple", "it/simple:v1")], Style::Classic);
                members
                    .0
                    .retain(|(n, _)| !n.ends_with("layer.tar") || members_first(n));
                members.write(path);
            }),
            "incomplete",
        ),
        (
            "missing config (Docker 25)",
            Box::new(move |path: &Path| {
                let mut members = docker_save(&[("simple", "it/simple:v1")], Style::WithOciLayout);
                let name = format!("blobs/sha256/{}", hex_of(&config.digest));
                members.0.retain(|(n, _)| *n != name);
                members.write(path);
            }),
            "incomplete",
        ),
        (
            "not a tar",
            Box::new(|path: &Path| std::fs::write(path, b"{\"just\": \"json\"}").unwrap()),
            "not a tar",
        ),
    ];
    for (what, make, message) in cases {
        let archive = archive_path(&scratch, "hostile.tar");
        make(&archive);
        for format in ["rootfs", "oci"] {
            let dest = scratch.dest("out");
            let stderr = fails(
                &run(
                    &scratch.home(),
                    &[
                        "pull",
                        "-q",
                        "--format",
                        format,
                        &format!("docker-archive:{}", archive.display()),
                        dest.to_str().unwrap(),
                    ],
                    None,
                ),
                6,
            );
            assert!(stderr.contains(message), "{what} ({format}): {stderr}");
            assert!(!stderr.contains("panicked"), "{what}: {stderr}");
            assert_eq!(
                scratch.out_entries(),
                Vec::<String>::new(),
                "{what}: something was written"
            );
        }
    }
}

/// Keeps the first of the fixture's layers in "missing layer" (the second goes).
fn members_first(name: &str) -> bool {
    let simple = Layout::fixture("simple").unwrap();
    let (_, layers) = simple
        .image_parts(&simple.main_ref().unwrap().digest)
        .unwrap();
    let first = uncompressed(
        &simple.blob(&layers[0].digest).unwrap(),
        &layers[0].media_type,
    );
    name == format!("{}/layer.tar", &sha256_digest(&first)[7..])
}

#[test]
fn docker_v2s2_converted_to_oci_reads_in_skopeo_and_umoci_and_is_kept_without_the_option() {
    let scratch = Scratch::new();
    let fixture = Layout::fixture("dockerv2").unwrap().main_ref().unwrap();
    assert_eq!(
        fixture.media_type,
        "application/vnd.docker.distribution.manifest.v2+json"
    );
    let source = format!("oci:{}:v1", fixture_layout("dockerv2").display());

    // Without the option: byte for byte, and Debian's umoci cannot read it.
    let pull_json = |dest: &Path, extra: &[&str]| -> serde_json::Value {
        let mut args = vec!["pull", "--json", "--format", "oci"];
        args.extend_from_slice(extra);
        args.extend([source.as_str(), dest.to_str().unwrap()]);
        serde_json::from_str(&ok(&run(&scratch.home(), &args, None))).unwrap()
    };
    let kept = scratch.dest("kept");
    let outcome = pull_json(&kept, &[]);
    assert_eq!(outcome["digest"], fixture.digest.as_str());
    assert!(outcome.get("convertedFrom").is_none());
    let kept_layout = Layout::open(&kept).unwrap();
    assert_eq!(kept_layout.main_ref().unwrap().digest, fixture.digest);

    let converted = scratch.dest("converted");
    let outcome = pull_json(&converted, &["--manifest-format", "oci"]);
    let digest = outcome["digest"].as_str().unwrap().to_string();
    assert_ne!(digest, fixture.digest);
    assert_eq!(outcome["convertedFrom"], fixture.digest.as_str());
    assert_eq!(
        outcome["mediaType"],
        "application/vnd.oci.image.manifest.v1+json"
    );
    let layout = Layout::open(&converted).unwrap();
    let (media_type, _, bytes) = layout.manifest("v1").unwrap();
    assert_eq!(media_type, "application/vnd.oci.image.manifest.v1+json");
    assert_eq!(sha256_digest(&bytes), digest);
    let manifest: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(
        manifest["annotations"]["io.acrpull.converted-from"],
        fixture.digest.as_str()
    );
    assert_eq!(
        manifest["config"]["mediaType"],
        "application/vnd.oci.image.config.v1+json"
    );
    // Config and layers are the same blobs.
    let (_, original_layers) = Layout::fixture("dockerv2")
        .unwrap()
        .image_parts(&fixture.digest)
        .unwrap();
    let (_, new_layers) = layout.image_parts(&digest).unwrap();
    assert_eq!(
        original_layers
            .iter()
            .map(|l| &l.digest)
            .collect::<Vec<_>>(),
        new_layers.iter().map(|l| &l.digest).collect::<Vec<_>>()
    );

    // skopeo and umoci read the converted layout; umoci's tree is acrpull's.
    assert_eq!(
        skopeo_raw_digest(&format!("oci:{}:v1", converted.display())),
        digest
    );
    let bundle = scratch.dir.path().join("bundle");
    let umoci_rootfs =
        umoci_unpack(&converted, "v1", &bundle).expect("umoci reads the converted layout");
    let rootfs = scratch.dest("rootfs");
    ok(&run(
        &scratch.home(),
        &["pull", "-q", &source, rootfs.to_str().unwrap()],
        None,
    ));
    assert_eq!(
        tree_snapshot(&umoci_rootfs).unwrap(),
        tree_snapshot(&rootfs).unwrap()
    );
    let refused = umoci_unpack(&kept, "v1", &scratch.dir.path().join("bundle-kept"));
    assert!(
        refused.is_err(),
        "umoci 0.4 was expected to refuse Docker media types"
    );

    // Meaningless for a root filesystem: a usage error, before anything is done.
    let stderr = fails(
        &run(
            &scratch.home(),
            &[
                "pull",
                "--manifest-format",
                "oci",
                &source,
                scratch.dest("no").to_str().unwrap(),
            ],
            None,
        ),
        2,
    );
    assert!(stderr.contains("--format oci"), "{stderr}");
}

#[test]
fn untagged_docker_25_archive_with_null_manifests_gets_the_manifest_docker_wrote() {
    // Docker 25.0 saves an untagged image with `"manifests": null` in index.json and
    // `"RepoTags": null`: manifest.json decides, and the manifest built from it is the one
    // Docker wrote into blobs/ (byte for byte: same digest).
    let scratch = Scratch::new();
    let plain = Layout::fixture("uncompressed").unwrap();
    let (config, layers) = plain
        .image_parts(&plain.main_ref().unwrap().digest)
        .unwrap();
    let written_by_docker = format!(
        r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{}","size":{},"platform":{{"architecture":"amd64","os":"linux"}}}},"layers":[{{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"{}","size":{}}}]}}"#,
        config.digest, config.size, layers[0].digest, layers[0].size
    );
    let mut members = Members::default();
    members.add(
        format!(
            "blobs/sha256/{}",
            &sha256_digest(written_by_docker.as_bytes())[7..]
        ),
        written_by_docker.clone().into_bytes(),
    );
    for digest in [&config.digest, &layers[0].digest] {
        members.add(
            format!("blobs/sha256/{}", hex_of(digest)),
            plain.blob(digest).unwrap(),
        );
    }
    members.add("oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#.to_vec());
    members.add(
        "index.json",
        br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":null}"#.to_vec(),
    );
    let manifest_json = serde_json::json!([{
        "Config": format!("blobs/sha256/{}", hex_of(&config.digest)),
        "RepoTags": null,
        "Layers": [format!("blobs/sha256/{}", hex_of(&layers[0].digest))],
    }]);
    members.add("manifest.json", serde_json::to_vec(&manifest_json).unwrap());
    let archive = archive_path(&scratch, "untagged.tar");
    members.write(&archive);
    let image = format!("docker-archive:{}", archive.display());
    let raw = run(&scratch.home(), &["inspect", "--raw", &image], None);
    ok(&raw);
    assert_eq!(String::from_utf8(raw.stdout).unwrap(), written_by_docker);
    let rootfs = scratch.dest("rootfs");
    ok(&run(
        &scratch.home(),
        &["pull", "-q", &image, rootfs.to_str().unwrap()],
        None,
    ));
    assert_eq!(
        tree_snapshot(&rootfs).unwrap(),
        umoci_tree("uncompressed", &scratch)
    );
    // In an oci-archive, the same index.json is a lie about the layout: refused.
    let stderr = fails(
        &run(
            &scratch.home(),
            &["inspect", &format!("oci-archive:{}", archive.display())],
            None,
        ),
        6,
    );
    assert!(stderr.contains("index.json"), "{stderr}");
}

#[test]
fn pushing_a_lying_archive_fails_with_the_integrity_class_and_tags_nothing() {
    // A Docker 25 archive whose layer blob does not hash to its name: the push verifies what
    // it relays, so the lie is exit 6, not a refusal by the registry, and the tag never exists.
    let registry = Registry::start(RegistryOptions::anonymous()).expect("registry");
    let scratch = Scratch::new();
    let simple = Layout::fixture("simple").unwrap();
    let (_, layers) = simple
        .image_parts(&simple.main_ref().unwrap().digest)
        .unwrap();
    let mut members = docker_save(&[("simple", "it/simple:v1")], Style::WithOciLayout);
    let name = format!("blobs/sha256/{}", hex_of(&layers[1].digest));
    let blob = members.0.iter_mut().find(|(n, _)| *n == name).unwrap();
    let last = blob.1.len() - 1;
    blob.1[last] ^= 0xff;
    let archive = archive_path(&scratch, "lying.tar");
    members.write(&archive);
    let target = format!("{}/it/lying:v1", registry.host());
    for command in ["push", "copy"] {
        let stderr = fails(
            &run(
                &scratch.home(),
                &[
                    command,
                    "-q",
                    &format!("docker-archive:{}", archive.display()),
                    &target,
                ],
                None,
            ),
            6,
        );
        assert!(stderr.contains(&layers[1].digest), "{command}: {stderr}");
    }
    assert!(
        skopeo(&[
            "inspect",
            "--raw",
            "--tls-verify=false",
            &format!("docker://{target}")
        ])
        .is_err(),
        "the tag was pushed"
    );
}

#[test]
fn classic_archive_layers_compressed_with_zstd_are_recognised_by_their_bytes() {
    let scratch = Scratch::new();
    let archive = archive_path(&scratch, "zstd.tar");
    docker_save(&[("zstd", "it/zstd:v1")], Style::ClassicCompressed).write(&archive);
    let image = format!("docker-archive:{}", archive.display());
    let raw = run(&scratch.home(), &["inspect", "--raw", &image], None);
    let manifest: serde_json::Value = serde_json::from_str(&ok(&raw)).unwrap();
    let zstd = Layout::fixture("zstd").unwrap();
    let (_, layers) = zstd.image_parts(&zstd.main_ref().unwrap().digest).unwrap();
    for (built, original) in manifest["layers"].as_array().unwrap().iter().zip(&layers) {
        assert_eq!(built["digest"], original.digest.as_str());
        assert_eq!(built["mediaType"], original.media_type.as_str());
    }
    let from_archive = scratch.dest("from-archive");
    let from_layout = scratch.dest("from-layout");
    ok(&run(
        &scratch.home(),
        &["pull", "-q", &image, from_archive.to_str().unwrap()],
        None,
    ));
    let layout = format!("oci:{}:v1", fixture_layout("zstd").display());
    ok(&run(
        &scratch.home(),
        &["pull", "-q", &layout, from_layout.to_str().unwrap()],
        None,
    ));
    assert_eq!(
        tree_snapshot(&from_archive).unwrap(),
        tree_snapshot(&from_layout).unwrap()
    );
}

#[test]
fn copy_with_manifest_format_oci_pushes_the_converted_manifest() {
    let registry = Registry::start(RegistryOptions::anonymous()).expect("registry");
    let scratch = Scratch::new();
    let original = Layout::fixture("dockerv2")
        .unwrap()
        .main_ref()
        .unwrap()
        .digest;
    let source = format!("oci:{}:v1", fixture_layout("dockerv2").display());
    let target = format!("{}/it/converted:v1", registry.host());
    let stdout = ok(&run(
        &scratch.home(),
        &[
            "copy",
            "--json",
            "--manifest-format",
            "oci",
            &source,
            &target,
        ],
        None,
    ));
    let outcome: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(outcome["convertedFrom"], original.as_str());
    let raw = skopeo(&[
        "inspect",
        "--raw",
        "--tls-verify=false",
        &format!("docker://{target}"),
    ])
    .expect("skopeo reads the pushed manifest");
    assert_eq!(outcome["digest"], sha256_digest(&raw).as_str());
    let manifest: serde_json::Value = serde_json::from_slice(&raw).unwrap();
    assert_eq!(
        manifest["mediaType"],
        "application/vnd.oci.image.manifest.v1+json"
    );
    assert_eq!(
        manifest["annotations"]["io.acrpull.converted-from"],
        original.as_str()
    );
}
