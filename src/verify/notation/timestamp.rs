//! RFC 3161 timestamp tokens (a CMS SignedData over a `TSTInfo`), as the Notary Project uses
//! them to countersign a signature: the token's message imprint must be the hash of the
//! signature bytes, the CMS signature must verify with the TSA certificate named by the
//! signer identifier and pinned by the `signing-certificate-v2` attribute (RFC 5035), and
//! that certificate must chain to a root of the `tsa` trust store under the timestamping
//! rules. The result is the time range `genTime ± accuracy` (RFC 3161 2.4.2).

use cms::content_info::ContentInfo;
use cms::signed_data::{SignedData, SignerIdentifier};
use const_oid::ObjectIdentifier;
use der::{Decode, Encode, Tagged as _};
use time::OffsetDateTime;

use crate::verify::x509::{self, Certificate, Hash, SignatureAlgorithm};

const ID_SIGNED_DATA: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.7.2");
const ID_CT_TST_INFO: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.9.16.1.4");
const ID_CONTENT_TYPE: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.9.3");
const ID_MESSAGE_DIGEST: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.9.4");
const ID_SIGNING_CERTIFICATE_V2: ObjectIdentifier =
    ObjectIdentifier::new_unwrap("1.2.840.113549.1.9.16.2.47");
const RSA_ENCRYPTION: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.1");
const EC_PUBLIC_KEY: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.2.1");
/// ETSI baseline time-stamp policy (RFC 3628 5.2): accuracy of one second when unstated.
const BASELINE_POLICY: ObjectIdentifier = ObjectIdentifier::new_unwrap("0.4.0.2023.1.1");

/// Why a timestamp token was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("timestamp countersignature: {0}")]
pub struct TimestampError(pub String);

fn bad(message: impl Into<String>) -> TimestampError {
    TimestampError(message.into())
}

/// A verified timestamp: when, give or take the accuracy, and by which TSA.
#[derive(Debug, Clone)]
pub struct Timestamp {
    /// `genTime - accuracy`.
    pub earliest: OffsetDateTime,
    /// `genTime + accuracy`.
    pub latest: OffsetDateTime,
    /// The TSA chain, leaf first, ending with the trusted root.
    pub chain: Vec<Certificate>,
}

#[derive(der::Sequence)]
struct MessageImprint {
    hash_algorithm: spki::AlgorithmIdentifierOwned,
    hashed_message: der::asn1::OctetString,
}

#[derive(der::Sequence)]
struct Accuracy {
    seconds: Option<u64>,
    #[asn1(context_specific = "0", tag_mode = "IMPLICIT", optional = "true")]
    millis: Option<u16>,
    #[asn1(context_specific = "1", tag_mode = "IMPLICIT", optional = "true")]
    micros: Option<u16>,
}

#[derive(der::Sequence)]
struct TstInfo {
    version: u8,
    policy: ObjectIdentifier,
    message_imprint: MessageImprint,
    serial_number: der::Any,
    gen_time: der::Any,
    accuracy: Option<Accuracy>,
    ordering: Option<bool>,
    nonce: Option<der::Any>,
    #[asn1(context_specific = "0", tag_mode = "EXPLICIT", optional = "true")]
    tsa: Option<der::Any>,
    #[asn1(context_specific = "1", tag_mode = "IMPLICIT", optional = "true")]
    extensions: Option<Vec<x509_cert::ext::Extension>>,
}

#[derive(der::Sequence)]
struct EssCertIdV2 {
    hash_algorithm: Option<spki::AlgorithmIdentifierOwned>,
    cert_hash: der::asn1::OctetString,
    issuer_serial: Option<der::Any>,
}

#[derive(der::Sequence)]
struct SigningCertificateV2 {
    certs: Vec<EssCertIdV2>,
    policies: Option<der::Any>,
}

