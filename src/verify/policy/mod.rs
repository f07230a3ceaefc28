//! The containers `policy.json` (containers-policy.json(5)), applied as skopeo and podman
//! apply it, so one file serves them and acrpull on the same machine.
//!
//! - The requirements for an image are those of the most specific scope of its transport
//!   (`docker` for registries: `host/repo:tag` or `host/repo@digest`, then `host/repo`, each
//!   parent namespace, `host`, `*.domain` wildcards from the longest; `oci` for layouts: the
//!   directory with its reference, then the directory and each parent), else the transport's
//!   `""` scope, else `default`. Every requirement of the list must accept the image.
//! - Requirements: `insecureAcceptAnything`, `reject`, `sigstoreSigned` (keys from
//!   `keyPath`, `keyPaths`, `keyData`, `keyDatas`; the signature's `docker-reference` held
//!   to `signedIdentity`: `matchExact`, `matchRepoDigestOrExact` (the default),
//!   `matchRepository`, `exactReference`, `exactRepository`, `remapIdentity`); keyless
//!   `fulcio` (the certificate chains to its CA, names its email and OIDC issuer, and Rekor's
//!   signed entry timestamp records it: `policy/sigstore.rs`). `signedBy` (GPG) and `pki` parse, and
//!   refuse the image with a reason saying acrpull does not verify them: never a silent pass.
//!   With `rekorPublicKey*`, a keyed signature also needs Rekor's signed entry timestamp
//!   recording it ([`super::cosign::rekor`]).
//! - Parsing is as strict as containers/image's: unknown or repeated keys, an empty
//!   requirement list, a missing `default`, or a requirement with the wrong set of fields
//!   make the whole file invalid (exit 7 before any network traffic).
//!
//! As in containers/image, a claim that names only a repository (what `cosign sign` writes)
//! is never accepted by `matchRepoDigestOrExact` or `matchExact`: a policy for cosign
//! signatures uses `matchRepository` or `exactRepository` (containers-policy.json(5) says so).

mod identity;
mod sigstore;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde::Deserialize;

use super::{Error, Reason, Rejection, Request, Scheme, Verification, Verifier};
use crate::reference::Reference;
use crate::source_spec::SourceSpec;

/// Where skopeo and podman read the system policy.
pub const DEFAULT_PATH: &str = "/etc/containers/policy.json";

/// A map that refuses a key given twice (Go's paranoid unmarshalling does, serde's maps
/// keep the last).
#[derive(Debug, Clone)]
pub struct StrictMap<V>(pub BTreeMap<String, V>);

impl<V> Default for StrictMap<V> {
    fn default() -> Self {
        StrictMap(BTreeMap::new())
    }
}

impl<'de, V: Deserialize<'de>> Deserialize<'de> for StrictMap<V> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Strict<V>(std::marker::PhantomData<V>);
        impl<'de, V: Deserialize<'de>> Visitor<'de> for Strict<V> {
            type Value = StrictMap<V>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut out = BTreeMap::new();
                while let Some(key) = map.next_key::<String>()? {
                    if out.contains_key(&key) {
                        return Err(de::Error::custom(format!("key `{key}` appears twice")));
                    }
                    let value = map.next_value()?;
                    out.insert(key, value);
                }
                Ok(StrictMap(out))
            }
        }
        deserializer.deserialize_map(Strict(std::marker::PhantomData))
    }
}

/// A parsed `policy.json`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Policy {
    /// The requirements when no transport scope applies.
    pub default: Requirements,
    /// Transport name -> scope -> requirements.
    #[serde(default)]
    pub transports: StrictMap<StrictMap<Requirements>>,
}

/// A non-empty list of requirements, all of which must accept.
#[derive(Debug, Clone)]
pub struct Requirements(pub Vec<Requirement>);

impl<'de> Deserialize<'de> for Requirements {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let list = Vec::<Requirement>::deserialize(deserializer)?;
        if list.is_empty() {
            return Err(de::Error::custom(
                "a list of policy requirements must not be empty",
            ));
        }
        Ok(Requirements(list))
    }
}

