//! The checks behind each fuzz target, one function per target. Each takes the raw input,
//! feeds it to the same library function the puller uses on registry or archive data, and
//! panics when a property that must hold for every input does not (a round trip, a bound, the
//! sandbox around the layer applier).
//!
//! This file is also compiled into the integration tests (`tests/it/fuzz_regressions.rs`
//! includes it with `#[path]`), which replay the committed regression inputs on stable Rust, so
//! it uses only crates the main package already depends on.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use acrpull::fuzzing;
use acrpull::manifest::{
    Classified, Descriptor, DocumentError, ImageConfigSummary, ImageIndex, ImageManifest,
};
use acrpull::media_type::ManifestKind;
use acrpull::registry::Error as RegistryError;
use acrpull::source::FetchedManifest;
use acrpull::{Digest, Platform, Reference};

pub mod layer;

/// A fixed "now" so that a crash reproduces whatever the date.
const NOW_SECONDS: u64 = 1_700_000_000;

fn now() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(NOW_SECONDS)
}

/// Image references, digests and platforms: whatever parses must print back to a string that
/// parses to the same value.
pub fn reference(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(reference) = text.parse::<Reference>() {
        let printed = reference.to_string();
        let again: Reference = printed.parse().unwrap_or_else(|error| {
            panic!("`{text}` printed as `{printed}`, which fails: {error}")
        });
        assert_eq!(again, reference, "`{text}` -> `{printed}`");
        assert!(!reference.repository().is_empty());
        assert!(reference.tag().is_some() || reference.digest().is_some());
        let _ = reference.manifest_reference();
        let _ = reference.api_host();
        let _ = reference.is_loopback_registry();
    }
    if let Ok(digest) = text.parse::<Digest>() {
        assert_eq!(digest.to_string(), text);
        assert!(!digest.hex().contains(['/', '.']));
    }
    if let Ok(platform) = text.parse::<Platform>() {
        let printed = platform.to_string();
        let again: Platform = printed.parse().unwrap_or_else(|error| {
            panic!("`{text}` printed as `{printed}`, which fails: {error}")
        });
        assert_eq!(again, platform, "`{text}` -> `{printed}`");
        assert!(platform.matches(
            &platform.os,
            &platform.architecture,
            platform.variant.as_deref()
        ));
    }
}

/// `WWW-Authenticate` values, through the one challenge parser: every challenge of a value, and
/// the first `Bearer` one as `acrpull token` reads it.
pub fn www_authenticate(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    for challenge in acrpull::http::challenge::parse_all(text) {
        for value in [challenge.realm(), challenge.service(), challenge.scope()]
            .into_iter()
            .flatten()
        {
            assert!(value.len() <= text.len());
        }
    }
    if let Some(parameters) = fuzzing::azure_bearer_challenge(text) {
        for (name, value) in &parameters {
            assert_eq!(name, &name.to_ascii_lowercase());
            assert!(value.len() <= text.len());
        }
    }
}

/// Manifest, index and config documents: classification (with the digest checks) and the typed
/// views the puller reads. Descriptors that parse always carry a digest safe to use as a path.
pub fn manifest(data: &[u8]) {
    let bytes = bytes::Bytes::copy_from_slice(data);
    let own = Digest::sha256_of(data);
    match FetchedManifest::verify(bytes.clone(), None, Some(&own), None, "fuzz") {
        Ok(fetched) => {
            assert_eq!(fetched.digest, own);
            assert_eq!(&fetched.bytes[..], data);
        }
        Err(error) => assert!(
            !matches!(error, acrpull::registry::Error::Integrity { .. }),
            "a manifest failed its own digest: {error}"
        ),
    }
    for declared in DECLARED {
        let verified = FetchedManifest::verify(
            bytes.clone(),
            declared.map(str::to_string),
            None,
            None,
            "fuzz",
        );
        let classified = acrpull::manifest::classify(data, declared);
        check_one_meaning(data, declared, classified.as_ref().ok());
        // The registry/layout path and the rule are the same rule.
        match (&classified, &verified) {
            (Ok(classified), Ok(verified)) => {
                assert_eq!(classified.media_type, verified.media_type);
                assert_eq!(classified.kind, verified.kind);
            }
            (Err(DocumentError::Ambiguous(_)), Err(RegistryError::AmbiguousManifest { .. }))
            | (Err(DocumentError::Unsupported(_)), Err(RegistryError::Unsupported { .. }))
            | (Err(DocumentError::Unsupported(_)), Err(RegistryError::Schema1 { .. })) => {}
            (classified, verified) => {
                panic!("classify says {classified:?}, verify says {verified:?}")
            }
        }
    }
    if let Ok(manifest) = serde_json::from_slice::<ImageManifest>(data) {
        check_descriptor(&manifest.config);
        manifest.layers.iter().for_each(check_descriptor);
    }
    if let Ok(index) = serde_json::from_slice::<ImageIndex>(data) {
        index.manifests.iter().for_each(check_descriptor);
    }
    if let Ok(config) = serde_json::from_slice::<ImageConfigSummary>(data) {
        let _ = Platform::new(&config.os, &config.architecture, config.variant.as_deref());
        for diff_id in config.rootfs.iter().flat_map(|rootfs| &rootfs.diff_ids) {
            assert!(diff_id.hex().bytes().all(|b| b.is_ascii_hexdigit()));
        }
    }
}

