//! Conformance with the images other projects publish (issue 16): each shape that a real
//! image takes, built by our fixture code (`fixtures/make_fixtures.py`, layout `conformance`,
//! one tag per shape), pulled from the real `docker-registry` and from the layout, and checked
//! against skopeo and umoci where they can read it.

use std::io::Read as _;
use std::net::TcpListener;
use std::os::unix::fs::FileTypeExt as _;
use std::path::Path;
use std::process::Command;

use acrpull_testenv::fixtures::{fixture_layout, tree_snapshot, umoci_unpack, CONFORMANCE};
use acrpull_testenv::registry::{
    seed, seed_conformance, skopeo_copy, store_schema1, Registry, RegistryOptions,
};

use crate::support::{acrpull, fails, layout_ref_names, must, ok, run, skopeo_raw_digest, Scratch};

fn registry() -> Registry {
    Registry::start(RegistryOptions::anonymous()).expect("registry starts")
}

/// `oci:<conformance layout>:TAG`.
fn layout_ref(tag: &str) -> String {
    format!("oci:{}:{tag}", fixture_layout(CONFORMANCE).display())
}

fn pull(scratch: &Scratch, args: &[&str]) -> std::process::Output {
    run(&scratch.home(), args, None)
}

fn index_json(dest: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(dest.join("index.json")).expect("index.json"))
        .expect("valid index.json")
}

fn no_panic(stderr: &str) {
    assert!(!stderr.contains("panicked"), "{stderr}");
}

/// Item 1: index entries without `platform` are candidates, matched by their config (as
/// containerd does); the attestation entry beside them is never chosen.
#[test]
fn index_entries_without_platform_are_matched_by_their_config() {
    let registry = registry();
    seed_conformance(&registry, "unnamed-platforms", "conf/unnamed:v1").expect("seeded");
    let image = format!("{}/conf/unnamed:v1", registry.host());
    let scratch = Scratch::new();
    for (n, (source, platform, arch)) in [
        (image.as_str(), None, "amd64"),
        (image.as_str(), Some("linux/arm64"), "arm64"),
        (
            &*layout_ref("unnamed-platforms"),
            Some("linux/arm64/v8"),
            "arm64",
        ),
    ]
    .into_iter()
    .enumerate()
    {
        let dest = scratch.dest(&format!("rootfs{n}"));
        let mut args = vec!["pull", "--json", "--no-cache"];
        if let Some(platform) = platform {
            args.extend(["--platform", platform]);
        }
        args.extend([source, dest.to_str().unwrap()]);
        let summary: serde_json::Value = serde_json::from_str(&ok(&pull(&scratch, &args))).unwrap();
        assert_eq!(
            std::fs::read_to_string(dest.join("etc/arch")).unwrap(),
            format!("{arch}\n")
        );
        assert!(
            summary["platform"].as_str().unwrap().contains(arch),
            "{summary}"
        );
    }
    let dest = scratch.dest("s390x");
    let stderr = fails(
        &pull(
            &scratch,
            &[
                "pull",
                "--platform",
                "linux/s390x",
                &image,
                dest.to_str().unwrap(),
            ],
        ),
        4,
    );
    assert!(
        stderr.contains("it has: linux/amd64, linux/arm64/v8"),
        "{stderr}"
    );
    assert!(!dest.exists());
    // The whole index round-trips, byte for byte, as skopeo sees it.
    layout_round_trips(&scratch, &image, &["--platform", "all"]);
}

/// Pull `image` (tagged `v1`) into an OCI layout with `extra` flags: skopeo reads there the
/// manifest the registry serves, byte for byte.
fn layout_round_trips(scratch: &Scratch, image: &str, extra: &[&str]) {
    let dest = scratch.dest("round-trip");
    let mut args = vec!["pull", "-q", "--format", "oci"];
    args.extend_from_slice(extra);
    args.extend([image, dest.to_str().unwrap()]);
    ok(&pull(scratch, &args));
    assert_eq!(
        skopeo_raw_digest(&format!("oci:{}:v1", dest.display())),
        skopeo_raw_digest(&format!("docker://{image}"))
    );
}

