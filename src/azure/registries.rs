//! Which registries may be offered this machine's Azure identity without being asked per
//! registry: the one rule the credential helper (and the kubelet credential provider) apply
//! before minting anything. An identity token is valid for every registry the identity can
//! reach, so it goes only to Azure Container Registry login servers (anchored
//! `*.azurecr.io`, `*.azurecr.cn`, `*.azurecr.us`) and to the hosts the user listed
//! (`ACRPULL_AZURE_REGISTRIES=host[:port],...`, read by the binary and passed in). Everything
//! else gets the credential-helper protocol's "credentials not found". Where the token then
//! goes (the realm on the registry's own origin, over TLS unless loopback) is
//! [`super::realm_trusted`].

use super::{is_acr_host, Error};

/// The environment variable the binary reads the listed registries from.
pub const AZURE_REGISTRIES_VAR: &str = "ACRPULL_AZURE_REGISTRIES";

/// ACR login servers plus the registries listed by the user.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AzureRegistries {
    /// Listed `host[:port]`, lower-case, without a trailing dot or the default port.
    listed: Vec<String>,
}

impl AzureRegistries {
    /// Parse a comma-separated list of `host[:port]` (whitespace and empty items ignored).
    pub fn parse(list: &str) -> Result<Self, Error> {
        let listed = list
            .split(',')
            .map(str::trim)
            .filter(|item| !item.is_empty())
            .map(|item| {
                normalize(item).ok_or_else(|| Error::Configuration {
                    detail: format!(
                        "{AZURE_REGISTRIES_VAR}: `{item}` is not a registry `host[:port]`"
                    ),
                })
            })
            .collect::<Result<_, _>>()?;
        Ok(Self { listed })
    }

    /// Whether `registry` (`host[:port]`) may be offered the Azure identity.
    pub fn serves(&self, registry: &str) -> bool {
        is_acr_host(registry)
            || normalize(registry).is_some_and(|registry| self.listed.contains(&registry))
    }

    /// [`Self::serves`] as a `Result` whose error says why not.
    pub fn check(&self, registry: &str) -> Result<(), NotAzureRegistry> {
        if self.serves(registry) {
            Ok(())
        } else {
            Err(NotAzureRegistry {
                registry: registry.to_string(),
            })
        }
    }
}

/// A registry that is neither an ACR login server nor listed: it gets no identity token.
#[derive(Debug, Clone, thiserror::Error)]
#[error(
    "`{registry}` is not an Azure Container Registry login server (*.azurecr.io, *.azurecr.cn, \
     *.azurecr.us) nor listed in {AZURE_REGISTRIES_VAR}: the Azure identity is not offered to it"
)]
pub struct NotAzureRegistry {
    /// The registry asked for.
    pub registry: String,
}

/// `host[:port]` as compared: lower-case, no trailing dot, no `:443`. `None` if it is not one.
fn normalize(registry: &str) -> Option<String> {
    let url = url::Url::parse(&format!("https://{registry}/")).ok()?;
    let only_host = url.path() == "/"
        && url.username().is_empty()
        && url.password().is_none()
        && url.query().is_none()
        && url.fragment().is_none();
    let host = url.host_str()?.trim_end_matches('.').to_ascii_lowercase();
    if !only_host || host.is_empty() {
        return None;
    }
    Some(match url.port() {
        Some(port) => format!("{host}:{port}"),
        None => host,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn acr_hosts_and_listed_hosts_only() {
        let registries =
            AzureRegistries::parse(" registry.example.com , 127.0.0.1:5000,,MIRROR.corp:443")
                .unwrap();
        for yes in [
            "myreg.azurecr.io",
            "myreg.azurecr.cn",
            "myreg.azurecr.us:443",
            "registry.example.com",
            "Registry.Example.com.",
            "registry.example.com:443",
            "127.0.0.1:5000",
            "mirror.corp",
        ] {
            assert!(registries.serves(yes), "{yes}");
        }
        for no in [
            "evil.example",
            "azurecr.io",
            "myreg.azurecr.io.evil.example",
            "evil-azurecr.io",
            "registry.example.com:5000",
            "127.0.0.1:5001",
            "127.0.0.1",
            "example.com",
        ] {
            assert!(!registries.serves(no), "{no}");
            assert!(registries.check(no).is_err());
        }
        assert!(!AzureRegistries::default().serves("127.0.0.1:5000"));
    }

    #[test]
    fn bad_entries_are_configuration_errors() {
        for bad in ["user@host", "host/path", "bad host", "https://x"] {
            let error = AzureRegistries::parse(bad).unwrap_err();
            assert!(error.to_string().contains(AZURE_REGISTRIES_VAR), "{error}");
        }
    }
}
