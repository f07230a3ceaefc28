//! A sigstore instance in miniature, for keyless cosign signatures made at test time: a
//! Fulcio-like CA (root and intermediate), leaf certificates as Fulcio issues them (empty
//! subject, the identity as SAN, keyUsage digitalSignature, extendedKeyUsage codeSigning, the
//! OIDC issuer in extensions 1.3.6.1.4.1.57264.1.1 (raw) and .1.8 (DER UTF8String), an
//! embedded SCT of a CT log over the precertificate), a Rekor log (entries, signed entry
//! timestamps over the canonical JSON of `{body, integratedTime, logID, logIndex}`, an RFC 6962
//! Merkle tree, the checkpoint as a signed note) and the `trusted_root.json` naming them all.
//! Built from the specifications (RFC 6962, sigstore's protobuf-specs, Rekor's types), with
//! nothing of acrpull's verifier.

use base64::Engine as _;
use rcgen::{
    CertificateParams, CustomExtension, DistinguishedName, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose, SanType,
};
use serde_json::{json, Value};
use sha2::{Digest as _, Sha256};
use time::OffsetDateTime;

use crate::artifacts::Subject;
use crate::cosign::{Key, SignedPayload};
use crate::notation::{self, Issued};

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// The SHA-256 of a key's DER SubjectPublicKeyInfo: a Rekor or CT log ID.
fn log_id(key: &Key) -> [u8; 32] {
    Sha256::digest(spki_der(key)).into()
}

fn spki_der(key: &Key) -> Vec<u8> {
    let pem = key.public_pem();
    let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    base64::engine::general_purpose::STANDARD
        .decode(body)
        .expect("PEM body")
}

/// Who a leaf certificate names.
#[derive(Debug, Clone)]
pub struct Identity {
    /// An email SAN, else a URI SAN.
    pub email: Option<String>,
    /// A URI SAN.
    pub uri: Option<String>,
    /// The OIDC issuer.
    pub issuer: String,
    /// Validity start.
    pub not_before: OffsetDateTime,
    /// Validity end (Fulcio: ten minutes later).
    pub not_after: OffsetDateTime,
}

impl Identity {
    /// An email identity, valid from five minutes ago for ten minutes.
    pub fn email(email: &str, issuer: &str) -> Identity {
        let now = OffsetDateTime::now_utc();
        Identity {
            email: Some(email.into()),
            uri: None,
            issuer: issuer.into(),
            not_before: now - time::Duration::minutes(5),
            not_after: now + time::Duration::minutes(5),
        }
    }

    /// A URI identity (a CI workflow), valid likewise.
    pub fn uri(uri: &str, issuer: &str) -> Identity {
        Identity {
            email: None,
            uri: Some(uri.into()),
            ..Identity::email("", issuer)
        }
    }
}

/// A certificate issued to an identity, and its key.
pub struct Signer {
    /// The certificate, DER.
    pub der: Vec<u8>,
    /// The certificate, PEM.
    pub pem: String,
    /// The signing key.
    pub key: Key,
    /// A time inside the certificate's validity (when the test says it was logged).
    pub signed_at: i64,
}

/// A Rekor entry with everything a verifier may be given about it.
#[derive(Debug, Clone)]
pub struct Logged {
    /// The entry body (JSON).
    pub body: Vec<u8>,
    /// When it was integrated.
    pub integrated_time: i64,
    /// Its index in the log.
    pub log_index: i64,
    /// The log ID.
    pub log_id: [u8; 32],
    /// The signed entry timestamp.
    pub set: Vec<u8>,
    /// The entry's index in the tree.
    pub tree_index: u64,
    /// The tree size.
    pub tree_size: u64,
    /// The root hash.
    pub root: [u8; 32],
    /// The audit path.
    pub hashes: Vec<[u8; 32]>,
    /// The checkpoint (signed note).
    pub checkpoint: String,
    /// The entry's kind (`hashedrekord`, `dsse`).
    pub kind: String,
}

impl Logged {
    /// cosign's `dev.sigstore.cosign/bundle` annotation.
    pub fn annotation(&self) -> String {
        json!({
            "SignedEntryTimestamp": b64(&self.set),
            "Payload": {"body": b64(&self.body), "integratedTime": self.integrated_time,
                        "logIndex": self.log_index, "logID": hex::encode(self.log_id)},
        })
        .to_string()
    }

