//! Where credentials for a registry come from, and what they are.
//!
//! [`resolve`] walks the sources in the order users expect from docker, podman and the Azure
//! SDKs: command line, then credentials files (Docker `config.json`, containers `auth.json`,
//! and the credential helpers they name), then (for Azure Container Registry hosts) the Azure
//! identity chain, then anonymous. It says which source answered, never what the secret is.
//!
//! [`docker_config`] parses the files, [`helper`] runs `docker-credential-*` programs, and
//! [`crate::credential_helper`] is the other direction: acrpull answering as a credential helper.

pub mod docker_config;
pub mod helper;

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::azure::{self, AadTokenSource, UserAssignedId};
use crate::secret::Secret;
use docker_config::{AuthFile, Lookup};

/// Credentials for one registry.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum Credential {
    /// No credentials: anonymous token flow or none at all.
    Anonymous,
    /// Username and password (or an ACR token with the null-GUID username).
    Basic {
        /// The user name.
        username: String,
        /// The password.
        password: Secret,
    },
    /// An OAuth2 refresh token (Docker `identitytoken`), exchanged at the token endpoint.
    RefreshToken(Secret),
    /// An Azure identity whose AAD token is exchanged at the registry's ACR token service.
    Azure(Arc<dyn AadTokenSource>),
    /// An Azure identity chosen automatically for an ACR host: when no identity endpoint is
    /// reachable (not on Azure), the pull goes on anonymously.
    AzureOrAnonymous(Arc<dyn AadTokenSource>),
}

impl Credential {
    /// A short description of the kind, for logs (never the secret).
    pub fn kind(&self) -> String {
        match self {
            Credential::Anonymous => "anonymous".to_string(),
            Credential::Basic { username, .. } => format!("basic (user {username})"),
            Credential::RefreshToken(_) => "identity token".to_string(),
            Credential::Azure(source) | Credential::AzureOrAnonymous(source) => source.describe(),
        }
    }
}

/// What the command line asked for.
#[derive(Debug, Clone, Default)]
pub struct CredentialOptions {
    /// `--username` with the password from stdin.
    pub basic: Option<(String, Secret)>,
    /// `--identity`: use the Azure identity chain whatever the registry.
    pub identity: bool,
    /// `--client-id` / `--object-id` / `--resource-id`.
    pub user_assigned: Option<UserAssignedId>,
    /// `--azure-audience` (default [`azure::ACR_AUDIENCE`]).
    pub audience: Option<String>,
    /// `--authfile`: the only credentials file to read (as with skopeo and podman).
    pub authfile: Option<PathBuf>,
    /// Where the credentials files are; the default finds none, so a library caller reads
    /// files only when it asks to ([`ConfigFiles::from_process`]).
    pub files: ConfigFiles,
    /// Registries besides ACR login servers that get the Azure identity chain without
    /// `--identity` (`ACRPULL_AZURE_REGISTRIES`).
    pub azure_registries: azure::AzureRegistries,
}

/// The environment that locates credentials files and helper programs. Tests build one by
/// hand; the binary takes [`ConfigFiles::from_process`]. Empty values count as unset.
#[derive(Debug, Clone, Default)]
pub struct ConfigFiles {
    /// `HOME`.
    pub home: Option<PathBuf>,
    /// `DOCKER_CONFIG`: the directory holding `config.json`.
    pub docker_config: Option<PathBuf>,
    /// `REGISTRY_AUTH_FILE`: replaces the default `auth.json` locations.
    pub registry_auth_file: Option<PathBuf>,
    /// `XDG_RUNTIME_DIR`.
    pub xdg_runtime_dir: Option<PathBuf>,
    /// `XDG_CONFIG_HOME` (default `$HOME/.config`), for the containers `auth.json`.
    pub xdg_config_home: Option<PathBuf>,
    /// `PATH`, searched for `docker-credential-<name>`.
    pub search_path: Option<OsString>,
}

impl ConfigFiles {
    /// Read the locations from the process environment.
    pub fn from_process() -> Self {
        let var = |name: &str| std::env::var_os(name).filter(|value| !value.is_empty());
        Self {
            home: var("HOME").map(PathBuf::from),
            docker_config: var("DOCKER_CONFIG").map(PathBuf::from),
            registry_auth_file: var("REGISTRY_AUTH_FILE").map(PathBuf::from),
            xdg_runtime_dir: var("XDG_RUNTIME_DIR").map(PathBuf::from),
            xdg_config_home: var("XDG_CONFIG_HOME").map(PathBuf::from),
            search_path: var("PATH"),
        }
    }

