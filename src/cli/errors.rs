//! Errors for people: one line saying what failed, the `Caused by:` chain, and a hint naming
//! the remedy where there is one. Hints are chosen by matching on the library's error
//! variants (never on their text where the variant says enough), with the image the user
//! asked for as context, so they can name the repository, tag and registry tried.

use std::fmt::Write as _;

use acrpull::registry::{Error as RegistryError, Missing};
use acrpull::{ErrorClass, SourceSpec};

/// The exit-code class of an error: the first [`acrpull::Error`] in its chain, else `Other`.
pub fn class_of(error: &anyhow::Error) -> ErrorClass {
    error
        .chain()
        .find_map(|e| e.downcast_ref::<acrpull::Error>())
        .map_or(ErrorClass::Other, acrpull::Error::class)
}

/// The stable name of a class in `--json-events` error lines.
pub fn class_name(class: ErrorClass) -> &'static str {
    match class {
        ErrorClass::Other => "other",
        ErrorClass::Usage => "usage",
        ErrorClass::Auth => "auth",
        ErrorClass::NotFound => "not_found",
        ErrorClass::Network => "network",
        ErrorClass::Integrity => "integrity",
        ErrorClass::Verification => "verification",
        ErrorClass::Interrupted => "interrupted",
        ErrorClass::Terminated => "terminated",
    }
}

fn registry_error(error: &anyhow::Error) -> Option<&RegistryError> {
    error.chain().find_map(|e| {
        e.downcast_ref::<RegistryError>().or_else(|| {
            e.downcast_ref::<acrpull::Error>().and_then(|e| match e {
                acrpull::Error::Registry(r)
                | acrpull::Error::Referrers(acrpull::referrers::Error::Registry(r)) => Some(r),
                _ => None,
            })
        })
    })
}

fn not_found_hint(kind: Missing, url: &str, image: Option<&SourceSpec>) -> String {
    match (image, kind) {
        (_, Missing::Catalog) => "this registry does not offer its catalog (the `_catalog` API is \
                                  optional in the distribution spec); name the repository instead"
            .into(),
        (_, Missing::Upload) => "the registry forgot the upload session; push again".into(),
        (Some(SourceSpec::Layout { path, .. }), Missing::LayoutFile) => format!(
            "`{}` is not an OCI image layout; create one with `acrpull pull --format oci REF {}`",
            path.display(),
            path.display()
        ),
        (Some(SourceSpec::Layout { path, reference }), Missing::Tag) => format!(
            "the layout at `{}` has no image tagged `{reference}`; its tags are the \
             `org.opencontainers.image.ref.name` annotations in `index.json`",
            path.display()
        ),
        (Some(SourceSpec::Layout { path, .. }), _) => format!(
            "the layout at `{}` is incomplete: `{url}` is missing; pull it again",
            path.display()
        ),
        (Some(SourceSpec::Archive { path, .. }), Missing::ArchiveFile) => {
            format!("`{}` does not exist; check the path", path.display())
        }
        (Some(SourceSpec::Archive { kind, path, .. }), _) => format!(
            "list what the archive holds with `tar -tf {}` (the images of a docker-archive are \
             the `RepoTags` of its manifest.json, also numbered @0, @1, ...; those of an \
             oci-archive the `org.opencontainers.image.ref.name` annotations of its \
             index.json): name one as {}:PATH:NAME",
            path.display(),
            kind.scheme()
        ),
        (Some(SourceSpec::Registry(reference)), Missing::Blob) => format!(
            "`{}` is reachable and has the manifest, but not this blob: the image at the \
             registry is incomplete",
            reference.registry()
        ),
        (Some(SourceSpec::Registry(reference)), Missing::Repository) => format!(
            "`{}` is reachable but has no repository `{}`; check the spelling (registries \
             also answer 404 when anonymous access to private repositories is refused: pass \
             credentials)",
            reference.registry(),
            reference.repository()
        ),
        (Some(SourceSpec::Registry(reference)), _) => {
            let tried = reference
                .digest()
                .map(|d| format!("digest `{d}`"))
                .or_else(|| reference.tag().map(|t| format!("tag `{t}`")))
                .unwrap_or_else(|| "the default tag".into());
            format!(
                "`{}` is reachable but has no {tried} in repository `{}`; check the spelling \
                 (registries also answer 404 when anonymous pulls of private repositories \
                 are refused: pass credentials)",
                reference.registry(),
                reference.repository()
            )
        }
        (None, _) => "check the registry, repository and tag spelling".into(),
    }
}

