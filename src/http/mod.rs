//! The one HTTP stack under every client that talks to the network: the registry client, the
//! token endpoints, the Azure identity endpoints and the ACR exchange.
//!
//! It exists so that the rules a hostile server is held to are written once: how a client is
//! built ([`client`]), when and how long to wait before retrying ([`retry`]), how much of a body
//! may be read into memory ([`body`]), how a `WWW-Authenticate` header is read ([`challenge`]),
//! how a transport failure is classified, by the types in its cause chain and never by its text
//! ([`classify`]), and how a URL is printed, never with its query string, where signed storage
//! URLs keep their signatures ([`safe_url`]).
//!
//! This module sits below `auth`, `azure`, `credential` and `registry` and imports none of them.

pub mod body;
pub mod certs_dir;
pub mod challenge;
pub mod classify;
pub mod client;
pub mod pace;
pub mod retry;
pub mod safe_url;

pub use body::{excerpt, read_capped, read_excerpt, BodyError};
pub use certs_dir::{CertDirs, CertsDirError, TlsFiles};
pub use classify::Failure;
pub use client::{build_client, ClientCertificate, ClientError, HttpOptions, Proxy, SharedClients};
pub use pace::Pace;
pub use retry::{RetryPolicy, SendError, Sent, Verdict};
pub use safe_url::{redact_url, SafeUrl};

/// An `Authorization` (or other secret-bearing) header value, marked sensitive so that HTTP/2
/// never puts it into its compression tables and `Debug` never prints it. `None` when the value
/// cannot be a header value at all (a control character such as CR or LF, or non-visible bytes):
/// such a value is refused, never sent.
pub fn sensitive_header(value: &str) -> Option<reqwest::header::HeaderValue> {
    let mut header = reqwest::header::HeaderValue::from_str(value).ok()?;
    header.set_sensitive(true);
    Some(header)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sensitive_headers_refuse_line_breaks_and_hide_themselves() {
        assert!(sensitive_header("Bearer abc\r\nX-Injected: 1").is_none());
        assert!(sensitive_header("Bearer abc\n").is_none());
        assert!(sensitive_header("Bearer \0").is_none());
        let header = sensitive_header("Bearer abc").unwrap();
        assert!(header.is_sensitive());
        assert!(!format!("{header:?}").contains("abc"));
    }
}
