//! Verify before unpack: who signed the image, checked after its manifest is resolved and
//! before a single layer is downloaded. A refusal is an [`Error`] that names the image digest,
//! the policy entry that applied, and why each signature found was rejected; the binary
//! exits 7 for it.
//!
//! The pieces:
//! - [`Request`]: the image as the user named it, the resolved manifest (exact bytes: index
//!   or image, whatever the reference names, which is what signers sign), and bounded reads
//!   from its source (referrers by artifact type, a manifest by tag, a small verified blob).
//!   The source is a registry or an `oci:` layout, so a layout staged with `--referrers`
//!   verifies offline.
//! - [`Verifier`]: one scheme (cosign, containers `policy.json`, ...). It looks for its
//!   signatures, accepts one, or rejects each with a [`Reason`].
//! - [`Verification`]: what was accepted (scheme, signer, level, checks skipped, warnings),
//!   carried into `--json` as `verification`.
//!
//! # Adding a scheme
//! Write a type that implements [`Verifier`] in its own module under `verify/`; read
//! signatures only through [`Request`] (its reads are capped and digest-checked); return
//! [`Error::NoSignature`] when none of the scheme's signatures exist, [`Error::Rejected`] with
//! one [`Rejection`] per signature otherwise. Then add a [`Scheme`] variant (its name is the
//! `--verify` value), the options it needs to [`VerifyOptions`], and the arm that builds it in
//! [`VerifyOptions::verifier`]. Loading keys, trust stores and policies happens there, before
//! any network traffic, so a broken trust configuration fails fast.

pub mod cosign;
pub mod keys;
pub mod notation;
pub mod policy;
pub mod x509;

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::Serialize;

use crate::digest::{Digest, Digester};
use crate::manifest::Descriptor;
use crate::referrers::{DiscoveryOptions, Referrer};
use crate::source::{FetchedManifest, ImageSource};
use crate::source_spec::SourceSpec;

/// Largest signature blob read (a payload, a bundle, an envelope with its certificates).
pub const SIGNATURE_BLOB_LIMIT: u64 = 4 * 1024 * 1024;

/// Most referrers of one artifact type listed for the image before verification gives up.
pub const MAX_LISTED: usize = 256;

/// Most signatures of one scheme examined.
pub const MAX_SIGNATURES: usize = 64;

/// `--verify`: which scheme must accept the image.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Scheme {
    /// No verification (the default).
    #[default]
    None,
    /// cosign / sigstore signatures (`.sig` tags, bundles as referrers).
    Cosign,
    /// The containers `policy.json` (as skopeo and podman apply it).
    Policy,
    /// Notary Project signatures under Notation's trust policy and trust store.
    Notation,
}

impl Scheme {
    /// Every scheme with its `--verify` name.
    pub const ALL: &'static [(Scheme, &'static str)] = &[
        (Scheme::None, "none"),
        (Scheme::Cosign, "cosign"),
        (Scheme::Policy, "policy"),
        (Scheme::Notation, "notation"),
    ];

    /// Its `--verify` name.
    pub fn name(self) -> &'static str {
        Self::ALL
            .iter()
            .find(|(scheme, _)| *scheme == self)
            .map_or("none", |(_, name)| name)
    }
}

impl std::fmt::Display for Scheme {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for Scheme {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .iter()
            .find(|(_, name)| *name == s)
            .map(|(scheme, _)| *scheme)
            .ok_or_else(|| {
                let names: Vec<&str> = Self::ALL.iter().map(|(_, n)| *n).collect();
                format!("unknown --verify `{s}` (one of: {})", names.join(", "))
            })
    }
}

/// How to verify (the `--verify` family of flags).
#[derive(Debug, Clone, Default)]
pub struct VerifyOptions {
    /// Which scheme must accept the image.
    pub scheme: Scheme,
    /// cosign's key, identities and trusted root.
    pub cosign: cosign::Options,
    /// The containers `policy.json` (`--policy`; default [`policy::DEFAULT_PATH`]).
    pub policy: Option<PathBuf>,
    /// Notation's configuration directory (trust policy and trust store); the CLI resolves
    /// it from `--notation-config` or Notation's environment ([`notation::config_dir`]).
    pub notation: Option<PathBuf>,
    /// Check Notation signing chains for revocation by downloading their CRLs
    /// (`--revocation-check`; off by default: air-gapped machines cannot reach the CA).
    pub revocation_check: bool,
}

impl VerifyOptions {
    /// Whether anything is to be verified.
    pub fn enabled(&self) -> bool {
        self.scheme != Scheme::None
    }

