//! cosign signatures, verified offline.
//!
//! Where they are found:
//! - cosign's tag `sha256-<hex>.sig`: an image manifest whose layers are simple signing
//!   payloads (`application/vnd.dev.cosign.simplesigning.v1+json`), each with its base64
//!   signature in the `dev.cosignproject.cosign/signature` annotation;
//! - sigstore bundles stored as referrers (`artifactType`
//!   `application/vnd.dev.sigstore.bundle.v0.3+json`, cosign's `BUNDLE_SPEC.md`): a
//!   DSSE envelope (an in-toto statement or a simple signing payload naming the image) or a
//!   message signature over the manifest itself.
//!
//! What is checked, as `cosign verify --key` does: the signature over the exact payload bytes
//! with the key, then the claims: `critical.type` is `cosign container image signature` and
//! `critical.image.docker-manifest-digest` is the image's digest. cosign does not compare
//! `critical.identity.docker-reference` with the image's name (so a signed image copied to
//! another registry still verifies); neither does `--verify cosign`, which reports it, and
//! warns when it names another repository. `--verify policy` holds it to the policy's
//! `signedIdentity`.
//!
//! Why not the `sigstore` crate: its verification features pull in its own OCI client, an
//! OIDC client, `reqwest` and OpenSSL (or aws-lc through cmake), and fetch TUF roots over
//! the network; acrpull already has a registry client, must work offline on a minimal VM,
//! and only needs the checks above, done here with RustCrypto's pure-Rust primitives.

pub mod bundle;
pub mod keyless;
pub mod merkle;
pub mod payload;
pub mod rekor;
pub mod sct;
pub mod trusted_root;

use std::path::PathBuf;

use base64::Engine as _;

use super::keys::{Hash, PublicKey};
use super::{Error, Reason, Rejection, Request, Scheme, Verification, Verifier, MAX_SIGNATURES};
use crate::manifest::ImageManifest;

/// The media type of a simple signing payload layer.
pub const SIMPLE_SIGNING: &str = "application/vnd.dev.cosign.simplesigning.v1+json";
/// The layer annotation holding the base64 signature.
pub const SIGNATURE_ANNOTATION: &str = "dev.cosignproject.cosign/signature";
/// The layer annotation holding the signing certificate (keyless).
pub const CERTIFICATE_ANNOTATION: &str = "dev.sigstore.cosign/certificate";
/// The layer annotation holding the certificate chain (keyless).
pub const CHAIN_ANNOTATION: &str = "dev.sigstore.cosign/chain";
/// The layer annotation holding the Rekor bundle (signed entry timestamp).
pub const REKOR_BUNDLE_ANNOTATION: &str = "dev.sigstore.cosign/bundle";

/// The cosign flags.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// `--cosign-key`: a PEM public key file.
    pub key: Option<PathBuf>,
    /// `--certificate-identity`: the keyless signer's SAN, exactly.
    pub certificate_identity: Option<String>,
    /// `--certificate-identity-regexp`.
    pub certificate_identity_regexp: Option<String>,
    /// `--certificate-oidc-issuer`: the OIDC issuer, exactly.
    pub certificate_oidc_issuer: Option<String>,
    /// `--certificate-oidc-issuer-regexp`.
    pub certificate_oidc_issuer_regexp: Option<String>,
    /// `--trusted-root`: sigstore's `trusted_root.json`.
    pub trusted_root: Option<PathBuf>,
}

impl Options {
    fn keyless_flags(&self) -> bool {
        self.certificate_identity.is_some()
            || self.certificate_identity_regexp.is_some()
            || self.certificate_oidc_issuer.is_some()
            || self.certificate_oidc_issuer_regexp.is_some()
            || self.trusted_root.is_some()
    }
}