fn registry_hint(error: &RegistryError, image: Option<&SourceSpec>) -> Option<String> {
    use acrpull::azure::Error as Azure;
    Some(match error {
        RegistryError::NotFound { kind, url, .. } => not_found_hint(*kind, url, image),
        RegistryError::Unauthorized {
            detail: Some(detail),
            ..
        } if detail.contains("insufficient_scope") => {
            // The message already names the role to assign (AcrPull) for Azure identities.
            return None;
        }
        RegistryError::Unauthorized { status: 403, .. } => format!(
            "the credentials were accepted but may not pull this repository: grant pull \
             permission (on ACR, {})",
            acrpull::azure::PERMISSION_HINT
        ),
        RegistryError::Unauthorized { .. } | RegistryError::Token { .. } => {
            "check the credentials: --username with --password-stdin, a Docker config \
             (`~/.docker/config.json`), or an Azure identity (--identity, --client-id)"
                .into()
        }
        RegistryError::Azure { source, .. } => match source {
            Azure::EndpointUnreachable { .. } | Azure::NoIdentity { .. } => {
                "no managed identity here: run where Azure provides one (a VM or scale set, \
                 App Service, Container Apps, an Azure Arc-enabled server, Service Fabric, \
                 Azure ML, Cloud Shell) with it enabled, or set AZURE_CLIENT_ID, AZURE_TENANT_ID and \
                 AZURE_CLIENT_SECRET (service principal) or AZURE_FEDERATED_TOKEN_FILE \
                 (workload identity)"
                    .into()
            }
            Azure::IdentityNotAssigned { .. } => {
                "assign the identity to this machine, or pass the client id of one that is \
                 (--client-id)"
                    .into()
            }
            Azure::AcrRefused {
                status: 401 | 403, ..
            } => format!(
                "the registry refused the Entra ID token: {}",
                acrpull::azure::PERMISSION_HINT
            ),
            _ => return None,
        },
        RegistryError::Tls { .. } => {
            "trust the registry's CA with --ca-file PEM (or SSL_CERT_FILE); a registry that \
             requires a client certificate needs one in --cert-dir DIR or \
             certs.d/<host:port>/ (NAME.cert with NAME.key); for a test registry only, \
             --insecure skips verification and --plain-http drops TLS"
                .into()
        }
        RegistryError::Transport { .. }
        | RegistryError::Body { .. }
        | RegistryError::Interrupted { .. } => {
            "the registry could not be reached; check the address, proxy settings \
             (HTTPS_PROXY, NO_PROXY) and firewall, or raise --retries and --timeout"
                .into()
        }
        RegistryError::Status { status, .. } if *status == 429 || *status >= 500 => {
            "the registry is failing or throttling; try again later".into()
        }
        // The message says how to name one image of several.
        RegistryError::Unsupported { reason, .. } if reason.contains("name one with") => {
            return None
        }
        RegistryError::Integrity { .. }
        | RegistryError::ManifestTooLarge { .. }
        | RegistryError::Unsupported { .. }
            if matches!(image, Some(SourceSpec::Archive { .. })) =>
        {
            "the archive is malformed, incomplete or does not match what it claims, so nothing \
             was written: make it again (docker save, skopeo copy ... oci-archive:) and check \
             that it was copied completely"
                .into()
        }
        RegistryError::ManifestTooLarge { limit, .. } => format!(
            "the registry served a manifest larger than {} MiB, more than any real image \
             needs; nothing was written. Check the reference: it may name something that is \
             not an image manifest, or the registry may be misbehaving",
            limit >> 20
        ),
        RegistryError::Protocol { .. } => {
            "the registry, or a proxy in front of it, answered in a way the distribution \
             protocol does not allow; nothing was written. Try again; if it persists, report \
             it to whoever runs the registry or the proxy"
                .into()
        }
        RegistryError::Integrity { .. } => {
            "the registry served content that does not match its digest; nothing was \
             written. Try again; if it persists, the image at the registry is corrupt"
                .into()
        }
        RegistryError::Schema1 { .. } => {
            "schema 1 (deprecated since 2019) cannot be read: convert the image once with \
             `skopeo copy --format v2s2 docker://SOURCE docker://DESTINATION` (or rebuild and \
             push it with a current tool), then pull the converted image"
                .into()
        }
        RegistryError::Unsupported { .. } => {
            "acrpull reads OCI and Docker v2 schema 2 manifests and indexes".into()
        }
        RegistryError::AmbiguousManifest { .. } => {
            "a manifest must mean one thing (CVE-2021-41190): its `mediaType` must match the \
             type it was served or listed as, and an index cannot also have layers; nothing \
             was written. Fix the image at its source"
                .into()
        }
        _ => return None,
    })
}

