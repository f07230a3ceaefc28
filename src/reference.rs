//! Image references: `[registry/]repository[:tag][@digest]`, normalised as Docker does.
//!
//! `alpine` means `docker.io/library/alpine:latest`; a first component with a `.` or `:`, or
//! `localhost`, or a bracketed IPv6 literal names the registry.

use std::fmt;
use std::str::FromStr;

use crate::digest::{Digest, DigestParseError};

/// The registry Docker Hub references resolve to.
pub const DOCKER_HUB: &str = "docker.io";
/// The host that actually serves Docker Hub's API.
pub const DOCKER_HUB_API: &str = "registry-1.docker.io";

/// A parsed image reference.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Reference {
    registry: String,
    repository: String,
    tag: Option<String>,
    digest: Option<Digest>,
}

/// Why a string is not an image reference. Each variant names the bad part.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ReferenceError {
    /// Empty input.
    #[error("image reference is empty")]
    Empty,
    /// The registry part is not a host name, IPv4/IPv6 address or port.
    #[error("invalid registry `{registry}` in `{input}`")]
    BadRegistry {
        /// The whole reference.
        input: String,
        /// The offending part.
        registry: String,
    },
    /// A repository component breaks the grammar (lowercase letters, digits, `.`, `_`, `-`).
    #[error("invalid repository `{repository}` in `{input}`: components are lowercase letters, digits and single `.`, `_`, `__` or `-` separators")]
    BadRepository {
        /// The whole reference.
        input: String,
        /// The offending part.
        repository: String,
    },
    /// A tag breaks `[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}`.
    #[error("invalid tag `{tag}` in `{input}`: up to 128 letters, digits, `_`, `.` or `-`, not starting with `.` or `-`")]
    BadTag {
        /// The whole reference.
        input: String,
        /// The offending part.
        tag: String,
    },
    /// The image named inside a `docker-archive:` is neither `REPO:TAG` nor `@N`.
    #[error("invalid image in `{input}`: after docker-archive:PATH give REPO:TAG or @N (an image number)")]
    BadArchiveImage {
        /// The whole reference.
        input: String,
    },
    /// The `@digest` part is not a digest.
    #[error("invalid digest in `{input}`")]
    BadDigest {
        /// The whole reference.
        input: String,
        /// Why.
        #[source]
        source: DigestParseError,
    },
}

impl Reference {
    /// A reference from its parts (the repository is used as given).
    pub fn new(
        registry: impl Into<String>,
        repository: impl Into<String>,
        tag: Option<String>,
        digest: Option<Digest>,
    ) -> Self {
        Self {
            registry: registry.into(),
            repository: repository.into(),
            tag,
            digest,
        }
    }

    /// The registry as written (`docker.io` for Docker Hub), including any port.
    pub fn registry(&self) -> &str {
        &self.registry
    }

    /// The host and port to send API requests to (`registry-1.docker.io` for Docker Hub).
    pub fn api_host(&self) -> &str {
        if self.registry == DOCKER_HUB {
            DOCKER_HUB_API
        } else {
            &self.registry
        }
    }

    /// The repository path, e.g. `library/alpine`.
    pub fn repository(&self) -> &str {
        &self.repository
    }

    /// The tag, if one was given (or implied: `latest` when neither tag nor digest was given).
    pub fn tag(&self) -> Option<&str> {
        self.tag.as_deref()
    }

    /// The pinned digest, if any.
    pub fn digest(&self) -> Option<&Digest> {
        self.digest.as_ref()
    }

    /// What to put after `/manifests/`: the digest when pinned, else the tag.
    pub fn manifest_reference(&self) -> String {
        match (&self.digest, &self.tag) {
            (Some(d), _) => d.to_string(),
            (None, Some(t)) => t.clone(),
            (None, None) => "latest".to_string(),
        }
    }

    /// This reference with a different digest and no tag.
    pub fn with_digest(&self, digest: Digest) -> Self {
        Self {
            registry: self.registry.clone(),
            repository: self.repository.clone(),
            tag: None,
            digest: Some(digest),
        }
    }

    /// Whether the registry is a loopback address or `localhost` (plain HTTP fallback is allowed).
    pub fn is_loopback_registry(&self) -> bool {
        is_loopback_host(host_of(&self.registry))
    }
}

