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

use std::fmt;

use const_oid::db::rfc5280 as oids;
use const_oid::ObjectIdentifier;
use der::{Decode, Encode, Tagged as _};
use sha2::{Digest as _, Sha256, Sha384, Sha512};
use time::OffsetDateTime;
use x509_cert::ext::pkix::name::GeneralName;
use x509_cert::ext::pkix::{BasicConstraints, ExtendedKeyUsage, KeyUsage, SubjectAltName};

/// The OID of `anyExtendedKeyUsage` (RFC 5280 4.2.1.12).
pub const ANY_EXTENDED_KEY_USAGE: ObjectIdentifier = oids::ANY_EXTENDED_KEY_USAGE;
/// `id-kp-codeSigning`.
pub const CODE_SIGNING: ObjectIdentifier = oids::ID_KP_CODE_SIGNING;
/// `id-kp-timeStamping`.
pub const TIME_STAMPING: ObjectIdentifier = oids::ID_KP_TIME_STAMPING;

const RSA_ENCRYPTION: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.1");
const RSASSA_PSS: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.10");
const SHA256_WITH_RSA: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.11");
const SHA384_WITH_RSA: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.12");
const SHA512_WITH_RSA: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.13");
const EC_PUBLIC_KEY: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.2.1");
const ECDSA_SHA256: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.4.3.2");
const ECDSA_SHA384: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.4.3.3");
const ECDSA_SHA512: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.4.3.4");
const SECP256R1: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.3.1.7");
const SECP384R1: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.132.0.34");
const SECP521R1: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.132.0.35");
const ID_SHA256: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.16.840.1.101.3.4.2.1");
const ID_SHA384: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.16.840.1.101.3.4.2.2");
const ID_SHA512: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.16.840.1.101.3.4.2.3");
const ID_MGF1: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.8");

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

/// A hash function of a signature algorithm.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hash {
    /// SHA-256.
    Sha256,
    /// SHA-384.
    Sha384,
    /// SHA-512.
    Sha512,
}

impl Hash {
    /// The digest of `data`.
    pub fn digest(self, data: &[u8]) -> Vec<u8> {
        match self {
            Hash::Sha256 => Sha256::digest(data).to_vec(),
            Hash::Sha384 => Sha384::digest(data).to_vec(),
            Hash::Sha512 => Sha512::digest(data).to_vec(),
        }
    }

    /// The hash named by a digest-algorithm OID (`id-sha256`, ...).
    pub fn from_oid(oid: &ObjectIdentifier) -> Option<Hash> {
        match *oid {
            ID_SHA256 => Some(Hash::Sha256),
            ID_SHA384 => Some(Hash::Sha384),
            ID_SHA512 => Some(Hash::Sha512),
            _ => None,
        }
    }

    fn len(self) -> usize {
        match self {
            Hash::Sha256 => 32,
            Hash::Sha384 => 48,
            Hash::Sha512 => 64,
        }
    }
}

/// A signature algorithm: the padding or curve family with its hash, and for ECDSA how the
/// signature is encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignatureAlgorithm {
    /// RSASSA-PKCS1-v1_5.
    RsaPkcs1(Hash),
    /// RSASSA-PSS with MGF1 of the same hash and this salt length.
    RsaPss {
        /// The message hash (and MGF1 hash).
        hash: Hash,
        /// The salt length in bytes.
        salt: usize,
    },
    /// ECDSA, the signature DER-encoded (`Ecdsa-Sig-Value`, X.509 and CMS).
    EcdsaDer(Hash),
    /// ECDSA, the signature as fixed-size `r || s` (JWS and COSE).
    EcdsaFixed(Hash),
}

impl SignatureAlgorithm {
    /// The algorithm an X.509 or CMS `AlgorithmIdentifier` names (SHA-1 and MD5 are refused).
    pub fn from_algorithm_identifier(
        algorithm: &spki::AlgorithmIdentifierOwned,
    ) -> Result<SignatureAlgorithm> {
        Ok(match algorithm.oid {
            SHA256_WITH_RSA => SignatureAlgorithm::RsaPkcs1(Hash::Sha256),
            SHA384_WITH_RSA => SignatureAlgorithm::RsaPkcs1(Hash::Sha384),
            SHA512_WITH_RSA => SignatureAlgorithm::RsaPkcs1(Hash::Sha512),
            ECDSA_SHA256 => SignatureAlgorithm::EcdsaDer(Hash::Sha256),
            ECDSA_SHA384 => SignatureAlgorithm::EcdsaDer(Hash::Sha384),
            ECDSA_SHA512 => SignatureAlgorithm::EcdsaDer(Hash::Sha512),
            RSASSA_PSS => pss_parameters(algorithm)?,
            other => {
                return Err(Error::Unsupported(format!(
                    "signature algorithm {other} (SHA-1 and MD5 signatures are not accepted)"
                )))
            }
        })
    }
}

