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
use super::{
    revocation, timestamp, CheckReport, Failure, Kind, NotationConfig, Rejection, Verified,
};
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
        self.outcome_as(check, outcome, "failed")
    }

    /// [`Run::outcome`], a logged failure recorded as `logged` ("failed", "unknown").
    fn outcome_as(
        &mut self,
        check: Check,
        outcome: Result<(), Failure>,
        logged: &'static str,
    ) -> Result<(), Rejection> {
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
                    self.record(check, logged, Some(reason));
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
/// under `statement`, at time `now`, offline: revocation is reported as not checked when the
/// chain names OCSP responders or CRLs.
pub fn verify_envelope(
    config: &NotationConfig,
    statement: &Statement,
    target: &Descriptor,
    media_type: &str,
    bytes: &[u8],
    now: OffsetDateTime,
) -> Result<Verified, Rejection> {
    prepare(config, statement, target, media_type, bytes, now)?.finish(None)
}

/// An envelope whose checks before revocation passed (or were logged): what the revocation
/// check needs, and what [`Checked::finish`] reports.
pub struct Checked<'a> {
    run: Run<'a>,
    envelope: Envelope,
    trusted_by: Option<String>,
    timestamp: Option<timestamp::Timestamp>,
}

/// Integrity, authenticity, expiry and authentic timestamp of one envelope, in the
/// specification's order; revocation is left to [`Checked::finish`], because checking it may
/// need the network.
pub fn prepare<'a>(
    config: &NotationConfig,
    statement: &'a Statement,
    target: &Descriptor,
    media_type: &str,
    bytes: &[u8],
    now: OffsetDateTime,
) -> Result<Checked<'a>, Rejection> {
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

    Ok(Checked {
        run,
        envelope,
        trusted_by,
        timestamp,
    })
}

impl Checked<'_> {
    /// Whether the statement checks revocation at all (its level does not skip it).
    pub fn wants_revocation(&self) -> bool {
        self.run.action(Check::Revocation) != Action::Skip
    }

    /// The certificate chain, leaf first.
    pub fn chain(&self) -> &[Certificate] {
        &self.envelope.certificates
    }

    /// The time a revoked certificate's invalidity date is compared with: the timestamp's
    /// earliest time, or the authentic signing time under signingAuthority.
    pub fn signing_time(&self) -> Option<OffsetDateTime> {
        match (&self.timestamp, self.envelope.signing_scheme) {
            (Some(stamp), _) => Some(stamp.earliest),
            (None, SigningScheme::X509SigningAuthority) => Some(self.envelope.signing_time),
            (None, SigningScheme::X509) => None,
        }
    }

    /// The revocation check, with `status` when it was checked (`None`: offline), and the
    /// result.
    pub fn finish(mut self, status: Option<revocation::Status>) -> Result<Verified, Rejection> {
        let run = &mut self.run;
        let envelope = &self.envelope;
        if run.action(Check::Revocation) == Action::Skip {
            run.record(Check::Revocation, "skipped", None);
        } else {
            match status {
                None => offline_revocation(run, envelope),
                Some(revocation::Status::NoEndpoints) => {
                    run.record(Check::Revocation, "passed", Some(NO_ENDPOINTS.into()))
                }
                Some(revocation::Status::NotRevoked) => run.outcome(Check::Revocation, Ok(()))?,
                Some(revocation::Status::Revoked(reason)) => {
                    run.outcome(Check::Revocation, Err((Kind::Revoked, reason)))?
                }
                Some(revocation::Status::Unknown(reason)) => run.outcome_as(
                    Check::Revocation,
                    Err((
                        Kind::RevocationUnknown,
                        format!("the revocation status could not be determined: {reason}"),
                    )),
                    "unknown",
                )?,
            }
        }
        let Checked {
            run,
            envelope,
            trusted_by,
            timestamp,
        } = self;
        let statement = run.statement;
        let leaf = envelope.signing_certificate();
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

const NO_ENDPOINTS: &str = "no certificate of the chain names an OCSP responder or CRL";

/// Revocation without the network: passed when no certificate names a responder or CRL (as
/// Notation treats such a chain), otherwise "notChecked" with a warning, never claimed checked.
fn offline_revocation(run: &mut Run<'_>, envelope: &Envelope) {
    let with_endpoints: Vec<&str> = envelope
        .certificates
        .iter()
        .filter(|c| revocation::has_endpoints(c))
        .map(Certificate::subject)
        .collect();
    if with_endpoints.is_empty() {
        run.record(Check::Revocation, "passed", Some(NO_ENDPOINTS.into()));
        return;
    }
    let detail = format!(
        "revocation was not checked (OCSP responders or CRLs are named by {}): pass --revocation-check to check it",
        with_endpoints.join("; ")
    );
    tracing::warn!("{detail}");
    run.warnings.push(detail.clone());
    run.record(Check::Revocation, "notChecked", Some(detail));
}