    /// A bundle's `tlogEntries` item (protobuf JSON: 64-bit integers as strings).
    pub fn bundle_entry(&self) -> Value {
        json!({
            "logIndex": self.log_index.to_string(),
            "logId": {"keyId": b64(&self.log_id)},
            "kindVersion": {"kind": self.kind, "version": "0.0.1"},
            "integratedTime": self.integrated_time.to_string(),
            "inclusionPromise": {"signedEntryTimestamp": b64(&self.set)},
            "inclusionProof": {
                "logIndex": self.tree_index.to_string(),
                "rootHash": b64(&self.root),
                "treeSize": self.tree_size.to_string(),
                "hashes": self.hashes.iter().map(|h| b64(h)).collect::<Vec<_>>(),
                "checkpoint": {"envelope": self.checkpoint},
            },
            "canonicalizedBody": b64(&self.body),
        })
    }
}

/// RFC 6962 hashes.
fn leaf_hash(entry: &[u8]) -> [u8; 32] {
    Sha256::new()
        .chain_update([0u8])
        .chain_update(entry)
        .finalize()
        .into()
}

fn node_hash(left: &[u8; 32], right: &[u8; 32]) -> [u8; 32] {
    Sha256::new()
        .chain_update([1u8])
        .chain_update(left)
        .chain_update(right)
        .finalize()
        .into()
}

fn split(n: usize) -> usize {
    let mut k = 1;
    while k * 2 < n {
        k *= 2;
    }
    k
}

/// MTH (RFC 6962 2.1).
pub fn tree_root(leaves: &[[u8; 32]]) -> [u8; 32] {
    if leaves.len() == 1 {
        return leaves[0];
    }
    let k = split(leaves.len());
    node_hash(&tree_root(&leaves[..k]), &tree_root(&leaves[k..]))
}

/// `PATH(m, D[n])` (RFC 6962 2.1.1).
pub fn audit_path(m: usize, leaves: &[[u8; 32]]) -> Vec<[u8; 32]> {
    if leaves.len() == 1 {
        return Vec::new();
    }
    let k = split(leaves.len());
    let (mut path, other) = if m < k {
        (audit_path(m, &leaves[..k]), tree_root(&leaves[k..]))
    } else {
        (audit_path(m - k, &leaves[k..]), tree_root(&leaves[..k]))
    };
    path.push(other);
    path
}

/// The CA, the logs and their keys.
pub struct Sigstore {
    /// Fulcio's root.
    pub root: Issued,
    /// Fulcio's intermediate (issues the leaves).
    pub intermediate: Issued,
    /// Rekor's key.
    pub rekor: Key,
    /// The CT log's key.
    pub ct: Key,
}

impl Default for Sigstore {
    fn default() -> Self {
        Self::new()
    }
}

