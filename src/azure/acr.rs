//! The ACR half: AAD token -> ACR refresh token -> ACR access token (docs/azure-auth.md section 3).
//!
//! A registry answers `401` with `WWW-Authenticate: Bearer realm=..,service=..`. The AAD token is
//! exchanged at `{realm scheme://host:port}/oauth2/exchange` for an ACR refresh token (the one
//! `az acr login --expose-token` prints), which the realm itself trades for access tokens per
//! scope. The caller (the registry client's auth module) owns caching; these functions only
//! speak the protocol. Before any AAD token leaves the process, [`realm_trusted`] checks that the
//! realm is on the registry's own host: an AAD token is valid for every registry the identity
//! can reach, so handing it to a look-alike host would leak far more than one registry's access.

use std::time::Duration;

use serde::Deserialize;
use url::Url;

use super::{is_loopback, AadToken, AadTokenSource, Error};
use crate::http::{body::TOKEN_BODY_LIMIT, challenge, retry, BodyError, SafeUrl, Verdict};
use crate::secret::Secret;

/// Retries of a `429`/`5xx` or a connection failure at the token service. The exchange is the
/// step users see fail transiently (spec 5, item 4), so it gets two more tries.
const EXCHANGE_RETRY: retry::RetryPolicy = retry::RetryPolicy {
    retries: 2,
    base_delay: Duration::from_millis(250),
    max_delay: Duration::from_secs(1),
};

/// The longest one exchange request (answer and body) may take.
const EXCHANGE_TIMEOUT: Duration = Duration::from_secs(60);

/// The exchange endpoint for a realm: same scheme, host and port, path `/oauth2/exchange`
/// (as the Azure CLI and the kubelet credential provider derive it).
pub fn exchange_url(realm: &Url) -> Url {
    let mut url = realm.clone();
    url.set_path("/oauth2/exchange");
    url.set_query(None);
    url.set_fragment(None);
    url
}

/// Exchange an AAD token for an ACR refresh token at the realm's `/oauth2/exchange`.
/// `service` is the challenge's `service`; `tenant` is optional (ACR reads it from the token).
pub async fn exchange_for_refresh_token(
    http: &reqwest::Client,
    realm: &Url,
    service: &str,
    aad: &AadToken,
    tenant: Option<&str>,
) -> Result<Secret, Error> {
    #[derive(Deserialize)]
    struct Exchanged {
        refresh_token: Option<String>,
    }
    let url = exchange_url(realm);
    let mut form = vec![
        ("grant_type", "access_token"),
        ("service", service),
        ("access_token", aad.token.expose()),
    ];
    if let Some(tenant) = tenant {
        form.push(("tenant", tenant));
    }
    let body = post_form(http, &url, &form).await?;
    let exchanged: Exchanged =
        serde_json::from_slice(&body).map_err(|_| invalid(&url, "the body is not JSON"))?;
    exchanged
        .refresh_token
        .filter(|token| !token.is_empty())
        .map(Secret::new)
        .ok_or_else(|| invalid(&url, "no refresh_token in the response"))
}

/// Whether an Azure token may be sent to `realm` for the registry at `registry_host` (a host,
/// optionally with `:port`): the realm must be on the registry's own origin over https (host
/// equal case-insensitively, never a substring or suffix match; the same port, 443 when none
/// is named). A loopback registry may use any loopback realm over http or https, so tests can
/// run the token service on its own port; nothing else gets a token over plain HTTP.
pub fn realm_trusted(registry_host: &str, realm: &Url) -> bool {
    let Some(realm_host) = realm.host() else {
        return false;
    };
    let Some((registry, port)) = parse_host(registry_host) else {
        return false;
    };
    if is_loopback(&registry) && is_loopback(&realm_host) {
        return matches!(realm.scheme(), "http" | "https");
    }
    realm.scheme() == "https"
        && same_host(&registry, &realm_host)
        && realm.port_or_known_default() == Some(port)
}

