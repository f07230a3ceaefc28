//! `acrpull man`: one man page per command, generated from the clap definitions (so pages never
//! drift from `--help`). `acrpull(1)` names `acrpull-pull(1)` and the others in its command
//! list; `acrpull man --dir DIR` writes every one of them, so those names exist.
//!
//! clap_mangen puts the examples and exit codes (the top-level `after_help`) into filled
//! text, where roff joins the lines of each example into one paragraph; they are rendered here
//! instead as `EXAMPLES` and `EXIT STATUS` sections in no-fill mode, line for line.

use std::io::Write;
use std::path::{Path, PathBuf};

use clap::CommandFactory as _;
use clap_mangen::roff::{roman, Roff};

/// The command tree the pages describe (without clap's `help` subcommand, which has no page).
fn tree() -> clap::Command {
    let mut command = super::Cli::command().disable_help_subcommand(true);
    command.build();
    command
}

/// Every page: the top-level command, then each visible subcommand, depth first.
fn pages(command: &clap::Command) -> Vec<clap::Command> {
    let mut out = vec![command.clone()];
    for sub in command.get_subcommands().filter(|s| !s.is_hide_set()) {
        out.extend(pages(sub));
    }
    out
}

/// The page of the command at `path` (`[]` for acrpull(1), `["cache", "prune"]`).
pub fn page_for(path: &[String]) -> Result<clap::Command, acrpull::Error> {
    let mut command = tree();
    for (depth, name) in path.iter().enumerate() {
        let found = command
            .get_subcommands()
            .find(|s| !s.is_hide_set() && s.get_name() == name)
            .cloned();
        command = found.ok_or_else(|| {
            let parent = std::iter::once("acrpull")
                .chain(path[..depth].iter().map(String::as_str))
                .collect::<Vec<_>>()
                .join(" ");
            acrpull::Error::Usage(format!(
                "`{parent}` has no subcommand `{name}`; `{parent} --help` lists them"
            ))
        })?;
    }
    Ok(command)
}

/// Render `command`'s page.
pub fn render(command: &clap::Command, out: &mut dyn Write) -> std::io::Result<()> {
    // The footer names the program and version on every page (not `pull` alone).
    let man = clap_mangen::Man::new(command.clone())
        .source(format!("acrpull {}", env!("CARGO_PKG_VERSION")));
    let mut page = Vec::new();
    man.render(&mut page)?;
    let page = String::from_utf8_lossy(&page).into_owned();
    let page = match command
        .get_after_long_help()
        .or_else(|| command.get_after_help())
    {
        Some(text) => replace_extra(&page, &verbatim_sections(&text.to_string())),
        None => page,
    };
    let page = match command.get_display_name() {
        Some(name) if name != "acrpull" => format!("{page}.SH \"SEE ALSO\"\nacrpull(1)\n"),
        _ => page,
    };
    out.write_all(page.as_bytes())
}

/// Write every page into `dir` (created if needed); returns the files written.
pub fn write_all(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir)?;
    let mut written = Vec::new();
    for command in pages(&tree()) {
        let name = command
            .get_display_name()
            .unwrap_or_else(|| command.get_name());
        let path = dir.join(format!("{name}.1"));
        let mut bytes = Vec::new();
        render(&command, &mut bytes)?;
        std::fs::write(&path, &bytes)?;
        written.push(path);
    }
    Ok(written)
}

/// `Heading:` lines of an `after_help` start sections (`Examples:` -> `EXAMPLES`, `Exit
/// codes:` -> `EXIT STATUS`); their lines are kept as they are (no-fill).
fn verbatim_sections(text: &str) -> String {
    let mut roff = Roff::new();
    let mut open = false;
    for line in text.lines() {
        let heading = line
            .strip_suffix(':')
            .filter(|h| !h.starts_with(' ') && !h.is_empty());
        if let Some(heading) = heading {
            if open {
                roff.control("fi", []);
            }
            let title = match heading {
                "Exit codes" => "EXIT STATUS".to_string(),
                other => other.to_uppercase(),
            };
            roff.control("SH", [title.as_str()]);
            roff.control("nf", []);
            open = true;
        } else if open || !line.is_empty() {
            if !open {
                roff.control("SH", ["NOTES"]);
                roff.control("nf", []);
                open = true;
            }
            roff.text([roman(line)]);
        }
    }
    if open {
        roff.control("fi", []);
    }
    roff.to_roff()
}

/// Swap clap_mangen's `.SH EXTRA` section for `sections`.
fn replace_extra(page: &str, sections: &str) -> String {
    let Some(start) = page.find(".SH EXTRA\n") else {
        return format!("{page}{sections}");
    };
    let rest = &page[start + 1..];
    let end = rest
        .find("\n.SH ")
        .map_or(page.len(), |offset| start + 1 + offset + 1);
    format!("{}{sections}{}", &page[..start], &page[end..])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_page_named_in_a_page_is_generated() {
        let dir = tempfile::tempdir().unwrap();
        let written = write_all(dir.path()).unwrap();
        let names: Vec<String> = written
            .iter()
            .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        assert!(names.contains(&"acrpull.1".to_string()), "{names:?}");
        assert!(names.contains(&"acrpull-pull.1".to_string()), "{names:?}");
        assert!(
            names.contains(&"acrpull-cache-prune.1".to_string()),
            "{names:?}"
        );
        let reference = regex_lite_references();
        for path in &written {
            let page = std::fs::read_to_string(path).unwrap();
            for named in reference(&page) {
                assert!(
                    names.contains(&format!("{named}.1")),
                    "{} names {named}(1), which is not generated",
                    path.display()
                );
            }
        }
    }

    /// `acrpull-xxx(1)` mentions in a page (roff escapes the dashes).
    fn regex_lite_references() -> impl Fn(&str) -> Vec<String> {
        |page: &str| {
            let page = page.replace("\\-", "-");
            page.split(|c: char| c.is_whitespace() || c == '"')
                .filter_map(|word| word.strip_suffix("(1)"))
                .filter(|word| word.starts_with("acrpull"))
                .map(str::to_string)
                .collect()
        }
    }

    #[test]
    fn examples_are_kept_line_for_line() {
        let mut page = Vec::new();
        render(&tree(), &mut page).unwrap();
        let page = String::from_utf8(page).unwrap();
        assert!(!page.contains(".SH EXTRA"), "{page}");
        let examples = page.split(".SH EXAMPLES\n.nf\n").nth(1).expect("examples");
        let examples = &examples[..examples.find("\n.fi\n").expect("no-fill ends")];
        assert!(
            examples.contains(
                "\n  acrpull pull \\-\\-format oci myregistry.azurecr.io/app:v1 ./app\\-layout\n"
            ),
            "{examples}"
        );
        assert!(page.contains(".SH \"EXIT STATUS\"\n.nf\n"), "{page}");
    }

    #[test]
    fn an_unknown_page_is_a_usage_error() {
        assert!(page_for(&["pull".into()]).is_ok());
        assert!(page_for(&["cache".into(), "prune".into()]).is_ok());
        let error = page_for(&["cache".into(), "purge".into()]).unwrap_err();
        assert_eq!(
            error.to_string(),
            "`acrpull cache` has no subcommand `purge`; `acrpull cache --help` lists them"
        );
    }
}
