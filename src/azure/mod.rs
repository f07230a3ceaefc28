//! Azure identities (managed identity, workload identity, service principal) and the ACR token
//! exchange. The protocols are summarised in `docs/azure-auth.md`; "spec N.N" in this module's
//! comments names a section of it.
//!
//! Why hand-written rather than `azure_identity`: the ACR half must be written anyway, the
//! identity half is four small request shapes, and our own client can honour
//! `AZURE_POD_IDENTITY_AUTHORITY_HOST`, `IDENTITY_ENDPOINT` and a loopback `AZURE_AUTHORITY_HOST`
//! so every path is tested against loopback fakes (docs/azure-auth.md section 4).
//!
//! Layout: [`env`](mod@env) snapshots the variables; [`imds`], [`app_service`], [`arc`],
//! [`service_fabric`], [`azure_ml`], [`cloud_shell`], [`workload`] and [`client_secret`] are
//! the sources, each an [`AadTokenSource`] with its own cache;
//! [`default_chain`] picks one the way DefaultAzureCredential does; [`acr`] turns an AAD token
//! into ACR refresh and access tokens.

use std::fmt;
use std::sync::Arc;
use std::time::SystemTime;

use crate::secret::Secret;

pub mod acr;
pub mod app_service;
pub mod arc;
pub mod azure_ml;
mod cache;
pub mod client_secret;
pub mod cloud_shell;
mod endpoint;
mod entra;
pub mod env;
mod error;
pub mod imds;
pub mod registries;
pub(crate) mod response;
mod retry;
pub mod service_fabric;
pub mod workload;

#[cfg(test)]
mod tests;

pub use acr::{exchange_for_refresh_token, realm_trusted, refresh_token_for_registry};
pub use app_service::AppServiceSource;
pub use arc::ArcSource;
pub use azure_ml::AzureMlSource;
pub use cache::REFRESH_MARGIN;
pub use client_secret::ClientSecretSource;
pub use cloud_shell::CloudShellSource;
pub use entra::DEFAULT_AUTHORITY_HOST;
pub use env::Env;
pub use error::Error;
pub use imds::{ImdsSource, DEFAULT_IMDS_HOST};
pub use registries::{AzureRegistries, NotAzureRegistry, AZURE_REGISTRIES_VAR};
pub use retry::RetryPolicy;
pub use service_fabric::ServiceFabricSource;
pub use workload::WorkloadIdentitySource;

/// The AAD audience of Azure Container Registry. Accepted by every registry, unlike the ARM
/// audience, which a registry can refuse (spec 3.8).
pub const ACR_AUDIENCE: &str = "https://containerregistry.azure.net";

/// What to do when an Azure identity may not pull: the role to assign under either permission
/// model ACR has (classic RBAC, or the ABAC repository permissions of registries whose role
/// assignment mode is "RBAC Registry + ABAC Repository Permissions").
pub const PERMISSION_HINT: &str = "assign the identity the AcrPull role on the registry, or, on a \
     registry with ABAC repository permissions (role assignment mode \"RBAC Registry + ABAC \
     Repository Permissions\"), the Container Registry Repository Reader role (optionally with \
     a condition naming the repository); role assignments can take minutes to apply";

/// An Entra ID (AAD) access token for the registry audience.
#[derive(Debug, Clone)]
pub struct AadToken {
    /// The bearer token.
    pub token: Secret,
    /// When it stops being valid.
    pub expires_at: SystemTime,
}

/// Something that can produce an AAD token for the ACR audience.
#[async_trait::async_trait]
pub trait AadTokenSource: Send + Sync + std::fmt::Debug {
    /// A description for `-v` and errors, e.g. `managed identity (IMDS, client_id=...)`.
    /// Never contains a secret.
    fn describe(&self) -> String;

    /// The tenant the identity belongs to, when the source knows it (sent to `/oauth2/exchange`,
    /// which otherwise reads it from the token).
    fn tenant(&self) -> Option<String> {
        None
    }

