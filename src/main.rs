//! The `acrpull` binary: parse arguments, run the command (`cli::commands`), and turn errors
//! into a message, a cause chain, a hint and a documented exit code.

mod cli;

use std::io::Write as _;
use std::process::ExitCode;

use acrpull::ErrorClass;

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
            let result = runtime.block_on(cli::commands::run(cli));
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
        cli::Command::Verify(args) => args.image.parse().ok(),
        cli::Command::Digest(args) => args.image.parse().ok(),
        _ => None,
    }
}
