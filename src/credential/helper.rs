//! Running Docker credential helpers: `docker-credential-<name> get` with the server URL on
//! standard input, answering `{"ServerURL", "Username", "Secret"}` on standard output.
//!
//! A helper that says "credentials not found" (exit non-zero with that message, as
//! docker-credential-helpers' `ErrCredentialsNotFound` does) or answers an empty secret is
//! a miss, and resolution goes on to the next source. A helper that is missing, fails any
//! other way or answers something unreadable is an error naming the helper: the user
//! configured it, so pulling anonymously instead would hide the problem.

use std::ffi::{OsStr, OsString};
use std::io::Write as _;
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use super::docker_config::from_username_secret;
use super::Credential;
use crate::secret::Secret;

/// The message docker-credential-helpers print when they hold nothing for a server.
const NOT_FOUND_MESSAGE: &str = "credentials not found";

/// How long a helper may take. Helpers that prompt (a keychain unlock, a hardware key) can be
/// slow, but one that never answers must not hang a pull forever.
pub const HELPER_TIMEOUT: Duration = Duration::from_secs(120);

/// Why a helper gave no usable answer.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HelperError {
    /// No such program on `PATH`.
    #[error("`{program}` was not found on PATH")]
    NotInstalled {
        /// `docker-credential-<name>`.
        program: String,
    },
    /// The configured name cannot be a program name.
    #[error("`{name}` is not a valid credential helper name")]
    BadName {
        /// The name from the config file.
        name: String,
    },
    /// Starting or talking to it failed.
    #[error("running `{program}` failed")]
    Io {
        /// `docker-credential-<name>`.
        program: String,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// It exited unsuccessfully for a reason other than "not found".
    #[error("`{program} get` failed ({status}){}", if message.is_empty() { String::new() } else { format!(": {message}") })]
    Failed {
        /// `docker-credential-<name>`.
        program: String,
        /// The exit status.
        status: std::process::ExitStatus,
        /// Its message (stderr, else stdout), shortened.
        message: String,
    },
    /// It did not finish in time (and was stopped).
    #[error("`{program} get` did not answer within {} s", timeout.as_secs())]
    TimedOut {
        /// `docker-credential-<name>`.
        program: String,
        /// How long it had.
        timeout: Duration,
    },
    /// It succeeded but did not print the expected JSON.
    #[error("`{program} get` printed something other than {{\"Username\", \"Secret\"}} JSON")]
    BadOutput {
        /// `docker-credential-<name>`.
        program: String,
    },
}

#[derive(serde::Deserialize)]
struct HelperAnswer {
    #[serde(rename = "Username", default)]
    username: String,
    #[serde(rename = "Secret", default)]
    secret: String,
}

/// Ask helper `name` for the credentials of `server_url`, finding the program on `search_path`
/// (the `PATH` value). `Ok(None)` means the helper holds nothing for that server.
pub fn get(
    name: &str,
    server_url: &str,
    search_path: Option<&OsStr>,
) -> Result<Option<Credential>, HelperError> {
    get_within(name, server_url, search_path, HELPER_TIMEOUT)
}

fn get_within(
    name: &str,
    server_url: &str,
    search_path: Option<&OsStr>,
    timeout: Duration,
) -> Result<Option<Credential>, HelperError> {
    if name.is_empty() || name.contains(['/', '\\']) || name.starts_with('.') {
        return Err(HelperError::BadName {
            name: name.to_string(),
        });
    }
    let program_name = format!("docker-credential-{name}");
    let program =
        find_program(&program_name, search_path).ok_or_else(|| HelperError::NotInstalled {
            program: program_name.clone(),
        })?;
    let io_error = |source| HelperError::Io {
        program: program_name.clone(),
        source,
    };
    tracing::debug!(helper = %program.display(), server = server_url, "asking a credential helper");
    let mut child = spawn_retrying_busy(
        Command::new(&program)
            .arg("get")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped()),
    )
    .map_err(io_error)?;
    if let Some(mut stdin) = child.stdin.take() {
        // A helper that exits without reading is judged by its exit status, not by EPIPE.
        let _ = stdin.write_all(server_url.as_bytes());
    }
    let output = match wait_with_timeout(child, timeout).map_err(io_error)? {
        Some(output) => output,
        None => {
            return Err(HelperError::TimedOut {
                program: program_name,
                timeout,
            })
        }
    };
    if !output.status.success() {
        let stdout = String::from_utf8_lossy(&output.stdout);
        let stderr = String::from_utf8_lossy(&output.stderr);
        let says_not_found = [&stdout, &stderr]
            .iter()
            .any(|text| text.to_ascii_lowercase().contains(NOT_FOUND_MESSAGE));
        if says_not_found {
            return Ok(None);
        }
        let message = if stderr.trim().is_empty() {
            stdout
        } else {
            stderr
        };
        return Err(HelperError::Failed {
            program: program_name,
            status: output.status,
            message: crate::http::excerpt(message.trim()),
        });
    }
    let answer: HelperAnswer =
        serde_json::from_slice(&output.stdout).map_err(|_| HelperError::BadOutput {
            program: program_name.clone(),
        })?;
    if answer.secret.is_empty() {
        return Ok(None);
    }
    Ok(Some(from_username_secret(
        answer.username,
        Secret::new(answer.secret),
    )))
}

