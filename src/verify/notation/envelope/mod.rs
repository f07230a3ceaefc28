//! Notary Project signature envelopes: JWS (`application/jose+json`, flattened JSON
//! serialization) and COSE_Sign1 (`application/cose`), read into one [`Envelope`] whose
//! signature can then be checked with the signing certificate's key.
//!
//! Written from the Notary Project specifications (signature-specification.md,
//! signature-envelope-jws.md, signature-envelope-cose.md). Parsing is strict where a lax
//! parser would let two readers see two different signatures: duplicate JSON keys or CBOR
//! labels, unknown top-level JWS members, untagged COSE, headers marked critical that are
//! absent or unknown, and required critical headers not marked critical are all refused.
//!
//! This file holds the parsed form and the checks both formats share (signed attributes,
//! certificate chain, signature); `jws` and `cose` read each format's bytes.

mod cose;
mod jws;

use std::collections::HashSet;

use serde::Deserialize;
use time::OffsetDateTime;

use crate::verify::x509::{self, Certificate, Hash, SignatureAlgorithm};

use cose::parse_cose;
pub use cose::{cbor_head, sig_structure};
use jws::parse_jws;

/// The JWS envelope's media type.
pub const JWS_MEDIA_TYPE: &str = "application/jose+json";
/// The COSE envelope's media type.
pub const COSE_MEDIA_TYPE: &str = "application/cose";
/// The payload's content type (`cty`).
pub const PAYLOAD_CONTENT_TYPE: &str = "application/vnd.cncf.notary.payload.v1+json";
/// Envelopes larger than this are not read (real ones are a few KiB).
pub const MAX_ENVELOPE_SIZE: usize = 4 << 20;

const SIGNING_SCHEME: &str = "io.cncf.notary.signingScheme";
const SIGNING_TIME: &str = "io.cncf.notary.signingTime";
const AUTHENTIC_SIGNING_TIME: &str = "io.cncf.notary.authenticSigningTime";
const EXPIRY: &str = "io.cncf.notary.expiry";
const VERIFICATION_PLUGIN: &str = "io.cncf.notary.verificationPlugin";
const VERIFICATION_PLUGIN_MIN_VERSION: &str = "io.cncf.notary.verificationPluginMinVersion";
const TIMESTAMP_SIGNATURE: &str = "io.cncf.notary.timestampSignature";
const SIGNING_AGENT: &str = "io.cncf.notary.signingAgent";

/// Why an envelope cannot be read or does not verify (always an integrity failure).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct EnvelopeError(pub String);

fn bad(message: impl Into<String>) -> EnvelopeError {
    EnvelopeError(message.into())
}

/// The envelope format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// JWS JSON serialization.
    Jws,
    /// COSE_Sign1.
    Cose,
}

impl Format {
    /// The format of an envelope media type.
    pub fn from_media_type(media_type: &str) -> Option<Format> {
        match media_type {
            JWS_MEDIA_TYPE => Some(Format::Jws),
            COSE_MEDIA_TYPE => Some(Format::Cose),
            _ => None,
        }
    }
}

/// The signing scheme (`io.cncf.notary.signingScheme`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SigningScheme {
    /// `notary.x509`: a CA-issued certificate, time from the signer (or a TSA).
    X509,
    /// `notary.x509.signingAuthority`: a signing authority vouches for the signing time.
    X509SigningAuthority,
}

impl SigningScheme {
    fn parse(value: &str) -> Result<SigningScheme, EnvelopeError> {
        match value {
            "notary.x509" => Ok(SigningScheme::X509),
            "notary.x509.signingAuthority" => Ok(SigningScheme::X509SigningAuthority),
            other => Err(bad(format!("unsupported signing scheme `{other}`"))),
        }
    }

    /// The scheme's name.
    pub fn as_str(self) -> &'static str {
        match self {
            SigningScheme::X509 => "notary.x509",
            SigningScheme::X509SigningAuthority => "notary.x509.signingAuthority",
        }
    }
}