    /// The verifier for the scheme, its keys and policies loaded (`None` for `none`). Called
    /// before any network traffic: an unusable trust configuration fails here.
    pub fn verifier(&self) -> Result<Option<Box<dyn Verifier>>, Error> {
        Ok(match self.scheme {
            Scheme::None => None,
            Scheme::Cosign => Some(Box::new(cosign::CosignVerifier::load(&self.cosign)?)),
            Scheme::Policy => {
                let path = self
                    .policy
                    .clone()
                    .unwrap_or_else(|| PathBuf::from(policy::DEFAULT_PATH));
                Some(Box::new(policy::PolicyVerifier::load(&path)?))
            }
            Scheme::Notation => {
                let Some(dir) = &self.notation else {
                    return Err(Error::Usage(
                        "--verify notation needs Notation's configuration: --notation-config DIR, or NOTATION_CONFIG, XDG_CONFIG_HOME or HOME set"
                            .into(),
                    ));
                };
                let verifier = notation::NotationVerifier::load(dir)?;
                Some(Box::new(if self.revocation_check {
                    let fetcher = notation::revocation::CrlFetcher::new(crate::http::Proxy::System)
                        .map_err(|e| Error::Config {
                            what: "CRL client".into(),
                            reason: e.to_string(),
                        })?;
                    verifier.with_revocation_check(fetcher)
                } else {
                    verifier
                }))
            }
        })
    }
}

/// One verification scheme.
#[async_trait::async_trait]
pub trait Verifier: Send + Sync {
    /// Which scheme this is.
    fn scheme(&self) -> Scheme;
    /// Accept the image (a [`Verification`]) or refuse it (an [`Error`] saying why).
    async fn verify(&self, request: &Request<'_>) -> Result<Verification, Error>;
}

/// What a verifier is asked about, and how it reads signatures.
pub struct Request<'a> {
    /// The image as the user named it (registry reference, `oci:` layout, archive).
    pub image: &'a SourceSpec,
    /// The manifest the reference resolved to (exact bytes): what signatures sign.
    pub manifest: &'a FetchedManifest,
    /// Where the image, and so its signatures, come from.
    pub source: &'a dyn ImageSource,
}

