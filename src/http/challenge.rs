//! Reading `WWW-Authenticate` (RFC 7235), the one parser for registries and `acrpull token`:
//! `Bearer realm="https://auth.example/token",service="registry",scope="repository:a/b:pull,push"`.
//!
//! A header may hold several challenges (`Basic realm="x", Bearer realm="y"`), and quoted values
//! may contain commas and escaped quotes, so a split on `,` is wrong; this walks the value once.
//! Pure functions, table-tested and fuzzed.

use std::collections::BTreeMap;

/// The authentication scheme a server asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scheme {
    /// `Bearer`: fetch a token from `realm`.
    Bearer,
    /// `Basic`: send the username and password on every request.
    Basic,
    /// Anything else.
    Other(String),
}

/// One challenge: its scheme and parameters (names lower-cased).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Challenge {
    /// The scheme.
    pub scheme: Scheme,
    /// Every `name=value` parameter, names lower-cased.
    pub parameters: BTreeMap<String, String>,
}

impl Challenge {
    /// A parameter by (lower-case) name.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.parameters.get(name).map(String::as_str)
    }

    /// `realm`: the token endpoint for `Bearer`.
    pub fn realm(&self) -> Option<&str> {
        self.get("realm")
    }

    /// `service`.
    pub fn service(&self) -> Option<&str> {
        self.get("service")
    }

    /// `scope` (may hold several space-separated scopes).
    pub fn scope(&self) -> Option<&str> {
        self.get("scope")
    }

    /// `error`, e.g. `invalid_token` or `insufficient_scope`.
    pub fn error(&self) -> Option<&str> {
        self.get("error")
    }
}

/// Every challenge in one `WWW-Authenticate` value, in order.
pub fn parse_all(header: &str) -> Vec<Challenge> {
    let mut challenges = Vec::new();
    let mut rest = header.trim_start_matches([',', ' ', '\t']);
    while let Some((scheme, after)) = take_token(rest) {
        let (parameters, after) = take_parameters(after);
        let scheme = match scheme.to_ascii_lowercase().as_str() {
            "bearer" => Scheme::Bearer,
            "basic" => Scheme::Basic,
            _ => Scheme::Other(scheme.to_string()),
        };
        challenges.push(Challenge { scheme, parameters });
        rest = after.trim_start_matches([',', ' ', '\t']);
    }
    challenges
}

/// The first challenge of a value, if it has one.
pub fn parse(header: &str) -> Option<Challenge> {
    parse_all(header).into_iter().next()
}

