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
//! Revocation needs the network to the CA, so it is checked only when asked
//! (`--revocation-check`, [`revocation`]: CRLs over HTTP; OCSP is not queried). Without it a
//! chain without revocation endpoints passes as Notation treats it, and a chain with
//! endpoints is reported as "not checked" in the result and warned about, never as checked.
//!
//! `checks` runs the checks on one envelope; this file holds their results and the
//! [`Verifier`](crate::verify::Verifier) that finds the signatures and tries each.

mod checks;
pub mod envelope;
pub mod policy;
pub mod revocation;
pub mod store;
pub mod timestamp;

use serde::Serialize;
use time::OffsetDateTime;

use crate::digest::Digest;
use crate::manifest::Descriptor;
pub use checks::{prepare, verify_envelope, Checked};
use policy::Check;
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
    /// A certificate of the chain is revoked.
    Revoked,
    /// The revocation status could not be determined (CRL unreachable, invalid, expired).
    RevocationUnknown,
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
    /// `passed`, `failed` or `unknown` (logged only: an enforced failure rejects), `skipped`,
    /// `notChecked` (revocation without `--revocation-check`).
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

/// `--verify notation`: the framework's [`Verifier`](crate::verify::Verifier) for Notary
/// Project signatures, with the Notation configuration loaded up front.
#[derive(Debug)]
pub struct NotationVerifier {
    config: NotationConfig,
    revocation: Option<revocation::CrlFetcher>,
}

impl NotationVerifier {
    /// Load the Notation configuration directory `dir` (its trust policy is validated now;
    /// trust stores are read when a statement needs them).
    pub fn load(dir: &std::path::Path) -> Result<NotationVerifier, crate::verify::Error> {
        let config = NotationConfig::load(dir).map_err(|e| crate::verify::Error::Config {
            what: "Notation configuration".into(),
            reason: e.to_string(),
        })?;
        Ok(NotationVerifier::new(config))
    }

    /// A verifier over an already loaded configuration, offline (revocation not checked).
    pub fn new(config: NotationConfig) -> NotationVerifier {
        NotationVerifier {
            config,
            revocation: None,
        }
    }

    /// Check revocation with `fetcher` (`--revocation-check`): CRLs are downloaded.
    pub fn with_revocation_check(mut self, fetcher: revocation::CrlFetcher) -> NotationVerifier {
        self.revocation = Some(fetcher);
        self
    }

    /// Verify one envelope, revocation checked with the fetcher when there is one.
    pub async fn verify_one(
        &self,
        statement: &policy::Statement,
        target: &Descriptor,
        media_type: &str,
        bytes: &[u8],
        now: OffsetDateTime,
    ) -> Result<Verified, Rejection> {
        let checked = prepare(&self.config, statement, target, media_type, bytes, now)?;
        let status = match &self.revocation {
            Some(fetcher) if checked.wants_revocation() => Some(
                fetcher
                    .check_chain(checked.chain(), checked.signing_time(), now)
                    .await,
            ),
            _ => None,
        };
        checked.finish(status)
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
            Kind::Revoked => Reason::Revoked(reason),
            Kind::RevocationUnknown => Reason::Policy(reason),
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
            let outcome = match envelope {
                Ok((media_type, bytes)) => self
                    .verify_one(statement, &subject, &media_type, &bytes, now)
                    .await
                    .map_err(|rejection| Reason::from((&rejection, &digest))),
                Err(reason) => Err(reason),
            };
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