/// What to do about `error`, if known. `image` is the reference the user asked for.
pub fn hint(error: &anyhow::Error, image: Option<&SourceSpec>) -> Option<String> {
    if error.chain().any(acrpull::error::is_out_of_space) {
        return Some(
            "the disk is full: free space (`acrpull cache prune` trims the blob cache), put the \
             cache on another disk with --cache-dir DIR, or pull with --no-cache; this pull's \
             partial downloads were removed"
                .into(),
        );
    }
    if let Some(registry) = registry_error(error) {
        return registry_hint(registry, image);
    }
    let library = error
        .chain()
        .find_map(|e| e.downcast_ref::<acrpull::Error>())?;
    match library {
        acrpull::Error::Reference(_) => Some(
            "images look like REGISTRY/REPOSITORY[:TAG][@DIGEST], e.g. \
             myregistry.azurecr.io/app:v1, or oci:PATH[:TAG] for a local layout"
                .into(),
        ),
        acrpull::Error::PlatformNotFound { available, .. } => Some(match available.first() {
            Some(first) => format!("choose one of the listed platforms, e.g. --platform {first}"),
            None => "the index lists no platforms; pull it whole with --platform all --format oci"
                .into(),
        }),
        acrpull::Error::ForeignLayerMissing { .. } => Some(
            "foreign layers (such as Windows base layers) are served by their publisher, not by \
             the registry; copy the layer into the registry (as `crane copy \
             --allow-nondistributable-artifacts` or Docker's `allow-nondistributable-artifacts` \
             do) or into the layout, then pull again"
                .into(),
        ),
        acrpull::Error::Integrity { .. } => Some(
            "the content does not match its digest; nothing was written. Try again; if it \
             persists, the image is corrupt at its source"
                .into(),
        ),
        acrpull::Error::Unsupported(message) if message.contains("root filesystem") => Some(
            "--format oci writes the image as an OCI layout without applying its layers".into(),
        ),
        acrpull::Error::Rootfs(e) if e.is_integrity() => {
            Some("the layer is unsafe or corrupt, so the root filesystem was not written".into())
        }
        acrpull::Error::Client(_) => Some(
            "each CA file (--ca-file, SSL_CERT_FILE, certs.d `*.crt`, hosts.toml `ca`) must be \
             a readable PEM bundle, and each client certificate a `.cert`/`.key` PEM pair"
                .into(),
        ),
        acrpull::Error::Credential(acrpull::credential::Error::File { .. }) => Some(
            "fix or move that file, or give credentials another way (--authfile, \
             --username/--password-stdin)"
                .into(),
        ),
        acrpull::Error::Credential(acrpull::credential::Error::Helper { .. }) => Some(
            "install the helper on PATH, or remove it from credHelpers/credsStore in that file"
                .into(),
        ),
        acrpull::Error::Stopped(_) => Some(
            "run the same command again to continue: blobs downloaded so far, and partial \
             downloads, stay in the blob cache (unless --no-cache)"
                .into(),
        ),
        acrpull::Error::Destination(acrpull::layout::DestinationError::Changed { .. }) => Some(
            "check what is at the destination now; pull again (with --force to replace it) or \
             choose another destination"
                .into(),
        ),
        acrpull::Error::Internal(_) => {
            Some("this is a bug in acrpull; please report it with the output of -vv".into())
        }
        acrpull::Error::Verify(e) => verify_hint(e, image),
        _ => None,
    }
}

