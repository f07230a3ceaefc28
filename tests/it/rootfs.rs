//! Root filesystem output through the CLI: the same tree umoci produces, atomic replacement,
//! nothing left behind on failure, runtime bundles.

use std::path::Path;

use acrpull_testenv::fake_registry::FakeRegistry;
use acrpull_testenv::fixtures::{fixture_layout, tree_snapshot, umoci_unpack, Layout};
use acrpull_testenv::registry::{seed, skopeo_copy, Registry, RegistryOptions};

use crate::support::{fails, ok, run, Scratch};

/// umoci's rootfs for a fixture (converted to gzip first when umoci cannot read it).
fn umoci_reference(fixture: &str, scratch: &Scratch) -> Vec<String> {
    let source = format!("oci:{}:v1", fixture_layout(fixture).display());
    umoci_reference_of(&source, fixture, scratch)
}

/// umoci's rootfs for any skopeo source, converted to an OCI layout with gzip layers.
fn umoci_reference_of(source: &str, fixture: &str, scratch: &Scratch) -> Vec<String> {
    let work = tempfile::Builder::new()
        .prefix(&format!("umoci-{fixture}-"))
        .tempdir_in(scratch.dir.path())
        .expect("tempdir")
        .keep();
    let layout = work.join("layout");
    let bundle = work.join("bundle");
    skopeo_copy(
        source,
        &format!("oci:{}:v1", layout.display()),
        &[
            "--dest-compress-format",
            "gzip",
            "--dest-compress",
            "--format",
            "oci",
        ],
    )
    .expect("skopeo converts the fixture for umoci");
    let rootfs = umoci_unpack(&layout, "v1", &bundle).expect("umoci unpacks");
    tree_snapshot(&rootfs).expect("snapshot")
}

#[test]
fn every_fixture_unpacks_to_the_tree_umoci_produces() {
    let registry = Registry::start(RegistryOptions::anonymous()).expect("registry");
    let scratch = Scratch::new();
    for fixture in ["simple", "whiteouts", "uncompressed", "zstd", "dockerv2"] {
        seed(&registry, fixture, &format!("it/{fixture}:v1")).expect("seeded");
        let dest = scratch.dest(fixture);
        ok(&run(
            &scratch.home(),
            &[
                "-q",
                &format!("{}/it/{fixture}:v1", registry.host()),
                dest.to_str().unwrap(),
            ],
            None,
        ));
        // umoci reads neither Docker media types nor zstd: skopeo converts those first.
        let expected = if fixture == "dockerv2" {
            let source = format!("docker://{}/it/{fixture}:v1", registry.host());
            umoci_reference_of(&source, fixture, &scratch)
        } else {
            umoci_reference(fixture, &scratch)
        };
        let actual = tree_snapshot(&dest).unwrap();
        assert_eq!(
            actual, expected,
            "{fixture}: acrpull's tree differs from umoci's"
        );
    }
}

#[test]
fn a_staged_layout_unpacks_offline_and_platforms_are_chosen() {
    let scratch = Scratch::new();
    let dest = scratch.dest("offline");
    let source = format!("oci:{}:v1", fixture_layout("simple").display());
    ok(&run(
        &scratch.home(),
        &["-q", &source, dest.to_str().unwrap()],
        None,
    ));
    assert_eq!(
        tree_snapshot(&dest).unwrap(),
        umoci_reference("simple", &scratch)
    );

    let multi = format!("oci:{}:v1", fixture_layout("multiarch").display());
    for (platform, name) in [
        ("linux/arm/v7", "arm"),
        ("linux/arm64", "arm64"),
        ("linux/amd64", "amd64"),
    ] {
        let dest = scratch.dest(name);
        ok(&run(
            &scratch.home(),
            &["-q", "--platform", platform, &multi, dest.to_str().unwrap()],
            None,
        ));
        let arch = std::fs::read_to_string(dest.join("etc/arch")).expect("/etc/arch");
        assert!(arch.contains(name), "{platform}: /etc/arch says {arch}");
    }
    let stderr = fails(
        &run(
            &scratch.home(),
            &[
                "--platform",
                "all",
                &multi,
                scratch.dest("all").to_str().unwrap(),
            ],
            None,
        ),
        // A usage error: the flags contradict each other (was 6, "integrity", before).
        2,
    );
    assert!(stderr.contains("--format oci"), "{stderr}");
}

#[test]
fn a_corrupt_layer_leaves_the_destination_as_it_was() {
    let registry = FakeRegistry::start(fixture_layout("simple"), "fake/simple").expect("fake");
    let layout = Layout::fixture("simple").unwrap();
    let (_, layers) = layout
        .image_parts(&layout.main_ref().unwrap().digest)
        .unwrap();
    registry.faults().corrupt_blob(&layers[1].digest);
    let scratch = Scratch::new();
    let dest = scratch.dest("rootfs");
    std::fs::create_dir(&dest).unwrap();
    let image = format!("{}/fake/simple:v1", registry.host());
    let stderr = fails(
        &run(&scratch.home(), &[&image, dest.to_str().unwrap()], None),
        6,
    );
    assert!(stderr.contains(&layers[1].digest), "{stderr}");
    assert!(
        dest.read_dir().unwrap().next().is_none(),
        "destination still empty"
    );
    assert_eq!(
        scratch.out_entries(),
        vec!["rootfs"],
        "no staging directory left"
    );
}

