//! Resilience, proved by fault injection: a proxy in front of the real `docker-registry` cuts,
//! stalls, refuses and corrupts blob downloads, and the pull still completes with the right
//! content, fetching (almost) no byte twice, or fails cleanly with the right exit code.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use acrpull_testenv::proxy::{BlobFault, FaultProxy};
use acrpull_testenv::registry::{skopeo, skopeo_copy, Registry, RegistryOptions};

use crate::support::{fails, make_layout, noise, ok, run, Scratch};

/// Config + three incompressible layers (256 KiB, 1 MiB, 768 KiB) pushed as `it/big:v1`.
struct Setup {
    registry: Registry,
    proxy: FaultProxy,
    scratch: Scratch,
    sizes: Vec<u64>,
}

impl Setup {
    fn new(options: RegistryOptions, storage_authorization: Option<String>) -> Self {
        let registry = Registry::start(options).expect("registry");
        let scratch = Scratch::new();
        let layout = scratch.dir.path().join("layout");
        let sizes = make_layout(
            &layout,
            &[
                vec![("a.bin", noise(1, 256 << 10))],
                vec![("b.bin", noise(2, 1 << 20))],
                vec![("c.bin", noise(3, 768 << 10))],
            ],
        );
        let mut extra = vec!["--preserve-digests".to_string()];
        if let Some((user, password)) = registry.credentials() {
            extra.push("--dest-creds".into());
            extra.push(format!("{user}:{password}"));
        }
        let extra: Vec<&str> = extra.iter().map(String::as_str).collect();
        skopeo_copy(
            &format!("oci:{}:v1", layout.display()),
            &format!("docker://{}/it/big:v1", registry.host()),
            &extra,
        )
        .expect("seeded");
        let proxy = FaultProxy::start_with(&registry.url(), storage_authorization).expect("proxy");
        Self {
            registry,
            proxy,
            scratch,
            sizes,
        }
    }

    fn anonymous() -> Self {
        Self::new(RegistryOptions::anonymous(), None)
    }

    /// Behind basic authentication (alice / pw-123), which the proxy's storage asks too.
    fn basic() -> Self {
        use base64::Engine as _;
        let basic = base64::engine::general_purpose::STANDARD.encode("alice:pw-123");
        Self::new(
            RegistryOptions::anonymous().htpasswd("alice", "pw-123"),
            Some(format!("Basic {basic}")),
        )
    }

    /// A root filesystem pull into `name` as alice, the password on stdin.
    fn pull_as_alice(&self, name: &str) -> std::process::Output {
        let dest = self.scratch.dest(name);
        run(
            &self.scratch.home(),
            &[
                "pull",
                "--username",
                "alice",
                "--password-stdin",
                &self.image(),
                dest.to_str().unwrap(),
            ],
            Some("pw-123"),
        )
    }

    fn image(&self) -> String {
        format!("{}/it/big:v1", self.proxy.host())
    }

    fn total(&self) -> u64 {
        self.sizes.iter().sum()
    }

    /// Pull with one download at a time, so queued faults hit one request each (the config
    /// first; layer order may vary, so faults fire below the smallest layer's size).
    fn pull(&self, name: &str, extra: &[&str]) -> std::process::Output {
        let dest = self.scratch.dest(name);
        // No cache: every pull here must cross the faulty network.
        let mut args = vec!["pull", "--jobs", "1", "--no-cache"];
        args.extend_from_slice(extra);
        let image = self.image();
        args.push(&image);
        let dest = dest.display().to_string();
        args.push(&dest);
        run(&self.scratch.home(), &args, None)
    }
}

fn assert_rootfs(setup: &Setup, name: &str) {
    let dest = setup.scratch.dest(name);
    assert_eq!(
        std::fs::read(dest.join("b.bin")).unwrap(),
        noise(2, 1 << 20)
    );
    assert_eq!(
        std::fs::read(dest.join("c.bin")).unwrap(),
        noise(3, 768 << 10)
    );
}

