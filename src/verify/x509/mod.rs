//! X.509 certificates for signature verification: parse (DER or PEM), read the parts trust
//! decisions need (subject, validity, key usages, subject alternative names, any extension by
//! OID), verify signatures made with a certificate's key (RSA PKCS#1 v1.5 and PSS, ECDSA
//! P-256/384/521), and validate a chain to a trusted root for a [`Purpose`].
//!
//! Two ways to validate, because the two signature systems hand us chains differently:
//! - [`validate_ordered_chain`]: the signer sent the whole chain, leaf first and ending in a
//!   self-signed root (Notary Project signatures); every link, the root's self-signature and
//!   the purpose's rules are checked, and trust is decided by the caller (is one of these
//!   certificates in the trust store?).
//! - [`build_chain`]: a leaf and a pool of intermediates are to be connected to one of a set of
//!   trusted roots (RFC 3161 timestamp tokens, Fulcio certificates); the path is searched,
//!   bounded in depth and candidates.
//!
//! Everything here is pure: times are given by the caller, nothing reads the clock, the
//! environment or the network. Unknown critical extensions make a certificate unusable
//! (RFC 5280 section 4.2); only basicConstraints, keyUsage, extendedKeyUsage and
//! subjectAltName are understood.

mod chain;
mod key;

pub use chain::{build_chain, validate_ordered_chain, ChainOptions, Purpose};
pub use key::{notary_algorithm_for, Hash, PublicKey, SignatureAlgorithm};

use std::fmt;

use const_oid::db::rfc5280 as oids;
use const_oid::ObjectIdentifier;
use der::{Decode, Encode, Tagged as _};
use sha2::{Digest as _, Sha256};
use time::OffsetDateTime;
use x509_cert::ext::pkix::name::GeneralName;
use x509_cert::ext::pkix::{BasicConstraints, ExtendedKeyUsage, KeyUsage, SubjectAltName};

/// The OID of `anyExtendedKeyUsage` (RFC 5280 4.2.1.12).
pub const ANY_EXTENDED_KEY_USAGE: ObjectIdentifier = oids::ANY_EXTENDED_KEY_USAGE;
/// `id-kp-codeSigning`.
pub const CODE_SIGNING: ObjectIdentifier = oids::ID_KP_CODE_SIGNING;
/// `id-kp-timeStamping`.
pub const TIME_STAMPING: ObjectIdentifier = oids::ID_KP_TIME_STAMPING;

/// Certificates in one chain at most (leaf, intermediates, root): more is not a real PKI.
pub const MAX_CHAIN_LENGTH: usize = 10;

/// Why a certificate or a chain was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The bytes are not a certificate acrpull can read.
    #[error("not a valid X.509 certificate: {0}")]
    Malformed(String),
    /// A certificate breaks a rule of its purpose (key usage, basic constraints, EKU, key).
    #[error("certificate `{subject}`: {reason}")]
    Requirement {
        /// The certificate's subject.
        subject: String,
        /// The rule broken.
        reason: String,
    },
    /// A certificate is not valid at the time asked about.
    #[error("certificate `{subject}` is not valid at {at}: it is valid from {not_before} to {not_after}")]
    Expired {
        /// The certificate's subject.
        subject: String,
        /// The time checked.
        at: String,
        /// Its validity start.
        not_before: String,
        /// Its validity end.
        not_after: String,
    },
    /// A link of the chain is broken (issuer name or signature).
    #[error("certificate `{subject}` is not issued by `{issuer}`: {reason}")]
    Link {
        /// The certificate.
        subject: String,
        /// The certificate that should have issued it.
        issuer: String,
        /// What failed.
        reason: String,
    },
    /// No path from the leaf to a trusted root.
    #[error("the certificate chain of `{subject}` does not lead to a trusted root ({reason})")]
    Untrusted {
        /// The leaf's subject.
        subject: String,
        /// What was tried.
        reason: String,
    },
    /// A key type, curve, size or signature algorithm outside the supported set.
    #[error("unsupported: {0}")]
    Unsupported(String),
    /// The signature does not verify with the key.
    #[error("the signature does not verify with the key of `{0}`")]
    BadSignature(String),
}

/// Result alias for this module.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// One attribute of a distinguished name: its short name (`CN`, `O`, `ST`, ..., or the
/// dotted OID) and its value as text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NameAttribute {
    /// `C`, `ST`, `L`, `O`, `OU`, `CN`, ... or the OID.
    pub kind: String,
    /// The value.
    pub value: String,
    /// Whether this attribute shares its RDN with others (`A=1+B=2`).
    pub multi_valued: bool,
}

