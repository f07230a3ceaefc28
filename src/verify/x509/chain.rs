//! Validating a certificate chain for a purpose: the leaf's key usages, each CA's constraints,
//! validity times, unknown critical extensions, and building a path from a leaf to a trusted
//! root through a pool of intermediates.

use super::PublicKey;
use const_oid::db::rfc5280 as oids;
use time::OffsetDateTime;

use super::{
    Certificate, Error, Result, ANY_EXTENDED_KEY_USAGE, CODE_SIGNING, MAX_CHAIN_LENGTH,
    TIME_STAMPING,
};

/// What a chain is validated for: each purpose has its own rules for leaf and CA certificates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    /// Notary Project code signing (signature specification, "Certificate Requirements"): leaf
    /// keyUsage critical with digitalSignature only; extendedKeyUsage, when present, without
    /// anyExtendedKeyUsage, serverAuth, clientAuth, emailProtection, timeStamping or
    /// OCSPSigning; CA keyUsage critical with keyCertSign; RSA 2048/3072/4096 or ECDSA
    /// P-256/384/521 leaf keys.
    NotaryCodeSigning,
    /// RFC 3161 timestamping (and the Notary Project's rules for TSA chains): leaf keyUsage
    /// with digitalSignature; extendedKeyUsage present, critical, and timeStamping only.
    Timestamping,
    /// Sigstore (Fulcio) code signing: leaf keyUsage digitalSignature, extendedKeyUsage
    /// present with codeSigning.
    SigstoreCodeSigning,
}

/// How to validate a chain.
#[derive(Debug, Clone, Copy)]
pub struct ChainOptions {
    /// The rules of leaf and CA certificates.
    pub purpose: Purpose,
    /// Check that every certificate is valid at this time (`None`: the caller checks times).
    pub at: Option<OffsetDateTime>,
}

fn check_unknown_critical(cert: &Certificate) -> Result<()> {
    match cert.extensions.unknown_critical.first() {
        Some(oid) => Err(cert.requirement(format!(
            "it has a critical extension acrpull does not understand ({oid})"
        ))),
        None => Ok(()),
    }
}

fn check_leaf(cert: &Certificate, purpose: Purpose) -> Result<()> {
    check_unknown_critical(cert)?;
    if let Some((_, true, _)) = cert.extensions.basic_constraints {
        return Err(cert
            .requirement("a signing certificate must not be a CA (basicConstraints cA is true)"));
    }
    let Some((critical, usage)) = &cert.extensions.key_usage else {
        return Err(cert.requirement("the keyUsage extension must be present"));
    };
    if purpose == Purpose::NotaryCodeSigning && !critical {
        return Err(cert.requirement("the keyUsage extension must be critical"));
    }
    if !usage.digital_signature() {
        return Err(cert.requirement("keyUsage must include digitalSignature"));
    }
    if purpose != Purpose::SigstoreCodeSigning {
        let forbidden: Vec<&str> = [
            (usage.key_encipherment(), "keyEncipherment"),
            (usage.data_encipherment(), "dataEncipherment"),
            (usage.key_agreement(), "keyAgreement"),
            (usage.key_cert_sign(), "keyCertSign"),
            (usage.crl_sign(), "cRLSign"),
            (usage.encipher_only(), "encipherOnly"),
            (usage.decipher_only(), "decipherOnly"),
        ]
        .into_iter()
        .filter_map(|(set, name)| set.then_some(name))
        .collect();
        if !forbidden.is_empty() {
            return Err(cert.requirement(format!(
                "keyUsage must be digitalSignature only, it also has {}",
                forbidden.join(", ")
            )));
        }
    }
    let eku = &cert.extensions.extended_key_usage;
    match purpose {
        Purpose::NotaryCodeSigning => {
            if let Some((_, purposes)) = eku {
                let excluded = [
                    (ANY_EXTENDED_KEY_USAGE, "anyExtendedKeyUsage"),
                    (oids::ID_KP_SERVER_AUTH, "serverAuth"),
                    (oids::ID_KP_CLIENT_AUTH, "clientAuth"),
                    (oids::ID_KP_EMAIL_PROTECTION, "emailProtection"),
                    (TIME_STAMPING, "timeStamping"),
                    (oids::ID_KP_OCSP_SIGNING, "OCSPSigning"),
                ];
                for (oid, name) in excluded {
                    if purposes.contains(&oid) {
                        return Err(cert.requirement(format!(
                            "extendedKeyUsage must not contain {name} for code signing"
                        )));
                    }
                }
            }
            check_signing_key(cert)?;
        }
        Purpose::Timestamping => match eku {
            Some((true, purposes)) if purposes.as_slice() == [TIME_STAMPING] => {
                check_signing_key(cert)?;
            }
            Some((false, _)) => {
                return Err(cert.requirement(
                    "the extendedKeyUsage extension of a timestamping certificate must be critical",
                ))
            }
            _ => return Err(cert.requirement(
                "a timestamping certificate must have timeStamping as its only extendedKeyUsage",
            )),
        },
        Purpose::SigstoreCodeSigning => match eku {
            Some((_, purposes)) if purposes.contains(&CODE_SIGNING) => {}
            _ => return Err(cert.requirement("extendedKeyUsage must include codeSigning")),
        },
    }
    Ok(())
}