/// One requirement.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "type", deny_unknown_fields)]
pub enum Requirement {
    /// Accept anything.
    #[serde(rename = "insecureAcceptAnything")]
    InsecureAcceptAnything {},
    /// Refuse everything.
    #[serde(rename = "reject")]
    Reject {},
    /// GPG signatures (parsed, not verified by acrpull).
    #[serde(rename = "signedBy", rename_all = "camelCase")]
    SignedBy {
        /// `GPGKeys`, ...
        key_type: String,
        /// Where the keys are.
        #[serde(default)]
        key_path: Option<String>,
        /// Several key files.
        #[serde(default)]
        key_paths: Option<Vec<String>>,
        /// Inline keys.
        #[serde(default)]
        key_data: Option<String>,
        /// The identity matcher.
        #[serde(default)]
        signed_identity: Option<SignedIdentity>,
    },
    /// sigstore (cosign) signatures.
    #[serde(rename = "sigstoreSigned", rename_all = "camelCase")]
    SigstoreSigned(Box<SigstoreSigned>),
}

/// The fields of `sigstoreSigned`.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SigstoreSigned {
    /// One PEM public key file.
    #[serde(default)]
    pub key_path: Option<String>,
    /// Several PEM public key files (any may sign).
    #[serde(default)]
    pub key_paths: Option<Vec<String>>,
    /// One PEM public key, base64.
    #[serde(default)]
    pub key_data: Option<String>,
    /// Several PEM public keys, base64.
    #[serde(default)]
    pub key_datas: Option<Vec<String>>,
    /// Keyless: a Fulcio CA, OIDC issuer and subject email.
    #[serde(default)]
    pub fulcio: Option<serde_json::Value>,
    /// Keyless: a private PKI.
    #[serde(default)]
    pub pki: Option<serde_json::Value>,
    /// Rekor's key (file).
    #[serde(default)]
    pub rekor_public_key_path: Option<String>,
    /// Rekor's keys (files).
    #[serde(default)]
    pub rekor_public_key_paths: Option<Vec<String>>,
    /// Rekor's key (base64 PEM).
    #[serde(default)]
    pub rekor_public_key_data: Option<String>,
    /// Rekor's keys (base64 PEM).
    #[serde(default)]
    pub rekor_public_key_datas: Option<Vec<String>>,
    /// How the signature's `docker-reference` must match the image.
    #[serde(default)]
    pub signed_identity: Option<SignedIdentity>,
}

/// `signedIdentity`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(tag = "type", deny_unknown_fields)]
pub enum SignedIdentity {
    /// The signature names exactly the image's tagged reference.
    #[serde(rename = "matchExact")]
    MatchExact {},
    /// By digest: the same repository; by tag: exactly the reference.
    #[serde(rename = "matchRepoDigestOrExact")]
    MatchRepoDigestOrExact {},
    /// The same repository.
    #[serde(rename = "matchRepository")]
    MatchRepository {},
    /// The signature names exactly this reference.
    #[serde(rename = "exactReference", rename_all = "camelCase")]
    ExactReference {
        /// A tagged or digested reference.
        docker_reference: String,
    },
    /// The signature names this repository.
    #[serde(rename = "exactRepository", rename_all = "camelCase")]
    ExactRepository {
        /// A repository.
        docker_repository: String,
    },
    /// The image's name with `prefix` replaced by `signedPrefix`, then as
    /// `matchRepoDigestOrExact`.
    #[serde(rename = "remapIdentity", rename_all = "camelCase")]
    RemapIdentity {
        /// The prefix of the image's name.
        prefix: String,
        /// What the signature names instead.
        signed_prefix: String,
    },
}

/// Why a policy file is invalid.
fn invalid(path: &Path, reason: impl std::fmt::Display) -> Error {
    Error::Config {
        what: format!("policy {}", path.display()),
        reason: reason.to_string(),
    }
}

impl Policy {
    /// Parse and check a policy document.
    pub fn parse(bytes: &[u8]) -> Result<Self, String> {
        let policy: Policy = serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
        for (transport, scopes) in &policy.transports.0 {
            for (scope, requirements) in &scopes.0 {
                check_scope(transport, scope)?;
                for requirement in &requirements.0 {
                    requirement
                        .check()
                        .map_err(|e| format!("transports.{transport}.\"{scope}\": {e}"))?;
                }
            }
        }
        for requirement in &policy.default.0 {
            requirement.check().map_err(|e| format!("default: {e}"))?;
        }
        Ok(policy)
    }

