//! Notation's configuration directory, read the way the `notation` CLI lays it out, so a
//! machine set up for `notation verify` verifies the same with acrpull:
//!
//! ```text
//! <dir>/trustpolicy.oci.json            (else trustpolicy.json, as Notation before 1.2 wrote it)
//! <dir>/truststore/x509/{ca,signingAuthority,tsa}/<name>/*.{crt,pem,cer}
//! ```
//!
//! The directory is an argument: the library reads no environment variable. [`config_dir`]
//! says where Notation looks (`$NOTATION_CONFIG`, `$XDG_CONFIG_HOME/notation`,
//! `~/.config/notation`) for the CLI to pass along. As the trust store specification says,
//! symlinked stores or certificate files are refused (a store is configuration an attacker
//! must not redirect), and subdirectories of a named store are ignored with a warning.

use std::path::{Path, PathBuf};

use crate::verify::notation::policy::{PolicyError, StoreType, TrustPolicy};
use crate::verify::x509::Certificate;

/// Why the configuration cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// Neither policy file exists.
    #[error("no Notation trust policy in {dir} (looked for trustpolicy.oci.json and trustpolicy.json); create one as `notation policy import` does, or point NOTATION_CONFIG at the directory that has it")]
    NoPolicy {
        /// The directory searched.
        dir: String,
    },
    /// The policy file is unreadable or invalid.
    #[error("trust policy {path}: {reason}")]
    Policy {
        /// The file.
        path: String,
        /// What is wrong.
        reason: String,
    },
    /// A named trust store is missing, a symlink, empty, or holds something else than
    /// certificates.
    #[error("trust store {kind}:{name} ({path}): {reason}")]
    Store {
        /// `ca`, `signingAuthority`, `tsa`.
        kind: &'static str,
        /// The store's name.
        name: String,
        /// Its directory.
        path: String,
        /// What is wrong.
        reason: String,
    },
}

/// Where the `notation` CLI keeps its configuration: `$NOTATION_CONFIG`, else
/// `$XDG_CONFIG_HOME/notation`, else `$HOME/.config/notation`. `env` looks a variable up
/// (the CLI passes `std::env::var`); empty values count as unset.
pub fn config_dir(env: impl Fn(&str) -> Option<String>) -> Option<PathBuf> {
    let set = |name: &str| env(name).filter(|v| !v.is_empty());
    if let Some(dir) = set("NOTATION_CONFIG") {
        return Some(PathBuf::from(dir));
    }
    if let Some(dir) = set("XDG_CONFIG_HOME") {
        return Some(Path::new(&dir).join("notation"));
    }
    set("HOME").map(|home| Path::new(&home).join(".config").join("notation"))
}

/// A loaded Notation configuration: the validated trust policy and the trust store root.
#[derive(Debug, Clone)]
pub struct NotationConfig {
    /// The directory.
    pub dir: PathBuf,
    /// The policy file read.
    pub policy_path: PathBuf,
    /// The validated policy.
    pub policy: TrustPolicy,
}

impl NotationConfig {
    /// Read and validate the trust policy of `dir` (trust stores are read when a statement
    /// needs them).
    pub fn load(dir: &Path) -> Result<NotationConfig, ConfigError> {
        for name in ["trustpolicy.oci.json", "trustpolicy.json"] {
            let path = dir.join(name);
            let shown = path.display().to_string();
            let metadata = match std::fs::symlink_metadata(&path) {
                Ok(m) => m,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => {
                    return Err(ConfigError::Policy {
                        path: shown,
                        reason: e.to_string(),
                    })
                }
            };
            if !metadata.is_file() {
                return Err(ConfigError::Policy {
                    path: shown,
                    reason: "not a regular file (symlinks are not accepted)".into(),
                });
            }
            if metadata.len() > crate::verify::notation::policy::MAX_POLICY_SIZE as u64 {
                return Err(ConfigError::Policy {
                    path: shown,
                    reason: "larger than 1 MiB".into(),
                });
            }
            let bytes = std::fs::read(&path).map_err(|e| ConfigError::Policy {
                path: shown.clone(),
                reason: e.to_string(),
            })?;
            let policy =
                TrustPolicy::parse(&bytes).map_err(|PolicyError(reason)| ConfigError::Policy {
                    path: shown.clone(),
                    reason,
                })?;
            return Ok(NotationConfig {
                dir: dir.to_path_buf(),
                policy_path: path,
                policy,
            });
        }
        Err(ConfigError::NoPolicy {
            dir: dir.display().to_string(),
        })
    }

