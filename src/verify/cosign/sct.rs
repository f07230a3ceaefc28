//! Embedded signed certificate timestamps (RFC 6962 section 3): Fulcio logs each certificate
//! it issues to a certificate transparency log before issuing it, and embeds the log's
//! promise (the SCT) in the certificate. cosign refuses a keyless certificate without a valid
//! one (unless told `--insecure-ignore-sct`); acrpull does the same whenever the trusted root
//! names CT logs. The SCT signs the *precertificate*: the certificate's TBS without the SCT
//! list extension (and without the poison extension the precertificate had), with the
//! SHA-256 of the issuer's public key.

use der::Decode as _;
use sha2::Digest as _;
use time::OffsetDateTime;

use super::keyless::Material;
use super::trusted_root::TrustedRoot;
use crate::verify::x509::Certificate;
use crate::verify::Reason;

/// The embedded SCT list extension.
pub const SCT_LIST: const_oid::ObjectIdentifier =
    const_oid::ObjectIdentifier::new_unwrap("1.3.6.1.4.1.11129.2.4.2");

/// A certificate's DER SubjectPublicKeyInfo (the key a log, an SCT or a Rekor entry names).
pub fn spki_der(cert: &Certificate) -> Vec<u8> {
    use der::Encode as _;
    x509_cert::Certificate::from_der(cert.der())
        .ok()
        .and_then(|c| c.tbs_certificate.subject_public_key_info.to_der().ok())
        .unwrap_or_default()
}

/// The precertificate's TBS: the certificate's `tbsCertificate` without the SCT list (the
/// poison extension of the precertificate is not in the final certificate).
pub fn precertificate_tbs(cert: &Certificate) -> Result<Vec<u8>, String> {
    use der::Encode as _;
    let mut tbs = x509_cert::Certificate::from_der(cert.der())
        .map_err(|e| e.to_string())?
        .tbs_certificate;
    if let Some(extensions) = tbs.extensions.as_mut() {
        extensions.retain(|e| e.extn_id != SCT_LIST);
    }
    tbs.to_der()
        .map_err(|e| format!("re-encoding the tbsCertificate: {e}"))
}

/// Why no SCT was accepted.
#[derive(Debug)]
pub enum Failure {
    /// The check failed: the signature is rejected.
    Invalid(Reason),
    /// The check could not be made (no CT log in the trusted root).
    NotChecked(String),
}

/// One parsed SCT (v1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sct {
    /// The CT log's ID (SHA-256 of its key).
    pub log_id: [u8; 32],
    /// Milliseconds since the Unix epoch.
    pub timestamp: u64,
    /// CT extensions (opaque).
    pub extensions: Vec<u8>,
    /// The signature (DER ECDSA or RSA).
    pub signature: Vec<u8>,
}

fn invalid(text: impl Into<String>) -> Failure {
    Failure::Invalid(Reason::Transparency(format!(
        "certificate transparency: {}",
        text.into()
    )))
}

/// A TLS-style reader over bytes.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.0.len() < n {
            return None;
        }
        let (head, tail) = self.0.split_at(n);
        self.0 = tail;
        Some(head)
    }

    fn uint(&mut self, n: usize) -> Option<u64> {
        Some(
            self.take(n)?
                .iter()
                .fold(0u64, |acc, b| (acc << 8) | u64::from(*b)),
        )
    }

    fn vector(&mut self, len_bytes: usize) -> Option<&'a [u8]> {
        let len = self.uint(len_bytes)? as usize;
        self.take(len)
    }
}

