//! Per-registry TLS files laid out the Docker way, read as the containers tools (skopeo,
//! podman) and containerd read them: a directory per `host[:port]` holding `*.crt` files (CA
//! certificates to trust besides the system roots) and `*.cert` files each with a `*.key` of
//! the same name (a client certificate for registries that require one).
//!
//! The containers tools look for the directory under `$HOME/.config/containers/certs.d`,
//! `/etc/containers/certs.d` and `/etc/docker/certs.d` (the first that has it wins), or use
//! `--cert-dir DIR` itself for every registry. Nothing here reads a file the caller did not
//! point at: [`CertDirs::default`] looks nowhere, [`CertDirs::containers`] where skopeo does.

use std::path::{Path, PathBuf};

use super::client::ClientCertificate;

/// What a certificates directory holds.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsFiles {
    /// `*.crt`: CA certificates (PEM) to trust.
    pub ca_files: Vec<PathBuf>,
    /// `*.cert` with `*.key`: client certificates, in file-name order.
    pub client_certificates: Vec<ClientCertificate>,
}

/// How a `*.cert` without its `*.key` is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyRule {
    /// As containers/image does: an error (so is a `*.key` without its `*.cert`).
    Required,
    /// As containerd does for a host directory without `hosts.toml`: the `.cert` file may hold
    /// the key too (it is an error later if it does not); a lone `.key` is ignored.
    MayBeInCert,
}

/// Why a certificates directory cannot be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CertsDirError {
    /// Listing the directory failed (other than it not existing).
    #[error("reading certificates directory {} failed", dir.display())]
    Read {
        /// The directory.
        dir: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A client certificate without its key.
    #[error(
        "client certificate {} has no key file {}; put its key there (CA certificates use the extension .crt)",
        cert.display(),
        key.display()
    )]
    MissingKey {
        /// The `*.cert` file.
        cert: PathBuf,
        /// The `*.key` file it needs.
        key: PathBuf,
    },
    /// A key without its client certificate.
    #[error("key {} has no client certificate {}", key.display(), cert.display())]
    MissingCertificate {
        /// The `*.key` file.
        key: PathBuf,
        /// The `*.cert` file it needs.
        cert: PathBuf,
    },
}

/// Read one certificates directory. A directory that does not exist holds nothing.
pub fn read_dir(dir: &Path, rule: KeyRule) -> Result<TlsFiles, CertsDirError> {
    let read_error = |source| CertsDirError::Read {
        dir: dir.to_path_buf(),
        source,
    };
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(TlsFiles::default()),
        Err(e) => return Err(read_error(e)),
    };
    // File names in order, as Go's os.ReadDir lists them: which certificate comes first must
    // not depend on the file system.
    let mut names = Vec::new();
    for entry in entries {
        let entry = entry.map_err(read_error)?;
        if entry.file_type().map_err(read_error)?.is_dir() {
            continue;
        }
        if let Some(name) = entry.file_name().to_str() {
            names.push(name.to_string());
        }
    }
    names.sort();
    let has = |name: &str| names.iter().any(|n| n == name);
    let mut files = TlsFiles::default();
    for name in &names {
        if name.ends_with(".crt") {
            files.ca_files.push(dir.join(name));
        } else if let Some(base) = name.strip_suffix(".cert") {
            let key = format!("{base}.key");
            let key = match (has(&key), rule) {
                (true, _) => Some(dir.join(key)),
                (false, KeyRule::MayBeInCert) => None,
                (false, KeyRule::Required) => {
                    return Err(CertsDirError::MissingKey {
                        cert: dir.join(name),
                        key: dir.join(key),
                    })
                }
            };
            files.client_certificates.push(ClientCertificate {
                cert: dir.join(name),
                key,
            });
        } else if let Some(base) = name.strip_suffix(".key") {
            let cert = format!("{base}.cert");
            if rule == KeyRule::Required && !has(&cert) {
                return Err(CertsDirError::MissingCertificate {
                    key: dir.join(name),
                    cert: dir.join(cert),
                });
            }
        }
    }
    Ok(files)
}

/// Where per-registry certificates directories are.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CertDirs {
    /// `--cert-dir`: this one directory, for every registry (as skopeo's `--cert-dir`).
    pub cert_dir: Option<PathBuf>,
    /// Roots holding one directory per `host[:port]`; the first root that has the host's
    /// directory is used.
    pub per_host_roots: Vec<PathBuf>,
}

