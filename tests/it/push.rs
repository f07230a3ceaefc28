//! Push and copy round trips against two real `docker-registry` processes.

use acrpull_testenv::fixtures::{fixture_layout, Layout};
use acrpull_testenv::registry::{seed, Registry, RegistryOptions};

use crate::support::{make_layout, noise, ok, run, skopeo_raw_digest, Scratch};

fn json(output: &std::process::Output) -> serde_json::Value {
    serde_json::from_str(&ok(output)).expect("JSON summary")
}

#[test]
fn layout_to_registry_and_back_keeps_digests_and_skips_what_exists() {
    let registry = Registry::start(RegistryOptions::anonymous()).expect("registry");
    let scratch = Scratch::new();
    let home = scratch.home();
    let source = format!("oci:{}:v1", fixture_layout("simple").display());
    let target = format!("{}/staged/simple:v1", registry.host());
    let first = json(&run(&home, &["push", "--json", &source, &target], None));
    assert_eq!(first["uploaded"], 3, "{first}");
    let expected = Layout::fixture("simple")
        .unwrap()
        .main_ref()
        .unwrap()
        .digest;
    assert_eq!(first["digest"], expected.as_str());
    assert_eq!(skopeo_raw_digest(&format!("docker://{target}")), expected);
    // Again: everything is already there.
    let second = json(&run(&home, &["push", "--json", &source, &target], None));
    assert_eq!(second["uploaded"], 0);
    assert_eq!(second["existing"], 3);
    // Pull it back: the same manifest bytes.
    let dest = scratch.dest("back");
    ok(&run(
        &home,
        &[
            "pull",
            "-q",
            "--format",
            "oci",
            &target,
            dest.to_str().unwrap(),
        ],
        None,
    ));
    assert_eq!(
        skopeo_raw_digest(&format!("oci:{}:v1", dest.display())),
        expected
    );
}

#[test]
fn a_multi_platform_index_survives_the_trip_and_copies_mount_within_a_registry() {
    let registry = Registry::start(RegistryOptions::anonymous()).expect("registry");
    let scratch = Scratch::new();
    let home = scratch.home();
    let source = format!("oci:{}:v1", fixture_layout("multiarch").display());
    let target = format!("{}/multi/one:v1", registry.host());
    ok(&run(&home, &["push", "-q", &source, &target], None));
    let layout = Layout::fixture("multiarch").unwrap();
    let index = layout.main_ref().unwrap();
    assert_eq!(
        skopeo_raw_digest(&format!("docker://{target}")),
        index.digest
    );
    for child in layout.index_entries(&index.digest).unwrap() {
        let by_digest = format!("docker://{}/multi/one@{}", registry.host(), child.digest);
        assert_eq!(skopeo_raw_digest(&by_digest), child.digest);
    }
    // Within one registry, a copy mounts instead of uploading.
    let copy = format!("{}/multi/two:v1", registry.host());
    let summary = json(&run(&home, &["copy", "--json", &target, &copy], None));
    assert_eq!(summary["uploaded"], 0, "{summary}");
    assert!(summary["mounted"].as_u64().unwrap() > 0, "{summary}");
    assert_eq!(skopeo_raw_digest(&format!("docker://{copy}")), index.digest);
}

#[test]
fn registry_to_registry_streams_and_large_blobs_go_up_in_chunks() {
    let origin = Registry::start(RegistryOptions::anonymous()).expect("origin");
    let mirror =
        Registry::start(RegistryOptions::anonymous().htpasswd("bob", "pw-456")).expect("mirror");
    let scratch = Scratch::new();
    let home = scratch.home();
    let layout = scratch.dir.path().join("big");
    make_layout(&layout, &[vec![("big.bin", noise(7, 3 << 20))]]);
    let source = format!("oci:{}:v1", layout.display());
    // Through the proxy, to count the chunks.
    let proxy = acrpull_testenv::proxy::FaultProxy::start(&origin.url()).expect("proxy");
    let via_proxy = format!("{}/big/app:v1", proxy.host());
    ok(&run(
        &home,
        &["push", "-q", "--chunk-size", "1", &source, &via_proxy],
        None,
    ));
    let patches = proxy
        .requests()
        .iter()
        .filter(|r| r.method == "PATCH")
        .count();
    assert!(
        patches >= 3,
        "a 3 MiB blob in 1 MiB chunks: {patches} PATCH requests"
    );
    let on_origin = format!("{}/big/app:v1", origin.host());
    let digest = skopeo_raw_digest(&format!("oci:{}:v1", layout.display()));
    assert_eq!(skopeo_raw_digest(&format!("docker://{on_origin}")), digest);
    // Origin to an authenticated mirror, streamed; the destination's credentials from stdin.
    let on_mirror = format!("{}/big/app:v1", mirror.host());
    let output = run(
        &home,
        &[
            "copy",
            "--json",
            "--username",
            "bob",
            "--password-stdin",
            &on_origin,
            &on_mirror,
        ],
        Some("pw-456"),
    );
    let summary = json(&output);
    assert_eq!(summary["uploaded"], 2, "{summary}");
    let raw = acrpull_testenv::registry::skopeo(&[
        "inspect",
        "--raw",
        "--tls-verify=false",
        "--creds",
        "bob:pw-456",
        &format!("docker://{on_mirror}"),
    ])
    .unwrap();
    assert_eq!(acrpull_testenv::fixtures::sha256_digest(&raw), digest);
    // And from a registry into a layout under another tag.
    let dest = scratch.dest("layout");
    ok(&run(
        &home,
        &[
            "copy",
            "-q",
            &on_origin,
            &format!("oci:{}:staged", dest.display()),
        ],
        None,
    ));
    assert_eq!(
        skopeo_raw_digest(&format!("oci:{}:staged", dest.display())),
        digest
    );
    seed(&origin, "simple", "other:v1").expect("seeded");
}