/// What a cosign signature must be verified against.
#[derive(Debug, Clone, Copy)]
pub enum Expect<'a> {
    /// A key (keyed signatures).
    Key(&'a Trust),
    /// A Fulcio certificate for an identity, under a trusted root (keyless signatures).
    Keyless(&'a keyless::Keyless),
}

/// What a signature must be verified against: any one of these keys
/// (`--cosign-key`, a policy's `keyPath`, `keyPaths`, `keyData`, `keyDatas`).
#[derive(Debug, Clone)]
pub struct Trust {
    /// Each key, and where it came from (for messages).
    pub keys: Vec<(PublicKey, String)>,
}

impl Trust {
    /// The key in the PEM file at `path`.
    pub fn key_file(path: &std::path::Path) -> Result<Self, Error> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::Config {
            what: format!("cosign key {}", path.display()),
            reason: e.to_string(),
        })?;
        Self::key_pem(&text, &path.display().to_string())
    }

    /// The key in PEM `text` from `origin`.
    pub fn key_pem(text: &str, origin: &str) -> Result<Self, Error> {
        let key = PublicKey::from_pem(text).map_err(|reason| Error::Config {
            what: format!("cosign key {origin}"),
            reason,
        })?;
        Ok(Trust {
            keys: vec![(key, origin.to_string())],
        })
    }

    fn describe(&self) -> String {
        let keys: Vec<String> = self
            .keys
            .iter()
            .map(|(key, origin)| format!("the {} key {origin}", key.kind()))
            .collect();
        keys.join(" or ")
    }

    /// Which key signed `message` with `signature`, if one did (any hash a key may sign
    /// cosign payloads with: the curve's, and SHA-256 that cosign used for every key).
    pub fn check(&self, message: &[u8], signature: &[u8]) -> Result<String, Reason> {
        self.signer_of(message, signature)
            .map(|key| format!("{} key {}", key.kind(), key.fingerprint()))
    }

    /// The key that made `signature` over `message`.
    pub fn signer_of(&self, message: &[u8], signature: &[u8]) -> Result<&PublicKey, Reason> {
        let mut last = String::new();
        for (key, _) in &self.keys {
            let mut hashes = vec![key.default_hash()];
            if !hashes.contains(&Hash::Sha256) {
                hashes.push(Hash::Sha256);
            }
            for hash in hashes {
                match key.verify(message, signature, hash) {
                    Ok(()) => return Ok(key),
                    Err(e) => last = e,
                }
            }
        }
        Err(Reason::BadSignature(format!(
            "{} ({last})",
            self.describe()
        )))
    }
}

/// A signature that passed: who signed, and what its payload claims.
#[derive(Debug, Clone)]
pub struct Accepted {
    /// The keyless signer (SAN and OIDC issuer).
    pub identity: Option<keyless::SignerIdentity>,
    /// The checks made beyond the signature itself.
    pub checks: Vec<String>,
    /// Where it was found (`sha256:... in tag ...sig`, `bundle sha256:...`).
    pub signature: String,
    /// The signer (key kind and fingerprint).
    pub signer: String,
    /// The `docker-reference` the payload claims, if it has one.
    pub docker_reference: Option<String>,
    /// Checks that were not made.
    pub skipped: Vec<String>,
    /// What a transparency log check needs (`.sig` layers only).
    pub evidence: Option<rekor::Evidence>,
}

impl Accepted {
    /// Signed by `signer`, claiming `docker_reference`.
    pub fn new(signer: String, docker_reference: Option<String>) -> Self {
        Accepted {
            identity: None,
            checks: Vec::new(),
            signature: String::new(),
            signer,
            docker_reference,
            skipped: Vec::new(),
            evidence: None,
        }
    }

    /// Accepted keyless, for `identity`, after `checks`.
    pub fn keyless(&mut self, identity: keyless::SignerIdentity, checks: Vec<String>) {
        self.signer = identity.subject.clone();
        self.identity = Some(identity);
        self.checks = checks;
    }
}

/// Every cosign signature of the image, each accepted or rejected.
pub async fn examine(
    request: &Request<'_>,
    expect: Expect<'_>,
) -> Result<(Vec<Accepted>, Vec<Rejection>, String), Error> {
    let mut accepted = Vec::new();
    let mut rejected = Vec::new();
    let tag = crate::referrers::cosign_tag(request.digest(), "sig");
    let looked = format!(
        "tag `{tag}` and {} referrers of {}",
        bundle::BUNDLE_V03,
        request.source.describe()
    );
    if let Some(manifest) = request.tagged(&tag).await? {
        let where_ = format!("{} (tag {tag})", manifest.digest);
        match serde_json::from_slice::<ImageManifest>(&manifest.bytes) {
            Err(e) => rejected.push(Rejection {
                signature: where_,
                reason: Reason::Malformed(format!("not an image manifest: {e}")),
            }),
            Ok(parsed) => {
                for (index, layer) in parsed.layers.iter().enumerate().take(MAX_SIGNATURES) {
                    let signature = format!("{where_} layer {index}");
                    match check_layer(request, expect, layer).await? {
                        Ok(mut found) => {
                            found.signature = signature;
                            accepted.push(found);
                        }
                        Err(reason) => rejected.push(Rejection { signature, reason }),
                    }
                }
            }
        }
    }
    for referrer in request.referrers(bundle::BUNDLE_V03).await? {
        let signature = format!("bundle {}", referrer.digest);
        match bundle::check_referrer(request, expect, &referrer).await? {
            Ok(mut found) => {
                found.signature = signature;
                accepted.push(found);
            }
            Err(reason) => rejected.push(Rejection { signature, reason }),
        }
    }
    Ok((accepted, rejected, looked))
}

