//! Records the git commit for `acrpull --version` as `ACRPULL_GIT_COMMIT`.
//!
//! Order: the `ACRPULL_GIT_COMMIT` environment variable (for builds from a tarball or in a
//! packaging sandbox), then `git rev-parse --short=10 HEAD`, else `unknown` (not a git
//! checkout, or no git). Nothing here fails the build.

use std::process::Command;

fn git(args: &[&str]) -> Option<String> {
    let output = Command::new("git").args(args).output().ok()?;
    if !output.status.success() {
        return None;
    }
    let text = String::from_utf8(output.stdout).ok()?;
    Some(text.trim().to_string())
}

fn main() {
    println!("cargo:rerun-if-env-changed=ACRPULL_GIT_COMMIT");
    let commit = match std::env::var("ACRPULL_GIT_COMMIT") {
        Ok(commit) if !commit.trim().is_empty() => commit.trim().to_string(),
        _ => {
            // Rebuild when HEAD moves (a commit or a checkout), not on every file change.
            for path in ["HEAD", "logs/HEAD"] {
                if let Some(path) = git(&["rev-parse", "--git-path", path]) {
                    println!("cargo:rerun-if-changed={path}");
                }
            }
            git(&["rev-parse", "--short=10", "HEAD"]).unwrap_or_else(|| "unknown".to_string())
        }
    };
    println!("cargo:rustc-env=ACRPULL_GIT_COMMIT={commit}");
}
