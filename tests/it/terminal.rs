//! The terminal and the command line as an operator meets them: a mistyped subcommand, a
//! pasted URL or swapped arguments are caught before any network traffic; `NO_COLOR` keeps the
//! bars; bars fit narrow terminals; one man page per command; a retried connection is
//! announced; byte counts and event order survive a resumed pull.
//!
//! Snapshots are normalised like those of `cli.rs`: `[SCRATCH]`, `[PORT]`, `[REGISTRY]`.

use std::net::TcpListener;
use std::path::{Path, PathBuf};

use acrpull_testenv::proxy::FaultProxy;
use acrpull_testenv::registry::{skopeo_copy, Registry, RegistryOptions};

use crate::support::{acrpull, fails, make_layout, noise, ok, on_a_terminal, run, Scratch};

/// A loopback port that accepts nothing (nothing ever calls `accept`): a pull that tries to
/// contact it shows up as a pending connection.
struct Silent {
    listener: TcpListener,
}

impl Silent {
    fn new() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind loopback");
        listener.set_nonblocking(true).expect("nonblocking");
        Self { listener }
    }

    fn port(&self) -> u16 {
        self.listener.local_addr().expect("address").port()
    }

    fn assert_untouched(&self) {
        match self.listener.accept() {
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            other => panic!("acrpull contacted the network: {other:?}"),
        }
    }
}

/// Exit code and normalised stderr of a command expected to fail with `code`.
fn failure(scratch: &Scratch, port: u16, args: &[&str], code: i32) -> String {
    let stderr = fails(&run(&scratch.home(), args, None), code);
    format!("$ acrpull {}\nexit {code}\n{stderr}", args.join(" "))
        .replace(&scratch.dir.path().display().to_string(), "[SCRATCH]")
        .replace(&port.to_string(), "[PORT]")
}

#[test]
fn typo_subcommands_get_did_you_mean_and_no_network() {
    let silent = Silent::new();
    let scratch = Scratch::new();
    let image = format!("127.0.0.1:{}/it/app:v1", silent.port());
    let dest = scratch.dest("out").display().to_string();
    let port = silent.port();
    let cases = [
        failure(&scratch, port, &["pul", &image, &dest], 2),
        failure(&scratch, port, &["pulll", "--help"], 2),
        failure(&scratch, port, &["inspcet", &image], 2),
        failure(&scratch, port, &["cahce", "info"], 2),
        failure(&scratch, port, &["man", "cache", "purge"], 2),
    ];
    silent.assert_untouched();
    insta::assert_snapshot!("typo_subcommands", cases.join("\n"));
    assert_eq!(scratch.out_entries(), Vec::<String>::new());
}

#[test]
fn pasted_urls_and_swapped_arguments_get_a_suggestion_and_no_network() {
    let silent = Silent::new();
    let scratch = Scratch::new();
    let port = silent.port();
    let host = format!("127.0.0.1:{port}");
    let dest = scratch.dest("out").display().to_string();
    let existing = scratch.dest("existing");
    std::fs::create_dir(&existing).unwrap();
    let existing = existing.display().to_string();
    let cases = [
        failure(
            &scratch,
            port,
            &["pull", &format!("http://{host}/it/app:v1"), &dest],
            2,
        ),
        failure(
            &scratch,
            port,
            &[&format!("https://{host}/v2/it/app/manifests/v1"), &dest],
            2,
        ),
        failure(
            &scratch,
            port,
            &["inspect", &format!("docker://{host}/it/app:v1")],
            2,
        ),
        failure(
            &scratch,
            port,
            &["pull", &existing, &format!("{host}/it/app:v1")],
            2,
        ),
        failure(&scratch, port, &["pull", &format!("{host}/it/app:v1")], 2),
        failure(
            &scratch,
            port,
            &[
                "pull",
                "-q",
                "--progress",
                "plain",
                &format!("{host}/it/app:v1"),
                &dest,
            ],
            2,
        ),
    ];
    silent.assert_untouched();
    insta::assert_snapshot!("pasted_and_swapped", cases.join("\n"));
}

#[test]
fn pull_help_leads_with_format_and_platform_and_names_dest_as_errors_do() {
    let scratch = Scratch::new();
    let help = ok(&acrpull(&scratch.home())
        .args(["pull", "--help"])
        .env("COLUMNS", "100")
        .output()
        .expect("runs"));
    let options: Vec<&str> = help
        .lines()
        .skip_while(|line| *line != "Options:")
        // `  -q, --quiet` or `      --format`; descriptions are indented further.
        .filter(|line| line.starts_with("  -") || line.starts_with("      --"))
        .map(str::trim)
        .take(2)
        .collect();
    assert_eq!(
        options,
        ["--format <FORMAT>", "--platform <PLATFORM>"],
        "{help}"
    );
    assert!(
        help.contains("Usage: acrpull pull [OPTIONS] <IMAGE> [DEST]"),
        "{help}"
    );
    let missing = fails(&run(&scratch.home(), &["pull", "alpine:3"], None), 2);
    assert!(
        missing.contains("missing DEST: acrpull pull IMAGE DEST"),
        "{missing}"
    );
}