/// Items 1 and 2: an index holding only attestations names no platform: exit 4 with a
/// sentence, never an empty "it has:" list, never a panic.
#[test]
fn an_index_of_attestations_only_is_not_found_with_a_sentence() {
    let registry = registry();
    seed_conformance(&registry, "attestations-only", "conf/att:v1").expect("seeded");
    let scratch = Scratch::new();
    for source in [
        format!("{}/conf/att:v1", registry.host()),
        layout_ref("attestations-only"),
    ] {
        let dest = scratch.dest("rootfs");
        let stderr = fails(
            &pull(&scratch, &["pull", &source, dest.to_str().unwrap()]),
            4,
        );
        no_panic(&stderr);
        assert!(!stderr.contains("it has: \n"), "{stderr}");
        assert!(
            stderr.contains("holds no image that names a platform"),
            "{stderr}"
        );
        assert!(stderr.contains("--platform all --format oci"), "{stderr}");
        assert_eq!(scratch.out_entries(), Vec::<String>::new());
    }
}

/// Item 2: an empty index (`"manifests": []`) is written whole with `--platform all --format
/// oci` (as `skopeo copy --all` does) and refused for one platform (exit 4), from a registry
/// and from a layout; never a panic.
#[test]
fn an_empty_index_is_copied_whole_or_not_found_never_a_panic() {
    let registry = registry();
    let digest = seed_conformance(&registry, "empty-index", "conf/empty:v1").expect("seeded");
    let scratch = Scratch::new();
    for (n, source) in [
        format!("{}/conf/empty:v1", registry.host()),
        layout_ref("empty-index"),
    ]
    .iter()
    .enumerate()
    {
        let dest = scratch.dest(&format!("layout{n}"));
        let out = pull(
            &scratch,
            &[
                "pull",
                "--json",
                "--format",
                "oci",
                "--platform",
                "all",
                source,
                dest.to_str().unwrap(),
            ],
        );
        let summary: serde_json::Value = serde_json::from_str(&ok(&out)).unwrap();
        assert_eq!(summary["digest"], digest.as_str());
        assert_eq!(summary["layers"], serde_json::json!([]));
        let entry = &index_json(&dest)["manifests"][0];
        assert_eq!(entry["digest"], digest.as_str());
        let tag = entry["annotations"]["org.opencontainers.image.ref.name"]
            .as_str()
            .unwrap();
        assert_eq!(
            skopeo_raw_digest(&format!("oci:{}:{tag}", dest.display())),
            digest
        );
        for format in ["rootfs", "oci"] {
            let dest = scratch.dest("one");
            let stderr = fails(
                &pull(
                    &scratch,
                    &["pull", "--format", format, source, dest.to_str().unwrap()],
                ),
                4,
            );
            no_panic(&stderr);
            assert!(!dest.exists());
        }
    }
}

/// Item 2: a manifest without layers unpacks to an empty root filesystem, as umoci's.
#[test]
fn a_manifest_without_layers_unpacks_to_an_empty_root_like_umoci() {
    let registry = registry();
    seed_conformance(&registry, "no-layers", "conf/nolayers:v1").expect("seeded");
    let scratch = Scratch::new();
    let dest = scratch.dest("rootfs");
    let image = format!("{}/conf/nolayers:v1", registry.host());
    ok(&pull(
        &scratch,
        &["pull", "-q", &image, dest.to_str().unwrap()],
    ));
    let umoci = umoci_unpack(
        &fixture_layout(CONFORMANCE),
        "no-layers",
        &scratch.dir.path().join("umoci"),
    )
    .expect("umoci unpacks");
    assert_eq!(
        tree_snapshot(&dest).unwrap(),
        tree_snapshot(&umoci).unwrap()
    );
    assert_eq!(tree_snapshot(&dest).unwrap(), Vec::<String>::new());
}

/// Shapes that already work: an artifact with an empty config and a `subject` is kept whole
/// in a layout (digests as skopeo sees them) and is not mistaken for a root filesystem.
#[test]
fn an_artifact_with_a_subject_is_kept_in_a_layout_and_refused_as_a_root() {
    let registry = registry();
    seed_conformance(&registry, "artifact", "conf/artifact:v1").expect("seeded");
    let image = format!("{}/conf/artifact:v1", registry.host());
    let scratch = Scratch::new();
    layout_round_trips(&scratch, &image, &[]);
    let dest = scratch.dest("rootfs");
    let stderr = fails(
        &pull(&scratch, &["pull", &image, dest.to_str().unwrap()]),
        6,
    );
    assert!(stderr.contains("is an artifact"), "{stderr}");
    assert!(!dest.exists());
}