/// Verify `token` as a countersignature over `signature` and chain its TSA certificate to one
/// of `tsa_roots`.
pub fn verify(
    token: &[u8],
    signature: &[u8],
    tsa_roots: &[Certificate],
) -> Result<Timestamp, TimestampError> {
    let content =
        ContentInfo::from_der(token).map_err(|e| bad(format!("not a CMS ContentInfo: {e}")))?;
    if content.content_type != ID_SIGNED_DATA {
        return Err(bad(format!(
            "the token's content type is {}, not SignedData",
            content.content_type
        )));
    }
    let signed: SignedData = content
        .content
        .decode_as()
        .map_err(|e| bad(format!("malformed SignedData: {e}")))?;
    if signed.encap_content_info.econtent_type != ID_CT_TST_INFO {
        return Err(bad("the token does not carry a TSTInfo"));
    }
    let tst_der = signed
        .encap_content_info
        .econtent
        .as_ref()
        .ok_or_else(|| bad("the token has no TSTInfo content"))?;
    // eContent is an OCTET STRING holding the DER TSTInfo.
    let tst_bytes =
        der::asn1::OctetString::from_der(&tst_der.to_der().map_err(|e| bad(e.to_string()))?)
            .map_err(|e| bad(format!("the TSTInfo is not in an OCTET STRING: {e}")))?;
    let tst_bytes = tst_bytes.as_bytes();
    let info = TstInfo::from_der(tst_bytes).map_err(|e| bad(format!("malformed TSTInfo: {e}")))?;
    if info.version != 1 {
        return Err(bad(format!("unsupported TSTInfo version {}", info.version)));
    }

    // The imprint covers the signature bytes.
    let imprint_hash =
        Hash::from_oid(&info.message_imprint.hash_algorithm.oid).ok_or_else(|| {
            bad(format!(
                "unsupported message imprint hash {}",
                info.message_imprint.hash_algorithm.oid
            ))
        })?;
    if imprint_hash.digest(signature) != info.message_imprint.hashed_message.as_bytes() {
        return Err(bad("the message imprint is not the hash of this signature"));
    }

    let gen_time = generalized_time(&info.gen_time)?;
    let accuracy = match &info.accuracy {
        Some(a) => {
            time::Duration::seconds(a.seconds.unwrap_or(0).min(1 << 32) as i64)
                + time::Duration::milliseconds(a.millis.unwrap_or(0) as i64)
                + time::Duration::microseconds(a.micros.unwrap_or(0) as i64)
        }
        None if info.policy == BASELINE_POLICY => time::Duration::seconds(1),
        None => time::Duration::ZERO,
    };

    // The one signer, its certificate, its signed attributes.
    let signer_infos = signed.signer_infos.0.as_slice();
    let [signer] = signer_infos else {
        return Err(bad(format!(
            "the token has {} signers, not one",
            signer_infos.len()
        )));
    };
    let mut certificates = Vec::new();
    for choice in signed.certificates.iter().flat_map(|set| set.0.iter()) {
        if let cms::cert::CertificateChoices::Certificate(cert) = choice {
            let der = cert.to_der().map_err(|e| bad(e.to_string()))?;
            certificates.push(Certificate::from_der(&der).map_err(|e| bad(e.to_string()))?);
        }
    }
    let signer_cert = match &signer.sid {
        SignerIdentifier::IssuerAndSerialNumber(id) => {
            let issuer = id.issuer.to_der().map_err(|e| bad(e.to_string()))?;
            certificates
                .iter()
                .find(|c| c.issuer_der() == issuer && c.serial() == id.serial_number.as_bytes())
        }
        SignerIdentifier::SubjectKeyIdentifier(ski) => certificates.iter().find(|c| {
            c.extension(&const_oid::db::rfc5280::ID_CE_SUBJECT_KEY_IDENTIFIER)
                .and_then(|(_, v)| der::asn1::OctetString::from_der(v).ok())
                .is_some_and(|v| v.as_bytes() == ski.0.as_bytes())
        }),
    }
    .ok_or_else(|| bad("the token does not carry the TSA's certificate"))?
    .clone();

    let digest_hash = Hash::from_oid(&signer.digest_alg.oid).ok_or_else(|| {
        bad(format!(
            "unsupported digest algorithm {}",
            signer.digest_alg.oid
        ))
    })?;
    let attributes = signer
        .signed_attrs
        .as_ref()
        .ok_or_else(|| bad("the signer has no signed attributes"))?;
    let attribute = |oid: ObjectIdentifier| {
        let mut found = attributes.iter().filter(|a| a.oid == oid);
        match (found.next(), found.next()) {
            (Some(a), None) if a.values.len() == 1 => Ok(a.values.get(0)),
            (None, _) => Ok(None),
            _ => Err(bad(format!(
                "the signed attribute {oid} appears more than once"
            ))),
        }
    };
    let content_type: ObjectIdentifier = attribute(ID_CONTENT_TYPE)?
        .and_then(|v| v.decode_as().ok())
        .ok_or_else(|| bad("no content-type signed attribute"))?;
    if content_type != ID_CT_TST_INFO {
        return Err(bad("the content-type signed attribute is not TSTInfo"));
    }
    let message_digest: der::asn1::OctetString = attribute(ID_MESSAGE_DIGEST)?
        .and_then(|v| v.decode_as().ok())
        .ok_or_else(|| bad("no message-digest signed attribute"))?;
    if message_digest.as_bytes() != digest_hash.digest(tst_bytes) {
        return Err(bad(
            "the message-digest attribute does not match the TSTInfo",
        ));
    }
    let pinned: SigningCertificateV2 = attribute(ID_SIGNING_CERTIFICATE_V2)?
        .ok_or_else(|| bad("no signing-certificate-v2 signed attribute"))?
        .decode_as()
        .map_err(|e| bad(format!("malformed signing-certificate-v2: {e}")))?;
    let first = pinned
        .certs
        .first()
        .ok_or_else(|| bad("signing-certificate-v2 names no certificate"))?;
    let pin_hash = match &first.hash_algorithm {
        None => Hash::Sha256,
        Some(alg) => Hash::from_oid(&alg.oid).ok_or_else(|| {
            bad(format!(
                "unsupported signing-certificate-v2 hash {}",
                alg.oid
            ))
        })?,
    };
    if pin_hash.digest(signer_cert.der()) != first.cert_hash.as_bytes() {
        return Err(bad(
            "signing-certificate-v2 does not name the TSA's certificate",
        ));
    }

    let algorithm = match signer.signature_algorithm.oid {
        RSA_ENCRYPTION => SignatureAlgorithm::RsaPkcs1(digest_hash),
        EC_PUBLIC_KEY => SignatureAlgorithm::EcdsaDer(digest_hash),
        _ => SignatureAlgorithm::from_algorithm_identifier(&signer.signature_algorithm)
            .map_err(|e| bad(e.to_string()))?,
    };
    let signed_attributes = attributes.to_der().map_err(|e| bad(e.to_string()))?;
    signer_cert
        .public_key()
        .map_err(|e| bad(e.to_string()))?
        .verify(algorithm, &signed_attributes, signer.signature.as_bytes())
        .map_err(|e| bad(format!("the TSA's signature does not verify: {e}")))?;

    let intermediates: Vec<Certificate> = certificates
        .iter()
        .filter(|c| **c != signer_cert)
        .cloned()
        .collect();
    let chain = x509::build_chain(
        &signer_cert,
        &intermediates,
        tsa_roots,
        &x509::ChainOptions {
            purpose: x509::Purpose::Timestamping,
            at: Some(gen_time),
        },
    )
    .map_err(|e| bad(format!("the TSA certificate: {e}")))?;
    Ok(Timestamp {
        earliest: gen_time - accuracy,
        latest: gen_time + accuracy,
        chain,
    })
}

