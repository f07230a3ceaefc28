//! sigstore's trusted root (`trusted_root.json`, media type
//! `application/vnd.dev.sigstore.trustedroot+json;version=0.1`, protobuf-specs `TrustedRoot`):
//! the Fulcio certificate authorities, the Rekor transparency logs and the certificate
//! transparency logs a keyless signature is checked against, each with the time window it
//! may be trusted for. acrpull reads it from a file (`--trusted-root`) and fetches nothing:
//! keeping it current (sigstore publishes it through TUF) is the machine owner's job.
//!
//! A log key of a kind acrpull cannot use (a raw PKCS #1 RSA key of an old CT log) does not
//! make the file unusable: it is kept as unusable and only matters if a signature names it.

use std::path::Path;

use base64::Engine as _;
use serde::Deserialize;
use sha2::Digest as _;
use time::OffsetDateTime;

use crate::verify::keys::PublicKey;
use crate::verify::x509::Certificate;
use crate::verify::Error;

/// The media type of the version read.
pub const MEDIA_TYPE: &str = "application/vnd.dev.sigstore.trustedroot+json;version=0.1";

/// A `validFor` window; an open end is unbounded.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Window {
    /// From (inclusive).
    pub start: Option<OffsetDateTime>,
    /// Until (inclusive).
    pub end: Option<OffsetDateTime>,
}

impl Window {
    /// Whether `at` lies inside.
    pub fn contains(&self, at: OffsetDateTime) -> bool {
        self.start.is_none_or(|s| s <= at) && self.end.is_none_or(|e| at <= e)
    }
}

/// A Fulcio certificate authority: its chain, intermediates first, the root last.
#[derive(Debug, Clone)]
pub struct Authority {
    /// Where it lives (`uri`), for messages.
    pub name: String,
    /// The root (self-signed, last in `certChain`).
    pub root: Certificate,
    /// The intermediates below it.
    pub intermediates: Vec<Certificate>,
    /// When certificates it issued are trusted.
    pub valid: Window,
}

/// A transparency log (Rekor) or certificate transparency log key.
#[derive(Debug, Clone)]
pub struct Log {
    /// Its `baseUrl`, for messages.
    pub name: String,
    /// Its log ID (the SHA-256 of its key's SubjectPublicKeyInfo).
    pub log_id: Vec<u8>,
    /// Its key, or why it cannot be used.
    pub key: Result<PublicKey, String>,
    /// When its signatures are trusted.
    pub valid: Window,
}