/// Item 3: schema 1 from a registry (re-signed on every GET, so its body never hashes to the
/// announced digest) is named as unsupported, with a way out, not called corrupt.
#[test]
fn schema1_from_a_registry_is_unsupported_not_corrupt() {
    let registry = registry();
    store_schema1(&registry, "conf/schema1", "v1").expect("stored");
    let scratch = Scratch::new();
    let dest = scratch.dest("rootfs");
    let image = format!("{}/conf/schema1:v1", registry.host());
    for format in ["rootfs", "oci"] {
        let stderr = fails(
            &pull(
                &scratch,
                &["pull", "--format", format, &image, dest.to_str().unwrap()],
            ),
            6,
        );
        assert!(stderr.contains("schema 1 is not supported"), "{stderr}");
        assert!(stderr.contains("skopeo copy --format v2s2"), "{stderr}");
        assert!(!stderr.contains("corrupt"), "{stderr}");
        assert!(!dest.exists());
    }
}

/// Item 4: `pull -f` keeps every listed image reachable when tags repeat: the full reference
/// names those, the plain tag the others; skopeo and acrpull read each back by that name.
#[test]
fn a_reference_list_whose_tags_repeat_keeps_every_image() {
    let registry = registry();
    let host = registry.host();
    let mut digests = Vec::new();
    for (fixture, target) in [
        ("simple", "it/a:latest"),
        ("whiteouts", "it/b:latest"),
        ("uncompressed", "it/c:latest"),
        ("zstd", "it/d:only"),
    ] {
        digests.push(seed(&registry, fixture, target).expect("seeded"));
    }
    let scratch = Scratch::new();
    let list = scratch.dir.path().join("refs.txt");
    std::fs::write(
        &list,
        format!("{host}/it/a:latest\n{host}/it/b:latest\n# comment\n{host}/it/c:latest\n{host}/it/d:only\n{host}/it/a:latest\n"),
    )
    .unwrap();
    let dest = scratch.dest("layout");
    ok(&pull(
        &scratch,
        &[
            "pull",
            "-q",
            "--format",
            "oci",
            "-f",
            list.to_str().unwrap(),
            dest.to_str().unwrap(),
        ],
    ));
    let mut names = layout_ref_names(&dest);
    let expected = [
        format!("{host}/it/a:latest"),
        format!("{host}/it/b:latest"),
        format!("{host}/it/c:latest"),
        "only".to_string(),
    ];
    names.sort();
    assert_eq!(names, expected);
    for (name, digest) in expected.iter().zip(&digests) {
        let layout_name = format!("oci:{}:{name}", dest.display());
        assert_eq!(&skopeo_raw_digest(&layout_name), digest, "{name}");
        let rootfs = scratch.dest("rootfs");
        ok(&pull(
            &scratch,
            &["pull", "-q", &layout_name, rootfs.to_str().unwrap()],
        ));
        std::fs::remove_dir_all(&rootfs).unwrap();
    }
    // Images from layouts that share a tag cannot be named apart: refused before writing.
    std::fs::write(
        &list,
        format!(
            "oci:{}:v1\noci:{}:v1\n",
            fixture_layout("simple").display(),
            fixture_layout("zstd").display()
        ),
    )
    .unwrap();
    let other = scratch.dest("refused");
    let stderr = fails(
        &pull(
            &scratch,
            &[
                "pull",
                "--format",
                "oci",
                "-f",
                list.to_str().unwrap(),
                other.to_str().unwrap(),
            ],
        ),
        2,
    );
    assert!(stderr.contains("shares the tag `v1`"), "{stderr}");
    assert!(!other.exists());
}