fn same_host(registry: &url::Host<String>, realm: &url::Host<&str>) -> bool {
    match (registry, realm) {
        (url::Host::Domain(left), url::Host::Domain(right)) => left
            .trim_end_matches('.')
            .eq_ignore_ascii_case(right.trim_end_matches('.')),
        (url::Host::Ipv4(left), url::Host::Ipv4(right)) => left == right,
        (url::Host::Ipv6(left), url::Host::Ipv6(right)) => left == right,
        _ => false,
    }
}

/// A registry `host[:port]` as a URL host and its https port.
fn parse_host(registry_host: &str) -> Option<(url::Host<String>, u16)> {
    let url = Url::parse(&format!("https://{registry_host}/")).ok()?;
    let only_host = url.path() == "/" && url.username().is_empty() && url.query().is_none();
    let host = url.host()?.to_owned();
    only_host.then_some((host, url.port_or_known_default()?))
}

/// For `acrpull token`: ping the registry's `/v2/`, read its `Bearer` challenge, check the realm,
/// and exchange an AAD token from `source` for an ACR refresh token. Returns the refresh token
/// and the login server (`host[:port]` of `registry_base_url`), the pair
/// `az acr login --expose-token` prints.
pub async fn refresh_token_for_registry(
    http: &reqwest::Client,
    registry_base_url: &Url,
    source: &dyn AadTokenSource,
) -> Result<(Secret, String), Error> {
    let mut ping = registry_base_url.clone();
    ping.set_path("/v2/");
    ping.set_query(None);
    let login_server = match (ping.host_str(), ping.port()) {
        (Some(host), Some(port)) => format!("{host}:{port}"),
        (Some(host), None) => host.to_string(),
        (None, _) => {
            return Err(Error::Configuration {
                detail: format!(
                    "registry URL has no host: {}",
                    crate::http::redact_url(registry_base_url)
                ),
            })
        }
    };
    let response = http
        .get(ping.clone())
        .send()
        .await
        .map_err(|source| Error::Transport {
            url: crate::http::redact_url(&ping),
            source: source.without_url(),
        })?;
    let status = response.status().as_u16();
    let no_challenge = |detail: &str| Error::NoBearerChallenge {
        url: crate::http::redact_url(&ping),
        status,
        detail: detail.to_string(),
    };
    let challenge = response
        .headers()
        .get_all(reqwest::header::WWW_AUTHENTICATE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(challenge::parse_all)
        .find(|challenge| challenge.scheme == challenge::Scheme::Bearer)
        .ok_or_else(|| no_challenge("no WWW-Authenticate: Bearer header"))?;
    let realm = challenge
        .realm()
        .and_then(|realm| Url::parse(realm).ok())
        .filter(|realm| matches!(realm.scheme(), "http" | "https"))
        .ok_or_else(|| no_challenge("the challenge has no http(s) realm"))?;
    let service = challenge
        .service()
        .filter(|service| !service.is_empty())
        .ok_or_else(|| no_challenge("the challenge has no service"))?;
    if !realm_trusted(&login_server, &realm) {
        return Err(Error::UntrustedRealm {
            registry: login_server,
            realm: crate::http::redact_url(&realm),
        });
    }
    tracing::debug!(registry = %login_server, realm = %crate::http::redact_url(&realm), identity = %source.describe(), "exchanging an AAD token for an ACR refresh token");
    let aad = source.aad_token().await?;
    let tenant = source.tenant();
    let refresh =
        exchange_for_refresh_token(http, &realm, service, &aad, tenant.as_deref()).await?;
    Ok((refresh, login_server))
}

/// POST a form, retrying transient failures; the body of a 2xx answer.
async fn post_form(
    http: &reqwest::Client,
    url: &Url,
    form: &[(&str, &str)],
) -> Result<bytes::Bytes, Error> {
    let shown = SafeUrl::from(url);
    let transport = |source| Error::Transport {
        url: shown.to_string(),
        source,
    };
    let sent = retry::send(
        &EXCHANGE_RETRY,
        &shown,
        || http.post(url.clone()).form(form).timeout(EXCHANGE_TIMEOUT),
        |response| match response.status().as_u16() {
            429 | 500.. => Verdict::Retry,
            _ => Verdict::Done,
        },
        |_, _| EXCHANGE_RETRY.retries,
    )
    .await
    .map_err(|error| transport(error.source))?;
    let status = sent.response.status().as_u16();
    if !(200..300).contains(&status) {
        let body = crate::http::read_excerpt(sent.response, crate::http::Pace::default())
            .await
            .unwrap_or_default();
        tracing::debug!(url = %shown, status, body = %body, "ACR token service refused");
        return Err(Error::AcrRefused {
            url: shown.to_string(),
            status,
            body,
        });
    }
    crate::http::read_capped(
        sent.response,
        TOKEN_BODY_LIMIT,
        crate::http::Pace::default(),
    )
    .await
    .map_err(|error| body_error(url, error))
}

/// A token response that could not be read in full, as an invalid response.
pub(crate) fn body_error(url: &Url, error: BodyError) -> Error {
    let detail = match &error {
        BodyError::Transport(source) => format!("{error}: {source}"),
        BodyError::TooLarge { .. } => error.to_string(),
    };
    invalid(url, &detail)
}

fn invalid(url: &Url, detail: &str) -> Error {
    Error::InvalidResponse {
        endpoint: crate::http::redact_url(url),
        detail: detail.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url(text: &str) -> Url {
        Url::parse(text).unwrap()
    }

    #[test]
    fn exchange_url_keeps_scheme_host_and_port() {
        assert_eq!(
            exchange_url(&url("https://r.azurecr.io/oauth2/token?x=1")).as_str(),
            "https://r.azurecr.io/oauth2/exchange"
        );
        assert_eq!(
            exchange_url(&url("http://127.0.0.1:4000/oauth2/token")).as_str(),
            "http://127.0.0.1:4000/oauth2/exchange"
        );
    }

    #[test]
    fn realms_on_the_registry_host_only() {
        let trusted = [
            ("myreg.azurecr.io", "https://myreg.azurecr.io/oauth2/token"),
            ("MyReg.azurecr.io", "https://myreg.AZURECR.io/oauth2/token"),
            (
                "registry.example.com:5000",
                "https://registry.example.com:5000/token",
            ),
            (
                "myreg.azurecr.io:443",
                "https://myreg.azurecr.io/oauth2/token",
            ),
            ("127.0.0.1:5000", "http://127.0.0.1:6000/oauth2/token"),
            ("localhost:5000", "http://127.0.0.1:6000/oauth2/token"),
            ("[::1]:5000", "http://[::1]:6000/oauth2/token"),
        ];
        for (registry, realm) in trusted {
            assert!(realm_trusted(registry, &url(realm)), "{registry} {realm}");
        }
        let untrusted = [
            ("myreg.azurecr.io", "https://evil.example.com/oauth2/token"),
            (
                "myreg.azurecr.io",
                "https://myreg.azurecr.io.example.com/oauth2/token",
            ),
            (
                "myreg.azurecr.io",
                "https://evil-myreg.azurecr.io/oauth2/token",
            ),
            ("myreg.azurecr.io", "https://other.azurecr.io/oauth2/token"),
            ("myreg.azurecr.io", "http://myreg.azurecr.io/oauth2/token"),
            (
                "myreg.azurecr.io",
                "https://myreg.azurecr.io:8443/oauth2/token",
            ),
            (
                "registry.example.com:5000",
                "https://registry.example.com/token",
            ),
            (
                "registry.example.com:5000",
                "http://registry.example.com:5000/token",
            ),
            ("myreg.azurecr.io", "https://127.0.0.1/oauth2/token"),
            ("127.0.0.1:5000", "https://myreg.azurecr.io/oauth2/token"),
            ("127.0.0.1:5000", "ftp://127.0.0.1/oauth2/token"),
            (
                "myreg.azurecr.io/path",
                "https://myreg.azurecr.io/oauth2/token",
            ),
            (
                "user@myreg.azurecr.io",
                "https://myreg.azurecr.io/oauth2/token",
            ),
        ];
        for (registry, realm) in untrusted {
            assert!(!realm_trusted(registry, &url(realm)), "{registry} {realm}");
        }
    }
}