#[test]
fn dropped_connections_resume_where_they_stopped() {
    let setup = Setup::anonymous();
    setup.proxy.faults().next_blob_gets([
        BlobFault::Pass,
        BlobFault::DropAfter(100_000),
        BlobFault::DropAfter(200_000),
        BlobFault::DropAfter(150_000),
    ]);
    ok(&setup.pull("rootfs", &[]));
    assert_rootfs(&setup, "rootfs");
    let transferred = setup.proxy.blob_bytes();
    assert!(
        transferred <= setup.total() + setup.total() / 20,
        "{transferred} bytes for {} bytes of blobs",
        setup.total()
    );
    let resumed = setup
        .proxy
        .requests()
        .iter()
        .filter(|r| r.range.as_deref().is_some_and(|v| v != "bytes=0-"))
        .count();
    assert!(resumed >= 2, "expected Range resumes");
}

#[test]
fn a_server_that_ignores_range_restarts_that_blob_cleanly() {
    let setup = Setup::anonymous();
    setup.proxy.faults().ignore_range(true).next_blob_gets([
        BlobFault::Pass,
        BlobFault::Pass,
        BlobFault::DropAfter(200_000),
    ]);
    ok(&setup.pull("rootfs", &[]));
    assert_rootfs(&setup, "rootfs");
    // The broken blob's first 200 kB were fetched twice, nothing else.
    assert_eq!(setup.proxy.blob_bytes(), setup.total() + 200_000);
}

#[test]
fn bursts_of_5xx_and_429_are_retried_honouring_retry_after() {
    let setup = Setup::anonymous();
    setup.proxy.faults().next_blob_gets([
        BlobFault::Status(503, None),
        BlobFault::Status(429, Some("1".into())),
        BlobFault::Status(500, None),
        BlobFault::Status(502, None),
    ]);
    let started = Instant::now();
    ok(&setup.pull("rootfs", &[]));
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "Retry-After was honoured"
    );
    assert_rootfs(&setup, "rootfs");
    // Out of retries: a network failure, and nothing at the destination.
    setup
        .proxy
        .faults()
        .next_blob_gets(std::iter::repeat_n(BlobFault::Status(503, None), 8));
    fails(&setup.pull("gave-up", &["--retries", "2"]), 5);
    assert!(!setup.scratch.dest("gave-up").exists());
}

#[test]
fn stalls_short_bodies_and_corruption() {
    let setup = Setup::anonymous();
    setup.proxy.faults().next_blob_gets([
        BlobFault::Pass,
        BlobFault::StallAfter(100_000, Duration::from_secs(4)),
        BlobFault::ShortBody(1000),
    ]);
    ok(&setup.pull("stalled", &["--timeout", "1"]));
    assert_rootfs(&setup, "stalled");
    // A flipped byte is always caught, whatever the output format.
    for format in ["rootfs", "oci"] {
        setup.proxy.faults().next_blob_gets([
            BlobFault::Pass,
            BlobFault::Pass,
            BlobFault::CorruptByte,
        ]);
        let name = format!("corrupt-{format}");
        fails(&setup.pull(&name, &["--format", format]), 6);
        assert!(!setup.scratch.dest(&name).exists());
    }
    let leftovers: Vec<String> = setup
        .scratch
        .out_entries()
        .into_iter()
        .filter(|n| n.starts_with('.'))
        .collect();
    assert!(leftovers.is_empty(), "staging left behind: {leftovers:?}");
}

#[test]
fn blob_redirects_to_storage_never_carry_credentials() {
    let setup = Setup::basic();
    setup.proxy.faults().redirect_blobs(true);
    ok(&setup.pull_as_alice("rootfs"));
    assert_rootfs(&setup, "rootfs");
    let requests = setup.proxy.requests();
    let storage: Vec<_> = requests
        .iter()
        .filter(|r| r.listener == "storage")
        .collect();
    assert_eq!(
        storage.len(),
        4,
        "config and three layers came from storage"
    );
    assert!(storage.iter().all(|r| !r.authorization && r.status == 200));
    drop(setup.registry);
}

