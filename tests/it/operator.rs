//! Operator-grade behaviour (issue 21, items 1-7): the tool never reports a success that did
//! not happen and never loses what is at the destination. Full disks are small tmpfs mounts
//! made by the test (skipped, saying so, when not root); signals are sent to a child acrpull
//! by pid while the fault proxy stalls it; races run several times.

use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use acrpull_testenv::proxy::{BlobFault, FaultProxy};
use acrpull_testenv::registry::{skopeo, skopeo_copy, Registry, RegistryOptions};

use crate::support::{acrpull, fails, make_layout, noise, ok, run, Scratch};

/// A registry holding `it/app:v1` (config + 300 KiB, 700 KiB and 500 KiB of incompressible
/// layers), behind the fault proxy.
struct Setup {
    _registry: Registry,
    proxy: FaultProxy,
    scratch: Scratch,
    sizes: Vec<u64>,
    layout: PathBuf,
}

impl Setup {
    fn new() -> Self {
        let registry = Registry::start(RegistryOptions::anonymous()).expect("registry");
        let proxy = FaultProxy::start(&registry.url()).expect("proxy");
        let scratch = Scratch::new();
        let layout = scratch.dir.path().join("src");
        let sizes = make_layout(
            &layout,
            &[
                vec![("a.bin", noise(51, 300 << 10))],
                vec![("b.bin", noise(52, 700 << 10))],
                vec![("c.bin", noise(53, 500 << 10))],
            ],
        );
        skopeo_copy(
            &format!("oci:{}:v1", layout.display()),
            &format!("docker://{}/it/app:v1", registry.host()),
            &["--preserve-digests"],
        )
        .expect("seeded");
        Self {
            _registry: registry,
            proxy,
            scratch,
            sizes,
            layout,
        }
    }

    fn image(&self) -> String {
        format!("{}/it/app:v1", self.proxy.host())
    }

    fn cache(&self) -> PathBuf {
        self.scratch.home().join(".cache/acrpull")
    }

    fn command(&self, dest: &Path, extra: &[&str]) -> Command {
        let mut command = acrpull(&self.scratch.home());
        command
            .arg("pull")
            .args(extra)
            .arg(self.image())
            .arg(dest)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        command
    }

    fn pull(&self, dest: &Path, extra: &[&str]) -> Output {
        self.command(dest, extra).output().expect("acrpull runs")
    }

    fn spawn(&self, dest: &Path, extra: &[&str]) -> Child {
        self.command(dest, extra).spawn().expect("acrpull starts")
    }

    /// The digest hex of one layer (the one whose size is `sizes[2]`).
    fn big_layer(&self) -> String {
        let size = self.sizes[2];
        std::fs::read_dir(self.layout.join("blobs/sha256"))
            .unwrap()
            .map(|e| e.unwrap())
            .find(|e| e.metadata().unwrap().len() == size)
            .expect("the layer")
            .file_name()
            .to_string_lossy()
            .into_owned()
    }

    /// Make blob downloads slow (100 KiB/s each), so a pull is caught mid-layer; `false`
    /// makes them fast again.
    /// 25 KiB/s per response: a layer caught after its first 64 KiB still has at least 9 s
    /// to go (the smallest is 300 KiB), however loaded the machine is when the signal lands
    /// (at 100 KiB/s a full CI run once let the layer finish first: nothing left to resume).
    fn slow_link(&self, on: bool) {
        self.proxy
            .faults()
            .rate_per_response(on.then_some(25 << 10));
    }

    /// Entries beside destinations whose name starts with a dot (staging, locks).
    fn hidden_leftovers(&self) -> Vec<String> {
        self.scratch
            .out_entries()
            .into_iter()
            .filter(|n| n.starts_with('.'))
            .collect()
    }
}

/// A small tmpfs, mounted for one test and unmounted on drop. `None` (saying so on stderr)
/// when the test cannot mount one (not root).
struct SmallDisk {
    dir: tempfile::TempDir,
}

