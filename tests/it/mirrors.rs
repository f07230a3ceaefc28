//! Mirrors and pull-through caches: a second `docker-registry` in proxy mode in front of the
//! origin, used through `--mirror` and registries.conf, with fallbacks both ways.

use acrpull_testenv::registry::{seed, Registry, RegistryOptions};

use crate::support::{ok, run, skopeo_raw_digest, Scratch};

fn summary(output: &std::process::Output) -> serde_json::Value {
    serde_json::from_str(&ok(output)).expect("JSON summary")
}

#[test]
fn a_pull_through_cache_serves_first_and_either_side_can_be_down() {
    let origin = Registry::start(RegistryOptions::anonymous()).expect("origin");
    seed(&origin, "simple", "team/app:v1").expect("seeded");
    let mirror =
        Registry::start(RegistryOptions::anonymous().proxy(&origin.url())).expect("mirror");
    let scratch = Scratch::new();
    let home = scratch.home();
    let image = format!("{}/team/app:v1", origin.host());
    let digest = skopeo_raw_digest(&format!("docker://{image}"));

    let dest = scratch.dest("through-mirror");
    let json = summary(&run(
        &home,
        &[
            "pull",
            "--json",
            "--format",
            "oci",
            "--mirror",
            &mirror.host(),
            &image,
            dest.to_str().unwrap(),
        ],
        None,
    ));
    assert_eq!(json["digest"], digest.as_str());
    let served = json["servedBy"].as_object().expect("servedBy recorded");
    assert!(
        served
            .values()
            .all(|v| v == &serde_json::json!(mirror.host())),
        "{served:?}"
    );

    // The proxy stores what it relays in the background: wait until it serves every blob from
    // its own storage (a HEAD of a stored blob answers without asking the origin).
    wait_until_cached(&mirror, &json);

    // The origin goes away; the warm mirror still serves a digest-pinned pull.
    let mirror_host = mirror.host();
    let origin_host = origin.host();
    drop(origin);
    let dest = scratch.dest("origin-down");
    let pinned = format!("{origin_host}/team/app@{digest}");
    ok(&run(
        &home,
        &[
            "pull",
            "-q",
            "--format",
            "oci",
            "--mirror",
            &mirror_host,
            &pinned,
            dest.to_str().unwrap(),
        ],
        None,
    ));
    drop(mirror);

    // A mirror that is down is skipped for the origin.
    let origin = Registry::start(RegistryOptions::anonymous()).expect("origin again");
    seed(&origin, "simple", "team/app:v1").expect("seeded");
    let image = format!("{}/team/app:v1", origin.host());
    let dest = scratch.dest("mirror-down");
    let json = summary(&run(
        &home,
        &[
            "pull",
            "--json",
            "--format",
            "oci",
            "--retries",
            "0",
            "--mirror",
            &mirror_host,
            &image,
            dest.to_str().unwrap(),
        ],
        None,
    ));
    let served = json["servedBy"].as_object().expect("servedBy");
    assert!(
        served
            .values()
            .all(|v| v == &serde_json::json!(origin.host())),
        "{served:?}"
    );
}

#[test]
fn registries_conf_mirrors_with_digest_only_and_blocked_registries() {
    let origin = Registry::start(RegistryOptions::anonymous()).expect("origin");
    seed(&origin, "simple", "team/app:v1").expect("seeded");
    let mirror =
        Registry::start(RegistryOptions::anonymous().proxy(&origin.url())).expect("mirror");
    let scratch = Scratch::new();
    let conf = scratch.dir.path().join("registries.conf");
    std::fs::write(
        &conf,
        format!(
            "[[registry]]\nlocation = \"{}\"\n[[registry.mirror]]\nlocation = \"{}\"\npull-from-mirror = \"digest-only\"\n\n[[registry]]\nlocation = \"blocked.example\"\nblocked = true\n",
            origin.host(),
            mirror.host()
        ),
    )
    .unwrap();
    let image = format!("{}/team/app:v1", origin.host());
    let dest = scratch.dest("tagged");
    let json = summary(&run(
        &scratch.home(),
        &[
            "pull",
            "--json",
            "--format",
            "oci",
            "--registries-conf",
            conf.to_str().unwrap(),
            &image,
            dest.to_str().unwrap(),
        ],
        None,
    ));
    let served = json["servedBy"].as_object().expect("servedBy");
    // The tag was resolved at the origin (digest-only mirror), the blobs came from the mirror.
    assert_eq!(
        served["manifest v1"],
        serde_json::json!(origin.host()),
        "{served:?}"
    );
    let blob_hosts: Vec<_> = served
        .iter()
        .filter(|(k, _)| k.starts_with("sha256:"))
        .map(|(_, v)| v)
        .collect();
    assert!(
        !blob_hosts.is_empty()
            && blob_hosts
                .iter()
                .all(|v| **v == serde_json::json!(mirror.host()))
    );
    let stderr = crate::support::fails(
        &run(
            &scratch.home(),
            &[
                "pull",
                "--registries-conf",
                conf.to_str().unwrap(),
                "blocked.example/x:v1",
                scratch.dest("b").to_str().unwrap(),
            ],
            None,
        ),
        2,
    );
    assert!(stderr.contains("blocked"), "{stderr}");
}

/// Poll the mirror's storage directory until every blob of `summary` is there (10 s at most).
fn wait_until_cached(mirror: &Registry, summary: &serde_json::Value) {
    let digests: Vec<String> = summary["servedBy"]
        .as_object()
        .map(|served| {
            served
                .keys()
                .filter(|k| k.starts_with("sha256:"))
                .cloned()
                .collect()
        })
        .unwrap_or_default();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let stored = digests.iter().all(|digest| {
            let hex = digest.trim_start_matches("sha256:");
            mirror
                .dir()
                .join("storage/docker/registry/v2/blobs/sha256")
                .join(&hex[..2])
                .join(hex)
                .join("data")
                .is_file()
        });
        if stored || std::time::Instant::now() > deadline {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}
