//! Pulls into OCI image layouts from the real `docker-registry`, cross-checked with skopeo
//! and umoci.

use acrpull_testenv::fixtures::{fixture_layout, Layout};
use acrpull_testenv::registry::{seed, skopeo_copy, Registry, RegistryOptions};

use crate::support::{fails, must, ok, run, skopeo_raw_digest, Scratch};

fn registry_with(fixture: &str, repo: &str) -> Registry {
    let registry = Registry::start(RegistryOptions::anonymous()).expect("registry starts");
    seed(&registry, fixture, &format!("{repo}:v1")).expect("seeded");
    registry
}

fn index_json(dest: &std::path::Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(dest.join("index.json")).expect("index.json"))
        .expect("valid index.json")
}

#[test]
fn oci_layout_keeps_the_registry_manifest_and_round_trips_through_skopeo_and_umoci() {
    let registry = registry_with("simple", "it/simple");
    let scratch = Scratch::new();
    let dest = scratch.dest("layout");
    let image = format!("{}/it/simple:v1", registry.host());
    let stdout = ok(&run(
        &scratch.home(),
        &[
            "pull",
            "--format",
            "oci",
            "--json",
            &image,
            dest.to_str().unwrap(),
        ],
        None,
    ));
    let summary: serde_json::Value = serde_json::from_str(&stdout).expect("--json is JSON");
    let served = skopeo_raw_digest(&format!("docker://{image}"));
    assert_eq!(summary["digest"], served.as_str());
    assert_eq!(summary["format"], "oci");
    assert_eq!(summary["layers"].as_array().map(Vec::len), Some(2));
    assert!(summary["bytesDownloaded"].as_u64().unwrap() > 0);
    // The layout holds the exact manifest bytes the registry served, under the tag.
    let layout_ref = format!("oci:{}:v1", dest.display());
    assert_eq!(skopeo_raw_digest(&layout_ref), served);
    assert_eq!(
        index_json(&dest)["manifests"][0]["annotations"]["org.opencontainers.image.ref.name"],
        "v1"
    );
    // umoci unpacks it and skopeo pushes it back unchanged.
    let bundle = scratch.dir.path().join("bundle");
    must(std::process::Command::new("umoci").args([
        "unpack",
        "--rootless",
        "--image",
        &format!("{}:v1", dest.display()),
        bundle.to_str().unwrap(),
    ]));
    assert!(bundle.join("rootfs").is_dir());
    let copy = format!("docker://{}/it/copy:v1", registry.host());
    skopeo_copy(&layout_ref, &copy, &["--preserve-digests"]).expect("skopeo pushes the layout");
    assert_eq!(skopeo_raw_digest(&copy), served);
    assert_eq!(scratch.out_entries(), vec!["layout"]);
}

#[test]
fn shorthand_without_subcommand_and_second_image_into_the_same_layout() {
    let registry = registry_with("simple", "it/a");
    seed(&registry, "whiteouts", "it/b:v1").expect("seeded");
    let scratch = Scratch::new();
    let dest = scratch.dest("layout");
    let d = dest.to_str().unwrap();
    ok(&run(
        &scratch.home(),
        &[
            "--format",
            "oci",
            "-q",
            &format!("{}/it/a:v1", registry.host()),
            d,
        ],
        None,
    ));
    let blobs_before = std::fs::read_dir(dest.join("blobs/sha256"))
        .unwrap()
        .count();
    ok(&run(
        &scratch.home(),
        &[
            "pull",
            "--format",
            "oci",
            "-q",
            &format!("{}/it/b:v1", registry.host()),
            d,
        ],
        None,
    ));
    // Same tag `v1` from another repository replaces the entry, as skopeo does.
    assert_eq!(index_json(&dest)["manifests"].as_array().unwrap().len(), 1);
    let blobs_after = std::fs::read_dir(dest.join("blobs/sha256"))
        .unwrap()
        .count();
    assert!(blobs_after > blobs_before);
    // Pulling the first again under a digest reference adds an untagged entry and reuses blobs.
    let digest = skopeo_raw_digest(&format!("docker://{}/it/a:v1", registry.host()));
    let out = ok(&run(
        &scratch.home(),
        &[
            "pull",
            "--format",
            "oci",
            "--json",
            &format!("{}/it/a@{digest}", registry.host()),
            d,
        ],
        None,
    ));
    let summary: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        summary["bytesDownloaded"], 0,
        "blobs already in the layout are reused"
    );
    assert_eq!(index_json(&dest)["manifests"].as_array().unwrap().len(), 2);
}

