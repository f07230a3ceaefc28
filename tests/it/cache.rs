//! The shared blob cache and crash safety, against the real `docker-registry` behind the
//! counting proxy: a second pull downloads no blob and makes one manifest request, images
//! sharing layers share downloads, two processes share one cache, a pull killed with SIGKILL
//! continues where it stopped, and a killed pull never leaves a half-written destination.

use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use acrpull_testenv::proxy::{BlobFault, FaultProxy};
use acrpull_testenv::registry::{seed, skopeo, skopeo_copy, Registry, RegistryOptions};

use crate::support::{acrpull, make_layout, noise, ok, run, Scratch};

/// A registry holding `it/app:v1` (and whatever else a test pushes), behind a proxy.
struct Setup {
    _registry: Registry,
    proxy: FaultProxy,
    scratch: Scratch,
}

impl Setup {
    fn new() -> Self {
        let registry = Registry::start(RegistryOptions::anonymous()).expect("registry");
        let proxy = FaultProxy::start(&registry.url()).expect("proxy");
        Self {
            _registry: registry,
            proxy,
            scratch: Scratch::new(),
        }
    }

    /// Push an image made of `layers` as `it/<name>`; returns the config and layer sizes and
    /// the layout it came from.
    fn push(&self, name: &str, layers: &[Vec<(&str, Vec<u8>)>]) -> (Vec<u64>, PathBuf) {
        let layout = self
            .scratch
            .dir
            .path()
            .join(format!("src-{}", name.replace(':', "-")));
        let sizes = make_layout(&layout, layers);
        skopeo_copy(
            &format!("oci:{}:v1", layout.display()),
            &format!("docker://{}/it/{name}", self.registry_host()),
            &["--preserve-digests"],
        )
        .expect("seeded");
        (sizes, layout)
    }

    fn registry_host(&self) -> String {
        self._registry.host()
    }

    fn image(&self, name: &str) -> String {
        format!("{}/{name}", self.proxy.host())
    }

    fn cache(&self) -> PathBuf {
        self.scratch.home().join(".cache/acrpull")
    }

    fn pull(&self, image: &str, dest: &str, extra: &[&str]) -> std::process::Output {
        let dest = self.scratch.dest(dest).display().to_string();
        let image = self.image(image);
        let mut args = vec!["pull"];
        args.extend_from_slice(extra);
        args.extend([image.as_str(), dest.as_str()]);
        run(&self.scratch.home(), &args, None)
    }

    fn spawn_pull(&self, image: &str, dest: &str, extra: &[&str]) -> Child {
        let dest = self.scratch.dest(dest).display().to_string();
        let mut command = acrpull(&self.scratch.home());
        command
            .arg("pull")
            .args(extra)
            .args([self.image(image), dest])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        command.spawn().expect("acrpull starts")
    }

    fn manifest_requests(&self) -> usize {
        self.proxy
            .requests()
            .iter()
            .filter(|r| r.path.contains("/manifests/"))
            .count()
    }
}

fn json(output: &std::process::Output) -> serde_json::Value {
    serde_json::from_str(&ok(output)).expect("--json output")
}

/// Every file under `dir`, relative, with its bytes.
fn files(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(current) = stack.pop() {
        for entry in std::fs::read_dir(&current).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else {
                let name = path.strip_prefix(dir).unwrap().display().to_string();
                out.push((name, std::fs::read(&path).unwrap()));
            }
        }
    }
    out.sort();
    out
}

/// The digest hex of the blob in `layout` with this size.
fn blob_of_size(layout: &Path, size: u64) -> String {
    std::fs::read_dir(layout.join("blobs/sha256"))
        .unwrap()
        .map(|e| e.unwrap())
        .find(|e| e.metadata().unwrap().len() == size)
        .expect("a blob of that size")
        .file_name()
        .to_string_lossy()
        .into_owned()
}