/// The types a manifest is declared with in the fuzz checks: none, specific ones, generic ones.
const DECLARED: [Option<&str>; 6] = [
    None,
    Some(acrpull::media_type::OCI_MANIFEST),
    Some(acrpull::media_type::OCI_INDEX),
    Some(acrpull::media_type::DOCKER_MANIFEST),
    Some(acrpull::media_type::DOCKER_MANIFEST_LIST),
    Some("application/json"),
];

/// CVE-2021-41190: a document accepted under `declared` can be read one way only. Checked
/// against a model built on `serde_json::Value`, independently of the classifier.
fn check_one_meaning(data: &[u8], declared: Option<&str>, classified: Option<&Classified>) {
    let Some(classified) = classified else {
        return;
    };
    let Ok(serde_json::Value::Object(document)) = serde_json::from_slice(data) else {
        panic!("accepted a manifest that is not a JSON object");
    };
    let present = |key: &str| document.get(key).is_some_and(|v| !v.is_null());
    let index_shaped = present("manifests");
    let image_shaped = present("layers") || present("config");
    assert!(
        !(index_shaped && image_shaped),
        "accepted a document that is both an index and an image"
    );
    match classified.kind {
        ManifestKind::Index => assert!(!image_shaped, "an index with layers/config"),
        ManifestKind::Image => assert!(!index_shaped, "an image with manifests"),
    }
    let own = document
        .get("mediaType")
        .and_then(|m| m.as_str())
        .filter(|m| !m.is_empty());
    if let Some(own) = own {
        assert_eq!(
            classified.media_type, own,
            "the body's mediaType was overridden"
        );
    }
    if let Some(declared) = declared.filter(|d| *d != "application/json") {
        assert_eq!(
            classified.media_type, declared,
            "accepted a document whose type differs from the declared one"
        );
    }
}

fn check_descriptor(descriptor: &Descriptor) {
    let hex = descriptor.digest.hex();
    assert!(hex.bytes().all(|b| b.is_ascii_hexdigit()), "{hex}");
    let _ = descriptor.ref_name();
    if let Some(platform) = &descriptor.platform {
        let _ = platform.to_platform();
    }
}

/// JWTs read for `exp`: the input as a whole token, and as the JSON payload of one.
pub fn jwt_expiry(data: &[u8]) {
    use base64::Engine as _;
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = fuzzing::jwt_expiry(text);
    }
    let payload = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(data);
    let _ = fuzzing::jwt_expiry(&format!("eyJhbGciOiJub25lIn0.{payload}.sig"));
}

/// Token responses: IMDS, App Service and Entra ID (with their error bodies), and a registry's
/// token endpoint (Docker token protocol).
pub fn token_response(data: &[u8]) {
    if let Ok(token) = acrpull::registry::auth::token::parse_response(data) {
        assert!(!token.token.expose().is_empty());
        let _ = token.is_fresh();
    }
    let _ = fuzzing::azure_token_response(data, now());
    let (described, _description) = fuzzing::azure_error_body(data);
    // Messages are shortened, so a huge error body cannot flood the terminal.
    assert!(described.len() <= 1024, "{}", described.len());
}

/// `Content-Range` and `Retry-After` header values.
pub fn http_headers(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let _ = fuzzing::parse_content_range_start(text);
    let _ = fuzzing::parse_retry_after(text, now());
    let _ = fuzzing::parse_retry_after(text, UNIX_EPOCH);
}