/// The host part of `host[:port]` or `[v6]:port`.
pub fn host_of(registry: &str) -> &str {
    if let Some(rest) = registry.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest);
    }
    registry.split(':').next().unwrap_or(registry)
}

/// Whether `host` is `localhost` or a loopback IP literal.
pub fn is_loopback_host(host: &str) -> bool {
    if host.eq_ignore_ascii_case("localhost") {
        return true;
    }
    host.parse::<std::net::IpAddr>()
        .map(|ip| ip.is_loopback())
        .unwrap_or(false)
}

fn looks_like_registry(component: &str) -> bool {
    component.contains('.')
        || component.contains(':')
        || component.starts_with('[')
        || component == "localhost"
}

fn valid_registry(registry: &str) -> bool {
    let (host, port) = if let Some(rest) = registry.strip_prefix('[') {
        let Some((v6, after)) = rest.split_once(']') else {
            return false;
        };
        if v6.parse::<std::net::Ipv6Addr>().is_err() {
            return false;
        }
        match after {
            "" => return true,
            p => match p.strip_prefix(':') {
                Some(port) => ("v6", Some(port)),
                None => return false,
            },
        }
    } else {
        match registry.split_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (registry, None),
        }
    };
    if let Some(port) = port {
        if port.parse::<u16>().is_err() {
            return false;
        }
    }
    !host.is_empty()
        && host.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        })
}

/// Whether `registry` and `repository` are valid as the two halves of a reference: what
/// parsing checks, without Docker Hub's normalisation (for names built by rewriting one, such
/// as a mirror's).
pub(crate) fn valid_name(registry: &str, repository: &str) -> bool {
    valid_registry(registry) && valid_repository(repository)
}

pub(crate) fn valid_repository(repository: &str) -> bool {
    repository.len() <= 255 && repository.split('/').all(valid_repository_component)
}

fn valid_repository_component(component: &str) -> bool {
    // [a-z0-9]+(?:(?:[._]|__|[-]+)[a-z0-9]+)*
    let bytes = component.as_bytes();
    if bytes.is_empty() {
        return false;
    }
    let alnum = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    if !alnum(bytes[0]) || !alnum(bytes[bytes.len() - 1]) {
        return false;
    }
    let mut i = 0;
    while i < bytes.len() {
        if alnum(bytes[i]) {
            i += 1;
            continue;
        }
        let start = i;
        while i < bytes.len() && !alnum(bytes[i]) {
            i += 1;
        }
        let sep = &component[start..i];
        let ok = sep == "." || sep == "_" || sep == "__" || sep.bytes().all(|b| b == b'-');
        if !ok {
            return false;
        }
    }
    true
}

pub(crate) fn valid_tag(tag: &str) -> bool {
    let bytes = tag.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= 128
        && (bytes[0].is_ascii_alphanumeric() || bytes[0] == b'_')
        && bytes
            .iter()
            .all(|&b| b.is_ascii_alphanumeric() || b == b'_' || b == b'.' || b == b'-')
}

impl FromStr for Reference {
    type Err = ReferenceError;

