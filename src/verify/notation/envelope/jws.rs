//! The JWS envelope (`application/jose+json`, signature-envelope-jws.md): only the flattened
//! JSON serialization, with unique keys everywhere, read into an [`Envelope`]. Apart from COSE
//! because the two formats share nothing below the signed attributes.

use base64::Engine as _;
use serde::Deserialize;
use time::OffsetDateTime;

use super::{
    bad, parse_certificates, pss, Envelope, EnvelopeError, Format, SignedAttributes, SigningScheme,
    AUTHENTIC_SIGNING_TIME, EXPIRY, SIGNING_AGENT, SIGNING_SCHEME, SIGNING_TIME,
    TIMESTAMP_SIGNATURE,
};
use crate::verify::x509::{self, Hash, SignatureAlgorithm};

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

pub(super) fn parse_jws(bytes: &[u8]) -> Result<Envelope, EnvelopeError> {
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
