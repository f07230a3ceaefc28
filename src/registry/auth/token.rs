//! Fetching bearer tokens from a registry's token endpoint (the Docker token protocol and
//! its OAuth2 form), for each kind of credential.

use std::time::{Duration, Instant, SystemTime};

use base64::Engine as _;

use crate::secret::{jwt_expiry, Secret};

/// The longest a token request (answer and body) may take: real token endpoints answer in
/// well under a second; a token endpoint that drips its answer must not hold a pull forever.
const TOKEN_REQUEST_TIMEOUT: Duration = Duration::from_secs(120);

/// A bearer token and when to stop using it.
#[derive(Debug, Clone)]
pub struct CachedToken {
    /// The token.
    pub token: Secret,
    /// When to refresh (already shortened by a safety margin).
    pub refresh_at: Instant,
}

impl CachedToken {
    /// A token valid for `lifetime`, refreshed a margin early (10% or 5 minutes, whichever is less).
    /// Lifetimes over a year count as a year: `Instant + lifetime` would otherwise overflow (and
    /// panic) for the `expires_in` values a token endpoint can send.
    pub fn new(token: Secret, lifetime: Duration) -> Self {
        const LONGEST: Duration = Duration::from_secs(365 * 24 * 3600);
        let lifetime = lifetime.min(LONGEST);
        let margin = (lifetime / 10).min(Duration::from_secs(300));
        Self {
            token,
            refresh_at: Instant::now() + lifetime.saturating_sub(margin),
        }
    }

    /// A token whose lifetime comes from its JWT `exp`, else `fallback`.
    pub fn from_jwt_or(token: Secret, fallback: Duration) -> Self {
        let lifetime = jwt_expiry(token.expose())
            .and_then(|exp| exp.duration_since(SystemTime::now()).ok())
            .unwrap_or(fallback);
        Self::new(token, lifetime)
    }

    /// Whether it is still good to use.
    pub fn is_fresh(&self) -> bool {
        Instant::now() < self.refresh_at
    }
}

/// How to authenticate at the token endpoint.
pub enum TokenGrant<'a> {
    /// No credentials.
    Anonymous,
    /// Basic credentials on a GET.
    Basic {
        /// User.
        username: &'a str,
        /// Password.
        password: &'a Secret,
    },
    /// OAuth2 refresh token on a POST.
    RefreshToken(&'a Secret),
}

#[derive(serde::Deserialize)]
struct TokenResponse {
    token: Option<String>,
    access_token: Option<String>,
    expires_in: Option<i64>,
}

/// Why a token request failed.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    /// The endpoint refused.
    #[error("token endpoint answered {status}{}", body.as_ref().map(|b| format!(": {b}")).unwrap_or_default())]
    Status {
        /// HTTP status.
        status: u16,
        /// Short body excerpt.
        body: Option<String>,
    },
    /// The request failed.
    #[error("token request failed")]
    Transport(#[source] reqwest::Error),
    /// The response had no token.
    #[error("token endpoint answered without a token")]
    NoToken,
    /// The response is larger than any token response (or broke off while being read).
    #[error("reading the token response failed")]
    Body(#[source] crate::http::BodyError),
    /// The token holds characters an `Authorization` header cannot carry (CR, LF, other control
    /// characters): sending it would be refused or, worse, split the header.
    #[error(
        "the token endpoint answered with a token that cannot be sent in an Authorization header"
    )]
    UnusableToken,
}

impl TokenError {
    /// Whether the endpoint said our credentials are wrong (401/403).
    pub fn is_denied(&self) -> bool {
        matches!(
            self,
            TokenError::Status {
                status: 401 | 403,
                ..
            }
        )
    }
}