/// The challenge to act on among all `WWW-Authenticate` headers of a response: the first
/// `Bearer` one, else the first of any scheme.
pub fn from_headers(headers: &reqwest::header::HeaderMap) -> Option<Challenge> {
    let all: Vec<Challenge> = headers
        .get_all(reqwest::header::WWW_AUTHENTICATE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(parse_all)
        .collect();
    let bearer = all.iter().position(|c| c.scheme == Scheme::Bearer);
    all.into_iter().nth(bearer.unwrap_or(0))
}

/// A token (RFC 7230 tchar run) and what follows it.
fn take_token(input: &str) -> Option<(&str, &str)> {
    let end = input
        .find(|character: char| !is_token_character(character))
        .unwrap_or(input.len());
    (end > 0).then(|| (&input[..end], &input[end..]))
}

fn is_token_character(character: char) -> bool {
    character.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(character)
}

/// `name=value` pairs separated by commas, up to the start of the next challenge.
fn take_parameters(mut input: &str) -> (BTreeMap<String, String>, &str) {
    let mut parameters = BTreeMap::new();
    loop {
        let trimmed = input.trim_start_matches([',', ' ', '\t']);
        let Some((name, after_name)) = take_token(trimmed) else {
            return (parameters, trimmed);
        };
        let after_name = after_name.trim_start();
        let Some(after_equals) = after_name.strip_prefix('=') else {
            // A bare token: the next challenge's scheme starts here.
            return (parameters, trimmed);
        };
        let after_equals = after_equals.trim_start();
        let (value, rest) = if let Some(quoted) = after_equals.strip_prefix('"') {
            take_quoted(quoted)
        } else {
            let end = after_equals
                .find([',', ' ', '\t'])
                .unwrap_or(after_equals.len());
            (after_equals[..end].to_string(), &after_equals[end..])
        };
        parameters.insert(name.to_ascii_lowercase(), value);
        input = rest;
    }
}

/// The body of a quoted string (opening quote already consumed) and what follows the closing one.
fn take_quoted(input: &str) -> (String, &str) {
    let mut value = String::new();
    let mut characters = input.char_indices();
    while let Some((index, character)) = characters.next() {
        match character {
            '"' => return (value, &input[index + 1..]),
            '\\' => {
                if let Some((_, escaped)) = characters.next() {
                    value.push(escaped);
                }
            }
            _ => value.push(character),
        }
    }
    (value, "")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn first_bearer(header: &str) -> Option<Challenge> {
        parse_all(header)
            .into_iter()
            .find(|c| c.scheme == Scheme::Bearer)
    }

    #[test]
    fn bearer_with_commas_in_scope() {
        let c = parse(r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/alpine:pull,push""#).unwrap();
        assert_eq!(c.scheme, Scheme::Bearer);
        assert_eq!(c.realm(), Some("https://auth.docker.io/token"));
        assert_eq!(c.service(), Some("registry.docker.io"));
        assert_eq!(c.scope(), Some("repository:library/alpine:pull,push"));
        assert_eq!(c.error(), None);
    }

    #[test]
    fn error_and_spacing_and_case() {
        let c =
            parse(r#"bearer  realm = "http://127.0.0.1:1/t" , error="insufficient_scope",scope=x"#)
                .unwrap();
        assert_eq!(c.scheme, Scheme::Bearer);
        assert_eq!(c.realm(), Some("http://127.0.0.1:1/t"));
        assert_eq!(c.error(), Some("insufficient_scope"));
        assert_eq!(c.scope(), Some("x"));
    }

    #[test]
    fn basic_and_escapes() {
        let c = parse(r#"Basic realm="Registry \"Realm\"""#).unwrap();
        assert_eq!(c.scheme, Scheme::Basic);
        assert_eq!(c.realm(), Some(r#"Registry "Realm""#));
        assert_eq!(parse("Basic").unwrap().scheme, Scheme::Basic);
    }

    #[test]
    fn several_challenges_in_one_value() {
        let challenge = first_bearer(
            r#"Basic realm="x", BEARER Realm = "http://127.0.0.1:9/t" , error=insufficient_scope, service="a\"b""#,
        )
        .unwrap();
        assert_eq!(challenge.realm(), Some("http://127.0.0.1:9/t"));
        assert_eq!(challenge.error(), Some("insufficient_scope"));
        assert_eq!(challenge.service(), Some("a\"b"));
        assert_eq!(first_bearer(r#"Basic realm="Registry Realm""#), None);
        assert_eq!(first_bearer(""), None);
        assert_eq!(first_bearer("Bearer").unwrap().parameters.len(), 0);
        let unterminated = first_bearer(r#"Bearer realm="http://x"#).unwrap();
        assert_eq!(unterminated.realm(), Some("http://x"));
    }

    #[test]
    fn the_bearer_challenge_wins_across_headers() {
        let mut headers = reqwest::header::HeaderMap::new();
        headers.append(
            reqwest::header::WWW_AUTHENTICATE,
            "Basic realm=\"r\"".parse().unwrap(),
        );
        headers.append(
            reqwest::header::WWW_AUTHENTICATE,
            "Bearer realm=\"https://t/\"".parse().unwrap(),
        );
        assert_eq!(from_headers(&headers).unwrap().realm(), Some("https://t/"));
        headers.remove(reqwest::header::WWW_AUTHENTICATE);
        headers.append(
            reqwest::header::WWW_AUTHENTICATE,
            "Basic realm=\"r\"".parse().unwrap(),
        );
        assert_eq!(from_headers(&headers).unwrap().scheme, Scheme::Basic);
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