/// Docker `config.json` / containers `auth.json`. Lookups for the fixed hosts and for every
/// host the file names (as written, normalised, upper-cased) never panic and never answer for
/// another registry; helpers come first (`credHelpers`) and last (`credsStore`); a stored
/// credential is what the entry says (`identitytoken`, else `auth` decoded here independently,
/// else `username`/`password`); nothing printed about a credential or a rejected file depends
/// on or repeats a secret.
pub fn docker_config(data: &[u8]) {
    use acrpull::credential::docker_config::{normalize_host, AuthFile};
    // The same bytes as plain JSON: the oracle (absent for the rare file that only the typed
    // parse accepts, e.g. an ignored number out of `f64` range).
    let value = serde_json::from_slice::<serde_json::Value>(data).ok();
    let file = match AuthFile::parse(data) {
        Ok(file) => file,
        Err(error) => {
            if let Some(value) = &value {
                let text = error_chain(&error);
                let mut secrets = Vec::new();
                if let Some(auths) = value.get("auths") {
                    string_values(auths, &mut secrets);
                }
                // Not secrets (as far as this check knows): strings that also appear outside
                // the values of `auths` (a `credHelpers` value, any key), or twice in the raw
                // bytes (a duplicate key's earlier value, dropped from `value`).
                let mut elsewhere = Vec::new();
                other_strings(value, &mut elsewhere);
                let repeated = |secret: &str| {
                    let needle = secret.as_bytes();
                    data.windows(needle.len()).filter(|w| *w == needle).count() > 1
                };
                for secret in secrets.iter().filter(|s| {
                    s.len() >= 8
                        && !elsewhere.iter().any(|other| other.contains(s.as_str()))
                        && !repeated(s)
                }) {
                    assert!(
                        !text.contains(&format!("{secret:?}")),
                        "a rejected file's error repeats the value {secret:?}: {text}"
                    );
                }
            }
            return;
        }
    };
    let mut hosts: Vec<String> = [
        "docker.io",
        "index.docker.io",
        "registry-1.docker.io",
        "127.0.0.1:5000",
        "localhost:5000",
        "myreg.azurecr.io",
        "",
    ]
    .map(String::from)
    .to_vec();
    if let Some(value) = &value {
        for section in ["auths", "credHelpers"] {
            for key in value
                .get(section)
                .and_then(|s| s.as_object())
                .into_iter()
                .flat_map(|map| map.keys())
                .take(16)
            {
                hosts.push(key.clone());
                hosts.push(normalize_host(key));
                hosts.push(key.to_ascii_uppercase());
            }
        }
    }
    for host in &hosts {
        let _ = acrpull::credential::docker_config::helper_server_url(host);
        match file.lookup(host) {
            Ok(found) => check_lookups(host, &found, value.as_ref()),
            Err(error) => {
                let text = error_chain(&error);
                assert!(text.contains("`auth` value"), "{text}");
            }
        }
    }
}

fn check_lookups(
    registry: &str,
    found: &[acrpull::credential::docker_config::Lookup],
    value: Option<&serde_json::Value>,
) {
    use acrpull::credential::docker_config::{normalize_host, Lookup};
    let host = normalize_host(registry);
    // Order: the credHelpers helper, the stored entry, the credsStore helper; one of each.
    let rank = |lookup: &Lookup| match lookup {
        Lookup::Helper {
            per_registry: true, ..
        } => 0,
        Lookup::Stored { .. } => 1,
        Lookup::Helper {
            per_registry: false,
            ..
        } => 2,
    };
    let ranks: Vec<u8> = found.iter().map(rank).collect();
    assert!(
        ranks.windows(2).all(|pair| pair[0] < pair[1]),
        "{registry}: {ranks:?}"
    );
    for lookup in found {
        match lookup {
            Lookup::Helper { name, per_registry } => {
                assert!(!name.is_empty());
                let Some(value) = value else { continue };
                if *per_registry {
                    let helpers = value["credHelpers"].as_object().expect("credHelpers");
                    assert!(
                        helpers.iter().any(|(key, helper)| {
                            helper == name.as_str()
                                && (key == registry || normalize_host(key) == host)
                        }),
                        "{registry}: helper {name} is not configured for it"
                    );
                } else {
                    assert_eq!(value["credsStore"], name.as_str());
                }
            }
            Lookup::Stored { key, credential } => {
                // Never the credential of another registry.
                assert!(
                    key == registry || normalize_host(key) == host,
                    "{registry} got the credential stored under {key:?}"
                );
                if let Some(entry) = value.map(|value| &value["auths"][key.as_str()]) {
                    check_stored(key, entry, credential);
                }
                // What is printed about it does not depend on the secret.
                let redacted = redacted(credential);
                assert_eq!(format!("{credential:?}"), format!("{redacted:?}"));
                assert_eq!(credential.kind(), redacted.kind());
                let redacted = Lookup::Stored {
                    key: key.clone(),
                    credential: redacted,
                };
                assert_eq!(format!("{lookup:?}"), format!("{redacted:?}"));
            }
        }
    }
}