impl Request<'_> {
    /// The digest signatures must name.
    pub fn digest(&self) -> &Digest {
        &self.manifest.digest
    }

    /// The resolved manifest as a descriptor (media type, digest, size).
    pub fn subject(&self) -> Descriptor {
        crate::referrers::subject_descriptor(self.manifest)
    }

    /// The image as named, for messages.
    pub fn display(&self) -> String {
        self.image.to_string()
    }

    /// The direct referrers of the image with `artifact_type` (referrers API, tag schema, or
    /// the layout's `index.json`): each manifest fetched and checked against its listing.
    /// A list longer than [`MAX_LISTED`] is refused rather than followed.
    pub async fn referrers(&self, artifact_type: &str) -> Result<Vec<Referrer>, Error> {
        let options = DiscoveryOptions {
            artifact_type: Some(artifact_type.to_string()),
            max_depth: 1,
            max_pages: 16,
            max_referrers: MAX_SIGNATURES,
            max_listed: MAX_LISTED,
            cosign_tags: false,
        };
        let found = crate::referrers::discover(self.source, &self.subject(), &options).await?;
        Ok(found
            .trees
            .into_iter()
            .flat_map(|tree| tree.referrers)
            .collect())
    }

    /// The manifest tagged `tag` (cosign's `sha256-<hex>.sig`), if there is one.
    pub async fn tagged(&self, tag: &str) -> Result<Option<FetchedManifest>, Error> {
        match self.source.manifest(tag).await {
            Ok(found) => Ok(Some(found)),
            Err(crate::registry::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// A small blob (a signature payload, a bundle, an envelope), read into memory and
    /// checked against its digest and size. A blob over [`SIGNATURE_BLOB_LIMIT`] or one
    /// whose bytes do not match is a [`Reason::Malformed`] for the signature that names it.
    pub async fn blob(&self, descriptor: &Descriptor) -> Result<Result<Vec<u8>, Reason>, Error> {
        if descriptor.size > SIGNATURE_BLOB_LIMIT {
            return Ok(Err(Reason::Malformed(format!(
                "blob {} is {} bytes, more than a signature may be ({SIGNATURE_BLOB_LIMIT})",
                descriptor.digest, descriptor.size
            ))));
        }
        let mut body = self.source.open_blob(&descriptor.digest, 0, None).await?;
        let mut bytes = Vec::new();
        while let Some(chunk) = futures_util::StreamExt::next(&mut body.stream).await {
            let chunk = chunk.map_err(|source| crate::registry::Error::Body {
                url: format!("{} blob {}", self.source.describe(), descriptor.digest),
                source,
            })?;
            bytes.extend_from_slice(&chunk);
            if bytes.len() as u64 > descriptor.size {
                break;
            }
        }
        let mut digester = Digester::new(descriptor.digest.algorithm());
        digester.update(&bytes);
        let actual = digester.finish();
        if actual != descriptor.digest || bytes.len() as u64 != descriptor.size {
            return Ok(Err(Reason::Malformed(format!(
                "blob {} ({} bytes) does not match its descriptor: got {actual} ({} bytes)",
                descriptor.digest,
                descriptor.size,
                bytes.len()
            ))));
        }
        Ok(Ok(bytes))
    }
}

/// An accepted image: the `verification` object of `--json`.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Verification {
    /// The scheme that accepted it.
    pub scheme: Scheme,
    /// The manifest digest verified.
    pub digest: Digest,
    /// Who signed it: a key fingerprint, a certificate subject, an OIDC identity.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub signer: Option<String>,
    /// The signature accepted (its manifest digest, and where it was found).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub signature: Option<String>,
    /// How strictly it was verified (`keyed`, `keyless`, a Notation level, a policy
    /// requirement).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub level: Option<String>,
    /// The policy entry that applied (containers `policy.json` scope, Notation trust policy).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub policy: Option<String>,
    /// A keyless signer: the certificate's SAN and OIDC issuer.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub identity: Option<cosign::keyless::SignerIdentity>,
    /// Checks made beyond the signature itself (transparency log, chain, identity, ...).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub checks: Vec<String>,
    /// Checks not made, and why (no transparency log entry, revocation offline, ...).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub skipped: Vec<String>,
    /// Other signatures that were rejected, and why (one accepted signature is enough).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub rejected: Vec<Rejection>,
    /// Warnings also printed on stderr (an `audit` level that let a failure pass, ...).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
}

impl Verification {
    /// An acceptance by `scheme` of `digest`, with nothing else said yet.
    pub fn new(scheme: Scheme, digest: Digest) -> Self {
        Self {
            scheme,
            digest,
            signer: None,
            signature: None,
            level: None,
            policy: None,
            identity: None,
            checks: Vec::new(),
            skipped: Vec::new(),
            rejected: Vec::new(),
            warnings: Vec::new(),
        }
    }
}

/// One signature that was not accepted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Rejection {
    /// Which signature: its digest and where it was found.
    pub signature: String,
    /// Why.
    pub reason: Reason,
}

impl std::fmt::Display for Rejection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.signature, self.reason)
    }
}

/// Why a signature was rejected.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, thiserror::Error)]
#[serde(tag = "kind", content = "detail", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Reason {
    /// It signs another manifest.
    #[error("it signs {signed}, not {expected} (a signature over another digest)")]
    DigestMismatch {
        /// What the signature names.
        signed: String,
        /// The image's digest.
        expected: Digest,
    },
    /// The signature does not verify with the key (tampered payload, or another key).
    #[error("the signature does not verify with {0}")]
    BadSignature(String),
    /// The certificate chain does not lead to a trusted root.
    #[error("untrusted certificate chain: {0}")]
    UntrustedChain(String),
    /// The signer is not the identity the policy names.
    #[error("signer identity mismatch: expected {expected}, found {found}")]
    IdentityMismatch {
        /// What the policy asks for.
        expected: String,
        /// What the signature carries.
        found: String,
    },
    /// A certificate or the signature is outside its validity period.
    #[error("expired: {0}")]
    Expired(String),
    /// A certificate was revoked.
    #[error("revoked: {0}")]
    Revoked(String),
    /// The transparency log entry is missing, or does not match the signature.
    #[error("transparency log: {0}")]
    Transparency(String),
    /// The policy refuses what the signature says (its identity claim, its type).
    #[error("policy: {0}")]
    Policy(String),
    /// The signature cannot be read (bad encoding, a missing part, a blob that does not
    /// match its digest).
    #[error("malformed: {0}")]
    Malformed(String),
    /// It uses something acrpull does not verify (an algorithm, an envelope kind).
    #[error("unsupported: {0}")]
    Unsupported(String),
}

