//! Public keys as signers publish them (PEM `PUBLIC KEY`, a DER SubjectPublicKeyInfo) and the
//! one check every scheme needs: does this signature over these bytes verify with this key.
//! ECDSA P-256 and P-384 (ASN.1 DER signatures, as cosign and X.509 write them), RSA
//! (PKCS #1 v1.5 and PSS) and Ed25519. Pure Rust (RustCrypto), no C library.

use sha2::{Digest as _, Sha256, Sha384, Sha512};
use spki::der::Decode;
use spki::{DecodePublicKey, SubjectPublicKeyInfoRef};

/// The hash a signature was made over (the key decides the rest).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hash {
    /// SHA-256.
    Sha256,
    /// SHA-384.
    Sha384,
    /// SHA-512.
    Sha512,
}

/// A public key of a kind acrpull verifies with.
#[derive(Clone)]
pub enum PublicKey {
    /// ECDSA over NIST P-256.
    P256(p256::ecdsa::VerifyingKey),
    /// ECDSA over NIST P-384.
    P384(p384::ecdsa::VerifyingKey),
    /// RSA (2048 bits or more).
    Rsa(rsa::RsaPublicKey),
    /// Ed25519.
    Ed25519(ed25519_dalek::VerifyingKey),
}

impl std::fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PublicKey({})", self.kind())
    }
}

/// Smallest RSA modulus accepted, in bits.
pub const RSA_MIN_BITS: usize = 2048;

/// OIDs of the key algorithms (RFC 5480, RFC 8017, RFC 8410).
const EC_PUBLIC_KEY: spki::ObjectIdentifier =
    spki::ObjectIdentifier::new_unwrap("1.2.840.10045.2.1");
const SECP256R1: spki::ObjectIdentifier = spki::ObjectIdentifier::new_unwrap("1.2.840.10045.3.1.7");
const SECP384R1: spki::ObjectIdentifier = spki::ObjectIdentifier::new_unwrap("1.3.132.0.34");
const RSA_ENCRYPTION: spki::ObjectIdentifier =
    spki::ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.1");
const ED25519: spki::ObjectIdentifier = spki::ObjectIdentifier::new_unwrap("1.3.101.112");

impl PublicKey {
    /// A key from PEM text: `-----BEGIN PUBLIC KEY-----` (SubjectPublicKeyInfo), or an
    /// `RSA PUBLIC KEY` (PKCS #1).
    pub fn from_pem(text: &str) -> Result<Self, String> {
        let text = text.trim();
        if text.starts_with("-----BEGIN RSA PUBLIC KEY-----") {
            use rsa::pkcs1::DecodeRsaPublicKey;
            let key = rsa::RsaPublicKey::from_pkcs1_pem(text)
                .map_err(|e| format!("not a PKCS #1 RSA public key: {e}"))?;
            return Self::rsa(key);
        }
        let (label, der) = spki::der::pem::decode_vec(text.as_bytes())
            .map_err(|e| format!("not a PEM public key: {e}"))?;
        if label != "PUBLIC KEY" {
            return Err(format!(
                "the PEM block is a `{label}`, not a `PUBLIC KEY` (give the public half)"
            ));
        }
        Self::from_spki_der(&der)
    }

    /// A key from a DER SubjectPublicKeyInfo (as certificates carry it).
    pub fn from_spki_der(der: &[u8]) -> Result<Self, String> {
        let info = SubjectPublicKeyInfoRef::from_der(der)
            .map_err(|e| format!("not a SubjectPublicKeyInfo: {e}"))?;
        let algorithm = info.algorithm.oid;
        if algorithm == EC_PUBLIC_KEY {
            let curve = info
                .algorithm
                .parameters_oid()
                .map_err(|e| format!("an EC key without a named curve: {e}"))?;
            let point = info.subject_public_key.raw_bytes();
            return if curve == SECP256R1 {
                p256::ecdsa::VerifyingKey::from_sec1_bytes(point)
                    .map(PublicKey::P256)
                    .map_err(|e| format!("bad P-256 point: {e}"))
            } else if curve == SECP384R1 {
                p384::ecdsa::VerifyingKey::from_sec1_bytes(point)
                    .map(PublicKey::P384)
                    .map_err(|e| format!("bad P-384 point: {e}"))
            } else {
                Err(format!(
                    "EC curve {curve} is not supported (P-256 and P-384 are)"
                ))
            };
        }
        if algorithm == RSA_ENCRYPTION {
            let key = rsa::RsaPublicKey::from_public_key_der(der)
                .map_err(|e| format!("bad RSA public key: {e}"))?;
            return Self::rsa(key);
        }
        if algorithm == ED25519 {
            let bytes: [u8; 32] = info
                .subject_public_key
                .raw_bytes()
                .try_into()
                .map_err(|_| "an Ed25519 key is 32 bytes".to_string())?;
            return ed25519_dalek::VerifyingKey::from_bytes(&bytes)
                .map(PublicKey::Ed25519)
                .map_err(|e| format!("bad Ed25519 key: {e}"));
        }
        Err(format!(
            "key algorithm {algorithm} is not supported (ECDSA P-256/P-384, RSA, Ed25519 are)"
        ))
    }

