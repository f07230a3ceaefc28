//! Errors from talking to a registry (or reading a local layout as a source).

use crate::digest::Digest;

/// What kind of object a source did not have.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Missing {
    /// A repository (its tag list, or where an upload was to start).
    Repository,
    /// A tag of an OCI layout or archive index.
    Tag,
    /// A manifest, by tag or digest.
    Manifest,
    /// A blob (layer or config).
    Blob,
    /// The referrers API of a registry that has none (the caller falls back to tags).
    Referrers,
    /// The catalog of a registry that does not offer one.
    Catalog,
    /// An upload session that the registry no longer knows.
    Upload,
    /// One of the files that make a directory an OCI layout (`oci-layout`, `index.json`).
    LayoutFile,
    /// The archive file itself.
    ArchiveFile,
    /// An image an archive does not hold (a name or an `@N` number).
    ArchiveImage,
}

/// A registry error. Each variant says which URL or object it is about; transport causes are
/// kept as `#[source]`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The repository, tag or blob does not exist.
    #[error("{what} not found at {url}")]
    NotFound {
        /// The kind of object that is missing: what the binary's hint is chosen by.
        kind: Missing,
        /// What was looked for, e.g. "manifest `v1` of repository `app`" (for the message).
        what: String,
        /// The URL asked (without credentials).
        url: String,
    },
    /// The registry refused our credentials or wants some we do not have.
    #[error("{url} refused access ({status}){}", detail.as_ref().map(|d| format!(": {d}")).unwrap_or_default())]
    Unauthorized {
        /// The URL asked.
        url: String,
        /// HTTP status (401 or 403).
        status: u16,
        /// The registry's error message or challenge error, if any.
        detail: Option<String>,
    },
    /// Obtaining a token failed.
    #[error("getting a token from {realm} failed")]
    Token {
        /// The token endpoint.
        realm: String,
        /// Why.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The registry answered with an unexpected status.
    #[error("{method} {url} answered {status}{}", body.as_ref().map(|b| format!(": {b}")).unwrap_or_default())]
    Status {
        /// Request method.
        method: String,
        /// The URL asked.
        url: String,
        /// HTTP status.
        status: u16,
        /// A short excerpt of the registry's error body.
        body: Option<String>,
    },
    /// The network failed (after retries).
    #[error("request to {url} failed after {attempts} attempt(s)")]
    Transport {
        /// The URL asked.
        url: String,
        /// How many attempts were made.
        attempts: u32,
        /// The last transport error.
        #[source]
        source: reqwest::Error,
    },
    /// A response body broke off, or arrived slower than the pace allows, while being read.
    #[error("reading the response from {url} failed")]
    Body {
        /// The URL asked.
        url: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A TLS problem talking to the registry.
    /// (The remedy, `--ca-file` or `--insecure`, is the binary's hint, not part of the message.)
    #[error("TLS connection to {url} failed")]
    Tls {
        /// The URL asked.
        url: String,
        /// The transport error.
        #[source]
        source: reqwest::Error,
    },
    /// Content did not match its digest or size.
    #[error("{what} {digest} failed verification: expected {expected}, got {actual}")]
    Integrity {
        /// e.g. "blob" or "manifest".
        what: String,
        /// The digest that was expected.
        digest: Digest,
        /// Expected value (digest or size).
        expected: String,
        /// Actual value.
        actual: String,
    },
    /// A manifest larger than the cap.
    #[error("manifest at {url} is larger than the {limit}-byte limit")]
    ManifestTooLarge {
        /// The URL asked.
        url: String,
        /// The cap.
        limit: u64,
    },
    /// A document we cannot use (unknown media type, bad JSON, schema 1...).
    #[error("unsupported or invalid content at {url}: {reason}")]
    Unsupported {
        /// Where it came from.
        url: String,
        /// What is wrong.
        reason: String,
    },
    /// The server broke the protocol (e.g. answered `206` to a request without `Range`).
    #[error("{url} broke the protocol: {reason}")]
    Protocol {
        /// The URL asked.
        url: String,
        /// What it did.
        reason: String,
    },
    /// A Docker v2 schema 1 manifest (deprecated in 2019), which acrpull does not read.
    #[error("{url} is a Docker schema 1 manifest: schema 1 is not supported")]
    Schema1 {
        /// Where it came from.
        url: String,
    },
    /// A manifest that could be read as two different things (CVE-2021-41190): refused like
    /// a digest mismatch.
    #[error("manifest at {url} is ambiguous: {reason}")]
    AmbiguousManifest {
        /// Where it came from.
        url: String,
        /// What makes it ambiguous.
        reason: String,
    },
    /// Too many redirects or a redirect to a bad URL.
    #[error("bad redirect from {url}: {reason}")]
    Redirect {
        /// The URL that redirected.
        url: String,
        /// What is wrong.
        reason: String,
    },
    /// A blob body ended or broke before its full length, and retries ran out.
    #[error("download of {digest} from {source_name} stopped at {received} of {expected} bytes after {attempts} attempt(s)")]
    Interrupted {
        /// The blob.
        digest: Digest,
        /// Where it came from.
        source_name: String,
        /// Bytes received in the last attempt's total.
        received: u64,
        /// The blob's size.
        expected: u64,
        /// Attempts made.
        attempts: u32,
        /// The last read error, if the stream failed rather than ended early.
        #[source]
        source: Option<std::io::Error>,
    },
    /// Reading a local layout source failed.
    #[error("reading {path} failed")]
    Io {
        /// The file.
        path: std::path::PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// An Azure identity or ACR exchange failure.
    #[error("Azure authentication for {registry} failed")]
    Azure {
        /// The registry.
        registry: String,
        /// Why.
        #[source]
        source: crate::azure::Error,
    },
}

impl Error {
    /// Whether trying the whole operation again may help (network trouble, server errors).
    pub fn is_retryable(&self) -> bool {
        match self {
            Error::Transport { .. } | Error::Body { .. } | Error::Interrupted { .. } => true,
            Error::Status { status, .. } => *status >= 500 || *status == 429,
            _ => false,
        }
    }

    /// Whether this is an integrity failure (wrong digest, size, unsafe content).
    pub fn is_integrity(&self) -> bool {
        matches!(
            self,
            Error::Integrity { .. } | Error::ManifestTooLarge { .. }
        )
    }
}

/// Result alias for this module.
pub type Result<T, E = Error> = std::result::Result<T, E>;
