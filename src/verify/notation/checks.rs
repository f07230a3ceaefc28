//! The checks of one signature envelope, in the order and with the outcomes
//! trust-store-trust-policy.md ("Signature Verification") gives: integrity (always enforced),
//! authenticity, expiry, authentic timestamp and revocation, each enforced, logged or skipped
//! as the statement's level says. Apart from the [`Verifier`](crate::verify::Verifier) glue
//! because this is the part that decides whether a signature is trusted.

use time::OffsetDateTime;

use super::envelope::{self, Envelope, SigningScheme};
use super::policy::{
    self, Action, Check, Statement, StoreType, TrustedIdentities, VerifyTimestamp,
};
use super::{timestamp, CheckReport, Failure, Kind, NotationConfig, Rejection, Verified};
use crate::manifest::Descriptor;
use crate::verify::x509::{self, Certificate};

struct Run<'a> {
    statement: &'a Statement,
    checks: Vec<CheckReport>,
    warnings: Vec<String>,
}

impl Run<'_> {
    fn action(&self, check: Check) -> Action {
        self.statement.level.action(check)
    }

    fn record(&mut self, check: Check, result: &'static str, detail: Option<String>) {
        self.checks.push(CheckReport {
            check: check.as_str(),
            action: self.action(check).as_str(),
            result,
            detail,
        });
    }

    /// Apply the level to a check's outcome: an enforced failure rejects, a logged one warns.
    fn outcome(&mut self, check: Check, outcome: Result<(), Failure>) -> Result<(), Rejection> {
        match outcome {
            Ok(()) => {
                self.record(check, "passed", None);
                Ok(())
            }
            Err((kind, reason)) => match self.action(check) {
                Action::Enforce => Err(Rejection {
                    check,
                    kind,
                    reason,
                }),
                Action::Log => {
                    let warning = format!(
                        "{} check failed but the trust policy statement `{}` only logs it ({}): {reason}",
                        check.as_str(),
                        self.statement.name,
                        self.statement.level.name
                    );
                    tracing::warn!("{warning}");
                    self.warnings.push(warning);
                    self.record(check, "failed", Some(reason));
                    Ok(())
                }
                Action::Skip => {
                    self.record(check, "skipped", None);
                    Ok(())
                }
            },
        }
    }
}