impl Sigstore {
    /// A new instance, every key fresh.
    pub fn new() -> Sigstore {
        let root = notation::root_ca("sigstore-test");
        let intermediate_key = notation::Key::generate(notation::KeyKind::P256);
        let mut params = notation::ca_params("sigstore-test-intermediate");
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::CodeSigning];
        let intermediate = params
            .signed_by(&intermediate_key.pair, &root.cert, &root.key.pair)
            .expect("intermediate");
        Sigstore {
            root,
            intermediate: Issued {
                cert: intermediate,
                key: intermediate_key,
            },
            rekor: Key::p256(),
            ct: Key::p256(),
        }
    }

    /// The CA certificates as PEM (intermediate, then root): cosign's `chain` annotation,
    /// and a policy's `fulcio.caData`.
    pub fn chain_pem(&self) -> String {
        format!("{}{}", self.intermediate.pem(), self.root.pem())
    }

    /// sigstore's `trusted_root.json` for this instance (`ct`: with the CT log).
    pub fn trusted_root(&self, ct: bool) -> Value {
        let start = "2020-01-01T00:00:00Z";
        let log = |url: &str, key: &Key| {
            json!({
                "baseUrl": url, "hashAlgorithm": "SHA2_256",
                "publicKey": {"rawBytes": b64(&spki_der(key)), "keyDetails": "PKIX_ECDSA_P256_SHA_256",
                              "validFor": {"start": start}},
                "logId": {"keyId": b64(&log_id(key))},
            })
        };
        json!({
            "mediaType": "application/vnd.dev.sigstore.trustedroot+json;version=0.1",
            "tlogs": [log("https://rekor.test", &self.rekor)],
            "certificateAuthorities": [{
                "subject": {"organization": "acrpull-test.io", "commonName": "sigstore-test"},
                "uri": "https://fulcio.test",
                "certChain": {"certificates": [{"rawBytes": b64(&self.intermediate.der())},
                                               {"rawBytes": b64(&self.root.der())}]},
                "validFor": {"start": start},
            }],
            "ctlogs": if ct { vec![log("https://ctfe.test", &self.ct)] } else { Vec::new() },
            "timestampAuthorities": [],
        })
    }

    /// A certificate for `identity`, issued as Fulcio issues it, with an embedded SCT.
    pub fn issue(&self, identity: &Identity) -> Signer {
        let key = p256::ecdsa::SigningKey::random(&mut rand_core::OsRng);
        let pkcs8 = {
            use p256::pkcs8::EncodePrivateKey as _;
            key.to_pkcs8_der().expect("PKCS#8").as_bytes().to_vec()
        };
        let pair = KeyPair::try_from(pkcs8.as_slice()).expect("key for rcgen");
        let mut params = CertificateParams::default();
        params.distinguished_name = DistinguishedName::new();
        params.is_ca = IsCa::NoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::CodeSigning];
        params.not_before = identity.not_before;
        params.not_after = identity.not_after;
        params.serial_number = Some(rcgen::SerialNumber::from_slice(&rand_serial()));
        if let Some(email) = &identity.email {
            params.subject_alt_names = vec![SanType::Rfc822Name(
                email.as_str().try_into().expect("email"),
            )];
        }
        if let Some(uri) = &identity.uri {
            params.subject_alt_names = vec![SanType::URI(uri.as_str().try_into().expect("URI"))];
        }
        let issuer = identity.issuer.as_bytes().to_vec();
        let mut utf8 = vec![0x0c, issuer.len() as u8];
        utf8.extend_from_slice(&issuer);
        params.custom_extensions = vec![
            CustomExtension::from_oid_content(&[1, 3, 6, 1, 4, 1, 57264, 1, 1], issuer),
            CustomExtension::from_oid_content(&[1, 3, 6, 1, 4, 1, 57264, 1, 8], utf8),
        ];
        // The precertificate's TBS is the certificate's without the SCT list: issue once
        // without it, have the CT log sign that TBS, then issue with the SCT appended.
        let pre = params
            .clone()
            .signed_by(&pair, &self.intermediate.cert, &self.intermediate.key.pair)
            .expect("precertificate");
        let sct_list = self.sct(&tbs_of(pre.der()));
        params
            .custom_extensions
            .push(CustomExtension::from_oid_content(
                &[1, 3, 6, 1, 4, 1, 11129, 2, 4, 2],
                sct_list,
            ));
        let cert = params
            .signed_by(&pair, &self.intermediate.cert, &self.intermediate.key.pair)
            .expect("leaf");
        Signer {
            der: cert.der().to_vec(),
            pem: cert.pem(),
            key: Key::P256(key),
            signed_at: identity.not_before.unix_timestamp() + 60,
        }
    }

    /// The SCT list extension value (DER OCTET STRING of the TLS list) over `tbs`.
    fn sct(&self, tbs: &[u8]) -> Vec<u8> {
        let issuer_key_hash = Sha256::digest(self.intermediate.key.pair.public_key_der());
        let timestamp = (OffsetDateTime::now_utc().unix_timestamp() as u64) * 1000;
        let mut signed = vec![0u8, 0u8];
        signed.extend_from_slice(&timestamp.to_be_bytes());
        signed.extend_from_slice(&1u16.to_be_bytes());
        signed.extend_from_slice(&issuer_key_hash);
        signed.extend_from_slice(&(tbs.len() as u32).to_be_bytes()[1..]);
        signed.extend_from_slice(tbs);
        signed.extend_from_slice(&0u16.to_be_bytes());
        let signature = self.ct.sign(&signed);
        let mut sct = vec![0u8];
        sct.extend_from_slice(&log_id(&self.ct));
        sct.extend_from_slice(&timestamp.to_be_bytes());
        sct.extend_from_slice(&0u16.to_be_bytes());
        sct.extend_from_slice(&[4, 3]); // sha256, ecdsa
        sct.extend_from_slice(&(signature.len() as u16).to_be_bytes());
        sct.extend_from_slice(&signature);
        let mut list = ((sct.len() + 2) as u16).to_be_bytes().to_vec();
        list.extend_from_slice(&(sct.len() as u16).to_be_bytes());
        list.extend_from_slice(&sct);
        let mut octets = vec![0x04];
        octets.extend_from_slice(&der_length(list.len()));
        octets.extend_from_slice(&list);
        octets
    }

    /// Log `body` at `integrated_time` (signed by `rekor`, normally `self.rekor`): the entry
    /// is leaf 3 of a tree of 6, the SET and checkpoint signed by that key.
    pub fn log_with(&self, rekor: &Key, body: &[u8], kind: &str, integrated_time: i64) -> Logged {
        let id = log_id(rekor);
        let log_index = 1000;
        let mut leaves: Vec<[u8; 32]> = (0..6u8).map(|i| leaf_hash(&[i; 8])).collect();
        leaves[3] = leaf_hash(body);
        let root = tree_root(&leaves);
        let canonical = format!(
            r#"{{"body":"{}","integratedTime":{integrated_time},"logID":"{}","logIndex":{log_index}}}"#,
            b64(body),
            hex::encode(id)
        );
        let note = format!("rekor.test - 4242\n{}\n{}\n", leaves.len(), b64(&root));
        let mut blob = id[..4].to_vec();
        blob.extend_from_slice(&rekor.sign(note.as_bytes()));
        Logged {
            body: body.to_vec(),
            integrated_time,
            log_index,
            log_id: id,
            set: rekor.sign(canonical.as_bytes()),
            tree_index: 3,
            tree_size: leaves.len() as u64,
            root,
            hashes: audit_path(3, &leaves),
            checkpoint: format!("{note}\n\u{2014} rekor.test {}\n", b64(&blob)),
            kind: kind.into(),
        }
    }

    /// A `.sig` layer signed keylessly by `signer` for `subject`: the payload, the signature,
    /// the certificate and chain annotations and the Rekor entry (logged at `signed_at`).
    pub fn sign_layer(&self, signer: &Signer, subject: &Subject, reference: &str) -> SignedPayload {
        let mut layer = SignedPayload::new(&signer.key, subject, reference);
        let body = hashedrekord(&layer.payload, &layer.signature, &signer.pem);
        let logged = self.log_with(&self.rekor, &body, "hashedrekord", signer.signed_at);
        layer.rekor_bundle = Some(logged.annotation());
        layer.certificate = Some(signer.pem.clone());
        layer.chain = Some(self.chain_pem());
        layer
    }

    /// A v0.3 bundle signed keylessly by `signer`: a DSSE envelope of `statement`, the
    /// certificate, and the `dsse` Rekor entry with SET, inclusion proof and checkpoint.
    pub fn dsse_bundle(&self, signer: &Signer, statement: &[u8]) -> Value {
        let payload_type = "application/vnd.in-toto+json";
        let signature = signer
            .key
            .sign(&crate::cosign::pae(payload_type, statement));
        let envelope = json!({
            "payload": b64(statement), "payloadType": payload_type,
            "signatures": [{"sig": b64(&signature), "keyid": ""}],
        });
        let body = serde_json::to_vec(&json!({
            "apiVersion": "0.0.1", "kind": "dsse",
            "spec": {
                "envelopeHash": {"algorithm": "sha256",
                                 "value": hex::encode(Sha256::digest(envelope.to_string()))},
                "payloadHash": {"algorithm": "sha256", "value": hex::encode(Sha256::digest(statement))},
                "signatures": [{"signature": b64(&signature), "verifier": b64(signer.pem.as_bytes())}],
            },
        }))
        .unwrap_or_default();
        let logged = self.log_with(&self.rekor, &body, "dsse", signer.signed_at);
        json!({
            "mediaType": crate::cosign::BUNDLE_V03,
            "verificationMaterial": {"certificate": {"rawBytes": b64(&signer.der)},
                                     "tlogEntries": [logged.bundle_entry()]},
            "dsseEnvelope": envelope,
        })
    }
}

