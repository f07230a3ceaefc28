//! `sigstoreSigned` requirements: their keys, or their Fulcio CA and identity
//! (`fulcio: {caPath|caData, oidcIssuer, subjectEmail}` with `rekorPublicKey*`), loaded when
//! the policy is, and applied to an image's cosign signatures as containers/image applies
//! them. A `fulcio` requirement is a keyless verification ([`cosign::keyless`]) whose trusted
//! root is the policy's CA and Rekor keys, trusted at all times, without CT logs (skopeo does
//! not check SCTs, so the SCT check is reported as skipped), and whose identity is the exact
//! email SAN and OIDC issuer.

use std::path::Path;

use base64::Engine as _;
use serde::Deserialize;

use super::{ImageScopes, SignedIdentity, SigstoreSigned};
use crate::verify::cosign::keyless::{Identity, Keyless, Matcher};
use crate::verify::cosign::trusted_root::TrustedRoot;
use crate::verify::cosign::{self, Trust};
use crate::verify::keys::PublicKey;
use crate::verify::x509::Certificate;
use crate::verify::{Error, Reason, Rejection, Request, Scheme};

/// `fulcio`, as containers/image reads it.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Fulcio {
    #[serde(default)]
    ca_path: Option<String>,
    #[serde(default)]
    ca_data: Option<String>,
    #[serde(default)]
    oidc_issuer: String,
    #[serde(default)]
    subject_email: String,
}

/// The keyless trust of a `fulcio` requirement.
fn fulcio_trust(
    base: &Path,
    value: &serde_json::Value,
    rekor: &[PublicKey],
) -> Result<Keyless, String> {
    let fulcio: Fulcio =
        serde_json::from_value(value.clone()).map_err(|e| format!("sigstoreSigned.fulcio: {e}"))?;
    let pem = match (&fulcio.ca_path, &fulcio.ca_data) {
        (Some(path), None) => {
            let path = base.join(path);
            std::fs::read(&path).map_err(|e| format!("fulcio caPath {}: {e}", path.display()))?
        }
        (None, Some(data)) => base64::engine::general_purpose::STANDARD
            .decode(data.trim())
            .map_err(|_| "fulcio caData is not base64".to_string())?,
        _ => {
            return Err(
                "sigstoreSigned.fulcio: exactly one of caPath and caData must be given".into(),
            )
        }
    };
    if fulcio.oidc_issuer.is_empty() || fulcio.subject_email.is_empty() {
        return Err("sigstoreSigned.fulcio: oidcIssuer and subjectEmail must be given".into());
    }
    let ca = Certificate::parse_many(&pem).map_err(|e| format!("fulcio CA: {e}"))?;
    let root = TrustedRoot::from_parts("the policy's fulcio CA and Rekor keys", ca, rekor.to_vec())
        .map_err(|e| format!("fulcio CA: {e}"))?;
    Ok(Keyless {
        root,
        identity: Identity {
            subject: Matcher::Email(fulcio.subject_email),
            issuer: Matcher::Exact(fulcio.oidc_issuer),
        },
    })
}

impl SigstoreSigned {
    /// The keys it names, or its Fulcio CA and identity, and the Rekor keys, loaded relative
    /// to `base`.
    pub(super) fn keys(&self, base: &Path) -> Result<Loaded, String> {
        let keys = load_keys(
            base,
            &self.key_path,
            &self.key_paths,
            &self.key_data,
            &self.key_datas,
        )?;
        let rekor = load_keys(
            base,
            &self.rekor_public_key_path,
            &self.rekor_public_key_paths,
            &self.rekor_public_key_data,
            &self.rekor_public_key_datas,
        )?;
        let rekor: Vec<PublicKey> = rekor.into_iter().map(|(key, _)| key).collect();
        let keyless = match &self.fulcio {
            Some(fulcio) => Some(fulcio_trust(base, fulcio, &rekor)?),
            None => None,
        };
        Ok(Loaded {
            trust: (!keys.is_empty()).then_some(Trust { keys }),
            keyless,
            rekor,
        })
    }
}

/// The keys of one `sigstoreSigned` requirement.
#[derive(Debug, Clone)]
pub(super) struct Loaded {
    /// The signing keys (`None` for keyless forms).
    trust: Option<Trust>,
    /// `fulcio`: the CA, the identity, the Rekor keys as a trusted root.
    keyless: Option<Keyless>,
    /// Rekor's keys: when there are some, a signature needs a Rekor entry they signed.
    rekor: Vec<PublicKey>,
}

