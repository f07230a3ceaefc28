//! One file per command. Each takes its parsed arguments, resolves them once (`request`),
//! runs the library and prints the result; shared here: logging, signals and the reporter.

pub mod cache;
pub mod completions;
pub mod copy;
pub mod credential_helper;
pub mod inspect;
pub mod kubelet_credential_provider;
pub mod man;
pub mod pull;
pub mod push;
pub mod query;
pub mod token;
pub mod verify;

use std::io::IsTerminal as _;
use std::process::ExitCode;
use std::sync::Arc;

use acrpull::{ErrorClass, Reporter};

use super::progress::{BarsReporter, ProgressMode, Style};
use super::{Cli, Command};

/// Run the parsed command line.
pub async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Pull(args) => {
            // With --json-events, stderr stays quiet unless progress is asked for.
            let quiet = args.quiet || (args.json_events && args.progress == ProgressMode::Auto);
            init_logging(args.verbose, quiet);
            pull::run(args).await
        }
        Command::Token(args) => {
            init_logging(args.verbose, false);
            token::run(args).await
        }
        Command::Inspect(args) => {
            init_logging(args.verbose, false);
            inspect::run(&args).await
        }
        Command::Tags(args) => {
            init_logging(args.verbose, false);
            query::tags(args).await
        }
        Command::Digest(args) => {
            init_logging(args.verbose, false);
            query::digest(args).await
        }
        Command::Catalog(args) => {
            init_logging(args.verbose, false);
            query::catalog(args).await
        }
        Command::Push(args) | Command::Copy(args) => {
            init_logging(args.verbose, args.quiet);
            copy::run(args).await
        }
        Command::Verify(args) => {
            init_logging(args.verbose, false);
            verify::run(&args).await
        }
        Command::Completions { shell } => completions::run(shell),
        Command::Man(args) => man::run(&args),
        Command::CredentialHelper(args) => {
            init_logging(0, false);
            credential_helper::run(&args.action).await
        }
        Command::KubeletCredentialProvider => {
            init_logging(0, false);
            kubelet_credential_provider::run().await
        }
        Command::Cache(command) => cache::run(command),
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

/// Where progress goes: the reporter handed to the library, and the bars to finish.
struct Reporting {
    reporter: Arc<dyn Reporter>,
    bars: Option<Arc<BarsReporter>>,
}

impl Reporting {
    /// The reporters for `style` (bars named after `source`), plus JSON events on stdout.
    fn new(style: Style, json_events: bool, source: &str) -> Self {
        let bars = (style == Style::Bars).then(|| Arc::new(BarsReporter::new(source)));
        let mut reporters: Vec<Arc<dyn Reporter>> = Vec::new();
        if let Some(bars) = &bars {
            reporters.push(bars.clone());
        }
        match style {
            Style::Plain => reporters.push(Arc::new(super::progress::PlainReporter::default())),
            Style::Final => reporters.push(Arc::new(super::progress::WarningsReporter)),
            Style::Bars | Style::Silent => {}
        }
        if json_events {
            reporters.push(Arc::new(super::events::EventsReporter::default()));
        }
        let reporter: Arc<dyn Reporter> = match reporters.len() {
            0 => Arc::new(acrpull::NoopReporter),
            1 => reporters.remove(0),
            _ => Arc::new(super::progress::Tee(reporters)),
        };
        Reporting { reporter, bars }
    }

    /// A line per step unless `quiet` or the summary is JSON (copies, `pull -f`).
    fn plain_unless(quiet: bool) -> Self {
        let style = if quiet { Style::Silent } else { Style::Plain };
        Self::new(style, false, "")
    }

    /// Erase the bars, if any, before the final line is printed.
    fn finish(&self) {
        if let Some(bars) = &self.bars {
            bars.finish();
        }
    }
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
