//! `acrpull completions SHELL`: clap's completion script on stdout.

use std::process::ExitCode;

use crate::cli::{stdout, Cli};

pub fn run(shell: clap_complete::Shell) -> anyhow::Result<ExitCode> {
    // Into a buffer: clap_complete panics when its writer fails (a closed pipe).
    let mut command = <Cli as clap::CommandFactory>::command();
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut command, "acrpull", &mut script);
    stdout::write(&script)?;
    Ok(ExitCode::SUCCESS)
}