    fn from_str(input: &str) -> Result<Self, Self::Err> {
        if input.is_empty() {
            return Err(ReferenceError::Empty);
        }
        let (name_and_tag, digest) = match input.split_once('@') {
            Some((rest, digest)) => {
                let digest =
                    digest
                        .parse::<Digest>()
                        .map_err(|source| ReferenceError::BadDigest {
                            input: input.to_string(),
                            source,
                        })?;
                (rest, Some(digest))
            }
            None => (input, None),
        };
        // The tag is after the last ':' that comes after the last '/'.
        let last_slash = name_and_tag.rfind('/').map_or(0, |i| i + 1);
        let (name, tag) = match name_and_tag[last_slash..].rfind(':') {
            Some(i) => {
                let split = last_slash + i;
                (
                    &name_and_tag[..split],
                    Some(name_and_tag[split + 1..].to_string()),
                )
            }
            None => (name_and_tag, None),
        };
        let (registry, repository) = match name.split_once('/') {
            Some((first, rest)) if looks_like_registry(first) => {
                (first.to_string(), rest.to_string())
            }
            _ => (DOCKER_HUB.to_string(), name.to_string()),
        };
        let registry = match registry.as_str() {
            "index.docker.io" | "registry-1.docker.io" => DOCKER_HUB.to_string(),
            _ => registry,
        };
        if !valid_registry(&registry) {
            return Err(ReferenceError::BadRegistry {
                input: input.to_string(),
                registry,
            });
        }
        let repository = if registry == DOCKER_HUB && !repository.contains('/') {
            format!("library/{repository}")
        } else {
            repository
        };
        if !valid_repository(&repository) {
            return Err(ReferenceError::BadRepository {
                input: input.to_string(),
                repository,
            });
        }
        if let Some(tag) = &tag {
            if !valid_tag(tag) {
                return Err(ReferenceError::BadTag {
                    input: input.to_string(),
                    tag: tag.clone(),
                });
            }
        }
        let tag = if tag.is_none() && digest.is_none() {
            Some("latest".to_string())
        } else {
            tag
        };
        Ok(Reference {
            registry,
            repository,
            tag,
            digest,
        })
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.registry, self.repository)?;
        if let Some(tag) = &self.tag {
            write!(f, ":{tag}")?;
        }
        if let Some(digest) = &self.digest {
            write!(f, "@{digest}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Reference({self})")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: &str = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    fn parse(s: &str) -> Reference {
        s.parse().unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    #[test]
    fn docker_hub_normalisation() {
        assert_eq!(
            parse("alpine").to_string(),
            "docker.io/library/alpine:latest"
        );
        assert_eq!(parse("user/app:1").to_string(), "docker.io/user/app:1");
        assert_eq!(
            parse("index.docker.io/library/alpine").registry(),
            "docker.io"
        );
        assert_eq!(parse("alpine").api_host(), "registry-1.docker.io");
    }

    #[test]
    fn registries_ports_and_ipv6() {
        let r = parse("myregistry.azurecr.io/aci-helloworld:v1");
        assert_eq!(r.registry(), "myregistry.azurecr.io");
        assert_eq!(r.repository(), "aci-helloworld");
        assert_eq!(r.tag(), Some("v1"));
        let r = parse("127.0.0.1:5000/a/b/c");
        assert_eq!(r.registry(), "127.0.0.1:5000");
        assert_eq!(r.repository(), "a/b/c");
        assert_eq!(r.tag(), Some("latest"));
        assert!(r.is_loopback_registry());
        let r = parse("[::1]:5000/repo:tag");
        assert_eq!(r.registry(), "[::1]:5000");
        assert_eq!(host_of(r.registry()), "::1");
        assert!(r.is_loopback_registry());
        let r = parse("localhost/repo");
        assert_eq!(r.registry(), "localhost");
    }

    #[test]
    fn digest_pinning() {
        let r = parse(&format!("reg.io/repo@{D}"));
        assert_eq!(r.tag(), None);
        assert_eq!(r.manifest_reference(), D);
        let r = parse(&format!("reg.io/repo:v1@{D}"));
        assert_eq!(r.tag(), Some("v1"));
        assert_eq!(r.manifest_reference(), D);
        assert_eq!(r.to_string(), format!("reg.io/repo:v1@{D}"));
    }

    #[test]
    fn bad_references_name_the_bad_part() {
        assert!(matches!(
            "".parse::<Reference>(),
            Err(ReferenceError::Empty)
        ));
        assert!(matches!(
            "reg.io/Repo".parse::<Reference>(),
            Err(ReferenceError::BadRepository { .. })
        ));
        assert!(matches!(
            "reg.io/repo:-x".parse::<Reference>(),
            Err(ReferenceError::BadTag { .. })
        ));
        assert!(matches!(
            "reg.io/repo@sha256:xyz".parse::<Reference>(),
            Err(ReferenceError::BadDigest { .. })
        ));
        assert!(matches!(
            "bad_host.io:99999/repo".parse::<Reference>(),
            Err(ReferenceError::BadRegistry { .. })
        ));
        assert!(matches!(
            "[zz]:5000/repo".parse::<Reference>(),
            Err(ReferenceError::BadRegistry { .. })
        ));
        assert!("reg.io/a//b".parse::<Reference>().is_err());
        assert!("reg.io/a..b".parse::<Reference>().is_err());
        assert!(parse("reg.io/a__b/c-d--e.f").repository() == "a__b/c-d--e.f");
    }
}
