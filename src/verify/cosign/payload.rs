//! The simple signing payload cosign signs (the "Red Hat simple signing" format):
//!
//! ```json
//! {"critical": {"identity": {"docker-reference": "registry/repo"},
//!               "image": {"docker-manifest-digest": "sha256:..."},
//!               "type": "cosign container image signature"},
//!  "optional": {...}}
//! ```
//!
//! Read strictly where it matters: `critical` must have `type` and `image`, the type must be
//! cosign's, the digest must be the image's. Unknown fields elsewhere are ignored, as cosign
//! ignores them.

use serde::Deserialize;

use crate::digest::Digest;
use crate::verify::Reason;

/// The `critical.type` of a cosign image signature.
pub const COSIGN_TYPE: &str = "cosign container image signature";

/// A parsed simple signing payload.
#[derive(Debug, Clone, Deserialize)]
pub struct SimpleSigning {
    /// The claims a verifier must understand.
    pub critical: Critical,
    /// Free-form annotations of the signer.
    #[serde(default)]
    pub optional: Option<serde_json::Value>,
}

/// `critical`.
#[derive(Debug, Clone, Deserialize)]
pub struct Critical {
    /// What the image is called.
    #[serde(default)]
    pub identity: Option<Identity>,
    /// The manifest signed.
    pub image: Image,
    /// The payload type.
    #[serde(rename = "type")]
    pub kind: String,
}

/// `critical.identity`.
#[derive(Debug, Clone, Deserialize)]
pub struct Identity {
    /// The repository (and maybe tag) the signer named.
    #[serde(rename = "docker-reference", default)]
    pub docker_reference: Option<String>,
}

/// `critical.image`.
#[derive(Debug, Clone, Deserialize)]
pub struct Image {
    /// The manifest digest signed.
    #[serde(rename = "docker-manifest-digest")]
    pub docker_manifest_digest: String,
}

impl SimpleSigning {
    /// Parse a payload and check its type.
    pub fn parse(bytes: &[u8]) -> Result<Self, Reason> {
        let payload: SimpleSigning = serde_json::from_slice(bytes)
            .map_err(|e| Reason::Malformed(format!("not a simple signing payload: {e}")))?;
        if payload.critical.kind != COSIGN_TYPE {
            return Err(Reason::Malformed(format!(
                "the payload's critical.type is `{}`, not `{COSIGN_TYPE}`",
                payload.critical.kind
            )));
        }
        Ok(payload)
    }

    /// The `docker-reference` claimed, if any.
    pub fn docker_reference(&self) -> Option<&str> {
        self.critical
            .identity
            .as_ref()
            .and_then(|i| i.docker_reference.as_deref())
    }

    /// The payload must sign `digest`.
    pub fn check_digest(&self, digest: &Digest) -> Result<(), Reason> {
        let signed = &self.critical.image.docker_manifest_digest;
        if signed.parse::<Digest>().ok().as_ref() == Some(digest) {
            Ok(())
        } else {
            Err(Reason::DigestMismatch {
                signed: signed.clone(),
                expected: digest.clone(),
            })
        }
    }
}

/// Whether two references name the same repository (`alpine` and
/// `docker.io/library/alpine:3` do), tags and digests aside.
pub fn same_repository(a: &str, b: &str) -> bool {
    match (a.parse::<crate::Reference>(), b.parse::<crate::Reference>()) {
        (Ok(a), Ok(b)) => a.registry() == b.registry() && a.repository() == b.repository(),
        _ => a == b,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DIGEST: &str = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    #[test]
    fn a_cosign_payload_names_its_digest_and_reference() {
        let payload = format!(
            r#"{{"critical":{{"identity":{{"docker-reference":"example.com/app"}},"image":{{"docker-manifest-digest":"{DIGEST}"}},"type":"cosign container image signature"}},"optional":null}}"#
        );
        let parsed = SimpleSigning::parse(payload.as_bytes()).unwrap();
        assert_eq!(parsed.docker_reference(), Some("example.com/app"));
        parsed.check_digest(&DIGEST.parse().unwrap()).unwrap();
        let other = Digest::sha256_of(b"another manifest");
        assert!(matches!(
            parsed.check_digest(&other),
            Err(Reason::DigestMismatch { .. })
        ));
    }

    #[test]
    fn another_type_or_a_missing_digest_is_malformed() {
        let atomic = format!(
            r#"{{"critical":{{"identity":{{"docker-reference":"a"}},"image":{{"docker-manifest-digest":"{DIGEST}"}},"type":"atomic container signature"}}}}"#
        );
        assert!(matches!(
            SimpleSigning::parse(atomic.as_bytes()),
            Err(Reason::Malformed(_))
        ));
        let missing = r#"{"critical":{"type":"cosign container image signature"}}"#;
        assert!(matches!(
            SimpleSigning::parse(missing.as_bytes()),
            Err(Reason::Malformed(_))
        ));
    }

    #[test]
    fn repositories_compare_normalised() {
        assert!(same_repository("alpine", "docker.io/library/alpine:3.19"));
        assert!(same_repository(
            "localhost:5000/app:v1",
            "localhost:5000/app"
        ));
        assert!(!same_repository(
            "localhost:5000/app",
            "localhost:5000/other"
        ));
    }
}
