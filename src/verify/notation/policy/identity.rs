//! Trusted identities: the `x509.subject` distinguished names a statement trusts, parsed with
//! the Notary Project's RFC 4514 rules, and the signing certificate's subject read the way the
//! identity check compares it. Apart from the document's validation because this is where a
//! signer is matched, byte for byte.

use std::collections::BTreeMap;

use super::{bad, PolicyError};
use crate::verify::x509::Certificate;

/// A distinguished name from a trust policy, parsed (`C=US, ST=WA, O=acme`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DistinguishedName {
    /// The text as written in the policy.
    pub text: String,
    /// Attribute type (upper case, `S` read as `ST`) to value.
    pub attributes: BTreeMap<String, String>,
}

impl DistinguishedName {
    /// Parse RFC 4514 text with the Notary Project's rules: single-valued RDNs, each type at
    /// most once, `C`, `ST` (or `S`) and `O` required; `\` escapes a special character or
    /// two hex digits; `=#` (hex-encoded values) is not supported.
    pub fn parse(text: &str) -> Result<DistinguishedName, PolicyError> {
        let invalid = |why: &str| {
            bad(format!(
                "distinguished name `{text}` is invalid: {why}; it must contain the C, ST (or S) and O attributes and follow RFC 4514"
            ))
        };
        if text.contains("=#") {
            return Err(invalid("hex-encoded values (`=#`) are not supported"));
        }
        let mut attributes = BTreeMap::new();
        for rdn in split_unescaped(text, &[',', ';']) {
            if split_unescaped(&rdn, &['+']).len() > 1 {
                return Err(invalid("multi-valued RDNs (`+`) are not supported"));
            }
            let Some((kind, value)) = rdn.split_once('=') else {
                return Err(invalid(&format!("`{}` is not TYPE=value", rdn.trim())));
            };
            let mut kind = kind.trim().to_ascii_uppercase();
            if kind == "S" {
                kind = "ST".into();
            }
            if kind.is_empty()
                || !kind
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-')
            {
                return Err(invalid(&format!("`{kind}` is not an attribute type")));
            }
            let value = unescape(value.trim_start()).map_err(|why| invalid(&why))?;
            if value.is_empty() {
                return Err(invalid(&format!("`{kind}` has an empty value")));
            }
            if attributes.insert(kind.clone(), value).is_some() {
                return Err(invalid(&format!("the attribute `{kind}` appears twice")));
            }
        }
        for required in ["C", "ST", "O"] {
            if !attributes.contains_key(required) {
                return Err(invalid(&format!("the attribute `{required}` is missing")));
            }
        }
        Ok(DistinguishedName {
            text: text.trim().to_string(),
            attributes,
        })
    }

    /// Whether every attribute of `self` is in `other` with the same value.
    pub fn is_subset_of(&self, other: &BTreeMap<String, String>) -> bool {
        self.attributes
            .iter()
            .all(|(k, v)| other.get(k).is_some_and(|o| o == v))
    }
}

/// Split at the separators not preceded by an escaping backslash (escapes kept).
fn split_unescaped(text: &str, separators: &[char]) -> Vec<String> {
    let mut parts = Vec::new();
    let mut current = String::new();
    let mut escaped = false;
    for c in text.chars() {
        if escaped {
            current.push(c);
            escaped = false;
        } else if c == '\\' {
            current.push(c);
            escaped = true;
        } else if separators.contains(&c) {
            parts.push(std::mem::take(&mut current));
        } else {
            current.push(c);
        }
    }
    parts.push(current);
    parts
}

/// RFC 4514 value unescaping; unescaped trailing spaces are insignificant.
fn unescape(value: &str) -> Result<String, String> {
    let mut bytes = Vec::new();
    let mut chars = value.chars().peekable();
    let mut significant = 0;
    while let Some(c) = chars.next() {
        if c != '\\' {
            let mut buffer = [0; 4];
            bytes.extend_from_slice(c.encode_utf8(&mut buffer).as_bytes());
            if c != ' ' {
                significant = bytes.len();
            }
            continue;
        }
        match chars.next() {
            Some(h) if h.is_ascii_hexdigit() => {
                let l = chars
                    .next()
                    .filter(char::is_ascii_hexdigit)
                    .ok_or("a `\\` is followed by one hex digit only")?;
                let byte = u8::from_str_radix(&format!("{h}{l}"), 16).map_err(|e| e.to_string())?;
                bytes.push(byte);
            }
            Some(special) => {
                let mut buffer = [0; 4];
                bytes.extend_from_slice(special.encode_utf8(&mut buffer).as_bytes());
            }
            None => return Err("the value ends with a lone `\\`".into()),
        }
        significant = bytes.len();
    }
    bytes.truncate(significant);
    String::from_utf8(bytes).map_err(|_| "an escaped value is not UTF-8".to_string())
}

/// The subject of a signing certificate as the identity check reads it: each attribute once
/// (a subject with a repeated or multi-valued attribute cannot be matched unambiguously).
pub fn certificate_subject(cert: &Certificate) -> Result<BTreeMap<String, String>, String> {
    let mut out = BTreeMap::new();
    for attribute in cert.subject_attributes() {
        if attribute.multi_valued {
            return Err(format!(
                "the signing certificate's subject `{}` has a multi-valued RDN",
                cert.subject()
            ));
        }
        if out
            .insert(attribute.kind.clone(), attribute.value.clone())
            .is_some()
        {
            return Err(format!(
                "the signing certificate's subject `{}` has the attribute `{}` more than once",
                cert.subject(),
                attribute.kind
            ));
        }
    }
    for required in ["C", "ST", "O"] {
        if !out.contains_key(required) {
            return Err(format!(
                "the signing certificate's subject `{}` has no `{required}`, which x509.subject identities require",
                cert.subject()
            ));
        }
    }
    Ok(out)
}
