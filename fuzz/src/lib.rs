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
use acrpull::manifest::{Descriptor, ImageConfigSummary, ImageIndex, ImageManifest};
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

/// `WWW-Authenticate` values, through both challenge parsers (the registry client's and the
/// one `acrpull token` uses).
pub fn www_authenticate(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Some(challenge) = acrpull::auth::challenge::parse(text) {
        for value in [&challenge.realm, &challenge.service, &challenge.scope]
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
    let _ = FetchedManifest::verify(
        bytes,
        Some(acrpull::media_type::OCI_MANIFEST.to_string()),
        None,
        None,
        "fuzz",
    );
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
    if let Ok(token) = acrpull::auth::token::parse_response(data) {
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