/// The attributes of a name, in certificate order (most significant first).
fn name_attributes(name: &x509_cert::name::Name) -> Vec<NameAttribute> {
    let mut out = Vec::new();
    for rdn in name.0.iter() {
        let multi_valued = rdn.0.len() > 1;
        for atv in rdn.0.iter() {
            let kind = match atv.oid.to_string().as_str() {
                "2.5.4.6" => "C".to_string(),
                "2.5.4.8" => "ST".to_string(),
                "2.5.4.7" => "L".to_string(),
                "2.5.4.10" => "O".to_string(),
                "2.5.4.11" => "OU".to_string(),
                "2.5.4.3" => "CN".to_string(),
                "2.5.4.5" => "SERIALNUMBER".to_string(),
                "2.5.4.9" => "STREET".to_string(),
                "2.5.4.17" => "POSTALCODE".to_string(),
                "0.9.2342.19200300.100.1.25" => "DC".to_string(),
                "1.2.840.113549.1.9.1" => "EMAILADDRESS".to_string(),
                other => other.to_string(),
            };
            out.push(NameAttribute {
                kind,
                value: attribute_text(&atv.value),
                multi_valued,
            });
        }
    }
    out
}

/// The text of a directory string (Printable, UTF-8, IA5, Teletex as Latin-1, BMP).
fn attribute_text(value: &der::Any) -> String {
    let bytes = value.value();
    match value.tag() {
        der::Tag::BmpString => {
            let units: Vec<u16> = bytes
                .chunks_exact(2)
                .map(|c| u16::from_be_bytes([c[0], c[1]]))
                .collect();
            String::from_utf16_lossy(&units)
        }
        der::Tag::TeletexString => bytes.iter().map(|&b| b as char).collect(),
        _ => String::from_utf8_lossy(bytes).into_owned(),
    }
}

/// The parts of a certificate's extensions that trust decisions read.
#[derive(Debug, Clone, Default)]
struct Extensions {
    /// (critical, ca, pathLenConstraint)
    basic_constraints: Option<(bool, bool, Option<u8>)>,
    /// (critical, usages)
    key_usage: Option<(bool, KeyUsage)>,
    /// (critical, purposes)
    extended_key_usage: Option<(bool, Vec<ObjectIdentifier>)>,
    subject_alt_names: Vec<SubjectAltNameEntry>,
    unknown_critical: Vec<ObjectIdentifier>,
}

/// One subject alternative name acrpull understands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SubjectAltNameEntry {
    /// `rfc822Name` (an email address).
    Email(String),
    /// `dNSName`.
    Dns(String),
    /// `uniformResourceIdentifier`.
    Uri(String),
    /// Another kind (only its presence is recorded).
    Other,
}

/// A parsed certificate, with its exact DER bytes.
#[derive(Clone)]
pub struct Certificate {
    der: Vec<u8>,
    tbs: std::ops::Range<usize>,
    inner: x509_cert::Certificate,
    subject: Vec<NameAttribute>,
    subject_text: String,
    issuer_text: String,
    not_before: OffsetDateTime,
    not_after: OffsetDateTime,
    extensions: Extensions,
}

impl fmt::Debug for Certificate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Certificate")
            .field("subject", &self.subject_text)
            .field("issuer", &self.issuer_text)
            .field("not_before", &self.not_before)
            .field("not_after", &self.not_after)
            .finish()
    }
}

impl PartialEq for Certificate {
    fn eq(&self, other: &Self) -> bool {
        self.der == other.der
    }
}

impl Eq for Certificate {}

impl Certificate {
    /// Parse one DER certificate (exactly: no trailing bytes).
    pub fn from_der(der: &[u8]) -> Result<Certificate> {
        let inner =
            x509_cert::Certificate::from_der(der).map_err(|e| Error::Malformed(e.to_string()))?;
        let tbs = tbs_range(der)?;
        let subject = name_attributes(&inner.tbs_certificate.subject);
        let subject_text = inner.tbs_certificate.subject.to_string();
        let issuer_text = inner.tbs_certificate.issuer.to_string();
        let validity = &inner.tbs_certificate.validity;
        let time = |t: x509_cert::time::Time| {
            OffsetDateTime::from_unix_timestamp(t.to_unix_duration().as_secs() as i64)
                .map_err(|e| Error::Malformed(format!("validity: {e}")))
        };
        let not_before = time(validity.not_before)?;
        let not_after = time(validity.not_after)?;
        let extensions = read_extensions(&inner)?;
        Ok(Certificate {
            der: der.to_vec(),
            tbs,
            inner,
            subject,
            subject_text,
            issuer_text,
            not_before,
            not_after,
            extensions,
        })
    }