/// Every later layer inflating ahead (spilling to the staging area) changes nothing: the
/// tree is umoci's, and a corrupt layer still fails the pull with nothing left behind.
#[test]
fn layers_inflated_ahead_give_the_same_tree_and_still_fail_on_a_corrupt_blob() {
    let registry = Registry::start(RegistryOptions::anonymous()).expect("registry");
    let scratch = Scratch::new();
    seed(&registry, "whiteouts", "it/whiteouts:v1").expect("seeded");
    let dest = scratch.dest("ahead");
    let image = format!("{}/it/whiteouts:v1", registry.host());
    ok(&crate::support::acrpull(&scratch.home())
        .env("ACRPULL_INFLATE_AHEAD", "8")
        .args(["pull", "-q", "--no-cache", &image, dest.to_str().unwrap()])
        .output()
        .unwrap());
    assert_eq!(
        tree_snapshot(&dest).unwrap(),
        umoci_reference("whiteouts", &scratch)
    );

    let fake = FakeRegistry::start(fixture_layout("simple"), "fake/simple").expect("fake");
    let layout = Layout::fixture("simple").unwrap();
    let (_, layers) = layout
        .image_parts(&layout.main_ref().unwrap().digest)
        .unwrap();
    fake.faults().corrupt_blob(&layers[1].digest);
    let dest = scratch.dest("corrupt");
    let image = format!("{}/fake/simple:v1", fake.host());
    let output = crate::support::acrpull(&scratch.home())
        .env("ACRPULL_INFLATE_AHEAD", "8")
        .args(["pull", &image, dest.to_str().unwrap()])
        .output()
        .unwrap();
    let stderr = fails(&output, 6);
    assert!(stderr.contains(&layers[1].digest), "{stderr}");
    assert!(!dest.exists(), "nothing at the destination");
    assert_eq!(
        scratch.out_entries(),
        vec!["ahead"],
        "no staging directory left"
    );
}

#[test]
fn layer_limits_refuse_bombs_by_default_size_and_lift_with_none() {
    let scratch = Scratch::new();
    let image = format!("oci:{}:v1", fixture_layout("simple").display());
    // Every layer holds more than one entry and more than 1 KiB once uncompressed.
    for (flag, limit, message) in [
        (
            "--max-layer-size",
            "1K",
            "larger than 1024 bytes uncompressed",
        ),
        ("--max-layer-entries", "1", "more than 1 entries"),
    ] {
        let dest = scratch.dest("limited");
        let stderr = fails(
            &run(
                &scratch.home(),
                &["pull", flag, limit, &image, dest.to_str().unwrap()],
                None,
            ),
            6,
        );
        assert!(stderr.contains(message), "{flag}: {stderr}");
        assert_eq!(
            scratch.out_entries(),
            Vec::<String>::new(),
            "{flag}: nothing left"
        );
    }
    let dest = scratch.dest("lifted");
    ok(&run(
        &scratch.home(),
        &[
            "pull",
            "--max-layer-size",
            "none",
            "--max-layer-entries",
            "none",
            &image,
            dest.to_str().unwrap(),
        ],
        None,
    ));
    assert_eq!(
        tree_snapshot(&dest).unwrap(),
        umoci_reference("simple", &scratch),
        "limits lifted: the same tree"
    );
    let stderr = fails(
        &run(
            &scratch.home(),
            &["pull", "--max-layer-entries", "many", &image, "x"],
            None,
        ),
        2,
    );
    assert!(stderr.contains("not a count"), "{stderr}");
}

#[test]
fn a_non_empty_destination_needs_force_and_is_then_replaced_whole() {
    let registry = FakeRegistry::start(fixture_layout("simple"), "fake/simple").expect("fake");
    let scratch = Scratch::new();
    let dest = scratch.dest("rootfs");
    std::fs::create_dir(&dest).unwrap();
    std::fs::write(dest.join("old-file"), "keep me unless --force").unwrap();
    let image = format!("{}/fake/simple:v1", registry.host());
    let stderr = fails(
        &run(&scratch.home(), &[&image, dest.to_str().unwrap()], None),
        1,
    );
    assert!(stderr.contains("--force"), "{stderr}");
    assert!(dest.join("old-file").is_file());
    ok(&run(
        &scratch.home(),
        &["-q", "--force", &image, dest.to_str().unwrap()],
        None,
    ));
    assert!(!dest.join("old-file").exists());
    assert_eq!(
        tree_snapshot(&dest).unwrap(),
        umoci_reference("simple", &scratch)
    );
    assert_eq!(scratch.out_entries(), vec!["rootfs"]);
}

#[test]
fn bundle_has_a_runtime_config_from_the_image_config() {
    let scratch = Scratch::new();
    let dest = scratch.dest("bundle");
    let source = format!("oci:{}:v1", fixture_layout("simple").display());
    ok(&run(
        &scratch.home(),
        &["-q", "--bundle", &source, dest.to_str().unwrap()],
        None,
    ));
    assert!(dest.join("rootfs").is_dir());
    let config: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dest.join("config.json")).unwrap()).unwrap();
    assert_eq!(config["process"]["cwd"], "/app");
    assert!(config["process"]["args"]
        .as_array()
        .is_some_and(|a| !a.is_empty()));
    assert!(Path::new(&dest.join("rootfs"))
        .read_dir()
        .unwrap()
        .next()
        .is_some());
}