/// RSASSA-PSS-params (RFC 4055): the hash, MGF1 with the same hash, the salt length.
fn pss_parameters(algorithm: &spki::AlgorithmIdentifierOwned) -> Result<SignatureAlgorithm> {
    #[derive(der::Sequence)]
    struct PssParams {
        #[asn1(context_specific = "0", tag_mode = "EXPLICIT", optional = "true")]
        hash: Option<spki::AlgorithmIdentifierOwned>,
        #[asn1(context_specific = "1", tag_mode = "EXPLICIT", optional = "true")]
        mask_gen: Option<spki::AlgorithmIdentifierOwned>,
        #[asn1(context_specific = "2", tag_mode = "EXPLICIT", optional = "true")]
        salt_length: Option<u32>,
        #[asn1(context_specific = "3", tag_mode = "EXPLICIT", optional = "true")]
        trailer_field: Option<u32>,
    }
    let unsupported = |what: &str| Error::Unsupported(format!("RSASSA-PSS parameters: {what}"));
    let params = algorithm
        .parameters
        .as_ref()
        .ok_or_else(|| unsupported("absent (SHA-1 defaults are not accepted)"))?;
    let params: PssParams = params
        .decode_as()
        .map_err(|e| unsupported(&format!("malformed ({e})")))?;
    let hash = params
        .hash
        .as_ref()
        .and_then(|h| Hash::from_oid(&h.oid))
        .ok_or_else(|| unsupported("the hash is not SHA-256, SHA-384 or SHA-512"))?;
    let mgf = params
        .mask_gen
        .as_ref()
        .ok_or_else(|| unsupported("no mask generation function"))?;
    let mgf_hash = mgf
        .parameters
        .as_ref()
        .and_then(|p| p.decode_as::<spki::AlgorithmIdentifierOwned>().ok())
        .and_then(|h| Hash::from_oid(&h.oid));
    if mgf.oid != ID_MGF1 || mgf_hash != Some(hash) {
        return Err(unsupported(
            "the mask generation is not MGF1 with the same hash",
        ));
    }
    if params.trailer_field.is_some_and(|t| t != 1) {
        return Err(unsupported("trailer field other than 1"));
    }
    let salt = params.salt_length.unwrap_or(20) as usize;
    Ok(SignatureAlgorithm::RsaPss { hash, salt })
}

/// A public key of a supported type.
#[derive(Clone)]
pub enum PublicKey {
    /// RSA.
    Rsa(rsa::RsaPublicKey),
    /// ECDSA on P-256.
    P256(p256::ecdsa::VerifyingKey),
    /// ECDSA on P-384.
    P384(p384::ecdsa::VerifyingKey),
    /// ECDSA on P-521.
    P521(p521::ecdsa::VerifyingKey),
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.describe())
    }
}

impl PublicKey {
    /// Read a `SubjectPublicKeyInfo` (DER).
    pub fn from_spki_der(der: &[u8]) -> Result<PublicKey> {
        let spki = spki::SubjectPublicKeyInfoOwned::from_der(der)
            .map_err(|e| Error::Malformed(format!("public key: {e}")))?;
        PublicKey::from_spki(&spki)
    }

