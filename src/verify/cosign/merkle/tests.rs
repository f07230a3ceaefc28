//! RFC 6962 test vectors (the leaves, roots and audit paths of the reference implementation's
//! test data, as certificate-transparency-go and trillian carry them) and checkpoints signed
//! here.

use super::*;

/// The eight leaves of the reference test tree.
const LEAVES: [&str; 8] = [
    "",
    "00",
    "10",
    "2021",
    "3031",
    "40414243",
    "5051525354555657",
    "606162636465666768696a6b6c6d6e6f",
];

/// The root of the tree of the first 1, 2, ..., 8 leaves.
const ROOTS: [&str; 8] = [
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
];

/// (leaf index, tree size, audit path) of the reference test data (indices from 0).
const PROOFS: [(u64, u64, &[&str]); 5] = [
    (0, 1, &[]),
    (
        0,
        8,
        &[
            "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
        ],
    ),
    (
        5,
        8,
        &[
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
            "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        ],
    ),
    (
        2,
        3,
        &["fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125"],
    ),
    (
        1,
        5,
        &[
            "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
        ],
    ),
];

fn hash(text: &str) -> Hash {
    hex::decode(text).unwrap().try_into().unwrap()
}

fn leaves() -> Vec<Hash> {
    LEAVES
        .iter()
        .map(|l| leaf_hash(&hex::decode(l).unwrap()))
        .collect()
}

/// The largest power of two smaller than `n` (n > 1).
fn split(n: usize) -> usize {
    let mut k = 1;
    while k * 2 < n {
        k *= 2;
    }
    k
}

/// RFC 6962 section 2.1: MTH of a list of leaf hashes.
fn root_of(hashes: &[Hash]) -> Hash {
    if hashes.len() == 1 {
        return hashes[0];
    }
    let k = split(hashes.len());
    node_hash(&root_of(&hashes[..k]), &root_of(&hashes[k..]))
}

/// RFC 6962 section 2.1.1: PATH(m, D[n]).
fn path(m: usize, hashes: &[Hash]) -> Vec<Hash> {
    if hashes.len() == 1 {
        return Vec::new();
    }
    let k = split(hashes.len());
    if m < k {
        let mut p = path(m, &hashes[..k]);
        p.push(root_of(&hashes[k..]));
        p
    } else {
        let mut p = path(m - k, &hashes[k..]);
        p.push(root_of(&hashes[..k]));
        p
    }
}

#[test]
fn tree_hashes_match_the_rfc6962_roots() {
    let leaves = leaves();
    for (n, expected) in ROOTS.iter().enumerate() {
        assert_eq!(
            hex::encode(root_of(&leaves[..=n])),
            *expected,
            "tree of {}",
            n + 1
        );
    }
}

#[test]
fn the_reference_audit_paths_verify_and_match_ours() {
    let leaves = leaves();
    for (index, size, proof) in PROOFS {
        let proof: Vec<Hash> = proof.iter().map(|h| hash(h)).collect();
        let root = hash(ROOTS[size as usize - 1]);
        verify_inclusion(index, size, &leaves[index as usize], &proof, &root)
            .unwrap_or_else(|e| panic!("leaf {index} of {size}: {e}"));
        assert_eq!(path(index as usize, &leaves[..size as usize]), proof);
    }
}

#[test]
fn every_leaf_of_every_tree_verifies_and_every_tampering_fails() {
    let leaves = leaves();
    for size in 1..=8u64 {
        let root = hash(ROOTS[size as usize - 1]);
        for index in 0..size {
            let proof = path(index as usize, &leaves[..size as usize]);
            let leaf = &leaves[index as usize];
            verify_inclusion(index, size, leaf, &proof, &root).unwrap();
            // Another leaf, another index, another size, a flipped bit, a hash short or extra.
            let other = &leaves[((index + 1) % 8) as usize];
            assert!(verify_inclusion(index, size, other, &proof, &root).is_err());
            if size > 1 {
                assert!(verify_inclusion((index + 1) % size, size, leaf, &proof, &root).is_err());
            }
            // The path proves membership under a root; the checkpoint binds root and size.
            if size < 8 {
                let grown = hash(ROOTS[size as usize]);
                assert!(verify_inclusion(index, size + 1, leaf, &proof, &grown).is_err());
            }
            for i in 0..proof.len() {
                let mut bad = proof.clone();
                bad[i][0] ^= 1;
                assert!(verify_inclusion(index, size, leaf, &bad, &root).is_err());
            }
            if !proof.is_empty() {
                let short = &proof[..proof.len() - 1];
                assert!(verify_inclusion(index, size, leaf, short, &root).is_err());
            }
            let mut long = proof.clone();
            long.push(root);
            assert!(verify_inclusion(index, size, leaf, &long, &root).is_err());
        }
    }
    assert!(verify_inclusion(8, 8, &leaves[0], &[], &hash(ROOTS[7])).is_err());
}

fn signed_note(key: &p256::ecdsa::SigningKey, hint: &[u8], text: &str) -> String {
    use base64::Engine as _;
    use p256::ecdsa::signature::Signer as _;
    let signature: p256::ecdsa::Signature = key.sign(text.as_bytes());
    let mut blob = hint[..4].to_vec();
    blob.extend_from_slice(signature.to_der().as_bytes());
    format!(
        "{text}\n\u{2014} log.example {}\n",
        base64::engine::general_purpose::STANDARD.encode(blob)
    )
}

#[test]
fn checkpoints_verify_with_the_log_key_only() {
    use base64::Engine as _;
    use p256::pkcs8::EncodePublicKey as _;
    let signing = p256::ecdsa::SigningKey::from_slice(&[7u8; 32]).unwrap();
    let spki = signing.verifying_key().to_public_key_der().unwrap();
    let key = PublicKey::from_spki_der(spki.as_bytes()).unwrap();
    let log_id: Vec<u8> = Sha256::digest(spki.as_bytes()).to_vec();
    let root = hash(ROOTS[7]);
    let text = format!(
        "log.example - 42\n8\n{}\n",
        base64::engine::general_purpose::STANDARD.encode(root)
    );
    let note = signed_note(&signing, &log_id, &text);
    let checkpoint = verify_checkpoint(&note, &key, &log_id).unwrap();
    assert_eq!(checkpoint.size, 8);
    assert_eq!(checkpoint.root, root);
    assert_eq!(checkpoint.origin, "log.example - 42");

    // The text changed after signing: the tree size, then the root.
    let grown = note.replacen("\n8\n", "\n9\n", 1);
    assert!(verify_checkpoint(&grown, &key, &log_id)
        .unwrap_err()
        .contains("does not verify"));
    // Signed by another key with the right hint, or with no signature for this log.
    let other = p256::ecdsa::SigningKey::from_slice(&[9u8; 32]).unwrap();
    let forged = signed_note(&other, &log_id, &text);
    assert!(verify_checkpoint(&forged, &key, &log_id).is_err());
    let unrelated = signed_note(&signing, &[0, 0, 0, 0], &text);
    assert!(verify_checkpoint(&unrelated, &key, &log_id)
        .unwrap_err()
        .contains("no signature by the log's key"));
    assert!(verify_checkpoint("log\n8\n", &key, &log_id).is_err());
}
