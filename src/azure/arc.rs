//! Managed identity on Azure Arc-enabled servers (on-premises or other-cloud machines).
//!
//! The Arc agent (`himds`) serves an IMDS-like endpoint on the machine, by default
//! `http://localhost:40342`. It proves the caller may read a root-owned directory: the first
//! request gets `401` with `WWW-Authenticate: Basic realm=<path of a fresh .key file>`, and the
//! same request is sent again with `Authorization: Basic <contents of that file>` (spec 2.3;
//! azure-identity `azure_arc.py`, MSAL Go `handleSecretFile`).
//!
//! The path comes from the endpoint, so it is hostile until checked: the file must sit directly
//! in the agent's token directory (`/var/opt/azcmagent/tokens` on Linux), end in `.key`, be a
//! regular file (never a symbolic link, FIFO or device) and hold at most 4096 bytes. It is
//! opened with `O_NOFOLLOW | O_NONBLOCK` and checked again on the open descriptor, so a file
//! swapped after the first check is not read either. Arc answers only for the system-assigned
//! identity; asking for a user-assigned one is refused, as the SDKs do.

use std::io::Read as _;
use std::path::{Component, Path, PathBuf};

use url::Url;

use super::endpoint::{self, ManagedEndpoint};
use super::env::{Env, IDENTITY_ENDPOINT};
use super::retry::{self, RetryPolicy, RetryStatuses};
use super::{AadToken, AadTokenSource, Error, UserAssignedId};
use crate::secret::Secret;

/// The Arc agent's endpoint when the machine has the agent but no `IDENTITY_ENDPOINT`.
pub const DEFAULT_ARC_ENDPOINT: &str = "http://localhost:40342/metadata/identity/oauth2/token";
/// Where the Arc agent writes its challenge key files on Linux.
pub const LINUX_TOKEN_DIRECTORY: &str = "/var/opt/azcmagent/tokens";
/// The Arc agent's binary on Linux: its presence means "this is an Arc server" (MSAL Go).
pub const LINUX_HIMDS_PATH: &str = "/opt/azcmagent/bin/himds";
/// The largest key file read (the SDKs' limit).
pub const MAX_KEY_FILE_BYTES: u64 = 4096;
/// The api-version MSAL Go and azure-identity send to Arc.
const API_VERSION: &str = "2020-06-01";

/// The agent's token directory on this platform, if Arc supports it (on Windows below
/// `%ProgramData%`, taken from the `env` snapshot).
pub fn default_token_directory(env: &Env) -> Option<PathBuf> {
    if cfg!(target_os = "linux") {
        Some(PathBuf::from(LINUX_TOKEN_DIRECTORY))
    } else if cfg!(windows) {
        env.get(super::env::PROGRAM_DATA).map(|data| {
            Path::new(&data)
                .join("AzureConnectedMachineAgent")
                .join("Tokens")
        })
    } else {
        None
    }
}

/// Whether the Arc agent is installed here (detection without `IDENTITY_ENDPOINT`).
pub fn agent_installed() -> bool {
    cfg!(target_os = "linux") && Path::new(LINUX_HIMDS_PATH).is_file()
}

/// A managed identity token from the Azure Arc agent.
#[derive(Debug)]
pub struct ArcSource {
    endpoint: ManagedEndpoint,
    token_directory: PathBuf,
}

impl ArcSource {
    /// The agent at `IDENTITY_ENDPOINT` (else [`DEFAULT_ARC_ENDPOINT`]), reading key files from
    /// the platform's token directory. A user-assigned `selector` (or `AZURE_CLIENT_ID`) is an
    /// error: Arc has only the system-assigned identity.
    pub fn new(env: &Env, selector: Option<UserAssignedId>, audience: &str) -> Result<Self, Error> {
        let directory = default_token_directory(env).ok_or_else(|| Error::Configuration {
            detail: "Azure Arc managed identity is supported on Linux and Windows only".into(),
        })?;
        Self::with_options(env, selector, audience, RetryPolicy::default(), directory)
    }

