//! Notation's OCI trust policy (`trustpolicy.oci.json`, or `trustpolicy.json` as older
//! Notation wrote it), version 1.0, as trust-store-trust-policy.md defines it: the statement
//! for a repository (an exact `registryScopes` match, else the one global `*`), its
//! verification level with overrides, its trust stores and trusted identities. The document is
//! validated whole before use, with the rules the specification gives (unique names, one
//! statement per scope, `*` alone, `skip` without stores or identities, identities that are
//! valid distinguished names and do not overlap).
//!
//! Distinguished names and the certificate subject they are matched against live in
//! `identity`.

mod identity;

use std::collections::{HashMap, HashSet};

use serde::Deserialize;

pub use identity::{certificate_subject, DistinguishedName};

/// Why a trust policy document is refused, or no statement applies.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct PolicyError(pub String);

fn bad(message: impl Into<String>) -> PolicyError {
    PolicyError(message.into())
}

/// One check of signature verification.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Check {
    /// The signature verifies and covers this artifact.
    Integrity,
    /// The chain leads to the trust store and the signer is a trusted identity.
    Authenticity,
    /// The signing time is proven (timestamp or signing authority) within the chain's validity.
    AuthenticTimestamp,
    /// The signer's "best before" has not passed.
    Expiry,
    /// No certificate is revoked.
    Revocation,
}

impl Check {
    /// The name the trust policy uses.
    pub fn as_str(self) -> &'static str {
        match self {
            Check::Integrity => "integrity",
            Check::Authenticity => "authenticity",
            Check::AuthenticTimestamp => "authenticTimestamp",
            Check::Expiry => "expiry",
            Check::Revocation => "revocation",
        }
    }

    fn parse(name: &str) -> Option<Check> {
        [
            Check::Integrity,
            Check::Authenticity,
            Check::AuthenticTimestamp,
            Check::Expiry,
            Check::Revocation,
        ]
        .into_iter()
        .find(|c| c.as_str() == name)
    }
}

/// What a failed check does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// The signature is rejected.
    Enforce,
    /// The failure is reported as a warning and verification goes on.
    Log,
    /// The check is not made.
    Skip,
}

impl Action {
    /// The policy's name for it.
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Enforce => "enforce",
            Action::Log => "log",
            Action::Skip => "skip",
        }
    }
}

/// A verification level: its name and the action of each check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Level {
    /// `strict`, `permissive`, `audit`, `skip` (with overrides, still the base name).
    pub name: String,
    /// Whether `override` changed any action.
    pub customized: bool,
    actions: [Action; 5],
}

impl Level {
    fn base(name: &str) -> Option<Level> {
        use Action::*;
        let actions = match name {
            "strict" => [Enforce, Enforce, Enforce, Enforce, Enforce],
            "permissive" => [Enforce, Enforce, Log, Log, Log],
            "audit" => [Enforce, Log, Log, Log, Log],
            "skip" => [Skip, Skip, Skip, Skip, Skip],
            _ => return None,
        };
        Some(Level {
            name: name.to_string(),
            customized: false,
            actions,
        })
    }

    /// The action for `check`.
    pub fn action(&self, check: Check) -> Action {
        self.actions[check as usize]
    }

    /// Whether this is `skip`: no verification at all.
    pub fn is_skip(&self) -> bool {
        self.name == "skip"
    }
}

/// `verifyTimestamp`: when a timestamp countersignature is checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VerifyTimestamp {
    /// Always (the default).
    Always,
    /// Only when a certificate of the signing chain has expired.
    AfterCertExpiry,
}

/// One statement of the document, validated.
#[derive(Debug, Clone)]
pub struct Statement {
    /// Its name.
    pub name: String,
    /// Its scopes (`*` or repository URIs).
    pub registry_scopes: Vec<String>,
    /// Its level (with overrides applied).
    pub level: Level,
    /// When timestamps are verified.
    pub verify_timestamp: VerifyTimestamp,
    /// `(type, name)` of each trust store: `ca`, `signingAuthority`, `tsa`.
    pub trust_stores: Vec<(StoreType, String)>,
    /// The trusted identities.
    pub trusted_identities: TrustedIdentities,
}

/// The kinds of named trust stores.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StoreType {
    /// CA roots for `notary.x509`.
    Ca,
    /// Signing authority roots for `notary.x509.signingAuthority`.
    SigningAuthority,
    /// TSA roots for timestamp countersignatures.
    Tsa,
}

impl StoreType {
    /// The directory name under `truststore/x509/`.
    pub fn as_str(self) -> &'static str {
        match self {
            StoreType::Ca => "ca",
            StoreType::SigningAuthority => "signingAuthority",
            StoreType::Tsa => "tsa",
        }
    }
}

/// Who may sign.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TrustedIdentities {
    /// `*`: any certificate that chains to the trust stores.
    Any,
    /// These `x509.subject` distinguished names (each a subset the signer's subject must
    /// contain); identities of other kinds are kept only to say they did not match.
    Subjects(Vec<DistinguishedName>),
}