/// A stored credential against the file's entry, decoded here independently.
fn check_stored(
    key: &str,
    entry: &serde_json::Value,
    credential: &acrpull::credential::Credential,
) {
    use acrpull::credential::Credential;
    use base64::Engine as _;
    let field = |name: &str| entry[name].as_str().filter(|s| !s.is_empty());
    let (username, password) = if let Some(token) = field("identitytoken") {
        ("<token>".to_string(), token.to_string())
    } else if let Some(auth) = field("auth") {
        let lenient = base64::engine::GeneralPurpose::new(
            &base64::alphabet::STANDARD,
            base64::engine::GeneralPurposeConfig::new()
                .with_decode_padding_mode(base64::engine::DecodePaddingMode::Indifferent),
        );
        // Only when this decoder agrees the value is base64 (docker's own is stricter still).
        let Ok(decoded) = lenient.decode(auth.trim()) else {
            return;
        };
        let text = String::from_utf8(decoded).expect("an accepted `auth` is UTF-8");
        let (username, password) = text.split_once(':').expect("an accepted `auth` has a ':'");
        (
            username.to_string(),
            password.trim_end_matches(['\n', '\r']).to_string(),
        )
    } else {
        let username = field("username").expect("stored without a secret");
        let password = entry["password"].as_str().expect("a password");
        (username.to_string(), password.to_string())
    };
    match credential {
        Credential::RefreshToken(token) => {
            assert_eq!(username, "<token>", "{key}");
            assert_eq!(token.expose(), password, "{key}");
        }
        Credential::Basic {
            username: user,
            password: secret,
        } => {
            assert_ne!(user, "<token>");
            assert!(!user.is_empty());
            assert_eq!(user, &username, "{key}");
            assert_eq!(secret.expose(), password, "{key}");
            if field("auth").is_some() && field("identitytoken").is_none() {
                // Split at the first ':', the way the registry will split it again.
                assert!(!user.contains(':'), "{key}: {user}");
            }
        }
        other => panic!("{key}: a file gave {}", other.kind()),
    }
}

/// The same credential with an empty secret.
fn redacted(credential: &acrpull::credential::Credential) -> acrpull::credential::Credential {
    use acrpull::credential::Credential;
    use acrpull::secret::Secret;
    match credential {
        Credential::Basic { username, .. } => Credential::Basic {
            username: username.clone(),
            password: Secret::new(""),
        },
        Credential::RefreshToken(_) => Credential::RefreshToken(Secret::new("")),
        other => panic!("a file gave {}", other.kind()),
    }
}

/// Every key inside `value`, and every string value outside `auths`.
fn other_strings(value: &serde_json::Value, out: &mut Vec<String>) {
    fn keys(value: &serde_json::Value, out: &mut Vec<String>) {
        match value {
            serde_json::Value::Array(items) => items.iter().for_each(|v| keys(v, out)),
            serde_json::Value::Object(map) => {
                out.extend(map.keys().cloned());
                map.values().for_each(|v| keys(v, out));
            }
            _ => {}
        }
    }
    keys(value, out);
    match value {
        serde_json::Value::Object(map) => map
            .iter()
            .filter(|(key, _)| *key != "auths")
            .for_each(|(_, v)| string_values(v, out)),
        other => string_values(other, out),
    }
}

/// Every string value (not key) inside `value`.
fn string_values(value: &serde_json::Value, out: &mut Vec<String>) {
    match value {
        serde_json::Value::String(s) => out.push(s.clone()),
        serde_json::Value::Array(items) => items.iter().for_each(|v| string_values(v, out)),
        serde_json::Value::Object(map) => map.values().for_each(|v| string_values(v, out)),
        _ => {}
    }
}

