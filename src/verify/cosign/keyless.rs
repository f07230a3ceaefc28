//! Keyless cosign signatures (`--certificate-identity`, `--certificate-oidc-issuer`), verified
//! offline against a sigstore trusted root. A keyless signature is made with a short-lived
//! key whose Fulcio certificate names who signed (a SAN: an email or a URI) and which OIDC
//! provider vouched for them (an extension); the Rekor log proves *when* it was signed, and
//! the certificate must have been valid then. The checks, each its own rejection:
//! 1. the signature over the payload verifies with the certificate's key and names the image
//!    (done by the keyed code paths, with the certificate's key as the key);
//! 2. a Rekor entry of a log in the trusted root records this signature and certificate, and
//!    is proven by its signed entry timestamp and/or its inclusion proof and checkpoint
//!    ([`super::rekor`], [`super::merkle`]);
//! 3. the certificate was valid at the entry's integrated time;
//! 4. it chains to a Fulcio CA of the trusted root valid at that time, with the code-signing
//!    EKU ([`crate::verify::x509::build_chain`], [`Purpose::SigstoreCodeSigning`]);
//! 5. its SAN and OIDC issuer match what was asked, as cosign matches them: exact strings, or
//!    regular expressions that match anywhere in the value (cosign uses Go's
//!    `regexp.MatchString`, unanchored: anchor with `^...$` to pin a whole value);
//! 6. its embedded SCTs verify with a CT log of the trusted root ([`super::sct`]).

use base64::Engine as _;
use serde::Serialize;
use time::OffsetDateTime;

use super::rekor::{self, Entry, Signed, Signer};
use super::trusted_root::TrustedRoot;
use super::{merkle, sct, Trust};
use crate::verify::keys::PublicKey;
use crate::verify::x509::{self, Certificate, ChainOptions, Purpose, SubjectAltNameEntry};
use crate::verify::{Error, Reason};

/// Fulcio's OIDC issuer extension, v1 (the raw string as the extension's value).
pub const ISSUER_V1: const_oid::ObjectIdentifier =
    const_oid::ObjectIdentifier::new_unwrap("1.3.6.1.4.1.57264.1.1");
/// Fulcio's OIDC issuer extension, v2 (a DER UTF8String).
pub const ISSUER_V2: const_oid::ObjectIdentifier =
    const_oid::ObjectIdentifier::new_unwrap("1.3.6.1.4.1.57264.1.8");

/// One expected value: exact, or a regular expression matched anywhere in the value.
#[derive(Debug, Clone)]
pub enum Matcher {
    /// The whole value.
    Exact(String),
    /// A regular expression (cosign's `-regexp` flags).
    Regex(regex::Regex),
    /// An email SAN, exactly (a policy's `subjectEmail`: URI and DNS SANs do not count).
    Email(String),
}

impl Matcher {
    /// A matcher from an exact value or a regular expression (exactly one of them).
    pub fn new(flag: &str, exact: Option<&str>, pattern: Option<&str>) -> Result<Self, Error> {
        match (exact, pattern) {
            (Some(exact), None) => Ok(Matcher::Exact(exact.to_string())),
            (None, Some(pattern)) => regex::Regex::new(pattern)
                .map(Matcher::Regex)
                .map_err(|e| Error::Usage(format!("--{flag}-regexp `{pattern}`: {e}"))),
            (Some(_), Some(_)) => Err(Error::Usage(format!(
                "give --{flag} or --{flag}-regexp, not both"
            ))),
            (None, None) => Err(Error::Usage(format!(
                "keyless verification needs --{flag} or --{flag}-regexp"
            ))),
        }
    }

    /// Whether `value` matches.
    pub fn matches(&self, value: &str) -> bool {
        match self {
            Matcher::Exact(exact) | Matcher::Email(exact) => exact == value,
            Matcher::Regex(regex) => regex.is_match(value),
        }
    }
}

impl std::fmt::Display for Matcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Matcher::Exact(exact) => write!(f, "`{exact}`"),
            Matcher::Regex(regex) => write!(f, "matching /{}/", regex.as_str()),
            Matcher::Email(email) => write!(f, "email `{email}`"),
        }
    }
}

/// Who must have signed.
#[derive(Debug, Clone)]
pub struct Identity {
    /// The certificate's SAN (email or URI).
    pub subject: Matcher,
    /// The OIDC issuer.
    pub issuer: Matcher,
}