/// A validated trust policy document.
#[derive(Debug, Clone)]
pub struct TrustPolicy {
    /// Its statements.
    pub statements: Vec<Statement>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawDocument {
    version: Option<String>,
    trust_policies: Option<Vec<RawStatement>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawStatement {
    name: Option<String>,
    registry_scopes: Option<Vec<String>>,
    signature_verification: Option<RawVerification>,
    #[serde(default)]
    trust_stores: Vec<String>,
    #[serde(default)]
    trusted_identities: Vec<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawVerification {
    level: Option<String>,
    #[serde(default)]
    r#override: HashMap<String, String>,
    verify_timestamp: Option<String>,
}

/// Trust policy documents larger than this are refused.
pub const MAX_POLICY_SIZE: usize = 1 << 20;

impl TrustPolicy {
    /// Parse and validate a document.
    pub fn parse(bytes: &[u8]) -> Result<TrustPolicy, PolicyError> {
        if bytes.len() > MAX_POLICY_SIZE {
            return Err(bad(format!(
                "the trust policy is larger than {MAX_POLICY_SIZE} bytes"
            )));
        }
        let raw: RawDocument = serde_json::from_slice(bytes)
            .map_err(|e| bad(format!("the trust policy is not a valid document: {e}")))?;
        match raw.version.as_deref() {
            Some("1.0") => {}
            Some(other) => {
                return Err(bad(format!(
                    "the trust policy has version `{other}`; acrpull reads version 1.0"
                )))
            }
            None => return Err(bad("the trust policy has no `version`")),
        }
        let raw_statements = raw.trust_policies.unwrap_or_default();
        if raw_statements.is_empty() {
            return Err(bad("the trust policy has no statements in `trustPolicies`"));
        }
        let mut names = HashSet::new();
        let mut scopes: HashMap<String, String> = HashMap::new();
        let mut statements = Vec::new();
        for raw in raw_statements {
            let statement = Statement::validate(raw)?;
            if !names.insert(statement.name.clone()) {
                return Err(bad(format!(
                    "two trust policy statements are named `{}`; names must be unique",
                    statement.name
                )));
            }
            for scope in &statement.registry_scopes {
                if let Some(other) = scopes.insert(scope.clone(), statement.name.clone()) {
                    return Err(bad(format!(
                        "the registry scope `{scope}` is in the statements `{other}` and `{}`; a scope may belong to one statement only",
                        statement.name
                    )));
                }
            }
            statements.push(statement);
        }
        Ok(TrustPolicy { statements })
    }

    /// The statement for `repository` (`registry/path`, as scopes are written): the one whose
    /// scopes name it, else the global `*` one.
    pub fn statement_for(&self, repository: &str) -> Result<&Statement, PolicyError> {
        self.statements
            .iter()
            .find(|s| s.registry_scopes.iter().any(|scope| scope == repository))
            .or_else(|| {
                self.statements
                    .iter()
                    .find(|s| s.registry_scopes.iter().any(|scope| scope == "*"))
            })
            .ok_or_else(|| {
                bad(format!(
                    "no trust policy statement applies to `{repository}`: no `registryScopes` names it and there is no global `*` statement"
                ))
            })
    }
}

impl Statement {
    fn validate(raw: RawStatement) -> Result<Statement, PolicyError> {
        let name = raw
            .name
            .filter(|n| !n.is_empty())
            .ok_or_else(|| bad("a trust policy statement has no `name`"))?;
        let context = |why: String| bad(format!("trust policy statement `{name}`: {why}"));
        let verification = raw
            .signature_verification
            .ok_or_else(|| context("`signatureVerification` is missing".into()))?;
        let level_name = verification
            .level
            .ok_or_else(|| context("`signatureVerification.level` is missing".into()))?;
        let mut level = Level::base(&level_name).ok_or_else(|| {
            context(format!(
                "the level `{level_name}` is not strict, permissive, audit or skip"
            ))
        })?;
        if !verification.r#override.is_empty() {
            if level.is_skip() {
                return Err(context("the level `skip` cannot be overridden".into()));
            }
            let mut overrides: Vec<_> = verification.r#override.into_iter().collect();
            overrides.sort();
            for (key, value) in overrides {
                let check = Check::parse(&key).ok_or_else(|| {
                    context(format!(
                        "`{key}` cannot be overridden (authenticity, authenticTimestamp, expiry or revocation)"
                    ))
                })?;
                let action = match value.as_str() {
                    "enforce" => Action::Enforce,
                    "log" => Action::Log,
                    "skip" => Action::Skip,
                    other => {
                        return Err(context(format!(
                            "`{other}` is not enforce, log or skip (override of `{key}`)"
                        )))
                    }
                };
                if check == Check::Integrity {
                    return Err(context("`integrity` cannot be overridden".into()));
                }
                if action == Action::Skip && check != Check::Revocation {
                    return Err(context(format!(
                        "`{key}` cannot be skipped, only revocation can"
                    )));
                }
                level.actions[check as usize] = action;
                level.customized = true;
            }
        }
        let verify_timestamp = match verification.verify_timestamp.as_deref() {
            None | Some("always") => VerifyTimestamp::Always,
            Some("afterCertExpiry") => VerifyTimestamp::AfterCertExpiry,
            Some(other) => {
                return Err(context(format!(
                    "`verifyTimestamp` is `{other}`, not always or afterCertExpiry"
                )))
            }
        };

        let registry_scopes = raw.registry_scopes.unwrap_or_default();
        if registry_scopes.is_empty() {
            return Err(context("`registryScopes` is empty".into()));
        }
        if registry_scopes.len() > 1 && registry_scopes.iter().any(|s| s == "*") {
            return Err(context(
                "the global scope `*` cannot be combined with other scopes".into(),
            ));
        }
        for scope in &registry_scopes {
            if scope != "*" {
                validate_scope(scope).map_err(context)?;
            }
        }

        if level.is_skip() {
            if !raw.trust_stores.is_empty() || !raw.trusted_identities.is_empty() {
                return Err(context(
                    "the level is `skip` but trust stores or trusted identities are set; remove them to skip verification".into(),
                ));
            }
            return Ok(Statement {
                name,
                registry_scopes,
                level,
                verify_timestamp,
                trust_stores: Vec::new(),
                trusted_identities: TrustedIdentities::Any,
            });
        }
        if raw.trust_stores.is_empty() || raw.trusted_identities.is_empty() {
            return Err(context(
                "`trustStores` and `trustedIdentities` must both be set".into(),
            ));
        }
        let mut trust_stores = Vec::new();
        for store in &raw.trust_stores {
            let (kind, store_name) = store
                .split_once(':')
                .ok_or_else(|| context(format!("the trust store `{store}` is not TYPE:NAME")))?;
            let kind = match kind {
                "ca" => StoreType::Ca,
                "signingAuthority" => StoreType::SigningAuthority,
                "tsa" => StoreType::Tsa,
                other => {
                    return Err(context(format!(
                        "the trust store type `{other}` is not ca, signingAuthority or tsa"
                    )))
                }
            };
            if store_name.is_empty()
                || !store_name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
                || store_name == "."
                || store_name == ".."
            {
                return Err(context(format!(
                    "the trust store name `{store_name}` must match [a-zA-Z0-9_.-]+"
                )));
            }
            trust_stores.push((kind, store_name.to_string()));
        }
        let identities = &raw.trusted_identities;
        let trusted_identities = if identities.iter().any(|i| i == "*") {
            if identities.len() > 1 {
                return Err(context(
                    "the trusted identity `*` cannot be combined with other identities".into(),
                ));
            }
            TrustedIdentities::Any
        } else {
            let mut subjects = Vec::new();
            for identity in identities {
                let (prefix, value) = identity.split_once(':').ok_or_else(|| {
                    context(format!(
                        "the trusted identity `{identity}` is not x509.subject:DN"
                    ))
                })?;
                if prefix.trim() != "x509.subject" {
                    // Other kinds are for Notation plugins; like Notation, they are kept out
                    // of the x509 match (a statement with none left matches no signer).
                    tracing::warn!(statement = %name, %identity, "trusted identity of a kind acrpull does not read; ignored");
                    continue;
                }
                subjects.push(DistinguishedName::parse(value).map_err(|e| context(e.0))?);
            }
            for (i, a) in subjects.iter().enumerate() {
                for (j, b) in subjects.iter().enumerate() {
                    if i != j && a.is_subset_of(&b.attributes) {
                        return Err(context(format!(
                            "the trusted identities `{}` and `{}` overlap",
                            a.text, b.text
                        )));
                    }
                }
            }
            TrustedIdentities::Subjects(subjects)
        };
        Ok(Statement {
            name,
            registry_scopes,
            level,
            verify_timestamp,
            trust_stores,
            trusted_identities,
        })
    }

    /// The named stores of `kind`.
    pub fn stores(&self, kind: StoreType) -> impl Iterator<Item = &str> {
        self.trust_stores
            .iter()
            .filter(move |(k, _)| *k == kind)
            .map(|(_, n)| n.as_str())
    }
}

/// A scope is a fully qualified repository: `registry[:port]/path`, no tag, no wildcard.
fn validate_scope(scope: &str) -> Result<(), String> {
    let invalid = || {
        format!(
            "the registry scope `{scope}` is not a fully qualified repository (like registry.example/app/web, without scheme, tag or wildcard)"
        )
    };
    if scope.contains('*') {
        return Err(invalid());
    }
    let (domain, path) = scope.split_once('/').ok_or_else(invalid)?;
    let (host, port) = match domain.rsplit_once(':') {
        Some((h, p)) => (h, Some(p)),
        None => (domain, None),
    };
    let host_ok = !host.is_empty()
        && host.split('.').all(|label| {
            !label.is_empty()
                && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        });
    let port_ok = port.is_none_or(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_digit()));
    let path_ok = !path.is_empty()
        && path.split('/').all(|component| {
            !component.is_empty()
                && component.chars().all(|c| {
                    c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '.' | '_' | '-')
                })
                && component.starts_with(|c: char| c.is_ascii_alphanumeric())
                && component.ends_with(|c: char| c.is_ascii_alphanumeric())
        });
    if host_ok && port_ok && path_ok {
        Ok(())
    } else {
        Err(invalid())
    }
}
