//! The shape of `src/`, checked: the top-level modules depend one way (no cycle between them),
//! and no file holds more than 600 lines of non-test code. Read from the sources as text, the
//! way a reviewer reads them: a module depends on another when its non-test code names
//! `crate::other` (also inside `use crate::{...}` groups, through `super::` chains that climb
//! to the crate root, and through the re-exports of `lib.rs`). Non-test code is what comes
//! before a file's first `#[cfg(test)]`; files that are test modules themselves (declared
//! under `#[cfg(test)]`) are left out. Comments do not count.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Most non-test lines one file may hold.
const MAX_LINES: usize = 600;

/// Every `.rs` file under `dir`.
fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
        .map(|entry| entry.unwrap().path())
        .collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The code of a file without its tests and comments.
fn non_test_code(text: &str) -> String {
    let end = text.find("#[cfg(test)]").unwrap_or(text.len());
    text[..end]
        .lines()
        .map(|line| match line.find("//") {
            // `//` inside a string literal (a URL) is rare in paths we look for; cut anyway.
            Some(at) => &line[..at],
            None => line,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// How many lines come before a file's first `#[cfg(test)]`.
fn non_test_lines(text: &str) -> usize {
    text.lines()
        .take_while(|line| !line.trim_start().starts_with("#[cfg(test)]"))
        .count()
}

/// The top-level module a file belongs to (`src/registry/auth/mod.rs` -> `registry`) and how
/// deep its module sits (`src/registry/mod.rs` 1, `src/registry/auth/token.rs` 3).
fn module_of(src: &Path, file: &Path) -> (String, usize) {
    let relative = file.strip_prefix(src).unwrap();
    let parts: Vec<String> = relative
        .iter()
        .map(|part| part.to_string_lossy().into_owned())
        .collect();
    let top = parts[0].trim_end_matches(".rs").to_string();
    let depth = if parts.last().is_some_and(|last| last == "mod.rs") {
        parts.len() - 1
    } else {
        parts.len()
    };
    (top, depth)
}

/// Files declared as test-only modules: `#[cfg(test)]` followed by `mod name;`.
fn test_only_files(files: &[PathBuf]) -> BTreeSet<PathBuf> {
    let mut out = BTreeSet::new();
    for file in files {
        let text = std::fs::read_to_string(file).unwrap();
        let dir = match file.file_name().and_then(|n| n.to_str()) {
            Some("mod.rs" | "lib.rs" | "main.rs") => file.parent().unwrap().to_path_buf(),
            _ => file.with_extension(""),
        };
        let lines: Vec<&str> = text.lines().map(str::trim).collect();
        for pair in lines.windows(2) {
            if pair[0] != "#[cfg(test)]" {
                continue;
            }
            let declared = pair[1]
                .trim_start_matches("pub(crate) ")
                .trim_start_matches("pub(super) ")
                .trim_start_matches("pub ");
            if let Some(name) = declared
                .strip_prefix("mod ")
                .and_then(|rest| rest.strip_suffix(';'))
            {
                out.insert(dir.join(format!("{name}.rs")));
                out.insert(dir.join(name).join("mod.rs"));
            }
        }
    }
    // A test module that is a directory takes its submodules with it.
    let test_dirs: Vec<PathBuf> = out
        .iter()
        .filter(|path| path.ends_with("mod.rs"))
        .filter_map(|path| path.parent().map(Path::to_path_buf))
        .chain(out.iter().map(|path| path.with_extension("")))
        .collect();
    out.extend(
        files
            .iter()
            .filter(|file| test_dirs.iter().any(|dir| file.starts_with(dir)))
            .cloned(),
    );
    out
}

/// Names `lib.rs` re-exports at the crate root (`pub use error::{Error, ErrorClass};`), to the
/// module they come from.
fn root_reexports(lib: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for statement in non_test_code(lib).split(';') {
        let Some(rest) = statement.trim().strip_prefix("pub use ") else {
            continue;
        };
        let Some((module, names)) = rest.split_once("::") else {
            continue;
        };
        let names = names.trim().trim_start_matches('{').trim_end_matches('}');
        for name in names.split(',') {
            let name = name.split(" as ").last().unwrap_or("").trim();
            if !name.is_empty() {
                out.insert(name.to_string(), module.trim().to_string());
            }
        }
    }
    out
}

/// The first path segment after each `crate::` (and each item of `crate::{...}` groups).
fn crate_paths(code: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = code;
    while let Some(at) = rest.find("crate::") {
        let before = rest[..at].chars().last();
        rest = &rest[at + "crate::".len()..];
        if before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
            continue; // `acrpull_crate::` or the like
        }
        if let Some(group) = rest.strip_prefix('{') {
            let mut depth = 1;
            let mut item = String::new();
            for c in group.chars() {
                match c {
                    '{' => depth += 1,
                    '}' => depth -= 1,
                    _ => {}
                }
                if depth == 0 || (depth == 1 && c == ',') {
                    out.push(first_segment(&item));
                    item.clear();
                    if depth == 0 {
                        break;
                    }
                } else {
                    item.push(c);
                }
            }
        } else {
            out.push(first_segment(rest));
        }
    }
    out
}

fn first_segment(path: &str) -> String {
    path.trim_start()
        .chars()
        .take_while(|c| c.is_alphanumeric() || *c == '_')
        .collect()
}

/// Targets of `super::super::...::name` chains that climb to the crate root from a module
/// `depth` levels down.
fn root_paths_through_super(code: &str, depth: usize) -> Vec<String> {
    let mut out = Vec::new();
    let chain = "super::".repeat(depth);
    let mut rest = code;
    while let Some(at) = rest.find(&chain) {
        rest = &rest[at + chain.len()..];
        let name = first_segment(rest);
        if !name.is_empty() && name != "super" {
            out.push(name);
        }
    }
    out
}

/// The dependency graph between the top-level modules of `src/`.
fn module_graph(src: &Path) -> BTreeMap<String, BTreeSet<String>> {
    let mut files = Vec::new();
    rust_files(src, &mut files);
    let tests = test_only_files(&files);
    let lib = std::fs::read_to_string(src.join("lib.rs")).unwrap();
    let reexports = root_reexports(&lib);
    let modules: BTreeSet<String> = files
        .iter()
        .map(|file| module_of(src, file).0)
        .filter(|module| module != "lib" && module != "main")
        .collect();
    let mut graph: BTreeMap<String, BTreeSet<String>> = modules
        .iter()
        .map(|module| (module.clone(), BTreeSet::new()))
        .collect();
    for file in files.iter().filter(|file| !tests.contains(*file)) {
        let (module, depth) = module_of(src, file);
        if !modules.contains(&module) {
            continue;
        }
        let code = non_test_code(&std::fs::read_to_string(file).unwrap());
        let named = crate_paths(&code)
            .into_iter()
            .chain(root_paths_through_super(&code, depth));
        for name in named {
            let target = reexports.get(&name).cloned().unwrap_or(name);
            if target != module && modules.contains(&target) {
                graph.get_mut(&module).unwrap().insert(target);
            }
        }
    }
    graph
}

/// The groups of modules that reach each other (strongly connected, more than one module).
fn cycles(graph: &BTreeMap<String, BTreeSet<String>>) -> Vec<Vec<String>> {
    let reaches = |from: &str| {
        let mut seen = BTreeSet::new();
        let mut stack = vec![from.to_string()];
        while let Some(module) = stack.pop() {
            for next in &graph[&module] {
                if seen.insert(next.clone()) {
                    stack.push(next.clone());
                }
            }
        }
        seen
    };
    let reach: BTreeMap<&String, BTreeSet<String>> = graph
        .keys()
        .map(|module| (module, reaches(module)))
        .collect();
    let mut grouped = BTreeSet::new();
    let mut out = Vec::new();
    for module in graph.keys() {
        if grouped.contains(module) || !reach[module].contains(module) {
            continue;
        }
        let group: Vec<String> = reach[module]
            .iter()
            .filter(|other| reach[*other].contains(module))
            .cloned()
            .collect();
        grouped.extend(group.iter().cloned());
        out.push(group);
    }
    out
}

fn src_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

#[test]
fn top_level_modules_depend_one_way() {
    let graph = module_graph(&src_dir());
    let found = cycles(&graph);
    let report: Vec<String> = found
        .iter()
        .map(|group| {
            let edges: Vec<String> = group
                .iter()
                .map(|module| {
                    let inside: Vec<&String> = graph[module]
                        .iter()
                        .filter(|target| group.contains(target))
                        .collect();
                    format!("  {module} -> {inside:?}")
                })
                .collect();
            format!("cycle {group:?}:\n{}", edges.join("\n"))
        })
        .collect();
    assert!(
        found.is_empty(),
        "top-level modules of src/ depend on each other in a cycle; move what the lower one \
         needs below it:\n{}",
        report.join("\n")
    );
}

/// Files still over [`MAX_LINES`] (their non-test lines today): each may shrink, none may grow,
/// and an entry goes once its file is split. Every other file stays under the limit.
const STILL_LONG: &[(&str, usize)] = &[];

/// Problems with file lengths: new long files, listed ones that grew or no longer need listing.
fn length_problems(src: &Path, still_long: &[(&str, usize)]) -> Vec<String> {
    let mut files = Vec::new();
    rust_files(src, &mut files);
    let tests = test_only_files(&files);
    let mut problems = Vec::new();
    for file in files.iter().filter(|file| !tests.contains(*file)) {
        let lines = non_test_lines(&std::fs::read_to_string(file).unwrap());
        let name = file
            .strip_prefix(src)
            .unwrap()
            .to_string_lossy()
            .replace('\\', "/");
        let listed = still_long.iter().find(|(listed, _)| *listed == name);
        match listed {
            None if lines > MAX_LINES => problems.push(format!(
                "{name}: {lines} lines (over {MAX_LINES}: split it by job)"
            )),
            Some((_, allowed)) if lines > *allowed => problems.push(format!(
                "{name}: {lines} lines, more than the {allowed} it had (it may shrink, not grow)"
            )),
            Some(_) if lines <= MAX_LINES => problems.push(format!(
                "{name}: {lines} lines, under {MAX_LINES} now: take it off STILL_LONG"
            )),
            _ => {}
        }
    }
    for (listed, _) in still_long {
        if !files
            .iter()
            .any(|file| file.strip_prefix(src).unwrap() == Path::new(listed))
        {
            problems.push(format!(
                "{listed}: listed in STILL_LONG but gone: take it off"
            ));
        }
    }
    problems
}

#[test]
fn no_file_holds_more_than_600_lines_of_non_test_code() {
    let problems = length_problems(&src_dir(), STILL_LONG);
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// The check itself finds what it is for: a cycle through a `crate::{...}` group, a `super::`
/// chain and a root re-export, and a long file.
#[test]
fn the_checks_see_cycles_and_long_files() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path();
    std::fs::write(
        src.join("lib.rs"),
        "pub mod a;\npub mod b;\npub mod c;\npub use c::Thing;\n",
    )
    .unwrap();
    std::fs::write(src.join("a.rs"), "use crate::{b::X, digest};\n").unwrap();
    std::fs::create_dir(src.join("b")).unwrap();
    std::fs::write(src.join("b/mod.rs"), "mod inner;\n").unwrap();
    std::fs::write(src.join("b/inner.rs"), "fn f(_: crate::Thing) {}\n").unwrap();
    std::fs::write(
        src.join("c.rs"),
        "// crate::b in a comment is no dependency\nfn g() { super::a::h() }\n#[cfg(test)]\nmod t { use crate::b; }\n",
    )
    .unwrap();
    let graph = module_graph(src);
    assert_eq!(graph["a"], BTreeSet::from(["b".to_string()]));
    assert_eq!(graph["b"], BTreeSet::from(["c".to_string()]));
    assert_eq!(graph["c"], BTreeSet::from(["a".to_string()]));
    assert_eq!(cycles(&graph), vec![vec!["a", "b", "c"]]);
    std::fs::write(src.join("c.rs"), "fn g() {}\n").unwrap();
    assert!(cycles(&module_graph(src)).is_empty());

    let long = "fn f() {}\n".repeat(MAX_LINES + 1);
    assert!(non_test_lines(&long) > MAX_LINES);
    std::fs::write(src.join("a.rs"), &long).unwrap();
    assert_eq!(length_problems(src, &[]).len(), 1);
    assert!(length_problems(src, &[("a.rs", MAX_LINES + 1)]).is_empty());
    assert_eq!(length_problems(src, &[("a.rs", MAX_LINES)]).len(), 1);
    assert_eq!(
        length_problems(src, &[("a.rs", 900), ("z.rs", 900)]).len(),
        1
    );
    std::fs::write(src.join("a.rs"), "fn f() {}\n").unwrap();
    assert_eq!(length_problems(src, &[("a.rs", 900)]).len(), 1);
    let tested = format!("{}#[cfg(test)]\n{}", "fn f() {}\n".repeat(10), long);
    assert_eq!(non_test_lines(&tested), 10);
    let declared = [src.join("b/mod.rs")];
    std::fs::write(src.join("b/mod.rs"), "#[cfg(test)]\nmod inner;\n").unwrap();
    assert!(test_only_files(&declared).contains(&src.join("b/inner.rs")));
    std::fs::create_dir(src.join("b/inner")).unwrap();
    std::fs::write(src.join("b/inner/deep.rs"), "fn d() {}\n").unwrap();
    let nested = [src.join("b/mod.rs"), src.join("b/inner/deep.rs")];
    assert!(test_only_files(&nested).contains(&src.join("b/inner/deep.rs")));
}
