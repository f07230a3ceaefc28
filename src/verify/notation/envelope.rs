//! Notary Project signature envelopes: JWS (`application/jose+json`, flattened JSON
//! serialization) and COSE_Sign1 (`application/cose`), read into one [`Envelope`] whose
//! signature can then be checked with the signing certificate's key.
//!
//! Written from the Notary Project specifications (signature-specification.md,
//! signature-envelope-jws.md, signature-envelope-cose.md). Parsing is strict where a lax
//! parser would let two readers see two different signatures: duplicate JSON keys or CBOR
//! labels, unknown top-level JWS members, untagged COSE, headers marked critical that are
//! absent or unknown, and required critical headers not marked critical are all refused.

use std::collections::HashSet;

use base64::Engine as _;
use ciborium::Value as Cbor;
use serde::Deserialize;
use time::OffsetDateTime;

use crate::verify::x509::{self, Certificate, Hash, SignatureAlgorithm};

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

/// A JSON object whose keys are unique (serde_json keeps the last of duplicates silently).
struct UniqueObject(serde_json::Map<String, serde_json::Value>);

impl<'de> Deserialize<'de> for UniqueObject {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = UniqueObject;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<UniqueObject, A::Error> {
                let mut out = serde_json::Map::new();
                while let Some((key, value)) = map.next_entry::<String, serde_json::Value>()? {
                    if out.contains_key(&key) {
                        return Err(serde::de::Error::custom(format!("duplicate key `{key}`")));
                    }
                    out.insert(key, value);
                }
                Ok(UniqueObject(out))
            }
        }
        deserializer.deserialize_map(Visitor)
    }
}

fn json_object(
    bytes: &[u8],
    what: &str,
) -> Result<serde_json::Map<String, serde_json::Value>, EnvelopeError> {
    serde_json::from_slice::<UniqueObject>(bytes)
        .map(|o| o.0)
        .map_err(|e| bad(format!("{what} is not a valid JSON object: {e}")))
}

fn b64url(value: &str, what: &str) -> Result<Vec<u8>, EnvelopeError> {
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(value)
        .map_err(|e| bad(format!("{what} is not base64url: {e}")))
}

fn rfc3339(value: &serde_json::Value, name: &str) -> Result<OffsetDateTime, EnvelopeError> {
    let text = value
        .as_str()
        .ok_or_else(|| bad(format!("`{name}` is not a string")))?;
    OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339)
        .map_err(|e| bad(format!("`{name}` is not an RFC 3339 time ({text}): {e}")))
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

