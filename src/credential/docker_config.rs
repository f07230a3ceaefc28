//! Docker `config.json` and containers `auth.json`: one format, read the way docker and
//! containers/image read it.
//!
//! Both files hold `auths` (registry key -> `{auth: base64("user:password")}` or
//! `{identitytoken}`), `credHelpers` (registry -> helper name) and `credsStore` (the helper for
//! every registry). Everything else in `config.json` (`proxies`, `psFormat`, `plugins`, ...) is
//! ignored; inside an `auths` entry only the fields docker writes are accepted, so a misspelt
//! `identityToken` is an error naming the file rather than a silent anonymous pull.
//!
//! The legacy `~/.dockercfg` (docker before 1.7) is the `auths` map alone, at the top level
//! ([`AuthFile::parse_legacy`]).
//!
//! `auths` is read as plain JSON and checked by hand: serde's message for a value of the wrong
//! type repeats the value (`invalid type: string "dXNlcjpz..."`), and there it may be a secret.

use std::collections::BTreeMap;

use base64::Engine as _;

use super::Credential;
use crate::reference::DOCKER_HUB;
use crate::secret::Secret;

/// The key docker uses for Docker Hub in `auths`, and the server URL it gives helpers.
pub const DOCKER_HUB_KEY: &str = "https://index.docker.io/v1/";

/// The username with which credential helpers mark the secret as an identity (refresh) token.
pub const IDENTITY_TOKEN_USERNAME: &str = "<token>";

/// A parsed `config.json` / `auth.json`.
#[derive(Default)]
pub struct AuthFile {
    auths: BTreeMap<String, AuthEntry>,
    cred_helpers: BTreeMap<String, String>,
    creds_store: Option<String>,
}

/// The file as serde reads it; `auths` stays plain JSON (see the module documentation).
#[derive(serde::Deserialize)]
struct RawFile {
    #[serde(default)]
    auths: serde_json::Value,
    #[serde(default, rename = "credHelpers")]
    cred_helpers: BTreeMap<String, String>,
    #[serde(default, rename = "credsStore")]
    creds_store: Option<String>,
}

/// One `auths` entry. No `Debug`: it holds secrets.
#[derive(Default)]
struct AuthEntry {
    auth: Option<String>,
    username: Option<String>,
    password: Option<String>,
    identitytoken: Option<String>,
}

/// The fields of an `auths` entry: the ones read, then the ones docker writes and pulling
/// does not use.
const ENTRY_FIELDS: &[&str] = &[
    "auth",
    "username",
    "password",
    "identitytoken",
    "email",
    "serveraddress",
    "registrytoken",
];

/// Why a file's content is unusable (the file itself is named by the caller).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ParseError {
    /// Not JSON, or JSON of the wrong shape outside `auths` (serde's message names the line,
    /// column and field).
    #[error("not a valid credentials file")]
    Json(#[source] serde_json::Error),
    /// `auths` is not a JSON object.
    #[error("`auths` is not a JSON object")]
    AuthsNotAnObject,
    /// An `auths` entry of the wrong shape. The message names the key and the field, never a
    /// value: a value where it does not belong may still be a secret.
    #[error("the `auths` entry for `{key}` {problem}")]
    BadEntry {
        /// The `auths` key.
        key: String,
        /// What is wrong, e.g. ``has a non-string `auth` ``.
        problem: String,
    },
    /// An `auth` value that is not base64 of `user:password`.
    #[error("the `auth` value for `{key}` is not base64 of `user:password`")]
    BadAuth {
        /// The `auths` key.
        key: String,
    },
}

/// What a file says about one registry.
#[derive(Debug)]
pub enum Lookup {
    /// Credentials stored in the file (`auths`).
    Stored {
        /// The `auths` key that matched.
        key: String,
        /// The credential.
        credential: Credential,
    },
    /// A helper to ask: from `credHelpers` (`per_registry`) or `credsStore`.
    Helper {
        /// The helper's name (`docker-credential-<name>`).
        name: String,
        /// Whether it came from `credHelpers` rather than `credsStore`.
        per_registry: bool,
    },
}

impl AuthFile {
    /// Parse a file's bytes.
    pub fn parse(bytes: &[u8]) -> Result<Self, ParseError> {
        let raw: RawFile = serde_json::from_slice(bytes).map_err(ParseError::Json)?;
        Ok(Self {
            auths: auths_of(raw.auths)?,
            cred_helpers: raw.cred_helpers,
            creds_store: raw.creds_store,
        })
    }