#[test]
fn multi_platform_index_selects_normalised_platforms_or_keeps_everything() {
    let registry = registry_with("multiarch", "it/multi");
    let fixture = Layout::fixture("multiarch").unwrap();
    let index = fixture.main_ref().unwrap();
    let entries = fixture.index_entries(&index.digest).unwrap();
    let arm64 = entries
        .iter()
        .find(|e| {
            e.platform
                .as_ref()
                .is_some_and(|p| p.architecture == "arm64")
        })
        .expect("fixture has arm64");
    let scratch = Scratch::new();
    let image = format!("{}/it/multi:v1", registry.host());

    let dest = scratch.dest("arm64");
    let out = ok(&run(
        &scratch.home(),
        &[
            "pull",
            "--format",
            "oci",
            "--json",
            "--platform",
            "linux/aarch64",
            &image,
            dest.to_str().unwrap(),
        ],
        None,
    ));
    let summary: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(summary["digest"], arm64.digest.as_str());
    assert_eq!(summary["platform"], "linux/arm64/v8");

    let dest = scratch.dest("all");
    let out = ok(&run(
        &scratch.home(),
        &[
            "pull",
            "--format",
            "oci",
            "--json",
            "--platform",
            "all",
            &image,
            dest.to_str().unwrap(),
        ],
        None,
    ));
    let summary: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(summary["digest"], index.digest.as_str());
    for entry in &entries {
        let hex = entry.digest.trim_start_matches("sha256:");
        assert!(
            dest.join("blobs/sha256").join(hex).is_file(),
            "child manifest {hex} kept"
        );
    }
    assert_eq!(
        skopeo_raw_digest(&format!("oci:{}:v1", dest.display())),
        index.digest
    );

    let dest = scratch.dest("s390x");
    let stderr = fails(
        &run(
            &scratch.home(),
            &[
                "pull",
                "--format",
                "oci",
                "--platform",
                "linux/s390x",
                &image,
                dest.to_str().unwrap(),
            ],
            None,
        ),
        4,
    );
    assert!(
        stderr.contains("linux/arm64/v8") && stderr.contains("linux/amd64"),
        "{stderr}"
    );
    assert!(!dest.exists());
}

#[test]
fn docker_v2_schema2_image() {
    let registry = registry_with("dockerv2", "it/docker");
    let scratch = Scratch::new();
    let dest = scratch.dest("layout");
    let image = format!("{}/it/docker:v1", registry.host());
    let out = ok(&run(
        &scratch.home(),
        &[
            "pull",
            "--format",
            "oci",
            "--json",
            &image,
            dest.to_str().unwrap(),
        ],
        None,
    ));
    let summary: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        summary["mediaType"],
        "application/vnd.docker.distribution.manifest.v2+json"
    );
    // A single-platform manifest: the platform comes from the image config.
    assert_eq!(summary["platform"], "linux/amd64");
    assert_eq!(
        summary["digest"],
        skopeo_raw_digest(&format!("docker://{image}")).as_str()
    );
}