fn parse_jws(bytes: &[u8]) -> Result<Envelope, EnvelopeError> {
    let top = json_object(bytes, "the JWS envelope")?;
    for key in top.keys() {
        if !matches!(
            key.as_str(),
            "payload" | "protected" | "header" | "signature"
        ) {
            return Err(bad(format!(
                "the JWS envelope has the member `{key}`; only the flattened JSON serialization (payload, protected, header, signature) is accepted"
            )));
        }
    }
    let string = |name: &str| {
        top.get(name)
            .and_then(serde_json::Value::as_str)
            .ok_or_else(|| bad(format!("the JWS envelope has no `{name}` string")))
    };
    let payload_b64 = string("payload")?;
    let protected_b64 = string("protected")?;
    let payload = b64url(payload_b64, "`payload`")?;
    let signature = b64url(string("signature")?, "`signature`")?;
    let protected = json_object(
        &b64url(protected_b64, "`protected`")?,
        "the protected header",
    )?;

    let text = |name: &str| -> Result<Option<String>, EnvelopeError> {
        match protected.get(name) {
            None => Ok(None),
            Some(serde_json::Value::String(s)) => Ok(Some(s.clone())),
            Some(_) => Err(bad(format!("`{name}` is not a string"))),
        }
    };
    let algorithm = match text("alg")?.as_deref() {
        Some("PS256") => pss(Hash::Sha256),
        Some("PS384") => pss(Hash::Sha384),
        Some("PS512") => pss(Hash::Sha512),
        Some("ES256") => SignatureAlgorithm::EcdsaFixed(Hash::Sha256),
        Some("ES384") => SignatureAlgorithm::EcdsaFixed(Hash::Sha384),
        Some("ES512") => SignatureAlgorithm::EcdsaFixed(Hash::Sha512),
        Some(other) => return Err(bad(format!("unsupported JWS algorithm `{other}`"))),
        None => return Err(bad("the protected header has no `alg`")),
    };
    let critical = match protected.get("crit") {
        None => Vec::new(),
        Some(serde_json::Value::Array(items)) => items
            .iter()
            .map(|v| {
                v.as_str()
                    .map(str::to_string)
                    .ok_or_else(|| bad("`crit` holds a non-string"))
            })
            .collect::<Result<_, _>>()?,
        Some(_) => return Err(bad("`crit` is not an array")),
    };
    let time_of = |name: &str| protected.get(name).map(|v| rfc3339(v, name)).transpose();
    let attributes = SignedAttributes {
        algorithm,
        scheme: SigningScheme::parse(
            &text(SIGNING_SCHEME)?.ok_or_else(|| bad(format!("no `{SIGNING_SCHEME}`")))?,
        )?,
        signing_time: time_of(SIGNING_TIME)?,
        authentic_signing_time: time_of(AUTHENTIC_SIGNING_TIME)?,
        expiry: time_of(EXPIRY)?,
        content_type: text("cty")?.ok_or_else(|| bad("the protected header has no `cty`"))?,
        critical,
        present: protected.keys().cloned().collect(),
    };
    let signing_time = attributes.check()?;

    let header = match top.get("header") {
        Some(serde_json::Value::Object(map)) => map.clone(),
        Some(_) => return Err(bad("the unprotected `header` is not an object")),
        None => return Err(bad("the JWS envelope has no unprotected `header` (x5c)")),
    };
    let x5c = header
        .get("x5c")
        .and_then(serde_json::Value::as_array)
        .ok_or_else(|| bad("the unprotected header has no `x5c` array"))?;
    let ders: Vec<Vec<u8>> = x5c
        .iter()
        .take(x509::MAX_CHAIN_LENGTH + 1)
        .map(|v| {
            let text = v.as_str().ok_or_else(|| bad("`x5c` holds a non-string"))?;
            base64::engine::general_purpose::STANDARD
                .decode(text)
                .map_err(|e| bad(format!("an `x5c` certificate is not base64: {e}")))
        })
        .collect::<Result<_, _>>()?;
    let certificates = parse_certificates(ders.iter().map(|d| Ok(d.as_slice())))?;
    let timestamp_token = match header.get(TIMESTAMP_SIGNATURE) {
        None => None,
        Some(serde_json::Value::String(text)) => Some(
            base64::engine::general_purpose::STANDARD
                .decode(text)
                .map_err(|e| bad(format!("`{TIMESTAMP_SIGNATURE}` is not base64: {e}")))?,
        ),
        Some(_) => return Err(bad(format!("`{TIMESTAMP_SIGNATURE}` is not a string"))),
    };
    let signing_agent = header
        .get(SIGNING_AGENT)
        .and_then(serde_json::Value::as_str)
        .map(str::to_string);

    Ok(Envelope {
        format: Format::Jws,
        payload,
        signed_bytes: format!("{protected_b64}.{payload_b64}").into_bytes(),
        signature,
        algorithm: attributes.algorithm,
        signing_scheme: attributes.scheme,
        signing_time,
        expiry: attributes.expiry,
        certificates,
        timestamp_token,
        signing_agent,
    })
}

fn pss(hash: Hash) -> SignatureAlgorithm {
    let salt = hash.digest(b"").len();
    SignatureAlgorithm::RsaPss { hash, salt }
}

/// A COSE header label: an integer or a text string.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Label {
    Int(i128),
    Text(String),
}

