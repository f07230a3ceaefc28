//! cosign signatures made for real, with keys generated per test: the simple signing payload
//! exactly as cosign writes it (`critical.identity.docker-reference`,
//! `critical.image.docker-manifest-digest`, `critical.type`, `optional`), signed as
//! `cosign sign --key` signs it (ECDSA over the payload's SHA-256, or SHA-384 for P-384,
//! ASN.1 DER; RSA PKCS #1 v1.5 SHA-256; Ed25519), stored as cosign stores it: the `.sig` tag
//! (`sha256-<hex>.sig`, one layer per signature, the base64 signature in the
//! `dev.cosignproject.cosign/signature` annotation) or a sigstore bundle v0.3 as a referrer
//! (cosign's `BUNDLE_SPEC.md`: artifact type and layer media type
//! `application/vnd.dev.sigstore.bundle.v0.3+json`, a DSSE envelope of an in-toto
//! statement naming the image).

use base64::Engine as _;
use serde_json::{json, Value};

use crate::artifacts::{artifact, blob, empty_config, Artifact, Subject, COSIGN_LAYER_TYPE};
use crate::fixtures::{sha256_digest, OCI_MANIFEST};

/// The sigstore bundle media type (and artifact type of bundle referrers).
pub const BUNDLE_V03: &str = "application/vnd.dev.sigstore.bundle.v0.3+json";

/// A signing key of one of the kinds cosign uses.
pub enum Key {
    /// ECDSA P-256 (cosign's default).
    P256(p256::ecdsa::SigningKey),
    /// ECDSA P-384.
    P384(p384::ecdsa::SigningKey),
    /// RSA 2048.
    Rsa(Box<rsa::RsaPrivateKey>),
    /// Ed25519.
    Ed25519(ed25519_dalek::SigningKey),
}

impl Key {
    /// A new P-256 key.
    pub fn p256() -> Key {
        Key::P256(p256::ecdsa::SigningKey::random(&mut rand_core::OsRng))
    }

    /// A new P-384 key.
    pub fn p384() -> Key {
        Key::P384(p384::ecdsa::SigningKey::random(&mut rand_core::OsRng))
    }

    /// A new RSA 2048 key.
    pub fn rsa() -> Key {
        Key::Rsa(Box::new(
            rsa::RsaPrivateKey::new(&mut rand_core::OsRng, 2048).expect("RSA key generation"),
        ))
    }

    /// A new Ed25519 key.
    pub fn ed25519() -> Key {
        Key::Ed25519(ed25519_dalek::SigningKey::generate(&mut rand_core::OsRng))
    }

    /// The public key as `cosign generate-key-pair` writes `cosign.pub` (PEM `PUBLIC KEY`).
    pub fn public_pem(&self) -> String {
        use p256::pkcs8::{EncodePublicKey, LineEnding};
        let pem = match self {
            Key::P256(key) => key.verifying_key().to_public_key_pem(LineEnding::LF),
            Key::P384(key) => key.verifying_key().to_public_key_pem(LineEnding::LF),
            Key::Rsa(key) => key.to_public_key().to_public_key_pem(LineEnding::LF),
            Key::Ed25519(key) => key.verifying_key().to_public_key_pem(LineEnding::LF),
        };
        pem.expect("encoding a public key")
    }

    /// A signature of `message`.
    pub fn sign(&self, message: &[u8]) -> Vec<u8> {
        use p256::ecdsa::signature::Signer;
        match self {
            Key::P256(key) => {
                let signature: p256::ecdsa::Signature = key.sign(message);
                signature.to_der().as_bytes().to_vec()
            }
            Key::P384(key) => {
                let signature: p384::ecdsa::Signature = key.sign(message);
                signature.to_der().as_bytes().to_vec()
            }
            Key::Rsa(key) => {
                use sha2::Digest as _;
                let digest = sha2::Sha256::digest(message);
                key.sign(rsa::Pkcs1v15Sign::new::<sha2::Sha256>(), &digest)
                    .expect("RSA signing")
            }
            Key::Ed25519(key) => key.sign(message).to_bytes().to_vec(),
        }
    }
}

