//! `acrpull pull`: one image into a root filesystem, a layout or an archive; with `-f`, every
//! listed image into one OCI layout.

use std::process::ExitCode;

use acrpull::OutputFormat;

use super::{stop_on_signals, Reporting};
use crate::cli::args::PullArgs;
use crate::cli::progress::{self, ProgressMode, Style};
use crate::cli::{events, stdout};

pub async fn run(args: PullArgs) -> anyhow::Result<ExitCode> {
    if args.from_file.is_some() {
        return listed(args).await;
    }
    let (source, mut options) = args.to_request()?;
    stop_on_signals(&options.cancel);
    let credential = args.registry.credential_for_source(&source)?;
    if let acrpull::SourceSpec::Registry(reference) = &source {
        options.mirrors = args.mirrors(reference, &credential)?;
    }
    // With --json-events, stdout carries the progress; stderr stays quiet unless asked.
    let quiet = args.quiet || (args.json_events && args.progress == ProgressMode::Auto);
    let style = progress::choose(args.progress, quiet, progress::Terminal::detect());
    let reporting = Reporting::new(style, args.json_events, &source.to_string());
    let destination = args.destination()?;
    let result = acrpull::pull(
        &source,
        credential,
        &destination,
        &options,
        reporting.reporter.clone(),
    )
    .await;
    reporting.finish();
    let outcome = result?;
    if args.json {
        stdout::json_pretty(&outcome)?;
    } else if args.json_events {
        events::emit(&events::Event::Done { outcome: &outcome });
    }
    if style != Style::Silent && !args.json {
        let reused = if outcome.bytes_reused > 0 {
            format!(", {} reused", progress::human_bytes(outcome.bytes_reused))
        } else {
            String::new()
        };
        eprintln!(
            "{}: wrote {} to {} ({}{reused}, {:.2} s)",
            outcome.reference,
            outcome.digest,
            outcome.destination.display(),
            progress::human_bytes(outcome.bytes_downloaded),
            outcome.seconds
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// `pull -f refs.txt DEST`: every listed image into one OCI layout, blobs stored once.
async fn listed(args: PullArgs) -> anyhow::Result<ExitCode> {
    let (_, mut options) = args.to_request()?;
    // One image after another over the same connections.
    options.client.shared_clients = Some(acrpull::http::SharedClients::default());
    stop_on_signals(&options.cancel);
    if options.format != OutputFormat::Oci {
        return Err(acrpull::Error::Usage(
            "-f pulls several images into one OCI layout: add --format oci".into(),
        )
        .into());
    }
    let destination = args.destination()?;
    let credential_options = args.registry.credential_options()?;
    let env = acrpull::azure::Env::from_process();
    let reporting = Reporting::plain_unless(args.quiet || args.json);
    let sources = args.listed_references()?;
    // Named before anything is written: images that share a tag must not replace each other.
    let names = acrpull::pull::layout_names(&sources)?;
    let mut listed = Vec::new();
    for (source, name) in sources.into_iter().zip(names) {
        let mut options = options.clone();
        options.layout_tag = name;
        let credential = match &source {
            acrpull::SourceSpec::Registry(reference) => {
                let credential =
                    acrpull::credential::resolve(reference.registry(), &credential_options, &env)
                        .map_err(acrpull::Error::from)?
                        .credential;
                options.mirrors = args.mirrors(reference, &credential)?;
                credential
            }
            acrpull::SourceSpec::Layout { .. } | acrpull::SourceSpec::Archive { .. } => {
                acrpull::credential::Credential::Anonymous
            }
        };
        listed.push((source, credential, options));
    }
    let mut outcomes = Vec::new();
    // The later images resolved, and their blobs downloaded into the cache, while earlier
    // ones are written; stopped when this function returns, however it does.
    let mut ahead: Option<acrpull::pull::Ahead> = None;
    for (index, (source, credential, options)) in listed.iter().enumerate() {
        if index == 1 {
            // The first pull has checked (or made) the destination: the other tags are
            // resolved together now, not one round trip per image as each comes up, and
            // each image's blobs start downloading as soon as its tag resolved.
            ahead = Some(acrpull::pull::ahead(listed[1..].to_vec(), &destination));
        }
        let mut options = options.clone();
        if let Some(ahead) = ahead.as_mut() {
            options.resolved_ahead = ahead.digest(index - 1).await;
            options.fetched_ahead = Some(ahead.fetched());
        }
        let outcome = acrpull::pull(
            source,
            credential.clone(),
            &destination,
            &options,
            reporting.reporter.clone(),
        )
        .await?;
        if !args.quiet && !args.json {
            eprintln!("{}: {}", outcome.reference, outcome.digest);
        }
        outcomes.push(outcome);
    }
    if args.json {
        stdout::json_pretty(&outcomes)?;
    }
    Ok(ExitCode::SUCCESS)
}