    /// Parse a legacy `~/.dockercfg`: `{"https://index.docker.io/v1/": {"auth": ..., "email":
    /// ...}}`, registry keys at the top level, no helpers.
    pub fn parse_legacy(bytes: &[u8]) -> Result<Self, ParseError> {
        // Read as plain JSON first: a secret in the wrong place must not reach a message.
        let value: serde_json::Value = serde_json::from_slice(bytes).map_err(ParseError::Json)?;
        Ok(Self {
            auths: auths_of(value)?,
            ..Self::default()
        })
    }

    /// Where to look for `registry` (`host[:port]`, `docker.io` for Docker Hub), in the order
    /// to try: its `credHelpers` entry, its `auths` entry, then `credsStore`. Empty `auths`
    /// entries (docker writes `{}` when the secret lives in a store) are skipped.
    pub fn lookup(&self, registry: &str) -> Result<Vec<Lookup>, ParseError> {
        let host = normalize_host(registry);
        let mut found = Vec::new();
        let helper = self
            .cred_helpers
            .get(registry)
            .or_else(|| {
                self.cred_helpers
                    .iter()
                    .find(|(key, _)| normalize_host(key) == host)
                    .map(|(_, name)| name)
            })
            .filter(|name| !name.is_empty());
        if let Some(name) = helper {
            found.push(Lookup::Helper {
                name: name.clone(),
                per_registry: true,
            });
        }
        let entry = self.auths.get_key_value(registry).or_else(|| {
            self.auths
                .iter()
                .find(|(key, _)| normalize_host(key) == host)
        });
        if let Some((key, entry)) = entry {
            if let Some(credential) = entry.credential(key)? {
                found.push(Lookup::Stored {
                    key: key.clone(),
                    credential,
                });
            }
        }
        if let Some(name) = self.creds_store.as_ref().filter(|name| !name.is_empty()) {
            found.push(Lookup::Helper {
                name: name.clone(),
                per_registry: false,
            });
        }
        Ok(found)
    }
}

/// The `auths` map from its JSON: an object of entries, or `null` (no entries, as docker
/// reads it).
fn auths_of(value: serde_json::Value) -> Result<BTreeMap<String, AuthEntry>, ParseError> {
    match value {
        serde_json::Value::Object(entries) => entries
            .into_iter()
            .map(|(key, value)| {
                let entry = AuthEntry::from_json(&key, value)?;
                Ok((key, entry))
            })
            .collect(),
        serde_json::Value::Null => Ok(BTreeMap::new()),
        _ => Err(ParseError::AuthsNotAnObject),
    }
}

impl AuthEntry {
    /// An entry from its JSON: an object of [`ENTRY_FIELDS`], each a string or `null`.
    fn from_json(key: &str, value: serde_json::Value) -> Result<Self, ParseError> {
        let bad = |problem: String| ParseError::BadEntry {
            key: key.to_string(),
            problem,
        };
        let serde_json::Value::Object(fields) = value else {
            return Err(bad("is not a JSON object".to_string()));
        };
        let mut entry = AuthEntry::default();
        let mut unused = None;
        for (name, value) in fields {
            let slot = match name.as_str() {
                "auth" => &mut entry.auth,
                "username" => &mut entry.username,
                "password" => &mut entry.password,
                "identitytoken" => &mut entry.identitytoken,
                "email" | "serveraddress" | "registrytoken" => &mut unused,
                _ => {
                    return Err(bad(format!(
                        "has an unknown field `{name}`, expected one of `{}`",
                        ENTRY_FIELDS.join("`, `")
                    )))
                }
            };
            *slot = match value {
                serde_json::Value::String(text) => Some(text),
                serde_json::Value::Null => None,
                _ => return Err(bad(format!("has a non-string `{name}`"))),
            };
        }
        Ok(entry)
    }

    fn credential(&self, key: &str) -> Result<Option<Credential>, ParseError> {
        if let Some(token) = self.identitytoken.as_ref().filter(|t| !t.is_empty()) {
            return Ok(Some(Credential::RefreshToken(Secret::new(token.clone()))));
        }
        let (username, password) = match (&self.auth, &self.username, &self.password) {
            (Some(auth), _, _) if !auth.is_empty() => {
                decode_auth(auth).ok_or_else(|| ParseError::BadAuth {
                    key: key.to_string(),
                })?
            }
            (_, Some(username), Some(password)) if !username.is_empty() => {
                (username.clone(), password.clone())
            }
            _ => return Ok(None),
        };
        Ok(Some(from_username_secret(username, Secret::new(password))))
    }
}

/// `user:password` from base64 (standard alphabet, padding optional, as docker accepts).
fn decode_auth(auth: &str) -> Option<(String, String)> {
    let trimmed = auth.trim().trim_end_matches('=');
    let bytes = base64::engine::general_purpose::STANDARD_NO_PAD
        .decode(trimmed)
        .ok()?;
    let text = String::from_utf8(bytes).ok()?;
    let (username, password) = text.split_once(':')?;
    if username.is_empty() {
        return None;
    }
    Some((
        username.to_string(),
        password.trim_end_matches(['\n', '\r']).to_string(),
    ))
}