fn header_map(value: Cbor, what: &str) -> Result<Vec<(Label, Cbor)>, EnvelopeError> {
    let Cbor::Map(entries) = value else {
        return Err(bad(format!("the {what} header is not a map")));
    };
    let mut seen = HashSet::new();
    let mut out = Vec::with_capacity(entries.len());
    for (key, value) in entries {
        let label = match key {
            Cbor::Integer(i) => Label::Int(i128::from(i)),
            Cbor::Text(t) => Label::Text(t),
            _ => {
                return Err(bad(format!(
                    "the {what} header has a label that is neither an integer nor text"
                )))
            }
        };
        if !seen.insert(label.clone()) {
            return Err(bad(format!(
                "the {what} header has the label {label:?} twice"
            )));
        }
        out.push((label, value));
    }
    Ok(out)
}

fn get<'a>(map: &'a [(Label, Cbor)], label: &Label) -> Option<&'a Cbor> {
    map.iter().find(|(l, _)| l == label).map(|(_, v)| v)
}

fn text_label(name: &str) -> Label {
    Label::Text(name.to_string())
}

fn cbor_time(value: &Cbor, name: &str) -> Result<OffsetDateTime, EnvelopeError> {
    let seconds = match value {
        Cbor::Tag(1, inner) => match inner.as_ref() {
            Cbor::Integer(i) => i64::try_from(i128::from(*i)).ok(),
            Cbor::Float(f) if f.is_finite() && f.abs() < 1e15 => Some(f.floor() as i64),
            _ => None,
        },
        _ => None,
    }
    .ok_or_else(|| bad(format!("`{name}` is not an epoch date/time (tag 1)")))?;
    OffsetDateTime::from_unix_timestamp(seconds)
        .map_err(|e| bad(format!("`{name}` is out of range: {e}")))
}