    /// The requirements for an image: the scope that applies and its list.
    pub fn requirements_for(&self, image: &ImageScopes) -> (String, &Requirements) {
        let transport_default = String::new();
        if let Some(scopes) = self.transports.0.get(&image.transport) {
            let candidates = std::iter::once(&image.identity)
                .chain(image.namespaces.iter())
                .chain(std::iter::once(&transport_default));
            for candidate in candidates {
                if let Some(found) = scopes.0.get(candidate) {
                    return (
                        format!("transports.{}.\"{candidate}\"", image.transport),
                        found,
                    );
                }
            }
        }
        ("default".to_string(), &self.default)
    }
}

/// A scope must be one its transport can name: for `docker`, a reference, a namespace or a
/// `*.domain` wildcard; for `oci`, an absolute path.
fn check_scope(transport: &str, scope: &str) -> Result<(), String> {
    if scope.is_empty() {
        return Ok(());
    }
    let bad = |why: &str| Err(format!("scope \"{scope}\" of transport {transport}: {why}"));
    match transport {
        "docker" => {
            if let Some(domain) = scope.strip_prefix("*.") {
                if domain.is_empty() || domain.contains(['/', '*', ':']) {
                    return bad("a wildcard is `*.` followed by a domain");
                }
                return Ok(());
            }
            if scope.contains("://")
                || scope.contains('*')
                || scope.chars().any(char::is_whitespace)
            {
                return bad("not a docker reference or namespace");
            }
            let name = scope.split(['@']).next().unwrap_or(scope);
            if name.chars().any(|c| c.is_ascii_uppercase()) {
                return bad("repository names are lowercase");
            }
            Ok(())
        }
        "oci" | "oci-archive" | "docker-archive" | "dir" => {
            if !scope.starts_with('/') {
                return bad("a path scope must be absolute");
            }
            Ok(())
        }
        _ => Ok(()),
    }
}

impl Requirement {
    /// The cross-field rules containers/image applies.
    fn check(&self) -> Result<(), String> {
        match self {
            Requirement::InsecureAcceptAnything {} | Requirement::Reject {} => Ok(()),
            Requirement::SignedBy {
                key_type,
                key_path,
                key_paths,
                key_data,
                signed_identity,
            } => {
                if !["GPGKeys", "signedByGPGKeys", "signedByX509CAs"].contains(&key_type.as_str()) {
                    return Err(format!("signedBy: unknown keyType `{key_type}`"));
                }
                let sources = [key_path.is_some(), key_paths.is_some(), key_data.is_some()];
                if sources.iter().filter(|s| **s).count() != 1 {
                    return Err(
                        "signedBy: exactly one of keyPath, keyPaths and keyData must be given"
                            .into(),
                    );
                }
                if signed_identity.is_none() {
                    return Err("signedBy: signedIdentity not specified".into());
                }
                Ok(())
            }
            Requirement::SigstoreSigned(s) => s.check(),
        }
    }
}

impl SigstoreSigned {
    fn check(&self) -> Result<(), String> {
        let sources = [
            self.key_path.is_some(),
            self.key_paths.is_some(),
            self.key_data.is_some(),
            self.key_datas.is_some(),
            self.fulcio.is_some(),
            self.pki.is_some(),
        ];
        if sources.iter().filter(|s| **s).count() != 1 {
            return Err(
                "sigstoreSigned: exactly one of keyPath, keyPaths, keyData, keyDatas, \
                        fulcio and pki must be given"
                    .into(),
            );
        }
        for (name, list) in [("keyPaths", &self.key_paths), ("keyDatas", &self.key_datas)] {
            if list.as_ref().is_some_and(Vec::is_empty) {
                return Err(format!("sigstoreSigned: \"{name}\" contains no entries"));
            }
        }
        let rekor = [
            self.rekor_public_key_path.is_some(),
            self.rekor_public_key_paths.is_some(),
            self.rekor_public_key_data.is_some(),
            self.rekor_public_key_datas.is_some(),
        ]
        .iter()
        .filter(|s| **s)
        .count();
        if rekor > 1 {
            return Err("sigstoreSigned: at most one of rekorPublicKeyPath, \
                        rekorPublicKeyPaths, rekorPublicKeyData and rekorPublicKeyDatas"
                .into());
        }
        if self.fulcio.is_some() && rekor == 0 {
            return Err("sigstoreSigned: fulcio needs a rekorPublicKey".into());
        }
        if self.pki.is_some() && rekor > 0 {
            return Err("sigstoreSigned: rekorPublicKey* is not supported with pki".into());
        }
        Ok(())
    }
}

