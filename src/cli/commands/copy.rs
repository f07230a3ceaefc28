//! `acrpull copy` (and `push`, which is a copy to a registry): from a registry, a layout or
//! an archive into a registry (`push`) or an OCI layout (the pull pipeline).

use std::process::ExitCode;

use acrpull::SourceSpec;

use super::{push, stop_on_signals, Reporting};
use crate::cli::args::{ManifestFormatArg, PushArgs};
use crate::cli::request::{copy_source_credential, parse_image};
use crate::cli::stdout;

pub async fn run(args: PushArgs) -> anyhow::Result<ExitCode> {
    let source = parse_image(&args.source)?;
    let platform = args.platform()?;
    let reporting = Reporting::plain_unless(args.quiet || args.json);
    let source_credential = copy_source_credential(&source)?;
    let destination = parse_image(&args.destination)?;
    let summary = match destination {
        SourceSpec::Layout { path, reference } => {
            // Into a layout: the pull pipeline, keeping every platform by default.
            let options = acrpull::PullOptions {
                format: acrpull::OutputFormat::Oci,
                platform,
                jobs: usize::from(args.jobs),
                client: args.registry.client_options(),
                layout_tag: (!reference.is_empty() && !reference.contains(':'))
                    .then_some(reference),
                referrers: args.referrers,
                convert_to_oci: args.manifest_format == ManifestFormatArg::Oci,
                verify: args.verify.options(),
                ..acrpull::PullOptions::default()
            };
            // A copy into a layout stages like a pull: stop it as cleanly on a signal.
            stop_on_signals(&options.cancel);
            let outcome = acrpull::pull(
                &source,
                source_credential,
                &path,
                &options,
                reporting.reporter,
            )
            .await?;
            serde_json::to_value(&outcome)?
        }
        SourceSpec::Archive { kind, .. } => {
            return Err(acrpull::Error::Usage(format!(
                "{}: is a source only; write an archive with `acrpull pull --format {} IMAGE FILE`",
                kind.scheme(),
                kind.scheme()
            ))
            .into());
        }
        SourceSpec::Registry(reference) => {
            push::to_registry(
                &args,
                &source,
                source_credential,
                &reference,
                platform,
                reporting.reporter,
            )
            .await?
        }
    };
    if args.json {
        stdout::json_pretty(&summary)?;
    } else if !args.quiet {
        eprintln!(
            "{} -> {}: {}",
            args.source,
            args.destination,
            summary["digest"].as_str().unwrap_or("")
        );
    }
    Ok(ExitCode::SUCCESS)
}