/// The Notary Project's signing keys: RSA 2048/3072/4096, ECDSA P-256/384/521.
fn check_signing_key(cert: &Certificate) -> Result<()> {
    let key = cert.public_key()?;
    match &key {
        PublicKey::Rsa(_) if ![2048, 3072, 4096].contains(&key.bits()) => {
            Err(cert.requirement(format!(
                "RSA keys must be 2048, 3072 or 4096 bits, not {}",
                key.bits()
            )))
        }
        _ => Ok(()),
    }
}

/// `below`: how many CA certificates sit between this CA and the leaf.
fn check_ca(cert: &Certificate, purpose: Purpose, below: usize) -> Result<()> {
    check_unknown_critical(cert)?;
    let Some((_, true, path_len)) = cert.extensions.basic_constraints else {
        return Err(cert.requirement("a CA certificate must have basicConstraints with cA true"));
    };
    if let Some(limit) = path_len {
        if (limit as usize) < below {
            return Err(cert.requirement(format!(
                "its pathLenConstraint {limit} allows fewer CA certificates below it than the {below} in the chain"
            )));
        }
    }
    let Some((critical, usage)) = &cert.extensions.key_usage else {
        return Err(cert.requirement("a CA certificate must have the keyUsage extension"));
    };
    if purpose == Purpose::NotaryCodeSigning && !critical {
        return Err(cert.requirement("the keyUsage extension must be critical"));
    }
    if !usage.key_cert_sign() {
        return Err(cert.requirement("a CA certificate's keyUsage must include keyCertSign"));
    }
    Ok(())
}

fn check_times(chain: &[Certificate], at: Option<OffsetDateTime>) -> Result<()> {
    if let Some(at) = at {
        for cert in chain {
            cert.check_valid_at(at)?;
        }
    }
    Ok(())
}

