//! Transparency log proofs, checked offline: an RFC 6962 (RFC 9162 section 2.1.3) Merkle audit
//! path from a log entry to a tree root, and the checkpoint (a signed note, the format of
//! `golang.org/x/mod/sumdb/note` that Rekor uses) that commits the log to that root. With both,
//! an entry is proven to be in the log the trusted root names, whatever a registry says.

use sha2::{Digest as _, Sha256};

use crate::verify::keys::PublicKey;

/// A SHA-256 tree hash.
pub type Hash = [u8; 32];

/// The hash of a leaf: `SHA-256(0x00 || entry)`.
pub fn leaf_hash(entry: &[u8]) -> Hash {
    let mut hasher = Sha256::new();
    hasher.update([0u8]);
    hasher.update(entry);
    hasher.finalize().into()
}

/// The hash of an inner node: `SHA-256(0x01 || left || right)`.
pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    let mut hasher = Sha256::new();
    hasher.update([1u8]);
    hasher.update(left);
    hasher.update(right);
    hasher.finalize().into()
}

/// Check that `leaf` is entry `index` of the tree of `size` entries whose root is `root`,
/// with the audit path `proof` (RFC 9162 section 2.1.3.2).
pub fn verify_inclusion(
    index: u64,
    size: u64,
    leaf: &Hash,
    proof: &[Hash],
    root: &Hash,
) -> Result<(), String> {
    if index >= size {
        return Err(format!(
            "entry index {index} is not inside a tree of {size} entries"
        ));
    }
    let (mut fn_, mut sn) = (index, size - 1);
    let mut hash = *leaf;
    for sibling in proof {
        if sn == 0 {
            return Err(format!(
                "the audit path has {} hashes, more than a tree of {size} needs for entry {index}",
                proof.len()
            ));
        }
        if fn_ & 1 == 1 || fn_ == sn {
            hash = node_hash(sibling, &hash);
            if fn_ & 1 == 0 {
                while fn_ & 1 == 0 && fn_ != 0 {
                    fn_ >>= 1;
                    sn >>= 1;
                }
            }
        } else {
            hash = node_hash(&hash, sibling);
        }
        fn_ >>= 1;
        sn >>= 1;
    }
    if sn != 0 {
        return Err(format!(
            "the audit path has {} hashes, fewer than a tree of {size} needs for entry {index}",
            proof.len()
        ));
    }
    if &hash != root {
        return Err(format!(
            "the audit path leads to root {}, not to the proof's root {}",
            hex::encode(hash),
            hex::encode(root)
        ));
    }
    Ok(())
}

/// A checkpoint's body: which log, how big, which root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    /// The log's origin line (`rekor.sigstore.dev - 1193050959916656506`).
    pub origin: String,
    /// The tree size.
    pub size: u64,
    /// The root hash.
    pub root: Hash,
}

/// Parse a signed note and verify one of its signatures with `key`, whose key hint (the first
/// four bytes of the log ID, the SHA-256 of the key's SubjectPublicKeyInfo) is `log_id[..4]`.
pub fn verify_checkpoint(
    envelope: &str,
    key: &PublicKey,
    log_id: &[u8],
) -> Result<Checkpoint, String> {
    let Some(split) = envelope.find("\n\n") else {
        return Err("the checkpoint has no blank line before its signatures".into());
    };
    let text = &envelope[..split + 1];
    let mut lines = text.lines();
    let origin = lines.next().unwrap_or_default().to_string();
    let size = lines
        .next()
        .and_then(|l| l.parse::<u64>().ok())
        .ok_or("the checkpoint's second line is not a tree size")?;
    let root = lines
        .next()
        .and_then(|l| base64_decode(l).ok())
        .and_then(|r| Hash::try_from(r.as_slice()).ok())
        .ok_or("the checkpoint's third line is not a base64 SHA-256 root hash")?;
    if origin.is_empty() {
        return Err("the checkpoint names no origin".into());
    }
    let hint = log_id
        .get(..4)
        .ok_or("the log ID is shorter than a key hint")?;
    let mut tried = 0;
    for line in envelope[split + 2..].lines().filter(|l| !l.is_empty()) {
        let Some(rest) = line.strip_prefix("\u{2014} ") else {
            return Err(format!(
                "checkpoint signature line `{line}` does not start with `— `"
            ));
        };
        let Some((_name, signature)) = rest.rsplit_once(' ') else {
            return Err(format!(
                "checkpoint signature line `{line}` has no signature"
            ));
        };
        let Ok(signature) = base64_decode(signature) else {
            return Err(format!("checkpoint signature line `{line}` is not base64"));
        };
        if signature.len() < 5 || &signature[..4] != hint {
            continue;
        }
        tried += 1;
        if key
            .verify(text.as_bytes(), &signature[4..], key.default_hash())
            .is_ok()
        {
            return Ok(Checkpoint { origin, size, root });
        }
    }
    Err(if tried == 0 {
        "the checkpoint carries no signature by the log's key".into()
    } else {
        "the checkpoint's signature does not verify with the log's key".into()
    })
}

fn base64_decode(text: &str) -> Result<Vec<u8>, base64::DecodeError> {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.decode(text.trim())
}

#[cfg(test)]
mod tests;