fn parse_cose(bytes: &[u8]) -> Result<Envelope, EnvelopeError> {
    let value: Cbor = ciborium::de::from_reader(bytes)
        .map_err(|e| bad(format!("the COSE envelope is not valid CBOR: {e}")))?;
    let Cbor::Tag(18, inner) = value else {
        return Err(bad("the COSE envelope is not a tagged COSE_Sign1 (tag 18)"));
    };
    let Cbor::Array(parts) = *inner else {
        return Err(bad("COSE_Sign1 is not an array"));
    };
    let [protected_raw, unprotected, payload, signature]: [Cbor; 4] = parts
        .try_into()
        .map_err(|_| bad("COSE_Sign1 does not have 4 elements"))?;
    let (Cbor::Bytes(protected_raw), Cbor::Bytes(payload), Cbor::Bytes(signature)) =
        (protected_raw, payload, signature)
    else {
        return Err(bad(
            "COSE_Sign1's protected header, payload and signature must be byte strings (detached payloads are not accepted)",
        ));
    };
    let protected_value: Cbor = ciborium::de::from_reader(protected_raw.as_slice())
        .map_err(|e| bad(format!("the protected header is not valid CBOR: {e}")))?;
    let protected = header_map(protected_value, "protected")?;
    let unprotected = header_map(unprotected, "unprotected")?;

    let algorithm = match get(&protected, &Label::Int(1)) {
        Some(Cbor::Integer(i)) => match i128::from(*i) {
            -37 => pss(Hash::Sha256),
            -38 => pss(Hash::Sha384),
            -39 => pss(Hash::Sha512),
            -7 => SignatureAlgorithm::EcdsaFixed(Hash::Sha256),
            -35 => SignatureAlgorithm::EcdsaFixed(Hash::Sha384),
            -36 => SignatureAlgorithm::EcdsaFixed(Hash::Sha512),
            other => return Err(bad(format!("unsupported COSE algorithm {other}"))),
        },
        _ => return Err(bad("the protected header has no integer `alg` (1)")),
    };
    let label_name = |label: &Label| match label {
        Label::Int(i) => i.to_string(),
        Label::Text(t) => t.clone(),
    };
    let critical = match get(&protected, &Label::Int(2)) {
        None => Vec::new(),
        Some(Cbor::Array(items)) => items
            .iter()
            .map(|v| match v {
                Cbor::Text(t) => Ok(t.clone()),
                Cbor::Integer(i) => {
                    let i = i128::from(*i);
                    if (0..=8).contains(&i) {
                        Err(bad(format!("`crit` must not list the common label {i}")))
                    } else {
                        Ok(i.to_string())
                    }
                }
                _ => Err(bad(
                    "`crit` holds a label that is neither an integer nor text",
                )),
            })
            .collect::<Result<_, _>>()?,
        Some(_) => return Err(bad("`crit` (2) is not an array")),
    };
    let content_type = match get(&protected, &Label::Int(3)) {
        Some(Cbor::Text(t)) => t.clone(),
        Some(_) => return Err(bad("the content type (3) is not text")),
        None => return Err(bad("the protected header has no content type (3)")),
    };
    let scheme = match get(&protected, &text_label(SIGNING_SCHEME)) {
        Some(Cbor::Text(t)) => SigningScheme::parse(t)?,
        _ => return Err(bad(format!("no text `{SIGNING_SCHEME}`"))),
    };
    let time_of = |name: &str| {
        get(&protected, &text_label(name))
            .map(|v| cbor_time(v, name))
            .transpose()
    };
    let attributes = SignedAttributes {
        algorithm,
        scheme,
        signing_time: time_of(SIGNING_TIME)?,
        authentic_signing_time: time_of(AUTHENTIC_SIGNING_TIME)?,
        expiry: time_of(EXPIRY)?,
        content_type,
        critical,
        present: protected.iter().map(|(l, _)| label_name(l)).collect(),
    };
    let signing_time = attributes.check()?;

    // x5chain (33): unprotected, or protected (the specification allows both).
    let chain = get(&unprotected, &Label::Int(33)).or_else(|| get(&protected, &Label::Int(33)));
    let certificates = match chain {
        Some(Cbor::Array(items)) => parse_certificates(items.iter().map(|item| match item {
            Cbor::Bytes(der) => Ok(der.as_slice()),
            _ => Err(bad("x5chain holds a non-byte-string")),
        }))?,
        Some(Cbor::Bytes(der)) => parse_certificates(std::iter::once(Ok(der.as_slice())))?,
        _ => return Err(bad("the envelope has no x5chain (33)")),
    };
    let timestamp_token = match get(&unprotected, &text_label(TIMESTAMP_SIGNATURE)) {
        None => None,
        Some(Cbor::Bytes(token)) => Some(token.clone()),
        Some(_) => return Err(bad(format!("`{TIMESTAMP_SIGNATURE}` is not a byte string"))),
    };
    let signing_agent = match get(&unprotected, &text_label(SIGNING_AGENT)) {
        Some(Cbor::Text(t)) => Some(t.clone()),
        _ => None,
    };

    let signed_bytes = sig_structure(&protected_raw, &payload);
    Ok(Envelope {
        format: Format::Cose,
        payload,
        signed_bytes,
        signature,
        algorithm: attributes.algorithm,
        signing_scheme: attributes.scheme,
        signing_time,
        expiry: attributes.expiry,
        certificates,
        timestamp_token,
        signing_agent,
    })
}

/// `Sig_structure` of COSE_Sign1 (RFC 9052 4.4) in deterministic CBOR:
/// `["Signature1", protected, h'', payload]`.
pub fn sig_structure(protected: &[u8], payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(protected.len() + payload.len() + 32);
    out.push(0x84);
    cbor_head(&mut out, 3, 10);
    out.extend_from_slice(b"Signature1");
    cbor_head(&mut out, 2, protected.len() as u64);
    out.extend_from_slice(protected);
    cbor_head(&mut out, 2, 0);
    cbor_head(&mut out, 2, payload.len() as u64);
    out.extend_from_slice(payload);
    out
}

/// A CBOR head of `major` type with argument `value`, in the shortest form.
pub fn cbor_head(out: &mut Vec<u8>, major: u8, value: u64) {
    let major = major << 5;
    match value {
        0..=23 => out.push(major | value as u8),
        24..=0xff => out.extend_from_slice(&[major | 24, value as u8]),
        0x100..=0xffff => {
            out.push(major | 25);
            out.extend_from_slice(&(value as u16).to_be_bytes());
        }
        0x1_0000..=0xffff_ffff => {
            out.push(major | 26);
            out.extend_from_slice(&(value as u32).to_be_bytes());
        }
        _ => {
            out.push(major | 27);
            out.extend_from_slice(&value.to_be_bytes());
        }
    }
}