fn three_layers() -> Vec<Vec<(&'static str, Vec<u8>)>> {
    vec![
        vec![("a.bin", noise(11, 300 << 10))],
        vec![("b.bin", noise(12, 700 << 10))],
        vec![("c.bin", noise(13, 500 << 10))],
    ]
}

#[test]
fn a_second_pull_downloads_no_blob_and_fills_outputs_from_the_cache() {
    let setup = Setup::new();
    let (sizes, _) = setup.push("app:v1", &three_layers());
    let total: u64 = sizes.iter().sum();

    let first = json(&setup.pull("it/app:v1", "first", &["--format", "oci", "--json"]));
    assert_eq!(first["bytesDownloaded"], total);
    assert_eq!(setup.proxy.blob_bytes(), total);
    assert!(setup.cache().join("blobs/sha256").is_dir(), "default cache");

    let manifests_before = setup.manifest_requests();
    let second = json(&setup.pull("it/app:v1", "second", &["--format", "oci", "--json"]));
    assert_eq!(second["bytesDownloaded"], 0);
    assert_eq!(second["bytesReused"], total);
    assert_eq!(first["bytesReused"], 0);
    assert_eq!(second["digest"], first["digest"]);
    assert_eq!(setup.proxy.blob_bytes(), total, "no blob fetched again");
    assert_eq!(setup.manifest_requests() - manifests_before, 1);
    assert_eq!(
        files(&setup.scratch.dest("first")),
        files(&setup.scratch.dest("second"))
    );
    let layout = format!("oci:{}:v1", setup.scratch.dest("second").display());
    skopeo(&["inspect", &layout]).expect("skopeo reads the layout filled from the cache");
    // Same file system: the blobs are the cache's files (hardlinks) or clones, not copies
    // (tmpfs and ext4 have no reflink, so hardlinks there).
    let layer = setup.scratch.dest("second").join("blobs/sha256");
    let linked = std::fs::read_dir(&layer)
        .unwrap()
        .filter(|entry| {
            use std::os::unix::fs::MetadataExt as _;
            entry.as_ref().unwrap().metadata().unwrap().nlink() >= 3
        })
        .count();
    let reflinks = || {
        let probe = setup.scratch.dir.path().join("reflink-probe");
        std::fs::write(&probe, b"x").unwrap();
        std::process::Command::new("cp")
            .arg("--reflink=always")
            .arg(&probe)
            .arg(setup.scratch.dir.path().join("reflink-copy"))
            .status()
            .is_ok_and(|status| status.success())
    };
    assert!(
        linked >= 4 || reflinks(),
        "config and layers shared with the cache and the first layout"
    );

    // A root filesystem from the cache too.
    ok(&setup.pull("it/app:v1", "rootfs", &[]));
    assert_eq!(setup.proxy.blob_bytes(), total);
    let rootfs = setup.scratch.dest("rootfs");
    assert_eq!(
        std::fs::read(rootfs.join("b.bin")).unwrap(),
        noise(12, 700 << 10)
    );

    // --no-cache downloads everything and leaves the cache alone.
    let held = files(&setup.cache().join("blobs"));
    ok(&setup.pull("it/app:v1", "uncached", &["--no-cache", "--format", "oci"]));
    assert_eq!(setup.proxy.blob_bytes(), 2 * total);
    assert_eq!(files(&setup.cache().join("blobs")), held);
}

#[test]
fn an_unchanged_index_tag_costs_one_manifest_request() {
    let setup = Setup::new();
    seed(&setup._registry, "multiarch", "it/multi:v1").expect("seeded");
    ok(&setup.pull(
        "it/multi:v1",
        "first",
        &["--platform", "linux/arm64", "--format", "oci"],
    ));
    let before = (setup.manifest_requests(), setup.proxy.blob_bytes());
    ok(&setup.pull(
        "it/multi:v1",
        "second",
        &["--platform", "linux/arm64", "--format", "oci"],
    ));
    assert_eq!(setup.manifest_requests() - before.0, 1, "index by tag only");
    assert_eq!(setup.proxy.blob_bytes(), before.1);
    // By digest, the index itself comes from the cache: no manifest request at all.
    let digest = std::fs::read_to_string(setup.scratch.dest("first").join("index.json")).unwrap();
    let digest: serde_json::Value = serde_json::from_str(&digest).unwrap();
    let digest = digest["manifests"][0]["digest"]
        .as_str()
        .unwrap()
        .to_string();
    let requests = setup.manifest_requests();
    ok(&setup.pull(
        &format!("it/multi@{digest}"),
        "pinned",
        &["--platform", "linux/arm64", "--format", "oci"],
    ));
    assert_eq!(setup.manifest_requests(), requests);
}