#[test]
fn an_expired_storage_redirect_is_replaced_by_a_fresh_one() {
    let setup = Setup::anonymous();
    setup.proxy.faults().redirect_blobs(true).expire_storage(1);
    ok(&setup.pull("rootfs", &[]));
    assert_rootfs(&setup, "rootfs");
    let requests = setup.proxy.requests();
    let refused = requests
        .iter()
        .filter(|r| r.listener == "storage" && r.status == 403)
        .count();
    assert_eq!(refused, 1);
    let served = requests
        .iter()
        .filter(|r| r.listener == "storage" && r.status == 200)
        .count();
    assert_eq!(
        served, 4,
        "config and three layers, each in the end from storage"
    );
    // Storage that keeps refusing is an error after one fresh redirect, not a loop.
    setup.proxy.faults().expire_storage(100);
    fails(&setup.pull("refused", &[]), 3);
}

#[test]
fn large_blobs_come_in_parallel_ranges_and_a_broken_range_resumes() {
    let registry = Registry::start(RegistryOptions::anonymous()).expect("registry");
    let scratch = Scratch::new();
    let layout = scratch.dir.path().join("layout");
    let big = noise(7, 40 << 20);
    let sizes = make_layout(&layout, &[vec![("big.bin", big.clone())]]);
    skopeo_copy(
        &format!("oci:{}:v1", layout.display()),
        &format!("docker://{}/it/huge:v1", registry.host()),
        &["--preserve-digests"],
    )
    .expect("seeded");
    let proxy = FaultProxy::start(&registry.url()).expect("proxy");
    // The config, the first range, then one range cut short (every range is at least 2 MiB).
    proxy.faults().next_blob_gets([
        BlobFault::Pass,
        BlobFault::Pass,
        BlobFault::DropAfter(1 << 20),
    ]);
    let dest = scratch.dest("rootfs");
    let image = format!("{}/it/huge:v1", proxy.host());
    // Loopback registries get one stream per blob unless parallel ranges are forced.
    ok(&crate::support::acrpull(&scratch.home())
        .env("ACRPULL_PARALLEL_RANGES", "1")
        .args(["pull", "--no-cache", &image, &dest.display().to_string()])
        .output()
        .unwrap());
    assert_eq!(std::fs::read(dest.join("big.bin")).unwrap(), big);
    let total: u64 = sizes.iter().sum();
    assert!(
        proxy.blob_bytes() <= total + total / 20,
        "{} bytes for {total}",
        proxy.blob_bytes()
    );
    // Bounded ranges (`bytes=FIRST-LAST`) from the start of the blob, several at once, and one
    // resumed after the cut.
    let ranges: Vec<(u64, u64)> = proxy
        .requests()
        .iter()
        .filter_map(|r| r.range.clone())
        .map(|range| {
            let (first, last) = range
                .strip_prefix("bytes=")
                .and_then(|r| r.split_once('-'))
                .unwrap_or_else(|| panic!("a bounded range: {range}"));
            (first.parse().unwrap(), last.parse().unwrap())
        })
        .collect();
    assert!(ranges.iter().any(|&(first, _)| first == 0), "{ranges:?}");
    assert!(
        ranges.len() >= 10,
        "a 40 MiB blob in ranges of 2-4 MiB: {ranges:?}"
    );
    assert!(
        ranges.iter().all(|&(first, last)| last - first < 4 << 20),
        "{ranges:?}"
    );

    // By default a loopback registry gets one stream per blob: no ranges.
    let before = proxy.requests().len();
    let dest = scratch.dest("single");
    ok(&run(
        &scratch.home(),
        &["pull", "--no-cache", &image, &dest.display().to_string()],
        None,
    ));
    assert!(proxy.requests()[before..].iter().all(|r| r.range.is_none()));
}