/// A parsed envelope: what was signed, by which chain, with which signed attributes.
#[derive(Debug, Clone)]
pub struct Envelope {
    /// JWS or COSE.
    pub format: Format,
    /// The payload bytes (the JSON document naming `targetArtifact`).
    pub payload: Vec<u8>,
    /// The bytes the signature covers (JWS signing input, COSE `Sig_structure`).
    pub signed_bytes: Vec<u8>,
    /// The signature.
    pub signature: Vec<u8>,
    /// The algorithm the `alg` header names.
    pub algorithm: SignatureAlgorithm,
    /// The signing scheme.
    pub signing_scheme: SigningScheme,
    /// `signingTime` (`notary.x509`) or `authenticSigningTime` (`signingAuthority`).
    pub signing_time: OffsetDateTime,
    /// `io.cncf.notary.expiry`.
    pub expiry: Option<OffsetDateTime>,
    /// The certificate chain, leaf first.
    pub certificates: Vec<Certificate>,
    /// The RFC 3161 timestamp token countersigning the signature, if any.
    pub timestamp_token: Option<Vec<u8>>,
    /// `io.cncf.notary.signingAgent` (unsigned, informational).
    pub signing_agent: Option<String>,
}

/// The payload: the descriptor of the signed manifest.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Payload {
    /// The signed artifact.
    #[serde(rename = "targetArtifact")]
    pub target_artifact: TargetArtifact,
}

/// The descriptor inside the payload.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TargetArtifact {
    /// Its media type.
    pub media_type: String,
    /// Its digest.
    pub digest: String,
    /// Its size.
    pub size: u64,
    /// Annotations the signer added.
    #[serde(default)]
    pub annotations: Option<std::collections::BTreeMap<String, String>>,
}

/// Parse the envelope of `media_type`.
pub fn parse(media_type: &str, bytes: &[u8]) -> Result<Envelope, EnvelopeError> {
    if bytes.len() > MAX_ENVELOPE_SIZE {
        return Err(bad(format!(
            "the envelope is {} bytes, more than the {MAX_ENVELOPE_SIZE} accepted",
            bytes.len()
        )));
    }
    match Format::from_media_type(media_type) {
        Some(Format::Jws) => parse_jws(bytes),
        Some(Format::Cose) => parse_cose(bytes),
        None => Err(bad(format!(
            "unsupported signature envelope media type `{media_type}` (expected {JWS_MEDIA_TYPE} or {COSE_MEDIA_TYPE})"
        ))),
    }
}

impl Envelope {
    /// The leaf (signing) certificate.
    pub fn signing_certificate(&self) -> &Certificate {
        // `parse` refuses envelopes without certificates.
        &self.certificates[0]
    }

    /// Check the signature with the leaf certificate's key, after checking that `alg` is the
    /// algorithm the Notary Project assigns to that key (no algorithm substitution), and read
    /// the payload.
    pub fn verify(&self) -> Result<Payload, EnvelopeError> {
        let leaf = self.signing_certificate();
        let key = leaf
            .public_key()
            .map_err(|e| bad(format!("signing certificate: {e}")))?;
        let expected = x509::notary_algorithm_for(&key)
            .map_err(|e| bad(format!("signing certificate: {e}")))?;
        if expected != self.algorithm {
            return Err(bad(format!(
                "the envelope's algorithm {:?} is not the one of the signing key ({}: {expected:?})",
                self.algorithm,
                key.describe()
            )));
        }
        key.verify(self.algorithm, &self.signed_bytes, &self.signature)
            .map_err(|e| bad(format!("the signature does not verify: {e}")))?;
        self.payload()
    }

    /// The payload as a document (only trustworthy after [`Envelope::verify`]).
    pub fn payload(&self) -> Result<Payload, EnvelopeError> {
        serde_json::from_slice(&self.payload)
            .map_err(|e| bad(format!("the payload is not a Notary Project payload: {e}")))
    }
}

