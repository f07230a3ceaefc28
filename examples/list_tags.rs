//! List the tags of a repository through the library, as `acrpull tags` does, and print the
//! manifest digest each one names: the questions `crane ls` and `crane digest` answer.
//!
//! ```sh
//! cargo run --example list_tags -- 127.0.0.1:5000/hello
//! cargo run --example list_tags -- myregistry.azurecr.io/app          # Azure identity
//! ```
//!
//! Credentials are chosen the way the binary chooses them (credential files, then the Azure
//! identity chain for ACR hosts, else anonymous); `from_process` is where this program opts
//! in to the environment, since the library reads none by itself.

use acrpull::credential::{self, ConfigFiles, CredentialOptions};
use acrpull::registry::ClientOptions;
use acrpull::Reference;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let Some(repository) = std::env::args().nth(1) else {
        eprintln!("usage: list_tags REGISTRY/REPOSITORY");
        std::process::exit(2);
    };
    let reference: Reference = repository.parse()?;
    let options = CredentialOptions {
        files: ConfigFiles::from_process(),
        ..CredentialOptions::default()
    };
    let env = acrpull::azure::Env::from_process();
    let resolved = credential::resolve(reference.registry(), &options, &env)?;
    let client = ClientOptions::default();
    // Pages of 100 (`?n=100`), followed through `Link` headers to the end.
    let tags =
        acrpull::query::tags(&reference, resolved.credential.clone(), &client, Some(100)).await?;
    for tag in tags {
        let tagged: Reference =
            format!("{}/{}:{tag}", reference.registry(), reference.repository()).parse()?;
        let digest = acrpull::query::digest(&tagged, resolved.credential.clone(), &client).await?;
        println!("{tag}\t{digest}");
    }
    Ok(())
}