#[test]
fn basic_auth_from_stdin_and_refusals() {
    let registry = Registry::start(RegistryOptions::anonymous().htpasswd("alice", "s3cret-pw"))
        .expect("registry starts");
    seed(&registry, "simple", "it/private:v1").expect("seeded");
    let scratch = Scratch::new();
    let image = format!("{}/it/private:v1", registry.host());
    let dest = scratch.dest("ok");
    let output = run(
        &scratch.home(),
        &[
            "pull",
            "--format",
            "oci",
            "--username",
            "alice",
            "--password-stdin",
            &image,
            dest.to_str().unwrap(),
        ],
        Some("s3cret-pw\n"),
    );
    ok(&output);
    assert!(!String::from_utf8_lossy(&output.stderr).contains("s3cret-pw"));

    let dest = scratch.dest("wrong");
    let output = run(
        &scratch.home(),
        &[
            "pull",
            "--format",
            "oci",
            "-vv",
            "--username",
            "alice",
            "--password-stdin",
            &image,
            dest.to_str().unwrap(),
        ],
        Some("not-it"),
    );
    let stderr = fails(&output, 3);
    assert!(
        !stderr.contains("not-it"),
        "the password never prints: {stderr}"
    );
    let dest = scratch.dest("anonymous");
    fails(
        &run(
            &scratch.home(),
            &["pull", "--format", "oci", &image, dest.to_str().unwrap()],
            None,
        ),
        3,
    );
    assert_eq!(scratch.out_entries(), vec!["ok"]);
}

#[test]
fn local_layout_is_a_source_too() {
    let scratch = Scratch::new();
    let dest = scratch.dest("copy");
    let source = format!("oci:{}:v1", fixture_layout("simple").display());
    ok(&run(
        &scratch.home(),
        &["pull", "--format", "oci", &source, dest.to_str().unwrap()],
        None,
    ));
    assert_eq!(
        skopeo_raw_digest(&format!("oci:{}:v1", dest.display())),
        skopeo_raw_digest(&source)
    );
}

#[test]
fn tls_registry_needs_its_ca_or_insecure() {
    let registry = Registry::start(RegistryOptions::anonymous().tls()).expect("TLS registry");
    let ca = registry.ca_cert().expect("certificate");
    let scratch = Scratch::new();
    let image = format!("{}/it/tls:v1", registry.host());
    skopeo_copy(
        &format!("oci:{}:v1", fixture_layout("simple").display()),
        &format!("docker://{image}"),
        &["--preserve-digests"],
    )
    .expect("seeded over TLS");
    // An unknown CA is a TLS failure (network class) with the remedy named, not a silent
    // downgrade to plain HTTP.
    let dest = scratch.dest("untrusted");
    let stderr = fails(
        &run(
            &scratch.home(),
            &["pull", "--format", "oci", &image, dest.to_str().unwrap()],
            None,
        ),
        5,
    );
    assert!(stderr.contains("--ca-file"), "{stderr}");
    let dest = scratch.dest("ca");
    let trusted = run(
        &scratch.home(),
        &[
            "pull",
            "-vv",
            "--format",
            "oci",
            "--ca-file",
            ca.to_str().unwrap(),
            &image,
            dest.to_str().unwrap(),
        ],
        None,
    );
    ok(&trusted);
    // The registry offers HTTP/2 through ALPN; blobs come over it.
    let log = String::from_utf8_lossy(&trusted.stderr);
    assert!(
        log.contains("blob response") && log.contains("HTTP/2.0"),
        "{log}"
    );
    let dest = scratch.dest("insecure");
    ok(&run(
        &scratch.home(),
        &[
            "pull",
            "--format",
            "oci",
            "--insecure",
            &image,
            dest.to_str().unwrap(),
        ],
        None,
    ));
    // SSL_CERT_FILE adds the CA too.
    let dest = scratch.dest("env");
    let mut command = crate::support::acrpull(&scratch.home());
    command
        .args([
            "pull",
            "-q",
            "--format",
            "oci",
            &image,
            dest.to_str().unwrap(),
        ])
        .env("SSL_CERT_FILE", &ca);
    must(&mut command);
}

