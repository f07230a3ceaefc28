//! Keys and signature algorithms: the hash of an algorithm identifier, RSA (PKCS#1 v1.5 and
//! PSS) and ECDSA P-256/384/521 keys read from a SubjectPublicKeyInfo, and signature checks
//! with them.

use std::fmt;

use const_oid::ObjectIdentifier;
use der::Decode;
use sha2::{Digest as _, Sha256, Sha384, Sha512};

use super::{Error, Result};

const RSA_ENCRYPTION: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.1");
const RSASSA_PSS: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.10");
const SHA256_WITH_RSA: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.11");
const SHA384_WITH_RSA: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.12");
const SHA512_WITH_RSA: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.13");
const EC_PUBLIC_KEY: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.2.1");
const ECDSA_SHA256: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.4.3.2");
const ECDSA_SHA384: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.4.3.3");
const ECDSA_SHA512: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.4.3.4");
const SECP256R1: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.3.1.7");
const SECP384R1: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.132.0.34");
const SECP521R1: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.132.0.35");
const ID_SHA256: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.16.840.1.101.3.4.2.1");
const ID_SHA384: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.16.840.1.101.3.4.2.2");
const ID_SHA512: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.16.840.1.101.3.4.2.3");
const ID_MGF1: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.8");

/// A hash function of a signature algorithm.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hash {
    /// SHA-256.
    Sha256,
    /// SHA-384.
    Sha384,
    /// SHA-512.
    Sha512,
}

impl Hash {
    /// The digest of `data`.
    pub fn digest(self, data: &[u8]) -> Vec<u8> {
        match self {
            Hash::Sha256 => Sha256::digest(data).to_vec(),
            Hash::Sha384 => Sha384::digest(data).to_vec(),
            Hash::Sha512 => Sha512::digest(data).to_vec(),
        }
    }

    /// The hash named by a digest-algorithm OID (`id-sha256`, ...).
    pub fn from_oid(oid: &ObjectIdentifier) -> Option<Hash> {
        match *oid {
            ID_SHA256 => Some(Hash::Sha256),
            ID_SHA384 => Some(Hash::Sha384),
            ID_SHA512 => Some(Hash::Sha512),
            _ => None,
        }
    }

    fn len(self) -> usize {
        match self {
            Hash::Sha256 => 32,
            Hash::Sha384 => 48,
            Hash::Sha512 => 64,
        }
    }
}

/// A signature algorithm: the padding or curve family with its hash, and for ECDSA how the
/// signature is encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignatureAlgorithm {
    /// RSASSA-PKCS1-v1_5.
    RsaPkcs1(Hash),
    /// RSASSA-PSS with MGF1 of the same hash and this salt length.
    RsaPss {
        /// The message hash (and MGF1 hash).
        hash: Hash,
        /// The salt length in bytes.
        salt: usize,
    },
    /// ECDSA, the signature DER-encoded (`Ecdsa-Sig-Value`, X.509 and CMS).
    EcdsaDer(Hash),
    /// ECDSA, the signature as fixed-size `r || s` (JWS and COSE).
    EcdsaFixed(Hash),
}

impl SignatureAlgorithm {
    /// The algorithm an X.509 or CMS `AlgorithmIdentifier` names (SHA-1 and MD5 are refused).
    pub fn from_algorithm_identifier(
        algorithm: &spki::AlgorithmIdentifierOwned,
    ) -> Result<SignatureAlgorithm> {
        Ok(match algorithm.oid {
            SHA256_WITH_RSA => SignatureAlgorithm::RsaPkcs1(Hash::Sha256),
            SHA384_WITH_RSA => SignatureAlgorithm::RsaPkcs1(Hash::Sha384),
            SHA512_WITH_RSA => SignatureAlgorithm::RsaPkcs1(Hash::Sha512),
            ECDSA_SHA256 => SignatureAlgorithm::EcdsaDer(Hash::Sha256),
            ECDSA_SHA384 => SignatureAlgorithm::EcdsaDer(Hash::Sha384),
            ECDSA_SHA512 => SignatureAlgorithm::EcdsaDer(Hash::Sha512),
            RSASSA_PSS => pss_parameters(algorithm)?,
            other => {
                return Err(Error::Unsupported(format!(
                    "signature algorithm {other} (SHA-1 and MD5 signatures are not accepted)"
                )))
            }
        })
    }
}