/// An error with its sources, as `anyhow` prints it with `{:#}`.
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// `registries.conf` (v2) and the endpoints it gives for the fixed references and ones built
/// from the file's own prefixes and locations, with and without `--mirror` extras. Checked
/// against a model read from the same TOML: the longest matching prefix (whole path
/// components; the last of equal ones) decides; a blocked one is an error; otherwise the
/// extras, the entry's mirrors in order and one origin, last. Every endpoint is a valid
/// registry and repository, and a rewritten one keeps the part of the reference after the
/// prefix.
pub fn registries_conf(data: &[u8]) {
    use acrpull::mirror::MirrorConfig;
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(config) = MirrorConfig::parse(text) else {
        return;
    };
    let table: toml::Table = toml::from_str(text).expect("a parsed registries.conf is TOML");
    let model = model_entries(&table);
    let entries = model.as_deref().unwrap_or_default();
    let mut references: Vec<String> = [
        "alpine:3",
        "docker.io/library/alpine@sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
        "localhost:5000/team/app:v1",
        "myreg.azurecr.io/a/b/c:1",
        "[::1]:5000/x:y",
    ]
    .map(String::from)
    .to_vec();
    let mut extras = vec![vec![], vec!["127.0.0.1:5001".to_string()]];
    for entry in entries.iter().take(8) {
        let prefix = entry.prefix.as_str();
        for suffix in ["", "/x", "/x/y:1", "x/y", "-x/y"] {
            references.push(format!("{prefix}{suffix}"));
        }
        for location in entry.mirrors.iter().map(|m| &m.location) {
            if extras.len() < 4 {
                extras.push(vec![location.clone()]);
            }
        }
    }
    for reference in references
        .iter()
        .filter_map(|r| r.parse::<Reference>().ok())
    {
        for extra in &extras {
            let result = config.endpoints(&reference, extra);
            match &model {
                Some(entries) => check_endpoints(&reference, extra, entries, result),
                None => {
                    // Without the model: one origin, last, and valid names.
                    if let Ok(endpoints) = result {
                        let (last, rest) = endpoints.split_last().expect("never empty");
                        assert!(last.origin && rest.iter().all(|e| !e.origin));
                        endpoints.iter().for_each(check_endpoint_name);
                    }
                }
            }
        }
    }
}

struct ModelEntry {
    /// `prefix`, else `location`, without trailing `/`.
    prefix: String,
    location: Option<String>,
    blocked: bool,
    insecure: bool,
    mirrors: Vec<ModelMirror>,
}

struct ModelMirror {
    location: String,
    insecure: bool,
    digest_only: bool,
}

/// The entries as the model reads them; `None` when one is written as an array rather than a
/// table (serde also fills a struct from a sequence, field by field), which the model leaves
/// to the generic checks.
fn model_entries(table: &toml::Table) -> Option<Vec<ModelEntry>> {
    let flag = |t: &toml::Table, name: &str| t.get(name).and_then(|v| v.as_bool()) == Some(true);
    let text = |t: &toml::Table, name: &str| t.get(name).and_then(|v| v.as_str()).map(String::from);
    let Some(registries) = table.get("registry").and_then(|r| r.as_array()) else {
        return Some(Vec::new());
    };
    let mut entries = Vec::new();
    for entry in registries {
        let entry = entry.as_table()?;
        let location = text(entry, "location");
        let mut mirrors = Vec::new();
        for mirror in entry
            .get("mirror")
            .and_then(|m| m.as_array())
            .into_iter()
            .flatten()
        {
            let mirror = mirror.as_table()?;
            mirrors.push(ModelMirror {
                location: text(mirror, "location").expect("a mirror has a location"),
                insecure: flag(mirror, "insecure"),
                digest_only: text(mirror, "pull-from-mirror").as_deref() == Some("digest-only"),
            });
        }
        // An entry with neither prefix nor location matches nothing.
        if let Some(prefix) = text(entry, "prefix").or_else(|| location.clone()) {
            entries.push(ModelEntry {
                prefix: prefix.trim_end_matches('/').to_string(),
                location,
                blocked: flag(entry, "blocked"),
                insecure: flag(entry, "insecure"),
                mirrors,
            });
        }
    }
    Some(entries)
}

