//! `acrpull verify`: the image's manifest resolved and its signatures checked, nothing
//! downloaded beyond them.

use std::process::ExitCode;

use crate::cli::args::VerifyCommandArgs;
use crate::cli::request::parse_image;
use crate::cli::stdout;

pub async fn run(args: &VerifyCommandArgs) -> anyhow::Result<ExitCode> {
    let source = parse_image(&args.image)?;
    let credential = args.registry.credential_for_source(&source)?;
    let verification = acrpull::pull::verify_image(
        &source,
        credential,
        &args.registry.client_options(),
        &args.verify.options(),
        &acrpull::NoopReporter,
    )
    .await?;
    for warning in &verification.warnings {
        eprintln!("warning: {warning}");
    }
    if args.json {
        stdout::json_pretty(&verification)?;
    } else {
        eprintln!(
            "{source}: {} verified by {}{}",
            verification.digest,
            verification.scheme,
            verification
                .signer
                .as_deref()
                .map(|s| format!(" (signed by {s})"))
                .unwrap_or_default()
        );
    }
    Ok(ExitCode::SUCCESS)
}