/// One layer of a `.sig` manifest: its payload blob, signed as `expect` says, naming the image.
async fn check_layer(
    request: &Request<'_>,
    expect: Expect<'_>,
    layer: &crate::manifest::Descriptor,
) -> Result<Result<Accepted, Reason>, Error> {
    let annotations = super::annotations(layer);
    let Some(encoded) = annotations.get(SIGNATURE_ANNOTATION) else {
        return Ok(Err(Reason::Malformed(format!(
            "layer {} has no `{SIGNATURE_ANNOTATION}` annotation",
            layer.digest
        ))));
    };
    let Ok(signature) = base64::engine::general_purpose::STANDARD.decode(encoded.trim()) else {
        return Ok(Err(Reason::Malformed(format!(
            "the `{SIGNATURE_ANNOTATION}` annotation is not base64"
        ))));
    };
    let payload = match request.blob(layer).await? {
        Ok(payload) => payload,
        Err(reason) => return Ok(Err(reason)),
    };
    let trust = match expect {
        Expect::Key(trust) => trust,
        Expect::Keyless(keyless) => {
            return Ok(check_keyless_layer(
                request,
                keyless,
                &annotations,
                &payload,
                &signature,
            ))
        }
    };
    let mut accepted = match check_simple_signing(request, trust, &payload, &signature) {
        Ok(accepted) => accepted,
        Err(reason) => return Ok(Err(reason)),
    };
    let key = trust
        .signer_of(&payload, &signature)
        .map(PublicKey::to_spki_der)
        .unwrap_or_default();
    accepted.evidence = Some(rekor::Evidence {
        bundle: annotations.get(REKOR_BUNDLE_ANNOTATION).cloned(),
        payload,
        signature,
        key,
    });
    Ok(Ok(accepted))
}

/// A keyless `.sig` layer: its certificate (and chain) annotations, the payload signed with
/// the certificate's key, the Rekor entry of the `dev.sigstore.cosign/bundle` annotation.
fn check_keyless_layer(
    request: &Request<'_>,
    keyless: &keyless::Keyless,
    annotations: &std::collections::BTreeMap<String, String>,
    payload: &[u8],
    signature: &[u8],
) -> Result<Accepted, Reason> {
    let Some(certificate) = annotations.get(CERTIFICATE_ANNOTATION) else {
        return Err(Reason::Policy(format!(
            "no `{CERTIFICATE_ANNOTATION}` annotation: a keyed signature (verify it with \
             --cosign-key)"
        )));
    };
    let material = keyless::Material::from_pem(
        certificate,
        annotations.get(CHAIN_ANNOTATION).map(String::as_str),
    )?;
    let mut accepted = check_simple_signing(request, &material.trust()?, payload, signature)?;
    let entries = match annotations.get(REKOR_BUNDLE_ANNOTATION) {
        Some(text) => vec![rekor::Entry::from_annotation(text)?],
        None => Vec::new(),
    };
    let sha256 = <sha2::Sha256 as sha2::Digest>::digest(payload);
    let signed = rekor::Signed::Hash {
        sha256: &sha256,
        signature,
    };
    let outcome = keyless.check(&material, &entries, signed)?;
    accepted.skipped = outcome.skipped;
    accepted.keyless(outcome.identity, outcome.checks);
    Ok(accepted)
}

/// A simple signing payload and its signature: signed by `trust`, and naming the image.
pub fn check_simple_signing(
    request: &Request<'_>,
    trust: &Trust,
    payload: &[u8],
    signature: &[u8],
) -> Result<Accepted, Reason> {
    let signer = trust.check(payload, signature)?;
    let claims = payload::SimpleSigning::parse(payload)?;
    claims.check_digest(request.digest())?;
    Ok(Accepted::new(
        signer,
        claims.docker_reference().map(str::to_string),
    ))
}

