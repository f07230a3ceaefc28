//! acrpull: pull container images without Docker.
//!
//! The library resolves an image reference (a registry or a local OCI layout), downloads and
//! verifies its blobs while they stream, and writes an OCI image layout or a root filesystem.
//! Credentials come from the command line, Docker/containers config files or Azure identities
//! (managed identity, workload identity, service principal) exchanged for ACR tokens.
//!
//! The entry point is [`pull::pull`].

#![warn(missing_docs)]

pub mod archive;
pub mod archive_source;
pub mod azure;
pub mod blocking;
pub mod cache;
pub mod cancel;
pub mod convert;
pub mod credential;
pub mod credential_helper;
pub mod destination;
pub mod digest;
pub mod download;
pub mod error;
pub mod fetch;
pub mod fsutil;
mod gzip;
pub mod http;
pub mod kubelet;
pub mod layout;
pub mod manifest;
pub mod media_type;
pub mod mirror;
pub mod output;
pub mod platform;
pub mod pull;
pub mod push;
pub mod query;
pub mod reference;
pub mod referrer;
pub mod referrers;
pub mod registry;
pub mod report;
pub mod resolve;
pub mod rootfs;
pub mod secret;
pub mod source;
pub mod source_spec;
pub mod tar_index;
pub mod verify;

#[cfg(test)]
mod hygiene_tests;

pub use digest::Digest;
pub use error::{Error, ErrorClass, Internal};
pub use platform::Platform;
pub use pull::{pull, OutputFormat, PullOptions, PullOutcome};
pub use reference::Reference;
pub use report::{NoopReporter, Reporter};
pub use resolve::{PlatformChoice, SourceSpec};

/// Entry points for the fuzz targets in `fuzz/` and the tests that replay their regression
/// corpus (`tests/it/fuzz_regressions.rs`, `tests/it/properties.rs`). These parsers are private
/// because nothing else should call them; this block makes them reachable from outside the
/// crate without widening the API. Not stable, not part of the documented API.
#[doc(hidden)]
pub mod fuzzing {
    use std::collections::BTreeMap;
    use std::time::SystemTime;

    pub use crate::registry::parse_content_range_start;
    pub use crate::registry::retry::parse_retry_after;
    pub use crate::secret::jwt_expiry;

    /// The parameters of the first `Bearer` challenge, as `acrpull token` reads them.
    pub fn azure_bearer_challenge(header: &str) -> Option<BTreeMap<String, String>> {
        crate::http::challenge::parse_all(header)
            .into_iter()
            .find(|challenge| challenge.scheme == crate::http::challenge::Scheme::Bearer)
            .map(|challenge| challenge.parameters)
    }

    /// The expiry of an IMDS / App Service / Entra ID token response received at `now`.
    pub fn azure_token_response(body: &[u8], now: SystemTime) -> Result<SystemTime, String> {
        crate::azure::response::parse_token_response("fuzz", body, now)
            .map(|token| token.expires_at)
            .map_err(|error| error.to_string())
    }

    /// How an Azure error body is described in messages, and its `error_description`.
    pub fn azure_error_body(body: &[u8]) -> (String, Option<String>) {
        (
            crate::azure::response::describe_error_body(body),
            crate::azure::response::error_description(body),
        )
    }

    /// A layer entry name normalised inside the root (`rootfs/whiteout.rs`).
    pub fn normalize_entry_name(name: &[u8]) -> Result<Vec<u8>, &'static str> {
        crate::rootfs::whiteout::normalize(name)
    }
}
