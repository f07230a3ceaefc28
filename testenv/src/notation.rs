//! Real Notary Project signatures for tests, made the way Notation makes them: a certificate
//! chain (root CA, intermediate CA, code-signing leaf) generated per test, and JWS or COSE
//! envelopes signed with the leaf key over a payload naming the target manifest
//! (signature-envelope-jws.md, signature-envelope-cose.md). Also the configuration directory
//! Notation reads (`trustpolicy.json`, `truststore/x509/<type>/<name>/`).
//!
//! Keys: RSA (PS256/PS384 by size) and ECDSA P-256/P-384 (ES256/ES384). Certificates are
//! built with rcgen, signatures with ring, RSA keys generated with the `rsa` crate (ring
//! cannot generate them).

use std::path::Path;

use base64::Engine as _;
use ciborium::Value as Cbor;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};
use serde_json::json;
use time::OffsetDateTime;

use crate::artifacts::Subject;

/// A signing key type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyKind {
    /// RSA 2048 (PS256).
    Rsa2048,
    /// RSA 3072 (PS384).
    Rsa3072,
    /// ECDSA P-256 (ES256).
    P256,
    /// ECDSA P-384 (ES384).
    P384,
}

/// A key pair usable both by rcgen (certificates) and ring (envelope signatures).
pub struct Key {
    /// Its type.
    pub kind: KeyKind,
    /// For rcgen.
    pub pair: KeyPair,
    pkcs8: Vec<u8>,
}

impl Key {
    /// A fresh key.
    pub fn generate(kind: KeyKind) -> Key {
        match kind {
            KeyKind::P256 | KeyKind::P384 => {
                let alg = if kind == KeyKind::P256 {
                    &rcgen::PKCS_ECDSA_P256_SHA256
                } else {
                    &rcgen::PKCS_ECDSA_P384_SHA384
                };
                let pair = KeyPair::generate_for(alg).expect("ECDSA key");
                let pkcs8 = pair.serialize_der();
                Key { kind, pair, pkcs8 }
            }
            KeyKind::Rsa2048 | KeyKind::Rsa3072 => {
                use rsa::pkcs8::EncodePrivateKey as _;
                let bits = if kind == KeyKind::Rsa2048 { 2048 } else { 3072 };
                let private =
                    rsa::RsaPrivateKey::new(&mut rsa::rand_core::OsRng, bits).expect("RSA key");
                let pkcs8 = private.to_pkcs8_der().expect("PKCS#8").as_bytes().to_vec();
                let pair = KeyPair::from_pkcs8_der_and_sign_algo(
                    &rustls_pki_types::PrivatePkcs8KeyDer::from(pkcs8.clone()),
                    &rcgen::PKCS_RSA_SHA256,
                )
                .expect("RSA key for rcgen");
                Key { kind, pair, pkcs8 }
            }
        }
    }

    /// The JWS `alg` the Notary Project assigns to this key.
    pub fn jws_alg(&self) -> &'static str {
        match self.kind {
            KeyKind::Rsa2048 => "PS256",
            KeyKind::Rsa3072 => "PS384",
            KeyKind::P256 => "ES256",
            KeyKind::P384 => "ES384",
        }
    }

    /// The COSE `alg` the Notary Project assigns to this key.
    pub fn cose_alg(&self) -> i64 {
        match self.kind {
            KeyKind::Rsa2048 => -37,
            KeyKind::Rsa3072 => -38,
            KeyKind::P256 => -7,
            KeyKind::P384 => -35,
        }
    }

    /// Sign `data` with the algorithm the key implies (RSA-PSS with salt = hash length, or
    /// ECDSA with a fixed-size `r || s`).
    pub fn sign(&self, data: &[u8]) -> Vec<u8> {
        let rng = ring::rand::SystemRandom::new();
        match self.kind {
            KeyKind::P256 | KeyKind::P384 => {
                let alg = if self.kind == KeyKind::P256 {
                    &ring::signature::ECDSA_P256_SHA256_FIXED_SIGNING
                } else {
                    &ring::signature::ECDSA_P384_SHA384_FIXED_SIGNING
                };
                let pair = ring::signature::EcdsaKeyPair::from_pkcs8(alg, &self.pkcs8, &rng)
                    .expect("ECDSA key for ring");
                pair.sign(&rng, data)
                    .expect("ECDSA signature")
                    .as_ref()
                    .to_vec()
            }
            KeyKind::Rsa2048 | KeyKind::Rsa3072 => {
                let pair =
                    ring::signature::RsaKeyPair::from_pkcs8(&self.pkcs8).expect("RSA key for ring");
                let padding = if self.kind == KeyKind::Rsa2048 {
                    &ring::signature::RSA_PSS_SHA256
                } else {
                    &ring::signature::RSA_PSS_SHA384
                };
                let mut signature = vec![0; pair.public().modulus_len()];
                pair.sign(padding, &rng, data, &mut signature)
                    .expect("RSA-PSS signature");
                signature
            }
        }
    }
}