/// `--verify cosign`: keyed or keyless.
#[derive(Debug)]
pub enum CosignVerifier {
    /// `--cosign-key`.
    Keyed(Trust),
    /// `--certificate-identity[-regexp]`, `--certificate-oidc-issuer[-regexp]`,
    /// `--trusted-root`.
    Keyless(Box<keyless::Keyless>),
}

impl CosignVerifier {
    /// Load the key, or the trusted root and identity, named by the options: exactly one of a
    /// key or a keyless identity, as cosign requires.
    pub fn load(options: &Options) -> Result<Self, Error> {
        match (&options.key, options.keyless_flags()) {
            (Some(_), true) => Err(Error::Usage(
                "--cosign-key verifies keyed signatures; --certificate-identity, \
                 --certificate-oidc-issuer and --trusted-root verify keyless ones: give one or \
                 the other"
                    .into(),
            )),
            (Some(path), false) => Ok(Self::Keyed(Trust::key_file(path)?)),
            (None, false) => Err(Error::Usage(
                "--verify cosign needs --cosign-key PEM (the public key the image was signed \
                 with), or for keyless signatures --certificate-identity[-regexp] with \
                 --certificate-oidc-issuer[-regexp] and --trusted-root FILE"
                    .into(),
            )),
            (None, true) => {
                let identity = keyless::Identity {
                    subject: keyless::Matcher::new(
                        "certificate-identity",
                        options.certificate_identity.as_deref(),
                        options.certificate_identity_regexp.as_deref(),
                    )?,
                    issuer: keyless::Matcher::new(
                        "certificate-oidc-issuer",
                        options.certificate_oidc_issuer.as_deref(),
                        options.certificate_oidc_issuer_regexp.as_deref(),
                    )?,
                };
                let Some(path) = &options.trusted_root else {
                    return Err(Error::Usage(
                        "keyless verification needs --trusted-root FILE (sigstore's \
                         trusted_root.json: acrpull verifies offline and fetches no TUF root)"
                            .into(),
                    ));
                };
                let root = trusted_root::TrustedRoot::load(path)?;
                Ok(Self::Keyless(Box::new(keyless::Keyless { root, identity })))
            }
        }
    }

    fn expect(&self) -> Expect<'_> {
        match self {
            Self::Keyed(trust) => Expect::Key(trust),
            Self::Keyless(keyless) => Expect::Keyless(keyless),
        }
    }
}

#[async_trait::async_trait]
impl Verifier for CosignVerifier {
    fn scheme(&self) -> Scheme {
        Scheme::Cosign
    }

    async fn verify(&self, request: &Request<'_>) -> Result<Verification, Error> {
        let (accepted, rejected, looked) = examine(request, self.expect()).await?;
        let Some(first) = accepted.into_iter().next() else {
            return Err(if rejected.is_empty() {
                Error::NoSignature {
                    scheme: Scheme::Cosign,
                    image: request.display(),
                    digest: request.digest().clone(),
                    policy: None,
                    looked,
                }
            } else {
                Error::Rejected {
                    scheme: Scheme::Cosign,
                    image: request.display(),
                    digest: request.digest().clone(),
                    policy: None,
                    rejections: rejected,
                }
            });
        };
        let mut verification = Verification::new(Scheme::Cosign, request.digest().clone());
        verification.signer = Some(first.signer);
        verification.signature = Some(first.signature);
        verification.level = Some(
            if first.identity.is_some() {
                "keyless"
            } else {
                "keyed"
            }
            .into(),
        );
        verification.identity = first.identity;
        verification.checks = first.checks;
        verification.skipped = first.skipped;
        verification.rejected = rejected;
        if let (Some(claimed), crate::source_spec::SourceSpec::Registry(reference)) =
            (&first.docker_reference, request.image)
        {
            let named = format!("{}/{}", reference.registry(), reference.repository());
            if !payload::same_repository(claimed, &named) {
                verification.warnings.push(format!(
                    "the signature's docker-reference is `{claimed}`, not `{named}` (cosign \
                     does not compare them; a policy's signedIdentity does)"
                ));
            }
        }
        Ok(verification)
    }
}