impl SmallDisk {
    fn mount(size: &str) -> Option<Self> {
        if !rustix::process::geteuid().is_root() {
            eprintln!("SKIPPED: mounting a small tmpfs to fill needs root");
            return None;
        }
        let dir = tempfile::Builder::new()
            .prefix("acrpull-disk-")
            .tempdir()
            .unwrap();
        let mounted = Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size},mode=0755"),
                "tmpfs",
            ])
            .arg(dir.path())
            .status()
            .is_ok_and(|s| s.success());
        if !mounted {
            eprintln!("SKIPPED: could not mount a tmpfs (no CAP_SYS_ADMIN?)");
            return None;
        }
        Some(Self { dir })
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Every path on the disk, relative.
    fn contents(&self) -> Vec<String> {
        let mut out = Vec::new();
        let mut stack = vec![self.dir.path().to_path_buf()];
        while let Some(dir) = stack.pop() {
            for entry in std::fs::read_dir(&dir).unwrap() {
                let path = entry.unwrap().path();
                out.push(
                    path.strip_prefix(self.dir.path())
                        .unwrap()
                        .display()
                        .to_string(),
                );
                if path.is_dir() {
                    stack.push(path);
                }
            }
        }
        out.sort();
        out
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount")
            .arg("-l")
            .arg(self.dir.path())
            .status();
    }
}

fn last_event(output: &Output) -> serde_json::Value {
    let stdout = String::from_utf8_lossy(&output.stdout);
    let line = stdout.lines().last().expect("at least one event");
    serde_json::from_str(line).expect("a JSON event")
}

#[test]
fn a_full_disk_fails_the_pull_when_blobs_come_from_the_cache() {
    let Some(disk) = SmallDisk::mount("1m") else {
        return;
    };
    let setup = Setup::new();
    // Warm the cache (on another file system than the small disk).
    ok(&setup.pull(&setup.scratch.dest("warm"), &["--format", "oci"]));
    let blobs_before = setup.proxy.blob_bytes();

    let dest = disk.path("layout");
    let output = setup.pull(&dest, &["--format", "oci", "--json-events"]);
    let stderr = fails(&output, 1);
    assert!(stderr.contains("No space left on device"), "{stderr}");
    assert!(
        stderr.contains(&disk.dir.path().display().to_string()),
        "names the path: {stderr}"
    );
    let event = last_event(&output);
    assert_eq!(event["event"], "error", "{event}");
    assert_eq!(event["exitCode"], 1);
    assert!(!dest.exists(), "no incomplete layout");

    let archive = disk.path("image.tar");
    let stderr = fails(&setup.pull(&archive, &["--format", "docker-archive"]), 1);
    assert!(stderr.contains("No space left on device"), "{stderr}");
    assert!(!stderr.contains("No such file or directory"), "{stderr}");
    assert!(!archive.exists());
    assert!(
        disk.contents().is_empty(),
        "nothing left on the disk: {:?}",
        disk.contents()
    );
    assert_eq!(setup.proxy.blob_bytes(), blobs_before, "all from the cache");
}

#[test]
fn a_layout_with_a_truncated_blob_is_not_reported_complete() {
    // The check before publishing, on its own: blobs present in a layout are trusted, so one
    // truncated by another tool must stop the pull instead of being tagged again.
    let setup = Setup::new();
    let dest = setup.scratch.dest("layout");
    ok(&setup.pull(&dest, &["--format", "oci"]));
    let index_before = std::fs::read(dest.join("index.json")).unwrap();
    let layer = dest.join("blobs/sha256").join(setup.big_layer());
    std::fs::remove_file(&layer).unwrap();
    std::fs::write(&layer, b"torn").unwrap();
    let stderr = fails(&setup.pull(&dest, &["--format", "oci"]), 1);
    assert!(stderr.contains("the output is incomplete"), "{stderr}");
    assert!(stderr.contains("has 4 bytes"), "{stderr}");
    assert_eq!(
        std::fs::read(dest.join("index.json")).unwrap(),
        index_before
    );
}