    /// A token; implementations cache until shortly before expiry.
    async fn aad_token(&self) -> Result<AadToken, Error>;
}

/// Which user-assigned managed identity to use (spec 1.2). Each source sends the parameter name
/// its endpoint understands.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum UserAssignedId {
    /// The identity's client (application) id.
    ClientId(String),
    /// The identity's object (principal) id.
    ObjectId(String),
    /// The identity's full ARM resource id.
    ResourceId(String),
}

impl UserAssignedId {
    /// The id itself.
    pub fn value(&self) -> &str {
        match self {
            UserAssignedId::ClientId(value)
            | UserAssignedId::ObjectId(value)
            | UserAssignedId::ResourceId(value) => value,
        }
    }
}

impl fmt::Display for UserAssignedId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            UserAssignedId::ClientId(value) => write!(f, "client_id={value}"),
            UserAssignedId::ObjectId(value) => write!(f, "object_id={value}"),
            UserAssignedId::ResourceId(value) => write!(f, "resource_id={value}"),
        }
    }
}

/// Pick the identity source the environment describes, in DefaultAzureCredential order:
/// service principal secret, workload identity, then managed identity. `selector` chooses a
/// user-assigned managed identity and applies only to managed identity; without it
/// `AZURE_CLIENT_ID` is used as a client id, as the SDK chains do.
///
/// Managed identity sources are detected in the Go SDK's order (azidentity
/// `managed_identity_client.go`): `IDENTITY_ENDPOINT` with `IDENTITY_HEADER` is Service Fabric
/// (with `IDENTITY_SERVER_THUMBPRINT`) or App Service; with `IMDS_ENDPOINT` it is Azure Arc;
/// then `MSI_ENDPOINT` is Azure ML (with `MSI_SECRET`) or Cloud Shell; then an installed Arc
/// agent; then IMDS.
pub fn default_chain(
    env: &Env,
    selector: Option<UserAssignedId>,
    audience: &str,
) -> Result<Arc<dyn AadTokenSource>, Error> {
    use env::*;
    if env.contains(AZURE_CLIENT_SECRET) {
        return Ok(Arc::new(ClientSecretSource::new(env, audience)?));
    }
    if env.contains(AZURE_FEDERATED_TOKEN_FILE) {
        return Ok(Arc::new(WorkloadIdentitySource::new(env, audience)?));
    }
    if env.contains(IDENTITY_ENDPOINT) {
        if env.contains(IDENTITY_HEADER) {
            if env.contains(IDENTITY_SERVER_THUMBPRINT) {
                return Ok(Arc::new(ServiceFabricSource::new(env, selector, audience)?));
            }
            return Ok(Arc::new(AppServiceSource::new(env, selector, audience)?));
        }
        if env.contains(IMDS_ENDPOINT) {
            return Ok(Arc::new(ArcSource::new(env, selector, audience)?));
        }
        return Err(Error::Configuration {
            detail: format!(
                "{IDENTITY_ENDPOINT} is set without {IDENTITY_HEADER} or {IMDS_ENDPOINT}, \
                 which matches no known managed identity source"
            ),
        });
    }
    if env.contains(MSI_ENDPOINT) {
        if env.contains(MSI_SECRET) {
            return Ok(Arc::new(AzureMlSource::new(env, selector, audience)?));
        }
        return Ok(Arc::new(CloudShellSource::new(env, selector, audience)?));
    }
    if arc::agent_installed() {
        return Ok(Arc::new(ArcSource::new(env, selector, audience)?));
    }
    Ok(Arc::new(ImdsSource::new(env, selector, audience)?))
}

