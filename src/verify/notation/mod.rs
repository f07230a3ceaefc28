//! Notary Project (Notation) signature verification: the signatures of an image are found as
//! referrers of artifact type `application/vnd.cncf.notary.signature`, each envelope (JWS or
//! COSE) is checked against the trust policy statement for the image's repository, and the
//! image passes when one signature passes (as Notation decides).
//!
//! The checks and what a failure does follow trust-store-trust-policy.md ("Signature
//! Verification"), in its order: integrity (always enforced: the envelope parses, its chain is
//! well formed, the signature verifies with the leaf key under the algorithm that key
//! implies, and the payload's `targetArtifact` is the resolved manifest: digest, size and
//! media type), authenticity (the chain holds a certificate of the statement's trust store,
//! the leaf subject matches a trusted identity), expiry, authentic timestamp (RFC 3161
//! countersignature, or the signing authority's time, or the chain valid now) and revocation.
//! Each but integrity is enforced or logged as the level (`strict`, `permissive`, `audit`,
//! with `override`) says; `skip` verifies nothing.
//!
//! Revocation is not checked: OCSP and CRL need the network to the CA, and acrpull verifies
//! offline. A chain without revocation endpoints passes as Notation treats it; a chain with
//! endpoints is reported as "not checked" in the result and warned about, never as checked.

pub mod envelope;
pub mod policy;
pub mod store;
pub mod timestamp;

use serde::Serialize;
use time::OffsetDateTime;

use crate::digest::Digest;
use crate::manifest::Descriptor;
use crate::verify::x509::{self, Certificate};
use envelope::{Envelope, SigningScheme};
use policy::{Action, Check, Statement, StoreType, TrustedIdentities, VerifyTimestamp};
pub use store::{config_dir, ConfigError, NotationConfig};

/// Notation's signature artifact type.
pub const SIGNATURE_ARTIFACT_TYPE: &str = "application/vnd.cncf.notary.signature";

/// A signature refused, and by which check.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{} check failed: {reason}", check.as_str())]
pub struct Rejection {
    /// The check that failed and was enforced.
    pub check: Check,
    /// What kind of failure it is.
    pub kind: Kind,
    /// Why.
    pub reason: String,
}

/// The kinds of failure, as the verification framework reports them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    /// The envelope cannot be read, or uses what acrpull does not verify.
    Malformed,
    /// The signature does not verify with the signing certificate's key.
    BadSignature,
    /// The signature names another manifest (this digest).
    DigestMismatch(String),
    /// The chain is malformed, breaks the certificate rules, or does not reach the trust store.
    UntrustedChain,
    /// The signer is not a trusted identity.
    IdentityMismatch {
        /// The identities the statement trusts.
        expected: String,
        /// The signer's subject.
        found: String,
    },
    /// A certificate or the signature is outside its validity (or the timestamp says so).
    Expired,
}

/// A failed check: its kind and why.
type Failure = (Kind, String);

/// The result of one check.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CheckReport {
    /// `integrity`, `authenticity`, `authenticTimestamp`, `expiry`, `revocation`.
    pub check: &'static str,
    /// `enforce`, `log` or `skip`, from the level.
    pub action: &'static str,
    /// `passed`, `failed` (logged only: an enforced failure rejects), `skipped`, `notChecked`.
    pub result: &'static str,
    /// What happened, when not a plain pass.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

/// A signature that passed.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Verified {
    /// The trust policy statement applied.
    pub statement: String,
    /// Its level (`strict`, ..., with `+override` when customized).
    pub level: String,
    /// The signing certificate's subject.
    pub signer: String,
    /// The signing certificate's SHA-256 fingerprint.
    pub signer_sha256: String,
    /// The root or intermediate of the trust store the chain leads to.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub trusted_by: Option<String>,
    /// `notary.x509` or `notary.x509.signingAuthority`.
    pub signing_scheme: &'static str,
    /// `jws` or `cose`.
    pub envelope: &'static str,
    /// The signing time the envelope states (authentic under signingAuthority).
    pub signing_time: String,
    /// The timestamp range, when an RFC 3161 countersignature was verified.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timestamp: Option<String>,
    /// The signature manifest's digest (set by `verify_image`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub signature_digest: Option<Digest>,
    /// Every check and its result.
    pub checks: Vec<CheckReport>,
    /// Logged failures and what was not checked, for stderr.
    pub warnings: Vec<String>,
}

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

/// `--verify notation`: the framework's [`Verifier`](crate::verify::Verifier) for Notary
/// Project signatures, with the Notation configuration loaded up front.
#[derive(Debug)]
pub struct NotationVerifier {
    config: NotationConfig,
}

impl NotationVerifier {
    /// Load the Notation configuration directory `dir` (its trust policy is validated now;
    /// trust stores are read when a statement needs them).
    pub fn load(dir: &std::path::Path) -> Result<NotationVerifier, crate::verify::Error> {
        let config = NotationConfig::load(dir).map_err(|e| crate::verify::Error::Config {
            what: "Notation configuration".into(),
            reason: e.to_string(),
        })?;
        Ok(NotationVerifier { config })
    }

    /// A verifier over an already loaded configuration.
    pub fn new(config: NotationConfig) -> NotationVerifier {
        NotationVerifier { config }
    }
}

/// The repository a trust policy scope names for `image`: `registry/repository` for a
/// registry image; `local/<directory or file name>` for layouts and archives (the scope
/// Notation gives local content), so only a `local/...` or the global `*` statement applies.
pub fn scope_of(image: &crate::source_spec::SourceSpec) -> String {
    use crate::source_spec::SourceSpec;
    match image {
        SourceSpec::Registry(reference) => {
            format!("{}/{}", reference.registry(), reference.repository())
        }
        SourceSpec::Layout { path, .. } | SourceSpec::Archive { path, .. } => format!(
            "local/{}",
            path.file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default()
        ),
    }
}