    /// Read a parsed `SubjectPublicKeyInfo`.
    pub fn from_spki(spki: &spki::SubjectPublicKeyInfoOwned) -> Result<PublicKey> {
        let bits = spki
            .subject_public_key
            .as_bytes()
            .ok_or_else(|| Error::Malformed("public key bit string with unused bits".into()))?;
        match spki.algorithm.oid {
            RSA_ENCRYPTION => {
                use rsa::pkcs1::DecodeRsaPublicKey as _;
                let key = rsa::RsaPublicKey::from_pkcs1_der(bits)
                    .map_err(|e| Error::Malformed(format!("RSA public key: {e}")))?;
                Ok(PublicKey::Rsa(key))
            }
            EC_PUBLIC_KEY => {
                let curve: ObjectIdentifier = spki
                    .algorithm
                    .parameters
                    .as_ref()
                    .and_then(|p| p.decode_as().ok())
                    .ok_or_else(|| {
                        Error::Malformed("EC public key without a named curve".into())
                    })?;
                let bad = |e: ecdsa::Error| Error::Malformed(format!("EC public key: {e}"));
                match curve {
                    SECP256R1 => Ok(PublicKey::P256(
                        p256::ecdsa::VerifyingKey::from_sec1_bytes(bits).map_err(bad)?,
                    )),
                    SECP384R1 => Ok(PublicKey::P384(
                        p384::ecdsa::VerifyingKey::from_sec1_bytes(bits).map_err(bad)?,
                    )),
                    SECP521R1 => Ok(PublicKey::P521(
                        p521::ecdsa::VerifyingKey::from_sec1_bytes(bits).map_err(bad)?,
                    )),
                    other => Err(Error::Unsupported(format!("elliptic curve {other}"))),
                }
            }
            other => Err(Error::Unsupported(format!("public key algorithm {other}"))),
        }
    }

    /// The key size in bits (the modulus for RSA, the curve for ECDSA).
    pub fn bits(&self) -> usize {
        match self {
            PublicKey::Rsa(key) => {
                use rsa::traits::PublicKeyParts as _;
                key.n().bits()
            }
            PublicKey::P256(_) => 256,
            PublicKey::P384(_) => 384,
            PublicKey::P521(_) => 521,
        }
    }

    /// `RSA 2048`, `ECDSA P-256`, ...
    pub fn describe(&self) -> String {
        match self {
            PublicKey::Rsa(_) => format!("RSA {}", self.bits()),
            _ => format!("ECDSA P-{}", self.bits()),
        }
    }

    /// Verify `signature` over `message` with this key and `algorithm` (which must fit the
    /// key: an RSA padding for an RSA key, ECDSA for a curve key).
    pub fn verify(
        &self,
        algorithm: SignatureAlgorithm,
        message: &[u8],
        signature: &[u8],
    ) -> std::result::Result<(), String> {
        use ecdsa::signature::hazmat::PrehashVerifier as _;
        let mismatch = || format!("a {} key cannot verify {algorithm:?}", self.describe());
        match (self, algorithm) {
            (PublicKey::Rsa(key), SignatureAlgorithm::RsaPkcs1(hash)) => {
                let scheme = match hash {
                    Hash::Sha256 => rsa::Pkcs1v15Sign::new::<Sha256>(),
                    Hash::Sha384 => rsa::Pkcs1v15Sign::new::<Sha384>(),
                    Hash::Sha512 => rsa::Pkcs1v15Sign::new::<Sha512>(),
                };
                key.verify(scheme, &hash.digest(message), signature)
                    .map_err(|e| e.to_string())
            }
            (PublicKey::Rsa(key), SignatureAlgorithm::RsaPss { hash, salt }) => {
                let scheme = match hash {
                    Hash::Sha256 => rsa::Pss::new_with_salt::<Sha256>(salt),
                    Hash::Sha384 => rsa::Pss::new_with_salt::<Sha384>(salt),
                    Hash::Sha512 => rsa::Pss::new_with_salt::<Sha512>(salt),
                };
                key.verify(scheme, &hash.digest(message), signature)
                    .map_err(|e| e.to_string())
            }
            (
                PublicKey::P256(_) | PublicKey::P384(_) | PublicKey::P521(_),
                SignatureAlgorithm::EcdsaDer(hash) | SignatureAlgorithm::EcdsaFixed(hash),
            ) => {
                let der = matches!(algorithm, SignatureAlgorithm::EcdsaDer(_));
                let prehash = hash.digest(message);
                let bad = |e: ecdsa::Error| e.to_string();
                match self {
                    PublicKey::P256(key) => {
                        let sig = if der {
                            p256::ecdsa::Signature::from_der(signature)
                        } else {
                            p256::ecdsa::Signature::from_slice(signature)
                        }
                        .map_err(bad)?;
                        key.verify_prehash(&prehash, &sig).map_err(bad)
                    }
                    PublicKey::P384(key) => {
                        let sig = if der {
                            p384::ecdsa::Signature::from_der(signature)
                        } else {
                            p384::ecdsa::Signature::from_slice(signature)
                        }
                        .map_err(bad)?;
                        key.verify_prehash(&prehash, &sig).map_err(bad)
                    }
                    PublicKey::P521(key) => {
                        let sig = if der {
                            p521::ecdsa::DerSignature::from_bytes(signature)
                                .and_then(p521::ecdsa::Signature::try_from)
                        } else {
                            p521::ecdsa::Signature::from_slice(signature)
                        }
                        .map_err(bad)?;
                        key.verify_prehash(&prehash, &sig).map_err(bad)
                    }
                    PublicKey::Rsa(_) => Err(mismatch()),
                }
            }
            _ => Err(mismatch()),
        }
    }
}

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