    /// Every certificate in `bytes`: PEM (`CERTIFICATE` blocks, other blocks ignored) or one
    /// DER certificate.
    pub fn parse_many(bytes: &[u8]) -> Result<Vec<Certificate>> {
        let text = std::str::from_utf8(bytes).ok();
        match text.filter(|t| t.contains("-----BEGIN")) {
            Some(text) => {
                let mut out = Vec::new();
                let mut rest = text;
                while let Some(start) = rest.find("-----BEGIN ") {
                    let block = &rest[start..];
                    let label_end = block[11..]
                        .find("-----")
                        .ok_or_else(|| Error::Malformed("unterminated PEM header".into()))?;
                    let label = &block[11..11 + label_end];
                    let end_marker = format!("-----END {label}-----");
                    let end = block
                        .find(&end_marker)
                        .ok_or_else(|| Error::Malformed(format!("no `{end_marker}`")))?;
                    let body = &block[11 + label_end + 5..end];
                    if label == "CERTIFICATE" {
                        use base64::Engine as _;
                        let clean: String =
                            body.chars().filter(|c| !c.is_ascii_whitespace()).collect();
                        let der = base64::engine::general_purpose::STANDARD
                            .decode(clean)
                            .map_err(|e| Error::Malformed(format!("PEM base64: {e}")))?;
                        out.push(Certificate::from_der(&der)?);
                    }
                    rest = &block[end + end_marker.len()..];
                }
                Ok(out)
            }
            None => Ok(vec![Certificate::from_der(bytes)?]),
        }
    }

    /// The exact DER bytes.
    pub fn der(&self) -> &[u8] {
        &self.der
    }

    /// The SHA-256 of the DER bytes, lowercase hex (Notation's thumbprint).
    pub fn sha256_fingerprint(&self) -> String {
        hex::encode(Sha256::digest(&self.der))
    }

    /// The subject as RFC 4514 text.
    pub fn subject(&self) -> &str {
        &self.subject_text
    }

    /// The issuer as RFC 4514 text.
    pub fn issuer(&self) -> &str {
        &self.issuer_text
    }

    /// The subject's attributes, most significant first.
    pub fn subject_attributes(&self) -> &[NameAttribute] {
        &self.subject
    }

    /// Start of validity.
    pub fn not_before(&self) -> OffsetDateTime {
        self.not_before
    }

    /// End of validity.
    pub fn not_after(&self) -> OffsetDateTime {
        self.not_after
    }

    /// Whether `at` is within the validity period (both ends included, as RFC 5280 says).
    pub fn valid_at(&self, at: OffsetDateTime) -> bool {
        self.not_before <= at && at <= self.not_after
    }

    /// [`Error::Expired`] unless valid at `at`.
    pub fn check_valid_at(&self, at: OffsetDateTime) -> Result<()> {
        if self.valid_at(at) {
            return Ok(());
        }
        Err(Error::Expired {
            subject: self.subject_text.clone(),
            at: rfc3339(at),
            not_before: rfc3339(self.not_before),
            not_after: rfc3339(self.not_after),
        })
    }

    /// The public key.
    pub fn public_key(&self) -> Result<PublicKey> {
        PublicKey::from_spki(&self.inner.tbs_certificate.subject_public_key_info)
    }

    /// The serial number's bytes (big-endian, as encoded).
    pub fn serial(&self) -> &[u8] {
        self.inner.tbs_certificate.serial_number.as_bytes()
    }

    /// The issuer name's DER encoding (to match CMS `IssuerAndSerialNumber`).
    pub fn issuer_der(&self) -> Vec<u8> {
        self.inner
            .tbs_certificate
            .issuer
            .to_der()
            .unwrap_or_default()
    }

    /// Whether the certificate is a CA (basicConstraints `cA` true).
    pub fn is_ca(&self) -> bool {
        matches!(self.extensions.basic_constraints, Some((_, true, _)))
    }

    /// The extended key usages, when the extension is present.
    pub fn extended_key_usage(&self) -> Option<&[ObjectIdentifier]> {
        self.extensions
            .extended_key_usage
            .as_ref()
            .map(|(_, v)| v.as_slice())
    }

    /// The subject alternative names.
    pub fn subject_alt_names(&self) -> &[SubjectAltNameEntry] {
        &self.extensions.subject_alt_names
    }

    /// The raw value (the OCTET STRING's content) and criticality of the extension `oid`.
    pub fn extension(&self, oid: &ObjectIdentifier) -> Option<(bool, &[u8])> {
        self.inner
            .tbs_certificate
            .extensions
            .as_ref()?
            .iter()
            .find(|e| &e.extn_id == oid)
            .map(|e| (e.critical, e.extn_value.as_bytes()))
    }

    /// Whether the subject and issuer names are the same bytes.
    pub fn self_issued(&self) -> bool {
        self.inner.tbs_certificate.subject == self.inner.tbs_certificate.issuer
    }