    /// As [`ArcSource::new`] with an explicit retry policy and token directory (tests use a
    /// temporary directory; nothing outside `token_directory` is ever read).
    pub fn with_options(
        env: &Env,
        selector: Option<UserAssignedId>,
        audience: &str,
        policy: RetryPolicy,
        token_directory: PathBuf,
    ) -> Result<Self, Error> {
        endpoint::refuse_selector("Azure Arc", selector, env)?;
        let raw = env.get(IDENTITY_ENDPOINT).unwrap_or(DEFAULT_ARC_ENDPOINT);
        let url = endpoint::parse(raw, IDENTITY_ENDPOINT)?;
        let endpoint = ManagedEndpoint::direct(url, audience, policy, RetryStatuses::Service)?;
        Ok(Self {
            endpoint,
            token_directory,
        })
    }

    fn request_url(&self) -> Url {
        self.endpoint.request_url(API_VERSION, None)
    }

    async fn send(
        &self,
        authorization: Option<&reqwest::header::HeaderValue>,
    ) -> Result<retry::Answer, Error> {
        let url = self.request_url();
        self.endpoint
            .send(|http| {
                let request = http.get(url.clone()).header("Metadata", "true");
                match authorization {
                    Some(value) => request.header(reqwest::header::AUTHORIZATION, value.clone()),
                    None => request,
                }
            })
            .await
    }

    async fn fetch(&self) -> Result<AadToken, Error> {
        let first = self.send(None).await?;
        if first.status != 401 {
            return self.endpoint.token(&first, None);
        }
        let endpoint = self.endpoint.shown();
        let realm = first
            .www_authenticate
            .as_deref()
            .and_then(key_file_of_challenge)
            .ok_or_else(|| Error::InvalidResponse {
                endpoint: endpoint.clone(),
                detail: "the 401 carries no `WWW-Authenticate: Basic realm=<key file>` challenge"
                    .into(),
            })?;
        let key = read_key_file(Path::new(realm), &self.token_directory)?;
        let header =
            crate::http::sensitive_header(&format!("Basic {}", key.expose())).ok_or_else(|| {
                Error::ArcKeyFile {
                    path: realm.to_string(),
                    reason: "its contents cannot be sent in an Authorization header".into(),
                }
            })?;
        let second = self.send(Some(&header)).await?;
        if second.status == 401 {
            return Err(Error::Refused {
                endpoint,
                status: 401,
                description: format!(
                    "the Arc agent refused the key from {realm}: {}",
                    super::response::describe_error_body(&second.body)
                ),
            });
        }
        self.endpoint.token(&second, None)
    }
}

#[async_trait::async_trait]
impl AadTokenSource for ArcSource {
    fn describe(&self) -> String {
        format!(
            "managed identity (Azure Arc agent at {}, system-assigned)",
            self.endpoint.origin()
        )
    }

    async fn aad_token(&self) -> Result<AadToken, Error> {
        self.endpoint.cached(|| self.fetch()).await
    }
}

/// The key file path of `Basic realm=<path>` (the agent sends the path unquoted; quotes are
/// accepted too). `None` for any other scheme or an empty realm.
fn key_file_of_challenge(header: &str) -> Option<&str> {
    let (scheme, rest) = header.trim().split_once(char::is_whitespace)?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let (name, value) = rest.trim().split_once('=')?;
    if !name.trim().eq_ignore_ascii_case("realm") {
        return None;
    }
    let value = value.trim();
    let value = value
        .strip_prefix('"')
        .and_then(|inner| inner.strip_suffix('"'))
        .unwrap_or(value);
    (!value.is_empty()).then_some(value)
}