fn check_endpoints(
    reference: &Reference,
    extra: &[String],
    entries: &[ModelEntry],
    result: Result<Vec<acrpull::mirror::Endpoint>, acrpull::mirror::ConfigError>,
) {
    use acrpull::mirror::ConfigError;
    let full = format!("{}/{}", reference.registry(), reference.repository());
    let matched = entries
        .iter()
        .filter(|entry| full == entry.prefix || full.starts_with(&format!("{}/", entry.prefix)))
        // The longest prefix; of equal ones the first, as containers/image's FindRegistry.
        .fold(None::<&ModelEntry>, |best, entry| match best {
            Some(best) if best.prefix.len() >= entry.prefix.len() => Some(best),
            _ => Some(entry),
        });
    let endpoints = match result {
        Err(ConfigError::Blocked(what)) => {
            assert!(
                matched.is_some_and(|entry| entry.blocked),
                "{full}: blocked, but its entry is not"
            );
            assert_eq!(what, full);
            return;
        }
        Err(ConfigError::BadLocation(location)) => {
            let known = extra.iter().chain(matched.into_iter().flat_map(|entry| {
                entry
                    .mirrors
                    .iter()
                    .map(|m| &m.location)
                    .chain(entry.location.as_ref())
            }));
            assert!(
                known.clone().any(|l| *l == location),
                "{full}: bad location {location:?} is not one of its own"
            );
            return;
        }
        Err(other) => panic!("{full}: {other}"),
        Ok(endpoints) => endpoints,
    };
    assert!(
        !matched.is_some_and(|entry| entry.blocked),
        "{full}: the blocked entry {:?} gave endpoints",
        matched.map(|e| &e.prefix)
    );
    let mirrors: &[ModelMirror] = matched.map_or(&[], |entry| &entry.mirrors);
    assert_eq!(
        endpoints.len(),
        extra.len() + mirrors.len() + 1,
        "{full}: {endpoints:?}"
    );
    let (last, rest) = endpoints.split_last().expect("never empty");
    assert!(
        last.origin && rest.iter().all(|e| !e.origin),
        "{endpoints:?}"
    );
    for endpoint in &endpoints {
        check_endpoint_name(endpoint);
    }
    for (endpoint, location) in rest.iter().zip(extra) {
        assert!(!endpoint.insecure && !endpoint.digest_only);
        check_rewrite(endpoint, location, &format!("/{}", reference.repository()));
    }
    let remainder = matched.map_or("", |entry| &full[entry.prefix.len()..]);
    for (endpoint, mirror) in rest[extra.len()..].iter().zip(mirrors) {
        assert_eq!(endpoint.insecure, mirror.insecure);
        assert_eq!(endpoint.digest_only, mirror.digest_only);
        check_rewrite(endpoint, &mirror.location, remainder);
    }
    assert!(!last.digest_only);
    match matched {
        None => {
            assert_eq!(last.host, reference.registry());
            assert_eq!(last.repository, reference.repository());
            assert!(!last.insecure);
        }
        Some(entry) => {
            assert_eq!(last.insecure, entry.insecure);
            match &entry.location {
                Some(location) => check_rewrite(last, location, remainder),
                None => {
                    assert_eq!(last.host, reference.registry());
                    assert_eq!(last.repository, reference.repository());
                }
            }
        }
    }
}

/// `host/repository` is the location (scheme and trailing `/` aside) followed by the part of
/// the reference after the prefix.
fn check_rewrite(endpoint: &acrpull::mirror::Endpoint, location: &str, remainder: &str) {
    let joined = format!("{}/{}", endpoint.host, endpoint.repository);
    let head = joined
        .strip_suffix(remainder)
        .unwrap_or_else(|| panic!("{joined} lost the remainder {remainder:?}"));
    assert!(
        location.contains(head),
        "{joined}: {head:?} is not from the location {location:?}"
    );
}