/// Without `--platform`, a pull fetches the image's config together with its layers (a
/// platform mismatch only warns), into a layout and into a root filesystem alike: fetched
/// alone first, the config cost a round trip before the first layer byte, 20 ms of a 20 ms
/// link. Every blob response here stalls 2 s, so the pull takes one stall, not one for the
/// config and another for the layers.
#[test]
fn a_pull_fetches_the_config_together_with_the_layers() {
    let setup = Setup::anonymous();
    let stall = Duration::from_secs(2);
    for format in ["oci", "rootfs"] {
        let before = setup.proxy.requests().len();
        setup
            .proxy
            .faults()
            .next_blob_gets(std::iter::repeat_n(BlobFault::StallAfter(0, stall), 4));
        let dest = setup.scratch.dest(format);
        let started = Instant::now();
        ok(&run(
            &setup.scratch.home(),
            &[
                "pull",
                "--no-cache",
                "--format",
                format,
                &setup.image(),
                dest.to_str().unwrap(),
            ],
            None,
        ));
        let elapsed = started.elapsed();
        assert!(
            elapsed >= stall,
            "{format}: the blobs were not stalled: {elapsed:?}"
        );
        assert!(
            elapsed < stall * 7 / 4,
            "{format}: the config and the layers one after the other: {elapsed:?}"
        );
        let blobs = setup.proxy.requests()[before..]
            .iter()
            .filter(|r| r.path.contains("/blobs/"))
            .count();
        assert_eq!(blobs, 4, "{format}");
    }
}

/// With `--jobs 1` the blobs are fetched one at a time in the manifest's order (the config,
/// then the layers in the order they are applied), every time: download tasks are spawned in
/// that order but run in no particular one, and a root filesystem whose first layer came last
/// waited for all of them before applying anything.
#[test]
fn one_job_fetches_the_blobs_in_the_manifests_order() {
    let setup = Setup::anonymous();
    let image = format!("docker://{}/it/big:v1", setup.registry.host());
    let raw = skopeo(&["inspect", "--raw", "--tls-verify=false", &image]).expect("manifest");
    let manifest: serde_json::Value = serde_json::from_slice(&raw).unwrap();
    let digest = |d: &serde_json::Value| d["digest"].as_str().unwrap().to_string();
    let mut listed = vec![digest(&manifest["config"])];
    listed.extend(manifest["layers"].as_array().unwrap().iter().map(digest));
    for format in ["rootfs", "oci"] {
        for round in 0..3 {
            let before = setup.proxy.requests().len();
            let dest = setup.scratch.dest(&format!("{format}-{round}"));
            ok(&run(
                &setup.scratch.home(),
                &[
                    "pull",
                    "--no-cache",
                    "--jobs",
                    "1",
                    "--format",
                    format,
                    &setup.image(),
                    dest.to_str().unwrap(),
                ],
                None,
            ));
            let fetched: Vec<String> = setup.proxy.requests()[before..]
                .iter()
                .filter_map(|r| r.path.split("/blobs/").nth(1).map(str::to_string))
                .collect();
            assert_eq!(fetched, listed, "{format}, round {round}");
        }
    }
}