/// Escape sequences that set colours or text attributes (SGR).
fn colour_escapes(text: &str) -> Vec<String> {
    let sgr = regex::Regex::new(r"\x1b\[[0-9;]*m").unwrap();
    sgr.find_iter(text)
        .map(|m| format!("{:?}", m.as_str()))
        .collect()
}

/// A registry holding `it/NAME:v1` made of `layers`, the layout it came from, and the blob
/// sizes (config first).
fn registry_with(
    scratch: &Scratch,
    name: &str,
    layers: &[Vec<(&str, Vec<u8>)>],
) -> (Registry, PathBuf, Vec<u64>) {
    let registry = Registry::start(RegistryOptions::anonymous()).expect("registry");
    let layout = scratch.dir.path().join(format!("src-{name}"));
    let sizes = make_layout(&layout, layers);
    skopeo_copy(
        &format!("oci:{}:v1", layout.display()),
        &format!("docker://{}/it/{name}:v1", registry.host()),
        &["--preserve-digests"],
    )
    .expect("seeded");
    (registry, layout, sizes)
}

/// A registry with `it/slow:v1` (three layers of 200 KiB), behind a proxy that serves each
/// blob at 400 KiB/s so bars stay on screen for a while.
struct Slow {
    _registry: Registry,
    proxy: FaultProxy,
}

impl Slow {
    fn new(scratch: &Scratch) -> Self {
        let (registry, _, _) = registry_with(
            scratch,
            "slow",
            &[
                vec![("a.bin", noise(1, 200 << 10))],
                vec![("b.bin", noise(2, 200 << 10))],
                vec![("c.bin", noise(3, 200 << 10))],
            ],
        );
        let proxy = FaultProxy::start(&registry.url()).expect("proxy");
        proxy.faults().rate_per_response(Some(400 << 10));
        Self {
            _registry: registry,
            proxy,
        }
    }

    fn image(&self) -> String {
        format!("{}/it/slow:v1", self.proxy.host())
    }
}

#[test]
fn no_color_keeps_the_bars_and_drops_colour() {
    let scratch = Scratch::new();
    let slow = Slow::new(&scratch);
    let image = slow.image();
    for (dest, args) in [
        ("auto", vec!["pull", "--no-cache", "--format", "oci"]),
        (
            "bars",
            vec![
                "pull",
                "--no-cache",
                "--progress",
                "bars",
                "--format",
                "oci",
            ],
        ),
    ] {
        let dest = scratch.dest(dest).display().to_string();
        let mut args = args;
        args.extend([image.as_str(), dest.as_str()]);
        let drawn = on_a_terminal(&scratch, 100, &args, &[("NO_COLOR", "1")]);
        assert!(drawn.contains("\x1b[2K"), "bars are drawn: {drawn:?}");
        assert!(drawn.contains("downloaded"), "{drawn:?}");
        assert_eq!(colour_escapes(&drawn), Vec::<String>::new(), "{drawn:?}");
    }
    // TERM=dumb cannot redraw in place: only the final line (unchanged behaviour).
    let dest = scratch.dest("dumb").display().to_string();
    let dumb = on_a_terminal(
        &scratch,
        100,
        &["pull", "--format", "oci", &image, &dest],
        &[("TERM", "dumb")],
    );
    assert!(!dumb.contains("\x1b[2K"), "{dumb:?}");
    assert!(dumb.contains(": wrote sha256:"), "{dumb:?}");
}

/// The longest run of characters drawn on one terminal row: escapes removed, split at line
/// feeds and carriage returns. The typescript's own header and acrpull's final line (printed
/// after the bars, a record that keeps its full digest) are left out.
fn widest_drawn_line(drawn: &str) -> (usize, String) {
    let csi = regex::Regex::new(r"\x1b\[[0-9;?]*[A-Za-z]").unwrap();
    let text = csi.replace_all(drawn, "");
    text.split(['\n', '\r'])
        .filter(|line| !line.starts_with("Script ") && !line.contains(": wrote sha256:"))
        .map(|line| (line.chars().count(), line.to_string()))
        .max()
        .unwrap_or_default()
}

#[test]
fn bars_fit_narrow_terminals() {
    let scratch = Scratch::new();
    let slow = Slow::new(&scratch);
    let image = slow.image();
    for columns in [60u16, 80] {
        for format in ["oci", "rootfs"] {
            let dest = scratch.dest(&format!("{format}-{columns}"));
            let dest = dest.display().to_string();
            let drawn = on_a_terminal(
                &scratch,
                columns,
                &["pull", "--format", format, "--no-cache", &image, &dest],
                &[],
            );
            assert!(drawn.contains("\x1b[2K"), "bars are drawn: {drawn:?}");
            assert!(drawn.contains(" ["), "a bar: {drawn:?}");
            let (width, line) = widest_drawn_line(&drawn);
            assert!(
                width <= usize::from(columns),
                "{format} at {columns} columns: a line of {width}: {line:?}"
            );
        }
    }
}