#[test]
fn archives_for_the_air_gap_load_in_skopeo_and_podman() {
    let registry = registry_with("simple", "it/archived");
    let scratch = Scratch::new();
    let image = format!("{}/it/archived:v1", registry.host());
    let served = skopeo_raw_digest(&format!("docker://{image}"));
    let oci = scratch.dest("image.oci.tar");
    ok(&run(
        &scratch.home(),
        &[
            "pull",
            "-q",
            "--format",
            "oci-archive",
            &image,
            oci.to_str().unwrap(),
        ],
        None,
    ));
    assert_eq!(
        skopeo_raw_digest(&format!("oci-archive:{}:v1", oci.display())),
        served
    );

    let docker = scratch.dest("image.docker.tar");
    ok(&run(
        &scratch.home(),
        &[
            "pull",
            "-q",
            "--format",
            "docker-archive",
            &image,
            docker.to_str().unwrap(),
        ],
        None,
    ));
    let inspect = acrpull_testenv::registry::skopeo(&[
        "inspect",
        &format!("docker-archive:{}", docker.display()),
    ])
    .expect("skopeo reads the docker-archive");
    let inspect: serde_json::Value = serde_json::from_slice(&inspect).unwrap();
    assert_eq!(inspect["Layers"].as_array().map(Vec::len), Some(2));
    assert_eq!(
        scratch.out_entries(),
        vec!["image.docker.tar", "image.oci.tar"]
    );

    // podman loads it (vfs storage in a scratch root, as root).
    if std::process::Command::new("podman")
        .arg("--version")
        .output()
        .is_ok()
        && rustix_is_root()
    {
        let root = scratch.dir.path().join("podman");
        let base = [
            "--root".to_string(),
            root.join("root").display().to_string(),
            "--runroot".to_string(),
            root.join("run").display().to_string(),
            "--storage-driver".to_string(),
            "vfs".to_string(),
        ];
        let mut load = std::process::Command::new("podman");
        load.args(&base)
            .args(["load", "-q", "-i", docker.to_str().unwrap()]);
        let output = must(&mut load);
        let said = String::from_utf8_lossy(&output.stdout);
        assert!(said.contains("it/archived:v1"), "podman load: {said}");
    }
}

fn rustix_is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .map(|s| {
            s.lines()
                .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(1) == Some("0"))
        })
        .unwrap_or(false)
}

#[test]
fn a_list_of_references_stages_into_one_layout_with_shared_blobs_once() {
    let registry = registry_with("simple", "it/one");
    seed(&registry, "multiarch", "it/two:v1").expect("seeded");
    skopeo_copy(
        &format!("docker://{}/it/one:v1", registry.host()),
        &format!("docker://{}/it/one:v2", registry.host()),
        &["--preserve-digests"],
    )
    .expect("retagged");
    let scratch = Scratch::new();
    let list = scratch.dir.path().join("refs.txt");
    std::fs::write(
        &list,
        format!(
            "# images for the disconnected site\n{0}/it/one:v1\n\n{0}/it/one:v2  # same blobs\n{0}/it/two:v1\n",
            registry.host()
        ),
    )
    .unwrap();
    let dest = scratch.dest("staged");
    let out = ok(&run(
        &scratch.home(),
        &[
            "pull",
            "--format",
            "oci",
            "--json",
            "--platform",
            "all",
            "-f",
            list.to_str().unwrap(),
            dest.to_str().unwrap(),
        ],
        None,
    ));
    let outcomes: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(outcomes.as_array().map(Vec::len), Some(3));
    assert_eq!(
        outcomes[1]["bytesDownloaded"], 0,
        "v2 shares every blob with v1"
    );
    let tags = crate::support::layout_ref_names(&dest);
    // Two listed images share `v1`: each keeps its full reference, so neither replaces the
    // other (issue 16); the unique `v2` stays a plain tag.
    let host = registry.host();
    assert_eq!(
        tags,
        vec![
            format!("{host}/it/one:v1"),
            "v2".to_string(),
            format!("{host}/it/two:v1")
        ]
    );
    let bad = scratch.dir.path().join("bad.txt");
    std::fs::write(&bad, "Not A Reference\n").unwrap();
    let stderr = fails(
        &run(
            &scratch.home(),
            &[
                "pull",
                "--format",
                "oci",
                "-f",
                bad.to_str().unwrap(),
                scratch.dest("x").to_str().unwrap(),
            ],
            None,
        ),
        2,
    );
    assert!(stderr.contains("bad.txt:1"), "{stderr}");
}