/// Verify one signature envelope of `media_type` against `target` (the resolved manifest)
/// under `statement`, at time `now`.
pub fn verify_envelope(
    config: &NotationConfig,
    statement: &Statement,
    target: &Descriptor,
    media_type: &str,
    bytes: &[u8],
    now: OffsetDateTime,
) -> Result<Verified, Rejection> {
    let mut run = Run {
        statement,
        checks: Vec::new(),
        warnings: Vec::new(),
    };
    let integrity = |kind: Kind, reason: String| Rejection {
        check: Check::Integrity,
        kind,
        reason,
    };

    // Integrity: always enforced.
    let envelope =
        envelope::parse(media_type, bytes).map_err(|e| integrity(Kind::Malformed, e.0))?;
    x509::validate_ordered_chain(
        &envelope.certificates,
        &x509::ChainOptions {
            purpose: x509::Purpose::NotaryCodeSigning,
            at: None,
        },
    )
    .map_err(|e| {
        integrity(
            Kind::UntrustedChain,
            format!("the certificate chain is invalid: {e}"),
        )
    })?;
    let payload = envelope
        .verify()
        .map_err(|e| integrity(Kind::BadSignature, e.0))?;
    let signed = &payload.target_artifact;
    if signed.digest != target.digest.to_string()
        || signed.size != target.size
        || signed.media_type != target.media_type
    {
        return Err(integrity(
            Kind::DigestMismatch(signed.digest.clone()),
            format!(
                "the signature is for {} ({}, {} bytes), not for this image {} ({}, {} bytes)",
                signed.digest,
                signed.media_type,
                signed.size,
                target.digest,
                target.media_type,
                target.size
            ),
        ));
    }
    run.record(Check::Integrity, "passed", None);

    // Authenticity: the chain meets the trust store, the signer is a trusted identity.
    let leaf = envelope.signing_certificate().clone();
    let trusted_by = authenticity(config, statement, &envelope);
    let trusted_by = match trusted_by {
        Ok(anchor) => {
            run.outcome(Check::Authenticity, Ok(()))?;
            Some(anchor)
        }
        Err(reason) => {
            run.outcome(Check::Authenticity, Err(reason))?;
            None
        }
    };

    // Expiry.
    let expiry = match envelope.expiry {
        Some(expiry) if now >= expiry => Err((
            Kind::Expired,
            format!("the signature expired at {}", x509::rfc3339(expiry)),
        )),
        _ => Ok(()),
    };
    run.outcome(Check::Expiry, expiry)?;

    // Authentic timestamp.
    let (timestamp_result, timestamp) = authentic_timestamp(config, statement, &envelope, now);
    run.outcome(
        Check::AuthenticTimestamp,
        timestamp_result.map_err(|reason| (Kind::Expired, reason)),
    )?;

    // Revocation: offline, so never claimed as checked.
    if run.action(Check::Revocation) == Action::Skip {
        run.record(Check::Revocation, "skipped", None);
    } else {
        let with_endpoints: Vec<&str> = envelope
            .certificates
            .iter()
            .filter(|c| has_revocation_endpoints(c))
            .map(Certificate::subject)
            .collect();
        if with_endpoints.is_empty() {
            run.record(
                Check::Revocation,
                "passed",
                Some("no certificate of the chain names an OCSP responder or CRL".into()),
            );
        } else {
            let detail = format!(
                "revocation was not checked: acrpull verifies offline and does not query OCSP or CRLs (named by {})",
                with_endpoints.join("; ")
            );
            tracing::warn!("{detail}");
            run.warnings.push(detail.clone());
            run.record(Check::Revocation, "notChecked", Some(detail));
        }
    }

    let level = if statement.level.customized {
        format!("{}+override", statement.level.name)
    } else {
        statement.level.name.clone()
    };
    Ok(Verified {
        statement: statement.name.clone(),
        level,
        signer: leaf.subject().to_string(),
        signer_sha256: leaf.sha256_fingerprint(),
        trusted_by,
        signing_scheme: envelope.signing_scheme.as_str(),
        envelope: match envelope.format {
            envelope::Format::Jws => "jws",
            envelope::Format::Cose => "cose",
        },
        signing_time: x509::rfc3339(envelope.signing_time),
        timestamp: timestamp.map(|t| {
            format!(
                "{} .. {} by `{}`",
                x509::rfc3339(t.earliest),
                x509::rfc3339(t.latest),
                t.chain.first().map_or("", Certificate::subject)
            )
        }),
        signature_digest: None,
        checks: run.checks,
        warnings: run.warnings,
    })
}

/// The chain holds a certificate of one of the statement's stores (of the kind the signing
/// scheme uses), and the leaf's subject matches a trusted identity. Returns the subject of
/// the trusted certificate met.
fn authenticity(
    config: &NotationConfig,
    statement: &Statement,
    envelope: &Envelope,
) -> Result<String, Failure> {
    let untrusted = |reason: String| (Kind::UntrustedChain, reason);
    let kind = match envelope.signing_scheme {
        SigningScheme::X509 => StoreType::Ca,
        SigningScheme::X509SigningAuthority => StoreType::SigningAuthority,
    };
    let mut trusted = Vec::new();
    for name in statement.stores(kind) {
        trusted.extend(
            config
                .certificates(kind, name)
                .map_err(|e| untrusted(e.to_string()))?,
        );
    }
    if trusted.is_empty() {
        return Err(untrusted(format!(
            "the statement `{}` names no `{}` trust store, which {} signatures need",
            statement.name,
            kind.as_str(),
            envelope.signing_scheme.as_str()
        )));
    }
    let anchor = envelope
        .certificates
        .iter()
        .find(|c| trusted.contains(c))
        .ok_or_else(|| {
            untrusted(format!(
                "the certificate chain (root `{}`) does not lead to a certificate of the trust stores {}",
                envelope.certificates.last().map_or("", Certificate::subject),
                statement
                    .stores(kind)
                    .map(|n| format!("{}:{n}", kind.as_str()))
                    .collect::<Vec<_>>()
                    .join(", ")
            ))
        })?;
    match &statement.trusted_identities {
        TrustedIdentities::Any => {}
        TrustedIdentities::Subjects(subjects) => {
            let leaf = envelope.signing_certificate();
            let expected = subjects
                .iter()
                .map(|dn| format!("x509.subject: {}", dn.text))
                .collect::<Vec<_>>()
                .join("; ");
            let mismatch = |reason: String| {
                (
                    Kind::IdentityMismatch {
                        expected: expected.clone(),
                        found: leaf.subject().to_string(),
                    },
                    reason,
                )
            };
            if subjects.is_empty() {
                return Err(mismatch(format!(
                    "the statement `{}` has no x509.subject trusted identity",
                    statement.name
                )));
            }
            let subject = policy::certificate_subject(leaf).map_err(mismatch)?;
            if !subjects.iter().any(|dn| dn.is_subset_of(&subject)) {
                return Err(mismatch(format!(
                    "the signer `{}` is not a trusted identity of the statement `{}` ({expected})",
                    leaf.subject(),
                    statement.name,
                )));
            }
        }
    }
    Ok(anchor.subject().to_string())
}

