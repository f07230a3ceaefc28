//! The kubelet's exec image credential provider protocol (`docs/azure.md`): the response on
//! stdout; on failure nothing on stdout, the message on stderr (the kubelet logs it) and a
//! documented exit code: 2 for a request this provider cannot answer (unknown apiVersion,
//! malformed JSON, invalid image), 3 when the identity or the ACR exchange fails.

use std::process::ExitCode;

use acrpull::credential_helper;
use acrpull::kubelet::{self, Error};

use crate::cli::request::HelperInput;
use crate::cli::stdout;

pub async fn run() -> anyhow::Result<ExitCode> {
    let input = HelperInput::read()?;
    let output = kubelet::run(
        &input.request,
        &input.env,
        &input.registries,
        &input.options,
    )
    .await
    .map_err(classified)?;
    stdout::write(output.as_bytes())?;
    Ok(ExitCode::SUCCESS)
}

/// The error as the library error whose class (exit code) and hint fit it.
fn classified(error: Error) -> anyhow::Error {
    match error {
        Error::Credentials { registry, source } => match source {
            credential_helper::Error::Azure { source, .. } => {
                acrpull::Error::Registry(acrpull::registry::Error::Azure { registry, source })
                    .into()
            }
            credential_helper::Error::Registry { source, .. } => {
                acrpull::Error::Registry(*source).into()
            }
            other => {
                anyhow::Error::new(other).context(format!("no ACR credentials for {registry}"))
            }
        },
        request => {
            let mut message = request.to_string();
            let mut cause = std::error::Error::source(&request);
            while let Some(inner) = cause {
                message.push_str(&format!(": {inner}"));
                cause = inner.source();
            }
            acrpull::Error::Usage(message).into()
        }
    }
}
