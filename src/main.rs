//! The `acrpull` binary: parse arguments, set up logging and progress, run the library, and
//! turn errors into a message, a cause chain, a hint and a documented exit code.

mod cli;

use std::io::{IsTerminal as _, Write as _};
use std::process::ExitCode;
use std::sync::Arc;

use acrpull::{ErrorClass, Reporter};
use anyhow::Context as _;

fn main() -> ExitCode {
    let cli = match cli::parse_args(std::env::args_os().collect()) {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() {
                ExitCode::from(ErrorClass::Usage.exit_code())
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    // Kept for the error report: hints name the image asked for.
    let image = image_of(&cli.command);
    let events = matches!(&cli.command, cli::Command::Pull(args) if args.json_events);
    let result = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| anyhow::Error::new(e).context("starting the async runtime"))
        .and_then(|runtime| {
            let result = runtime.block_on(run(cli));
            // Threads still blocked (a stopped pull's wait for a lock) must not hold up the exit.
            runtime.shutdown_background();
            result
        });
    match result {
        Ok(code) => code,
        // `acrpull man | head`: the reader of stdout left; that is not a failure (as ripgrep
        // does). Only a write to stdout makes this error: a network EPIPE stays an error.
        Err(e) if cli::stdout::is_closed(&e) => ExitCode::SUCCESS,
        Err(e) => {
            let class = cli::errors::class_of(&e);
            let hint = cli::errors::hint(&e, image.as_ref());
            let _ = std::io::stderr().write_all(cli::errors::render(&e, image.as_ref()).as_bytes());
            if events {
                cli::events::emit(&cli::events::Event::Error {
                    class: cli::errors::class_name(class),
                    exit_code: class.exit_code(),
                    message: cli::errors::one_line(&e),
                    hint,
                });
            }
            ExitCode::from(class.exit_code())
        }
    }
}

fn image_of(command: &cli::Command) -> Option<acrpull::SourceSpec> {
    match command {
        cli::Command::Pull(args) if args.from_file.is_none() => args.image.parse().ok(),
        cli::Command::Inspect(args) => args.image.parse().ok(),
        _ => None,
    }
}

/// Logs on stderr: warnings by default (a retried connection, a cache skipped), errors only
/// with `quiet`, more with each `-v`.
fn init_logging(verbose: u8, quiet: bool) {
    let default = match verbose {
        0 if quiet => "error",
        0 => "warn",
        1 => "acrpull=info",
        _ => "acrpull=debug",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none())
        .with_target(false);
    if verbose == 0 {
        // Warnings for people: `WARN what happened`, without a timestamp; -v adds them.
        builder.without_time().init();
    } else {
        builder.init();
    }
}

async fn run(cli: cli::Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        cli::Command::Pull(args) => {
            // With --json-events, stderr stays quiet unless progress is asked for.
            let quiet = args.quiet
                || (args.json_events && args.progress == cli::progress::ProgressMode::Auto);
            init_logging(args.verbose, quiet);
            pull(args).await
        }
        cli::Command::Token(args) => {
            init_logging(args.verbose, false);
            token(args).await
        }
        cli::Command::Inspect(args) => {
            init_logging(args.verbose, false);
            let (source, platform, output) = args.to_request()?;
            let credential = match &source {
                acrpull::SourceSpec::Registry(reference) => {
                    args.registry.credential_for(reference.registry())?
                }
                acrpull::SourceSpec::Layout { .. } | acrpull::SourceSpec::Archive { .. } => {
                    acrpull::credential::Credential::Anonymous
                }
            };
            let client = args.registry.client_options();
            if args.referrers {
                let request = cli::inspect::ReferrersRequest {
                    json: args.json,
                    artifact_type: args.artifact_type.clone(),
                };
                cli::inspect::referrers(&source, credential, &client, &request).await?;
                return Ok(ExitCode::SUCCESS);
            }
            cli::inspect::inspect(&source, credential, &client, platform.as_ref(), output).await?;
            Ok(ExitCode::SUCCESS)
        }
        cli::Command::Push(args) | cli::Command::Copy(args) => {
            init_logging(args.verbose, args.quiet);
            push_or_copy(args).await
        }
        cli::Command::Completions { shell } => {
            // Into a buffer: clap_complete panics when its writer fails (a closed pipe).
            let mut command = <cli::Cli as clap::CommandFactory>::command();
            let mut script = Vec::new();
            clap_complete::generate(shell, &mut command, "acrpull", &mut script);
            cli::stdout::write(&script)?;
            Ok(ExitCode::SUCCESS)
        }
        cli::Command::Man(args) => {
            // Into a buffer, then through cli::stdout: only a closed stdout ends quietly.
            let mut out = Vec::new();
            if let Some(dir) = &args.dir {
                let written = cli::manpage::write_all(dir)
                    .with_context(|| format!("writing man pages into {}", dir.display()))?;
                for path in written {
                    writeln!(out, "{}", path.display())?;
                }
            } else {
                let command = cli::manpage::page_for(&args.command)?;
                cli::manpage::render(&command, &mut out)?;
            }
            cli::stdout::write(&out)?;
            Ok(ExitCode::SUCCESS)
        }
        cli::Command::CredentialHelper(args) => credential_helper(&args.action).await,
        cli::Command::Cache(command) => cache(command),
    }
}

