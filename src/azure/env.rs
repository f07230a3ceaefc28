//! A snapshot of the environment variables that select and configure an Azure identity.
//!
//! Identity sources never call `std::env::var` themselves: they read an [`Env`] handed to them.
//! The binary takes one snapshot at start-up with [`Env::from_process`]; tests build their own with
//! [`Env::from_pairs`], so variables inherited from a developer's shell (a real
//! `AZURE_CLIENT_SECRET`, say) can never leak into a test, and tests can run in parallel without
//! mutating the process environment.

use std::collections::BTreeMap;
use std::fmt;

/// The variables an [`Env`] snapshot keeps; everything else is ignored.
pub const VARIABLES: &[&str] = &[
    AZURE_CLIENT_ID,
    AZURE_TENANT_ID,
    AZURE_CLIENT_SECRET,
    AZURE_FEDERATED_TOKEN_FILE,
    AZURE_AUTHORITY_HOST,
    AZURE_POD_IDENTITY_AUTHORITY_HOST,
    IDENTITY_ENDPOINT,
    IDENTITY_HEADER,
    IDENTITY_SERVER_THUMBPRINT,
    IMDS_ENDPOINT,
    MSI_ENDPOINT,
    MSI_SECRET,
    PROGRAM_DATA,
];

/// Client (application) id: of a service principal, a workload identity, or the user-assigned
/// managed identity to use.
pub const AZURE_CLIENT_ID: &str = "AZURE_CLIENT_ID";
/// Entra ID tenant of a service principal or workload identity.
pub const AZURE_TENANT_ID: &str = "AZURE_TENANT_ID";
/// Service principal secret.
pub const AZURE_CLIENT_SECRET: &str = "AZURE_CLIENT_SECRET";
/// Path of the projected service-account token (AKS workload identity).
pub const AZURE_FEDERATED_TOKEN_FILE: &str = "AZURE_FEDERATED_TOKEN_FILE";
/// Entra ID authority, e.g. `https://login.microsoftonline.com/`.
pub const AZURE_AUTHORITY_HOST: &str = "AZURE_AUTHORITY_HOST";
/// Replaces `http://169.254.169.254` as the IMDS host (same meaning as in the Azure SDKs).
pub const AZURE_POD_IDENTITY_AUTHORITY_HOST: &str = "AZURE_POD_IDENTITY_AUTHORITY_HOST";
/// App Service / Functions / Container Apps (and Arc, Service Fabric) identity endpoint.
pub const IDENTITY_ENDPOINT: &str = "IDENTITY_ENDPOINT";
/// The SSRF secret sent to `IDENTITY_ENDPOINT`.
pub const IDENTITY_HEADER: &str = "IDENTITY_HEADER";
/// Present on Service Fabric.
pub const IDENTITY_SERVER_THUMBPRINT: &str = "IDENTITY_SERVER_THUMBPRINT";
/// Present on Azure Arc.
pub const IMDS_ENDPOINT: &str = "IMDS_ENDPOINT";
/// Cloud Shell and Azure ML legacy endpoint.
pub const MSI_ENDPOINT: &str = "MSI_ENDPOINT";
/// Azure ML secret for `MSI_ENDPOINT`.
pub const MSI_SECRET: &str = "MSI_SECRET";

/// Windows' machine-wide data directory: the Arc agent keeps its key files below it.
pub const PROGRAM_DATA: &str = "ProgramData";

/// Variables whose values are secrets and never appear in `Debug` output.
const SECRET_VARIABLES: &[&str] = &[AZURE_CLIENT_SECRET, IDENTITY_HEADER, MSI_SECRET];

/// A snapshot of the Azure identity variables. Empty values count as unset, as in the SDKs.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Env {
    values: BTreeMap<&'static str, String>,
}

impl Env {
    /// Snapshot the current process environment.
    pub fn from_process() -> Self {
        Self::from_pairs(
            VARIABLES
                .iter()
                .filter_map(|name| std::env::var(name).ok().map(|value| (*name, value))),
        )
    }

