//! The COSE_Sign1 envelope (`application/cose`, signature-envelope-cose.md): tagged, with
//! unique header labels, read into an [`Envelope`]; and the `Sig_structure` its signature
//! covers. Apart from JWS because the two formats share nothing below the signed attributes.

use std::collections::HashSet;

use ciborium::Value as Cbor;
use time::OffsetDateTime;

use super::{
    bad, parse_certificates, pss, Envelope, EnvelopeError, Format, SignedAttributes, SigningScheme,
    AUTHENTIC_SIGNING_TIME, EXPIRY, SIGNING_AGENT, SIGNING_SCHEME, SIGNING_TIME,
    TIMESTAMP_SIGNATURE,
};
use crate::verify::x509::{Hash, SignatureAlgorithm};

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

pub(super) fn parse_cose(bytes: &[u8]) -> Result<Envelope, EnvelopeError> {
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