/// The simple signing payload cosign signs for `digest`, naming `docker_reference`.
pub fn payload(digest: &str, docker_reference: &str) -> Vec<u8> {
    // cosign's Go structs serialise in this order, with `"optional": null` when empty.
    format!(
        r#"{{"critical":{{"identity":{{"docker-reference":"{docker_reference}"}},"image":{{"docker-manifest-digest":"{digest}"}},"type":"cosign container image signature"}},"optional":null}}"#
    )
    .into_bytes()
}

/// One layer of a `.sig` manifest: a payload and the signature stored beside it (which need
/// not match: tests tamper with either).
pub struct SignedPayload {
    /// The payload bytes (the layer blob).
    pub payload: Vec<u8>,
    /// The signature (the annotation, base64-encoded when stored).
    pub signature: Vec<u8>,
    /// The `dev.sigstore.cosign/bundle` annotation (Rekor's signed entry timestamp).
    pub rekor_bundle: Option<String>,
    /// The `dev.sigstore.cosign/certificate` annotation (keyless: the Fulcio certificate, PEM).
    pub certificate: Option<String>,
    /// The `dev.sigstore.cosign/chain` annotation (keyless: intermediates and root, PEM).
    pub chain: Option<String>,
}

impl SignedPayload {
    /// `key`'s signature of the payload for `subject`, naming `docker_reference`.
    pub fn new(key: &Key, subject: &Subject, docker_reference: &str) -> SignedPayload {
        let payload = payload(&subject.digest, docker_reference);
        SignedPayload {
            signature: key.sign(&payload),
            payload,
            rekor_bundle: None,
            certificate: None,
            chain: None,
        }
    }

    /// With the entry a Rekor log signed by `rekor` would give `cosign sign` for it: a
    /// `hashedrekord` of this payload, signature and `signer`'s public key.
    pub fn logged(mut self, rekor: &Key, signer: &Key) -> SignedPayload {
        let body = hashedrekord(&self.payload, &self.signature, signer);
        self.rekor_bundle = Some(rekor_bundle(rekor, &body, 7));
        self
    }
}

/// A Rekor `hashedrekord` 0.0.1 entry recording `signature` over `payload` by `signer`.
pub fn hashedrekord(payload: &[u8], signature: &[u8], signer: &Key) -> Vec<u8> {
    let b64 = |bytes: &[u8]| base64::engine::general_purpose::STANDARD.encode(bytes);
    serde_json::to_vec(&json!({
        "apiVersion": "0.0.1",
        "kind": "hashedrekord",
        "spec": {
            "data": {"hash": {"algorithm": "sha256", "value": &sha256_digest(payload)[7..]}},
            "signature": {
                "content": b64(signature),
                "publicKey": {"content": b64(signer.public_pem().as_bytes())},
            },
        },
    }))
    .unwrap_or_default()
}

/// cosign's `dev.sigstore.cosign/bundle` annotation for `body`: Rekor's signature (`rekor`)
/// over the canonical JSON of the entry's body, time, log ID and index.
pub fn rekor_bundle(rekor: &Key, body: &[u8], log_index: i64) -> String {
    let body = base64::engine::general_purpose::STANDARD.encode(body);
    let log_id = &sha256_digest(rekor.public_pem().as_bytes())[7..];
    let integrated_time = 1_700_000_000_i64;
    let canonical = format!(
        r#"{{"body":"{body}","integratedTime":{integrated_time},"logID":"{log_id}","logIndex":{log_index}}}"#
    );
    let set = base64::engine::general_purpose::STANDARD.encode(rekor.sign(canonical.as_bytes()));
    serde_json::to_string(&json!({
        "SignedEntryTimestamp": set,
        "Payload": {"body": body, "integratedTime": integrated_time,
                    "logIndex": log_index, "logID": log_id},
    }))
    .unwrap_or_default()
}