/// Read the challenge key at `path`, which must be a regular `.key` file of at most
/// [`MAX_KEY_FILE_BYTES`] directly inside `token_directory`. Nothing else is opened.
pub fn read_key_file(path: &Path, token_directory: &Path) -> Result<Secret, Error> {
    let refuse = |reason: String| Error::ArcKeyFile {
        path: path.display().to_string(),
        reason,
    };
    let plain = path.is_absolute()
        && path.components().all(|component| {
            matches!(
                component,
                Component::RootDir | Component::Prefix(_) | Component::Normal(_)
            )
        });
    if !plain || path.parent() != Some(token_directory) {
        return Err(refuse(format!(
            "it is not a file directly inside the Arc agent's token directory {}",
            token_directory.display()
        )));
    }
    let named_key = path
        .file_name()
        .and_then(|name| name.to_str())
        .is_some_and(|name| name.len() > ".key".len() && name.ends_with(".key"));
    if !named_key {
        return Err(refuse("its name does not end in `.key`".into()));
    }
    let checked = |metadata: &std::fs::Metadata| {
        let kind = metadata.file_type();
        if kind.is_symlink() {
            Err(refuse("it is a symbolic link".into()))
        } else if !kind.is_file() {
            Err(refuse("it is not a regular file".into()))
        } else if metadata.len() > MAX_KEY_FILE_BYTES {
            Err(refuse(format!(
                "it holds {} bytes, more than the {MAX_KEY_FILE_BYTES} a key file may",
                metadata.len()
            )))
        } else {
            Ok(())
        }
    };
    let io = |action: &str, error: std::io::Error| refuse(format!("{action}: {error}"));
    checked(&std::fs::symlink_metadata(path).map_err(|error| io("cannot inspect it", error))?)?;
    let file = open_no_follow(path).map_err(|error| io("cannot open it", error))?;
    // The name may have been swapped since: check what was actually opened.
    checked(
        &file
            .metadata()
            .map_err(|error| io("cannot inspect it", error))?,
    )?;
    let mut contents = Vec::new();
    file.take(MAX_KEY_FILE_BYTES + 1)
        .read_to_end(&mut contents)
        .map_err(|error| io("cannot read it", error))?;
    if contents.len() as u64 > MAX_KEY_FILE_BYTES {
        return Err(refuse(format!(
            "it grew past {MAX_KEY_FILE_BYTES} bytes while being read"
        )));
    }
    let key = String::from_utf8(contents).map_err(|_| refuse("it is not UTF-8 text".into()))?;
    Ok(Secret::new(key))
}

/// Open without following a final symbolic link and without blocking on a FIFO.
#[cfg(unix)]
fn open_no_follow(path: &Path) -> std::io::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt as _;
    std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)
}

#[cfg(not(unix))]
fn open_no_follow(path: &Path) -> std::io::Result<std::fs::File> {
    std::fs::File::open(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn challenges() {
        assert_eq!(
            key_file_of_challenge("Basic realm=/var/opt/azcmagent/tokens/a.key"),
            Some("/var/opt/azcmagent/tokens/a.key")
        );
        assert_eq!(
            key_file_of_challenge(r#"basic  Realm="/t/a.key""#),
            Some("/t/a.key")
        );
        for bad in [
            "Bearer realm=/t/a.key",
            "Basic realm=",
            "Basic",
            "Basic x=/t/a.key",
            "",
        ] {
            assert_eq!(key_file_of_challenge(bad), None, "{bad}");
        }
    }

    #[test]
    fn default_endpoint_and_user_assigned_refused() {
        let source = ArcSource::with_options(
            &Env::default(),
            None,
            "https://containerregistry.azure.net",
            RetryPolicy::default(),
            PathBuf::from("/nonexistent"),
        )
        .unwrap();
        assert_eq!(
            source.request_url().as_str(),
            "http://localhost:40342/metadata/identity/oauth2/token?api-version=2020-06-01\
             &resource=https%3A%2F%2Fcontainerregistry.azure.net"
        );
        let error = ArcSource::with_options(
            &Env::from_pairs([("AZURE_CLIENT_ID", "c")]),
            None,
            "a",
            RetryPolicy::default(),
            PathBuf::from("/nonexistent"),
        )
        .unwrap_err()
        .to_string();
        assert!(error.contains("AZURE_CLIENT_ID"), "{error}");
        let error = ArcSource::with_options(
            &Env::default(),
            Some(UserAssignedId::ClientId("c".into())),
            "a",
            RetryPolicy::default(),
            PathBuf::from("/nonexistent"),
        )
        .unwrap_err()
        .to_string();
        assert!(error.contains("client_id=c"), "{error}");
        assert!(!error.contains("AZURE_CLIENT_ID"), "{error}");
    }
}