/// `YYYYMMDDhhmmss[.fff]Z`: DER GeneralizedTime, fractional seconds allowed (TSAs use them).
fn generalized_time(value: &der::Any) -> Result<OffsetDateTime, TimestampError> {
    if value.tag() != der::Tag::GeneralizedTime {
        return Err(bad("genTime is not a GeneralizedTime"));
    }
    let text = std::str::from_utf8(value.value()).map_err(|_| bad("genTime is not text"))?;
    let malformed = || bad(format!("genTime `{text}` is not YYYYMMDDhhmmss[.f]Z"));
    let body = text.strip_suffix('Z').ok_or_else(malformed)?;
    let (whole, fraction) = match body.split_once('.') {
        Some((w, f)) if !f.is_empty() && f.len() <= 9 && f.bytes().all(|b| b.is_ascii_digit()) => {
            (w, Some(f))
        }
        Some(_) => return Err(malformed()),
        None => (body, None),
    };
    if whole.len() != 14 || !whole.bytes().all(|b| b.is_ascii_digit()) {
        return Err(malformed());
    }
    let n = |range: std::ops::Range<usize>| whole[range].parse::<u32>().map_err(|_| malformed());
    let month = time::Month::try_from(n(4..6)? as u8).map_err(|_| malformed())?;
    let date = time::Date::from_calendar_date(n(0..4)? as i32, month, n(6..8)? as u8)
        .map_err(|_| malformed())?;
    let nanos = fraction.map_or(Ok(0), |f| {
        format!("{f:0<9}").parse::<u32>().map_err(|_| malformed())
    })?;
    let clock =
        time::Time::from_hms_nano(n(8..10)? as u8, n(10..12)? as u8, n(12..14)? as u8, nanos)
            .map_err(|_| malformed())?;
    Ok(time::PrimitiveDateTime::new(date, clock).assume_utc())
}
