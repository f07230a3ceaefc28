//! Sigstore bundles (`application/vnd.dev.sigstore.bundle.v0.3+json`) stored as referrers of
//! the image, as cosign's `BUNDLE_SPEC.md` lays them out: an artifact manifest whose layer
//! is the bundle's JSON. What the bundle signs must be the image:
//! - a DSSE envelope (`dsseEnvelope`): the signature is over DSSE's pre-authentication
//!   encoding of the payload; the payload is an in-toto statement whose `subject` lists the
//!   image digest, or a simple signing payload naming it;
//! - a message signature (`messageSignature`): over the manifest bytes themselves, its
//!   `messageDigest` the image digest.

use base64::Engine as _;
use serde::Deserialize;

use super::keyless::{Keyless, Material};
use super::rekor::{Entry, Signed};
use super::{payload::SimpleSigning, Accepted, Expect, Trust, SIMPLE_SIGNING};
use crate::digest::Digest;
use crate::referrers::Referrer;
use crate::verify::{Error, Reason, Request};

/// The artifact type (and layer media type) of a v0.3 bundle.
pub const BUNDLE_V03: &str = "application/vnd.dev.sigstore.bundle.v0.3+json";
/// The DSSE payload type of an in-toto statement.
pub const IN_TOTO: &str = "application/vnd.in-toto+json";

/// The parts of a bundle that are read.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Bundle {
    /// The bundle's own media type.
    pub media_type: String,
    /// Keys, certificates, transparency log entries.
    #[serde(default)]
    pub verification_material: VerificationMaterial,
    /// A signature over the artifact's bytes.
    #[serde(default)]
    pub message_signature: Option<MessageSignature>,
    /// A DSSE envelope.
    #[serde(default)]
    pub dsse_envelope: Option<Envelope>,
}

/// `verificationMaterial`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VerificationMaterial {
    /// Transparency log entries.
    #[serde(default)]
    pub tlog_entries: Vec<serde_json::Value>,
    /// The signing certificate (v0.3, keyless).
    #[serde(default)]
    pub certificate: Option<RawBytes>,
    /// The signing certificate and maybe intermediates (v0.1 and v0.2, keyless).
    #[serde(default)]
    pub x509_certificate_chain: Option<CertificateChain>,
    /// RFC 3161 timestamps (not used: the Rekor integrated time is).
    #[serde(default)]
    pub timestamp_verification_data: Option<serde_json::Value>,
}

/// A base64 DER value.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RawBytes {
    /// Base64 DER.
    pub raw_bytes: String,
}

/// `x509CertificateChain`.
#[derive(Debug, Clone, Deserialize)]
pub struct CertificateChain {
    /// Leaf first.
    pub certificates: Vec<RawBytes>,
}

/// `messageSignature`.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MessageSignature {
    /// The digest of what was signed.
    pub message_digest: MessageDigest,
    /// Base64 signature.
    pub signature: String,
}

/// `messageSignature.messageDigest`.
#[derive(Debug, Clone, Deserialize)]
pub struct MessageDigest {
    /// `SHA2_256`, ...
    pub algorithm: String,
    /// Base64 digest.
    pub digest: String,
}

/// A DSSE envelope.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Envelope {
    /// Base64 payload.
    pub payload: String,
    /// What the payload is.
    pub payload_type: String,
    /// Signatures.
    #[serde(default)]
    pub signatures: Vec<EnvelopeSignature>,
}

/// One DSSE signature.
#[derive(Debug, Clone, Deserialize)]
pub struct EnvelopeSignature {
    /// Base64 signature.
    pub sig: String,
}

/// An in-toto statement (the fields that name what it is about).
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Statement {
    #[serde(rename = "_type")]
    kind: String,
    #[serde(default)]
    subject: Vec<StatementSubject>,
    #[serde(default)]
    predicate_type: String,
}

#[derive(Debug, Clone, Deserialize)]
struct StatementSubject {
    #[serde(default)]
    digest: std::collections::BTreeMap<String, String>,
}

/// DSSE's pre-authentication encoding: `DSSEv1 <len> <type> <len> <body>`.
pub fn pae(payload_type: &str, payload: &[u8]) -> Vec<u8> {
    let mut out = format!(
        "DSSEv1 {} {payload_type} {} ",
        payload_type.len(),
        payload.len()
    )
    .into_bytes();
    out.extend_from_slice(payload);
    out
}

fn base64(field: &str, text: &str) -> Result<Vec<u8>, Reason> {
    base64::engine::general_purpose::STANDARD
        .decode(text.trim())
        .map_err(|_| Reason::Malformed(format!("the bundle's {field} is not base64")))
}