/// What to do when `--verify` refused the image: by the kind of refusal, and for rejected
/// signatures by the first reason given.
fn verify_hint(error: &acrpull::verify::Error, image: Option<&SourceSpec>) -> Option<String> {
    use acrpull::verify::{Error as V, Reason};
    Some(match error {
        V::NoSignature { .. } if matches!(image, Some(SourceSpec::Layout { .. })) => {
            "a layout carries signatures only when it was staged with them: pull or copy it with --referrers (cosign's .sig tags and bundles come along), then verify again"
                .into()
        }
        V::NoSignature {
            scheme: acrpull::verify::Scheme::Notation,
            ..
        } => {
            "the image has no Notary Project signature: sign this digest (`notation sign IMAGE@DIGEST`), or check the repository the signatures were pushed to"
                .into()
        }
        V::PolicyRejected { policy, .. } if policy.contains("registryScopes") => {
            "no statement of the Notation trust policy covers this repository: add one whose registryScopes names it (or a global `*` statement)"
                .into()
        }
        V::NoSignature { .. } => {
            "the image is unsigned (or signed elsewhere): sign this digest (`cosign sign --key cosign.key IMAGE@DIGEST`), or check the repository the signatures were pushed to"
                .into()
        }
        V::PolicyRejected { .. } => {
            "the policy's `reject` applies to this image: give its registry or repository a scope of its own in the policy file if it is meant to be pulled"
                .into()
        }
        V::Config { .. } => {
            "fix or replace that file; nothing was downloaded".into()
        }
        V::Rejected { .. } => match error.reasons().first()? {
            Reason::DigestMismatch { .. } => {
                "the signature found signs another manifest (copied from another image, or the tag moved after signing): sign this digest"
                    .into()
            }
            Reason::BadSignature(_) => {
                "the signature was not made with this key, or its payload was changed: check that the key is the public half of the signing key (`cosign public-key --key cosign.key`)"
                    .into()
            }
            Reason::IdentityMismatch { expected, .. }
                if expected.starts_with("certificate identity") || expected.starts_with("OIDC issuer") =>
            {
                "the Fulcio certificate names another signer: compare --certificate-identity and --certificate-oidc-issuer (or the policy's subjectEmail and oidcIssuer) with the SAN and issuer found; the -regexp flags match anywhere in the value unless anchored with ^...$"
                    .into()
            }
            Reason::IdentityMismatch { .. } => {
                "the signature names another image than the policy's signedIdentity accepts; cosign signatures name only a repository, so use matchRepository or exactRepository for them"
                    .into()
            }
            Reason::Transparency(_)
                if matches!(error, V::Rejected { scheme: acrpull::verify::Scheme::Cosign, .. }) =>
            {
                "a keyless signature is trusted only with its Rekor entry in a log of the trusted root: check that --trusted-root is sigstore's current trusted_root.json for the instance that signed (public-good or your own)"
                    .into()
            }
            Reason::Unsupported(_) => {
                "acrpull verifies cosign signatures by a key or keyless (a Fulcio certificate with a Rekor v1 entry), and in a policy sigstoreSigned with keyPath, keyData or fulcio"
                    .into()
            }
            _ => return None,
        },
        _ => return None,
    })
}

/// The message, cause chain and hint, as printed on stderr. A pull stopped by a signal gets
/// one line.
pub fn render(error: &anyhow::Error, image: Option<&SourceSpec>) -> String {
    let stopped = error
        .chain()
        .find_map(|e| e.downcast_ref::<acrpull::Error>())
        .is_some_and(|e| matches!(e, acrpull::Error::Stopped(_)));
    if stopped {
        return format!(
            "error: {error}: the destination was left as it was; run the same command again to \
             continue\n"
        );
    }
    let mut out = format!("error: {error}\n");
    for cause in error.chain().skip(1) {
        let _ = writeln!(out, "  Caused by: {cause}");
    }
    if let Some(hint) = hint(error, image) {
        let _ = writeln!(out, "  hint: {hint}");
    }
    out
}

/// The message and its causes on one line (for JSON).
pub fn one_line(error: &anyhow::Error) -> String {
    format!("{error:#}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn not_found(kind: Missing, what: &str) -> anyhow::Error {
        acrpull::Error::from(RegistryError::NotFound {
            kind,
            what: what.into(),
            url: "https://r.example/v2/app/x".into(),
        })
        .into()
    }

    /// The hint follows the kind of the missing object, whatever its message says.
    #[test]
    fn not_found_hints_are_chosen_by_kind_not_by_message_text() {
        let image: SourceSpec = "r.example/app:v1".parse().unwrap();
        let blob = hint(&not_found(Missing::Blob, "tag `v1`"), Some(&image)).unwrap();
        assert!(
            blob.contains("image at the registry is incomplete"),
            "{blob}"
        );
        let manifest = hint(&not_found(Missing::Manifest, "blob x"), Some(&image)).unwrap();
        assert!(
            manifest.contains("no tag `v1` in repository `app`"),
            "{manifest}"
        );
        let repository = hint(&not_found(Missing::Repository, "x"), Some(&image)).unwrap();
        assert!(repository.contains("no repository `app`"), "{repository}");

        let layout: SourceSpec = "oci:/l:v2".parse().unwrap();
        let file = hint(&not_found(Missing::LayoutFile, "tag"), Some(&layout)).unwrap();
        assert!(file.contains("is not an OCI image layout"), "{file}");
        let tag = hint(&not_found(Missing::Tag, "OCI layout file"), Some(&layout)).unwrap();
        assert!(tag.contains("has no image tagged `v2`"), "{tag}");

        let archive: SourceSpec = "docker-archive:/a.tar".parse().unwrap();
        let missing = hint(&not_found(Missing::ArchiveFile, "image"), Some(&archive)).unwrap();
        assert!(missing.contains("does not exist"), "{missing}");
        let image_hint = hint(&not_found(Missing::ArchiveImage, "file"), Some(&archive)).unwrap();
        assert!(image_hint.contains("tar -tf /a.tar"), "{image_hint}");
    }
}