/// Item 5: `"manifests": null` in a layout's `index.json` is bad content (exit 6), not I/O.
#[test]
fn null_manifests_in_index_json_is_an_integrity_error() {
    let scratch = Scratch::new();
    let layout = scratch.dir.path().join("null-layout");
    std::fs::create_dir_all(layout.join("blobs/sha256")).unwrap();
    std::fs::write(
        layout.join("oci-layout"),
        r#"{"imageLayoutVersion":"1.0.0"}"#,
    )
    .unwrap();
    std::fs::write(
        layout.join("index.json"),
        r#"{"schemaVersion":2,"manifests":null}"#,
    )
    .unwrap();
    let dest = scratch.dest("rootfs");
    let source = format!("oci:{}", layout.display());
    let stderr = fails(
        &pull(&scratch, &["pull", &source, dest.to_str().unwrap()]),
        6,
    );
    assert!(stderr.contains("index.json"), "{stderr}");
    assert!(!dest.exists());
}

/// The required parts of an OCI runtime-spec `config.json` (runtime-spec 1.0
/// `schema/config-schema.json`, `config-linux.json`, `defs.json`; Apache-2.0), checked by code.
fn assert_runtime_spec(config: &serde_json::Value) {
    let text = |v: &serde_json::Value| v.as_str().map(str::to_string);
    let strings = |v: &serde_json::Value| -> Vec<String> {
        v.as_array()
            .unwrap_or_else(|| panic!("array expected: {v}"))
            .iter()
            .map(|s| text(s).unwrap_or_else(|| panic!("string expected: {s}")))
            .collect()
    };
    let version = text(&config["ociVersion"]).expect("ociVersion");
    assert!(version.split('.').count() == 3, "ociVersion {version}");
    assert!(text(&config["root"]["path"]).is_some(), "root.path");
    let process = &config["process"];
    let cwd = text(&process["cwd"]).expect("process.cwd");
    assert!(
        cwd.starts_with('/') && !cwd.split('/').any(|c| c == ".."),
        "cwd {cwd}"
    );
    assert!(!strings(&process["args"]).is_empty(), "process.args");
    for variable in strings(&process["env"]) {
        assert!(variable.contains('='), "env {variable}");
    }
    for id in ["uid", "gid"] {
        assert!(process["user"][id]
            .as_u64()
            .is_some_and(|n| n <= u64::from(u32::MAX)));
    }
    if let Some(gids) = process["user"].get("additionalGids") {
        assert!(gids
            .as_array()
            .unwrap()
            .iter()
            .all(|g| g.as_u64().is_some()));
    }
    for set in [
        "bounding",
        "effective",
        "inheritable",
        "permitted",
        "ambient",
    ] {
        assert!(strings(&process["capabilities"][set])
            .iter()
            .all(|c| c.starts_with("CAP_")));
    }
    for mount in config["mounts"].as_array().expect("mounts") {
        let destination = text(&mount["destination"]).expect("mount destination");
        assert!(
            destination.starts_with('/') && !destination.split('/').any(|c| c == ".."),
            "mount {destination}"
        );
        if let Some(options) = mount.get("options") {
            strings(options);
        }
    }
    let kinds = ["pid", "network", "mount", "ipc", "uts", "user", "cgroup"];
    for namespace in config["linux"]["namespaces"]
        .as_array()
        .expect("namespaces")
    {
        assert!(kinds.contains(&text(&namespace["type"]).unwrap().as_str()));
    }
    for value in config["annotations"]
        .as_object()
        .expect("annotations")
        .values()
    {
        assert!(value.is_string());
    }
}

/// Runs `umoci unpack` (as root: not rootless, like acrpull's bundle here) and returns its
/// config.json.
fn umoci_config(tag: &str, bundle: &Path) -> serde_json::Value {
    must(Command::new("umoci").args([
        "unpack",
        "--image",
        &format!("{}:{tag}", fixture_layout(CONFORMANCE).display()),
        bundle.to_str().unwrap(),
    ]));
    serde_json::from_slice(&std::fs::read(bundle.join("config.json")).unwrap()).unwrap()
}

