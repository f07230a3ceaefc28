//! What the user named as the image to read: a registry reference, an `oci:` layout or an
//! image archive, as skopeo spells its transports. A pure value: parsing and printing only,
//! so every layer (verification, resolution, the CLI) can name an image without depending on
//! the code that opens it.

use std::path::PathBuf;
use std::str::FromStr;

use crate::digest::Digest;
use crate::reference::Reference;

/// Which archive format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArchiveKind {
    /// `docker save` (classic, or Docker 25+ with an OCI layout inside).
    Docker,
    /// A tar of an OCI image layout.
    Oci,
}

impl ArchiveKind {
    /// The transport name, as skopeo spells it.
    pub fn scheme(self) -> &'static str {
        match self {
            ArchiveKind::Docker => "docker-archive",
            ArchiveKind::Oci => "oci-archive",
        }
    }
}

/// Where to pull from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SourceSpec {
    /// A registry reference.
    Registry(Reference),
    /// A local OCI layout: `oci:PATH[:TAG|@DIGEST]`.
    Layout {
        /// The layout directory.
        path: PathBuf,
        /// Tag, digest, or empty for the layout's only image.
        reference: String,
    },
    /// An image archive read in place: `docker-archive:PATH[:REPO:TAG|:@N]` (skopeo's syntax:
    /// the path ends at the first `:`) or `oci-archive:PATH[:TAG|@DIGEST]` (as `oci:`).
    Archive {
        /// Which format.
        kind: ArchiveKind,
        /// The archive file.
        path: PathBuf,
        /// `REPO:TAG`, `@N`, a tag or digest, or empty for the archive's only image.
        reference: String,
    },
}

impl FromStr for SourceSpec {
    type Err = crate::reference::ReferenceError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if let Some(rest) = s.strip_prefix("docker-archive:") {
            let (path, reference) = rest.split_once(':').unwrap_or((rest, ""));
            let valid = match reference.strip_prefix('@') {
                Some(number) => number.parse::<usize>().is_ok(),
                None => {
                    reference.is_empty()
                        || reference
                            .parse::<Reference>()
                            .is_ok_and(|r| r.digest().is_none())
                }
            };
            if path.is_empty() || !valid {
                return Err(crate::reference::ReferenceError::BadArchiveImage {
                    input: s.to_string(),
                });
            }
            return Ok(SourceSpec::Archive {
                kind: ArchiveKind::Docker,
                path: PathBuf::from(path),
                reference: reference.to_string(),
            });
        }
        if let Some(rest) = s.strip_prefix("oci-archive:") {
            let (path, reference) = split_layout_reference(s, rest)?;
            return Ok(SourceSpec::Archive {
                kind: ArchiveKind::Oci,
                path,
                reference,
            });
        }
        let Some(rest) = s.strip_prefix("oci:") else {
            return Ok(SourceSpec::Registry(s.parse()?));
        };
        let (path, reference) = split_layout_reference(s, rest)?;
        Ok(SourceSpec::Layout { path, reference })
    }
}

/// `PATH[:TAG|@DIGEST]` of `oci:` and `oci-archive:` (the tag follows the last `:` after the
/// last `/`).
fn split_layout_reference(
    input: &str,
    rest: &str,
) -> Result<(PathBuf, String), crate::reference::ReferenceError> {
    if let Some((path, digest)) = rest.rsplit_once('@') {
        digest
            .parse::<Digest>()
            .map_err(|source| crate::reference::ReferenceError::BadDigest {
                input: input.to_string(),
                source,
            })?;
        return Ok((PathBuf::from(path), digest.to_string()));
    }
    let last_slash = rest.rfind('/').map_or(0, |i| i + 1);
    Ok(match rest[last_slash..].rfind(':') {
        Some(i) => (
            PathBuf::from(&rest[..last_slash + i]),
            rest[last_slash + i + 1..].to_string(),
        ),
        None => (PathBuf::from(rest), String::new()),
    })
}

impl std::fmt::Display for SourceSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SourceSpec::Registry(r) => write!(f, "{r}"),
            SourceSpec::Layout { path, reference } if reference.is_empty() => {
                write!(f, "oci:{}", path.display())
            }
            SourceSpec::Layout { path, reference } if reference.contains(':') => {
                write!(f, "oci:{}@{reference}", path.display())
            }
            SourceSpec::Layout { path, reference } => {
                write!(f, "oci:{}:{reference}", path.display())
            }
            SourceSpec::Archive {
                kind,
                path,
                reference,
            } => {
                write!(f, "{}:{}", kind.scheme(), path.display())?;
                match reference.as_str() {
                    "" => Ok(()),
                    r if *kind == ArchiveKind::Oci && r.contains(':') => write!(f, "@{r}"),
                    r => write!(f, ":{r}"),
                }
            }
        }
    }
}

/// The tag to record in a layout for `spec`, if any.
pub(crate) fn tag_of(spec: &SourceSpec) -> Option<String> {
    match spec {
        SourceSpec::Registry(r) => r.tag().map(str::to_string),
        SourceSpec::Layout { reference, .. } => {
            (!reference.is_empty() && !reference.contains(':')).then(|| reference.clone())
        }
        // `REPO:TAG` names the tag; `@N` and digests name none.
        SourceSpec::Archive {
            kind: ArchiveKind::Docker,
            reference,
            ..
        } => reference
            .parse::<Reference>()
            .ok()
            .filter(|_| !reference.is_empty() && !reference.starts_with('@'))
            .and_then(|r| r.tag().map(str::to_string)),
        SourceSpec::Archive { reference, .. } => {
            (!reference.is_empty() && !reference.contains(':')).then(|| reference.clone())
        }
    }
}