/// The signer a keyless signature was accepted for: the `identity` of `--json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SignerIdentity {
    /// The SAN that matched.
    pub subject: String,
    /// The OIDC issuer.
    pub issuer: String,
}

/// What was proven about an accepted keyless signature.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// Who signed.
    pub identity: SignerIdentity,
    /// The checks made (transparency log, chain, SCT...).
    pub checks: Vec<String>,
    /// The checks not made, and why.
    pub skipped: Vec<String>,
}

/// The certificates a signature carries: the leaf, and maybe intermediates.
#[derive(Debug, Clone)]
pub struct Material {
    /// The signing certificate.
    pub leaf: Certificate,
    /// Other certificates sent along (only ever used as intermediates).
    pub chain: Vec<Certificate>,
}

impl Material {
    /// From PEM text (`dev.sigstore.cosign/certificate` and `.../chain` annotations).
    pub fn from_pem(leaf: &str, chain: Option<&str>) -> Result<Self, Reason> {
        let malformed = |what: &str, e: x509::Error| Reason::Malformed(format!("{what}: {e}"));
        let mut leaves = Certificate::parse_many(leaf.as_bytes())
            .map_err(|e| malformed("the signing certificate", e))?;
        if leaves.len() != 1 {
            return Err(Reason::Malformed(format!(
                "the certificate annotation holds {} certificates, not one",
                leaves.len()
            )));
        }
        let chain = match chain {
            Some(text) => Certificate::parse_many(text.as_bytes())
                .map_err(|e| malformed("the certificate chain", e))?,
            None => Vec::new(),
        };
        Ok(Material {
            leaf: leaves.remove(0),
            chain,
        })
    }

    /// From base64 DER certificates, the leaf first (a bundle's verification material).
    pub fn from_der_base64(certificates: &[&str]) -> Result<Self, Reason> {
        let mut parsed = Vec::new();
        for text in certificates {
            let der = base64::engine::general_purpose::STANDARD
                .decode(text.trim())
                .map_err(|_| Reason::Malformed("a bundle certificate is not base64".into()))?;
            parsed.push(
                Certificate::from_der(&der)
                    .map_err(|e| Reason::Malformed(format!("a bundle certificate: {e}")))?,
            );
        }
        if parsed.is_empty() {
            return Err(Reason::Malformed(
                "the bundle carries no certificate".into(),
            ));
        }
        let leaf = parsed.remove(0);
        Ok(Material {
            leaf,
            chain: parsed,
        })
    }

    /// The leaf's key, as the key the payload signature must verify with.
    pub fn trust(&self) -> Result<Trust, Reason> {
        let key = PublicKey::from_spki_der(&sct::spki_der(&self.leaf))
            .map_err(|e| Reason::Unsupported(format!("the signing certificate's key: {e}")))?;
        Ok(Trust {
            keys: vec![(
                key,
                format!("certificate `{}`", sans(&self.leaf).join(", ")),
            )],
        })
    }
}

/// The SANs cosign compares identities with (emails, URIs, DNS names).
pub fn sans(cert: &Certificate) -> Vec<String> {
    cert.subject_alt_names()
        .iter()
        .filter_map(|san| match san {
            SubjectAltNameEntry::Email(s)
            | SubjectAltNameEntry::Uri(s)
            | SubjectAltNameEntry::Dns(s) => Some(s.clone()),
            SubjectAltNameEntry::Other => None,
        })
        .collect()
}

/// The OIDC issuer a Fulcio certificate names (v2 extension, else v1).
pub fn oidc_issuer(cert: &Certificate) -> Result<Option<String>, Reason> {
    use der::Decode as _;
    if let Some((_, value)) = cert.extension(&ISSUER_V2) {
        let text = der::asn1::Utf8StringRef::from_der(value).map_err(|e| {
            Reason::Malformed(format!(
                "the OIDC issuer extension (v2) is not a UTF8String: {e}"
            ))
        })?;
        return Ok(Some(text.as_str().to_string()));
    }
    if let Some((_, value)) = cert.extension(&ISSUER_V1) {
        let text = std::str::from_utf8(value)
            .map_err(|_| Reason::Malformed("the OIDC issuer extension (v1) is not UTF-8".into()))?;
        return Ok(Some(text.to_string()));
    }
    Ok(None)
}

