//! Secrets (passwords, tokens) that never print: `Debug` and `Display` show `<redacted>`.

use std::fmt;

/// A secret string. Read it with [`Secret::expose`] at the one place it is sent.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wrap a secret.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The secret itself; call only where it goes on the wire or to a file the user asked for.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Whether the secret is empty.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

impl From<String> for Secret {
    fn from(value: String) -> Self {
        Self(value)
    }
}

/// The `exp` claim of a JWT, read without verifying the signature (used only to decide when
/// to refresh). `None` if the token is not a JWT or has no numeric `exp`.
pub fn jwt_expiry(token: &str) -> Option<std::time::SystemTime> {
    use base64::Engine as _;
    let payload = token.split('.').nth(1)?;
    if payload.len() > 64 * 1024 {
        return None;
    }
    let payload = payload.trim_end_matches('=');
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .ok()?;
    #[derive(serde::Deserialize)]
    struct Claims {
        exp: Option<serde_json::Value>,
    }
    let claims: Claims = serde_json::from_slice(&bytes).ok()?;
    let exp = match claims.exp? {
        serde_json::Value::Number(n) => n.as_u64()?,
        serde_json::Value::String(s) => s.parse().ok()?,
        _ => return None,
    };
    // An `exp` beyond what `SystemTime` can hold is treated as absent: adding it would panic.
    std::time::UNIX_EPOCH.checked_add(std::time::Duration::from_secs(exp))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn never_prints() {
        let s = Secret::new("hunter2");
        assert!(!format!("{s:?} {s}").contains("hunter2"));
        assert_eq!(s.expose(), "hunter2");
    }

    #[test]
    fn reads_jwt_exp() {
        // {"alg":"none"}.{"exp":1700000000}.
        let token = "eyJhbGciOiJub25lIn0.eyJleHAiOjE3MDAwMDAwMDB9.";
        let exp = jwt_expiry(token).unwrap();
        assert_eq!(
            exp.duration_since(std::time::UNIX_EPOCH).unwrap().as_secs(),
            1_700_000_000
        );
        assert_eq!(jwt_expiry("not-a-jwt"), None);
        assert_eq!(jwt_expiry("a.!!!.c"), None);
    }

    /// Found by the `jwt_expiry` fuzz target: an `exp` past what `SystemTime` holds panicked.
    #[test]
    fn jwt_exp_beyond_system_time_is_ignored() {
        // {"alg":"none"}.{"exp":18446744073709551615}.
        let token = "eyJhbGciOiJub25lIn0.eyJleHAiOjE4NDQ2NzQ0MDczNzA5NTUxNjE1fQ.";
        assert_eq!(jwt_expiry(token), None);
    }
}