/// The signed attributes common to both formats, checked as the specification says.
struct SignedAttributes {
    algorithm: SignatureAlgorithm,
    scheme: SigningScheme,
    signing_time: Option<OffsetDateTime>,
    authentic_signing_time: Option<OffsetDateTime>,
    expiry: Option<OffsetDateTime>,
    content_type: String,
    critical: Vec<String>,
    /// Every header name present (for the `crit` check).
    present: HashSet<String>,
}

impl SignedAttributes {
    /// Check `crit` and the scheme's required headers; the signing time to use.
    fn check(&self) -> Result<OffsetDateTime, EnvelopeError> {
        if self.content_type != PAYLOAD_CONTENT_TYPE {
            return Err(bad(format!(
                "unsupported payload content type `{}` (expected {PAYLOAD_CONTENT_TYPE})",
                self.content_type
            )));
        }
        if self.critical.is_empty() {
            return Err(bad("the protected header has no `crit` list"));
        }
        let mut must_be_critical = vec![SIGNING_SCHEME];
        if self.expiry.is_some() {
            must_be_critical.push(EXPIRY);
        }
        let time = match self.scheme {
            SigningScheme::X509 => {
                if self.authentic_signing_time.is_some() {
                    return Err(bad(format!(
                        "`{AUTHENTIC_SIGNING_TIME}` must not be present under notary.x509"
                    )));
                }
                self.signing_time
                    .ok_or_else(|| bad(format!("`{SIGNING_TIME}` is required under notary.x509")))?
            }
            SigningScheme::X509SigningAuthority => {
                if self.signing_time.is_some() {
                    return Err(bad(format!(
                        "`{SIGNING_TIME}` must not be present under notary.x509.signingAuthority"
                    )));
                }
                must_be_critical.push(AUTHENTIC_SIGNING_TIME);
                self.authentic_signing_time.ok_or_else(|| {
                    bad(format!(
                        "`{AUTHENTIC_SIGNING_TIME}` is required under notary.x509.signingAuthority"
                    ))
                })?
            }
        };
        let mut seen = HashSet::new();
        for name in &self.critical {
            if !seen.insert(name.as_str()) {
                return Err(bad(format!("`{name}` is listed twice in `crit`")));
            }
            if !self.present.contains(name) {
                return Err(bad(format!("`{name}` is marked critical but not present")));
            }
            match name.as_str() {
                SIGNING_SCHEME | AUTHENTIC_SIGNING_TIME | EXPIRY => {}
                VERIFICATION_PLUGIN | VERIFICATION_PLUGIN_MIN_VERSION => {
                    return Err(bad(format!(
                        "the signature requires a Notation verification plugin (`{name}`), which acrpull does not run"
                    )))
                }
                other => {
                    return Err(bad(format!(
                        "the critical header `{other}` is not understood"
                    )))
                }
            }
        }
        for name in must_be_critical {
            if !seen.contains(name) {
                return Err(bad(format!("`{name}` must be marked critical")));
            }
        }
        if let Some(expiry) = self.expiry {
            if expiry <= time {
                return Err(bad("the expiry is not after the signing time"));
            }
        }
        Ok(time)
    }
}

fn parse_certificates<'a>(
    ders: impl Iterator<Item = Result<&'a [u8], EnvelopeError>>,
) -> Result<Vec<Certificate>, EnvelopeError> {
    let mut out = Vec::new();
    for der in ders {
        if out.len() >= x509::MAX_CHAIN_LENGTH {
            return Err(bad(format!(
                "the certificate chain has more than {} certificates",
                x509::MAX_CHAIN_LENGTH
            )));
        }
        out.push(Certificate::from_der(der?).map_err(|e| bad(format!("certificate chain: {e}")))?);
    }
    if out.is_empty() {
        return Err(bad("the envelope carries no certificate chain"));
    }
    Ok(out)
}

fn pss(hash: Hash) -> SignatureAlgorithm {
    let salt = hash.digest(b"").len();
    SignatureAlgorithm::RsaPss { hash, salt }
}