/// A Rekor `hashedrekord` 0.0.1 body recording `signature` over `payload` by a certificate.
pub fn hashedrekord(payload: &[u8], signature: &[u8], certificate_pem: &str) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "apiVersion": "0.0.1", "kind": "hashedrekord",
        "spec": {
            "data": {"hash": {"algorithm": "sha256", "value": hex::encode(Sha256::digest(payload))}},
            "signature": {"content": b64(signature),
                          "publicKey": {"content": b64(certificate_pem.as_bytes())}},
        },
    }))
    .unwrap_or_default()
}

fn rand_serial() -> [u8; 16] {
    let mut serial = [0u8; 16];
    rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, &mut serial);
    serial[0] &= 0x7f;
    serial[0] |= 0x01;
    serial
}

fn der_length(len: usize) -> Vec<u8> {
    if len < 0x80 {
        vec![len as u8]
    } else if len < 0x100 {
        vec![0x81, len as u8]
    } else {
        vec![0x82, (len >> 8) as u8, len as u8]
    }
}

/// The `tbsCertificate` element of a certificate's DER.
fn tbs_of(der: &[u8]) -> Vec<u8> {
    let header = |at: usize| -> (usize, usize) {
        let first = der[at + 1] as usize;
        if first < 0x80 {
            (2, first)
        } else {
            let n = first & 0x7f;
            let len = der[at + 2..at + 2 + n]
                .iter()
                .fold(0usize, |a, b| (a << 8) | *b as usize);
            (2 + n, len)
        }
    };
    let (outer, _) = header(0);
    let (inner, len) = header(outer);
    der[outer..outer + inner + len].to_vec()
}
