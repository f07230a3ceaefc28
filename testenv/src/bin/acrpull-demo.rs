//! The README's main-job demo: start the real distribution registry on loopback, push a small
//! image into it with skopeo, and pull it with acrpull twice: as a root filesystem and as an
//! OCI image layout (checked with skopeo). Everything stays on 127.0.0.1.
//!
//! Then the headline: a private image pulled with an Azure managed identity alone. Loopback fakes
//! play IMDS and the ACR token service; the real registry (with `auth: token`) verifies every
//! token they sign.
//!
//! Usage: `acrpull-demo [ACRPULL_BINARY] [OUTPUT_DIR]`

use std::path::PathBuf;
use std::process::Command;

use acrpull_testenv::azure::{FakeAzure, TokenAuthRegistry};
use acrpull_testenv::fixtures::fixture_layout;
use acrpull_testenv::registry::{seed, skopeo, skopeo_copy, Registry, RegistryOptions};
use anyhow::{ensure, Context as _};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
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
    managed_identity(&binary, &out).await?;
    println!("== done: outputs in {}", out.display());
    Ok(())
}

async fn managed_identity(binary: &std::path::Path, out: &std::path::Path) -> anyhow::Result<()> {
    println!("== managed identity: fake IMDS + ACR token service, real registry with auth: token");
    let fake = FakeAzure::start().await?;
    let registry = TokenAuthRegistry::start(&fake.registry_auth_config()).await?;
    let push = fake.mint_registry_token("publisher", &[("aci-helloworld", &["pull", "push"])])?;
    let source = format!("oci:{}:v1", fixture_layout("simple").display());
    let image = format!("{}/aci-helloworld:v1", registry.address());
    skopeo_copy(
        &source,
        &format!("docker://{image}"),
        &["--preserve-digests", "--dest-registry-token", &push],
    )?;
    fake.set_system_identity(Some("vm-identity"));
    fake.grant("vm-identity", "aci-helloworld", &["pull"]);
    println!("   pushed {image}; the VM's system-assigned identity has AcrPull on it");
    let rootfs = out.join("aci-helloworld");
    println!(
        "== AZURE_POD_IDENTITY_AUTHORITY_HOST={} acrpull --identity -v {image} {}",
        fake.url(),
        rootfs.display()
    );
    // On Azure this is just `acrpull myregistry.azurecr.io/aci-helloworld:v1 ./out`: ACR hosts
    // use the identity chain by default, and IMDS is at its well-known address. Here the
    // registry is on loopback, so `--identity` asks for the chain and the variable points IMDS
    // at the fake.
    let mut command = Command::new(binary);
    command
        .args(["--identity", "-v"])
        .arg(&image)
        .arg(&rootfs)
        .env("AZURE_POD_IDENTITY_AUTHORITY_HOST", fake.url());
    for name in [
        "AZURE_CLIENT_ID",
        "AZURE_TENANT_ID",
        "AZURE_CLIENT_SECRET",
        "AZURE_FEDERATED_TOKEN_FILE",
        "IDENTITY_ENDPOINT",
        "IDENTITY_HEADER",
        "MSI_ENDPOINT",
    ] {
        command.env_remove(name);
    }
    let status = tokio::task::spawn_blocking(move || command.status()).await??;
    ensure!(
        status.success(),
        "the managed identity pull failed with {status}"
    );
    println!(
        "   pulled with the managed identity: {} file(s) at the top of the root filesystem",
        std::fs::read_dir(&rootfs)?.count()
    );
    Ok(())
}

fn run(command: &mut Command) -> anyhow::Result<()> {
    let status = command
        .status()
        .with_context(|| format!("running {command:?}"))?;
    ensure!(status.success(), "{command:?} failed with {status}");
    Ok(())
}