async fn push_or_copy(args: cli::PushArgs) -> anyhow::Result<ExitCode> {
    let source = cli::parse_image(&args.source)?;
    let platform = match args.platform.as_deref() {
        None | Some("all") => acrpull::PlatformChoice::All,
        Some(p) => acrpull::PlatformChoice::One(p.parse().map_err(
            |e: acrpull::platform::PlatformParseError| acrpull::Error::Usage(e.to_string()),
        )?),
    };
    let reporter: Arc<dyn Reporter> = if args.quiet || args.json {
        Arc::new(acrpull::NoopReporter)
    } else {
        Arc::new(cli::progress::PlainReporter::default())
    };
    let client = args.registry.client_options();
    let source_credential = match &source {
        acrpull::SourceSpec::Registry(r) => {
            acrpull::credential::resolve(
                r.registry(),
                &acrpull::credential::CredentialOptions {
                    files: acrpull::credential::ConfigFiles::from_process(),
                    ..acrpull::credential::CredentialOptions::default()
                },
                &acrpull::azure::Env::from_process(),
            )
            .map_err(acrpull::Error::from)?
            .credential
        }
        acrpull::SourceSpec::Layout { .. } | acrpull::SourceSpec::Archive { .. } => {
            acrpull::credential::Credential::Anonymous
        }
    };
    let destination = cli::parse_image(&args.destination)?;
    let summary = match destination {
        acrpull::SourceSpec::Layout { path, reference } => {
            // Into a layout: the pull pipeline, keeping every platform by default.
            let options = acrpull::PullOptions {
                format: acrpull::OutputFormat::Oci,
                platform,
                jobs: usize::from(args.jobs),
                client,
                layout_tag: (!reference.is_empty() && !reference.contains(':'))
                    .then_some(reference),
                referrers: args.referrers,
                convert_to_oci: args.manifest_format == cli::ManifestFormatArg::Oci,
                ..acrpull::PullOptions::default()
            };
            // A copy into a layout stages like a pull: stop it as cleanly on a signal.
            stop_on_signals(&options.cancel);
            let outcome =
                acrpull::pull(&source, source_credential, &path, &options, reporter).await?;
            serde_json::to_value(&outcome)?
        }
        acrpull::SourceSpec::Archive { kind, .. } => {
            return Err(acrpull::Error::Usage(format!(
                "{}: is a source only; write an archive with `acrpull pull --format {} IMAGE FILE`",
                kind.scheme(),
                kind.scheme()
            ))
            .into());
        }
        acrpull::SourceSpec::Registry(reference) => {
            let credential = args.registry.credential_for(reference.registry())?;
            let options = acrpull::push::PushOptions {
                platform,
                jobs: usize::from(args.jobs),
                chunk_size: args.chunk_size.max(1) << 20,
                client,
                referrers: args.referrers,
                convert_to_oci: args.manifest_format == cli::ManifestFormatArg::Oci,
            };
            let outcome = acrpull::push::push(
                &source,
                source_credential,
                &reference,
                credential,
                &options,
                reporter,
            )
            .await?;
            serde_json::to_value(&outcome)?
        }
    };
    if args.json {
        cli::stdout::json_pretty(&summary)?;
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

/// `pull -f refs.txt DEST`: every listed image into one OCI layout, blobs stored once.
async fn pull_listed(args: cli::PullArgs) -> anyhow::Result<ExitCode> {
    let (_, options) = args.to_request()?;
    stop_on_signals(&options.cancel);
    if options.format != acrpull::OutputFormat::Oci {
        return Err(acrpull::Error::Usage(
            "-f pulls several images into one OCI layout: add --format oci".into(),
        )
        .into());
    }
    let destination = args.destination()?;
    let credential_options = args.registry.credential_options()?;
    let env = acrpull::azure::Env::from_process();
    let reporter: Arc<dyn Reporter> = if args.quiet || args.json {
        Arc::new(acrpull::NoopReporter)
    } else {
        Arc::new(cli::progress::PlainReporter::default())
    };
    let mut outcomes = Vec::new();
    let sources = args.listed_references()?;
    // Named before anything is written: images that share a tag must not replace each other.
    let names = acrpull::pull::layout_names(&sources)?;
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
        let outcome = acrpull::pull(
            &source,
            credential,
            &destination,
            &options,
            reporter.clone(),
        )
        .await?;
        if !args.quiet && !args.json {
            eprintln!("{}: {}", outcome.reference, outcome.digest);
        }
        outcomes.push(outcome);
    }
    if args.json {
        cli::stdout::json_pretty(&outcomes)?;
    }
    Ok(ExitCode::SUCCESS)
}

async fn pull(args: cli::PullArgs) -> anyhow::Result<ExitCode> {
    use cli::progress::{ProgressMode, Style};
    if args.from_file.is_some() {
        return pull_listed(args).await;
    }
    let (source, mut options) = args.to_request()?;
    stop_on_signals(&options.cancel);
    let credential = match &source {
        acrpull::SourceSpec::Registry(reference) => {
            args.registry.credential_for(reference.registry())?
        }
        acrpull::SourceSpec::Layout { .. } | acrpull::SourceSpec::Archive { .. } => {
            acrpull::credential::Credential::Anonymous
        }
    };
    if let acrpull::SourceSpec::Registry(reference) = &source {
        options.mirrors = args.mirrors(reference, &credential)?;
    }
    // With --json-events, stdout carries the progress; stderr stays quiet unless asked.
    let quiet = args.quiet || (args.json_events && args.progress == ProgressMode::Auto);
    let style = cli::progress::choose(args.progress, quiet, cli::progress::Terminal::detect());
    let bars = (style == Style::Bars)
        .then(|| Arc::new(cli::progress::BarsReporter::new(&source.to_string())));
    let mut reporters: Vec<Arc<dyn Reporter>> = Vec::new();
    if let Some(bars) = &bars {
        reporters.push(bars.clone());
    }
    match style {
        Style::Plain => reporters.push(Arc::new(cli::progress::PlainReporter::default())),
        Style::Final => reporters.push(Arc::new(cli::progress::WarningsReporter)),
        Style::Bars | Style::Silent => {}
    }
    if args.json_events {
        reporters.push(Arc::new(cli::events::EventsReporter::default()));
    }
    let reporter: Arc<dyn Reporter> = match reporters.len() {
        0 => Arc::new(acrpull::NoopReporter),
        1 => reporters.remove(0),
        _ => Arc::new(cli::progress::Tee(reporters)),
    };
    let destination = args.destination()?;
    let result = acrpull::pull(&source, credential, &destination, &options, reporter).await;
    if let Some(bars) = &bars {
        bars.finish();
    }
    let outcome = result?;
    if args.json {
        cli::stdout::json_pretty(&outcome)?;
    } else if args.json_events {
        cli::events::emit(&cli::events::Event::Done { outcome: &outcome });
    }
    if style != Style::Silent && !args.json {
        let reused = if outcome.bytes_reused > 0 {
            format!(
                ", {} reused",
                cli::progress::human_bytes(outcome.bytes_reused)
            )
        } else {
            String::new()
        };
        eprintln!(
            "{}: wrote {} to {} ({}{reused}, {:.2} s)",
            outcome.reference,
            outcome.digest,
            outcome.destination.display(),
            cli::progress::human_bytes(outcome.bytes_downloaded),
            outcome.seconds
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// Stop the pull on SIGINT or SIGTERM: it stops its downloads, removes its staging directory
/// and fails with exit 130 or 143 (and an `error` event). A second signal exits at once.
fn stop_on_signals(cancel: &acrpull::cancel::Cancel) {
    use acrpull::cancel::StopSignal;
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut interrupt), Ok(mut terminate)) = (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
    ) else {
        tracing::warn!("SIGINT and SIGTERM cannot be handled: they stop acrpull without cleanup");
        return;
    };
    let cancel = cancel.clone();
    tokio::spawn(async move {
        let first = tokio::select! {
            _ = interrupt.recv() => StopSignal::Interrupt,
            _ = terminate.recv() => StopSignal::Terminate,
        };
        cancel.cancel(first);
        let code = tokio::select! {
            _ = interrupt.recv() => ErrorClass::Interrupted.exit_code(),
            _ = terminate.recv() => ErrorClass::Terminated.exit_code(),
        };
        std::process::exit(i32::from(code));
    });
}

/// `acrpull cache info|prune`: JSON on stdout.
fn cache(command: cli::CacheCommand) -> anyhow::Result<ExitCode> {
    let (dir, prune) = match command {
        cli::CacheCommand::Info(dir) => (dir, None),
        cli::CacheCommand::Prune(args) => {
            let policy = args.policy();
            (args.dir, Some(policy))
        }
    };
    let dir = dir
        .cache_dir
        .or_else(acrpull::cache::BlobCache::default_dir)
        .ok_or_else(|| {
            acrpull::Error::Usage("no cache directory: set --cache-dir or HOME".into())
        })?;
    let cache = acrpull::cache::BlobCache::open(&dir).map_err(acrpull::Error::from)?;
    let summary = match prune {
        None => serde_json::json!({"cacheDir": dir, "held": cache.usage()}),
        Some(policy) => {
            let removed = cache.prune(&policy);
            let staging = cache.remove_abandoned_staging();
            serde_json::json!({
                "cacheDir": dir,
                "removed": removed,
                "removedStagingDirs": staging,
                "held": cache.usage(),
            })
        }
    };
    cli::stdout::json_pretty(&summary)?;
    Ok(ExitCode::SUCCESS)
}

/// The Docker credential-helper protocol: the answer on stdout; on failure a one-line message
/// on stdout (what docker shows and matches), the cause chain on stderr, and exit 1.
async fn credential_helper(action: &str) -> anyhow::Result<ExitCode> {
    use acrpull::credential::credential_helper::{self, Action};
    use std::io::Read as _;
    init_logging(0, false);
    let action: Action = action.parse()?;
    let mut input = Vec::new();
    std::io::stdin()
        .read_to_end(&mut input)
        .map_err(|e| anyhow::anyhow!(e).context("reading standard input"))?;
    let env = acrpull::azure::Env::from_process();
    let registries = cli::azure_registries()?;
    let result = credential_helper::run(
        action,
        &input,
        &env,
        &registries,
        &acrpull::registry::ClientOptions::default(),
    )
    .await;
    let output = match result {
        Ok(output) => output,
        Err(error) => {
            // Clients show (and match) the helper's stdout; the cause chain goes to stderr.
            let _ = cli::stdout::write(format!("{}\n", error.protocol_message()).as_bytes());
            return Err(error.into());
        }
    };
    cli::stdout::write(output.as_bytes())?;
    Ok(ExitCode::SUCCESS)
}

async fn token(args: cli::TokenArgs) -> anyhow::Result<ExitCode> {
    let registry = args.registry.trim_end_matches('/');
    // Validate the host the same way image references are.
    let reference: acrpull::Reference = format!("{registry}/probe").parse()?;
    let mut credential_args = args.registry_args;
    credential_args.identity = credential_args.identity || credential_args.username.is_none();
    let credential = credential_args.credential_for(reference.registry())?;
    let options = credential_args.client_options();
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
    cli::stdout::json_line(&output)?;
    Ok(ExitCode::SUCCESS)
}