/// A trusted root and the identity it must vouch for.
#[derive(Debug, Clone)]
pub struct Keyless {
    /// Fulcio CAs, Rekor and CT logs.
    pub root: TrustedRoot,
    /// Who must have signed.
    pub identity: Identity,
}

fn at(seconds: i64) -> Result<OffsetDateTime, Reason> {
    OffsetDateTime::from_unix_timestamp(seconds)
        .map_err(|_| Reason::Transparency(format!("integrated time {seconds} is out of range")))
}

impl Keyless {
    /// Checks 2 to 6 for a signature whose payload signature already verified with
    /// `material`'s leaf key: `signed` is what the log entry must record.
    pub fn check(
        &self,
        material: &Material,
        entries: &[Entry],
        signed: Signed<'_>,
    ) -> Result<Outcome, Reason> {
        let mut checks = Vec::new();
        let time = self.logged(material, entries, signed, &mut checks)?;
        let leaf = &material.leaf;
        leaf.check_valid_at(time).map_err(|e| {
            Reason::Expired(format!(
                "{e}; the signature was logged at {}",
                x509::rfc3339(time)
            ))
        })?;
        checks.push(format!(
            "certificate valid at the log's integrated time {}",
            x509::rfc3339(time)
        ));
        let authority = self.chain(material, time)?;
        checks.push(format!("certificate chain to the Fulcio CA {authority}"));
        let identity = self.identity_of(leaf)?;
        checks.push("certificate identity and OIDC issuer".into());
        let mut skipped = Vec::new();
        match sct::verify_embedded(material, &self.root, time) {
            Ok(log) => checks.push(format!("embedded SCT of CT log {log}")),
            Err(sct::Failure::Invalid(reason)) => return Err(reason),
            Err(sct::Failure::NotChecked(why)) => skipped.push(format!("embedded SCT: {why}")),
        }
        Ok(Outcome {
            identity,
            checks,
            skipped,
        })
    }

    /// Find a log entry that proves the signature: returns its integrated time.
    fn logged(
        &self,
        material: &Material,
        entries: &[Entry],
        signed: Signed<'_>,
        checks: &mut Vec<String>,
    ) -> Result<OffsetDateTime, Reason> {
        let mut last = Reason::Transparency(
            "the signature has no Rekor entry (a keyless signature needs one: a bundle's \
             tlogEntries or a .sig layer's dev.sigstore.cosign/bundle annotation)"
                .into(),
        );
        for entry in entries {
            let mut proven = Vec::new();
            match self.prove(entry, &mut proven).and_then(|()| {
                rekor::check_body(&entry.body, signed, Signer::Certificate(&material.leaf))
            }) {
                Ok(()) => {
                    checks.extend(proven);
                    checks.push("Rekor entry records this signature and certificate".into());
                    return at(entry.integrated_time);
                }
                Err(reason) => last = reason,
            }
        }
        Err(last)
    }