/// An endpoint names a valid registry and repository: parsing them back as a reference gives
/// the same two (a neutral registry checks the repository; a port added to a bare host name
/// makes the parser read it as a registry).
fn check_endpoint_name(endpoint: &acrpull::mirror::Endpoint) {
    let repository: Reference = format!("localhost/{}:t", endpoint.repository)
        .parse()
        .unwrap_or_else(|e| panic!("{endpoint:?}: repository: {e}"));
    assert_eq!(repository.repository(), endpoint.repository);
    let host = &endpoint.host;
    let bare = !(host.contains(['.', ':']) || host.starts_with('[') || host == "localhost");
    let registry = if bare {
        format!("{host}:1")
    } else {
        host.clone()
    };
    let parsed: Reference = format!("{registry}/x:t")
        .parse()
        .unwrap_or_else(|e| panic!("{endpoint:?}: host: {e}"));
    let aliases = ["docker.io", "index.docker.io", "registry-1.docker.io"];
    assert!(
        parsed.registry() == registry
            || (parsed.registry() == "docker.io" && aliases.contains(&host.as_str())),
        "{endpoint:?}: host parses as {}",
        parsed.registry()
    );
}

/// containers `policy.json`: never a panic; a parsed policy has non-empty requirement lists;
/// for fixed images (registries, layouts, archives) the scope chosen is the model's: the
/// first of identity, namespaces (most specific first) and `""` that the image's transport
/// names, else `default`; identity matchers of the chosen `sigstoreSigned` requirements
/// answer without panicking.
pub fn policy_json(data: &[u8]) {
    use acrpull::verify::policy::{ImageScopes, Policy, Requirement};
    let Ok(policy) = Policy::parse(data) else {
        return;
    };
    assert!(
        !policy.default.0.is_empty(),
        "an empty default was accepted"
    );
    let images = [
        "registry.example.com/team/app:v1",
        "localhost:5000/a/b@sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
        "alpine",
        "oci:/srv/layouts/app:v1",
        "oci-archive:/srv/app.tar",
    ];
    for image in images {
        let spec: acrpull::SourceSpec = image.parse().expect("a fixed image parses");
        let scopes = ImageScopes::of(&spec);
        let (entry, requirements) = policy.requirements_for(&scopes);
        assert!(!requirements.0.is_empty(), "{entry}: an empty list");
        let empty = String::new();
        let model = policy
            .transports
            .0
            .get(&scopes.transport)
            .and_then(|named| {
                std::iter::once(&scopes.identity)
                    .chain(scopes.namespaces.iter())
                    .chain(std::iter::once(&empty))
                    .find(|candidate| named.0.contains_key(*candidate))
            });
        match model {
            Some(scope) => assert_eq!(
                entry,
                format!("transports.{}.\"{scope}\"", scopes.transport)
            ),
            None => assert_eq!(entry, "default"),
        }
        for requirement in &requirements.0 {
            if let Requirement::SigstoreSigned(sigstore) = requirement {
                if let Some(identity) = &sigstore.signed_identity {
                    for claimed in ["registry.example.com/team/app", "x:1", "", "UPPER/case"] {
                        let _ = identity.matches(scopes.reference.as_ref(), claimed);
                    }
                }
            }
        }
    }
}

/// A Notary Project envelope of `media_type`: parsing never panics; a parsed envelope has a
/// leaf certificate, a signing time and signed bytes that contain its payload (JWS: as
/// base64url), and checking its signature and reading its payload never panic either.
fn notation_envelope(media_type: &str, data: &[u8]) {
    use acrpull::verify::notation::envelope;
    let Ok(parsed) = envelope::parse(media_type, data) else {
        return;
    };
    assert!(!parsed.certificates.is_empty());
    assert!(parsed.certificates.len() <= acrpull::verify::x509::MAX_CHAIN_LENGTH);
    if media_type == envelope::COSE_MEDIA_TYPE {
        assert!(parsed
            .signed_bytes
            .windows(parsed.payload.len().max(1))
            .any(|w| parsed.payload.is_empty() || w == parsed.payload.as_slice()));
    }
    if let Some(expiry) = parsed.expiry {
        assert!(expiry > parsed.signing_time);
    }
    let _ = parsed.verify();
    let _ = parsed.payload();
    let _ = acrpull::verify::x509::validate_ordered_chain(
        &parsed.certificates,
        &acrpull::verify::x509::ChainOptions {
            purpose: acrpull::verify::x509::Purpose::NotaryCodeSigning,
            at: Some(parsed.signing_time),
        },
    );
}

/// A JWS envelope (`application/jose+json`): see [`notation_envelope`].
pub fn notation_jws(data: &[u8]) {
    notation_envelope(acrpull::verify::notation::envelope::JWS_MEDIA_TYPE, data);
}