/// Parse the SCT list extension's value (a DER OCTET STRING around the TLS list).
pub fn parse_list(value: &[u8]) -> Result<Vec<Sct>, String> {
    let inner = der::asn1::OctetStringRef::from_der(value)
        .map_err(|e| format!("the SCT list is not an OCTET STRING: {e}"))?;
    let mut list = Reader(inner.as_bytes());
    let bad = || "the SCT list is truncated".to_string();
    let mut entries = Reader(list.vector(2).ok_or_else(bad)?);
    let mut out = Vec::new();
    while !entries.0.is_empty() {
        let mut sct = Reader(entries.vector(2).ok_or_else(bad)?);
        let version = sct.uint(1).ok_or_else(bad)?;
        if version != 0 {
            continue; // Only v1 SCTs are defined for X.509.
        }
        let log_id: [u8; 32] = sct
            .take(32)
            .ok_or_else(bad)?
            .try_into()
            .map_err(|_| bad())?;
        let timestamp = sct.uint(8).ok_or_else(bad)?;
        let extensions = sct.vector(2).ok_or_else(bad)?.to_vec();
        let _algorithms = sct.take(2).ok_or_else(bad)?;
        let signature = sct.vector(2).ok_or_else(bad)?.to_vec();
        out.push(Sct {
            log_id,
            timestamp,
            extensions,
            signature,
        });
    }
    Ok(out)
}

/// The bytes an SCT over a precertificate signs.
pub fn signed_data(sct: &Sct, issuer_key_hash: &[u8; 32], precert_tbs: &[u8]) -> Vec<u8> {
    let mut out = vec![0u8, 0u8]; // v1, certificate_timestamp
    out.extend_from_slice(&sct.timestamp.to_be_bytes());
    out.extend_from_slice(&1u16.to_be_bytes()); // precert_entry
    out.extend_from_slice(issuer_key_hash);
    out.extend_from_slice(&(precert_tbs.len() as u32).to_be_bytes()[1..]);
    out.extend_from_slice(precert_tbs);
    out.extend_from_slice(&(sct.extensions.len() as u16).to_be_bytes());
    out.extend_from_slice(&sct.extensions);
    out
}

/// The certificate that issued `leaf`: from the material's chain or the trusted root.
fn issuer_of<'a>(
    leaf: &Certificate,
    material: &'a Material,
    root: &'a TrustedRoot,
) -> Option<&'a Certificate> {
    let authorities = root
        .authorities
        .iter()
        .flat_map(|a| a.intermediates.iter().chain(std::iter::once(&a.root)));
    material
        .chain
        .iter()
        .chain(authorities)
        .find(|candidate| leaf.check_issued_by(candidate).is_ok())
}

/// Verify one of the leaf's embedded SCTs with a CT log of `root`; returns the log's name.
pub fn verify_embedded(
    material: &Material,
    root: &TrustedRoot,
    _logged: OffsetDateTime,
) -> Result<String, Failure> {
    if root.ctlogs.is_empty() {
        return Err(Failure::NotChecked(format!(
            "the trusted root {} names no certificate transparency log",
            root.origin
        )));
    }
    let leaf = &material.leaf;
    let Some((_, value)) = leaf.extension(&SCT_LIST) else {
        return Err(invalid("the certificate carries no embedded SCT"));
    };
    let scts = parse_list(value).map_err(invalid)?;
    let issuer = issuer_of(leaf, material, root).ok_or_else(|| {
        invalid("the certificate's issuer is not known, so its SCT cannot be checked")
    })?;
    let issuer_key_hash: [u8; 32] = sha2::Sha256::digest(spki_der(issuer)).into();
    let tbs = precertificate_tbs(leaf).map_err(invalid)?;
    let mut last = "none of its SCTs names a CT log of the trusted root".to_string();
    for sct in &scts {
        let Some(log) = root.ctlogs.iter().find(|l| l.log_id == sct.log_id) else {
            continue;
        };
        let Ok(key) = &log.key else {
            last = format!("the key of CT log {} cannot be used", log.name);
            continue;
        };
        let when = OffsetDateTime::from_unix_timestamp((sct.timestamp / 1000) as i64)
            .map_err(|_| invalid("an SCT timestamp is out of range"))?;
        if !log.valid.contains(when) {
            last = format!("CT log {} is not trusted at the SCT's time", log.name);
            continue;
        }
        let message = signed_data(sct, &issuer_key_hash, &tbs);
        match key.verify(&message, &sct.signature, key.default_hash()) {
            Ok(()) => return Ok(log.name.clone()),
            Err(_) => {
                last = format!(
                    "the SCT does not verify with the key of CT log {}",
                    log.name
                )
            }
        }
    }
    Err(invalid(last))
}