/// RSASSA-PSS-params (RFC 4055): the hash, MGF1 with the same hash, the salt length.
fn pss_parameters(algorithm: &spki::AlgorithmIdentifierOwned) -> Result<SignatureAlgorithm> {
    #[derive(der::Sequence)]
    struct PssParams {
        #[asn1(context_specific = "0", tag_mode = "EXPLICIT", optional = "true")]
        hash: Option<spki::AlgorithmIdentifierOwned>,
        #[asn1(context_specific = "1", tag_mode = "EXPLICIT", optional = "true")]
        mask_gen: Option<spki::AlgorithmIdentifierOwned>,
        #[asn1(context_specific = "2", tag_mode = "EXPLICIT", optional = "true")]
        salt_length: Option<u32>,
        #[asn1(context_specific = "3", tag_mode = "EXPLICIT", optional = "true")]
        trailer_field: Option<u32>,
    }
    let unsupported = |what: &str| Error::Unsupported(format!("RSASSA-PSS parameters: {what}"));
    let params = algorithm
        .parameters
        .as_ref()
        .ok_or_else(|| unsupported("absent (SHA-1 defaults are not accepted)"))?;
    let params: PssParams = params
        .decode_as()
        .map_err(|e| unsupported(&format!("malformed ({e})")))?;
    let hash = params
        .hash
        .as_ref()
        .and_then(|h| Hash::from_oid(&h.oid))
        .ok_or_else(|| unsupported("the hash is not SHA-256, SHA-384 or SHA-512"))?;
    let mgf = params
        .mask_gen
        .as_ref()
        .ok_or_else(|| unsupported("no mask generation function"))?;
    let mgf_hash = mgf
        .parameters
        .as_ref()
        .and_then(|p| p.decode_as::<spki::AlgorithmIdentifierOwned>().ok())
        .and_then(|h| Hash::from_oid(&h.oid));
    if mgf.oid != ID_MGF1 || mgf_hash != Some(hash) {
        return Err(unsupported(
            "the mask generation is not MGF1 with the same hash",
        ));
    }
    if params.trailer_field.is_some_and(|t| t != 1) {
        return Err(unsupported("trailer field other than 1"));
    }
    let salt = params.salt_length.unwrap_or(20) as usize;
    Ok(SignatureAlgorithm::RsaPss { hash, salt })
}

/// A public key of a supported type.
#[derive(Clone)]
pub enum PublicKey {
    /// RSA.
    Rsa(rsa::RsaPublicKey),
    /// ECDSA on P-256.
    P256(p256::ecdsa::VerifyingKey),
    /// ECDSA on P-384.
    P384(p384::ecdsa::VerifyingKey),
    /// ECDSA on P-521.
    P521(p521::ecdsa::VerifyingKey),
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.describe())
    }
}

impl PublicKey {
    /// Read a `SubjectPublicKeyInfo` (DER).
    pub fn from_spki_der(der: &[u8]) -> Result<PublicKey> {
        let spki = spki::SubjectPublicKeyInfoOwned::from_der(der)
            .map_err(|e| Error::Malformed(format!("public key: {e}")))?;
        PublicKey::from_spki(&spki)
    }

    /// Read a parsed `SubjectPublicKeyInfo`.
    pub fn from_spki(spki: &spki::SubjectPublicKeyInfoOwned) -> Result<PublicKey> {
        let bits = spki
            .subject_public_key
            .as_bytes()
            .ok_or_else(|| Error::Malformed("public key bit string with unused bits".into()))?;
        match spki.algorithm.oid {
            RSA_ENCRYPTION => {
                use rsa::pkcs1::DecodeRsaPublicKey as _;
                let key = rsa::RsaPublicKey::from_pkcs1_der(bits)
                    .map_err(|e| Error::Malformed(format!("RSA public key: {e}")))?;
                Ok(PublicKey::Rsa(key))
            }
            EC_PUBLIC_KEY => {
                let curve: ObjectIdentifier = spki
                    .algorithm
                    .parameters
                    .as_ref()
                    .and_then(|p| p.decode_as().ok())
                    .ok_or_else(|| {
                        Error::Malformed("EC public key without a named curve".into())
                    })?;
                let bad = |e: ecdsa::Error| Error::Malformed(format!("EC public key: {e}"));
                match curve {
                    SECP256R1 => Ok(PublicKey::P256(
                        p256::ecdsa::VerifyingKey::from_sec1_bytes(bits).map_err(bad)?,
                    )),
                    SECP384R1 => Ok(PublicKey::P384(
                        p384::ecdsa::VerifyingKey::from_sec1_bytes(bits).map_err(bad)?,
                    )),
                    SECP521R1 => Ok(PublicKey::P521(
                        p521::ecdsa::VerifyingKey::from_sec1_bytes(bits).map_err(bad)?,
                    )),
                    other => Err(Error::Unsupported(format!("elliptic curve {other}"))),
                }
            }
            other => Err(Error::Unsupported(format!("public key algorithm {other}"))),
        }
    }

    /// The key size in bits (the modulus for RSA, the curve for ECDSA).
    pub fn bits(&self) -> usize {
        match self {
            PublicKey::Rsa(key) => {
                use rsa::traits::PublicKeyParts as _;
                key.n().bits()
            }
            PublicKey::P256(_) => 256,
            PublicKey::P384(_) => 384,
            PublicKey::P521(_) => 521,
        }
    }