    /// The certificates of the named store `kind:name`.
    pub fn certificates(
        &self,
        kind: StoreType,
        name: &str,
    ) -> Result<Vec<Certificate>, ConfigError> {
        read_store(&self.dir.join("truststore"), kind, name)
    }
}

/// Certificate files larger than this are refused.
const MAX_CERTIFICATE_FILE: u64 = 1 << 20;
/// Files in one named store at most.
const MAX_STORE_FILES: usize = 256;

/// Read the named store `<truststore>/x509/<kind>/<name>/`.
pub fn read_store(
    truststore: &Path,
    kind: StoreType,
    name: &str,
) -> Result<Vec<Certificate>, ConfigError> {
    let path = truststore.join("x509").join(kind.as_str()).join(name);
    let error = |reason: String| ConfigError::Store {
        kind: kind.as_str(),
        name: name.to_string(),
        path: path.display().to_string(),
        reason,
    };
    if name.is_empty() || name.contains(['/', '\\']) || name == "." || name == ".." {
        return Err(error("not a valid store name".into()));
    }
    let metadata = std::fs::symlink_metadata(&path).map_err(|e| {
        error(if e.kind() == std::io::ErrorKind::NotFound {
            "the store does not exist (add certificates with `notation cert add`)".into()
        } else {
            e.to_string()
        })
    })?;
    if !metadata.is_dir() {
        return Err(error("not a directory (symlinks are not accepted)".into()));
    }
    let mut entries: Vec<_> = std::fs::read_dir(&path)
        .map_err(|e| error(e.to_string()))?
        .collect::<Result<_, _>>()
        .map_err(|e| error(e.to_string()))?;
    if entries.len() > MAX_STORE_FILES {
        return Err(error(format!("more than {MAX_STORE_FILES} entries")));
    }
    entries.sort_by_key(|e| e.file_name());
    let mut certificates = Vec::new();
    for entry in entries {
        let file = entry.path();
        let shown = file.display().to_string();
        let file_type = entry.file_type().map_err(|e| error(e.to_string()))?;
        if file_type.is_symlink() {
            return Err(error(format!(
                "{shown} is a symlink, which is not accepted"
            )));
        }
        if file_type.is_dir() {
            tracing::warn!(directory = %shown, "subdirectory of a trust store ignored (certificates belong directly in the named store)");
            continue;
        }
        let metadata = entry.metadata().map_err(|e| error(e.to_string()))?;
        if metadata.len() > MAX_CERTIFICATE_FILE {
            return Err(error(format!("{shown} is larger than 1 MiB")));
        }
        let bytes = std::fs::read(&file).map_err(|e| error(format!("{shown}: {e}")))?;
        let found = Certificate::parse_many(&bytes).map_err(|e| error(format!("{shown}: {e}")))?;
        if found.is_empty() {
            return Err(error(format!("{shown} holds no certificate")));
        }
        for cert in found {
            let self_signed = cert.self_issued() && cert.check_issued_by(&cert).is_ok();
            if kind == StoreType::Tsa && !self_signed {
                return Err(error(format!(
                    "{shown}: `{}` is not a self-signed root; TSA stores hold roots only",
                    cert.subject()
                )));
            }
            if !cert.is_ca() && !self_signed {
                return Err(error(format!(
                    "{shown}: `{}` is neither a CA nor a self-signed certificate",
                    cert.subject()
                )));
            }
            certificates.push(cert);
        }
    }
    if certificates.is_empty() {
        return Err(error("the store holds no certificates".into()));
    }
    Ok(certificates)
}