/// A certificate and its key.
pub struct Issued {
    /// The certificate (also the issuer handle for rcgen).
    pub cert: rcgen::Certificate,
    /// Its key.
    pub key: Key,
}

impl Issued {
    /// DER bytes.
    pub fn der(&self) -> Vec<u8> {
        self.cert.der().to_vec()
    }

    /// PEM text.
    pub fn pem(&self) -> String {
        self.cert.pem()
    }
}

/// What the leaf certificate looks like.
#[derive(Debug, Clone)]
pub struct LeafSpec {
    /// Its key.
    pub key: KeyKind,
    /// Subject attributes (C, ST, L, O, OU, CN).
    pub subject: Vec<(DnType, String)>,
    /// Extended key usages (none: the extension is absent).
    pub extended_key_usages: Vec<ExtendedKeyUsagePurpose>,
    /// Validity start.
    pub not_before: OffsetDateTime,
    /// Validity end.
    pub not_after: OffsetDateTime,
    /// CRL distribution point URLs (none: the extension is absent).
    pub crl_urls: Vec<String>,
}

impl Default for LeafSpec {
    fn default() -> Self {
        let now = OffsetDateTime::now_utc();
        LeafSpec {
            key: KeyKind::P256,
            subject: vec![
                (DnType::CountryName, "US".into()),
                (DnType::StateOrProvinceName, "WA".into()),
                (DnType::LocalityName, "Seattle".into()),
                (DnType::OrganizationName, "acrpull-test.io".into()),
                (DnType::CommonName, "Signer".into()),
            ],
            extended_key_usages: vec![ExtendedKeyUsagePurpose::CodeSigning],
            not_before: now - time::Duration::days(1),
            not_after: now + time::Duration::days(365),
            crl_urls: Vec::new(),
        }
    }
}

fn name(attributes: &[(DnType, String)]) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    for (kind, value) in attributes {
        dn.push(kind.clone(), value.as_str());
    }
    dn
}

/// The parameters of a CA certificate (P-256, keyCertSign and cRLSign, valid for ten years).
pub fn ca_params(common_name: &str) -> CertificateParams {
    let mut params = CertificateParams::default();
    params.distinguished_name = name(&[
        (DnType::CountryName, "US".into()),
        (DnType::StateOrProvinceName, "WA".into()),
        (DnType::OrganizationName, "acrpull-test.io".into()),
        (DnType::CommonName, common_name.into()),
    ]);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let now = OffsetDateTime::now_utc();
    params.not_before = now - time::Duration::days(30);
    params.not_after = now + time::Duration::days(3650);
    params
}

/// A root CA (ECDSA P-256) named `name`.
pub fn root_ca(common_name: &str) -> Issued {
    let key = Key::generate(KeyKind::P256);
    let cert = ca_params(common_name).self_signed(&key.pair).expect("root");
    Issued { cert, key }
}

/// A chain: root CA, intermediate CA, leaf (leaf first in [`Chain::ders`]).
pub struct Chain {
    /// The root.
    pub root: Issued,
    /// The intermediate.
    pub intermediate: Issued,
    /// The signing certificate.
    pub leaf: Issued,
}

impl Chain {
    /// A new chain under a new root.
    pub fn new(leaf: &LeafSpec) -> Chain {
        Chain::under(root_ca("acrpull Test Root"), leaf)
    }

    /// A new intermediate and leaf under `root`.
    pub fn under(root: Issued, spec: &LeafSpec) -> Chain {
        let intermediate_key = Key::generate(KeyKind::P256);
        let intermediate = ca_params("acrpull Test Intermediate")
            .signed_by(&intermediate_key.pair, &root.cert, &root.key.pair)
            .expect("intermediate");
        let intermediate = Issued {
            cert: intermediate,
            key: intermediate_key,
        };
        let leaf_key = Key::generate(spec.key);
        let mut params = CertificateParams::default();
        params.distinguished_name = name(&spec.subject);
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = spec.extended_key_usages.clone();
        params.not_before = spec.not_before;
        params.not_after = spec.not_after;
        if !spec.crl_urls.is_empty() {
            params.crl_distribution_points = vec![rcgen::CrlDistributionPoint {
                uris: spec.crl_urls.clone(),
            }];
        }
        let leaf = params
            .signed_by(&leaf_key.pair, &intermediate.cert, &intermediate.key.pair)
            .expect("leaf");
        Chain {
            root,
            intermediate,
            leaf: Issued {
                cert: leaf,
                key: leaf_key,
            },
        }
    }

