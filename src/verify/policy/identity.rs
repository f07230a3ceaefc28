//! `signedIdentity`: whether the `docker-reference` a signature claims may stand for the image
//! being verified, with containers/image's matchers (`matchExact`, `matchRepoDigestOrExact`,
//! `matchRepository`, `exactReference`, `exactRepository`, `remapIdentity`).

use super::SignedIdentity;
use crate::reference::Reference;

/// The full string and name of a reference, as containers/image compares them.
struct Named {
    name: String,
    full: String,
    name_only: bool,
    by_digest: bool,
}

impl Named {
    fn of(reference: &Reference) -> Self {
        let name = format!("{}/{}", reference.registry(), reference.repository());
        let full = match (reference.tag(), reference.digest()) {
            (Some(tag), Some(digest)) => format!("{name}:{tag}@{digest}"),
            (Some(tag), None) => format!("{name}:{tag}"),
            (None, Some(digest)) => format!("{name}@{digest}"),
            (None, None) => name.clone(),
        };
        Named {
            name_only: reference.tag().is_none() && reference.digest().is_none(),
            by_digest: reference.digest().is_some() && reference.tag().is_none(),
            name,
            full,
        }
    }

    /// A reference as written (no tag implied: cosign's claims are name-only).
    fn parse(text: &str) -> Option<Self> {
        let reference: Reference = text.parse().ok()?;
        let explicit_tag = {
            let last = text.rsplit('/').next().unwrap_or(text);
            let last = last.split('@').next().unwrap_or(last);
            last.contains(':')
        };
        let mut named = Named::of(&reference);
        if !explicit_tag && reference.digest().is_none() {
            named.full = named.name.clone();
            named.name_only = true;
        } else if !explicit_tag {
            if let Some(digest) = reference.digest() {
                named.full = format!("{}@{digest}", named.name);
                named.by_digest = true;
            }
        }
        Some(named)
    }
}

fn repo_digest_or_exact(intended: &Named, signature: &Named) -> bool {
    if signature.name_only {
        return false;
    }
    if intended.by_digest {
        signature.name == intended.name
    } else {
        !intended.name_only && signature.full == intended.full
    }
}

impl SignedIdentity {
    /// Whether a signature claiming `claimed` may stand for `image`.
    pub fn matches(&self, image: Option<&Reference>, claimed: &str) -> Result<(), String> {
        let Some(signature) = Named::parse(claimed) else {
            return Err(format!(
                "the signature's docker-reference `{claimed}` is not a reference"
            ));
        };
        let intended = || {
            image.map(Named::of).ok_or_else(|| {
                "the image has no Docker reference to match (use exactReference or \
                 exactRepository for local layouts)"
                    .to_string()
            })
        };
        let ok = match self {
            SignedIdentity::MatchExact {} => {
                let intended = intended()?;
                !intended.name_only && !signature.name_only && signature.full == intended.full
            }
            SignedIdentity::MatchRepoDigestOrExact {} => {
                repo_digest_or_exact(&intended()?, &signature)
            }
            SignedIdentity::MatchRepository {} => signature.name == intended()?.name,
            SignedIdentity::ExactReference { docker_reference } => {
                let wanted = Named::parse(docker_reference).ok_or_else(|| {
                    format!("exactReference `{docker_reference}` is not a reference")
                })?;
                !wanted.name_only && !signature.name_only && signature.full == wanted.full
            }
            SignedIdentity::ExactRepository { docker_repository } => {
                let wanted = Named::parse(docker_repository).ok_or_else(|| {
                    format!("exactRepository `{docker_repository}` is not a reference")
                })?;
                signature.name == wanted.name
            }
            SignedIdentity::RemapIdentity {
                prefix,
                signed_prefix,
            } => {
                let mut intended = intended()?;
                let boundary = intended.name.len() == prefix.len()
                    || intended.name.as_bytes().get(prefix.len()) == Some(&b'/');
                if intended.name.starts_with(prefix.as_str()) && boundary {
                    let full = intended.full.replacen(prefix.as_str(), signed_prefix, 1);
                    intended = Named::parse(&full)
                        .ok_or_else(|| format!("remapping gives `{full}`, not a reference"))?;
                }
                repo_digest_or_exact(&intended, &signature)
            }
        };
        if ok {
            Ok(())
        } else {
            Err(format!(
                "the signature names `{claimed}`, which {self:?} does not accept for {}",
                image.map_or_else(|| "this image".to_string(), ToString::to_string)
            ))
        }
    }
}