#[test]
fn man_pages_one_per_command_with_examples_unwrapped() {
    let scratch = Scratch::new();
    let dir = scratch.dir.path().join("man1");
    let listed = ok(&run(
        &scratch.home(),
        &["man", "--dir", dir.to_str().unwrap()],
        None,
    ));
    let mut names: Vec<String> = listed
        .lines()
        .map(|line| {
            Path::new(line)
                .file_name()
                .unwrap()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    names.sort();
    insta::assert_snapshot!("man_pages", names.join("\n"));
    // Every page a page names exists, and man renders each one.
    for name in &names {
        let page = std::fs::read_to_string(dir.join(name)).unwrap();
        for named in page.replace("\\-", "-").split_whitespace() {
            if let Some(other) = named.strip_suffix("(1)") {
                if other.starts_with("acrpull") {
                    assert!(
                        names.contains(&format!("{other}.1")),
                        "{name} names {other}(1)"
                    );
                }
            }
        }
    }
    let pull = ok(&run(&scratch.home(), &["man", "pull"], None));
    assert_eq!(
        pull,
        std::fs::read_to_string(dir.join("acrpull-pull.1")).unwrap()
    );
    assert!(
        pull.starts_with(".ie") || pull.contains(".TH acrpull-pull 1"),
        "{pull}"
    );
    // Rendered by man itself: each example stays on one line.
    let rendered = std::process::Command::new("man")
        .args(["-l", "-P", "cat"])
        .arg(dir.join("acrpull.1"))
        .env("MANWIDTH", "200")
        .env("MAN_KEEP_FORMATTING", "0")
        .output()
        .expect("man runs");
    let rendered = String::from_utf8_lossy(&rendered.stdout);
    let rendered = regex::Regex::new(".\x08")
        .unwrap()
        .replace_all(&rendered, "")
        .into_owned();
    assert!(
        rendered.lines().any(|line| line.trim()
            == "acrpull pull --format oci myregistry.azurecr.io/app:v1 ./app-layout"),
        "{rendered}"
    );
    assert!(rendered.contains("EXIT STATUS"), "{rendered}");
}

#[test]
fn a_refused_loopback_connection_is_announced_and_given_up_quickly() {
    let scratch = Scratch::new();
    // A port nothing listens on.
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let started = std::time::Instant::now();
    let output = run(
        &scratch.home(),
        &[
            "pull",
            "--plain-http",
            &format!("127.0.0.1:{port}/it/app:v1"),
            scratch.dest("out").to_str().unwrap(),
        ],
        None,
    );
    let stderr = fails(&output, 5);
    let elapsed = started.elapsed();
    let normalised = stderr.replace(&port.to_string(), "[PORT]");
    insta::assert_snapshot!("refused_loopback", normalised);
    assert!(
        elapsed < std::time::Duration::from_secs(3),
        "gave up after {elapsed:?}"
    );
}

#[test]
fn a_resumed_pull_counts_kept_bytes_as_reused_and_events_keep_their_order() {
    let scratch = Scratch::new();
    let (registry, layout, sizes) = registry_with(
        &scratch,
        "resume",
        &[
            vec![("a.bin", noise(5, 300 << 10))],
            vec![("b.bin", noise(6, 300 << 10))],
        ],
    );
    // What a killed pull leaves in the cache: the first 100 000 bytes of the first layer.
    let layer = std::fs::read_dir(layout.join("blobs/sha256"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| std::fs::metadata(p).unwrap().len() == sizes[1])
        .expect("the first layer");
    let partial = scratch
        .home()
        .join(".cache/acrpull/partial/sha256")
        .join(layer.file_name().unwrap());
    std::fs::create_dir_all(partial.parent().unwrap()).unwrap();
    std::fs::write(&partial, &std::fs::read(&layer).unwrap()[..100_000]).unwrap();

    let output = run(
        &scratch.home(),
        &[
            "pull",
            "--json-events",
            "--jobs",
            "1",
            &format!("{}/it/resume:v1", registry.host()),
            scratch.dest("rootfs").to_str().unwrap(),
        ],
        None,
    );
    let events: Vec<serde_json::Value> = ok(&output)
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    let done = events.last().unwrap();
    assert_eq!(done["event"], "done");
    let downloaded = done["bytesDownloaded"].as_u64().unwrap();
    let reused = done["bytesReused"].as_u64().unwrap();
    assert_eq!(reused, 100_000, "{done}");
    assert_eq!(downloaded + reused, sizes.iter().sum::<u64>(), "{done}");
    // With one download at a time, layers wait for their turn; each is announced as applied
    // only after its download started.
    for (at, event) in events.iter().enumerate() {
        if event["event"] == "layer_apply_start" {
            let started = events[..at]
                .iter()
                .any(|e| e["event"] == "blob_start" && e["digest"] == event["digest"]);
            assert!(started, "layer_apply_start before blob_start: {events:#?}");
        }
    }
}