    fn rsa(key: rsa::RsaPublicKey) -> Result<Self, String> {
        use rsa::traits::PublicKeyParts;
        let bits = key.n().bits();
        if bits < RSA_MIN_BITS {
            return Err(format!(
                "an RSA key of {bits} bits is too weak (at least {RSA_MIN_BITS})"
            ));
        }
        Ok(PublicKey::Rsa(key))
    }

    /// What kind of key, for messages: `ECDSA P-256`, `RSA 3072`, `Ed25519`.
    pub fn kind(&self) -> String {
        match self {
            PublicKey::P256(_) => "ECDSA P-256".into(),
            PublicKey::P384(_) => "ECDSA P-384".into(),
            PublicKey::Rsa(key) => {
                use rsa::traits::PublicKeyParts;
                format!("RSA {}", key.n().bits())
            }
            PublicKey::Ed25519(_) => "Ed25519".into(),
        }
    }

    /// The DER SubjectPublicKeyInfo.
    pub fn to_spki_der(&self) -> Vec<u8> {
        use spki::EncodePublicKey;
        let document = match self {
            PublicKey::P256(key) => key.to_public_key_der(),
            PublicKey::P384(key) => key.to_public_key_der(),
            PublicKey::Rsa(key) => key.to_public_key_der(),
            PublicKey::Ed25519(key) => key.to_public_key_der(),
        };
        // Encoding a key that was decoded cannot fail; an empty answer only changes the
        // fingerprint shown.
        document.map(|d| d.into_vec()).unwrap_or_default()
    }

    /// `sha256:<hex>` of the DER SubjectPublicKeyInfo: how a key is named in results.
    pub fn fingerprint(&self) -> String {
        format!("sha256:{}", hex::encode(Sha256::digest(self.to_spki_der())))
    }

    /// The hash this key signs with by default (the curve's size; SHA-256 for RSA).
    pub fn default_hash(&self) -> Hash {
        match self {
            PublicKey::P384(_) => Hash::Sha384,
            _ => Hash::Sha256,
        }
    }

    /// Whether `signature` is a signature of `message` by this key with `hash` (ignored for
    /// Ed25519, which hashes itself). ECDSA signatures are ASN.1 DER; RSA is PKCS #1 v1.5.
    pub fn verify(&self, message: &[u8], signature: &[u8], hash: Hash) -> Result<(), String> {
        let digest = hash_of(hash, message);
        match self {
            PublicKey::P256(key) => {
                use p256::ecdsa::signature::hazmat::PrehashVerifier;
                let signature = p256::ecdsa::Signature::from_der(signature)
                    .map_err(|e| format!("not a DER ECDSA signature: {e}"))?;
                key.verify_prehash(&digest, &signature)
                    .map_err(|_| "the ECDSA signature does not verify".to_string())
            }
            PublicKey::P384(key) => {
                use p384::ecdsa::signature::hazmat::PrehashVerifier;
                let signature = p384::ecdsa::Signature::from_der(signature)
                    .map_err(|e| format!("not a DER ECDSA signature: {e}"))?;
                key.verify_prehash(&digest, &signature)
                    .map_err(|_| "the ECDSA signature does not verify".to_string())
            }
            PublicKey::Rsa(key) => {
                let scheme = match hash {
                    Hash::Sha256 => rsa::Pkcs1v15Sign::new::<Sha256>(),
                    Hash::Sha384 => rsa::Pkcs1v15Sign::new::<Sha384>(),
                    Hash::Sha512 => rsa::Pkcs1v15Sign::new::<Sha512>(),
                };
                key.verify(scheme, &digest, signature)
                    .map_err(|_| "the RSA PKCS #1 v1.5 signature does not verify".to_string())
            }
            PublicKey::Ed25519(key) => {
                let signature = ed25519_dalek::Signature::from_slice(signature)
                    .map_err(|e| format!("not an Ed25519 signature: {e}"))?;
                key.verify_strict(message, &signature)
                    .map_err(|_| "the Ed25519 signature does not verify".to_string())
            }
        }
    }

    /// RSASSA-PSS (salt as long as the hash, MGF1 with the same hash) for RSA keys.
    pub fn verify_pss(&self, message: &[u8], signature: &[u8], hash: Hash) -> Result<(), String> {
        let PublicKey::Rsa(key) = self else {
            return Err(format!("RSA-PSS needs an RSA key, not {}", self.kind()));
        };
        let digest = hash_of(hash, message);
        let scheme = match hash {
            Hash::Sha256 => rsa::Pss::new::<Sha256>(),
            Hash::Sha384 => rsa::Pss::new::<Sha384>(),
            Hash::Sha512 => rsa::Pss::new::<Sha512>(),
        };
        key.verify(scheme, &digest, signature)
            .map_err(|_| "the RSA-PSS signature does not verify".to_string())
    }
}

/// `message` hashed with `hash`.
pub fn hash_of(hash: Hash, message: &[u8]) -> Vec<u8> {
    match hash {
        Hash::Sha256 => Sha256::digest(message).to_vec(),
        Hash::Sha384 => Sha384::digest(message).to_vec(),
        Hash::Sha512 => Sha512::digest(message).to_vec(),
    }
}
