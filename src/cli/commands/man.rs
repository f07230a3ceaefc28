//! `acrpull man`: a page on stdout, or every page written into a directory.

use std::io::Write as _;
use std::process::ExitCode;

use anyhow::Context as _;

use crate::cli::args::ManArgs;
use crate::cli::{manpage, stdout};

pub fn run(args: &ManArgs) -> anyhow::Result<ExitCode> {
    // Into a buffer, then through cli::stdout: only a closed stdout ends quietly.
    let mut out = Vec::new();
    if let Some(dir) = &args.dir {
        let written = manpage::write_all(dir)
            .with_context(|| format!("writing man pages into {}", dir.display()))?;
        for path in written {
            writeln!(out, "{}", path.display())?;
        }
    } else {
        let command = manpage::page_for(&args.command)?;
        manpage::render(&command, &mut out)?;
    }
    stdout::write(&out)?;
    Ok(ExitCode::SUCCESS)
}