/// What a chain is validated for: each purpose has its own rules for leaf and CA certificates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    /// Notary Project code signing (signature specification, "Certificate Requirements"): leaf
    /// keyUsage critical with digitalSignature only; extendedKeyUsage, when present, without
    /// anyExtendedKeyUsage, serverAuth, clientAuth, emailProtection, timeStamping or
    /// OCSPSigning; CA keyUsage critical with keyCertSign; RSA 2048/3072/4096 or ECDSA
    /// P-256/384/521 leaf keys.
    NotaryCodeSigning,
    /// RFC 3161 timestamping (and the Notary Project's rules for TSA chains): leaf keyUsage
    /// with digitalSignature; extendedKeyUsage present, critical, and timeStamping only.
    Timestamping,
    /// Sigstore (Fulcio) code signing: leaf keyUsage digitalSignature, extendedKeyUsage
    /// present with codeSigning.
    SigstoreCodeSigning,
}

/// How to validate a chain.
#[derive(Debug, Clone, Copy)]
pub struct ChainOptions {
    /// The rules of leaf and CA certificates.
    pub purpose: Purpose,
    /// Check that every certificate is valid at this time (`None`: the caller checks times).
    pub at: Option<OffsetDateTime>,
}

fn check_unknown_critical(cert: &Certificate) -> Result<()> {
    match cert.extensions.unknown_critical.first() {
        Some(oid) => Err(cert.requirement(format!(
            "it has a critical extension acrpull does not understand ({oid})"
        ))),
        None => Ok(()),
    }
}

fn check_leaf(cert: &Certificate, purpose: Purpose) -> Result<()> {
    check_unknown_critical(cert)?;
    if let Some((_, true, _)) = cert.extensions.basic_constraints {
        return Err(cert
            .requirement("a signing certificate must not be a CA (basicConstraints cA is true)"));
    }
    let Some((critical, usage)) = &cert.extensions.key_usage else {
        return Err(cert.requirement("the keyUsage extension must be present"));
    };
    if purpose == Purpose::NotaryCodeSigning && !critical {
        return Err(cert.requirement("the keyUsage extension must be critical"));
    }
    if !usage.digital_signature() {
        return Err(cert.requirement("keyUsage must include digitalSignature"));
    }
    if purpose != Purpose::SigstoreCodeSigning {
        let forbidden: Vec<&str> = [
            (usage.key_encipherment(), "keyEncipherment"),
            (usage.data_encipherment(), "dataEncipherment"),
            (usage.key_agreement(), "keyAgreement"),
            (usage.key_cert_sign(), "keyCertSign"),
            (usage.crl_sign(), "cRLSign"),
            (usage.encipher_only(), "encipherOnly"),
            (usage.decipher_only(), "decipherOnly"),
        ]
        .into_iter()
        .filter_map(|(set, name)| set.then_some(name))
        .collect();
        if !forbidden.is_empty() {
            return Err(cert.requirement(format!(
                "keyUsage must be digitalSignature only, it also has {}",
                forbidden.join(", ")
            )));
        }
    }
    let eku = &cert.extensions.extended_key_usage;
    match purpose {
        Purpose::NotaryCodeSigning => {
            if let Some((_, purposes)) = eku {
                let excluded = [
                    (ANY_EXTENDED_KEY_USAGE, "anyExtendedKeyUsage"),
                    (oids::ID_KP_SERVER_AUTH, "serverAuth"),
                    (oids::ID_KP_CLIENT_AUTH, "clientAuth"),
                    (oids::ID_KP_EMAIL_PROTECTION, "emailProtection"),
                    (TIME_STAMPING, "timeStamping"),
                    (oids::ID_KP_OCSP_SIGNING, "OCSPSigning"),
                ];
                for (oid, name) in excluded {
                    if purposes.contains(&oid) {
                        return Err(cert.requirement(format!(
                            "extendedKeyUsage must not contain {name} for code signing"
                        )));
                    }
                }
            }
            check_signing_key(cert)?;
        }
        Purpose::Timestamping => match eku {
            Some((true, purposes)) if purposes.as_slice() == [TIME_STAMPING] => {
                check_signing_key(cert)?;
            }
            Some((false, _)) => {
                return Err(cert.requirement(
                    "the extendedKeyUsage extension of a timestamping certificate must be critical",
                ))
            }
            _ => return Err(cert.requirement(
                "a timestamping certificate must have timeStamping as its only extendedKeyUsage",
            )),
        },
        Purpose::SigstoreCodeSigning => match eku {
            Some((_, purposes)) if purposes.contains(&CODE_SIGNING) => {}
            _ => return Err(cert.requirement("extendedKeyUsage must include codeSigning")),
        },
    }
    Ok(())
}