    /// The files to read, in order. With `authfile`, only it.
    ///
    /// Docker's file comes first (`$DOCKER_CONFIG/config.json`, else `~/.docker/config.json`),
    /// then the containers one: `$REGISTRY_AUTH_FILE` alone when set, else
    /// `$XDG_RUNTIME_DIR/containers/auth.json` and `$XDG_CONFIG_HOME/containers/auth.json`
    /// (`~/.config` when unset); then the legacy `~/.dockercfg`, as containers/image reads it.
    pub fn candidates(&self, authfile: Option<&Path>) -> Vec<Candidate> {
        let file = |path: PathBuf, kind| Candidate {
            path,
            kind,
            legacy: false,
        };
        if let Some(path) = authfile {
            return vec![file(path.to_path_buf(), "--authfile")];
        }
        let mut files = Vec::new();
        match (&self.docker_config, &self.home) {
            (Some(dir), _) => files.push(file(
                dir.join("config.json"),
                "Docker config ($DOCKER_CONFIG)",
            )),
            (None, Some(home)) => {
                files.push(file(home.join(".docker/config.json"), "Docker config"))
            }
            (None, None) => {}
        }
        if let Some(path) = &self.registry_auth_file {
            files.push(file(
                path.clone(),
                "containers auth file ($REGISTRY_AUTH_FILE)",
            ));
        } else {
            if let Some(dir) = &self.xdg_runtime_dir {
                files.push(file(
                    dir.join("containers/auth.json"),
                    "containers auth file",
                ));
            }
            let config_home = self
                .xdg_config_home
                .clone()
                .or_else(|| self.home.as_ref().map(|home| home.join(".config")));
            if let Some(dir) = config_home {
                files.push(file(
                    dir.join("containers/auth.json"),
                    "containers auth file",
                ));
            }
        }
        if let Some(home) = &self.home {
            files.push(Candidate {
                path: home.join(".dockercfg"),
                kind: "legacy Docker config",
                legacy: true,
            });
        }
        files
    }
}

/// A credentials file to read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    /// Where it is.
    pub path: PathBuf,
    /// What it is, for messages (`Docker config`, `containers auth file`, ...).
    pub kind: &'static str,
    /// The legacy `~/.dockercfg` format ([`AuthFile::parse_legacy`]).
    pub legacy: bool,
}

/// A credential and the source it came from (for `-v`).
#[derive(Debug, Clone)]
pub struct ResolvedCredential {
    /// The credential.
    pub credential: Credential,
    /// Where it came from, e.g. `command line`, `Azure identity chain`.
    pub source: String,
}

/// Why a credentials file could not be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FileError {
    /// Reading it failed (other than not existing).
    #[error("cannot read it")]
    Io(#[source] std::io::Error),
    /// Its content is unusable.
    #[error(transparent)]
    Parse(#[from] docker_config::ParseError),
}

/// Why no credential could be formed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The Azure identity configuration is unusable.
    #[error("cannot use an Azure identity for {registry}")]
    Azure {
        /// The registry.
        registry: String,
        /// Why.
        #[source]
        source: azure::Error,
    },
    /// A credentials file is unreadable or malformed.
    #[error("credentials file {}", path.display())]
    File {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        #[source]
        source: FileError,
    },
    /// A credential helper named in a credentials file failed.
    #[error("credential helper `{helper}` (from {}) for {registry}", path.display())]
    Helper {
        /// The helper's name.
        helper: String,
        /// The file that names it.
        path: PathBuf,
        /// The registry.
        registry: String,
        /// What went wrong.
        #[source]
        source: Box<helper::HelperError>,
    },
}

/// Choose the credential for `registry` (`host[:port]`, `docker.io` for Docker Hub).
///
/// In order: `--username`/`--password-stdin`; `--identity` or a user-assigned id (the Azure
/// chain, files skipped); the credentials files of [`ConfigFiles::candidates`] (or only
/// `--authfile`), where the first file with an answer for the registry wins, wrong
/// credentials included; the Azure chain for ACR hosts; anonymous. A helper that says
/// "credentials not found" passes to the next source; a missing or failing helper and a
/// malformed file are errors naming the helper or file.
pub fn resolve(
    registry: &str,
    options: &CredentialOptions,
    env: &azure::Env,
) -> Result<ResolvedCredential, Error> {
    if let Some((username, password)) = &options.basic {
        return Ok(ResolvedCredential {
            credential: Credential::Basic {
                username: username.clone(),
                password: password.clone(),
            },
            source: "command line (--username)".into(),
        });
    }
    if !(options.identity || options.user_assigned.is_some()) {
        if let Some(found) = from_files(registry, options)? {
            return Ok(found);
        }
    }
    let audience = options.audience.as_deref().unwrap_or(azure::ACR_AUDIENCE);
    let azure_error = |source| Error::Azure {
        registry: registry.to_string(),
        source,
    };
    if options.identity || options.user_assigned.is_some() {
        let source = azure::default_chain(env, options.user_assigned.clone(), audience)
            .map_err(azure_error)?;
        return Ok(ResolvedCredential {
            source: format!("Azure identity chain (--identity): {}", source.describe()),
            credential: Credential::Azure(source),
        });
    }
    if options.azure_registries.serves(registry) {
        let source = azure::default_chain(env, None, audience).map_err(azure_error)?;
        return Ok(ResolvedCredential {
            source: format!(
                "Azure identity chain (ACR host or {}): {}",
                azure::AZURE_REGISTRIES_VAR,
                source.describe()
            ),
            credential: Credential::AzureOrAnonymous(source),
        });
    }
    Ok(ResolvedCredential {
        credential: Credential::Anonymous,
        source: "anonymous (no credentials configured)".into(),
    })
}