#[test]
fn images_sharing_layers_download_the_shared_ones_once() {
    let setup = Setup::new();
    let layers = three_layers();
    let (first_sizes, _) = setup.push("first:v1", &layers);
    let mut other = layers[..2].to_vec();
    other.push(vec![("d.bin", noise(14, 400 << 10))]);
    let (second_sizes, _) = setup.push("second:v1", &other);
    ok(&setup.pull("it/first:v1", "first", &[]));
    let before = setup.proxy.blob_bytes();
    ok(&setup.pull("it/second:v1", "second", &[]));
    // Only the new config and the new layer.
    assert_eq!(
        setup.proxy.blob_bytes() - before,
        second_sizes[0] + second_sizes[3]
    );
    assert_eq!(first_sizes[1], second_sizes[1], "the same layer bytes");
    let second = setup.scratch.dest("second");
    assert_eq!(
        std::fs::read(second.join("d.bin")).unwrap(),
        noise(14, 400 << 10)
    );
    assert_eq!(
        std::fs::read(second.join("a.bin")).unwrap(),
        noise(11, 300 << 10)
    );
}

#[test]
fn two_processes_at_once_share_one_cache_and_download_each_blob_once() {
    let setup = Setup::new();
    let (sizes, _) = setup.push("app:v1", &three_layers());
    let total: u64 = sizes.iter().sum();
    let children: Vec<Child> = [("a", "rootfs"), ("b", "oci"), ("c", "rootfs")]
        .iter()
        .map(|(dest, format)| setup.spawn_pull("it/app:v1", dest, &["--format", format]))
        .collect();
    for child in children {
        ok(&child.wait_with_output().unwrap());
    }
    assert_eq!(setup.proxy.blob_bytes(), total, "each blob downloaded once");
    for dest in ["a", "c"] {
        let dest = setup.scratch.dest(dest);
        assert_eq!(
            std::fs::read(dest.join("c.bin")).unwrap(),
            noise(13, 500 << 10)
        );
    }
    skopeo(&[
        "inspect",
        &format!("oci:{}:v1", setup.scratch.dest("b").display()),
    ])
    .expect("layout");
    let partial: Vec<_> = files(&setup.cache().join("partial"))
        .into_iter()
        .filter(|(name, _)| !name.ends_with(".lock"))
        .collect();
    assert!(partial.is_empty(), "no partial download left: {partial:?}");
}