    /// The entry is in a trusted log: its SET (required: it signs the integrated time), and its
    /// inclusion proof and checkpoint when there are some.
    fn prove(&self, entry: &Entry, proven: &mut Vec<String>) -> Result<(), Reason> {
        let fail = |text: String| Reason::Transparency(text);
        let Some(log) = self.root.tlog(&entry.log_id) else {
            return Err(fail(format!(
                "the entry is in log {}, which the trusted root {} does not name",
                hex::encode(&entry.log_id),
                self.root.origin
            )));
        };
        let key = log
            .key
            .as_ref()
            .map_err(|e| fail(format!("the key of log {}: {e}", log.name)))?;
        let time = at(entry.integrated_time)?;
        if !log.valid.contains(time) {
            return Err(fail(format!(
                "log {} is not trusted at the entry's integrated time {}",
                log.name,
                x509::rfc3339(time)
            )));
        }
        // Only the SET signs the integrated time, and the certificate is judged at that time:
        // an inclusion proof shows the entry is in the log, not when it got there (a time
        // from an RFC 3161 timestamp authority, the other source, is not verified here).
        if entry.set.is_none() {
            return Err(fail(
                "the entry has no signed entry timestamp (SET), so nothing the log signed vouches \
                 for its integrated time (an inclusion proof shows the entry is in the log, not \
                 when; RFC 3161 timestamps are not verified by acrpull)"
                    .into(),
            ));
        }
        if !entry.set_verifies(key) {
            return Err(fail(format!(
                "the signed entry timestamp (SET) does not verify with the key of log {}",
                log.name
            )));
        }
        proven.push(format!(
            "Rekor signed entry timestamp (log {}, index {})",
            log.name, entry.log_index
        ));
        if let Some(proof) = &entry.proof {
            let invalid = |why: String| fail(format!("the inclusion proof is invalid: {why}"));
            let hashes: Vec<merkle::Hash> = proof
                .hashes
                .iter()
                .map(|h| merkle::Hash::try_from(h.as_slice()))
                .collect::<Result<_, _>>()
                .map_err(|_| invalid("a hash of the audit path is not 32 bytes".into()))?;
            let root = merkle::Hash::try_from(proof.root.as_slice())
                .map_err(|_| invalid("the root hash is not 32 bytes".into()))?;
            let leaf = merkle::leaf_hash(&entry.body);
            merkle::verify_inclusion(proof.index, proof.size, &leaf, &hashes, &root)
                .map_err(invalid)?;
            // Without a checkpoint nothing signed commits to the root: the SET alone vouches.
            let Some(envelope) = &proof.checkpoint else {
                return Ok(());
            };
            let checkpoint = merkle::verify_checkpoint(envelope, key, &entry.log_id)
                .map_err(|e| invalid(format!("checkpoint: {e}")))?;
            if checkpoint.root != root || checkpoint.size != proof.size {
                return Err(invalid(format!(
                    "the checkpoint commits to tree size {} root {}, the proof to size {} root {}",
                    checkpoint.size,
                    hex::encode(checkpoint.root),
                    proof.size,
                    hex::encode(root)
                )));
            }
            proven.push(format!(
                "Rekor inclusion proof to a signed checkpoint (tree size {})",
                proof.size
            ));
        }
        Ok(())
    }

    /// The leaf chains to a Fulcio CA trusted at `time`: returns the CA's name.
    fn chain(&self, material: &Material, time: OffsetDateTime) -> Result<String, Reason> {
        let mut last = format!(
            "no certificate authority of the trusted root {} is valid at {}",
            self.root.origin,
            x509::rfc3339(time)
        );
        for authority in &self.root.authorities {
            if !authority.valid.contains(time) {
                continue;
            }
            let mut intermediates = authority.intermediates.clone();
            intermediates.extend(material.chain.iter().cloned());
            let options = ChainOptions {
                purpose: Purpose::SigstoreCodeSigning,
                at: Some(time),
            };
            match x509::build_chain(
                &material.leaf,
                &intermediates,
                std::slice::from_ref(&authority.root),
                &options,
            ) {
                Ok(_) => return Ok(authority.name.clone()),
                Err(e) => last = e.to_string(),
            }
        }
        Err(Reason::UntrustedChain(last))
    }

    /// The leaf's SAN and issuer, if they match the identity asked for.
    fn identity_of(&self, leaf: &Certificate) -> Result<SignerIdentity, Reason> {
        let sans = sans(leaf);
        let issuer = oidc_issuer(leaf)?;
        let found = || {
            format!(
                "SAN {} with OIDC issuer {}",
                if sans.is_empty() {
                    "(none)".to_string()
                } else {
                    sans.join(", ")
                },
                issuer.as_deref().unwrap_or("(none)")
            )
        };
        let emails_only = matches!(self.identity.subject, Matcher::Email(_));
        let candidates = leaf.subject_alt_names().iter().filter_map(|san| match san {
            SubjectAltNameEntry::Email(s) => Some(s),
            SubjectAltNameEntry::Uri(s) | SubjectAltNameEntry::Dns(s) if !emails_only => Some(s),
            _ => None,
        });
        let Some(subject) = candidates
            .into_iter()
            .find(|s| self.identity.subject.matches(s))
        else {
            return Err(Reason::IdentityMismatch {
                expected: format!("certificate identity {}", self.identity.subject),
                found: found(),
            });
        };
        match &issuer {
            Some(issuer) if self.identity.issuer.matches(issuer) => Ok(SignerIdentity {
                subject: subject.clone(),
                issuer: issuer.clone(),
            }),
            _ => Err(Reason::IdentityMismatch {
                expected: format!("OIDC issuer {}", self.identity.issuer),
                found: found(),
            }),
        }
    }
}

#[cfg(test)]
mod tests;