/// The first credential the credentials files give for `registry`.
fn from_files(
    registry: &str,
    options: &CredentialOptions,
) -> Result<Option<ResolvedCredential>, Error> {
    let server_url = docker_config::helper_server_url(registry);
    for Candidate { path, kind, legacy } in options.files.candidates(options.authfile.as_deref()) {
        let file_error = |source| Error::File {
            path: path.clone(),
            source,
        };
        let bytes = match std::fs::read(&path) {
            Ok(bytes) => bytes,
            // A file named with --authfile must exist; default locations are optional.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && options.authfile.is_none() => {
                tracing::debug!(path = %path.display(), "no credentials file");
                continue;
            }
            Err(e) => return Err(file_error(FileError::Io(e))),
        };
        let parsed = if legacy {
            AuthFile::parse_legacy(&bytes)
        } else {
            AuthFile::parse(&bytes)
        };
        let file = parsed.map_err(|e| file_error(e.into()))?;
        for lookup in file.lookup(registry).map_err(|e| file_error(e.into()))? {
            match lookup {
                Lookup::Stored { key, credential } => {
                    return Ok(Some(ResolvedCredential {
                        credential,
                        source: format!("{kind} {} (auths \"{key}\")", path.display()),
                    }));
                }
                Lookup::Helper { name, per_registry } => {
                    // A helper is a process that may take seconds (or hang until its timeout).
                    let answer = crate::blocking::off_async_threads(|| {
                        helper::get(&name, &server_url, options.files.search_path.as_deref())
                    })
                    .map_err(|source| Error::Helper {
                        helper: name.clone(),
                        path: path.clone(),
                        registry: registry.to_string(),
                        source: Box::new(source),
                    })?;
                    let field = if per_registry {
                        "credHelpers"
                    } else {
                        "credsStore"
                    };
                    match answer {
                        Some(credential) => {
                            return Ok(Some(ResolvedCredential {
                                credential,
                                source: format!(
                                    "credential helper docker-credential-{name} ({field} in {kind} {})",
                                    path.display()
                                ),
                            }));
                        }
                        None => tracing::debug!(
                            helper = %name,
                            registry,
                            "the credential helper has no credentials; trying the next source"
                        ),
                    }
                }
            }
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn order_and_acr_detection() {
        let env =
            azure::Env::from_pairs([("AZURE_POD_IDENTITY_AUTHORITY_HOST", "http://127.0.0.1:9")]);
        let anonymous = resolve("127.0.0.1:5000", &CredentialOptions::default(), &env).unwrap();
        assert!(matches!(anonymous.credential, Credential::Anonymous));
        let acr = resolve("myregistry.azurecr.io", &CredentialOptions::default(), &env).unwrap();
        assert!(matches!(acr.credential, Credential::AzureOrAnonymous(_)));
        let lookalike = resolve(
            "azurecr.io.evil.example",
            &CredentialOptions::default(),
            &env,
        )
        .unwrap();
        assert!(matches!(lookalike.credential, Credential::Anonymous));
        let forced = CredentialOptions {
            identity: true,
            ..CredentialOptions::default()
        };
        let forced = resolve("127.0.0.1:5000", &forced, &env).unwrap();
        assert!(matches!(forced.credential, Credential::Azure(_)));
        let basic = CredentialOptions {
            basic: Some(("u".into(), Secret::new("p"))),
            identity: true,
            ..CredentialOptions::default()
        };
        let basic = resolve("myregistry.azurecr.io", &basic, &env).unwrap();
        assert!(matches!(basic.credential, Credential::Basic { .. }));
        assert!(!format!("{basic:?}").contains("\"p\""));
    }

    fn write(path: &Path, text: &str) {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }

    /// The password in every test file: distinctive, so no temporary path can contain it.
    const PASSWORD: &str = "pass-word_never-printed";

    fn auth(user: &str) -> String {
        use base64::Engine as _;
        let encoded =
            base64::engine::general_purpose::STANDARD.encode(format!("{user}:{PASSWORD}"));
        format!(r#"{{"auths": {{"reg.example": {{"auth": "{encoded}"}}}}}}"#)
    }

    fn legacy(user: &str) -> String {
        use base64::Engine as _;
        let encoded =
            base64::engine::general_purpose::STANDARD.encode(format!("{user}:{PASSWORD}"));
        format!(r#"{{"https://reg.example/v1/": {{"auth": "{encoded}", "email": ""}}}}"#)
    }

    fn user_of(resolved: &ResolvedCredential) -> &str {
        match &resolved.credential {
            Credential::Basic { username, .. } => username,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn files_in_order_and_explicit_authfile() {
        let dir = tempfile::tempdir().unwrap();
        let home = dir.path().join("home");
        let files = ConfigFiles {
            home: Some(home.clone()),
            xdg_runtime_dir: Some(dir.path().join("run")),
            ..ConfigFiles::default()
        };
        let options = CredentialOptions {
            files: files.clone(),
            ..CredentialOptions::default()
        };
        let env = azure::Env::default();
        let resolve_here = |options: &CredentialOptions| resolve("reg.example", options, &env);
        assert!(matches!(
            resolve_here(&options).unwrap().credential,
            Credential::Anonymous
        ));
        write(&home.join(".config/containers/auth.json"), &auth("config"));
        assert_eq!(user_of(&resolve_here(&options).unwrap()), "config");
        write(
            &dir.path().join("run/containers/auth.json"),
            &auth("runtime"),
        );
        assert_eq!(user_of(&resolve_here(&options).unwrap()), "runtime");
        write(&home.join(".docker/config.json"), &auth("docker"));
        let resolved = resolve_here(&options).unwrap();
        assert_eq!(user_of(&resolved), "docker");
        assert!(
            resolved.source.contains(".docker/config.json"),
            "{}",
            resolved.source
        );
        assert!(!resolved.source.contains(PASSWORD));

        // XDG_CONFIG_HOME moves the containers file; the legacy ~/.dockercfg comes last.
        std::fs::remove_file(home.join(".docker/config.json")).unwrap();
        std::fs::remove_file(dir.path().join("run/containers/auth.json")).unwrap();
        let xdg = CredentialOptions {
            files: ConfigFiles {
                xdg_config_home: Some(dir.path().join("xdg")),
                ..files.clone()
            },
            ..CredentialOptions::default()
        };
        write(&home.join(".dockercfg"), &legacy("legacy"));
        assert_eq!(user_of(&resolve_here(&xdg).unwrap()), "legacy");
        write(&dir.path().join("xdg/containers/auth.json"), &auth("xdg"));
        let resolved = resolve_here(&xdg).unwrap();
        assert_eq!(user_of(&resolved), "xdg");
        assert!(
            resolved.source.contains("xdg/containers/auth.json"),
            "{}",
            resolved.source
        );
        assert_eq!(user_of(&resolve_here(&options).unwrap()), "config");
        std::fs::remove_file(home.join(".config/containers/auth.json")).unwrap();
        let resolved = resolve_here(&options).unwrap();
        assert_eq!(user_of(&resolved), "legacy");
        assert!(
            resolved.source.contains("legacy Docker config"),
            "{}",
            resolved.source
        );
        write(&home.join(".docker/config.json"), &auth("docker"));

        let explicit = dir.path().join("explicit.json");
        write(&explicit, &auth("explicit"));
        let with_authfile = CredentialOptions {
            authfile: Some(explicit.clone()),
            ..options.clone()
        };
        assert_eq!(user_of(&resolve_here(&with_authfile).unwrap()), "explicit");
        let missing = CredentialOptions {
            authfile: Some(dir.path().join("absent.json")),
            ..options.clone()
        };
        let error = resolve_here(&missing).unwrap_err().to_string();
        assert!(error.contains("absent.json"), "{error}");

        write(&home.join(".docker/config.json"), "{\"auths\": ");
        let error = resolve_here(&options).unwrap_err().to_string();
        assert!(error.contains(".docker/config.json"), "{error}");
        // An empty entry (docker's marker when a store holds the secret) is no answer: an ACR
        // host goes on to the Azure chain.
        write(
            &home.join(".docker/config.json"),
            r#"{"auths": {"myreg.azurecr.io": {}}}"#,
        );
        assert!(matches!(
            resolve("myreg.azurecr.io", &options, &env)
                .unwrap()
                .credential,
            Credential::AzureOrAnonymous(_)
        ));
        write(&home.join(".docker/config.json"), "{\"auths\": ");
        // The command line and --identity skip the files altogether.
        let identity = CredentialOptions {
            identity: true,
            ..options
        };
        assert!(matches!(
            resolve_here(&identity).unwrap().credential,
            Credential::Azure(_)
        ));
    }
}