/// Wait until the pull has written everything the proxy sent of the stalled layer (`base`:
/// the proxy's count before that layer's bytes, `already`: what the partial file held).
fn wait_for_partial(setup: &Setup, partial: &Path, base: u64, already: u64) -> u64 {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let held = std::fs::metadata(partial).map_or(0, |m| m.len());
        let sent = setup.proxy.blob_bytes().saturating_sub(base);
        if held > already && held == already + sent {
            std::thread::sleep(Duration::from_millis(100));
            if std::fs::metadata(partial).map_or(0, |m| m.len()) == held {
                return held;
            }
        }
        assert!(
            Instant::now() < deadline,
            "partial download stuck at {held} (sent {sent} after {already})"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_pull_killed_mid_download_continues_where_it_stopped() {
    let setup = Setup::new();
    let layer = noise(21, 6 << 20);
    let (sizes, layout) = setup.push("big:v1", &[vec![("big.bin", layer.clone())]]);
    let hex = blob_of_size(&layout, sizes[1]);
    let partial = setup.cache().join("partial/sha256").join(&hex);
    let stall = BlobFault::StallAfter(1 << 20, Duration::from_secs(600));

    // Killed twice while the layer downloads, each time after about 1 MiB more.
    let mut kept = Vec::new();
    for first in [true, false] {
        let mut base = setup.proxy.blob_bytes();
        if first {
            // One download at a time: the config, then the layer.
            setup
                .proxy
                .faults()
                .next_blob_gets([BlobFault::Pass, stall.clone()]);
            base += sizes[0];
        } else {
            setup.proxy.faults().next_blob_gets([stall.clone()]);
        }
        let already = kept.last().copied().unwrap_or(0);
        let mut child = setup.spawn_pull("it/big:v1", "rootfs", &["--jobs", "1"]);
        let held = wait_for_partial(&setup, &partial, base, already);
        child.kill().expect("SIGKILL");
        child.wait().unwrap();
        assert!(
            !setup.scratch.dest("rootfs").exists(),
            "no destination after a kill"
        );
        kept.push(held);
    }
    let out = json(&setup.pull("it/big:v1", "rootfs", &["--json", "--jobs", "1"]));
    // The last run fetched only what the killed runs had not kept.
    assert_eq!(out["bytesDownloaded"], sizes[1] - kept[1]);
    assert_eq!(
        setup.proxy.blob_bytes(),
        sizes[0] + sizes[1],
        "no byte fetched twice"
    );
    let ranges: Vec<String> = setup
        .proxy
        .requests()
        .iter()
        .filter_map(|r| r.range.clone())
        .collect();
    for held in &kept {
        assert!(
            ranges.contains(&format!("bytes={held}-")),
            "resumed at {held}: {ranges:?}"
        );
    }
    assert_eq!(
        std::fs::read(setup.scratch.dest("rootfs/big.bin")).unwrap(),
        layer
    );
    assert_eq!(
        setup.scratch.out_entries(),
        vec!["rootfs".to_string()],
        "the killed runs' staging directories are gone"
    );
    assert!(!partial.exists());
}

#[test]
fn a_partial_download_that_does_not_verify_is_started_over() {
    let setup = Setup::new();
    let layer = noise(31, 1 << 20);
    let (sizes, layout) = setup.push("torn:v1", &[vec![("torn.bin", layer.clone())]]);
    let hex = blob_of_size(&layout, sizes[1]);
    // What a crash can leave: the right length of wrong bytes.
    let partial = setup.cache().join("partial/sha256").join(&hex);
    std::fs::create_dir_all(partial.parent().unwrap()).unwrap();
    std::fs::write(&partial, vec![0u8; 300_000]).unwrap();
    ok(&setup.pull("it/torn:v1", "rootfs", &["--format", "oci"]));
    let layout = format!("oci:{}:v1", setup.scratch.dest("rootfs").display());
    skopeo(&["inspect", &layout]).expect("layout");
    assert_eq!(
        std::fs::read(setup.cache().join("blobs/sha256").join(&hex)).unwrap(),
        std::fs::read(setup.scratch.dest("rootfs/blobs/sha256").join(&hex)).unwrap()
    );
}

#[test]
fn a_killed_pull_leaves_the_old_output_or_the_new_one() {
    let setup = Setup::new();
    let (_, _) = setup.push("app:v1", &three_layers());
    let (_, _) = setup.push("app:v2", &[vec![("new.bin", noise(41, 2 << 20))]]);
    ok(&setup.pull("it/app:v1", "layout", &["--format", "oci"]));
    ok(&setup.pull("it/app:v1", "rootfs", &[]));
    let old_tree = files(&setup.scratch.dest("rootfs"));
    // Kill the pull of v2 at a range of moments, with no cache (so every run has work to do).
    for delay_ms in [0u64, 5, 15, 30, 60, 120, 250] {
        let layout_pull =
            setup.spawn_pull("it/app:v2", "layout", &["--format", "oci", "--no-cache"]);
        let rootfs_pull = setup.spawn_pull("it/app:v2", "rootfs", &["--force", "--no-cache"]);
        std::thread::sleep(Duration::from_millis(delay_ms));
        for mut child in [layout_pull, rootfs_pull] {
            let _ = child.kill();
            child.wait().unwrap();
        }
        // The layout reads at every instant, with v1 in it (and v2 when that pull finished).
        let layout = setup.scratch.dest("layout");
        skopeo(&["inspect", &format!("oci:{}:v1", layout.display())])
            .unwrap_or_else(|e| panic!("layout after a kill at {delay_ms} ms: {e}"));
        // The root filesystem is the old tree or the complete new one.
        let tree = files(&setup.scratch.dest("rootfs"));
        let new = tree.iter().any(|(name, _)| name == "new.bin");
        if new {
            assert_eq!(tree.len(), 1, "the complete new tree");
            assert_eq!(tree[0].1, noise(41, 2 << 20));
        } else {
            assert_eq!(
                tree, old_tree,
                "the old tree, untouched (kill at {delay_ms} ms)"
            );
        }
    }
    ok(&setup.pull("it/app:v2", "layout", &["--format", "oci"]));
    ok(&setup.pull("it/app:v2", "rootfs", &["--force"]));
    let layout = setup.scratch.dest("layout");
    skopeo(&["inspect", &format!("oci:{}:v2", layout.display())]).expect("v2 after a re-run");
    assert_eq!(
        setup.scratch.out_entries(),
        vec!["layout".to_string(), "rootfs".to_string()],
        "no staging directory left behind"
    );
}

#[test]
fn cache_info_and_prune() {
    let setup = Setup::new();
    let (sizes, _) = setup.push("app:v1", &three_layers());
    ok(&setup.pull("it/app:v1", "first", &[]));
    let home = setup.scratch.home();
    let info: serde_json::Value =
        serde_json::from_str(&ok(&run(&home, &["cache", "info"], None))).unwrap();
    // Config, three layers, and the manifest.
    assert_eq!(info["held"]["blobs"], 5);
    assert!(info["held"]["bytes"].as_u64().unwrap() > sizes.iter().sum::<u64>());
    // The default keeps what was used recently.
    let pruned: serde_json::Value =
        serde_json::from_str(&ok(&run(&home, &["cache", "prune"], None))).unwrap();
    assert_eq!(pruned["removed"]["blobs"], 0);
    let pruned: serde_json::Value = serde_json::from_str(&ok(&run(
        &home,
        &["cache", "prune", "--max-size", "1M"],
        None,
    )))
    .unwrap();
    assert!(pruned["held"]["bytes"].as_u64().unwrap() <= 1 << 20);
    assert!(pruned["removed"]["blobs"].as_u64().unwrap() >= 1);
    let pruned: serde_json::Value =
        serde_json::from_str(&ok(&run(&home, &["cache", "prune", "--all"], None))).unwrap();
    assert_eq!(pruned["held"]["blobs"], 0);
    // A pull after a prune downloads again and works.
    ok(&setup.pull("it/app:v1", "second", &[]));
    assert_eq!(setup.proxy.blob_bytes(), 2 * sizes.iter().sum::<u64>());
}

#[test]
fn an_unusable_cache_is_skipped_with_a_warning() {
    let setup = Setup::new();
    let (sizes, _) = setup.push("app:v1", &three_layers());
    // A file where the cache directory should be.
    let blocked = setup.scratch.dir.path().join("not-a-dir");
    std::fs::write(&blocked, b"").unwrap();
    let cache_dir = blocked.join("cache").display().to_string();
    let output = setup.pull("it/app:v1", "rootfs", &["--cache-dir", &cache_dir]);
    ok(&output);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("not using the blob cache"), "{stderr}");
    assert_eq!(setup.proxy.blob_bytes(), sizes.iter().sum::<u64>());
    assert_eq!(
        std::fs::read(setup.scratch.dest("rootfs/a.bin")).unwrap(),
        noise(11, 300 << 10)
    );
}
