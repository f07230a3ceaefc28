//! `acrpull token`: a registry token minted from the Azure identity (or for `--scope`), as
//! `az acr login --expose-token` prints it.

use std::process::ExitCode;

use crate::cli::args::TokenArgs;
use crate::cli::stdout;

pub async fn run(args: TokenArgs) -> anyhow::Result<ExitCode> {
    let registry = args.registry.trim_end_matches('/');
    // Validate the host the same way image references are.
    let reference: acrpull::Reference = format!("{registry}/probe").parse()?;
    let mut credential_args = args.registry_args;
    credential_args.identity = credential_args.identity || credential_args.username.is_none();
    let credential = credential_args.credential_for(reference.registry())?;
    let options = credential_args
        .client_options()
        .for_host(reference.api_host())
        .map_err(|e| acrpull::Error::from(acrpull::mirror::ConfigError::from(e)))?;
    let http = acrpull::registry::build_http(&options)?;
    let client = acrpull::registry::RegistryClient::new(
        http.clone(),
        reference.registry(),
        reference.api_host(),
        "",
        credential.clone(),
        options,
    );
    let token = match (&args.scope, &credential) {
        (Some(scope), _) => client
            .bearer_token(scope)
            .await
            .map_err(acrpull::Error::from)?
            .ok_or_else(|| anyhow::anyhow!("{registry} does not use bearer tokens"))?,
        (None, acrpull::credential::Credential::Azure(source)) => {
            let base = client.base().await.map_err(acrpull::Error::from)?;
            acrpull::azure::acr::refresh_token_for_registry(&http, base, source.as_ref())
                .await
                .map_err(|source| acrpull::registry::Error::Azure {
                    registry: registry.to_string(),
                    source,
                })
                .map_err(acrpull::Error::from)?
                .0
        }
        (None, _) => anyhow::bail!("without --scope, `acrpull token` needs an Azure identity"),
    };
    let output = serde_json::json!({
        "loginServer": reference.registry(),
        "accessToken": token.expose(),
    });
    stdout::json_line(&output)?;
    Ok(ExitCode::SUCCESS)
}
