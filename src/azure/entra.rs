//! The Entra ID (AAD) v2 token endpoint shared by the workload identity and client secret sources.
//!
//! Both POST a `client_credentials` grant to `{authority}/{tenant}/oauth2/v2.0/token` and differ
//! only in how the client proves itself (spec 2.6, 2.7). The authority comes from
//! `AZURE_AUTHORITY_HOST` and must be `https`, except for a loopback host so tests can run a fake
//! on `http://127.0.0.1` (the Rust SDK refuses http outright and so cannot be tested that way).

use std::sync::atomic::AtomicBool;
use std::time::SystemTime;

use url::Url;

use super::env::{Env, AZURE_AUTHORITY_HOST};
use super::response::{describe_error_body, parse_token_response};
use super::retry::{self, RetryPolicy, RetryStatuses};
use super::{is_loopback, AadToken, Error};

/// The public-cloud authority, used when `AZURE_AUTHORITY_HOST` is unset.
pub const DEFAULT_AUTHORITY_HOST: &str = "https://login.microsoftonline.com/";

/// A client of one tenant's token endpoint.
#[derive(Debug)]
pub(crate) struct TokenEndpoint {
    url: Url,
    http: reqwest::Client,
    policy: RetryPolicy,
    reached: AtomicBool,
}

impl TokenEndpoint {
    /// The endpoint for `tenant` under the authority named by the environment.
    pub(crate) fn new(env: &Env, tenant: &str, policy: RetryPolicy) -> Result<Self, Error> {
        let authority = env
            .get(AZURE_AUTHORITY_HOST)
            .unwrap_or(DEFAULT_AUTHORITY_HOST);
        let url = token_url(authority, tenant)?;
        let loopback = url.host().is_some_and(|host| is_loopback(&host));
        // A loopback authority is a local fake; never route it through a proxy.
        let proxy = if loopback {
            crate::http::Proxy::Direct
        } else {
            crate::http::Proxy::System
        };
        let http = super::http_client(proxy, policy.connect_timeout, &url)?;
        Ok(Self {
            url,
            http,
            policy,
            reached: AtomicBool::new(false),
        })
    }

    /// The token endpoint URL.
    pub(crate) fn url(&self) -> &Url {
        &self.url
    }

    /// POST the form (which holds the client's proof) and parse the token.
    pub(crate) async fn request(&self, form: &[(&str, &str)]) -> Result<AadToken, Error> {
        let answer = retry::send(
            || self.http.post(self.url.clone()).form(form),
            &self.url,
            &self.policy,
            RetryStatuses::Service,
            &self.reached,
        )
        .await?;
        let endpoint = crate::http::redact_url(&self.url);
        match answer.status {
            200..=299 => parse_token_response(&endpoint, &answer.body, SystemTime::now()),
            status => Err(Error::Refused {
                endpoint,
                status,
                description: describe_error_body(&answer.body),
            }),
        }
    }
}

/// `{authority}/{tenant}/oauth2/v2.0/token`, checking both parts.
fn token_url(authority: &str, tenant: &str) -> Result<Url, Error> {
    let configuration = |detail: String| Error::Configuration { detail };
    let parsed = Url::parse(authority)
        .map_err(|_| configuration(format!("{AZURE_AUTHORITY_HOST} is not a URL: {authority}")))?;
    let host = parsed
        .host()
        .ok_or_else(|| configuration(format!("{AZURE_AUTHORITY_HOST} has no host: {authority}")))?;
    match parsed.scheme() {
        "https" => {}
        "http" if is_loopback(&host) => {}
        _ => {
            return Err(configuration(format!(
                "{AZURE_AUTHORITY_HOST} must be an https URL (http is allowed only for loopback hosts): {authority}"
            )))
        }
    }
    let valid_tenant = !tenant.is_empty()
        && tenant.chars().all(|character| {
            character.is_ascii_alphanumeric() || matches!(character, '-' | '.' | '_')
        });
    if !valid_tenant {
        return Err(configuration(format!(
            "tenant id {tenant:?} is not a tenant GUID or domain"
        )));
    }
    let base = authority.trim_end_matches('/');
    Url::parse(&format!("{base}/{tenant}/oauth2/v2.0/token")).map_err(|_| {
        configuration(format!(
            "cannot build a token URL from {AZURE_AUTHORITY_HOST} {authority}"
        ))
    })
}

/// The v2 scope for an audience: `<resource>/.default`.
pub(crate) fn scope_of(audience: &str) -> String {
    let audience = audience.trim_end_matches('/');
    if audience.ends_with("/.default") {
        audience.to_string()
    } else {
        format!("{audience}/.default")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_urls() {
        assert_eq!(
            token_url(DEFAULT_AUTHORITY_HOST, "t-1").unwrap().as_str(),
            "https://login.microsoftonline.com/t-1/oauth2/v2.0/token"
        );
        assert_eq!(
            token_url("http://127.0.0.1:9/", "contoso.onmicrosoft.com")
                .unwrap()
                .as_str(),
            "http://127.0.0.1:9/contoso.onmicrosoft.com/oauth2/v2.0/token"
        );
        assert!(token_url("http://[::1]:9", "t").is_ok());
        assert!(token_url("http://localhost:9", "t").is_ok());
        for refused in [
            "http://login.microsoftonline.com/",
            "http://127.0.0.1.example.com/",
            "ftp://127.0.0.1/",
            "nope",
        ] {
            let error = token_url(refused, "t").unwrap_err().to_string();
            assert!(error.contains(AZURE_AUTHORITY_HOST), "{refused}: {error}");
        }
        for tenant in ["", "../evil", "a/b", "a?b"] {
            assert!(
                token_url(DEFAULT_AUTHORITY_HOST, tenant).is_err(),
                "{tenant}"
            );
        }
    }

    #[test]
    fn scopes() {
        assert_eq!(
            scope_of("https://containerregistry.azure.net"),
            "https://containerregistry.azure.net/.default"
        );
        assert_eq!(
            scope_of("https://management.azure.com/"),
            "https://management.azure.com/.default"
        );
        assert_eq!(scope_of("https://x/.default"), "https://x/.default");
    }
}