#[test]
fn a_full_disk_with_the_cache_on_it_drops_partial_downloads_and_says_what_to_do() {
    let Some(disk) = SmallDisk::mount("1m") else {
        return;
    };
    let setup = Setup::new();
    let cache = disk.path("cache");
    let cache_arg = cache.display().to_string();
    let dest = disk.path("rootfs");
    let stderr = fails(&setup.pull(&dest, &["--cache-dir", &cache_arg]), 1);
    assert!(stderr.contains("No space left on device"), "{stderr}");
    for remedy in ["acrpull cache prune", "--cache-dir", "--no-cache"] {
        assert!(stderr.contains(remedy), "hint names {remedy}: {stderr}");
    }
    assert!(!dest.exists());
    let partial: Vec<String> = disk
        .contents()
        .into_iter()
        .filter(|p| p.starts_with("cache/partial/sha256/") && !p.ends_with(".lock"))
        .collect();
    assert!(partial.is_empty(), "partial downloads dropped: {partial:?}");
    let staging: Vec<String> = disk
        .contents()
        .into_iter()
        .filter(|p| p.contains(".acrpull"))
        .collect();
    assert!(staging.is_empty(), "no staging or lock left: {staging:?}");
}

#[test]
fn a_destination_written_to_during_the_pull_is_left_alone() {
    let setup = Setup::new();
    let dest = setup.scratch.dest("rootfs");
    std::fs::create_dir(&dest).unwrap();
    setup.proxy.faults().next_blob_gets([
        BlobFault::Pass,
        BlobFault::Pass,
        BlobFault::StallAfter(100_000, Duration::from_secs(3)),
    ]);
    let child = setup.spawn(&dest, &["--jobs", "1", "--no-cache"]);
    // Written while the pull runs (it checked DEST was empty at its start).
    std::thread::sleep(Duration::from_millis(500));
    std::fs::write(dest.join("notes.txt"), b"mine").unwrap();
    let stderr = fails(&child.wait_with_output().unwrap(), 1);
    assert!(stderr.contains("changed during the pull"), "{stderr}");
    assert_eq!(std::fs::read(dest.join("notes.txt")).unwrap(), b"mine");
    assert_eq!(
        std::fs::read_dir(&dest).unwrap().count(),
        1,
        "nothing added or removed"
    );
    assert!(
        setup.hidden_leftovers().is_empty(),
        "{:?}",
        setup.hidden_leftovers()
    );
}

#[test]
fn a_second_pull_to_a_destination_in_use_waits_then_obeys_the_rule() {
    let setup = Setup::new();
    let dest = setup.scratch.dest("rootfs");
    setup.proxy.faults().next_blob_gets([
        BlobFault::Pass,
        BlobFault::Pass,
        BlobFault::StallAfter(100_000, Duration::from_secs(3)),
    ]);
    let first = setup.spawn(&dest, &["--jobs", "1", "--no-cache"]);
    // Until the first one has its lock.
    let lock = setup.scratch.dest(".rootfs.acrpull.lock");
    let deadline = Instant::now() + Duration::from_secs(20);
    while !lock.exists() {
        assert!(Instant::now() < deadline, "the first pull never locked");
        std::thread::sleep(Duration::from_millis(20));
    }
    let second = setup.pull(&dest, &["--no-cache", "--progress", "plain"]);
    ok(&first.wait_with_output().unwrap());
    let stderr = fails(&second, 1);
    assert!(
        stderr.contains("is being written by another acrpull (pid"),
        "said why it waits: {stderr}"
    );
    assert!(
        stderr.contains("is not empty (use --force to replace it)"),
        "{stderr}"
    );
    assert_eq!(
        std::fs::read(dest.join("b.bin")).unwrap(),
        noise(52, 700 << 10)
    );
    // With --force, the second one replaces the first one's tree.
    ok(&setup.pull(&dest, &["--force", "--no-cache"]));
    assert_eq!(setup.scratch.out_entries(), vec!["rootfs".to_string()]);
}

