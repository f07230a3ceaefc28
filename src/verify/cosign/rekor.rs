//! Rekor transparency log entries, checked offline. An entry comes either from a cosign `.sig`
//! layer's `dev.sigstore.cosign/bundle` annotation (the signed entry timestamp only) or from a
//! sigstore bundle's `verificationMaterial.tlogEntries` (the SET as `inclusionPromise`, and an
//! `inclusionProof` with its checkpoint). What is checked, as containers/image and sigstore's
//! clients check it:
//! - the SET is Rekor's signature over the canonical JSON of `{body, integratedTime, logID,
//!   logIndex}` (keys sorted, no whitespace) with the key of the log the entry names;
//! - the inclusion proof leads from the entry's leaf hash to the root its checkpoint commits
//!   to, and the checkpoint is signed by the same log ([`super::merkle`]);
//! - the body records this signature: a `hashedrekord` 0.0.1 with the SHA-256 of what was
//!   signed, the signature bytes and the signer's key or certificate, or a `dsse` 0.0.1 with
//!   the payload's hash and the envelope's signature and certificate.
//!
//! An entry that is missing or records anything else rejects the signature.

use base64::Engine as _;
use serde::Deserialize;
use sha2::Digest as _;

use crate::verify::keys::PublicKey;
use crate::verify::x509::Certificate;
use crate::verify::Reason;

/// What a keyed `.sig` layer offers for the check (containers `policy.json` with a Rekor key).
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

/// A log entry, from either place.
#[derive(Debug, Clone)]
pub struct Entry {
    /// The body as Rekor returned it (base64: what the SET signs).
    pub body_base64: String,
    /// The decoded body (what the Merkle leaf hashes).
    pub body: Vec<u8>,
    /// When the log integrated it (Unix seconds).
    pub integrated_time: i64,
    /// Its index in the log.
    pub log_index: i64,
    /// The log's ID (SHA-256 of its key).
    pub log_id: Vec<u8>,
    /// The signed entry timestamp.
    pub set: Option<Vec<u8>>,
    /// The inclusion proof.
    pub proof: Option<Proof>,
}

/// An inclusion proof and its checkpoint.
#[derive(Debug, Clone)]
pub struct Proof {
    /// The leaf's index in the tree (of this log shard).
    pub index: u64,
    /// The tree size.
    pub size: u64,
    /// The root hash.
    pub root: Vec<u8>,
    /// The audit path.
    pub hashes: Vec<Vec<u8>>,
    /// The checkpoint (a signed note) committing to the root.
    pub checkpoint: Option<String>,
}

/// What the entry must record.
#[derive(Debug, Clone, Copy)]
pub enum Signed<'a> {
    /// A signature over bytes whose SHA-256 is this (`hashedrekord`).
    Hash {
        /// The SHA-256 of what was signed.
        sha256: &'a [u8],
        /// The signature.
        signature: &'a [u8],
    },
    /// A DSSE envelope's signature over this payload (`dsse`).
    Dsse {
        /// The envelope's payload.
        payload: &'a [u8],
        /// The envelope's signature.
        signature: &'a [u8],
    },
}

/// Who the entry must name as the signer.
#[derive(Debug, Clone, Copy)]
pub enum Signer<'a> {
    /// A public key (DER SubjectPublicKeyInfo).
    Key(&'a [u8]),
    /// A certificate (keyless): the entry records it, or its key.
    Certificate(&'a Certificate),
}

fn transparency(text: impl Into<String>) -> Reason {
    Reason::Transparency(text.into())
}

fn base64(field: &str, text: &str) -> Result<Vec<u8>, Reason> {
    base64::engine::general_purpose::STANDARD
        .decode(text.trim())
        .map_err(|_| transparency(format!("the Rekor entry's {field} is not base64")))
}

/// An integer protobuf's JSON mapping writes as a string, or a plain number.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum Int {
    Text(String),
    Number(i64),
}