    /// The certificates, leaf first, as the envelope carries them.
    pub fn ders(&self) -> Vec<Vec<u8>> {
        vec![self.leaf.der(), self.intermediate.der(), self.root.der()]
    }
}

/// What goes into the envelope besides the chain.
#[derive(Debug, Clone)]
pub struct SignSpec {
    /// The manifest signed (`targetArtifact`).
    pub target: Subject,
    /// `io.cncf.notary.signingTime`.
    pub signing_time: OffsetDateTime,
    /// `io.cncf.notary.expiry`.
    pub expiry: Option<OffsetDateTime>,
}

impl SignSpec {
    /// Sign `target` now, no expiry.
    pub fn new(target: &Subject) -> SignSpec {
        SignSpec {
            target: target.clone(),
            signing_time: OffsetDateTime::now_utc() - time::Duration::minutes(1),
            expiry: None,
        }
    }

    fn payload(&self) -> Vec<u8> {
        serde_json::to_vec(&json!({"targetArtifact": {
            "mediaType": self.target.media_type,
            "digest": self.target.digest,
            "size": self.target.size,
        }}))
        .unwrap_or_default()
    }
}

fn rfc3339(at: OffsetDateTime) -> String {
    at.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

/// A JWS envelope (`application/jose+json`) of `spec` signed by `chain`'s leaf.
pub fn sign_jws(chain: &Chain, spec: &SignSpec) -> Vec<u8> {
    let b64url = |bytes: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
    let mut protected = json!({
        "alg": chain.leaf.key.jws_alg(),
        "cty": "application/vnd.cncf.notary.payload.v1+json",
        "crit": ["io.cncf.notary.signingScheme"],
        "io.cncf.notary.signingScheme": "notary.x509",
        "io.cncf.notary.signingTime": rfc3339(spec.signing_time),
    });
    if let Some(expiry) = spec.expiry {
        protected["io.cncf.notary.expiry"] = json!(rfc3339(expiry));
        protected["crit"] = json!(["io.cncf.notary.signingScheme", "io.cncf.notary.expiry"]);
    }
    let protected = b64url(&serde_json::to_vec(&protected).unwrap_or_default());
    let payload = b64url(&spec.payload());
    let signature = chain
        .leaf
        .key
        .sign(format!("{protected}.{payload}").as_bytes());
    let envelope = json!({
        "payload": payload,
        "protected": protected,
        "header": {
            "x5c": chain.ders().iter().map(|d| base64::engine::general_purpose::STANDARD.encode(d)).collect::<Vec<_>>(),
            "io.cncf.notary.signingAgent": "acrpull-testenv",
        },
        "signature": b64url(&signature),
    });
    serde_json::to_vec(&envelope).unwrap_or_default()
}

fn cbor(value: &Cbor) -> Vec<u8> {
    let mut out = Vec::new();
    ciborium::ser::into_writer(value, &mut out).expect("CBOR");
    out
}

/// A COSE_Sign1 envelope (`application/cose`) of `spec` signed by `chain`'s leaf.
pub fn sign_cose(chain: &Chain, spec: &SignSpec) -> Vec<u8> {
    let text = |s: &str| Cbor::Text(s.to_owned());
    let epoch =
        |at: OffsetDateTime| Cbor::Tag(1, Box::new(Cbor::Integer(at.unix_timestamp().into())));
    let mut critical = vec![text("io.cncf.notary.signingScheme")];
    let mut protected = vec![
        (
            Cbor::Integer(1.into()),
            Cbor::Integer(chain.leaf.key.cose_alg().into()),
        ),
        (
            Cbor::Integer(3.into()),
            text("application/vnd.cncf.notary.payload.v1+json"),
        ),
        (text("io.cncf.notary.signingScheme"), text("notary.x509")),
        (text("io.cncf.notary.signingTime"), epoch(spec.signing_time)),
    ];
    if let Some(expiry) = spec.expiry {
        critical.push(text("io.cncf.notary.expiry"));
        protected.push((text("io.cncf.notary.expiry"), epoch(expiry)));
    }
    protected.insert(1, (Cbor::Integer(2.into()), Cbor::Array(critical)));
    let protected = cbor(&Cbor::Map(protected));
    let payload = spec.payload();
    let to_be_signed = cbor(&Cbor::Array(vec![
        text("Signature1"),
        Cbor::Bytes(protected.clone()),
        Cbor::Bytes(Vec::new()),
        Cbor::Bytes(payload.clone()),
    ]));
    let signature = chain.leaf.key.sign(&to_be_signed);
    let unprotected = Cbor::Map(vec![
        (
            Cbor::Integer(33.into()),
            Cbor::Array(chain.ders().into_iter().map(Cbor::Bytes).collect()),
        ),
        (text("io.cncf.notary.signingAgent"), text("acrpull-testenv")),
    ]);
    cbor(&Cbor::Tag(
        18,
        Box::new(Cbor::Array(vec![
            Cbor::Bytes(protected),
            unprotected,
            Cbor::Bytes(payload),
            Cbor::Bytes(signature),
        ])),
    ))
}

/// Write a Notation configuration directory at `dir`: `policy` as `trustpolicy.json`, and
/// each `(type, name, certificate DER)` into `truststore/x509/<type>/<name>/`.
pub fn write_config(
    dir: &Path,
    policy: &serde_json::Value,
    certificates: &[(&str, &str, Vec<u8>)],
) {
    std::fs::create_dir_all(dir).expect("config dir");
    std::fs::write(
        dir.join("trustpolicy.json"),
        serde_json::to_vec_pretty(policy).unwrap_or_default(),
    )
    .expect("trust policy");
    for (i, (kind, name, der)) in certificates.iter().enumerate() {
        let store = dir.join("truststore/x509").join(kind).join(name);
        std::fs::create_dir_all(&store).expect("store");
        std::fs::write(store.join(format!("cert-{i}.crt")), der).expect("certificate");
    }
}

/// A trust policy of one statement `name` for `scopes` at `level`, trusting the `ca` stores
/// and `identities`.
pub fn policy(
    name: &str,
    scopes: &[&str],
    level: &str,
    stores: &[&str],
    identities: &[&str],
) -> serde_json::Value {
    let mut statement = json!({
        "name": name,
        "registryScopes": scopes,
        "signatureVerification": {"level": level},
    });
    if level != "skip" {
        statement["trustStores"] = json!(stores);
        statement["trustedIdentities"] = json!(identities);
    }
    json!({"version": "1.0", "trustPolicies": [statement]})
}

/// The signature manifest Notation pushes for `envelope` (of `media_type`) over `subject`:
/// `artifactType` `application/vnd.cncf.notary.signature`, the empty config, one layer, the
/// `subject`, and the chain's thumbprints annotation.
pub fn signature_artifact(
    subject: &Subject,
    envelope: Vec<u8>,
    media_type: &str,
    chain: &[Vec<u8>],
) -> crate::artifacts::Artifact {
    use crate::fixtures::{sha256_digest, OCI_MANIFEST};
    let config = b"{}".to_vec();
    let thumbprints: Vec<String> = chain
        .iter()
        .map(|der| sha256_digest(der)[7..].to_owned())
        .collect();
    let annotations = std::collections::BTreeMap::from([(
        "io.cncf.notary.x509chain.thumbprint#S256".to_owned(),
        serde_json::to_string(&thumbprints).unwrap_or_default(),
    )]);
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "artifactType": crate::artifacts::NOTATION_TYPE,
        "config": {"mediaType": crate::artifacts::EMPTY_MEDIA_TYPE, "digest": sha256_digest(&config), "size": 2},
        "layers": [{"mediaType": media_type, "digest": sha256_digest(&envelope), "size": envelope.len()}],
        "subject": {"mediaType": subject.media_type, "digest": subject.digest, "size": subject.size},
        "annotations": annotations,
    });
    crate::artifacts::Artifact {
        name: "notation".to_owned(),
        manifest: serde_json::to_vec(&manifest).unwrap_or_default(),
        media_type: OCI_MANIFEST.to_owned(),
        blobs: vec![
            (sha256_digest(&config), config),
            (sha256_digest(&envelope), envelope),
        ],
        subject: Some(subject.clone()),
        tag: None,
        artifact_type: crate::artifacts::NOTATION_TYPE.to_owned(),
        annotations,
    }
}