impl Reason {
    /// A stable short name (`digest_mismatch`, `bad_signature`, ...), for hints and JSON.
    pub fn kind(&self) -> &'static str {
        match self {
            Reason::DigestMismatch { .. } => "digest_mismatch",
            Reason::BadSignature(_) => "bad_signature",
            Reason::UntrustedChain(_) => "untrusted_chain",
            Reason::IdentityMismatch { .. } => "identity_mismatch",
            Reason::Expired(_) => "expired",
            Reason::Revoked(_) => "revoked",
            Reason::Transparency(_) => "transparency",
            Reason::Policy(_) => "policy",
            Reason::Malformed(_) => "malformed",
            Reason::Unsupported(_) => "unsupported",
        }
    }
}

/// Why an image was refused, or could not be verified.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The image carries no signature of the scheme.
    #[error("{image} ({digest}) has no {scheme} signature{}; looked in {looked}", policy_note(policy.as_deref()))]
    NoSignature {
        /// The scheme.
        scheme: Scheme,
        /// The image as named.
        image: String,
        /// Its manifest digest.
        digest: Digest,
        /// The policy entry that required one.
        policy: Option<String>,
        /// Where signatures were looked for.
        looked: String,
    },
    /// Signatures were found, and none was accepted.
    #[error("{image} ({digest}): no {scheme} signature was accepted{}: {}", policy_note(policy.as_deref()), list(rejections))]
    Rejected {
        /// The scheme.
        scheme: Scheme,
        /// The image as named.
        image: String,
        /// Its manifest digest.
        digest: Digest,
        /// The policy entry that applied.
        policy: Option<String>,
        /// Each signature, and why it was rejected.
        rejections: Vec<Rejection>,
    },
    /// The policy refuses the image whatever its signatures (`reject`).
    #[error("{image} ({digest}) is refused by {policy}")]
    PolicyRejected {
        /// The image as named.
        image: String,
        /// Its manifest digest.
        digest: Digest,
        /// The policy entry (file and scope).
        policy: String,
    },
    /// The flags do not say what to verify with (`--verify cosign` without a key).
    #[error("{0}")]
    Usage(String),
    /// The trust configuration (key, policy, trusted root) cannot be used.
    #[error("{what}: {reason}")]
    Config {
        /// The file or flag.
        what: String,
        /// What is wrong with it.
        reason: String,
    },
    /// Reading signatures from the source failed.
    #[error(transparent)]
    Source(#[from] crate::registry::Error),
    /// Listing the referrers failed (or was refused as unbounded).
    #[error(transparent)]
    Referrers(#[from] crate::referrers::Error),
}

impl Error {
    /// Every rejection reason this error carries.
    pub fn reasons(&self) -> Vec<&Reason> {
        match self {
            Error::Rejected { rejections, .. } => rejections.iter().map(|r| &r.reason).collect(),
            _ => Vec::new(),
        }
    }

    /// The registry error underneath, when reading the source failed.
    pub fn registry(&self) -> Option<&crate::registry::Error> {
        match self {
            Error::Source(e) | Error::Referrers(crate::referrers::Error::Registry(e)) => Some(e),
            _ => None,
        }
    }
}

fn policy_note(policy: Option<&str>) -> String {
    policy
        .map(|p| format!(" (policy: {p})"))
        .unwrap_or_default()
}

fn list(rejections: &[Rejection]) -> String {
    rejections
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

/// Verify `manifest` (what `image` resolved to at `source`) with `verifier`, if there is
/// one: the step pull, copy and push take after resolving and before moving any blob. Its
/// warnings go to `reporter`.
pub async fn check(
    verifier: Option<&dyn Verifier>,
    image: &SourceSpec,
    manifest: &FetchedManifest,
    source: &dyn ImageSource,
    reporter: &dyn crate::report::Reporter,
) -> Result<Option<Verification>, Error> {
    let Some(verifier) = verifier else {
        return Ok(None);
    };
    let request = Request {
        image,
        manifest,
        source,
    };
    verify(verifier, &request, reporter).await.map(Some)
}

/// Run `verifier` on `request`: its warnings go to `reporter`, what it accepted to the log.
pub async fn verify(
    verifier: &dyn Verifier,
    request: &Request<'_>,
    reporter: &dyn crate::report::Reporter,
) -> Result<Verification, Error> {
    let verification = verifier.verify(request).await?;
    for warning in &verification.warnings {
        reporter.on_warning(warning);
    }
    tracing::info!(
        scheme = %verification.scheme,
        digest = %verification.digest,
        signer = verification.signer.as_deref().unwrap_or("-"),
        "signature verified"
    );
    Ok(verification)
}

/// Annotations of a descriptor, or none.
pub(crate) fn annotations(descriptor: &Descriptor) -> BTreeMap<String, String> {
    descriptor.annotations.clone().unwrap_or_default()
}