#[test]
fn racing_first_pulls_into_one_new_layout_all_succeed() {
    let setup = Setup::new();
    ok(&setup.pull(&setup.scratch.dest("warm"), &["--format", "oci"]));
    for round in 0..4 {
        let dest = setup.scratch.dest(&format!("layout-{round}"));
        let children: Vec<Child> = (0..4)
            .map(|_| setup.spawn(&dest, &["--format", "oci"]))
            .collect();
        for child in children {
            ok(&child.wait_with_output().unwrap());
        }
        skopeo(&["inspect", &format!("oci:{}:v1", dest.display())]).expect("a valid layout");
        let index: serde_json::Value =
            serde_json::from_slice(&std::fs::read(dest.join("index.json")).unwrap()).unwrap();
        assert_eq!(index["manifests"].as_array().unwrap().len(), 1, "{index}");
    }
    assert!(
        setup.hidden_leftovers().is_empty(),
        "{:?}",
        setup.hidden_leftovers()
    );
}

/// A pull to `dest` is refused, naming --force, before any request.
fn refused_without_force(setup: &Setup, dest: &Path, format: &str) {
    let requests = setup.proxy.requests().len();
    let stderr = fails(&setup.pull(dest, &["--format", format]), 1);
    assert!(stderr.contains("use --force to replace it"), "{stderr}");
    assert_eq!(
        setup.proxy.requests().len(),
        requests,
        "refused before any request"
    );
}

#[test]
fn every_output_refuses_to_replace_without_force_before_downloading() {
    let setup = Setup::new();
    for format in ["oci-archive", "docker-archive"] {
        let dest = setup.scratch.dest(&format!("image-{format}.tar"));
        std::fs::write(&dest, b"precious").unwrap();
        refused_without_force(&setup, &dest, format);
        assert_eq!(std::fs::read(&dest).unwrap(), b"precious");
        ok(&setup.pull(&dest, &["--format", format, "--force"]));
        assert_ne!(std::fs::read(&dest).unwrap(), b"precious");
    }
    // A directory that is not a layout, for a layout.
    let dest = setup.scratch.dest("notes");
    std::fs::create_dir(&dest).unwrap();
    std::fs::write(dest.join("keep.txt"), b"precious").unwrap();
    refused_without_force(&setup, &dest, "oci");
    assert_eq!(std::fs::read(dest.join("keep.txt")).unwrap(), b"precious");
    ok(&setup.pull(&dest, &["--format", "oci", "--force"]));
    skopeo(&["inspect", &format!("oci:{}:v1", dest.display())]).expect("replaced by a layout");
    assert!(!dest.join("keep.txt").exists());
    assert!(
        setup.hidden_leftovers().is_empty(),
        "{:?}",
        setup.hidden_leftovers()
    );
}

#[test]
fn pulling_into_an_empty_mount_point_or_the_current_directory_fills_it_in_place() {
    let setup = Setup::new();
    // The current directory, as `acrpull pull IMAGE .` from inside it.
    for format in ["rootfs", "oci"] {
        let here = setup.scratch.dest(&format!("here-{format}"));
        std::fs::create_dir(&here).unwrap();
        let output = setup
            .command(Path::new("."), &["--format", format])
            .current_dir(&here)
            .output()
            .unwrap();
        ok(&output);
        check_filled(&here, format);
    }
    let Some(disk) = SmallDisk::mount("8m") else {
        return;
    };
    for format in ["rootfs", "oci"] {
        let mount = disk.path(format);
        std::fs::create_dir(&mount).unwrap();
        let mounted = Command::new("mount")
            .args(["-t", "tmpfs", "-o", "size=4m", "tmpfs"])
            .arg(&mount)
            .status()
            .unwrap();
        assert!(mounted.success());
        let output = setup.pull(&mount, &["--format", format]);
        let filled = output.status.success();
        if filled {
            check_filled(&mount, format);
        }
        // A non-empty mount point cannot be replaced, even with --force: refused before any
        // request. (A layout there is added to, as anywhere.)
        let requests = setup.proxy.requests().len();
        let refused = setup.pull(&mount, &["--format", "rootfs", "--force"]);
        let _ = Command::new("umount").arg(&mount).status();
        ok(&output);
        let stderr = fails(&refused, 1);
        assert!(stderr.contains("cannot be replaced"), "{stderr}");
        assert_eq!(setup.proxy.requests().len(), requests);
    }
}