/// How an image is named to a policy: its transport, its full identity, and its namespaces
/// from the most specific.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageScopes {
    /// `docker`, `oci`, `oci-archive`, `docker-archive`.
    pub transport: String,
    /// `host/repo:tag`, `host/repo@digest`, `/dir:ref`.
    pub identity: String,
    /// Parent scopes, most specific first.
    pub namespaces: Vec<String>,
    /// The Docker reference, for `signedIdentity` (registries only).
    pub reference: Option<Reference>,
}

impl ImageScopes {
    /// The scopes of `image`.
    pub fn of(image: &SourceSpec) -> Self {
        match image {
            SourceSpec::Registry(reference) => {
                let name = format!("{}/{}", reference.registry(), reference.repository());
                let identity = match (reference.digest(), reference.tag()) {
                    (Some(digest), _) => format!("{name}@{digest}"),
                    (None, Some(tag)) => format!("{name}:{tag}"),
                    (None, None) => format!("{name}:latest"),
                };
                ImageScopes {
                    transport: "docker".into(),
                    identity,
                    namespaces: docker_namespaces(&name),
                    reference: Some(reference.clone()),
                }
            }
            SourceSpec::Layout { path, reference } => {
                let dir = absolute(path);
                ImageScopes {
                    transport: "oci".into(),
                    identity: format!("{}:{reference}", dir.display()),
                    namespaces: path_namespaces(&dir),
                    reference: None,
                }
            }
            SourceSpec::Archive {
                kind,
                path,
                reference,
            } => {
                let file = absolute(path);
                ImageScopes {
                    transport: kind.scheme().into(),
                    identity: format!("{}:{reference}", file.display()),
                    namespaces: path_namespaces(&file),
                    reference: None,
                }
            }
        }
    }
}

fn absolute(path: &Path) -> PathBuf {
    std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf())
}

/// `host/a/b` -> `host/a/b`, `host/a`, `host`, then `*.` wildcards of the host's domain.
fn docker_namespaces(name: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut current = name;
    loop {
        out.push(current.to_string());
        match current.rfind('/') {
            Some(slash) => current = &current[..slash],
            None => break,
        }
    }
    let mut host = current.split(':').next().unwrap_or(current);
    while let Some(dot) = host.find('.') {
        host = &host[dot + 1..];
        out.push(format!("*.{host}"));
    }
    out
}

/// `/a/b/c` -> `/a/b/c`, `/a/b`, `/a` (not `/`).
fn path_namespaces(path: &Path) -> Vec<String> {
    path.ancestors()
        .filter(|p| p.parent().is_some())
        .map(|p| p.display().to_string())
        .collect()
}

/// `--verify policy`.
#[derive(Debug)]
pub struct PolicyVerifier {
    path: PathBuf,
    policy: Policy,
    /// The keys of each `sigstoreSigned` requirement, by position (policy entry, index).
    keys: BTreeMap<(String, usize), sigstore::Loaded>,
}

impl PolicyVerifier {
    /// Read and check the policy at `path`, and load the keys it names.
    pub fn load(path: &Path) -> Result<Self, Error> {
        let bytes = std::fs::read(path).map_err(|e| invalid(path, e))?;
        let policy = Policy::parse(&bytes).map_err(|e| invalid(path, e))?;
        let base = path.parent().unwrap_or(Path::new("/"));
        let mut keys = BTreeMap::new();
        let mut lists: Vec<(String, &Requirements)> = vec![("default".into(), &policy.default)];
        for (transport, scopes) in &policy.transports.0 {
            for (scope, requirements) in &scopes.0 {
                lists.push((format!("transports.{transport}.\"{scope}\""), requirements));
            }
        }
        for (entry, requirements) in lists {
            for (index, requirement) in requirements.0.iter().enumerate() {
                if let Requirement::SigstoreSigned(sigstore) = requirement {
                    let loaded = sigstore
                        .keys(base)
                        .map_err(|e| invalid(path, format!("{entry}: {e}")))?;
                    keys.insert((entry.clone(), index), loaded);
                }
            }
        }
        Ok(Self {
            path: path.to_path_buf(),
            policy,
            keys,
        })
    }
}

