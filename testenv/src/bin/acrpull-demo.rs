//! The README's main-job demo: start the real distribution registry on loopback, push a small
//! image into it with skopeo, and pull it with acrpull twice: as a root filesystem and as an
//! OCI image layout (checked with skopeo). Everything stays on 127.0.0.1.
//!
//! Usage: `acrpull-demo [ACRPULL_BINARY] [OUTPUT_DIR]`

use std::path::PathBuf;
use std::process::Command;

use acrpull_testenv::registry::{seed, skopeo, Registry, RegistryOptions};
use anyhow::{ensure, Context as _};

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let binary = PathBuf::from(args.next().unwrap_or_else(|| "target/debug/acrpull".into()));
    let out = PathBuf::from(args.next().unwrap_or_else(|| "out/demo".into()));
    ensure!(
        binary.is_file(),
        "acrpull binary not found at {}: build it first",
        binary.display()
    );
    if out.exists() {
        std::fs::remove_dir_all(&out).with_context(|| format!("clearing {}", out.display()))?;
    }
    std::fs::create_dir_all(&out)?;

    println!("== starting docker-registry on loopback");
    let registry = Registry::start(RegistryOptions::anonymous())?;
    let image = format!("{}/demo/hello:v1", registry.host());
    seed(&registry, "simple", "demo/hello:v1")?;
    println!("   pushed fixture `simple` as {image}");

    let rootfs = out.join("rootfs");
    println!("== acrpull {image} {}", rootfs.display());
    run(Command::new(&binary).arg(&image).arg(&rootfs))?;
    let mut listing: Vec<String> = std::fs::read_dir(&rootfs)?
        .map(|e| e.map(|e| e.file_name().to_string_lossy().into_owned()))
        .collect::<Result<_, _>>()?;
    listing.sort();
    println!("   root filesystem: {}", listing.join(" "));

    let layout = out.join("layout");
    println!(
        "== acrpull pull --format oci --json {image} {}",
        layout.display()
    );
    run(Command::new(&binary)
        .args(["pull", "--format", "oci", "--json"])
        .arg(&image)
        .arg(&layout))?;
    let raw = skopeo(&["inspect", "--raw", &format!("oci:{}:v1", layout.display())])?;
    let served = skopeo(&[
        "inspect",
        "--raw",
        "--tls-verify=false",
        &format!("docker://{image}"),
    ])?;
    ensure!(
        raw == served,
        "the layout's manifest differs from the registry's"
    );
    println!("   skopeo reads the layout; its manifest is byte-identical to the registry's");
    println!("== done: outputs in {}", out.display());
    Ok(())
}

fn run(command: &mut Command) -> anyhow::Result<()> {
    let status = command
        .status()
        .with_context(|| format!("running {command:?}"))?;
    ensure!(status.success(), "{command:?} failed with {status}");
    Ok(())
}