    /// Build a snapshot from explicit pairs (tests, or a caller with its own configuration).
    /// Names outside [`VARIABLES`] are ignored.
    pub fn from_pairs<I, K, V>(pairs: I) -> Self
    where
        I: IntoIterator<Item = (K, V)>,
        K: AsRef<str>,
        V: Into<String>,
    {
        let mut values = BTreeMap::new();
        for (name, value) in pairs {
            let value = value.into();
            if value.is_empty() {
                continue;
            }
            if let Some(known) = VARIABLES.iter().find(|known| **known == name.as_ref()) {
                values.insert(*known, value);
            }
        }
        Self { values }
    }

    /// The value of `name`, if set and non-empty.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.values.get(name).map(String::as_str)
    }

    /// Whether `name` is set and non-empty.
    pub fn contains(&self, name: &str) -> bool {
        self.values.contains_key(name)
    }

    /// The value of `name`, which `source` needs with the other variables of `all`; when it is
    /// unset, an error that names it and everything `source` needs.
    pub(crate) fn require(
        &self,
        name: &str,
        source: &str,
        all: &[&str],
    ) -> Result<&str, super::Error> {
        self.get(name).ok_or_else(|| {
            let needs = match all {
                [_] => "it".to_string(),
                [init @ .., last] => format!("{} and {last}", init.join(", ")),
                [] => String::new(),
            };
            super::Error::Configuration {
                detail: format!("{name} is not set ({source} needs {needs})"),
            }
        })
    }
}

impl fmt::Debug for Env {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut map = f.debug_map();
        for (name, value) in &self.values {
            if SECRET_VARIABLES.contains(name) {
                map.entry(name, &"<redacted>");
            } else {
                map.entry(name, value);
            }
        }
        map.finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_only_known_non_empty_variables() {
        let env = Env::from_pairs([
            ("AZURE_CLIENT_ID", "abc"),
            ("AZURE_TENANT_ID", ""),
            ("HOME", "/root"),
        ]);
        assert_eq!(env.get(AZURE_CLIENT_ID), Some("abc"));
        assert!(!env.contains(AZURE_TENANT_ID));
        assert_eq!(env.get("HOME"), None);
    }

    #[test]
    fn debug_redacts_secrets() {
        let env = Env::from_pairs([
            (AZURE_CLIENT_SECRET, "hunter2"),
            (IDENTITY_HEADER, "header-secret"),
            (MSI_SECRET, "msi-secret"),
            (AZURE_CLIENT_ID, "visible-id"),
        ]);
        let shown = format!("{env:?}");
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(!shown.contains("header-secret"), "{shown}");
        assert!(!shown.contains("msi-secret"), "{shown}");
        assert!(shown.contains("visible-id"), "{shown}");
    }

    #[test]
    fn a_missing_variable_names_what_the_source_needs() {
        let env = Env::from_pairs([(MSI_ENDPOINT, "http://127.0.0.1:1/t")]);
        assert_eq!(
            env.require(MSI_ENDPOINT, "x", &[MSI_ENDPOINT]).unwrap(),
            "http://127.0.0.1:1/t"
        );
        let message = |all: &[&str]| env.require(MSI_SECRET, "Azure ML", all).unwrap_err();
        assert_eq!(
            message(&[MSI_SECRET]).to_string(),
            crate::azure::Error::Configuration {
                detail: "MSI_SECRET is not set (Azure ML needs it)".into()
            }
            .to_string()
        );
        let three = message(&[MSI_ENDPOINT, MSI_SECRET, IDENTITY_HEADER]).to_string();
        assert!(
            three.contains(
                "MSI_SECRET is not set (Azure ML needs MSI_ENDPOINT, MSI_SECRET and IDENTITY_HEADER)"
            ),
            "{three}"
        );
        let two = message(&[MSI_ENDPOINT, MSI_SECRET]).to_string();
        assert!(
            two.contains("(Azure ML needs MSI_ENDPOINT and MSI_SECRET)"),
            "{two}"
        );
    }
}