impl From<(&Rejection, &Digest)> for crate::verify::Reason {
    fn from((rejection, expected): (&Rejection, &Digest)) -> Self {
        use crate::verify::Reason;
        let reason = format!("{} check: {}", rejection.check.as_str(), rejection.reason);
        match &rejection.kind {
            Kind::Malformed => Reason::Malformed(reason),
            Kind::BadSignature => {
                Reason::BadSignature(format!("the signing certificate's key ({reason})"))
            }
            Kind::DigestMismatch(signed) => Reason::DigestMismatch {
                signed: signed.clone(),
                expected: expected.clone(),
            },
            Kind::UntrustedChain => Reason::UntrustedChain(reason),
            Kind::IdentityMismatch { expected, found } => Reason::IdentityMismatch {
                expected: expected.clone(),
                found: found.clone(),
            },
            Kind::Expired => Reason::Expired(reason),
        }
    }
}

#[async_trait::async_trait]
impl crate::verify::Verifier for NotationVerifier {
    fn scheme(&self) -> crate::verify::Scheme {
        crate::verify::Scheme::Notation
    }

    async fn verify(
        &self,
        request: &crate::verify::Request<'_>,
    ) -> Result<crate::verify::Verification, crate::verify::Error> {
        use crate::verify::{Error, Reason, Scheme, Verification};
        let digest = request.digest().clone();
        let scope = scope_of(request.image);
        let policy_file = self.config.policy_path.display().to_string();
        let statement =
            self.config
                .policy
                .statement_for(&scope)
                .map_err(|e| Error::PolicyRejected {
                    image: request.display(),
                    digest: digest.clone(),
                    policy: format!("{policy_file}: {}", e.0),
                })?;
        let policy = format!("{policy_file}: statement `{}`", statement.name);
        let mut verification = Verification::new(Scheme::Notation, digest.clone());
        verification.policy = Some(policy.clone());
        verification.level = Some(statement.level.name.clone());
        if statement.level.is_skip() {
            verification.skipped.push(format!(
                "every check: trust policy statement `{}` has level skip",
                statement.name
            ));
            verification.warnings.push(format!(
                "signatures of {} were not verified: trust policy statement `{}` has level skip",
                request.display(),
                statement.name
            ));
            return Ok(verification);
        }
        let signatures = request.referrers(SIGNATURE_ARTIFACT_TYPE).await?;
        if signatures.is_empty() {
            return Err(Error::NoSignature {
                scheme: Scheme::Notation,
                image: request.display(),
                digest,
                policy: Some(policy),
                looked: format!(
                    "the referrers of artifact type {SIGNATURE_ARTIFACT_TYPE} at {}",
                    request.source.describe()
                ),
            });
        }
        let subject = request.subject();
        let now = OffsetDateTime::now_utc();
        let mut rejections = Vec::new();
        for signature in signatures.iter().take(crate::verify::MAX_SIGNATURES) {
            let name = format!("{} ({})", signature.digest, signature.found_by);
            let envelope = match envelope_layer(signature) {
                Ok(layer) => request
                    .blob(&layer)
                    .await?
                    .map(|bytes| (layer.media_type.clone(), bytes)),
                Err(reason) => Err(Reason::Malformed(reason)),
            };
            let outcome = envelope.and_then(|(media_type, bytes)| {
                verify_envelope(&self.config, statement, &subject, &media_type, &bytes, now)
                    .map_err(|rejection| Reason::from((&rejection, &digest)))
            });
            match outcome {
                Ok(verified) => {
                    verification.signer = Some(verified.signer.clone());
                    verification.signature = Some(name);
                    verification.level = Some(verified.level.clone());
                    verification.skipped = verified
                        .checks
                        .iter()
                        .filter(|c| c.result != "passed")
                        .map(|c| {
                            format!(
                                "{}: {}{}",
                                c.check,
                                c.result,
                                c.detail
                                    .as_deref()
                                    .map(|d| format!(" ({d})"))
                                    .unwrap_or_default()
                            )
                        })
                        .collect();
                    verification.warnings = verified.warnings;
                    verification.rejected = rejections;
                    return Ok(verification);
                }
                Err(reason) => {
                    tracing::info!(signature = %name, "Notation signature rejected: {reason}");
                    rejections.push(crate::verify::Rejection {
                        signature: name,
                        reason,
                    });
                }
            }
        }
        Err(Error::Rejected {
            scheme: Scheme::Notation,
            image: request.display(),
            digest,
            policy: Some(policy),
            rejections,
        })
    }
}

/// The envelope layer of a signature manifest: its one layer, of a supported media type.
fn envelope_layer(signature: &crate::referrers::Referrer) -> Result<Descriptor, String> {
    #[derive(serde::Deserialize)]
    struct Manifest {
        #[serde(default)]
        layers: Vec<Descriptor>,
    }
    let manifest: Manifest = serde_json::from_slice(&signature.manifest.bytes)
        .map_err(|e| format!("the signature manifest is not an image manifest: {e}"))?;
    let [layer] = manifest.layers.as_slice() else {
        return Err(format!(
            "a Notary Project signature manifest has exactly one layer, this one has {}",
            manifest.layers.len()
        ));
    };
    if envelope::Format::from_media_type(&layer.media_type).is_none() {
        return Err(format!(
            "the signature layer is a {}, not a JWS or COSE envelope",
            layer.media_type
        ));
    }
    Ok(layer.clone())
}

#[cfg(test)]
mod tests;