/// The Notary Project's signing keys: RSA 2048/3072/4096, ECDSA P-256/384/521.
fn check_signing_key(cert: &Certificate) -> Result<()> {
    let key = cert.public_key()?;
    match &key {
        PublicKey::Rsa(_) if ![2048, 3072, 4096].contains(&key.bits()) => {
            Err(cert.requirement(format!(
                "RSA keys must be 2048, 3072 or 4096 bits, not {}",
                key.bits()
            )))
        }
        _ => Ok(()),
    }
}

/// `below`: how many CA certificates sit between this CA and the leaf.
fn check_ca(cert: &Certificate, purpose: Purpose, below: usize) -> Result<()> {
    check_unknown_critical(cert)?;
    let Some((_, true, path_len)) = cert.extensions.basic_constraints else {
        return Err(cert.requirement("a CA certificate must have basicConstraints with cA true"));
    };
    if let Some(limit) = path_len {
        if (limit as usize) < below {
            return Err(cert.requirement(format!(
                "its pathLenConstraint {limit} allows fewer CA certificates below it than the {below} in the chain"
            )));
        }
    }
    let Some((critical, usage)) = &cert.extensions.key_usage else {
        return Err(cert.requirement("a CA certificate must have the keyUsage extension"));
    };
    if purpose == Purpose::NotaryCodeSigning && !critical {
        return Err(cert.requirement("the keyUsage extension must be critical"));
    }
    if !usage.key_cert_sign() {
        return Err(cert.requirement("a CA certificate's keyUsage must include keyCertSign"));
    }
    Ok(())
}

fn check_times(chain: &[Certificate], at: Option<OffsetDateTime>) -> Result<()> {
    if let Some(at) = at {
        for cert in chain {
            cert.check_valid_at(at)?;
        }
    }
    Ok(())
}

/// Validate a chain the signer sent whole, leaf first, ending in a self-signed root (the
/// Notary Project's rule): each certificate is issued by the next, no certificate before the
/// root is self-signed, the root signs itself, and the purpose's rules hold. A single
/// self-signed certificate is allowed and must meet the leaf rules.
pub fn validate_ordered_chain(chain: &[Certificate], options: &ChainOptions) -> Result<()> {
    let Some(leaf) = chain.first() else {
        return Err(Error::Malformed("the certificate chain is empty".into()));
    };
    if chain.len() > MAX_CHAIN_LENGTH {
        return Err(leaf.requirement(format!(
            "the chain has {} certificates, more than {MAX_CHAIN_LENGTH}",
            chain.len()
        )));
    }
    check_times(chain, options.at)?;
    if chain.len() == 1 {
        if !leaf.self_issued() {
            return Err(leaf.requirement("a chain of one certificate must be self-signed"));
        }
        leaf.check_issued_by(leaf)?;
        return check_leaf(leaf, options.purpose);
    }
    let last = chain.len() - 1;
    for (i, cert) in chain.iter().enumerate() {
        if i == last {
            if !cert.self_issued() {
                return Err(
                    cert.requirement("the chain must end with a self-signed root certificate")
                );
            }
            cert.check_issued_by(cert)?;
        } else {
            if cert.self_issued() && cert.check_issued_by(cert).is_ok() {
                return Err(
                    cert.requirement("only the last certificate of the chain may be self-signed")
                );
            }
            cert.check_issued_by(&chain[i + 1])?;
        }
        if i == 0 {
            check_leaf(cert, options.purpose)?;
        } else {
            check_ca(cert, options.purpose, i - 1)?;
        }
    }
    Ok(())
}