/// cosign's `.sig` manifest for `subject` holding `layers` (tag `sha256-<hex>.sig`).
pub fn sig_manifest(subject: &Subject, layers: &[SignedPayload]) -> Artifact {
    let mut descriptors = Vec::new();
    let mut blobs = Vec::new();
    let mut diff_ids = Vec::new();
    for layer in layers {
        let (mut descriptor, stored) = blob(COSIGN_LAYER_TYPE, layer.payload.clone());
        descriptor["annotations"] = json!({
            "dev.cosignproject.cosign/signature":
                base64::engine::general_purpose::STANDARD.encode(&layer.signature),
        });
        if let Some(bundle) = &layer.rekor_bundle {
            descriptor["annotations"]["dev.sigstore.cosign/bundle"] = json!(bundle);
        }
        if let Some(certificate) = &layer.certificate {
            descriptor["annotations"]["dev.sigstore.cosign/certificate"] = json!(certificate);
        }
        if let Some(chain) = &layer.chain {
            descriptor["annotations"]["dev.sigstore.cosign/chain"] = json!(chain);
        }
        diff_ids.push(stored.0.clone());
        descriptors.push(descriptor);
        blobs.push(stored);
    }
    let config = json!({
        "architecture": "", "os": "", "created": "0001-01-01T00:00:00Z",
        "config": {}, "rootfs": {"type": "layers", "diff_ids": diff_ids},
    });
    let (config, config_blob) = blob(
        "application/vnd.oci.image.config.v1+json",
        serde_json::to_vec(&config).unwrap_or_default(),
    );
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": config,
        "layers": descriptors,
    });
    let mut all = vec![config_blob];
    all.extend(blobs);
    Artifact {
        name: "cosign".to_owned(),
        manifest: serde_json::to_vec(&manifest).unwrap_or_default(),
        media_type: OCI_MANIFEST.to_owned(),
        blobs: all,
        subject: None,
        tag: Some(format!("sha256-{}.sig", &subject.digest[7..])),
        artifact_type: "application/vnd.oci.image.config.v1+json".to_owned(),
        annotations: Default::default(),
    }
}

/// `key`'s `.sig` manifest for `subject` (one signature, naming `docker_reference`).
pub fn signed(key: &Key, subject: &Subject, docker_reference: &str) -> Artifact {
    sig_manifest(
        subject,
        &[SignedPayload::new(key, subject, docker_reference)],
    )
}

/// DSSE's pre-authentication encoding.
pub fn pae(payload_type: &str, payload: &[u8]) -> Vec<u8> {
    let mut out = format!(
        "DSSEv1 {} {payload_type} {} ",
        payload_type.len(),
        payload.len()
    )
    .into_bytes();
    out.extend_from_slice(payload);
    out
}

/// An in-toto statement about `digest` (cosign's signing predicate).
pub fn statement(digest: &str) -> Vec<u8> {
    let (algorithm, hex) = digest.split_once(':').unwrap_or(("sha256", digest));
    serde_json::to_vec(&json!({
        "_type": "https://in-toto.io/Statement/v1",
        "subject": [{"name": "image", "digest": {algorithm: hex}}],
        "predicateType": "https://sigstore.dev/cosign/sign/v1",
        "predicate": {},
    }))
    .unwrap_or_default()
}

/// A sigstore bundle v0.3 with a DSSE envelope of `statement`, signed by `key`, keyed (its
/// verification material a public key hint).
pub fn dsse_bundle(key: &Key, statement: &[u8]) -> Value {
    let payload_type = "application/vnd.in-toto+json";
    let signature = key.sign(&pae(payload_type, statement));
    let b64 = |bytes: &[u8]| base64::engine::general_purpose::STANDARD.encode(bytes);
    json!({
        "mediaType": BUNDLE_V03,
        "verificationMaterial": {"publicKey": {"hint": sha256_digest(key.public_pem().as_bytes())}},
        "dsseEnvelope": {
            "payload": b64(statement),
            "payloadType": payload_type,
            "signatures": [{"sig": b64(&signature), "keyid": ""}],
        },
    })
}

/// A bundle stored as a referrer of `subject`, as cosign's `BUNDLE_SPEC.md` lays it out.
pub fn bundle_referrer(subject: &Subject, bundle: &Value) -> Artifact {
    let bytes = serde_json::to_vec(bundle).unwrap_or_default();
    let (mut layer, stored) = blob(BUNDLE_V03, bytes);
    layer["annotations"] = json!({
        "org.opencontainers.image.title": format!("{}.sigstore.json", stored.0.replacen(':', "-", 1)),
    });
    let annotations = [(
        "dev.sigstore.bundle.content".to_owned(),
        "dsse-envelope".to_owned(),
    )]
    .into_iter()
    .collect();
    artifact(
        "bundle",
        BUNDLE_V03,
        empty_config(false),
        vec![(layer, stored)],
        subject,
        annotations,
    )
}
