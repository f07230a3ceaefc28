//! Get a registry token with an Azure managed identity (or any identity of the Azure chain:
//! service principal, workload identity), without Docker or the Azure CLI.
//!
//! ```sh
//! cargo run --example managed_identity_token -- myregistry.azurecr.io
//! ```
//!
//! Prints what `az acr login --expose-token` prints: the login server and an ACR refresh token,
//! to use as the password of the user `00000000-0000-0000-0000-000000000000` (docker, podman,
//! skopeo, helm, oras). The identity is chosen from the Azure SDKs' variables
//! (`AZURE_CLIENT_ID`, `IDENTITY_ENDPOINT`, ...; see `docs/azure-auth.md`), snapshotted once by
//! `Env::from_process`; `AZURE_CLIENT_ID` alone selects a user-assigned managed identity (pass a
//! `UserAssignedId` to `default_chain` to choose one by object or resource id instead).

use acrpull::azure::{self, Env, ACR_AUDIENCE};
use acrpull::registry::{build_http, ClientOptions};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let Some(registry) = std::env::args().nth(1) else {
        eprintln!("usage: managed_identity_token REGISTRY");
        std::process::exit(2);
    };
    let source = azure::default_chain(&Env::from_process(), None, ACR_AUDIENCE)?;
    eprintln!("identity: {}", source.describe());
    let http = build_http(&ClientOptions::default())?;
    let registry_url = url::Url::parse(&format!("https://{registry}/"))?;
    let (refresh_token, login_server) =
        azure::refresh_token_for_registry(&http, &registry_url, source.as_ref()).await?;
    let answer = serde_json::json!({
        "loginServer": login_server,
        "accessToken": refresh_token.expose(),
    });
    println!("{answer}");
    Ok(())
}
