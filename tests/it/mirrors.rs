//! Mirrors and pull-through caches: a second `docker-registry` in proxy mode in front of the
//! origin, used through `--mirror` and registries.conf, with fallbacks both ways.

use acrpull_testenv::registry::{seed, Registry, RegistryOptions};

use crate::support::{ok, run, skopeo_raw_digest, Scratch};

/// A registry holding `team/app:v1` and a distribution pull-through cache of it.
fn origin_and_cache() -> (Registry, Registry) {
    let origin = Registry::start(RegistryOptions::anonymous()).expect("origin");
    seed(&origin, "simple", "team/app:v1").expect("seeded");
    let cache = Registry::start(RegistryOptions::anonymous().proxy(&origin.url())).expect("cache");
    (origin, cache)
}

fn summary(output: &std::process::Output) -> serde_json::Value {
    serde_json::from_str(&ok(output)).expect("JSON summary")
}

#[test]
fn a_pull_through_cache_serves_first_and_either_side_can_be_down() {
    let (origin, mirror) = origin_and_cache();
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
    let (origin, mirror) = origin_and_cache();
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

/// The `--hosts-dir` layout of containerd (docs/hosts.md of containerd): a mirror in a
/// `[host."..."]` table, then `server`.
fn hosts_toml(root: &std::path::Path, dir: &str, text: &str) {
    std::fs::create_dir_all(root.join(dir)).unwrap();
    std::fs::write(root.join(dir).join("hosts.toml"), text).unwrap();
}

fn pull_json(scratch: &crate::support::Scratch, args: &[&str], dest: &str) -> serde_json::Value {
    let dest = scratch.dest(dest);
    let mut all = vec!["pull", "--json", "--format", "oci", "--retries", "0"];
    all.extend_from_slice(args);
    all.push(dest.to_str().unwrap());
    summary(&run(&scratch.home(), &all, None))
}

fn served_by_only(json: &serde_json::Value, host: &str) {
    let served = json["servedBy"].as_object().expect("servedBy recorded");
    assert!(
        !served.is_empty() && served.values().all(|v| v == &serde_json::json!(host)),
        "expected everything from {host}: {served:?}"
    );
}

/// containerd's hosts.toml against two real registries, one a distribution pull-through
/// cache (`proxy: remoteurl:`) of the other: the cache is asked first, with `?ns=`; when it is
/// down, `server` answers; a `pull`-only host gets digests and never the tag.
#[test]
fn hosts_toml_mirror_first_then_server_and_pull_only_hosts_get_digests() {
    let (origin, mirror) = origin_and_cache();
    let scratch = Scratch::new();
    let hosts = scratch.dir.path().join("certs.d");
    let image = format!("{}/team/app:v1", origin.host());
    // containerd's directory name for host:port is host_port_ (tried before host:port).
    let dir = format!("127.0.0.1_{}_", origin.port());
    hosts_toml(
        &hosts,
        &dir,
        &format!(
            "server = \"{}\"\n\n[host.\"{}\"]\n  capabilities = [\"pull\", \"resolve\"]\n  [host.\"{}\".header]\n    X-Mirror-Test = [\"yes\"]\n",
            origin.url(),
            mirror.url(),
            mirror.url()
        ),
    );
    let hosts_arg = hosts.to_str().unwrap();
    let json = pull_json(
        &scratch,
        &["--hosts-dir", hosts_arg, &image],
        "through-mirror",
    );
    served_by_only(&json, &mirror.host());
    // The cache really fetched it from the origin: its storage fills with the blobs.
    wait_until_cached(&mirror, &json);

    // The mirror down: server answers.
    drop(mirror);
    let json = pull_json(&scratch, &["--hosts-dir", hosts_arg, &image], "mirror-down");
    served_by_only(&json, &origin.host());

    // A pull-only host (no resolve): the tag comes from server, the blobs from the host.
    let mirror =
        Registry::start(RegistryOptions::anonymous().proxy(&origin.url())).expect("mirror 2");
    hosts_toml(
        &hosts,
        &dir,
        &format!(
            "server = \"{}\"\n[host.\"{}\"]\n  capabilities = [\"pull\"]\n",
            origin.url(),
            mirror.url()
        ),
    );
    let json = pull_json(&scratch, &["--hosts-dir", hosts_arg, &image], "pull-only");
    let served = json["servedBy"].as_object().unwrap();
    assert_eq!(
        served["manifest v1"],
        serde_json::json!(origin.host()),
        "{served:?}"
    );
    assert!(
        served
            .iter()
            .filter(|(k, _)| k.starts_with("sha256:"))
            .all(|(_, v)| v == &serde_json::json!(mirror.host())),
        "{served:?}"
    );
}

/// `_default` applies to every registry without its own directory, and a malformed hosts.toml
/// is a clear error (exit 2) naming the file, before anything is pulled.
#[test]
fn hosts_toml_default_directory_and_malformed_files() {
    let (origin, mirror) = origin_and_cache();
    let scratch = Scratch::new();
    let hosts = scratch.dir.path().join("certs.d");
    // Without `server`: the registry itself comes last.
    hosts_toml(
        &hosts,
        "_default",
        &format!(
            "[host.\"{}\"]\n  capabilities = [\"pull\", \"resolve\"]\n",
            mirror.url()
        ),
    );
    let image = format!("{}/team/app:v1", origin.host());
    let hosts_arg = hosts.to_str().unwrap();
    let json = pull_json(&scratch, &["--hosts-dir", hosts_arg, &image], "default");
    served_by_only(&json, &mirror.host());

    for (text, expected) in [
        ("[host.\"http://127.0.0.1:1\"\n", "hosts.toml"),
        (
            "[host.\"http://127.0.0.1:1\"]\ncapabilities = [\"pull\", \"teleport\"]\n",
            "unknown capability `teleport`",
        ),
        (
            "server = \"https://127.0.0.1:1\"\ncapabilities = [\"push\"]\n",
            "no host with the `pull` capability",
        ),
    ] {
        hosts_toml(&hosts, "_default", text);
        let dest = scratch.dest("never");
        let stderr = crate::support::fails(
            &run(
                &scratch.home(),
                &[
                    "pull",
                    "--hosts-dir",
                    hosts_arg,
                    &image,
                    dest.to_str().unwrap(),
                ],
                None,
            ),
            2,
        );
        assert!(stderr.contains(expected), "{text}: {stderr}");
        assert!(!dest.exists());
    }
    let stderr = crate::support::fails(
        &run(
            &scratch.home(),
            &["pull", "--hosts-dir", "/nonexistent/certs.d", &image, "x"],
            None,
        ),
        2,
    );
    assert!(stderr.contains("not a directory"), "{stderr}");
}

/// registries.conf the containers way: the user's file with its drop-ins (lexical order, a
/// later file replaces an entry), and conflicting entries refused with exit 2.
#[test]
fn registries_conf_user_file_drop_ins_and_conflicts() {
    let (origin, mirror) = origin_and_cache();
    let scratch = Scratch::new();
    let config = scratch.home().join(".config/containers");
    std::fs::create_dir_all(config.join("registries.conf.d")).unwrap();
    std::fs::write(
        config.join("registries.conf"),
        format!("[[registry]]\nlocation = \"{}\"\n", origin.host()),
    )
    .unwrap();
    // 10 points at a mirror that is not there; 20 replaces it with the real one.
    std::fs::write(
        config.join("registries.conf.d/10-first.conf"),
        format!(
            "[[registry]]\nlocation = \"{}\"\n[[registry.mirror]]\nlocation = \"127.0.0.1:1\"\n",
            origin.host()
        ),
    )
    .unwrap();
    std::fs::write(
        config.join("registries.conf.d/20-second.conf"),
        format!(
            "[[registry]]\nlocation = \"{}\"\n[[registry.mirror]]\nlocation = \"{}\"\n",
            origin.host(),
            mirror.host()
        ),
    )
    .unwrap();
    let image = format!("{}/team/app:v1", origin.host());
    let json = pull_json(&scratch, &[&image], "drop-in");
    served_by_only(&json, &mirror.host());

    std::fs::write(
        config.join("registries.conf.d/30-conflict.conf"),
        format!(
            "[[registry]]\nlocation = \"{o}\"\n[[registry]]\nprefix = \"{o}/team\"\nlocation = \"{o}\"\ninsecure = true\n",
            o = origin.host()
        ),
    )
    .unwrap();
    let stderr = crate::support::fails(
        &run(
            &scratch.home(),
            &["pull", &image, scratch.dest("c").to_str().unwrap()],
            None,
        ),
        2,
    );
    assert!(
        stderr.contains("30-conflict.conf") && stderr.contains("conflicting `insecure`"),
        "{stderr}"
    );
}