impl CertDirs {
    /// The roots the containers tools search: `$HOME/.config/containers/certs.d`,
    /// `/etc/containers/certs.d`, `/etc/docker/certs.d`.
    pub fn containers(home: Option<&Path>) -> Self {
        let mut per_host_roots = Vec::new();
        if let Some(home) = home {
            per_host_roots.push(home.join(".config/containers/certs.d"));
        }
        per_host_roots.push(PathBuf::from("/etc/containers/certs.d"));
        per_host_roots.push(PathBuf::from("/etc/docker/certs.d"));
        Self {
            cert_dir: None,
            per_host_roots,
        }
    }

    /// The TLS files for `host` (`host[:port]`, as in image references).
    pub fn for_host(&self, host: &str) -> Result<TlsFiles, CertsDirError> {
        if let Some(dir) = &self.cert_dir {
            return read_dir(dir, KeyRule::Required);
        }
        for root in &self.per_host_roots {
            let dir = root.join(host);
            match std::fs::metadata(&dir) {
                Ok(_) => return read_dir(&dir, KeyRule::Required),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                // As containers/image: a root we may not look into is skipped.
                Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {
                    tracing::debug!(dir = %dir.display(), "certificates directory not readable; skipped");
                    continue;
                }
                Err(source) => return Err(CertsDirError::Read { dir, source }),
            }
        }
        Ok(TlsFiles::default())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn touch(dir: &Path, names: &[&str]) {
        std::fs::create_dir_all(dir).unwrap();
        for name in names {
            std::fs::write(dir.join(name), "x").unwrap();
        }
    }

    /// The layout of containers-certs.d(5) and containerd's `loadCertFiles`.
    #[test]
    fn crt_files_are_cas_and_cert_key_pairs_are_client_certificates() {
        let dir = tempfile::tempdir().unwrap();
        touch(
            dir.path(),
            &["b.crt", "a.crt", "client.cert", "client.key", "notes.txt"],
        );
        std::fs::create_dir(dir.path().join("sub.crt")).unwrap();
        let files = read_dir(dir.path(), KeyRule::Required).unwrap();
        assert_eq!(
            files.ca_files,
            vec![dir.path().join("a.crt"), dir.path().join("b.crt")]
        );
        assert_eq!(
            files.client_certificates,
            vec![ClientCertificate {
                cert: dir.path().join("client.cert"),
                key: Some(dir.path().join("client.key")),
            }]
        );
        assert_eq!(
            read_dir(&dir.path().join("absent"), KeyRule::Required).unwrap(),
            TlsFiles::default()
        );
    }

    #[test]
    fn a_cert_without_its_key_is_an_error_the_containers_way_only() {
        let dir = tempfile::tempdir().unwrap();
        touch(dir.path(), &["client.cert"]);
        let error = read_dir(dir.path(), KeyRule::Required).unwrap_err();
        assert!(matches!(error, CertsDirError::MissingKey { .. }), "{error}");
        assert!(error.to_string().contains("client.key"), "{error}");
        let files = read_dir(dir.path(), KeyRule::MayBeInCert).unwrap();
        assert_eq!(files.client_certificates[0].key, None);

        let dir = tempfile::tempdir().unwrap();
        touch(dir.path(), &["lonely.key"]);
        assert!(matches!(
            read_dir(dir.path(), KeyRule::Required),
            Err(CertsDirError::MissingCertificate { .. })
        ));
        assert_eq!(
            read_dir(dir.path(), KeyRule::MayBeInCert).unwrap(),
            TlsFiles::default()
        );
    }

    #[test]
    fn the_first_root_with_the_host_wins_and_cert_dir_replaces_them() {
        let dir = tempfile::tempdir().unwrap();
        let first = dir.path().join("first");
        let second = dir.path().join("second");
        touch(&second.join("reg.example:5000"), &["second.crt"]);
        touch(&second.join("other.example"), &["other.crt"]);
        touch(&first.join("other.example"), &["first.crt"]);
        let dirs = CertDirs {
            cert_dir: None,
            per_host_roots: vec![first.clone(), second.clone()],
        };
        assert_eq!(
            dirs.for_host("reg.example:5000").unwrap().ca_files,
            vec![second.join("reg.example:5000/second.crt")]
        );
        assert_eq!(
            dirs.for_host("other.example").unwrap().ca_files,
            vec![first.join("other.example/first.crt")]
        );
        assert!(dirs.for_host("none.example").unwrap().ca_files.is_empty());
        let explicit = CertDirs {
            cert_dir: Some(second.join("other.example")),
            ..dirs
        };
        assert_eq!(
            explicit.for_host("reg.example:5000").unwrap().ca_files,
            vec![second.join("other.example/other.crt")]
        );
    }
}