/// Item 6 (and issue 15 item 10): `--bundle` writes what umoci writes, field by field, with
/// the differences listed here on purpose, and a valid runtime spec: `args` never empty,
/// `HOME` and `additionalGids` from the image's passwd and group, `..` never in a path.
#[test]
fn bundle_config_matches_umoci_field_by_field() {
    let scratch = Scratch::new();
    let dest = scratch.dest("bundle");
    ok(&pull(
        &scratch,
        &[
            "pull",
            "-q",
            "--bundle",
            &layout_ref("bundle-edge"),
            dest.to_str().unwrap(),
        ],
    ));
    let ours: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dest.join("config.json")).unwrap()).unwrap();
    assert_runtime_spec(&ours);
    let process = &ours["process"];
    assert_eq!(process["args"], serde_json::json!(["sh"]));
    assert!(process["env"]
        .as_array()
        .unwrap()
        .contains(&serde_json::json!("HOME=/root")));
    assert_eq!(
        process["user"]["additionalGids"],
        serde_json::json!([0, 1, 10])
    );
    assert_eq!(process["cwd"], "/w");
    let volumes: Vec<&str> = ours["mounts"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["source"] == "none")
        .map(|m| m["destination"].as_str().unwrap())
        .collect();
    assert_eq!(volumes, ["/data", "/etc", "/rel/x"]);

    let mut theirs = umoci_config("bundle-edge", &scratch.dir.path().join("umoci"));
    let mut ours = ours.clone();
    // On purpose: our hostname; no terminal (a bundle runs detached, `runc run -d`); the
    // runtime-spec version we write. umoci copies `..` paths verbatim (cwd `../../w`, an
    // invalid relative cwd) and orders volumes at random: those we clean and sort.
    for (pointer, umoci, acrpull) in [
        ("/hostname", "umoci-default", "acrpull"),
        ("/ociVersion", "1.0.0", "1.0.2"),
        ("/process/cwd", "../../w", "/w"),
    ] {
        assert_eq!(theirs.pointer(pointer).unwrap(), umoci, "{pointer}");
        assert_eq!(ours.pointer(pointer).unwrap(), acrpull, "{pointer}");
        *theirs.pointer_mut(pointer).unwrap() = acrpull.into();
    }
    assert_eq!(theirs["process"]["terminal"], true);
    theirs["process"]["terminal"] = false.into();
    let sorted_mounts = |config: &mut serde_json::Value| {
        let mounts = config["mounts"].as_array_mut().unwrap();
        for mount in mounts.iter_mut() {
            let destination = mount["destination"].as_str().unwrap().to_string();
            let cleaned = match destination.as_str() {
                "/../../etc" => "/etc",
                "rel/x" => "/rel/x",
                other => other,
            };
            mount["destination"] = cleaned.into();
        }
        mounts.sort_by_key(|m| m["destination"].as_str().unwrap().to_string());
    };
    sorted_mounts(&mut theirs);
    sorted_mounts(&mut ours);
    assert_eq!(ours, theirs);

    // The everyday image too: identical but for the same three fields.
    let dest = scratch.dest("simple");
    ok(&pull(
        &scratch,
        &[
            "pull",
            "-q",
            "--bundle",
            &format!("oci:{}:v1", fixture_layout("simple").display()),
            dest.to_str().unwrap(),
        ],
    ));
    let mut ours: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dest.join("config.json")).unwrap()).unwrap();
    assert_runtime_spec(&ours);
    let bundle = scratch.dir.path().join("umoci-simple");
    must(Command::new("umoci").args([
        "unpack",
        "--image",
        &format!("{}:v1", fixture_layout("simple").display()),
        bundle.to_str().unwrap(),
    ]));
    let mut theirs: serde_json::Value =
        serde_json::from_slice(&std::fs::read(bundle.join("config.json")).unwrap()).unwrap();
    for pointer in ["/hostname", "/ociVersion", "/process/terminal"] {
        *theirs.pointer_mut(pointer).unwrap() = serde_json::Value::Null;
        *ours.pointer_mut(pointer).unwrap() = serde_json::Value::Null;
    }
    assert_eq!(ours, theirs);
}