/// PEM public keys from a `*Path`, `*Paths`, `*Data` and `*Datas` quartet.
fn load_keys(
    base: &Path,
    path: &Option<String>,
    paths: &Option<Vec<String>>,
    data: &Option<String>,
    datas: &Option<Vec<String>>,
) -> Result<Vec<(PublicKey, String)>, String> {
    let mut pems: Vec<(String, String)> = Vec::new();
    for file in path.iter().chain(paths.iter().flatten()) {
        let path = base.join(file);
        let text =
            std::fs::read_to_string(&path).map_err(|e| format!("key {}: {e}", path.display()))?;
        pems.push((text, path.display().to_string()));
    }
    for (index, data) in data.iter().chain(datas.iter().flatten()).enumerate() {
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(data.trim())
            .map_err(|_| format!("key data entry {index} is not base64"))?;
        let text = String::from_utf8(bytes)
            .map_err(|_| format!("key data entry {index} is not PEM text"))?;
        pems.push((text, format!("key data entry {index}")));
    }
    pems.into_iter()
        .map(|(text, origin)| {
            PublicKey::from_pem(&text)
                .map(|key| (key, origin.clone()))
                .map_err(|e| format!("key {origin}: {e}"))
        })
        .collect()
}

/// One `sigstoreSigned` requirement: a signature by one of its keys whose identity claim its
/// `signedIdentity` accepts.
pub(super) async fn sigstore_signed(
    request: &Request<'_>,
    requirement: &SigstoreSigned,
    loaded: Option<&Loaded>,
    named: &str,
    index: usize,
) -> Result<cosign::Accepted, Error> {
    let refuse = |rejections: Vec<Rejection>| Error::Rejected {
        scheme: Scheme::Policy,
        image: request.display(),
        digest: request.digest().clone(),
        policy: Some(named.to_string()),
        rejections,
    };
    let pki = || {
        refuse(vec![Rejection {
            signature: format!("requirement {index} (sigstoreSigned)"),
            reason: Reason::Unsupported(
                "sigstoreSigned with pki (a private CA) is not verified by acrpull's policy \
                 support; use keyPath, keyData or fulcio"
                    .into(),
            ),
        }])
    };
    let Some(loaded) = loaded else {
        return Err(pki());
    };
    let (expect, rekor_keys) = match (&loaded.trust, &loaded.keyless) {
        (Some(trust), _) => (cosign::Expect::Key(trust), loaded.rekor.as_slice()),
        // Keyless signatures prove their Rekor entry inside the keyless checks.
        (None, Some(keyless)) => (cosign::Expect::Keyless(keyless), &[][..]),
        (None, None) => return Err(pki()),
    };
    let (accepted, mut rejected, looked) = cosign::examine(request, expect).await?;
    let identity = requirement
        .signed_identity
        .clone()
        .unwrap_or(SignedIdentity::MatchRepoDigestOrExact {});
    let image = ImageScopes::of(request.image).reference;
    for mut found in accepted {
        if !rekor_keys.is_empty() {
            let checked = match &found.evidence {
                Some(evidence) => cosign::rekor::verify(evidence, rekor_keys),
                None => Err(Reason::Transparency(
                    "a bundle's Rekor entry is not checked by acrpull's policy support; sign \
                     with a .sig tag"
                        .into(),
                )),
            };
            match checked {
                Ok(log_index) => {
                    found.signature = format!("{} (Rekor log index {log_index})", found.signature);
                }
                Err(reason) => {
                    rejected.push(Rejection {
                        signature: found.signature,
                        reason,
                    });
                    continue;
                }
            }
        }
        let Some(claimed) = found.docker_reference.clone() else {
            rejected.push(Rejection {
                signature: found.signature,
                reason: Reason::Policy("the signature names no docker-reference".into()),
            });
            continue;
        };
        match identity.matches(image.as_ref(), &claimed) {
            Ok(()) => return Ok(found),
            Err(why) => rejected.push(Rejection {
                signature: found.signature,
                reason: Reason::IdentityMismatch {
                    expected: format!("{identity:?}"),
                    found: why,
                },
            }),
        }
    }
    if rejected.is_empty() {
        return Err(Error::NoSignature {
            scheme: Scheme::Policy,
            image: request.display(),
            digest: request.digest().clone(),
            policy: Some(named.to_string()),
            looked,
        });
    }
    Err(refuse(rejected))
}