/// Validate a chain the signer sent whole, leaf first, ending in a self-signed root (the
/// Notary Project's rule): each certificate is issued by the next, no certificate before the
/// root is self-signed, the root signs itself, and the purpose's rules hold. A single
/// self-signed certificate is allowed and must meet the leaf rules.
pub fn validate_ordered_chain(chain: &[Certificate], options: &ChainOptions) -> Result<()> {
    let Some(leaf) = chain.first() else {
        return Err(Error::Malformed("the certificate chain is empty".into()));
    };
    if chain.len() > MAX_CHAIN_LENGTH {
        return Err(leaf.requirement(format!(
            "the chain has {} certificates, more than {MAX_CHAIN_LENGTH}",
            chain.len()
        )));
    }
    check_times(chain, options.at)?;
    if chain.len() == 1 {
        if !leaf.self_issued() {
            return Err(leaf.requirement("a chain of one certificate must be self-signed"));
        }
        leaf.check_issued_by(leaf)?;
        return check_leaf(leaf, options.purpose);
    }
    let last = chain.len() - 1;
    for (i, cert) in chain.iter().enumerate() {
        if i == last {
            if !cert.self_issued() {
                return Err(
                    cert.requirement("the chain must end with a self-signed root certificate")
                );
            }
            cert.check_issued_by(cert)?;
        } else {
            if cert.self_issued() && cert.check_issued_by(cert).is_ok() {
                return Err(
                    cert.requirement("only the last certificate of the chain may be self-signed")
                );
            }
            cert.check_issued_by(&chain[i + 1])?;
        }
        if i == 0 {
            check_leaf(cert, options.purpose)?;
        } else {
            check_ca(cert, options.purpose, i - 1)?;
        }
    }
    Ok(())
}

/// Find and validate a path from `leaf` through `intermediates` to one of `roots` (trust
/// anchors: they are trusted as given, their own expiry included when `options.at` is set).
/// Returns the chain leaf first, ending with the root. The search is bounded by
/// [`MAX_CHAIN_LENGTH`] and tries at most a few hundred candidate links.
pub fn build_chain(
    leaf: &Certificate,
    intermediates: &[Certificate],
    roots: &[Certificate],
    options: &ChainOptions,
) -> Result<Vec<Certificate>> {
    check_leaf(leaf, options.purpose)?;
    if let Some(at) = options.at {
        leaf.check_valid_at(at)?;
    }
    let mut budget = 256usize;
    let mut path = vec![leaf.clone()];
    let mut last_error = None;
    if extend(
        &mut path,
        intermediates,
        roots,
        options,
        &mut budget,
        &mut last_error,
    ) {
        return Ok(path);
    }
    Err(Error::Untrusted {
        subject: leaf.subject_text.clone(),
        reason: match last_error {
            Some(e) => e.to_string(),
            None => format!(
                "no trusted root or intermediate is named `{}`",
                leaf.issuer_text
            ),
        },
    })
}

fn extend(
    path: &mut Vec<Certificate>,
    intermediates: &[Certificate],
    roots: &[Certificate],
    options: &ChainOptions,
    budget: &mut usize,
    last_error: &mut Option<Error>,
) -> bool {
    let Some(child) = path.last().cloned() else {
        return false;
    };
    let below = path.len() - 1;
    // A trusted root first: the shortest path wins.
    for root in roots {
        if *budget == 0 {
            return false;
        }
        *budget -= 1;
        if root.inner.tbs_certificate.subject != child.inner.tbs_certificate.issuer {
            continue;
        }
        let checked = child
            .check_issued_by(root)
            .and_then(|()| {
                // A leaf that is itself a trust anchor needs no CA rules of its issuer.
                if *root == child {
                    Ok(())
                } else {
                    check_ca(root, options.purpose, below)
                }
            })
            .and_then(|()| options.at.map_or(Ok(()), |at| root.check_valid_at(at)));
        match checked {
            Ok(()) => {
                if *root != child {
                    path.push(root.clone());
                }
                return true;
            }
            Err(e) => *last_error = Some(e),
        }
    }
    if path.len() >= MAX_CHAIN_LENGTH {
        return false;
    }
    for candidate in intermediates {
        if *budget == 0 {
            return false;
        }
        *budget -= 1;
        if candidate.inner.tbs_certificate.subject != child.inner.tbs_certificate.issuer
            || path.contains(candidate)
        {
            continue;
        }
        let checked = child
            .check_issued_by(candidate)
            .and_then(|()| check_ca(candidate, options.purpose, below))
            .and_then(|()| options.at.map_or(Ok(()), |at| candidate.check_valid_at(at)));
        if let Err(e) = checked {
            *last_error = Some(e);
            continue;
        }
        path.push(candidate.clone());
        if extend(path, intermediates, roots, options, budget, last_error) {
            return true;
        }
        path.pop();
    }
    false
}