/// An explicit `--platform` the image's config does not match refuses a root filesystem
/// before any layer is requested: the config comes first then, alone.
#[test]
fn an_explicit_platform_the_config_refuses_stops_the_pull_before_any_layer() {
    let setup = Setup::anonymous();
    let dest = setup.scratch.dest("refused");
    let out = run(
        &setup.scratch.home(),
        &[
            "pull",
            "--no-cache",
            "--platform",
            "linux/s390x",
            &setup.image(),
            dest.to_str().unwrap(),
        ],
        None,
    );
    assert!(
        !out.status.success(),
        "a pull for another platform succeeded"
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("s390x"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!dest.exists(), "something was left at the destination");
    let blobs: Vec<_> = setup
        .proxy
        .requests()
        .into_iter()
        .filter(|r| r.path.contains("/blobs/"))
        .collect();
    assert_eq!(blobs.len(), 1, "only the config: {blobs:?}");
}

/// No `/v2/` ping where there is nothing to decide: a loopback registry is tried with TLS
/// first, and one that answers the handshake in plain HTTP (as the proxy here does, like
/// distribution without TLS) speaks plain HTTP, so the first plain-HTTP request is the manifest
/// itself; with `--plain-http` (or a remote registry, HTTPS only) there is one scheme and the
/// manifest is the first request. A ping would cost a round trip; a registry that wants
/// credentials says so in its answer to that first request.
#[test]
fn a_registry_gets_no_ping_before_the_manifest_when_its_scheme_is_known() {
    let anonymous = Setup::anonymous();
    for (name, extra) in [("probed", None), ("plain", Some("--plain-http"))] {
        let before = anonymous.proxy.requests().len();
        let mut args = vec!["--format", "oci"];
        args.extend(extra);
        ok(&anonymous.pull(name, &args));
        let first = &anonymous.proxy.requests()[before];
        assert_eq!(
            (first.method.as_str(), first.path.as_str()),
            ("GET", "/v2/it/big/manifests/v1"),
            "{name}: {:?}",
            anonymous.proxy.requests()
        );
    }

    let protected = Setup::basic();
    ok(&protected.pull_as_alice("rootfs"));
    let requests = protected.proxy.requests();
    let manifests: Vec<_> = requests
        .iter()
        .filter(|r| r.path.contains("/manifests/"))
        .map(|r| (r.authorization, r.status))
        .collect();
    assert_eq!(
        manifests,
        [(false, 401), (true, 200)],
        "asked without credentials, told to bring them, asked again: {requests:?}"
    );
    assert!(!requests.iter().any(|r| r.path == "/v2/"), "{requests:?}");
    drop(protected.registry);
}

/// Seeds `it/more:v1` and `it/more:v2` (two small layers each, unlike `it/big:v1` and each
/// other) and writes a list of the three images, through the proxy.
fn list_of_three(setup: &Setup) -> PathBuf {
    for (tag, seed) in [("v1", 11), ("v2", 12)] {
        let layout = setup.scratch.dir.path().join(format!("more-{tag}"));
        make_layout(
            &layout,
            &[
                vec![("x.bin", noise(seed, 64 << 10))],
                vec![("y.bin", noise(seed + 10, 96 << 10))],
            ],
        );
        skopeo_copy(
            &format!("oci:{}:v1", layout.display()),
            &format!("docker://{}/it/more:{tag}", setup.registry.host()),
            &["--preserve-digests"],
        )
        .expect("seeded");
    }
    let list = setup.scratch.dir.path().join("refs.txt");
    std::fs::write(
        &list,
        format!(
            "{0}/it/big:v1\n{0}/it/more:v1\n{0}/it/more:v2\n",
            setup.proxy.host()
        ),
    )
    .unwrap();
    list
}

/// `pull --format oci` with `args` into `name`; returns how many connections the proxy
/// accepted for it.
fn pull_counting_connections(setup: &Setup, args: &[&str], name: &str) -> u64 {
    let before = setup.proxy.connections();
    let dest = setup.scratch.dest(name);
    let mut all = vec!["pull", "--format", "oci"];
    all.extend(args);
    all.push(dest.to_str().unwrap());
    ok(&run(&setup.scratch.home(), &all, None));
    setup.proxy.connections() - before
}

/// `pull -f` pulls its images over the connections the first one opened: a loopback registry
/// is probed once (its TLS attempt is a connection of its own), and the later images reuse
/// the idle connections instead of connecting again. Through a link every new connection
/// costs a round trip or two (50 small images through 20 ms: 8.2 s before, 4.0 s after).
#[test]
fn a_list_of_images_reuses_the_connections_the_first_one_opened() {
    let setup = Setup::anonymous();
    let list = list_of_three(&setup);
    let one = pull_counting_connections(&setup, &["--no-cache", &setup.image()], "one");
    let three = pull_counting_connections(
        &setup,
        &["--no-cache", "-f", list.to_str().unwrap()],
        "three",
    );
    // A connection handed back to the pool a moment after the next image starts may be
    // replaced once; a client per image would open about `one` again for each image.
    assert!(
        three <= one + 1,
        "one image: {one} connections; three images: {three}"
    );
}

/// Once the first listed image is in (the destination checked), the other tags are resolved
/// together, and each image's pull finds its manifest in the cache: one round of manifest
/// requests for the rest of the list instead of one round trip per image as it comes up. An
/// image's blobs start as soon as its own tag resolved, so the second manifest is not held
/// back until the first image's blobs are in.
#[test]
fn a_list_resolves_the_other_tags_together_after_the_first_image() {
    let setup = Setup::anonymous();
    let list = list_of_three(&setup);
    let before = setup.proxy.requests().len();
    pull_counting_connections(&setup, &["-f", list.to_str().unwrap()], "list");
    let requests: Vec<String> = setup.proxy.requests()[before..]
        .iter()
        .map(|r| r.path.clone())
        .collect();
    let manifests: Vec<usize> = (0..requests.len())
        .filter(|&i| requests[i].contains("/manifests/"))
        .collect();
    assert_eq!(manifests.len(), 3, "each tag once: {requests:?}");
    assert_eq!(requests[manifests[0]], "/v2/it/big/manifests/v1");
    let mut rest: Vec<&str> = manifests[1..]
        .iter()
        .map(|&i| requests[i].as_str())
        .collect();
    rest.sort_unstable();
    assert_eq!(
        rest,
        ["/v2/it/more/manifests/v1", "/v2/it/more/manifests/v2"]
    );
    let blobs_in = |range: std::ops::Range<usize>| {
        requests[range]
            .iter()
            .filter(|p| p.contains("/blobs/"))
            .count()
    };
    assert_eq!(
        blobs_in(0..manifests[1]),
        4,
        "the first image's config and layers came before: {requests:?}"
    );
    // Asked together: the second answer is not behind all three blobs of the image whose
    // manifest came first (a config and two layers), as it would be one image at a time.
    assert!(blobs_in(manifests[1]..manifests[2]) < 3, "{requests:?}");
}

/// `it/more:v{seed}`: a config and two incompressible layers of its own (64 and 96 KiB).
/// Returns its reference through the proxy.
fn push_more(setup: &Setup, seed: u64) -> String {
    let tag = format!("v{seed}");
    let layout = setup.scratch.dir.path().join(format!("more-{tag}"));
    make_layout(
        &layout,
        &[
            vec![("x.bin", noise(30 + seed, 64 << 10))],
            vec![("y.bin", noise(40 + seed, 96 << 10))],
        ],
    );
    skopeo_copy(
        &format!("oci:{}:v1", layout.display()),
        &format!("docker://{}/it/more:{tag}", setup.registry.host()),
        &["--preserve-digests"],
    )
    .expect("seeded");
    format!("{}/it/more:{tag}", setup.proxy.host())
}

/// A list file of `references`.
fn list_file(setup: &Setup, name: &str, references: &[String]) -> PathBuf {
    let path = setup.scratch.dir.path().join(name);
    std::fs::write(&path, references.join("\n") + "\n").unwrap();
    path
}

/// `pull --format oci --json -f list dest` as the user whose home is `home`: each image's
/// `bytesDownloaded`, and the blob bytes the proxy sent meanwhile.
fn pull_list(
    setup: &Setup,
    home: &std::path::Path,
    list: &std::path::Path,
    dest: &std::path::Path,
) -> (Vec<u64>, u64) {
    let before = setup.proxy.blob_bytes();
    let out = ok(&run(
        home,
        &[
            "pull",
            "--format",
            "oci",
            "--json",
            "-f",
            list.to_str().unwrap(),
            dest.to_str().unwrap(),
        ],
        None,
    ));
    let outcomes: serde_json::Value = serde_json::from_str(&out).unwrap();
    let downloaded = outcomes
        .as_array()
        .expect("one summary per image")
        .iter()
        .map(|o| o["bytesDownloaded"].as_u64().unwrap())
        .collect();
    (downloaded, setup.proxy.blob_bytes() - before)
}

/// `it/more:v1`..`:v3` and a list of the three.
fn list_of_more(setup: &Setup) -> PathBuf {
    let references: Vec<String> = (1..=3).map(|seed| push_more(setup, seed)).collect();
    list_file(setup, "more.txt", &references)
}

/// While one listed image is written, the next images' blobs already download (into the
/// cache, where their pulls find them): through a link that caps each connection, the list
/// costs about its slowest image after the first, not the sum of them. One image alone has at
/// most its own three blobs in flight; the last two images' four layers overlap only when they
/// are fetched ahead. Each image's summary still counts its blobs as downloaded, and the
/// layout holds the three images, complete.
#[test]
fn a_list_downloads_the_next_images_blobs_while_one_is_written() {
    let setup = Setup::anonymous();
    let list = list_of_more(&setup);
    // 64 and 96 KiB at 128 KiB/s: half a second and more per layer.
    setup.proxy.faults().rate_per_response(Some(128 << 10));
    let dest = setup.scratch.dest("list");
    let (downloaded, sent) = pull_list(&setup, &setup.scratch.home(), &list, &dest);
    let most = setup.proxy.most_blob_bodies_at_once();
    assert!(most >= 4, "at most {most} blobs in flight at once");
    assert_eq!(downloaded.len(), 3);
    // Fetched ahead or not, each image counts its own blobs, and together what was sent.
    assert!(
        downloaded.iter().all(|&bytes| bytes > 160 << 10),
        "{downloaded:?}"
    );
    assert_eq!(downloaded.iter().sum::<u64>(), sent, "{downloaded:?}");
    for tag in ["v1", "v2", "v3"] {
        let name = crate::support::layout_ref_names(&dest)
            .into_iter()
            .find(|name| name.ends_with(tag))
            .unwrap_or_else(|| panic!("{tag} in the layout"));
        skopeo(&["inspect", &format!("oci:{}:{name}", dest.display())])
            .unwrap_or_else(|e| panic!("{name}: {e}"));
    }
}

/// A list pulled again into the layout it filled, with an empty cache (another user, or a
/// cache pruned since), downloads only what the layout lacks: the blobs it holds are not
/// fetched ahead into the cache. The list's second image is new and its blobs arrive slowly,
/// so blobs fetched ahead for the images after it would show.
#[test]
fn a_list_pulled_again_into_its_layout_fetches_only_what_it_lacks() {
    let setup = Setup::anonymous();
    let list = list_of_more(&setup);
    let dest = setup.scratch.dest("list");
    let pull = |home: &str, list: &PathBuf| {
        pull_list(&setup, &setup.scratch.dir.path().join(home), list, &dest)
    };
    pull("first", &list);
    let mut references: Vec<String> = std::fs::read_to_string(&list)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect();
    references.insert(1, push_more(&setup, 4));
    let again = list_file(&setup, "again.txt", &references);
    // 160 KiB at 128 KiB/s per response: the new image takes about a second.
    setup.proxy.faults().rate_per_response(Some(128 << 10));
    let (downloaded, sent) = pull("second", &again);
    assert!(downloaded[1] > 160 << 10, "{downloaded:?}");
    assert_eq!(
        downloaded.iter().sum::<u64>() - downloaded[1],
        0,
        "{downloaded:?}"
    );
    assert_eq!(
        sent, downloaded[1],
        "blobs the layout holds were downloaded again"
    );
}
