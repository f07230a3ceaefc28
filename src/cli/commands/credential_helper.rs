//! The Docker credential-helper protocol: the answer on stdout; on failure a one-line message
//! on stdout (what docker shows and matches), the cause chain on stderr, and exit 1.

use std::process::ExitCode;

use acrpull::credential_helper::{self, Action};

use crate::cli::request::HelperInput;
use crate::cli::stdout;

pub async fn run(action: &str) -> anyhow::Result<ExitCode> {
    let action: Action = action.parse()?;
    let input = HelperInput::read()?;
    let result = credential_helper::run(
        action,
        &input.request,
        &input.env,
        &input.registries,
        &input.options,
    )
    .await;
    let output = match result {
        Ok(output) => output,
        Err(error) => {
            // Clients show (and match) the helper's stdout; the cause chain goes to stderr.
            let _ = stdout::write(format!("{}\n", error.protocol_message()).as_bytes());
            return Err(error.into());
        }
    };
    stdout::write(output.as_bytes())?;
    Ok(ExitCode::SUCCESS)
}