/// Whether `registry` (a host, optionally with `:port`) is an Azure Container Registry login
/// server: a name ending in `.azurecr.io`, `.azurecr.cn` or `.azurecr.us`. The match is anchored
/// at a label boundary; a substring match once leaked tokens to look-alike hosts (spec 5, item 8).
pub fn is_acr_host(registry: &str) -> bool {
    const SUFFIXES: [&str; 3] = [".azurecr.io", ".azurecr.cn", ".azurecr.us"];
    let host = strip_port(registry)
        .trim_end_matches('.')
        .to_ascii_lowercase();
    SUFFIXES.iter().any(|suffix| {
        host.strip_suffix(suffix).is_some_and(|name| {
            !name.is_empty()
                && name.split('.').all(|label| {
                    !label.is_empty()
                        && !label.starts_with('-')
                        && !label.ends_with('-')
                        && label
                            .chars()
                            .all(|character| character.is_ascii_alphanumeric() || character == '-')
                })
        })
    })
}

/// `host` without a trailing `:port` (IPv6 literals keep their brackets).
fn strip_port(host: &str) -> &str {
    if host.starts_with('[') {
        return host.find(']').map_or(host, |end| &host[..=end]);
    }
    match host.rsplit_once(':') {
        Some((name, port)) if port.chars().all(|character| character.is_ascii_digit()) => name,
        _ => host,
    }
}

/// Whether a URL host is the local machine.
pub(crate) fn is_loopback<S: AsRef<str>>(host: &url::Host<S>) -> bool {
    match host {
        url::Host::Ipv4(address) => address.is_loopback(),
        url::Host::Ipv6(address) => address.is_loopback(),
        url::Host::Domain(name) => name.as_ref().eq_ignore_ascii_case("localhost"),
    }
}

/// The v1 resource for an audience or v2 scope: without a trailing `/.default` (spec 1.1).
pub(crate) fn resource_of(audience: &str) -> String {
    audience
        .strip_suffix("/.default")
        .unwrap_or(audience)
        .to_string()
}

/// A client for an identity or token endpoint (per-request timeouts are set by the retry loop).
pub(crate) fn http_client(
    proxy: crate::http::Proxy,
    connect_timeout: std::time::Duration,
    endpoint: &url::Url,
) -> Result<reqwest::Client, Error> {
    crate::http::build_client(&crate::http::HttpOptions {
        proxy,
        connect_timeout,
        read_timeout: None,
        ..crate::http::HttpOptions::default()
    })
    .map_err(|error| Error::Configuration {
        detail: format!(
            "no HTTP client for {}: {error}",
            crate::http::redact_url(endpoint)
        ),
    })
}

#[cfg(test)]
mod unit_tests {
    use super::*;

    #[test]
    fn acr_hosts_are_matched_by_anchored_suffix() {
        for host in [
            "myregistry.azurecr.io",
            "MyRegistry.AzureCR.io",
            "myregistry.azurecr.io:443",
            "myregistry.azurecr.io.",
            "reg.azurecr.cn",
            "reg.azurecr.us",
            "my-reg.westeurope.data.azurecr.io",
        ] {
            assert!(is_acr_host(host), "{host}");
        }
        for host in [
            "evil-azurecr.io.example.com",
            "azurecr.io",
            ".azurecr.io",
            "evilazurecr.io",
            "myregistry.azurecr.io.example.com",
            "myregistry.azurecr.com",
            "docker.io",
            "my_reg.azurecr.io",
            "a..azurecr.io",
            "-a.azurecr.io",
            "[::1]:5000",
        ] {
            assert!(!is_acr_host(host), "{host}");
        }
    }

    #[test]
    fn resources_drop_the_default_suffix() {
        assert_eq!(
            resource_of("https://containerregistry.azure.net/.default"),
            ACR_AUDIENCE
        );
        assert_eq!(resource_of(ACR_AUDIENCE), ACR_AUDIENCE);
    }

    fn chosen(pairs: &[(&str, &str)]) -> Result<String, String> {
        default_chain(&Env::from_pairs(pairs.iter().copied()), None, ACR_AUDIENCE)
            .map(|source| source.describe())
            .map_err(|error| error.to_string())
    }