    /// `RSA 2048`, `ECDSA P-256`, ...
    pub fn describe(&self) -> String {
        match self {
            PublicKey::Rsa(_) => format!("RSA {}", self.bits()),
            _ => format!("ECDSA P-{}", self.bits()),
        }
    }

    /// Verify `signature` over `message` with this key and `algorithm` (which must fit the
    /// key: an RSA padding for an RSA key, ECDSA for a curve key).
    pub fn verify(
        &self,
        algorithm: SignatureAlgorithm,
        message: &[u8],
        signature: &[u8],
    ) -> std::result::Result<(), String> {
        use ecdsa::signature::hazmat::PrehashVerifier as _;
        let mismatch = || format!("a {} key cannot verify {algorithm:?}", self.describe());
        match (self, algorithm) {
            (PublicKey::Rsa(key), SignatureAlgorithm::RsaPkcs1(hash)) => {
                let scheme = match hash {
                    Hash::Sha256 => rsa::Pkcs1v15Sign::new::<Sha256>(),
                    Hash::Sha384 => rsa::Pkcs1v15Sign::new::<Sha384>(),
                    Hash::Sha512 => rsa::Pkcs1v15Sign::new::<Sha512>(),
                };
                key.verify(scheme, &hash.digest(message), signature)
                    .map_err(|e| e.to_string())
            }
            (PublicKey::Rsa(key), SignatureAlgorithm::RsaPss { hash, salt }) => {
                let scheme = match hash {
                    Hash::Sha256 => rsa::Pss::new_with_salt::<Sha256>(salt),
                    Hash::Sha384 => rsa::Pss::new_with_salt::<Sha384>(salt),
                    Hash::Sha512 => rsa::Pss::new_with_salt::<Sha512>(salt),
                };
                key.verify(scheme, &hash.digest(message), signature)
                    .map_err(|e| e.to_string())
            }
            (
                PublicKey::P256(_) | PublicKey::P384(_) | PublicKey::P521(_),
                SignatureAlgorithm::EcdsaDer(hash) | SignatureAlgorithm::EcdsaFixed(hash),
            ) => {
                let der = matches!(algorithm, SignatureAlgorithm::EcdsaDer(_));
                let prehash = hash.digest(message);
                let bad = |e: ecdsa::Error| e.to_string();
                match self {
                    PublicKey::P256(key) => {
                        let sig = if der {
                            p256::ecdsa::Signature::from_der(signature)
                        } else {
                            p256::ecdsa::Signature::from_slice(signature)
                        }
                        .map_err(bad)?;
                        key.verify_prehash(&prehash, &sig).map_err(bad)
                    }
                    PublicKey::P384(key) => {
                        let sig = if der {
                            p384::ecdsa::Signature::from_der(signature)
                        } else {
                            p384::ecdsa::Signature::from_slice(signature)
                        }
                        .map_err(bad)?;
                        key.verify_prehash(&prehash, &sig).map_err(bad)
                    }
                    PublicKey::P521(key) => {
                        let sig = if der {
                            p521::ecdsa::DerSignature::from_bytes(signature)
                                .and_then(p521::ecdsa::Signature::try_from)
                        } else {
                            p521::ecdsa::Signature::from_slice(signature)
                        }
                        .map_err(bad)?;
                        key.verify_prehash(&prehash, &sig).map_err(bad)
                    }
                    PublicKey::Rsa(_) => Err(mismatch()),
                }
            }
            _ => Err(mismatch()),
        }
    }
}

/// The signature algorithm the Notary Project assigns to a signing key: RSA-PSS with the hash
/// of the key size (2048: SHA-256, 3072: SHA-384, 4096: SHA-512), ECDSA with the curve's hash.
pub fn notary_algorithm_for(key: &PublicKey) -> Result<SignatureAlgorithm> {
    let hash = match (key, key.bits()) {
        (PublicKey::Rsa(_), 2048) | (PublicKey::P256(_), _) => Hash::Sha256,
        (PublicKey::Rsa(_), 3072) | (PublicKey::P384(_), _) => Hash::Sha384,
        (PublicKey::Rsa(_), 4096) | (PublicKey::P521(_), _) => Hash::Sha512,
        (PublicKey::Rsa(_), bits) => {
            return Err(Error::Unsupported(format!(
                "RSA keys of {bits} bits (the Notary Project allows 2048, 3072 and 4096)"
            )))
        }
    };
    Ok(match key {
        PublicKey::Rsa(_) => SignatureAlgorithm::RsaPss {
            hash,
            salt: hash.len(),
        },
        _ => SignatureAlgorithm::EcdsaFixed(hash),
    })
}