impl Bundle {
    /// Parse a bundle and check its media type.
    pub fn parse(bytes: &[u8]) -> Result<Self, Reason> {
        let bundle: Bundle = serde_json::from_slice(bytes)
            .map_err(|e| Reason::Malformed(format!("not a sigstore bundle: {e}")))?;
        let known = [
            BUNDLE_V03,
            "application/vnd.dev.sigstore.bundle+json;version=0.3",
            // The same layout, the certificate as x509CertificateChain (sigstore clients
            // before v0.3, e.g. sigstore-python 2).
            "application/vnd.dev.sigstore.bundle+json;version=0.2",
        ];
        if !known.contains(&bundle.media_type.as_str()) {
            return Err(Reason::Unsupported(format!(
                "bundle media type `{}` (v0.2 and v0.3 are verified)",
                bundle.media_type
            )));
        }
        Ok(bundle)
    }

    /// Check the bundle signs the manifest `manifest` (digest `digest`) with `trust`.
    pub fn check(
        &self,
        digest: &Digest,
        manifest: &[u8],
        trust: &Trust,
    ) -> Result<Accepted, Reason> {
        let (signer, docker_reference) = match (&self.dsse_envelope, &self.message_signature) {
            (Some(envelope), _) => self.check_envelope(envelope, digest, trust)?,
            (None, Some(message)) => {
                if message.message_digest.algorithm != "SHA2_256" {
                    return Err(Reason::Unsupported(format!(
                        "message digest algorithm `{}`",
                        message.message_digest.algorithm
                    )));
                }
                let signed_digest = base64("messageDigest", &message.message_digest.digest)?;
                let signed = format!("sha256:{}", hex::encode(&signed_digest));
                if digest.to_string() != signed {
                    return Err(Reason::DigestMismatch {
                        signed,
                        expected: digest.clone(),
                    });
                }
                let signature = base64("signature", &message.signature)?;
                (trust.check(manifest, &signature)?, None)
            }
            (None, None) => {
                return Err(Reason::Malformed(
                    "the bundle has neither a DSSE envelope nor a message signature".into(),
                ))
            }
        };
        let mut skipped = Vec::new();
        if !self.verification_material.tlog_entries.is_empty() {
            skipped.push(
                "transparency log entry (a keyed signature is checked against the key alone)"
                    .to_string(),
            );
        }
        Ok(Accepted {
            skipped,
            ..Accepted::new(signer, docker_reference)
        })
    }

    /// The certificates of a keyless bundle.
    pub fn material(&self) -> Result<Material, Reason> {
        let material = &self.verification_material;
        match (&material.certificate, &material.x509_certificate_chain) {
            (Some(leaf), _) => Material::from_der_base64(&[leaf.raw_bytes.as_str()]),
            (None, Some(chain)) => Material::from_der_base64(
                &chain
                    .certificates
                    .iter()
                    .map(|c| c.raw_bytes.as_str())
                    .collect::<Vec<_>>(),
            ),
            (None, None) => Err(Reason::Policy(
                "the bundle carries no certificate: it is a keyed signature (verify it with \
                 --cosign-key)"
                    .into(),
            )),
        }
    }

    /// What the bundle's log entry must record: the signed digest or DSSE payload, and the
    /// signature that verifies with `trust`.
    fn logged(&self, trust: &Trust) -> Result<(bool, Vec<u8>, Vec<u8>), Reason> {
        if let Some(envelope) = &self.dsse_envelope {
            let payload = base64("DSSE payload", &envelope.payload)?;
            let message = pae(&envelope.payload_type, &payload);
            for signature in &envelope.signatures {
                let bytes = base64("DSSE signature", &signature.sig)?;
                if trust.check(&message, &bytes).is_ok() {
                    return Ok((true, payload, bytes));
                }
            }
            return Err(Reason::Malformed("no DSSE signature verifies".into()));
        }
        let Some(message) = &self.message_signature else {
            return Err(Reason::Malformed("the bundle signs nothing".into()));
        };
        Ok((
            false,
            base64("messageDigest", &message.message_digest.digest)?,
            base64("signature", &message.signature)?,
        ))
    }