/// Item 7: an explicit `--platform` that a single-platform image does not match is refused
/// (not found, as containerd does); without `--platform` the pull goes on with a warning.
#[test]
fn a_single_platform_image_is_held_to_an_explicit_platform() {
    let registry = registry();
    seed_conformance(&registry, "arm64-only", "conf/arm:v1").expect("seeded");
    let image = format!("{}/conf/arm:v1", registry.host());
    let scratch = Scratch::new();
    for source in [image.as_str(), &*layout_ref("arm64-only")] {
        let dest = scratch.dest("rootfs");
        let stderr = fails(
            &pull(
                &scratch,
                &[
                    "pull",
                    "--platform",
                    "linux/amd64",
                    source,
                    dest.to_str().unwrap(),
                ],
            ),
            4,
        );
        assert!(
            stderr.contains("has no image for platform linux/amd64; it has: linux/arm64/v8"),
            "{stderr}"
        );
        assert!(stderr.contains("--platform linux/arm64/v8"), "{stderr}");
        assert!(!dest.exists());
        let out = pull(&scratch, &["pull", source, dest.to_str().unwrap()]);
        ok(&out);
        let stderr = String::from_utf8_lossy(&out.stderr);
        if acrpull::Platform::host().architecture != "arm64" {
            assert!(stderr.contains("warning:"), "{stderr}");
            assert!(
                stderr.contains("single-platform image for linux/arm64/v8"),
                "{stderr}"
            );
        }
        std::fs::remove_dir_all(&dest).unwrap();
        let out = pull(
            &scratch,
            &[
                "pull",
                "--platform",
                "linux/arm64",
                source,
                dest.to_str().unwrap(),
            ],
        );
        ok(&out);
        assert!(!String::from_utf8_lossy(&out.stderr).contains("warning:"));
        std::fs::remove_dir_all(&dest).unwrap();
    }
}

/// Item 8: a layer written by Python's `tarfile` (a FIFO with NUL-filled device fields, and
/// a device patched the same way) unpacks, from a registry and a layout, as umoci unpacks it.
#[test]
fn python_written_fifo_and_device_entries_unpack_like_umoci() {
    let registry = registry();
    seed_conformance(&registry, "python-tar", "conf/py:v1").expect("seeded");
    let scratch = Scratch::new();
    // As root, umoci creates the device as acrpull does (rootless, it writes an empty file).
    let root = is_root();
    let bundle = scratch.dir.path().join("umoci");
    let mut umoci = Command::new("umoci");
    umoci.arg("unpack");
    if !root {
        umoci.arg("--rootless");
    }
    must(umoci.args([
        "--image",
        &format!("{}:python-tar", fixture_layout(CONFORMANCE).display()),
        bundle.to_str().unwrap(),
    ]));
    let umoci = bundle.join("rootfs");
    for (n, source) in [
        format!("{}/conf/py:v1", registry.host()),
        layout_ref("python-tar"),
    ]
    .iter()
    .enumerate()
    {
        let dest = scratch.dest(&format!("rootfs{n}"));
        ok(&pull(
            &scratch,
            &["pull", "-q", source, dest.to_str().unwrap()],
        ));
        let fifo = std::fs::symlink_metadata(dest.join("run/fifo")).unwrap();
        assert!(fifo.file_type().is_fifo());
        assert_eq!(
            tree_snapshot(&dest).unwrap(),
            tree_snapshot(&umoci).unwrap()
        );
        if root {
            use std::os::unix::fs::MetadataExt as _;
            let device = std::fs::symlink_metadata(dest.join("dev/nulled")).unwrap();
            assert!(device.file_type().is_char_device());
            assert_eq!(device.rdev(), 0);
        }
    }
}

fn is_root() -> bool {
    let id = must(Command::new("id").arg("-u"));
    String::from_utf8_lossy(&id.stdout).trim() == "0"
}

/// A loopback listener standing in for an HTTP(S) proxy: any request to a host other than the
/// registry (which `NO_PROXY` exempts) reaches it, so an untouched listener proves that no
/// other host was contacted.
struct RecordingProxy(TcpListener);

impl RecordingProxy {
    fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        Self(listener)
    }

    fn url(&self) -> String {
        format!("http://{}", self.0.local_addr().unwrap())
    }

    /// Connections made to it (each would have been a request through the proxy).
    fn connections(&self) -> usize {
        let mut count = 0;
        while let Ok((mut stream, _)) = self.0.accept() {
            let mut buffer = [0u8; 256];
            let _ = stream.set_nonblocking(true);
            let _ = stream.read(&mut buffer);
            count += 1;
        }
        count
    }
}