impl Int {
    fn value(&self, field: &str) -> Result<i64, Reason> {
        match self {
            Int::Number(n) => Ok(*n),
            Int::Text(t) => t.parse().map_err(|_| {
                transparency(format!("the Rekor entry's {field} `{t}` is not an integer"))
            }),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Annotation {
    signed_entry_timestamp: String,
    payload: AnnotationPayload,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct AnnotationPayload {
    body: String,
    integrated_time: i64,
    log_index: i64,
    #[serde(rename = "logID")]
    log_id: String,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct BundleEntry {
    log_index: Int,
    log_id: BundleLogId,
    integrated_time: Int,
    #[serde(default)]
    inclusion_promise: Option<Promise>,
    #[serde(default)]
    inclusion_proof: Option<BundleProof>,
    canonicalized_body: String,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct BundleLogId {
    key_id: String,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Promise {
    signed_entry_timestamp: String,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct BundleProof {
    log_index: Int,
    root_hash: String,
    tree_size: Int,
    #[serde(default)]
    hashes: Vec<String>,
    #[serde(default)]
    checkpoint: Option<Checkpoint>,
}

#[derive(Debug, Deserialize)]
struct Checkpoint {
    envelope: String,
}

impl Entry {
    /// The entry in a `dev.sigstore.cosign/bundle` annotation.
    pub fn from_annotation(text: &str) -> Result<Entry, Reason> {
        let parsed: Annotation = serde_json::from_str(text)
            .map_err(|e| transparency(format!("the Rekor bundle is not valid: {e}")))?;
        let payload = parsed.payload;
        Ok(Entry {
            body: base64("body", &payload.body)?,
            body_base64: payload.body,
            integrated_time: payload.integrated_time,
            log_index: payload.log_index,
            log_id: hex::decode(&payload.log_id)
                .map_err(|_| transparency("the Rekor bundle's logID is not hex"))?,
            set: Some(base64(
                "SignedEntryTimestamp",
                &parsed.signed_entry_timestamp,
            )?),
            proof: None,
        })
    }

    /// An entry of a sigstore bundle's `tlogEntries`.
    pub fn from_bundle(value: &serde_json::Value) -> Result<Entry, Reason> {
        let parsed: BundleEntry = serde_json::from_value(value.clone())
            .map_err(|e| transparency(format!("the bundle's tlog entry is not valid: {e}")))?;
        let proof = match &parsed.inclusion_proof {
            None => None,
            Some(p) => Some(Proof {
                index: u64::try_from(p.log_index.value("inclusionProof.logIndex")?)
                    .map_err(|_| transparency("a negative inclusionProof.logIndex"))?,
                size: u64::try_from(p.tree_size.value("inclusionProof.treeSize")?)
                    .map_err(|_| transparency("a negative inclusionProof.treeSize"))?,
                root: base64("inclusionProof.rootHash", &p.root_hash)?,
                hashes: p
                    .hashes
                    .iter()
                    .map(|h| base64("inclusionProof.hashes", h))
                    .collect::<Result<_, _>>()?,
                checkpoint: p.checkpoint.as_ref().map(|c| c.envelope.clone()),
            }),
        };
        Ok(Entry {
            body: base64("canonicalizedBody", &parsed.canonicalized_body)?,
            body_base64: parsed.canonicalized_body.clone(),
            integrated_time: parsed.integrated_time.value("integratedTime")?,
            log_index: parsed.log_index.value("logIndex")?,
            log_id: base64("logId.keyId", &parsed.log_id.key_id)?,
            set: parsed
                .inclusion_promise
                .as_ref()
                .map(|p| base64("signedEntryTimestamp", &p.signed_entry_timestamp))
                .transpose()?,
            proof,
        })
    }

    /// Whether `key` made the entry's SET.
    pub fn set_verifies(&self, key: &PublicKey) -> bool {
        let Some(set) = &self.set else {
            return false;
        };
        let signed = canonical_payload(
            &self.body_base64,
            self.integrated_time,
            &hex::encode(&self.log_id),
            self.log_index,
        );
        key.verify(signed.as_bytes(), set, key.default_hash())
            .is_ok()
    }
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

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Body {
    api_version: String,
    kind: String,
    spec: serde_json::Value,
}

#[derive(Debug, Deserialize)]
struct HashedRekord {
    data: HashedData,
    signature: HashedSignature,
}

#[derive(Debug, Deserialize)]
struct HashedData {
    hash: EntryHash,
}

#[derive(Debug, Deserialize)]
struct EntryHash {
    algorithm: String,
    value: String,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct HashedSignature {
    content: String,
    public_key: Content,
}

#[derive(Debug, Deserialize)]
struct Content {
    content: String,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Dsse {
    payload_hash: EntryHash,
    #[serde(default)]
    signatures: Vec<DsseSignature>,
}

#[derive(Debug, Deserialize)]
struct DsseSignature {
    signature: String,
    verifier: String,
}

/// Check that `body` (an entry's decoded body) records `signed` by `signer`.
pub fn check_body(body: &[u8], signed: Signed<'_>, signer: Signer<'_>) -> Result<(), Reason> {
    let body: Body = serde_json::from_slice(body)
        .map_err(|e| transparency(format!("the Rekor entry body is not valid: {e}")))?;
    let spec = |e: serde_json::Error| {
        transparency(format!("the Rekor {} entry is not valid: {e}", body.kind))
    };
    let same_hash = |hash: &EntryHash, bytes: &[u8]| {
        hash.algorithm == "sha256" && hash.value.eq_ignore_ascii_case(&hex::encode(bytes))
    };
    match (body.kind.as_str(), body.api_version.as_str(), signed) {
        ("hashedrekord", "0.0.1", Signed::Hash { sha256, signature }) => {
            let entry: HashedRekord = serde_json::from_value(body.spec.clone()).map_err(spec)?;
            let hash = &entry.data.hash;
            if !same_hash(hash, sha256) {
                return Err(transparency(format!(
                    "the Rekor entry records {}:{}, not what was signed (sha256:{})",
                    hash.algorithm,
                    hash.value,
                    hex::encode(sha256)
                )));
            }
            if base64("signature", &entry.signature.content)? != signature {
                return Err(transparency("the Rekor entry records another signature"));
            }
            check_signer(&entry.signature.public_key.content, signer)
        }
        ("dsse", "0.0.1", Signed::Dsse { payload, signature }) => {
            let entry: Dsse = serde_json::from_value(body.spec.clone()).map_err(spec)?;
            let payload_hash = sha2::Sha256::digest(payload);
            if !same_hash(&entry.payload_hash, &payload_hash) {
                return Err(transparency(format!(
                    "the Rekor entry records payload {}:{}, not this envelope's (sha256:{})",
                    entry.payload_hash.algorithm,
                    entry.payload_hash.value,
                    hex::encode(payload_hash)
                )));
            }
            let mut last = transparency("the Rekor dsse entry records no signature");
            for recorded in &entry.signatures {
                if base64("signature", &recorded.signature)? != signature {
                    last = transparency("the Rekor entry records another signature");
                    continue;
                }
                match check_signer(&recorded.verifier, signer) {
                    Ok(()) => return Ok(()),
                    Err(e) => last = e,
                }
            }
            Err(last)
        }
        (kind, version, _) => Err(transparency(format!(
            "the Rekor entry is a {kind} {version}; acrpull verifies Rekor v1 entries that \
             record this kind of signature (hashedrekord 0.0.1 for a signature over bytes, \
             dsse 0.0.1 for a DSSE envelope)"
        ))),
    }
}

/// The base64 PEM in an entry names `signer`.
fn check_signer(content: &str, signer: Signer<'_>) -> Result<(), Reason> {
    let pem = String::from_utf8(base64("public key", content)?)
        .map_err(|_| transparency("the Rekor entry's key is not PEM text"))?;
    let recorded_key = PublicKey::from_pem(&pem).ok().map(|k| k.to_spki_der());
    let matches = match signer {
        Signer::Key(spki) => recorded_key.as_deref() == Some(spki),
        Signer::Certificate(cert) => {
            let recorded_cert = Certificate::parse_many(pem.as_bytes()).ok();
            recorded_cert.is_some_and(|certs| certs.first() == Some(cert))
                || recorded_key.is_some_and(|key| key == super::sct::spki_der(cert))
        }
    };
    if matches {
        Ok(())
    } else {
        Err(transparency(match signer {
            Signer::Key(_) => "the Rekor entry records another public key",
            Signer::Certificate(_) => "the Rekor entry records another certificate",
        }))
    }
}

/// Check `evidence` against `rekor_keys`: the SET verifies with one of them and its entry
/// records this payload, signature and key. Returns the log index.
pub fn verify(evidence: &Evidence, rekor_keys: &[PublicKey]) -> Result<i64, Reason> {
    let Some(annotation) = &evidence.bundle else {
        return Err(transparency(
            "the signature has no Rekor entry (no `dev.sigstore.cosign/bundle` annotation)",
        ));
    };
    let entry = Entry::from_annotation(annotation)?;
    if !rekor_keys.iter().any(|key| entry.set_verifies(key)) {
        return Err(transparency(
            "the signed entry timestamp does not verify with the Rekor key",
        ));
    }
    let sha256 = sha2::Sha256::digest(&evidence.payload);
    check_body(
        &entry.body,
        Signed::Hash {
            sha256: &sha256,
            signature: &evidence.signature,
        },
        Signer::Key(&evidence.key),
    )?;
    Ok(entry.log_index)
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

    #[test]
    fn bundle_entries_read_integers_as_protobuf_writes_them() {
        let value = serde_json::json!({
            "logIndex": "25915956", "logId": {"keyId": "AAAA"},
            "kindVersion": {"kind": "hashedrekord", "version": "0.0.1"},
            "integratedTime": 1712085549,
            "inclusionProof": {"logIndex": "3", "rootHash": "AAAA", "treeSize": "4",
                               "hashes": ["AAAA"], "checkpoint": {"envelope": "x"}},
            "canonicalizedBody": "e30=",
        });
        let entry = Entry::from_bundle(&value).unwrap();
        assert_eq!(entry.log_index, 25_915_956);
        assert_eq!(entry.integrated_time, 1_712_085_549);
        assert!(entry.set.is_none());
        let proof = entry.proof.unwrap();
        assert_eq!((proof.index, proof.size), (3, 4));
        let mut bad = value.clone();
        bad["logIndex"] = serde_json::json!("many");
        assert!(matches!(
            Entry::from_bundle(&bad),
            Err(Reason::Transparency(_))
        ));
    }
}
