//! The `acrpull` binary: parse arguments, set up logging and progress, run the library, and
//! turn errors into a message, a cause chain, a hint and a documented exit code.

mod cli;

use std::io::{IsTerminal as _, Write as _};
use std::process::ExitCode;
use std::sync::Arc;

use acrpull::{ErrorClass, Reporter};

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
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            report_error(&anyhow::Error::new(e).context("starting the async runtime"));
            return ExitCode::from(ErrorClass::Other.exit_code());
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(code) => code,
        Err(e) => {
            report_error(&e);
            ExitCode::from(class_of(&e).exit_code())
        }
    }
}

fn init_logging(verbose: u8) {
    let default = match verbose {
        0 => "warn",
        1 => "acrpull=info",
        _ => "acrpull=debug",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none())
        .with_target(false)
        .init();
}

async fn run(cli: cli::Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        cli::Command::Pull(args) => {
            init_logging(args.verbose);
            let (source, options) = args.to_request()?;
            let credential = match &source {
                acrpull::SourceSpec::Registry(reference) => {
                    args.registry.credential_for(reference.registry())?
                }
                acrpull::SourceSpec::Layout { .. } => acrpull::credential::Credential::Anonymous,
            };
            let reporter: Arc<dyn Reporter> = if args.quiet || args.json {
                Arc::new(acrpull::NoopReporter)
            } else {
                Arc::new(cli::progress::PlainReporter::default())
            };
            let outcome =
                acrpull::pull(&source, credential, &args.destination, &options, reporter).await?;
            if args.json {
                let mut stdout = std::io::stdout().lock();
                serde_json::to_writer_pretty(&mut stdout, &outcome)?;
                writeln!(stdout)?;
            } else if !args.quiet {
                eprintln!(
                    "{}: wrote {} to {} ({}, {:.2} s)",
                    outcome.reference,
                    outcome.digest,
                    outcome.destination.display(),
                    cli::progress::human_bytes(outcome.bytes_downloaded),
                    outcome.seconds
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        cli::Command::Push(args) | cli::Command::Copy(args) => {
            init_logging(args.verbose);
            push_or_copy(args).await
        }
        cli::Command::Token(args) => {
            init_logging(args.verbose);
            token(args).await
        }
        cli::Command::CredentialHelper(args) => credential_helper(&args.action).await,
    }
}

async fn push_or_copy(args: cli::PushArgs) -> anyhow::Result<ExitCode> {
    let source: acrpull::SourceSpec = args.source.parse()?;
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
        acrpull::SourceSpec::Layout { .. } => acrpull::credential::Credential::Anonymous,
    };
    let destination: acrpull::SourceSpec = args.destination.parse()?;
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
                ..acrpull::PullOptions::default()
            };
            let outcome =
                acrpull::pull(&source, source_credential, &path, &options, reporter).await?;
            serde_json::to_value(&outcome)?
        }
        acrpull::SourceSpec::Registry(reference) => {
            let credential = args.registry.credential_for(reference.registry())?;
            let options = acrpull::push::PushOptions {
                platform,
                jobs: usize::from(args.jobs),
                chunk_size: args.chunk_size.max(1) << 20,
                client,
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
        let mut stdout = std::io::stdout().lock();
        serde_json::to_writer_pretty(&mut stdout, &summary)?;
        writeln!(stdout)?;
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

/// The Docker credential-helper protocol: the answer on stdout; on failure a one-line message
/// on stdout (what docker shows and matches), the cause chain on stderr, and exit 1.
async fn credential_helper(action: &str) -> anyhow::Result<ExitCode> {
    use acrpull::credential::credential_helper::{self, Action};
    use std::io::Read as _;
    init_logging(0);
    let action: Action = action.parse()?;
    let mut input = Vec::new();
    std::io::stdin()
        .read_to_end(&mut input)
        .map_err(|e| anyhow::anyhow!(e).context("reading standard input"))?;
    let env = acrpull::azure::Env::from_process();
    let result = credential_helper::run(
        action,
        &input,
        &env,
        &acrpull::registry::ClientOptions::default(),
    )
    .await;
    let mut stdout = std::io::stdout().lock();
    let output = match result {
        Ok(output) => output,
        Err(error) => {
            // Clients show (and match) the helper's stdout; the cause chain goes to stderr.
            let _ = writeln!(stdout, "{}", error.protocol_message());
            return Err(error.into());
        }
    };
    stdout.write_all(output.as_bytes())?;
    stdout.flush()?;
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
    let mut stdout = std::io::stdout().lock();
    serde_json::to_writer(&mut stdout, &output)?;
    writeln!(stdout)?;
    Ok(ExitCode::SUCCESS)
}

fn class_of(error: &anyhow::Error) -> ErrorClass {
    error
        .chain()
        .find_map(|e| e.downcast_ref::<acrpull::Error>())
        .map_or(ErrorClass::Other, acrpull::Error::class)
}

fn hint(error: &anyhow::Error) -> Option<String> {
    use acrpull::credential::Error as CredentialError;
    match error
        .chain()
        .find_map(|e| e.downcast_ref::<acrpull::Error>())
    {
        Some(acrpull::Error::Credential(CredentialError::File { .. })) => {
            return Some(
                "fix or move that file, or give credentials another way (--authfile, --username/--password-stdin)".into(),
            )
        }
        Some(acrpull::Error::Credential(CredentialError::Helper { .. })) => {
            return Some(
                "install the helper on PATH, or remove it from credHelpers/credsStore in that file".into(),
            )
        }
        _ => {}
    }
    let class = class_of(error);
    let text = format!("{error:#}");
    match class {
        ErrorClass::Auth if text.contains("insufficient_scope") => None,
        ErrorClass::Auth => Some(
            "check the credentials (--username/--password-stdin, Docker config) and that they may pull this repository".into(),
        ),
        ErrorClass::NotFound if text.contains("platform") => {
            Some("choose one of the listed platforms with --platform".into())
        }
        ErrorClass::NotFound => Some("check the registry, repository and tag spelling".into()),
        ErrorClass::Network if text.contains("TLS") => None,
        ErrorClass::Network => Some(
            "the registry could not be reached reliably; check the address, proxy settings (HTTPS_PROXY/NO_PROXY) or try again".into(),
        ),
        ErrorClass::Integrity => Some(
            "the registry served content that does not match its digest or is unsafe; nothing was written".into(),
        ),
        _ => None,
    }
}

fn report_error(error: &anyhow::Error) {
    let mut stderr = std::io::stderr().lock();
    let _ = writeln!(stderr, "error: {error}");
    for cause in error.chain().skip(1) {
        let _ = writeln!(stderr, "  Caused by: {cause}");
    }
    if let Some(hint) = hint(error) {
        let _ = writeln!(stderr, "  hint: {hint}");
    }
}