/// The credential a username + secret pair stands for: username `<token>` marks an identity
/// token (used as an OAuth2 refresh token); anything else, including ACR's null GUID, is Basic.
pub fn from_username_secret(username: String, secret: Secret) -> Credential {
    if username == IDENTITY_TOKEN_USERNAME {
        Credential::RefreshToken(secret)
    } else {
        Credential::Basic {
            username,
            password: secret,
        }
    }
}

/// A registry key as docker compares it: scheme and path dropped, lower case, and every
/// Docker Hub spelling folded into `docker.io`.
pub fn normalize_host(key: &str) -> String {
    let key = key.trim();
    let without_scheme = key
        .strip_prefix("https://")
        .or_else(|| key.strip_prefix("http://"))
        .unwrap_or(key);
    let host = without_scheme
        .split('/')
        .next()
        .unwrap_or(without_scheme)
        .to_ascii_lowercase();
    match host.as_str() {
        "index.docker.io" | "registry-1.docker.io" | "docker.io" => DOCKER_HUB.to_string(),
        _ => host,
    }
}

/// The server URL docker hands a credential helper for `registry`.
pub fn helper_server_url(registry: &str) -> String {
    if normalize_host(registry) == DOCKER_HUB {
        DOCKER_HUB_KEY.to_string()
    } else {
        registry.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b64(text: &str) -> String {
        base64::engine::general_purpose::STANDARD.encode(text)
    }

    fn parse(json: &str) -> AuthFile {
        AuthFile::parse(json.as_bytes()).unwrap()
    }

    #[test]
    fn host_matching_like_docker() {
        assert_eq!(
            normalize_host("http://127.0.0.1:5000/v2/"),
            "127.0.0.1:5000"
        );
        assert_eq!(
            normalize_host("https://Registry.Example/"),
            "registry.example"
        );
        assert_eq!(normalize_host(DOCKER_HUB_KEY), "docker.io");
        assert_eq!(normalize_host("registry-1.docker.io"), "docker.io");
        assert_eq!(normalize_host("myreg.azurecr.io"), "myreg.azurecr.io");
        assert_eq!(helper_server_url("docker.io"), DOCKER_HUB_KEY);
        assert_eq!(helper_server_url("127.0.0.1:5000"), "127.0.0.1:5000");
    }

    #[test]
    fn auth_identitytoken_and_docker_hub_key() {
        let file = parse(&format!(
            r#"{{"auths": {{
                "http://127.0.0.1:5000/v2/": {{"auth": "{}"}},
                "https://index.docker.io/v1/": {{"auth": "{}", "email": "x@example"}},
                "myreg.azurecr.io": {{"auth": "{}", "identitytoken": "refresh"}},
                "nullguid.azurecr.io": {{"auth": "{}"}}
            }}, "psFormat": "table", "proxies": {{}}}}"#,
            b64("alice:pa:ss"),
            b64("hub:hubpass"),
            b64("<token>:"),
            b64("00000000-0000-0000-0000-000000000000:acr-refresh"),
        ));
        let one = |registry: &str| match file.lookup(registry).unwrap().pop() {
            Some(Lookup::Stored { credential, .. }) => credential,
            other => panic!("{registry}: {other:?}"),
        };
        match one("127.0.0.1:5000") {
            Credential::Basic { username, password } => {
                assert_eq!(username, "alice");
                assert_eq!(password.expose(), "pa:ss");
            }
            other => panic!("{other:?}"),
        }
        assert!(
            matches!(one("docker.io"), Credential::Basic { username, .. } if username == "hub")
        );
        assert!(
            matches!(one("myreg.azurecr.io"), Credential::RefreshToken(t) if t.expose() == "refresh")
        );
        assert!(matches!(
            one("nullguid.azurecr.io"),
            Credential::Basic { username, .. } if username == "00000000-0000-0000-0000-000000000000"
        ));
        assert!(file.lookup("127.0.0.1:5001").unwrap().is_empty());
    }

    #[test]
    fn helpers_order_and_empty_entries() {
        let file = parse(
            r#"{"auths": {"a.example": {}, "b.example": {"username": "u", "password": "p"}},
                "credHelpers": {"https://a.example": "fake"}, "credsStore": "store"}"#,
        );
        let names: Vec<String> = file
            .lookup("a.example")
            .unwrap()
            .into_iter()
            .map(|l| match l {
                Lookup::Helper { name, per_registry } => format!("{name}/{per_registry}"),
                Lookup::Stored { key, .. } => format!("stored {key}"),
            })
            .collect();
        assert_eq!(names, ["fake/true", "store/false"]);
        let b = file.lookup("b.example").unwrap();
        assert!(matches!(&b[0], Lookup::Stored { .. }));
        assert!(matches!(
            &b[1],
            Lookup::Helper {
                per_registry: false,
                ..
            }
        ));
    }

    #[test]
    fn token_username_means_identity_token() {
        assert!(matches!(
            from_username_secret("<token>".into(), Secret::new("t")),
            Credential::RefreshToken(_)
        ));
    }

    #[test]
    fn bad_files_are_errors_without_secrets() {
        let unknown = AuthFile::parse(br#"{"auths": {"h": {"identityToken": "s3cret"}}}"#)
            .err()
            .unwrap();
        let text = format!("{:#}", anyhow_like(&unknown));
        assert!(text.contains("identityToken"), "{text}");
        assert!(!text.contains("s3cret"), "{text}");
        assert!(AuthFile::parse(b"{not json").is_err());
        assert!(AuthFile::parse(br#"{"auths": []}"#).is_err());
        let bad = parse(r#"{"auths": {"h": {"auth": "!!!notbase64"}}}"#);
        assert!(matches!(bad.lookup("h"), Err(ParseError::BadAuth { .. })));
        let no_colon = parse(&format!(
            r#"{{"auths": {{"h": {{"auth": "{}"}}}}}}"#,
            b64("x")
        ));
        assert!(no_colon.lookup("h").is_err());
    }

    /// Found by the `docker_config` fuzz target: a string where `auths` or an entry should be
    /// an object (say, the `auth` value written without its object) was repeated in serde's
    /// message, and so on stderr.
    #[test]
    fn wrong_shapes_in_auths_never_repeat_the_value() {
        let secret = b64("user:s3cret-password");
        for (json, names) in [
            (format!(r#"{{"auths": "{secret}"}}"#), ""),
            (format!(r#"{{"auths": {{"h": "{secret}"}}}}"#), "`h`"),
            (format!(r#"{{"auths": {{"h": ["{secret}"]}}}}"#), "`h`"),
            (
                r#"{"auths": {"h": {"password": 12345678}}}"#.to_string(),
                "`password`",
            ),
            (
                r#"{"auths": {"h": {"identitytoken": {"t": "s3cret-password"}}}}"#.to_string(),
                "`identitytoken`",
            ),
        ] {
            let error = AuthFile::parse(json.as_bytes()).err().unwrap();
            let text = anyhow_like(&error);
            for value in [secret.as_str(), "12345678", "s3cret-password"] {
                assert!(!text.contains(value), "{json}: {text}");
            }
            assert!(text.contains(names), "{json}: {text}");
        }
        // `null` is no entries, as docker reads it; a null field is an absent one.
        assert!(parse(r#"{"auths": null}"#).lookup("h").unwrap().is_empty());
        let file = parse(r#"{"auths": {"h": {"auth": null, "username": "u", "password": "p"}}}"#);
        assert!(matches!(
            file.lookup("h").unwrap().as_slice(),
            [Lookup::Stored { credential: Credential::Basic { username, .. }, .. }] if username == "u"
        ));
    }

    /// The format docker wrote before 1.7 (and containers/image still reads): registry keys at
    /// the top level, each `{auth, email}`.
    #[test]
    fn legacy_dockercfg_is_the_auths_map_alone() {
        let file = AuthFile::parse_legacy(
            format!(
                r#"{{"https://index.docker.io/v1/": {{"auth": "{}", "email": "me@example"}},
                    "http://127.0.0.1:5000": {{"auth": "{}", "email": ""}}}}"#,
                b64("hub:hubpass"),
                b64("alice:pw")
            )
            .as_bytes(),
        )
        .unwrap();
        assert!(matches!(
            file.lookup("docker.io").unwrap().as_slice(),
            [Lookup::Stored { credential: Credential::Basic { username, .. }, .. }] if username == "hub"
        ));
        assert!(matches!(
            file.lookup("127.0.0.1:5000").unwrap().as_slice(),
            [Lookup::Stored { credential: Credential::Basic { username, .. }, .. }] if username == "alice"
        ));
        // The modern format's keys are registry keys there, not settings.
        let error = AuthFile::parse_legacy(br#"{"auths": {"h": {"auth": "x"}}}"#)
            .err()
            .unwrap();
        assert!(
            anyhow_like(&error).contains("`auths`"),
            "{}",
            anyhow_like(&error)
        );
        assert!(AuthFile::parse_legacy(br#"["s3cret"]"#).is_err());
    }

    fn anyhow_like(error: &dyn std::error::Error) -> String {
        let mut text = error.to_string();
        let mut source = error.source();
        while let Some(cause) = source {
            text.push_str(": ");
            text.push_str(&cause.to_string());
            source = cause.source();
        }
        text
    }
}