/// Get a token for `scopes` from `realm`.
pub async fn fetch(
    http: &reqwest::Client,
    realm: &url::Url,
    service: Option<&str>,
    scopes: &[String],
    grant: TokenGrant<'_>,
) -> Result<CachedToken, TokenError> {
    let request = match grant {
        TokenGrant::Anonymous | TokenGrant::Basic { .. } => {
            let mut url = realm.clone();
            {
                let mut query = url.query_pairs_mut();
                if let Some(service) = service {
                    query.append_pair("service", service);
                }
                for scope in scopes {
                    query.append_pair("scope", scope);
                }
            }
            let request = http.get(url);
            match grant {
                TokenGrant::Basic { username, password } => {
                    let encoded = base64::engine::general_purpose::STANDARD
                        .encode(format!("{username}:{}", password.expose()));
                    match crate::http::sensitive_header(&format!("Basic {encoded}")) {
                        Some(header) => request.header(reqwest::header::AUTHORIZATION, header),
                        None => return Err(TokenError::UnusableToken),
                    }
                }
                _ => request,
            }
        }
        TokenGrant::RefreshToken(refresh) => {
            let mut form = url::form_urlencoded::Serializer::new(String::new());
            form.append_pair("grant_type", "refresh_token");
            if let Some(service) = service {
                form.append_pair("service", service);
            }
            for scope in scopes {
                form.append_pair("scope", scope);
            }
            form.append_pair("client_id", "acrpull");
            form.append_pair("refresh_token", refresh.expose());
            http.post(realm.clone())
                .header(
                    reqwest::header::CONTENT_TYPE,
                    "application/x-www-form-urlencoded",
                )
                .body(form.finish())
        }
    };
    let response = request
        .timeout(TOKEN_REQUEST_TIMEOUT)
        .send()
        .await
        .map_err(|error| TokenError::Transport(error.without_url()))?;
    let status = response.status();
    if !status.is_success() {
        let body = crate::http::read_excerpt(response, crate::http::Pace::default()).await;
        return Err(TokenError::Status {
            status: status.as_u16(),
            body,
        });
    }
    let bytes = crate::http::read_capped(
        response,
        crate::http::body::TOKEN_BODY_LIMIT,
        crate::http::Pace::default(),
    )
    .await
    .map_err(TokenError::Body)?;
    parse_response(&bytes)
}

/// Read a token endpoint's successful answer: `token` or `access_token`, and how long it lives
/// (`expires_in`, else the JWT's `exp`, else the Docker token spec's 60 seconds).
pub fn parse_response(bytes: &[u8]) -> Result<CachedToken, TokenError> {
    let parsed: TokenResponse = serde_json::from_slice(bytes).map_err(|_| TokenError::NoToken)?;
    let token = parsed
        .token
        .filter(|t| !t.is_empty())
        .or(parsed.access_token.filter(|t| !t.is_empty()))
        .ok_or(TokenError::NoToken)?;
    if crate::http::sensitive_header(&format!("Bearer {token}")).is_none() {
        return Err(TokenError::UnusableToken);
    }
    let token = Secret::new(token);
    Ok(match parsed.expires_in {
        Some(seconds) if seconds > 0 => {
            CachedToken::new(token, Duration::from_secs(seconds.unsigned_abs()))
        }
        // The Docker token spec says 60 s when absent; a JWT's own `exp` is better.
        _ => CachedToken::from_jwt_or(token, Duration::from_secs(60)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Found by the `token_response` fuzz target's corpus: `Instant::now() + expires_in`
    /// overflowed and panicked for the largest `expires_in` a registry can send.
    #[test]
    fn huge_expires_in_is_capped_not_a_panic() {
        for body in [
            &br#"{"token":"t","expires_in":9223372036854775807}"#[..],
            br#"{"access_token":"t","expires_in":9223372036854775807}"#,
        ] {
            let token = parse_response(body).unwrap();
            assert!(token.is_fresh());
            assert_eq!(token.token.expose(), "t");
        }
        assert!(matches!(parse_response(b"{}"), Err(TokenError::NoToken)));
    }

    #[test]
    fn tokens_that_cannot_be_header_values_are_refused() {
        for body in [
            &br#"{"token":"abc\r\nX-Injected: 1"}"#[..],
            br#"{"access_token":"abc\n"}"#,
            br#"{"token":"\u0000"}"#,
        ] {
            assert!(
                matches!(parse_response(body), Err(TokenError::UnusableToken)),
                "{}",
                String::from_utf8_lossy(body)
            );
        }
    }
}