    /// Check a keyless bundle: the signature with its certificate's key over `manifest`, then
    /// its transparency log entries, certificate chain and identity with `keyless`.
    pub fn check_keyless(
        &self,
        digest: &Digest,
        manifest: &[u8],
        keyless: &Keyless,
    ) -> Result<Accepted, Reason> {
        let material = self.material()?;
        let trust = material.trust()?;
        let mut accepted = self.check(digest, manifest, &trust)?;
        let (dsse, what, signature) = self.logged(&trust)?;
        let signed = if dsse {
            Signed::Dsse {
                payload: &what,
                signature: &signature,
            }
        } else {
            Signed::Hash {
                sha256: &what,
                signature: &signature,
            }
        };
        let entries = self
            .verification_material
            .tlog_entries
            .iter()
            .map(Entry::from_bundle)
            .collect::<Result<Vec<_>, _>>()?;
        let outcome = keyless.check(&material, &entries, signed)?;
        accepted.skipped = outcome.skipped;
        if self
            .verification_material
            .timestamp_verification_data
            .is_some()
        {
            accepted.skipped.push(
                "RFC 3161 timestamps in the bundle (the Rekor integrated time is the signing time)"
                    .into(),
            );
        }
        accepted.keyless(outcome.identity, outcome.checks);
        Ok(accepted)
    }

    fn check_envelope(
        &self,
        envelope: &Envelope,
        wanted: &Digest,
        trust: &Trust,
    ) -> Result<(String, Option<String>), Reason> {
        let payload = base64("DSSE payload", &envelope.payload)?;
        let message = pae(&envelope.payload_type, &payload);
        let mut failure = Reason::Malformed("the DSSE envelope has no signature".into());
        let mut signer = None;
        for signature in &envelope.signatures {
            let bytes = base64("DSSE signature", &signature.sig)?;
            match trust.check(&message, &bytes) {
                Ok(found) => {
                    signer = Some(found);
                    break;
                }
                Err(reason) => failure = reason,
            }
        }
        let Some(signer) = signer else {
            return Err(failure);
        };
        match envelope.payload_type.as_str() {
            IN_TOTO => {
                let statement: Statement = serde_json::from_slice(&payload)
                    .map_err(|e| Reason::Malformed(format!("not an in-toto statement: {e}")))?;
                if !statement.kind.starts_with("https://in-toto.io/Statement/") {
                    return Err(Reason::Malformed(format!(
                        "in-toto `_type` `{}`",
                        statement.kind
                    )));
                }
                let names = statement.subject.iter().any(|s| {
                    s.digest
                        .get(wanted.algorithm().as_str())
                        .map(String::as_str)
                        == Some(wanted.hex())
                });
                if !names {
                    let signed: Vec<String> = statement
                        .subject
                        .iter()
                        .flat_map(|s| s.digest.iter().map(|(a, h)| format!("{a}:{h}")))
                        .collect();
                    return Err(Reason::DigestMismatch {
                        signed: if signed.is_empty() {
                            "no subject".into()
                        } else {
                            signed.join(", ")
                        },
                        expected: wanted.clone(),
                    });
                }
                tracing::debug!(predicate = %statement.predicate_type, "in-toto statement accepted");
                Ok((signer, None))
            }
            SIMPLE_SIGNING => {
                let claims = SimpleSigning::parse(&payload)?;
                claims.check_digest(wanted)?;
                Ok((signer, claims.docker_reference().map(str::to_string)))
            }
            other => Err(Reason::Unsupported(format!("DSSE payload type `{other}`"))),
        }
    }
}

/// A bundle referrer: its bundle layer read, parsed and checked.
pub async fn check_referrer(
    request: &Request<'_>,
    expect: Expect<'_>,
    referrer: &Referrer,
) -> Result<Result<Accepted, Reason>, Error> {
    let Some(layer) = referrer.blobs.iter().find(|b| {
        b.media_type
            .starts_with("application/vnd.dev.sigstore.bundle")
    }) else {
        return Ok(Err(Reason::Malformed(format!(
            "the bundle artifact {} has no bundle layer",
            referrer.digest
        ))));
    };
    let bytes = match request.blob(layer).await? {
        Ok(bytes) => bytes,
        Err(reason) => return Ok(Err(reason)),
    };
    let (digest, manifest) = (request.digest(), &request.manifest.bytes);
    Ok(Bundle::parse(&bytes).and_then(|bundle| match expect {
        Expect::Key(trust) => bundle.check(digest, manifest, trust),
        Expect::Keyless(keyless) => bundle.check_keyless(digest, manifest, keyless),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pae_follows_the_dsse_spec() {
        // The example of the DSSE protocol document.
        assert_eq!(
            pae("http://example.com/HelloWorld", b"hello world"),
            b"DSSEv1 29 http://example.com/HelloWorld 11 hello world".to_vec()
        );
    }

    #[test]
    fn other_bundle_versions_are_named() {
        let old = br#"{"mediaType":"application/vnd.dev.sigstore.bundle+json;version=0.1"}"#;
        assert!(matches!(Bundle::parse(old), Err(Reason::Unsupported(_))));
        assert!(matches!(Bundle::parse(b"[1,2]"), Err(Reason::Malformed(_))));
    }
}