#[async_trait::async_trait]
impl Verifier for PolicyVerifier {
    fn scheme(&self) -> Scheme {
        Scheme::Policy
    }

    async fn verify(&self, request: &Request<'_>) -> Result<Verification, Error> {
        let scopes = ImageScopes::of(request.image);
        let (entry, requirements) = self.policy.requirements_for(&scopes);
        let named = format!("{} {entry}", self.path.display());
        let mut verification = Verification::new(Scheme::Policy, request.digest().clone());
        verification.policy = Some(named.clone());
        let mut levels = Vec::new();
        for (index, requirement) in requirements.0.iter().enumerate() {
            match requirement {
                Requirement::InsecureAcceptAnything {} => levels.push("insecureAcceptAnything"),
                Requirement::Reject {} => {
                    return Err(Error::PolicyRejected {
                        image: request.display(),
                        digest: request.digest().clone(),
                        policy: format!("{named} (reject)"),
                    })
                }
                Requirement::SignedBy { .. } => {
                    return Err(Error::Rejected {
                        scheme: Scheme::Policy,
                        image: request.display(),
                        digest: request.digest().clone(),
                        policy: Some(named),
                        rejections: vec![Rejection {
                            signature: format!("requirement {index} (signedBy)"),
                            reason: Reason::Unsupported(
                                "signedBy (GPG simple signing) signatures are not verified by \
                                 acrpull; use sigstoreSigned"
                                    .into(),
                            ),
                        }],
                    })
                }
                Requirement::SigstoreSigned(sigstore) => {
                    let loaded = self.keys.get(&(entry.clone(), index));
                    let accepted =
                        sigstore::sigstore_signed(request, sigstore, loaded, &named, index).await?;
                    verification.signer = Some(accepted.signer);
                    verification.signature = Some(accepted.signature);
                    verification.skipped.extend(accepted.skipped);
                    levels.push("sigstoreSigned");
                }
            }
        }
        verification.level = Some(levels.join("+"));
        if levels.iter().all(|l| *l == "insecureAcceptAnything") {
            verification
                .skipped
                .push(format!("signatures ({named} accepts anything)"));
        }
        Ok(verification)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scopes(image: &str) -> ImageScopes {
        ImageScopes::of(&SourceSpec::Registry(image.parse().unwrap()))
    }

    #[test]
    fn docker_scopes_go_from_most_to_least_specific() {
        let image = scopes("registry.example.com:5000/team/app:v1");
        assert_eq!(image.identity, "registry.example.com:5000/team/app:v1");
        assert_eq!(
            image.namespaces,
            [
                "registry.example.com:5000/team/app",
                "registry.example.com:5000/team",
                "registry.example.com:5000",
                "*.example.com",
                "*.com"
            ]
        );
    }

    #[test]
    fn the_most_specific_scope_wins_then_the_transport_default_then_default() {
        let policy = Policy::parse(
            br#"{"default":[{"type":"reject"}],
                 "transports":{"docker":{
                    "":[{"type":"insecureAcceptAnything"}],
                    "*.example.com":[{"type":"reject"}],
                    "registry.example.com/team":[{"type":"insecureAcceptAnything"}],
                    "registry.example.com/team/app:v1":[{"type":"reject"}]}}}"#,
        )
        .unwrap();
        let entry = |image: &str| policy.requirements_for(&scopes(image)).0;
        assert_eq!(
            entry("registry.example.com/team/app:v1"),
            "transports.docker.\"registry.example.com/team/app:v1\""
        );
        assert_eq!(
            entry("registry.example.com/team/app:v2"),
            "transports.docker.\"registry.example.com/team\""
        );
        assert_eq!(
            entry("other.example.com/x:1"),
            "transports.docker.\"*.example.com\""
        );
        assert_eq!(entry("localhost:5000/x:1"), "transports.docker.\"\"");
        let layout = ImageScopes::of(&"oci:/srv/layout:v1".parse().unwrap());
        assert_eq!(policy.requirements_for(&layout).0, "default");
    }