/// Find and validate a path from `leaf` through `intermediates` to one of `roots` (trust
/// anchors: they are trusted as given, their own expiry included when `options.at` is set).
/// Returns the chain leaf first, ending with the root. The search is bounded by
/// [`MAX_CHAIN_LENGTH`] and tries at most a few hundred candidate links.
pub fn build_chain(
    leaf: &Certificate,
    intermediates: &[Certificate],
    roots: &[Certificate],
    options: &ChainOptions,
) -> Result<Vec<Certificate>> {
    check_leaf(leaf, options.purpose)?;
    if let Some(at) = options.at {
        leaf.check_valid_at(at)?;
    }
    let mut budget = 256usize;
    let mut path = vec![leaf.clone()];
    let mut last_error = None;
    if extend(
        &mut path,
        intermediates,
        roots,
        options,
        &mut budget,
        &mut last_error,
    ) {
        return Ok(path);
    }
    Err(Error::Untrusted {
        subject: leaf.subject_text.clone(),
        reason: match last_error {
            Some(e) => e.to_string(),
            None => format!(
                "no trusted root or intermediate is named `{}`",
                leaf.issuer_text
            ),
        },
    })
}

fn extend(
    path: &mut Vec<Certificate>,
    intermediates: &[Certificate],
    roots: &[Certificate],
    options: &ChainOptions,
    budget: &mut usize,
    last_error: &mut Option<Error>,
) -> bool {
    let Some(child) = path.last().cloned() else {
        return false;
    };
    let below = path.len() - 1;
    // A trusted root first: the shortest path wins.
    for root in roots {
        if *budget == 0 {
            return false;
        }
        *budget -= 1;
        if root.inner.tbs_certificate.subject != child.inner.tbs_certificate.issuer {
            continue;
        }
        let checked = child
            .check_issued_by(root)
            .and_then(|()| {
                // A leaf that is itself a trust anchor needs no CA rules of its issuer.
                if *root == child {
                    Ok(())
                } else {
                    check_ca(root, options.purpose, below)
                }
            })
            .and_then(|()| options.at.map_or(Ok(()), |at| root.check_valid_at(at)));
        match checked {
            Ok(()) => {
                if *root != child {
                    path.push(root.clone());
                }
                return true;
            }
            Err(e) => *last_error = Some(e),
        }
    }
    if path.len() >= MAX_CHAIN_LENGTH {
        return false;
    }
    for candidate in intermediates {
        if *budget == 0 {
            return false;
        }
        *budget -= 1;
        if candidate.inner.tbs_certificate.subject != child.inner.tbs_certificate.issuer
            || path.contains(candidate)
        {
            continue;
        }
        let checked = child
            .check_issued_by(candidate)
            .and_then(|()| check_ca(candidate, options.purpose, below))
            .and_then(|()| options.at.map_or(Ok(()), |at| candidate.check_valid_at(at)));
        if let Err(e) = checked {
            *last_error = Some(e);
            continue;
        }
        path.push(candidate.clone());
        if extend(path, intermediates, roots, options, budget, last_error) {
            return true;
        }
        path.pop();
    }
    false
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

/// The signature algorithm the Notary Project assigns to a signing key: RSA-PSS with the hash
/// of the key size (2048: SHA-256, 3072: SHA-384, 4096: SHA-512), ECDSA with the curve's hash.
pub fn notary_algorithm_for(key: &PublicKey) -> Result<SignatureAlgorithm> {
    let hash = match (key, key.bits()) {
        (PublicKey::Rsa(_), 2048) | (PublicKey::P256(_), _) => Hash::Sha256,
        (PublicKey::Rsa(_), 3072) | (PublicKey::P384(_), _) => Hash::Sha384,
        (PublicKey::Rsa(_), 4096) | (PublicKey::P521(_), _) => Hash::Sha512,
        (PublicKey::Rsa(_), bits) => {
            return Err(Error::Unsupported(format!(
                "RSA keys of {bits} bits (the Notary Project allows 2048, 3072 and 4096)"
            )))
        }
    };
    Ok(match key {
        PublicKey::Rsa(_) => SignatureAlgorithm::RsaPss {
            hash,
            salt: hash.len(),
        },
        _ => SignatureAlgorithm::EcdsaFixed(hash),
    })
}