/// A parsed trusted root.
#[derive(Debug, Clone, Default)]
pub struct TrustedRoot {
    /// Where it came from, for messages.
    pub origin: String,
    /// Fulcio CAs.
    pub authorities: Vec<Authority>,
    /// Rekor logs.
    pub tlogs: Vec<Log>,
    /// Certificate transparency logs.
    pub ctlogs: Vec<Log>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawRoot {
    media_type: String,
    #[serde(default)]
    tlogs: Vec<RawLog>,
    #[serde(default)]
    certificate_authorities: Vec<RawAuthority>,
    #[serde(default)]
    ctlogs: Vec<RawLog>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawLog {
    #[serde(default)]
    base_url: String,
    public_key: RawKey,
    log_id: RawLogId,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawKey {
    #[serde(default)]
    raw_bytes: String,
    #[serde(default)]
    key_details: String,
    #[serde(default)]
    valid_for: Option<RawWindow>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawLogId {
    key_id: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawAuthority {
    #[serde(default)]
    uri: String,
    cert_chain: RawChain,
    #[serde(default)]
    valid_for: Option<RawWindow>,
}

#[derive(Deserialize)]
struct RawChain {
    certificates: Vec<RawBytes>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawBytes {
    raw_bytes: String,
}

#[derive(Deserialize)]
struct RawWindow {
    #[serde(default)]
    start: Option<String>,
    #[serde(default)]
    end: Option<String>,
}

fn base64(what: &str, text: &str) -> Result<Vec<u8>, String> {
    base64::engine::general_purpose::STANDARD
        .decode(text.trim())
        .map_err(|_| format!("{what} is not base64"))
}

fn time(what: &str, text: &Option<String>) -> Result<Option<OffsetDateTime>, String> {
    text.as_deref()
        .map(|t| {
            OffsetDateTime::parse(t, &time::format_description::well_known::Rfc3339)
                .map_err(|e| format!("{what} `{t}` is not an RFC 3339 time: {e}"))
        })
        .transpose()
}

fn window(what: &str, raw: &Option<RawWindow>) -> Result<Window, String> {
    Ok(match raw {
        None => Window::default(),
        Some(w) => Window {
            start: time(&format!("{what} validFor.start"), &w.start)?,
            end: time(&format!("{what} validFor.end"), &w.end)?,
        },
    })
}

fn log(kind: &str, raw: &RawLog) -> Result<Log, String> {
    let what = format!("{kind} {}", raw.base_url);
    let der = base64(
        &format!("{what} publicKey.rawBytes"),
        &raw.public_key.raw_bytes,
    )?;
    let key = if raw.public_key.key_details.starts_with("PKIX_") {
        PublicKey::from_spki_der(&der)
    } else {
        Err(format!(
            "key type `{}` is not used by acrpull (PKIX keys are)",
            raw.public_key.key_details
        ))
    };
    Ok(Log {
        name: raw.base_url.clone(),
        log_id: base64(&format!("{what} logId.keyId"), &raw.log_id.key_id)?,
        key,
        valid: window(&what, &raw.public_key.valid_for)?,
    })
}

impl TrustedRoot {
    /// Read and check the file at `path`.
    pub fn load(path: &Path) -> Result<Self, Error> {
        let config = |reason: String| Error::Config {
            what: format!("trusted root {}", path.display()),
            reason,
        };
        let bytes = std::fs::read(path).map_err(|e| config(e.to_string()))?;
        Self::parse(&bytes, &path.display().to_string()).map_err(config)
    }

    /// Parse a trusted root from `origin`.
    pub fn parse(bytes: &[u8], origin: &str) -> Result<Self, String> {
        let raw: RawRoot = serde_json::from_slice(bytes)
            .map_err(|e| format!("not a sigstore trusted root: {e}"))?;
        if raw.media_type != MEDIA_TYPE {
            return Err(format!(
                "media type `{}`, not `{MEDIA_TYPE}`",
                raw.media_type
            ));
        }
        let mut authorities = Vec::new();
        for ca in &raw.certificate_authorities {
            let mut chain = Vec::new();
            for cert in &ca.cert_chain.certificates {
                let der = base64(
                    &format!("certificate authority {}", ca.uri),
                    &cert.raw_bytes,
                )?;
                chain.push(
                    Certificate::from_der(&der)
                        .map_err(|e| format!("certificate authority {}: {e}", ca.uri))?,
                );
            }
            let Some(root) = chain.pop() else {
                return Err(format!(
                    "certificate authority {} has no certificate",
                    ca.uri
                ));
            };
            authorities.push(Authority {
                name: ca.uri.clone(),
                root,
                intermediates: chain,
                valid: window(&format!("certificate authority {}", ca.uri), &ca.valid_for)?,
            });
        }
        let tlogs = raw
            .tlogs
            .iter()
            .map(|l| log("tlog", l))
            .collect::<Result<_, _>>()?;
        let ctlogs = raw
            .ctlogs
            .iter()
            .map(|l| log("ctlog", l))
            .collect::<Result<_, _>>()?;
        let root = TrustedRoot {
            origin: origin.to_string(),
            authorities,
            tlogs,
            ctlogs,
        };
        if root.authorities.is_empty() || root.tlogs.is_empty() {
            return Err("it names no certificate authority or no transparency log: keyless signatures cannot be verified with it".into());
        }
        Ok(root)
    }

    /// A trusted root made of a policy's Fulcio CA certificates (`caPath`/`caData`) and Rekor
    /// keys, trusted at all times (containers/image's `fulcio` and `rekorPublicKey*`):
    /// self-signed certificates are roots, the others intermediates below them.
    pub fn from_parts(
        origin: &str,
        ca: Vec<Certificate>,
        rekor: Vec<PublicKey>,
    ) -> Result<Self, String> {
        let (roots, intermediates): (Vec<_>, Vec<_>) = ca
            .into_iter()
            .partition(|c| c.self_issued() && c.check_issued_by(c).is_ok());
        if roots.is_empty() {
            return Err("the Fulcio CA certificates hold no self-signed root".into());
        }
        Ok(TrustedRoot {
            origin: origin.to_string(),
            authorities: roots
                .into_iter()
                .map(|root| Authority {
                    name: root.subject().to_string(),
                    root,
                    intermediates: intermediates.clone(),
                    valid: Window::default(),
                })
                .collect(),
            tlogs: rekor
                .into_iter()
                .map(|key| Log {
                    name: "rekorPublicKey".into(),
                    log_id: sha2::Sha256::digest(key.to_spki_der()).to_vec(),
                    key: Ok(key),
                    valid: Window::default(),
                })
                .collect(),
            ctlogs: Vec::new(),
        })
    }

    /// The Rekor log whose ID is `log_id`.
    pub fn tlog(&self, log_id: &[u8]) -> Option<&Log> {
        self.tlogs.iter().find(|l| l.log_id == log_id)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A file of `fixtures/sigstore/`.
    pub(crate) fn fixture(name: &str) -> Vec<u8> {
        std::fs::read(
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("fixtures/sigstore")
                .join(name),
        )
        .unwrap()
    }

    #[test]
    fn sigstores_staging_trusted_root_parses() {
        let root = TrustedRoot::parse(&fixture("staging_trusted_root.json"), "staging").unwrap();
        assert_eq!(root.authorities.len(), 1);
        let ca = &root.authorities[0];
        assert_eq!(ca.root.subject(), "CN=sigstore,O=sigstore.dev");
        assert_eq!(ca.intermediates.len(), 1);
        let rekor = root
            .tlog(&base64("", "0y8wo8MtY5wrdiIFohx7sHeI5oKDpK5vQhGHI6G+pJY=").unwrap())
            .unwrap();
        assert_eq!(rekor.name, "https://rekor.sigstage.dev");
        // The log ID is the SHA-256 of the key, as Rekor computes it.
        let key = rekor.key.as_ref().unwrap();
        assert_eq!(
            sha2::Sha256::digest(key.to_spki_der()).to_vec(),
            rekor.log_id
        );
        // An old CT log's raw PKCS #1 key is kept, unusable, without failing the file.
        assert!(root.ctlogs.iter().any(|l| l.key.is_err()));
        assert!(root.ctlogs.iter().filter(|l| l.key.is_ok()).count() >= 2);
    }

    #[test]
    fn another_media_type_or_no_ca_is_refused() {
        let other = br#"{"mediaType":"application/vnd.dev.sigstore.trustedroot+json;version=0.2"}"#;
        assert!(TrustedRoot::parse(other, "x")
            .unwrap_err()
            .contains("media type"));
        let empty = format!(r#"{{"mediaType":"{MEDIA_TYPE}"}}"#);
        assert!(TrustedRoot::parse(empty.as_bytes(), "x")
            .unwrap_err()
            .contains("no certificate authority"));
    }

    #[test]
    fn windows_are_inclusive_and_open_ended() {
        let at = OffsetDateTime::from_unix_timestamp(1_700_000_000).unwrap();
        let w = Window {
            start: Some(at),
            end: None,
        };
        assert!(w.contains(at));
        assert!(!w.contains(at - time::Duration::seconds(1)));
        assert!(Window::default().contains(at));
    }
}