fn check_filled(dir: &Path, format: &str) {
    let names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        names.iter().all(|n| !n.starts_with(".acrpull")),
        "no staging left inside: {names:?}"
    );
    if format == "rootfs" {
        assert_eq!(
            std::fs::read(dir.join("c.bin")).unwrap(),
            noise(53, 500 << 10)
        );
    } else {
        skopeo(&["inspect", &format!("oci:{}:v1", dir.display())]).expect("a layout");
    }
}

/// Wait until a layer's first 64 KiB are in the cache, and return its partial file.
fn wait_for_stall(setup: &Setup) -> PathBuf {
    let dir = setup.cache().join("partial/sha256");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let stalled = std::fs::read_dir(&dir)
            .into_iter()
            .flatten()
            .flatten()
            .find(|e| {
                !e.file_name().to_string_lossy().ends_with(".lock")
                    && e.metadata().is_ok_and(|m| m.len() >= 64 << 10)
            });
        if let Some(entry) = stalled {
            return entry.path();
        }
        assert!(
            Instant::now() < deadline,
            "the pull never got a layer's first bytes: {:?} {:?}",
            setup.proxy.requests(),
            std::fs::read_dir(&dir).map(|d| d
                .flatten()
                .map(|e| (e.file_name(), e.metadata().unwrap().len()))
                .collect::<Vec<_>>())
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Send `signal` to a pull caught mid-layer on a slow link, with `--json-events`; return its
/// output, the layer's partial file and its size when the signal was sent.
fn stop_a_stalled_pull(setup: &Setup, dest: &Path, signal: &str) -> (Output, PathBuf, u64) {
    setup.slow_link(true);
    let mut child = setup.spawn(dest, &["--jobs", "1", "--json-events"]);
    let stdout = child.stdout.take().unwrap();
    let mut events = Vec::new();
    let mut lines = BufReader::new(stdout).lines();
    let partial = wait_for_stall(setup);
    let held = std::fs::metadata(&partial).unwrap().len();
    let killed = Command::new("kill")
        .args([format!("-{signal}"), child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    for line in lines.by_ref() {
        events.push(line.unwrap());
    }
    let mut output = child.wait_with_output().unwrap();
    // The link stays slow until the pull has exited: on a loaded machine a fast link could
    // finish the layer between the signal and its handling, leaving nothing to resume.
    setup.slow_link(false);
    output.stdout = (events.join("\n") + "\n").into_bytes();
    (output, partial, held)
}

#[test]
fn sigint_and_sigterm_stop_cleanly_and_the_next_run_resumes() {
    let setup = Setup::new();
    for (signal, code, class) in [("INT", 130, "interrupted"), ("TERM", 143, "terminated")] {
        let dest = setup.scratch.dest(&format!("rootfs-{signal}"));
        let started = Instant::now();
        let (output, partial, held) = stop_a_stalled_pull(&setup, &dest, signal);
        let stderr = fails(&output, code);
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "stopped promptly"
        );
        assert_eq!(stderr.lines().count(), 1, "one line on stderr: {stderr}");
        assert!(
            stderr.contains(&format!("stopped by SIG{signal}")),
            "{stderr}"
        );
        let event = last_event(&output);
        assert_eq!(event["event"], "error", "{event}");
        assert_eq!(event["class"], class);
        assert_eq!(event["exitCode"], code);
        assert!(!dest.exists());
        assert!(
            setup.hidden_leftovers().is_empty(),
            "no staging directory: {:?}",
            setup.hidden_leftovers()
        );
        assert!(
            std::fs::metadata(&partial).map_or(0, |m| m.len()) >= held,
            "the partial download is kept: {partial:?} {held} {:?}",
            std::fs::read_dir(partial.parent().unwrap()).map(|d| d
                .flatten()
                .map(|e| (e.file_name(), e.metadata().unwrap().len()))
                .collect::<Vec<_>>())
        );
        // The next run continues from it.
        let before = setup.proxy.requests().len();
        ok(&setup.pull(&dest, &["--jobs", "1"]));
        assert_eq!(
            std::fs::read(dest.join("b.bin")).unwrap(),
            noise(52, 700 << 10)
        );
        let resumed = setup.proxy.requests()[before..]
            .iter()
            .any(|r| r.range.as_deref().is_some_and(|v| v != "bytes=0-"));
        assert!(resumed, "resumed with Range");
        // Start over for the next signal.
        ok(&run(
            &setup.scratch.home(),
            &["cache", "prune", "--all"],
            None,
        ));
    }
}

#[test]
fn staging_left_by_a_killed_pull_is_removed_by_prune_and_by_the_next_pull_anywhere() {
    let setup = Setup::new();
    for cleaner in ["prune", "pull"] {
        let dest = setup.scratch.dest(&format!("killed-{cleaner}"));
        setup.slow_link(true);
        let mut child = setup.spawn(&dest, &["--jobs", "1"]);
        wait_for_stall(&setup);
        child.kill().unwrap();
        setup.slow_link(false);
        child.wait().unwrap();
        let staging = |setup: &Setup| -> Vec<String> {
            setup
                .hidden_leftovers()
                .into_iter()
                .filter(|n| !n.ends_with(".lock"))
                .collect()
        };
        assert_eq!(
            staging(&setup).len(),
            1,
            "SIGKILL leaves its staging directory"
        );
        assert_eq!(setup.hidden_leftovers().len(), 2, "and its lock file");
        if cleaner == "prune" {
            let pruned: serde_json::Value =
                serde_json::from_str(&ok(&run(&setup.scratch.home(), &["cache", "prune"], None)))
                    .unwrap();
            assert_eq!(pruned["removedStagingDirs"], 1, "{pruned}");
        } else {
            // A pull to another destination (in another directory) cleans up too.
            let elsewhere = setup.scratch.dir.path().join("elsewhere");
            ok(&setup.pull(&elsewhere, &["--format", "oci"]));
        }
        assert!(
            setup.hidden_leftovers().is_empty(),
            "staging and lock file removed: {:?}",
            setup.hidden_leftovers()
        );
    }
}

#[test]
fn a_copy_into_a_layout_stops_cleanly_on_a_signal() {
    let setup = Setup::new();
    let dest = setup.scratch.dest("copied");
    setup.slow_link(true);
    let child = acrpull(&setup.scratch.home())
        .args([
            "copy",
            &setup.image(),
            &format!("oci:{}:v1", dest.display()),
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("acrpull starts");
    let deadline = Instant::now() + Duration::from_secs(30);
    while setup.proxy.blob_bytes() < 64 << 10 {
        assert!(Instant::now() < deadline, "the copy never got blob bytes");
        std::thread::sleep(Duration::from_millis(20));
    }
    let killed = Command::new("kill")
        .args(["-TERM".to_string(), child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    setup.slow_link(false);
    let stderr = fails(&child.wait_with_output().unwrap(), 143);
    assert!(stderr.contains("stopped by SIGTERM"), "{stderr}");
    assert!(!dest.exists(), "no layout half-written");
    assert!(
        setup.hidden_leftovers().is_empty(),
        "no staging directory: {:?}",
        setup.hidden_leftovers()
    );
}