fn pull_through_proxy(
    scratch: &Scratch,
    proxy: &RecordingProxy,
    args: &[&str],
) -> std::process::Output {
    acrpull(&scratch.home())
        .args(args)
        .env("HTTPS_PROXY", proxy.url())
        .env("HTTP_PROXY", proxy.url())
        .env("NO_PROXY", "127.0.0.1,localhost")
        .output()
        .expect("acrpull runs")
}

/// Item 10: foreign / non-distributable layers are fetched from the image's source like any
/// blob, never from their `urls`: from a layout that holds them every output works (and keeps
/// the descriptor with its `urls`); from a registry without them the pull fails (exit 4)
/// naming the layer, and no other host is contacted. Once copied into a registry (`acrpull
/// copy` uploads every blob it holds), they pull like any layer.
#[test]
fn foreign_layers_come_from_the_source_never_from_their_urls() {
    let scratch = Scratch::new();
    for tag in ["foreign-oci", "foreign-docker"] {
        let dest = scratch.dest(&format!("{tag}-rootfs"));
        ok(&pull(
            &scratch,
            &["pull", "-q", &layout_ref(tag), dest.to_str().unwrap()],
        ));
        assert!(dest.join("usr/bin/hello").is_file());
        let layout = scratch.dest(&format!("{tag}-layout"));
        ok(&pull(
            &scratch,
            &[
                "pull",
                "-q",
                "--format",
                "oci",
                &layout_ref(tag),
                layout.to_str().unwrap(),
            ],
        ));
        let raw = Command::new(env!("CARGO_BIN_EXE_acrpull"))
            .args([
                "inspect",
                "--raw",
                &format!("oci:{}:{tag}", layout.display()),
            ])
            .output()
            .unwrap();
        assert!(String::from_utf8_lossy(&raw.stdout).contains("https://foreign.example/layers/"));
    }
    let umoci = umoci_unpack(
        &fixture_layout(CONFORMANCE),
        "foreign-oci",
        &scratch.dir.path().join("umoci"),
    )
    .expect("umoci unpacks");
    assert_eq!(
        tree_snapshot(&scratch.dest("foreign-oci-rootfs")).unwrap(),
        tree_snapshot(&umoci).unwrap()
    );

    // Registries accept foreign URLs only where configured (Docker Hub, MCR and ACR do).
    let registry = Registry::start(RegistryOptions::anonymous().allow_foreign_urls())
        .expect("registry starts");
    seed_conformance(&registry, "foreign-oci", "conf/foreign:v1").expect("seeded");
    let image = format!("{}/conf/foreign:v1", registry.host());
    let proxy = RecordingProxy::start();
    for format in ["rootfs", "oci"] {
        let dest = scratch.dest(&format!("registry-{format}"));
        let out = pull_through_proxy(
            &scratch,
            &proxy,
            &[
                "pull",
                "--no-cache",
                "--format",
                format,
                &image,
                dest.to_str().unwrap(),
            ],
        );
        let stderr = fails(&out, 4);
        assert!(
            stderr.contains("foreign (non-distributable) layer"),
            "{stderr}"
        );
        assert!(stderr.contains("foreign.example"), "{stderr}");
        assert!(!dest.exists());
    }
    assert_eq!(proxy.connections(), 0, "a foreign URL was contacted");

    let copied = format!("{}/conf/foreign-copied:v1", registry.host());
    ok(&run(
        &scratch.home(),
        &["copy", "-q", &layout_ref("foreign-oci"), &copied],
        None,
    ));
    let dest = scratch.dest("copied");
    ok(&pull_through_proxy(
        &scratch,
        &proxy,
        &["pull", "-q", "--no-cache", &copied, dest.to_str().unwrap()],
    ));
    assert!(dest.join("usr/bin/hello").is_file());
    assert_eq!(proxy.connections(), 0);
    // skopeo reads the copied image as the layout holds it.
    let check = scratch.dir.path().join("skopeo-layout");
    skopeo_copy(
        &format!("docker://{copied}"),
        &format!("oci:{}:v1", check.display()),
        &["--preserve-digests"],
    )
    .expect("skopeo reads it");
    assert_eq!(
        skopeo_raw_digest(&format!("oci:{}:v1", check.display())),
        skopeo_raw_digest(&layout_ref("foreign-oci"))
    );
}
