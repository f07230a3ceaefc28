//! Checks on the library's source: it reads no environment variable of its own.
//!
//! Configuration reaches the library as options that the binary fills (`SSL_CERT_FILE` as a
//! CA file, `ACRPULL_PARALLEL_RANGES` as `ClientOptions::parallel_ranges`, the cache
//! location through `BlobCache::default_dir`'s lookup). The one exception is a constructor
//! named `from_process` that documents which variables it snapshots: the Azure identity
//! variables (`azure::Env`, the Azure SDKs' contract) and the credential file locations
//! (`credential::ConfigFiles`). Test modules may read what they like.

use std::path::{Path, PathBuf};

/// Calls that read the process environment at run time (`env!` and `option_env!` are
/// compile-time and allowed).
const READS: &[&str] = &["env::var(", "env::var_os(", "env::vars(", "env::vars_os("];

fn rust_files(dir: &Path, files: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, files);
        } else if path.extension().is_some_and(|ext| ext == "rs") {
            files.push(path);
        }
    }
}

/// `file:line (in fn name)` for each environment read outside the binary, test code and
/// `from_process` constructors.
fn environment_reads(src: &Path) -> Vec<String> {
    let mut files = Vec::new();
    rust_files(src, &mut files);
    let mut found = Vec::new();
    for path in files {
        let relative = path.strip_prefix(src).unwrap();
        let name = relative.to_string_lossy();
        let test_file = name.ends_with("tests.rs") || name.ends_with("test_support.rs");
        if name == "main.rs" || name.starts_with("cli/") || test_file || name.contains("/tests/") {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        let mut function = String::new();
        for (number, line) in text.lines().enumerate() {
            if line.starts_with("#[cfg(test)]") {
                break;
            }
            if let Some(rest) = line.split("fn ").nth(1).filter(|_| !line.contains("//")) {
                function = rest
                    .split(['(', '<'])
                    .next()
                    .unwrap_or_default()
                    .to_string();
            }
            let reads = READS.iter().any(|read| line.contains(read));
            if reads && !line.trim_start().starts_with("//") && function != "from_process" {
                found.push(format!("src/{name}:{} (in fn {function})", number + 1));
            }
        }
    }
    found
}

#[test]
fn the_library_reads_no_environment_variable_outside_from_process_constructors() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let found = environment_reads(&src);
    assert!(
        found.is_empty(),
        "the library reads the environment here; make it an option the CLI fills: {found:#?}"
    );
}

#[test]
fn the_environment_check_finds_a_read() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("cli")).unwrap();
    let read = "fn knob() -> bool {\n    std::env::var(\"KNOB\").is_ok()\n}\n";
    std::fs::write(dir.path().join("fetch.rs"), read).unwrap();
    std::fs::write(dir.path().join("cli/mod.rs"), read).unwrap();
    let allowed = "pub fn from_process() -> Self {\n    Self(std::env::var_os(\"A\"))\n}\n";
    std::fs::write(dir.path().join("env.rs"), allowed).unwrap();
    assert_eq!(
        environment_reads(dir.path()),
        vec!["src/fetch.rs:2 (in fn knob)".to_string()]
    );
}
