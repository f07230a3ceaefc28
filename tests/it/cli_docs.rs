//! `docs/cli.md` against the binary's own `--help`: every command has a section in the
//! command reference, and every long flag that `--help` lists for a command is named in that
//! section (or, for commands whose section links the shared registry flags, in the
//! "Registry flags" section). A flag added without documentation fails here.

use std::collections::BTreeMap;

use crate::support::{acrpull, ok, Scratch};

/// `acrpull PATH... --help`, unwrapped (clap wraps to COLUMNS off a terminal).
fn help(scratch: &Scratch, path: &[String]) -> String {
    let output = acrpull(&scratch.home())
        .args(path)
        .arg("--help")
        .env("COLUMNS", "1000")
        .output()
        .expect("runs");
    ok(&output)
}

/// The lines of a `Heading:` section of clap's help, up to the next heading (long help
/// separates entries with blank lines).
fn section<'a>(help: &'a str, heading: &str) -> Vec<&'a str> {
    help.lines()
        .skip_while(|line| *line != heading)
        .skip(1)
        .take_while(|line| line.is_empty() || line.starts_with(' '))
        .collect()
}

/// Every command path (`[]`, `["pull"]`, `["cache", "prune"]`) with its long flags.
fn commands_and_flags(scratch: &Scratch) -> BTreeMap<Vec<String>, Vec<String>> {
    let flag = regex::Regex::new(r"^\s+(?:-[A-Za-z0-9], )?--([a-z0-9][a-z0-9-]*)").unwrap();
    let mut out = BTreeMap::new();
    let mut pending = vec![Vec::<String>::new()];
    while let Some(path) = pending.pop() {
        let text = help(scratch, &path);
        for line in section(&text, "Commands:") {
            // `  name    description`; deeper indents continue a description.
            let name = line.split_whitespace().next().unwrap_or("");
            let entry = line.starts_with("  ") && !line.starts_with("   ");
            if entry && name != "help" {
                let mut child = path.clone();
                child.push(name.to_string());
                pending.push(child);
            }
        }
        // Flags under their own help heading (`Verification:`) count too.
        let flags: Vec<String> = section(&text, "Options:")
            .into_iter()
            .chain(section(&text, "Verification:"))
            .filter_map(|line| flag.captures(line).map(|c| c[1].to_string()))
            .filter(|name| name != "help" && name != "version")
            .collect();
        out.insert(path, flags);
    }
    out
}

/// The text under `### `acrpull PATH`` up to the next heading.
fn doc_section<'a>(doc: &'a str, heading: &str) -> Option<&'a str> {
    let start = doc.find(&format!("\n{heading}\n"))? + heading.len() + 2;
    let rest = &doc[start..];
    let end = rest
        .match_indices('\n')
        .find(|(i, _)| rest[i + 1..].starts_with("## ") || rest[i + 1..].starts_with("### "))
        .map_or(rest.len(), |(i, _)| i);
    Some(&rest[..end])
}

#[test]
fn docs_cover_every_command_and_flag() {
    let scratch = Scratch::new();
    let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/cli.md"))
        .expect("docs/cli.md");
    let registry = doc_section(&doc, "### Registry flags").expect("a Registry flags section");
    let tree = commands_and_flags(&scratch);
    // The parser itself must see what is there, or this test could not fail.
    let pull = &tree[&vec!["pull".to_string()]];
    assert!(
        pull.contains(&"format".into()) && pull.contains(&"password-stdin".into()),
        "{pull:?}"
    );
    assert!(pull.contains(&"cosign-key".into()), "{pull:?}");
    assert!(tree.contains_key(&vec!["cache".to_string(), "prune".to_string()]));

    let mut missing = Vec::new();
    for (path, flags) in &tree {
        if path.is_empty() {
            continue;
        }
        let heading = format!("### `acrpull {}`", path.join(" "));
        let Some(text) = doc_section(&doc, &heading) else {
            missing.push(format!("no section `{heading}`"));
            continue;
        };
        let shares_registry_flags = text.contains("(#registry-flags)");
        for flag in flags {
            let named = format!("`--{flag}");
            let documented =
                text.contains(&named) || (shares_registry_flags && registry.contains(&named));
            if !documented {
                missing.push(format!("`acrpull {} --{flag}`", path.join(" ")));
            }
        }
    }
    assert!(
        missing.is_empty(),
        "docs/cli.md does not document:\n  {}",
        missing.join("\n  ")
    );
}