/// Collect the child's output, or kill it (our own child, by handle) after `timeout`. The
/// pipes are drained on their own threads, which are left behind on a timeout: a grandchild
/// the helper started may hold them open.
fn wait_with_timeout(mut child: Child, timeout: Duration) -> std::io::Result<Option<Output>> {
    fn drain(
        pipe: Option<impl std::io::Read + Send + 'static>,
    ) -> std::thread::JoinHandle<Vec<u8>> {
        std::thread::spawn(move || {
            let mut bytes = Vec::new();
            if let Some(mut pipe) = pipe {
                let _ = pipe.read_to_end(&mut bytes);
            }
            bytes
        })
    }
    let stdout = drain(child.stdout.take());
    let stderr = drain(child.stderr.take());
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            return Ok(None);
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    Ok(Some(Output {
        status,
        stdout: stdout.join().unwrap_or_default(),
        stderr: stderr.join().unwrap_or_default(),
    }))
}

/// Spawn `command`, retrying briefly while the kernel says the program is busy (`ETXTBSY`):
/// a helper just installed or updated can still be open for writing in another process, or
/// in a child another thread forked and has not yet exec'd; the state passes within
/// milliseconds.
fn spawn_retrying_busy(command: &mut Command) -> std::io::Result<std::process::Child> {
    let mut delay = std::time::Duration::from_millis(5);
    for _ in 0..5 {
        match command.spawn() {
            Err(e) if e.kind() == std::io::ErrorKind::ExecutableFileBusy => {
                std::thread::sleep(delay);
                delay *= 2;
            }
            other => return other,
        }
    }
    command.spawn()
}

/// The first executable `program` in the directories of `search_path`.
fn find_program(program: &str, search_path: Option<&OsStr>) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt as _;
    let search_path: OsString = search_path.map_or_else(OsString::new, OsStr::to_os_string);
    std::env::split_paths(&search_path)
        .filter(|dir| !dir.as_os_str().is_empty())
        .map(|dir| dir.join(program))
        .find(|candidate| {
            std::fs::metadata(candidate)
                .is_ok_and(|meta| meta.is_file() && meta.permissions().mode() & 0o111 != 0)
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn helper_dir(name: &str, script: &str) -> tempfile::TempDir {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(format!("docker-credential-{name}"));
        std::fs::write(&path, format!("#!/bin/sh\n{script}\n")).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        dir
    }

    #[test]
    fn answers_not_found_failure_and_missing() {
        let dir = helper_dir(
            "t",
            r#"read server
case "$server" in
  good.example) echo '{"ServerURL":"good.example","Username":"u","Secret":"s"}' ;;
  token.example) echo '{"ServerURL":"token.example","Username":"<token>","Secret":"r"}' ;;
  broken.example) echo 'boom' >&2; exit 3 ;;
  garbage.example) echo 'not json' ;;
  *) echo 'credentials not found in native keychain'; exit 1 ;;
esac"#,
        );
        let path = Some(dir.path().as_os_str());
        match get("t", "good.example", path).unwrap() {
            Some(Credential::Basic { username, password }) => {
                assert_eq!((username.as_str(), password.expose()), ("u", "s"));
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            get("t", "token.example", path).unwrap(),
            Some(Credential::RefreshToken(_))
        ));
        assert!(get("t", "other.example", path).unwrap().is_none());
        let failed = get("t", "broken.example", path).unwrap_err().to_string();
        assert!(
            failed.contains("docker-credential-t get") && failed.contains("boom"),
            "{failed}"
        );
        assert!(matches!(
            get("t", "garbage.example", path),
            Err(HelperError::BadOutput { .. })
        ));
        let missing = get("absent", "good.example", path).unwrap_err().to_string();
        assert!(missing.contains("docker-credential-absent"), "{missing}");
        assert!(matches!(
            get("../x", "h", path),
            Err(HelperError::BadName { .. })
        ));
    }

    #[test]
    fn a_hung_helper_is_stopped() {
        let dir = helper_dir("slow", "exec sleep 30");
        let started = Instant::now();
        let result = get_within(
            "slow",
            "h",
            Some(dir.path().as_os_str()),
            Duration::from_millis(300),
        );
        assert!(
            matches!(result, Err(HelperError::TimedOut { .. })),
            "{result:?}"
        );
        assert!(started.elapsed() < Duration::from_secs(10));
    }
}
