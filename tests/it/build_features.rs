//! Features of dependencies that acrpull's speed rests on, checked in the resolved build.
//!
//! flate2's `zlib-rs` feature turns zlib-rs's default features off, `std` among them, and
//! zlib-rs detects CPU features at run time only with `std`: without it every build inflates
//! on the generic path (no AVX2) and computes the gzip CRC bytewise, 25 % more inflate time,
//! with nothing failing. `Cargo.toml` turns it back on by naming zlib-rs itself; this keeps
//! that line from being dropped as an unused dependency.

use std::process::Command;

/// The features cargo resolved for the package named `name`.
fn resolved_features(metadata: &serde_json::Value, name: &str) -> Vec<String> {
    let ids: Vec<&str> = metadata["packages"]
        .as_array()
        .expect("packages")
        .iter()
        .filter(|package| package["name"] == name)
        .filter_map(|package| package["id"].as_str())
        .collect();
    assert_eq!(ids.len(), 1, "one {name} in the build: {ids:?}");
    let node = metadata["resolve"]["nodes"]
        .as_array()
        .expect("resolve.nodes")
        .iter()
        .find(|node| node["id"] == ids[0])
        .unwrap_or_else(|| panic!("{name} is not in the resolved graph"));
    node["features"]
        .as_array()
        .expect("features")
        .iter()
        .filter_map(|feature| feature.as_str().map(str::to_string))
        .collect()
}

/// The host's target triple, from `rustc -vV`.
fn host_triple() -> String {
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let output = Command::new(rustc)
        .arg("-vV")
        .output()
        .expect("running rustc -vV");
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .find_map(|line| line.strip_prefix("host: "))
        .expect("rustc -vV names the host")
        .to_string()
}

#[test]
fn zlib_rs_detects_cpu_features_at_run_time() {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    // Offline (tests reach nothing but loopback) and for this platform only (the packages of
    // other platforms were never downloaded).
    let output = Command::new(cargo)
        .args(["metadata", "--format-version", "1", "--offline", "--locked"])
        .args(["--filter-platform", &host_triple()])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("running cargo metadata");
    assert!(
        output.status.success(),
        "cargo metadata: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let metadata: serde_json::Value =
        serde_json::from_slice(&output.stdout).expect("cargo metadata prints JSON");

    assert!(
        resolved_features(&metadata, "flate2").contains(&"zlib-rs".to_string()),
        "flate2 inflates with zlib-rs"
    );
    let zlib_rs = resolved_features(&metadata, "zlib-rs");
    assert!(
        zlib_rs.contains(&"std".to_string()),
        "zlib-rs is built without `std` and so without run-time CPU detection: {zlib_rs:?}"
    );
}
