//! Parsing `WWW-Authenticate` challenges (RFC 7235), as registries send them:
//! `Bearer realm="https://auth.example/token",service="registry",scope="repository:a/b:pull,push"`.
//!
//! Pure functions, table-tested: quoted values may contain commas and escaped quotes.

/// The authentication scheme a registry asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scheme {
    /// `Bearer`: fetch a token from `realm`.
    Bearer,
    /// `Basic`: send the username and password on every request.
    Basic,
    /// Anything else.
    Other(String),
}

/// One parsed challenge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Challenge {
    /// The scheme.
    pub scheme: Scheme,
    /// `realm`: the token endpoint for Bearer.
    pub realm: Option<String>,
    /// `service`.
    pub service: Option<String>,
    /// `scope` (may hold several space-separated scopes).
    pub scope: Option<String>,
    /// `error`, e.g. `invalid_token` or `insufficient_scope`.
    pub error: Option<String>,
}

/// Parse the first challenge of a `WWW-Authenticate` header value. `None` if it has no scheme.
pub fn parse(header: &str) -> Option<Challenge> {
    let header = header.trim();
    let (scheme, rest) = match header.find(|c: char| c.is_ascii_whitespace()) {
        Some(i) => (&header[..i], header[i..].trim_start()),
        None => (header, ""),
    };
    if scheme.is_empty() || scheme.contains(['=', ',', '"']) {
        return None;
    }
    let scheme = match scheme.to_ascii_lowercase().as_str() {
        "bearer" => Scheme::Bearer,
        "basic" => Scheme::Basic,
        _ => Scheme::Other(scheme.to_string()),
    };
    let mut challenge = Challenge {
        scheme,
        realm: None,
        service: None,
        scope: None,
        error: None,
    };
    for (key, value) in parse_params(rest) {
        match key.to_ascii_lowercase().as_str() {
            "realm" => challenge.realm = Some(value),
            "service" => challenge.service = Some(value),
            "scope" => challenge.scope = Some(value),
            "error" => challenge.error = Some(value),
            _ => {}
        }
    }
    Some(challenge)
}

/// `key=value` pairs separated by commas; values are tokens or quoted strings.
fn parse_params(input: &str) -> Vec<(String, String)> {
    let mut params = Vec::new();
    let mut chars = input.chars().peekable();
    loop {
        while chars
            .peek()
            .is_some_and(|c| *c == ',' || c.is_ascii_whitespace())
        {
            chars.next();
        }
        let mut key = String::new();
        while let Some(&c) = chars.peek() {
            if c == '=' || c == ',' || c.is_ascii_whitespace() {
                break;
            }
            key.push(c);
            chars.next();
        }
        if key.is_empty() {
            break;
        }
        while chars.peek().is_some_and(char::is_ascii_whitespace) {
            chars.next();
        }
        if chars.peek() != Some(&'=') {
            // A bare token (e.g. a second scheme): stop here, we only read the first challenge.
            break;
        }
        chars.next();
        while chars.peek().is_some_and(char::is_ascii_whitespace) {
            chars.next();
        }
        let mut value = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            while let Some(c) = chars.next() {
                match c {
                    '\\' => {
                        if let Some(escaped) = chars.next() {
                            value.push(escaped);
                        }
                    }
                    '"' => break,
                    _ => value.push(c),
                }
            }
        } else {
            while let Some(&c) = chars.peek() {
                if c == ',' || c.is_ascii_whitespace() {
                    break;
                }
                value.push(c);
                chars.next();
            }
        }
        params.push((key, value));
    }
    params
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_with_commas_in_scope() {
        let c = parse(r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/alpine:pull,push""#).unwrap();
        assert_eq!(c.scheme, Scheme::Bearer);
        assert_eq!(c.realm.as_deref(), Some("https://auth.docker.io/token"));
        assert_eq!(c.service.as_deref(), Some("registry.docker.io"));
        assert_eq!(
            c.scope.as_deref(),
            Some("repository:library/alpine:pull,push")
        );
        assert_eq!(c.error, None);
    }

    #[test]
    fn error_and_spacing_and_case() {
        let c =
            parse(r#"bearer  realm = "http://127.0.0.1:1/t" , error="insufficient_scope",scope=x"#)
                .unwrap();
        assert_eq!(c.scheme, Scheme::Bearer);
        assert_eq!(c.realm.as_deref(), Some("http://127.0.0.1:1/t"));
        assert_eq!(c.error.as_deref(), Some("insufficient_scope"));
        assert_eq!(c.scope.as_deref(), Some("x"));
    }

    #[test]
    fn basic_and_escapes() {
        let c = parse(r#"Basic realm="Registry \"Realm\"""#).unwrap();
        assert_eq!(c.scheme, Scheme::Basic);
        assert_eq!(c.realm.as_deref(), Some(r#"Registry "Realm""#));
        assert_eq!(parse("Basic").unwrap().scheme, Scheme::Basic);
    }

    #[test]
    fn garbage_does_not_panic() {
        assert_eq!(parse(""), None);
        assert_eq!(parse("=x"), None);
        for s in [
            "Bearer realm=\"unterminated",
            "Bearer ,,,,",
            "Bearer a=",
            "Bearer \\",
        ] {
            let _ = parse(s);
        }
    }
}
