//! Rekor's signed entry timestamp (SET) on a cosign `.sig` layer: the
//! `dev.sigstore.cosign/bundle` annotation, checked offline against the Rekor keys a policy
//! names (`rekorPublicKeyPath` and friends), as containers/image checks it:
//! - the SET is Rekor's signature over the canonical JSON of `{body, integratedTime, logID,
//!   logIndex}` (keys sorted, no whitespace);
//! - the body is a `hashedrekord` 0.0.1 entry that must record this signature: the SHA-256 of
//!   the payload, the signature bytes, and the signer's public key.
//!
//! An entry that is missing or records anything else rejects the signature.

use base64::Engine as _;
use serde::Deserialize;
use sha2::Digest as _;

use crate::verify::keys::PublicKey;
use crate::verify::Reason;

/// What a `.sig` layer offers for the check.
#[derive(Debug, Clone)]
pub struct Evidence {
    /// The `dev.sigstore.cosign/bundle` annotation, if present.
    pub bundle: Option<String>,
    /// The payload signed.
    pub payload: Vec<u8>,
    /// The signature.
    pub signature: Vec<u8>,
    /// The DER SubjectPublicKeyInfo of the key that verified it.
    pub key: Vec<u8>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct RekorBundle {
    signed_entry_timestamp: String,
    payload: SetPayload,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct SetPayload {
    body: String,
    integrated_time: i64,
    log_index: i64,
    #[serde(rename = "logID")]
    log_id: String,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Entry {
    api_version: String,
    kind: String,
    spec: HashedRekord,
}

#[derive(Debug, Deserialize)]
struct HashedRekord {
    data: Data,
    signature: EntrySignature,
}

#[derive(Debug, Deserialize)]
struct Data {
    hash: EntryHash,
}

#[derive(Debug, Deserialize)]
struct EntryHash {
    algorithm: String,
    value: String,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct EntrySignature {
    content: String,
    public_key: EntryKey,
}

#[derive(Debug, Deserialize)]
struct EntryKey {
    content: String,
}

fn transparency(text: impl Into<String>) -> Reason {
    Reason::Transparency(text.into())
}

fn base64(field: &str, text: &str) -> Result<Vec<u8>, Reason> {
    base64::engine::general_purpose::STANDARD
        .decode(text.trim())
        .map_err(|_| transparency(format!("the Rekor bundle's {field} is not base64")))
}

/// The bytes Rekor signs: the SET payload as canonical JSON (RFC 8785: sorted keys, no
/// whitespace; the values here are strings and integers).
pub fn canonical_payload(body: &str, integrated_time: i64, log_id: &str, log_index: i64) -> String {
    let string = |s: &str| serde_json::Value::from(s).to_string();
    format!(
        r#"{{"body":{},"integratedTime":{integrated_time},"logID":{},"logIndex":{log_index}}}"#,
        string(body),
        string(log_id)
    )
}

/// Check `evidence` against `rekor_keys`: the SET verifies with one of them and its entry
/// records this payload, signature and key. Returns the log index.
pub fn verify(evidence: &Evidence, rekor_keys: &[PublicKey]) -> Result<i64, Reason> {
    let Some(annotation) = &evidence.bundle else {
        return Err(transparency(
            "the signature has no Rekor entry (no `dev.sigstore.cosign/bundle` annotation)",
        ));
    };
    let bundle: RekorBundle = serde_json::from_str(annotation)
        .map_err(|e| transparency(format!("the Rekor bundle is not valid: {e}")))?;
    let set = base64("SignedEntryTimestamp", &bundle.signed_entry_timestamp)?;
    let payload = &bundle.payload;
    let signed = canonical_payload(
        &payload.body,
        payload.integrated_time,
        &payload.log_id,
        payload.log_index,
    );
    let trusted = rekor_keys.iter().any(|key| {
        key.verify(signed.as_bytes(), &set, key.default_hash())
            .is_ok()
    });
    if !trusted {
        return Err(transparency(
            "the signed entry timestamp does not verify with the Rekor key",
        ));
    }
    let body = base64("body", &payload.body)?;
    let entry: Entry = serde_json::from_slice(&body)
        .map_err(|e| transparency(format!("the Rekor entry is not a hashedrekord: {e}")))?;
    if entry.kind != "hashedrekord" || entry.api_version != "0.0.1" {
        return Err(transparency(format!(
            "the Rekor entry is a {} {}, not a hashedrekord 0.0.1",
            entry.kind, entry.api_version
        )));
    }
    let hash = &entry.spec.data.hash;
    let payload_hash = hex::encode(sha2::Sha256::digest(&evidence.payload));
    if hash.algorithm != "sha256" || !hash.value.eq_ignore_ascii_case(&payload_hash) {
        return Err(transparency(format!(
            "the Rekor entry records {}:{}, not this payload (sha256:{payload_hash})",
            hash.algorithm, hash.value
        )));
    }
    if base64("signature", &entry.spec.signature.content)? != evidence.signature {
        return Err(transparency("the Rekor entry records another signature"));
    }
    let key_pem = base64("public key", &entry.spec.signature.public_key.content)?;
    let recorded = String::from_utf8(key_pem)
        .ok()
        .and_then(|pem| PublicKey::from_pem(&pem).ok())
        .map(|key| key.to_spki_der());
    if recorded.as_deref() != Some(evidence.key.as_slice()) {
        return Err(transparency("the Rekor entry records another public key"));
    }
    Ok(payload.log_index)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_set_payload_is_canonical_json() {
        assert_eq!(
            canonical_payload("Ym9keQ==", 1_700_000_000, "c0d2", 42),
            r#"{"body":"Ym9keQ==","integratedTime":1700000000,"logID":"c0d2","logIndex":42}"#
        );
    }
}