    #[test]
    fn chain_order_and_detection() {
        let secret = [
            ("AZURE_CLIENT_ID", "c"),
            ("AZURE_TENANT_ID", "t"),
            ("AZURE_CLIENT_SECRET", "s"),
        ];
        let workload = [
            ("AZURE_CLIENT_ID", "c"),
            ("AZURE_TENANT_ID", "t"),
            ("AZURE_FEDERATED_TOKEN_FILE", "/f"),
        ];
        let app = [
            ("IDENTITY_ENDPOINT", "http://127.0.0.1:1/msi/token"),
            ("IDENTITY_HEADER", "h"),
        ];
        assert!(chosen(&[]).unwrap().starts_with("managed identity (IMDS"));
        assert!(chosen(&[("AZURE_CLIENT_ID", "c")])
            .unwrap()
            .contains("client_id=c"));
        assert!(chosen(&secret).unwrap().starts_with("service principal"));
        let all: Vec<_> = secret
            .iter()
            .chain(&workload)
            .chain(&app)
            .copied()
            .collect();
        assert!(chosen(&all).unwrap().starts_with("service principal"));
        let without_secret: Vec<_> = workload.iter().chain(&app).copied().collect();
        assert!(chosen(&without_secret)
            .unwrap()
            .starts_with("workload identity"));
        assert!(chosen(&app)
            .unwrap()
            .starts_with("managed identity (App Service"));

        let error = chosen(&[("AZURE_CLIENT_SECRET", "hunter2")]).unwrap_err();
        assert!(error.contains("AZURE_CLIENT_ID is not set"), "{error}");
        assert!(!error.contains("hunter2"), "{error}");
        let error = chosen(&[
            ("AZURE_FEDERATED_TOKEN_FILE", "/f"),
            ("AZURE_CLIENT_ID", "c"),
        ])
        .unwrap_err();
        assert!(error.contains("AZURE_TENANT_ID is not set"), "{error}");
    }

    #[test]
    fn managed_identity_sources_in_go_sdk_order() {
        let thumbprint = "ab".repeat(20);
        let cases: [(&[(&str, &str)], &str); 6] = [
            (
                &[
                    ("IDENTITY_ENDPOINT", "https://127.0.0.1:2377/m"),
                    ("IDENTITY_HEADER", "h"),
                    ("IDENTITY_SERVER_THUMBPRINT", &thumbprint),
                    ("IMDS_ENDPOINT", "http://127.0.0.1:40342"),
                    ("MSI_ENDPOINT", "http://127.0.0.1:1/t"),
                ],
                "managed identity (Service Fabric",
            ),
            (
                &[
                    ("IDENTITY_ENDPOINT", "http://127.0.0.1:1/m"),
                    ("IDENTITY_HEADER", "h"),
                    ("IMDS_ENDPOINT", "http://127.0.0.1:40342"),
                ],
                "managed identity (App Service",
            ),
            (
                &[
                    ("IDENTITY_ENDPOINT", "http://127.0.0.1:40342/m"),
                    ("IMDS_ENDPOINT", "http://127.0.0.1:40342"),
                    ("MSI_ENDPOINT", "http://127.0.0.1:1/t"),
                ],
                "managed identity (Azure Arc",
            ),
            (
                &[
                    ("MSI_ENDPOINT", "http://127.0.0.1:1/t"),
                    ("MSI_SECRET", "s"),
                ],
                "managed identity (Azure ML",
            ),
            (
                &[("MSI_ENDPOINT", "http://127.0.0.1:50342/oauth2/token")],
                "managed identity (Cloud Shell",
            ),
            (&[], "managed identity (IMDS"),
        ];
        for (pairs, expected) in cases {
            let described = chosen(pairs).unwrap();
            assert!(described.starts_with(expected), "{described}");
        }
        let error = chosen(&[("IDENTITY_ENDPOINT", "http://127.0.0.1:1/t")]).unwrap_err();
        assert!(error.contains("IDENTITY_HEADER"), "{error}");
    }
}