    #[test]
    fn invalid_policies_are_refused_as_containers_image_refuses_them() {
        let cases: &[&[u8]] = &[
            br#"{"transports":{}}"#,
            br#"{"default":[]}"#,
            br#"{"default":[{"type":"insecureAcceptAnything"}],"extra":1}"#,
            br#"{"default":[{"type":"insecureAcceptAnything","keyPath":"/k"}]}"#,
            br#"{"default":[{"type":"sigstoreSigned","keyPath":"/k","keyPathh":"/k"}]}"#,
            br#"{"default":[{"type":"sigstoreSigned","keyPath":"/k","signedIdentity":{"type":"matchRepository","extra":1}}]}"#,
            br#"{"default":[{"type":"unknownType"}]}"#,
            br#"{"default":[{"type":"sigstoreSigned"}]}"#,
            br#"{"default":[{"type":"sigstoreSigned","keyPath":"/a","keyData":"eA=="}]}"#,
            br#"{"default":[{"type":"sigstoreSigned","keyPaths":[]}]}"#,
            br#"{"default":[{"type":"sigstoreSigned","fulcio":{}}]}"#,
            br#"{"default":[{"type":"reject"}],"transports":{"docker":{"a":[{"type":"reject"}],"a":[{"type":"reject"}]}}}"#,
            br#"{"default":[{"type":"reject"}],"transports":{"docker":{"Upper/Case":[{"type":"reject"}]}}}"#,
            br#"{"default":[{"type":"reject"}],"transports":{"oci":{"relative/dir":[{"type":"reject"}]}}}"#,
            br#"{"default":[{"type":"sigstoreSigned","keyPath":"/k","signedIdentity":{"type":"matchNothing"}}]}"#,
        ];
        for case in cases {
            assert!(
                Policy::parse(case).is_err(),
                "accepted {}",
                String::from_utf8_lossy(case)
            );
        }
    }

    #[test]
    fn signed_identities_match_as_containers_image_matches() {
        let by_tag: Reference = "registry.example.com/team/app:v1".parse().unwrap();
        let by_digest: Reference = format!(
            "registry.example.com/team/app@sha256:{}",
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        )
        .parse()
        .unwrap();
        let repo = "registry.example.com/team/app";
        // cosign claims only a repository, which matchRepoDigestOrExact never accepts.
        let default = SignedIdentity::MatchRepoDigestOrExact {};
        assert!(default.matches(Some(&by_digest), repo).is_err());
        assert!(default.matches(Some(&by_tag), repo).is_err());
        assert!(default
            .matches(Some(&by_digest), "registry.example.com/team/app:any")
            .is_ok());
        assert!(default
            .matches(Some(&by_tag), "registry.example.com/team/app:v1")
            .is_ok());
        assert!(default
            .matches(Some(&by_tag), "registry.example.com/team/app:v2")
            .is_err());
        assert!(SignedIdentity::MatchRepository {}
            .matches(Some(&by_tag), repo)
            .is_ok());
        assert!(SignedIdentity::MatchRepository {}
            .matches(Some(&by_tag), "registry.example.com/team/other")
            .is_err());
        assert!(SignedIdentity::MatchExact {}
            .matches(Some(&by_tag), repo)
            .is_err());
        let exact_repo = SignedIdentity::ExactRepository {
            docker_repository: "mirror.example.com/app".into(),
        };
        assert!(exact_repo.matches(None, "mirror.example.com/app").is_ok());
        assert!(exact_repo.matches(Some(&by_tag), repo).is_err());
        let remap = SignedIdentity::RemapIdentity {
            prefix: "registry.example.com/team".into(),
            signed_prefix: "origin.example.com/team".into(),
        };
        assert!(remap
            .matches(Some(&by_tag), "origin.example.com/team/app:v1")
            .is_ok());
        assert!(remap
            .matches(Some(&by_tag), "registry.example.com/team/app:v1")
            .is_err());
        // A prefix ends at a path boundary: `team` does not remap `teamwork`.
        let other: Reference = "registry.example.com/teamwork/app:v1".parse().unwrap();
        assert!(remap
            .matches(Some(&other), "origin.example.comwork/app:v1")
            .is_err());
        assert!(SignedIdentity::MatchRepository {}
            .matches(None, repo)
            .is_err());
    }
}