/// A COSE_Sign1 envelope (`application/cose`): see [`notation_envelope`].
pub fn notation_cose(data: &[u8]) {
    notation_envelope(acrpull::verify::notation::envelope::COSE_MEDIA_TYPE, data);
}

/// A Notation trust policy: parsing never panics; a valid document has unique statement
/// names and scopes, every scope selects its own statement, and a repository no scope names
/// selects the global statement when there is one.
pub fn notation_trust_policy(data: &[u8]) {
    use acrpull::verify::notation::policy::TrustPolicy;
    let Ok(policy) = TrustPolicy::parse(data) else {
        return;
    };
    let mut names = std::collections::HashSet::new();
    for statement in &policy.statements {
        assert!(names.insert(statement.name.clone()), "duplicate name");
        assert!(!statement.registry_scopes.is_empty());
        for scope in &statement.registry_scopes {
            if scope != "*" {
                let chosen = policy.statement_for(scope).expect("a named scope applies");
                assert_eq!(chosen.name, statement.name);
            }
        }
        if statement.level.is_skip() {
            assert!(statement.trust_stores.is_empty());
        }
    }
    let global = policy
        .statements
        .iter()
        .find(|s| s.registry_scopes.iter().any(|x| x == "*"));
    let unnamed = policy.statement_for("unnamed.invalid/nobody/at-all");
    match global {
        Some(g) => assert_eq!(unnamed.expect("global applies").name, g.name),
        None => assert!(unnamed.is_err()),
    }
}

/// X.509 certificates (PEM or DER): parsing never panics, and neither do reading a parsed
/// certificate's parts, checking its self-signature and validating it as a chain.
pub fn x509_certificate(data: &[u8]) {
    use acrpull::verify::x509::{self, Certificate};
    let Ok(certificates) = Certificate::parse_many(data) else {
        return;
    };
    for cert in &certificates {
        let _ = (cert.subject(), cert.issuer(), cert.sha256_fingerprint());
        let _ = cert.public_key();
        let _ = cert.check_issued_by(cert);
        for purpose in [
            x509::Purpose::NotaryCodeSigning,
            x509::Purpose::Timestamping,
            x509::Purpose::SigstoreCodeSigning,
        ] {
            let options = x509::ChainOptions { purpose, at: None };
            let _ = x509::validate_ordered_chain(std::slice::from_ref(cert), &options);
            let _ = x509::build_chain(cert, &certificates, &certificates, &options);
        }
    }
}

/// Sigstore keyless material: a bundle (v0.2, v0.3), a trusted root, a `.sig` layer's Rekor
/// annotation, a tlog entry, a checkpoint, an SCT list. Parsing and the keyless checks never
/// panic, and a bundle accepted for the staging artifact names the signer asked for.
pub fn sigstore_bundle(data: &[u8]) {
    use acrpull::verify::cosign::keyless::{Identity, Keyless, Matcher};
    use acrpull::verify::cosign::{bundle::Bundle, merkle, rekor, sct, trusted_root::TrustedRoot};
    const ROOT: &[u8] = include_bytes!("../../fixtures/sigstore/staging_trusted_root.json");
    const ARTIFACT: &[u8] = include_bytes!("../../fixtures/sigstore/bundle_v3.txt");
    const EMAIL: &str = "william@yossarian.net";
    let root = TrustedRoot::parse(ROOT, "staging").expect("the staging root parses");
    let _ = TrustedRoot::parse(data, "fuzz");
    let _ = sct::parse_list(data);
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = rekor::Entry::from_annotation(text);
        let log = &root.tlogs[0];
        if let Ok(key) = &log.key {
            let _ = merkle::verify_checkpoint(text, key, &log.log_id);
        }
    }
    if let Ok(value) = serde_json::from_slice::<serde_json::Value>(data) {
        let _ = rekor::Entry::from_bundle(&value);
    }
    let Ok(bundle) = Bundle::parse(data) else {
        return;
    };
    let keyless = Keyless {
        root,
        identity: Identity {
            subject: Matcher::Exact(EMAIL.into()),
            issuer: Matcher::Exact("https://github.com/login/oauth".into()),
        },
    };
    let digest = acrpull::Digest::sha256_of(ARTIFACT);
    if let Ok(accepted) = bundle.check_keyless(&digest, ARTIFACT, &keyless) {
        let identity = accepted
            .identity
            .expect("a keyless acceptance names its signer");
        assert_eq!(identity.subject, EMAIL);
    }
}
