//! A parser for `WWW-Authenticate: Bearer realm="..",service="..",scope=".."` (RFC 7235).
//!
//! Private to `azure`: `acrpull token` needs the realm and service before the registry client's
//! own challenge handling exists. Values are quoted strings that may contain commas
//! (`scope="repository:a:pull,push"`), so a split on `,` is wrong (spec 3.1); this walks the
//! header once, honouring quotes and backslash escapes.

use std::collections::BTreeMap;

/// A parsed `Bearer` challenge: parameter names are lower-cased.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct BearerChallenge {
    pub(crate) parameters: BTreeMap<String, String>,
}

impl BearerChallenge {
    pub(crate) fn get(&self, name: &str) -> Option<&str> {
        self.parameters.get(name).map(String::as_str)
    }
}

/// The first `Bearer` challenge in a `WWW-Authenticate` value, if any.
pub(crate) fn parse_bearer(header: &str) -> Option<BearerChallenge> {
    let mut rest = header.trim_start();
    loop {
        let (scheme, after) = take_token(rest)?;
        let (parameters, after) = take_parameters(after);
        if scheme.eq_ignore_ascii_case("bearer") {
            return Some(BearerChallenge { parameters });
        }
        rest = after.trim_start_matches([',', ' ', '\t']);
        if rest.is_empty() {
            return None;
        }
    }
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
            let (value, rest) = take_token(after_equals).unwrap_or(("", after_equals));
            (value.to_string(), rest)
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

    #[test]
    fn acr_challenge() {
        let challenge = parse_bearer(
            r#"Bearer realm="https://r.azurecr.io/oauth2/token",service="r.azurecr.io",scope="repository:a/b:pull,push""#,
        )
        .unwrap();
        assert_eq!(
            challenge.get("realm"),
            Some("https://r.azurecr.io/oauth2/token")
        );
        assert_eq!(challenge.get("service"), Some("r.azurecr.io"));
        assert_eq!(challenge.get("scope"), Some("repository:a/b:pull,push"));
    }

    #[test]
    fn spacing_case_escapes_and_several_challenges() {
        let challenge = parse_bearer(
            r#"Basic realm="x", BEARER Realm = "http://127.0.0.1:9/t" , error=insufficient_scope, service="a\"b""#,
        )
        .unwrap();
        assert_eq!(challenge.get("realm"), Some("http://127.0.0.1:9/t"));
        assert_eq!(challenge.get("error"), Some("insufficient_scope"));
        assert_eq!(challenge.get("service"), Some("a\"b"));
        assert_eq!(parse_bearer(r#"Basic realm="Registry Realm""#), None);
        assert_eq!(parse_bearer(""), None);
        assert_eq!(parse_bearer("Bearer").unwrap().parameters.len(), 0);
        let unterminated = parse_bearer(r#"Bearer realm="http://x"#).unwrap();
        assert_eq!(unterminated.get("realm"), Some("http://x"));
    }
}
