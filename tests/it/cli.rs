//! The face of the binary: help, version, completions and man page; the `--json` summary and
//! `--json-events` lines; errors with hints and exit codes; progress as plain lines off a
//! terminal and as bars on a pseudo-terminal; `inspect` against the real registry and layouts.
//!
//! Snapshots (insta, under `tests/it/snapshots/`) are normalised by hand: the registry's
//! address becomes `[REGISTRY]`, scratch paths `[SCRATCH]`, timings `[SECONDS]`. Fixture
//! digests are stable (the fixtures are committed), so they stay in the snapshots.

use std::process::Stdio;

use acrpull_testenv::fixtures::{fixture_layout, sha256_digest};
use acrpull_testenv::registry::{seed, Registry, RegistryOptions};

use crate::support::{acrpull, fails, ok, run, skopeo_raw_digest, Scratch};

fn registry_with(fixture: &str, repo: &str) -> Registry {
    let registry = Registry::start(RegistryOptions::anonymous()).expect("registry starts");
    seed(&registry, fixture, &format!("{repo}:v1")).expect("seeded");
    registry
}

/// Replace what varies between runs.
fn normalise(text: &str, registry: Option<&Registry>, scratch: &Scratch) -> String {
    let mut text = text.replace(&scratch.dir.path().display().to_string(), "[SCRATCH]");
    if let Some(registry) = registry {
        text = text.replace(&registry.host(), "[REGISTRY]");
    }
    let fixtures = fixture_layout("simple")
        .parent()
        .expect("fixtures dir")
        .display()
        .to_string();
    text = text.replace(&fixtures, "[FIXTURES]");
    let seconds = regex::Regex::new(r#""seconds": [0-9.e-]+"#).expect("regex");
    seconds
        .replace_all(&text, r#""seconds": [SECONDS]"#)
        .into_owned()
}

fn stderr_of(output: &std::process::Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[test]
fn help_texts_are_stable() {
    let scratch = Scratch::new();
    for (name, args) in [
        ("help", &["--help"][..]),
        ("help_pull", &["pull", "--help"][..]),
        ("help_inspect", &["inspect", "--help"][..]),
    ] {
        // Help wraps to the terminal; pin the width clap uses off a terminal.
        let output = acrpull(&scratch.home())
            .args(args)
            .env("COLUMNS", "100")
            .stdin(Stdio::null())
            .output()
            .expect("runs");
        insta::assert_snapshot!(name, ok(&output));
    }
}

#[test]
fn version_names_the_commit() {
    let scratch = Scratch::new();
    let stdout = ok(&run(&scratch.home(), &["--version"], None));
    let pattern = regex::Regex::new(r"^acrpull \d+\.\d+\.\d+ \([0-9a-zA-Z._-]+\)\n$").unwrap();
    assert!(pattern.is_match(&stdout), "{stdout:?}");
}

#[test]
fn completions_and_man_page_come_from_the_clap_definitions() {
    let scratch = Scratch::new();
    for shell in ["bash", "zsh", "fish"] {
        let script = ok(&run(&scratch.home(), &["completions", shell], None));
        assert!(
            script.contains("inspect") && script.contains("json-events"),
            "{shell}: {script}"
        );
    }
    let man = ok(&run(&scratch.home(), &["man"], None));
    assert!(man.contains(".TH acrpull 1"), "{man}");
    assert!(man.contains("inspect"), "{man}");
    fails(&run(&scratch.home(), &["completions", "tcsh"], None), 2);
}

#[test]
fn json_summary_is_stable() {
    let registry = registry_with("simple", "it/simple");
    let scratch = Scratch::new();
    let dest = scratch.dest("rootfs");
    let output = run(
        &scratch.home(),
        &[
            "pull",
            "--json",
            &format!("{}/it/simple:v1", registry.host()),
            dest.to_str().unwrap(),
        ],
        None,
    );
    let stdout = ok(&output);
    serde_json::from_str::<serde_json::Value>(&stdout).expect("one JSON document");
    assert_eq!(
        stderr_of(&output),
        "",
        "--json prints nothing else off a terminal"
    );
    insta::assert_snapshot!(
        "json_summary",
        normalise(&stdout, Some(&registry), &scratch)
    );
}

fn parse_events(stdout: &str) -> Vec<serde_json::Value> {
    stdout
        .lines()
        .map(|line| serde_json::from_str(line).expect("every stdout line is JSON"))
        .collect()
}

fn count(events: &[serde_json::Value], name: &str) -> usize {
    events.iter().filter(|e| e["event"] == name).count()
}

#[test]
fn json_events_report_every_step_and_end_with_done() {
    let registry = registry_with("simple", "it/simple");
    let scratch = Scratch::new();
    let dest = scratch.dest("rootfs");
    let output = run(
        &scratch.home(),
        &[
            "pull",
            "--json-events",
            &format!("{}/it/simple:v1", registry.host()),
            dest.to_str().unwrap(),
        ],
        None,
    );
    let stdout = ok(&output);
    assert_eq!(stderr_of(&output), "", "stdout carries the progress");
    let events = parse_events(&stdout);
    assert_eq!(events[0]["event"], "resolved");
    let last = events.last().expect("events");
    assert_eq!(last["event"], "done");
    assert_eq!(last["digest"], events[0]["digest"]);
    assert_eq!(last["layers"].as_array().map(Vec::len), Some(2));
    // Config and two layers, each started and finished; two layers applied in order.
    assert_eq!(count(&events, "blob_start"), 3);
    assert_eq!(count(&events, "blob_done"), 3);
    assert_eq!(count(&events, "layer_apply_start"), 2);
    let applied: Vec<_> = events
        .iter()
        .filter(|e| e["event"] == "layer_applied")
        .map(|e| (e["index"].as_u64(), e["count"].as_u64()))
        .collect();
    assert_eq!(applied, vec![(Some(0), Some(2)), (Some(1), Some(2))]);
    for event in &events {
        if event["event"] == "blob_done" {
            let started = events
                .iter()
                .position(|e| e["event"] == "blob_start" && e["digest"] == event["digest"]);
            assert!(started.is_some(), "{event}");
        }
    }

    // Pulled again as a layout twice: the second time every blob exists.
    let layout = scratch.dest("layout");
    let image = format!("{}/it/simple:v1", registry.host());
    let args = [
        "pull",
        "--json-events",
        "--format",
        "oci",
        &image,
        layout.to_str().unwrap(),
    ];
    ok(&run(&scratch.home(), &args, None));
    let again = parse_events(&ok(&run(&scratch.home(), &args, None)));
    let cached: Vec<_> = again
        .iter()
        .filter(|e| e["event"] == "blob_start")
        .map(|e| e["cached"].as_bool())
        .collect();
    assert_eq!(cached, vec![Some(true); 3]);
}

#[test]
fn json_events_end_with_an_error_event_and_the_exit_code() {
    let registry = registry_with("simple", "it/simple");
    let scratch = Scratch::new();
    let output = run(
        &scratch.home(),
        &[
            "pull",
            "--json-events",
            &format!("{}/it/simple:nope", registry.host()),
            scratch.dest("x").to_str().unwrap(),
        ],
        None,
    );
    let stderr = fails(&output, 4);
    assert!(stderr.starts_with("error: "), "{stderr}");
    let events = parse_events(&String::from_utf8_lossy(&output.stdout));
    assert_eq!(events.len(), 1, "{events:?}");
    let error = &events[0];
    assert_eq!(error["event"], "error");
    assert_eq!(error["class"], "not_found");
    assert_eq!(error["exitCode"], 4);
    assert!(error["message"].as_str().unwrap().contains("nope"));
    assert!(error["hint"].as_str().unwrap().contains("it/simple"));
}

/// One failing command's stderr, normalised, with its exit code first.
fn failure(scratch: &Scratch, registry: Option<&Registry>, args: &[&str], code: i32) -> String {
    let stderr = fails(&run(&scratch.home(), args, None), code);
    format!("exit {code}\n{}", normalise(&stderr, registry, scratch))
}

#[test]
fn errors_say_what_failed_why_and_what_to_do() {
    let registry = registry_with("multiarch", "it/multi");
    let scratch = Scratch::new();
    let host = registry.host();
    let dest = scratch.dest("out");
    let dest = dest.to_str().unwrap();
    let cases = [
        failure(
            &scratch,
            Some(&registry),
            &["pull", &format!("{host}/it/multi:v2"), dest],
            4,
        ),
        failure(
            &scratch,
            Some(&registry),
            &["pull", &format!("{host}/it/nothing:v1"), dest],
            4,
        ),
        failure(
            &scratch,
            Some(&registry),
            &[
                "pull",
                "--platform",
                "linux/s390x",
                &format!("{host}/it/multi:v1"),
                dest,
            ],
            4,
        ),
        failure(
            &scratch,
            Some(&registry),
            &[
                "pull",
                "--platform",
                "all",
                &format!("{host}/it/multi:v1"),
                dest,
            ],
            2,
        ),
        failure(&scratch, None, &["pull", "Bad//Ref:v1", dest], 2),
        failure(
            &scratch,
            None,
            &[
                "pull",
                &format!("oci:{}/missing", scratch.dir.path().display()),
                dest,
            ],
            4,
        ),
        failure(
            &scratch,
            None,
            &["pull", "--retries", "0", "127.0.0.1:1/app:v1", dest],
            5,
        ),
        failure(
            &scratch,
            None,
            &[
                "inspect",
                "--platform",
                "linux/s390x",
                &format!("oci:{}", fixture_layout("multiarch").display()),
            ],
            4,
        ),
    ];
    insta::assert_snapshot!("errors", cases.join("\n"));
    assert_eq!(scratch.out_entries(), Vec::<String>::new());
}

#[test]
fn plain_progress_off_a_terminal_and_only_the_final_line_by_default() {
    let registry = registry_with("simple", "it/simple");
    let scratch = Scratch::new();
    let image = format!("{}/it/simple:v1", registry.host());
    let plain = run(
        &scratch.home(),
        &[
            "pull",
            "--progress",
            "plain",
            &image,
            scratch.dest("a").to_str().unwrap(),
        ],
        None,
    );
    ok(&plain);
    let stderr = stderr_of(&plain);
    assert!(
        !stderr.contains('\x1b'),
        "no escapes off a terminal: {stderr:?}"
    );
    assert!(stderr.contains(": resolved to sha256:"), "{stderr}");
    assert_eq!(stderr.matches(": downloaded ").count(), 3, "{stderr}");
    assert!(stderr.contains(": applied layer 2/2"), "{stderr}");
    assert!(
        stderr.lines().last().unwrap().contains(": wrote sha256:"),
        "{stderr}"
    );

    let auto = run(
        &scratch.home(),
        &[&image, scratch.dest("b").to_str().unwrap()],
        None,
    );
    assert_eq!(ok(&auto), "", "nothing on stdout");
    let stderr = stderr_of(&auto);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.starts_with(&format!("{image}: wrote sha256:")),
        "{stderr}"
    );

    let quiet = run(
        &scratch.home(),
        &["-q", &image, scratch.dest("c").to_str().unwrap()],
        None,
    );
    ok(&quiet);
    assert_eq!(stderr_of(&quiet), "");
}

/// [`crate::support::on_a_terminal`] 120 columns wide.
fn on_a_terminal(scratch: &Scratch, args: &[&str], extra_env: &[(&str, &str)]) -> String {
    crate::support::on_a_terminal(scratch, 120, args, extra_env)
}

#[test]
fn bars_are_drawn_on_a_terminal_and_not_with_acrpull_no_progress() {
    let registry = registry_with("multiarch", "it/multi");
    let scratch = Scratch::new();
    let image = format!("{}/it/multi:v1", registry.host());
    let layout = scratch.dest("layout");
    let layout = layout.to_str().unwrap();
    let drawn = on_a_terminal(&scratch, &["pull", "--format", "oci", &image, layout], &[]);
    // indicatif redraws in place: cursor up and erase line, with bars and the overall line.
    assert!(
        drawn.contains("\x1b[1A") && drawn.contains("\x1b[2K"),
        "{drawn:?}"
    );
    assert!(drawn.contains("layer    ["), "{drawn:?}");
    assert!(drawn.contains(" blobs"), "{drawn:?}");
    assert!(drawn.contains("downloaded"), "{drawn:?}");
    assert!(drawn.contains(": wrote sha256:"), "{drawn:?}");
    // A second pull into the same layout finds every blob.
    let again = on_a_terminal(&scratch, &["pull", "--format", "oci", &image, layout], &[]);
    assert!(again.contains("exists"), "{again:?}");
    // The switch for deterministic logs turns bars off, even on a terminal.
    let off = on_a_terminal(
        &scratch,
        &["pull", "--format", "oci", &image, layout],
        &[("ACRPULL_NO_PROGRESS", "1")],
    );
    assert!(!off.contains("\x1b[2K"), "{off:?}");
    assert!(off.contains(": wrote sha256:"), "{off:?}");
}

#[test]
fn inspect_describes_registry_images_indexes_and_layouts() {
    let registry = registry_with("multiarch", "it/multi");
    seed(&registry, "simple", "it/simple:v1").expect("seeded");
    let scratch = Scratch::new();
    let home = scratch.home();
    let multi = format!("{}/it/multi:v1", registry.host());
    let simple = format!("{}/it/simple:v1", registry.host());

    // An index: its digest as served, every platform, and one image in detail.
    let summary = ok(&run(
        &home,
        &["inspect", "--platform", "linux/arm64", &multi],
        None,
    ));
    let value: serde_json::Value = serde_json::from_str(&summary).unwrap();
    assert_eq!(
        value["digest"],
        skopeo_raw_digest(&format!("docker://{multi}")).as_str()
    );
    insta::assert_snapshot!(
        "inspect_index",
        normalise(&summary, Some(&registry), &scratch)
    );

    // --raw is the exact manifest; with --platform the chosen image's.
    let raw = run(&home, &["inspect", "--raw", &multi], None);
    assert_eq!(
        sha256_digest(&raw.stdout),
        value["digest"].as_str().unwrap()
    );
    let raw_arm = run(
        &home,
        &["inspect", "--raw", "--platform", "linux/arm64", &multi],
        None,
    );
    assert_eq!(
        sha256_digest(&raw_arm.stdout),
        value["image"]["digest"].as_str().unwrap()
    );

    // --config is the exact config blob.
    let image: serde_json::Value =
        serde_json::from_str(&ok(&run(&home, &["inspect", &simple], None))).unwrap();
    assert!(image.get("manifests").is_none());
    let config = run(&home, &["inspect", "--config", &simple], None);
    assert_eq!(
        sha256_digest(&config.stdout),
        image["image"]["config"]["digest"].as_str().unwrap()
    );
    assert_eq!(image["image"]["layers"].as_array().map(Vec::len), Some(2));

    // A layout answers the same as the registry it came from.
    let layout = scratch.dest("layout");
    ok(&run(
        &home,
        &[
            "pull",
            "-q",
            "--format",
            "oci",
            &simple,
            layout.to_str().unwrap(),
        ],
        None,
    ));
    let from_layout: serde_json::Value = serde_json::from_str(&ok(&run(
        &home,
        &["inspect", &format!("oci:{}:v1", layout.display())],
        None,
    )))
    .unwrap();
    assert_eq!(from_layout["digest"], image["digest"]);
    assert_eq!(from_layout["image"], image["image"]);
}

#[test]
fn stdout_stays_clean_of_human_output() {
    // Every human line goes to stderr, even with plain progress and -v.
    let registry = registry_with("simple", "it/simple");
    let scratch = Scratch::new();
    let mut command = acrpull(&scratch.home());
    command.args([
        "pull",
        "-v",
        "--progress",
        "plain",
        "--json",
        &format!("{}/it/simple:v1", registry.host()),
        scratch.dest("r").to_str().unwrap(),
    ]);
    let output = command.output().expect("runs");
    let stdout = ok(&output);
    serde_json::from_str::<serde_json::Value>(&stdout).expect("stdout is only the summary");
    assert!(stderr_of(&output).contains("resolved to"));
}
