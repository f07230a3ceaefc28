//! Pull an image into a root filesystem directory through the library: the same verified,
//! hostile-archive-safe pipeline as `acrpull IMAGE DIR`.
//!
//! ```sh
//! cargo run --example pull_rootfs -- alpine:3.20 ./rootfs
//! cargo run --example pull_rootfs -- myregistry.azurecr.io/app:v1 ./rootfs   # Azure identity
//! ```
//!
//! Credentials are chosen the way the binary chooses them: the Docker and containers credential
//! files, then the Azure identity chain for ACR hosts, else anonymous. The library reads no
//! environment variable by itself: `from_process` is where this program opts in to
//! `HOME`, `DOCKER_CONFIG`, `REGISTRY_AUTH_FILE` and the Azure identity variables.

use std::path::Path;
use std::sync::Arc;

use acrpull::credential::{self, ConfigFiles, Credential, CredentialOptions};
use acrpull::{NoopReporter, OutputFormat, PullOptions, SourceSpec};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let (Some(image), Some(destination)) = (args.next(), args.next()) else {
        eprintln!("usage: pull_rootfs IMAGE DIR");
        std::process::exit(2);
    };
    let source: SourceSpec = image.parse()?;
    let credential = match &source {
        SourceSpec::Registry(reference) => {
            let options = CredentialOptions {
                files: ConfigFiles::from_process(),
                ..CredentialOptions::default()
            };
            let env = acrpull::azure::Env::from_process();
            credential::resolve(reference.registry(), &options, &env)?.credential
        }
        _ => Credential::Anonymous,
    };
    let options = PullOptions {
        format: OutputFormat::Rootfs,
        ..PullOptions::default()
    };
    let outcome = acrpull::pull(
        &source,
        credential,
        Path::new(&destination),
        &options,
        Arc::new(NoopReporter),
    )
    .await?;
    println!(
        "{} ({}) -> {}: {} layers, {} bytes downloaded",
        outcome.reference,
        outcome.digest,
        outcome.destination.display(),
        outcome.layers.len(),
        outcome.bytes_downloaded
    );
    Ok(())
}