    /// Check that `issuer` issued this certificate: the names chain and `issuer`'s key
    /// verifies this certificate's signature.
    pub fn check_issued_by(&self, issuer: &Certificate) -> Result<()> {
        let link = |reason: String| Error::Link {
            subject: self.subject_text.clone(),
            issuer: issuer.subject_text.clone(),
            reason,
        };
        if self.inner.tbs_certificate.issuer != issuer.inner.tbs_certificate.subject {
            return Err(link(format!("its issuer name is `{}`", self.issuer_text)));
        }
        let algorithm =
            SignatureAlgorithm::from_algorithm_identifier(&self.inner.signature_algorithm)?;
        let signature = self
            .inner
            .signature
            .as_bytes()
            .ok_or_else(|| link("the signature bit string has unused bits".into()))?;
        issuer
            .public_key()?
            .verify(algorithm, &self.der[self.tbs.clone()], signature)
            .map_err(|e| link(format!("the signature does not verify ({e})")))
    }

    fn requirement(&self, reason: impl Into<String>) -> Error {
        Error::Requirement {
            subject: self.subject_text.clone(),
            reason: reason.into(),
        }
    }
}

/// The byte range of `tbsCertificate` inside a certificate's DER.
fn tbs_range(der: &[u8]) -> Result<std::ops::Range<usize>> {
    let (outer_header, _) = tlv_header(der, 0)?;
    let (inner_header, inner_len) = tlv_header(der, outer_header)?;
    let end = outer_header + inner_header + inner_len;
    if end > der.len() {
        return Err(Error::Malformed("truncated tbsCertificate".into()));
    }
    Ok(outer_header..end)
}

/// The header length and content length of the DER element at `at`.
pub(crate) fn tlv_header(bytes: &[u8], at: usize) -> Result<(usize, usize)> {
    let bad = || Error::Malformed("truncated DER element".into());
    let first = *bytes.get(at + 1).ok_or_else(bad)?;
    if first < 0x80 {
        return Ok((2, first as usize));
    }
    let count = (first & 0x7f) as usize;
    if count == 0 || count > 4 {
        return Err(Error::Malformed("unsupported DER length".into()));
    }
    let mut len = 0usize;
    for i in 0..count {
        len = (len << 8) | *bytes.get(at + 2 + i).ok_or_else(bad)? as usize;
    }
    Ok((2 + count, len))
}

fn read_extensions(cert: &x509_cert::Certificate) -> Result<Extensions> {
    let mut out = Extensions::default();
    let Some(extensions) = &cert.tbs_certificate.extensions else {
        return Ok(out);
    };
    let subject = cert.tbs_certificate.subject.to_string();
    let malformed =
        |what: &str, e: der::Error| Error::Malformed(format!("`{subject}`: {what} extension: {e}"));
    let mut seen = std::collections::HashSet::new();
    for extension in extensions {
        if !seen.insert(extension.extn_id) {
            return Err(Error::Malformed(format!(
                "`{subject}`: extension {} appears twice",
                extension.extn_id
            )));
        }
        let value = extension.extn_value.as_bytes();
        match extension.extn_id {
            oids::ID_CE_BASIC_CONSTRAINTS => {
                let bc = BasicConstraints::from_der(value)
                    .map_err(|e| malformed("basicConstraints", e))?;
                out.basic_constraints = Some((extension.critical, bc.ca, bc.path_len_constraint));
            }
            oids::ID_CE_KEY_USAGE => {
                let ku = KeyUsage::from_der(value).map_err(|e| malformed("keyUsage", e))?;
                out.key_usage = Some((extension.critical, ku));
            }
            oids::ID_CE_EXT_KEY_USAGE => {
                let eku = ExtendedKeyUsage::from_der(value)
                    .map_err(|e| malformed("extendedKeyUsage", e))?;
                out.extended_key_usage = Some((extension.critical, eku.0));
            }
            oids::ID_CE_SUBJECT_ALT_NAME => {
                let san =
                    SubjectAltName::from_der(value).map_err(|e| malformed("subjectAltName", e))?;
                out.subject_alt_names = san
                    .0
                    .into_iter()
                    .map(|name| match name {
                        GeneralName::Rfc822Name(s) => SubjectAltNameEntry::Email(s.to_string()),
                        GeneralName::DnsName(s) => SubjectAltNameEntry::Dns(s.to_string()),
                        GeneralName::UniformResourceIdentifier(s) => {
                            SubjectAltNameEntry::Uri(s.to_string())
                        }
                        _ => SubjectAltNameEntry::Other,
                    })
                    .collect();
            }
            other if extension.critical => out.unknown_critical.push(other),
            _ => {}
        }
    }
    Ok(out)
}

/// RFC 3339 text of a time, UTC, to the second.
pub fn rfc3339(at: OffsetDateTime) -> String {
    let at = at.to_offset(time::UtcOffset::UTC);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z",
        at.year(),
        u8::from(at.month()),
        at.day(),
        at.hour(),
        at.minute(),
        at.second()
    )
}