/// The authentic-timestamp check (and the timestamp, when one was verified).
fn authentic_timestamp(
    config: &NotationConfig,
    statement: &Statement,
    envelope: &Envelope,
    now: OffsetDateTime,
) -> (Result<(), String>, Option<timestamp::Timestamp>) {
    let chain = &envelope.certificates;
    if envelope.signing_scheme == SigningScheme::X509SigningAuthority {
        // The signing authority vouches for the signing time.
        let at = envelope.signing_time;
        let result = chain.iter().find(|c| !c.valid_at(at)).map_or(Ok(()), |c| {
            Err(format!(
                "certificate `{}` was not valid at the authentic signing time {} (valid {} to {})",
                c.subject(),
                x509::rfc3339(at),
                x509::rfc3339(c.not_before()),
                x509::rfc3339(c.not_after())
            ))
        });
        return (result, None);
    }
    let tsa_stores: Vec<&str> = statement.stores(StoreType::Tsa).collect();
    let expired = chain.iter().any(|c| now > c.not_after());
    let check_token = !tsa_stores.is_empty()
        && (statement.verify_timestamp == VerifyTimestamp::Always || expired);
    if !check_token {
        // No timestamp to rely on: the chain must be valid now.
        let result = chain
            .iter()
            .try_for_each(|c| c.check_valid_at(now))
            .map_err(|e| e.to_string());
        return (result, None);
    }
    let Some(token) = &envelope.timestamp_token else {
        return (
            Err("the trust policy asks for a timestamp countersignature (a tsa trust store is set) but the signature has none".into()),
            None,
        );
    };
    let mut roots = Vec::new();
    for name in tsa_stores {
        match config.certificates(StoreType::Tsa, name) {
            Ok(found) => roots.extend(found),
            Err(e) => return (Err(e.to_string()), None),
        }
    }
    let stamp = match timestamp::verify(token, &envelope.signature, &roots) {
        Ok(stamp) => stamp,
        Err(e) => return (Err(e.to_string()), None),
    };
    for cert in chain {
        if stamp.earliest < cert.not_before() || stamp.latest > cert.not_after() {
            return (
                Err(format!(
                    "the timestamp ({} .. {}) is not within the validity of `{}` ({} to {})",
                    x509::rfc3339(stamp.earliest),
                    x509::rfc3339(stamp.latest),
                    cert.subject(),
                    x509::rfc3339(cert.not_before()),
                    x509::rfc3339(cert.not_after())
                )),
                None,
            );
        }
    }
    (Ok(()), Some(stamp))
}

/// Whether a certificate names an OCSP responder (authorityInfoAccess) or a CRL
/// (cRLDistributionPoints).
fn has_revocation_endpoints(cert: &Certificate) -> bool {
    const AUTHORITY_INFO_ACCESS: const_oid::ObjectIdentifier =
        const_oid::ObjectIdentifier::new_unwrap("1.3.6.1.5.5.7.1.1");
    const OCSP: const_oid::ObjectIdentifier =
        const_oid::ObjectIdentifier::new_unwrap("1.3.6.1.5.5.7.48.1");
    if cert
        .extension(&const_oid::db::rfc5280::ID_CE_CRL_DISTRIBUTION_POINTS)
        .is_some()
    {
        return true;
    }
    cert.extension(&AUTHORITY_INFO_ACCESS)
        .is_some_and(|(_, value)| {
            use der::Decode as _;
            x509_cert::ext::pkix::AuthorityInfoAccessSyntax::from_der(value)
                .map(|aia| aia.0.iter().any(|d| d.access_method == OCSP))
                .unwrap_or(true)
        })
}
