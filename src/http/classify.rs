//! What kind of transport failure an error is, read from the types in its cause chain.
//!
//! Never from its text: a host or repository named `nginx-tls` must not turn a refused
//! connection into a "TLS failure" that skips retries. TLS failures are the errors whose chain
//! holds a `rustls::Error` (tokio-rustls wraps it in an `io::Error`, which hides it from
//! `source()`, so the inner error of each `io::Error` is looked at too).

use std::error::Error as StdError;

/// The kind of a transport failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// The peer speaks TLS but a certificate was not accepted: its own (unknown issuer, wrong
    /// name, expired), or ours (a registry that requires a client certificate and got none or
    /// one it does not trust): retrying or falling back to plain HTTP would only hide the
    /// problem.
    Certificate,
    /// Another TLS failure (handshake, protocol, a plain-HTTP server on a TLS port).
    Tls,
    /// Connecting failed (refused, unreachable, name not resolved, connect timeout).
    Connect,
    /// A timeout after connecting.
    Timeout,
    /// The connection broke while the request or the response body was on the wire.
    Broken,
    /// The request could not be built (an invalid header value, a bad URL): it was never sent.
    Request,
    /// The request body failed its own verification while being sent (an `InvalidData` I/O
    /// error, as a streamed blob that does not match its digest): sending it again cannot help.
    InvalidBody,
    /// Anything else (decoding, redirect policy).
    Other,
}

impl Failure {
    /// Whether sending again may help.
    pub fn is_transient(self) -> bool {
        matches!(self, Failure::Connect | Failure::Timeout | Failure::Broken)
    }

    /// Whether this is a TLS failure of either kind.
    pub fn is_tls(self) -> bool {
        matches!(self, Failure::Certificate | Failure::Tls)
    }
}

/// Classify a reqwest error by its type and the types of its causes.
pub fn classify(error: &reqwest::Error) -> Failure {
    if let Some(tls) = tls_error(error) {
        return match tls {
            rustls::Error::InvalidCertificate(_)
            | rustls::Error::NoCertificatesPresented
            | rustls::Error::InvalidCertRevocationList(_) => Failure::Certificate,
            rustls::Error::AlertReceived(
                rustls::AlertDescription::CertificateRequired
                | rustls::AlertDescription::BadCertificate
                | rustls::AlertDescription::UnknownCA
                | rustls::AlertDescription::CertificateUnknown
                | rustls::AlertDescription::CertificateExpired
                | rustls::AlertDescription::CertificateRevoked
                | rustls::AlertDescription::UnsupportedCertificate,
            ) => Failure::Certificate,
            _ => Failure::Tls,
        };
    }
    if error.is_builder() {
        return Failure::Request;
    }
    if io_kind(error) == Some(std::io::ErrorKind::InvalidData) {
        return Failure::InvalidBody;
    }
    if error.is_connect() {
        return Failure::Connect;
    }
    if error.is_timeout() || io_kind(error) == Some(std::io::ErrorKind::TimedOut) {
        return Failure::Timeout;
    }
    if error.is_request() || error.is_body() || io_kind(error).is_some_and(is_broken_kind) {
        return Failure::Broken;
    }
    Failure::Other
}

/// Classify any error: a reqwest error in its chain decides; an `io::Error` (a body stream
/// turned into `io::Error`) by its kind.
pub fn classify_any(error: &(dyn StdError + 'static)) -> Failure {
    let mut current = Some(error);
    while let Some(e) = current {
        if let Some(reqwest) = e.downcast_ref::<reqwest::Error>() {
            return classify(reqwest);
        }
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            if let Some(inner) = io.get_ref() {
                if let Some(reqwest) = inner.downcast_ref::<reqwest::Error>() {
                    return classify(reqwest);
                }
            }
            if io.kind() == std::io::ErrorKind::TimedOut {
                return Failure::Timeout;
            }
            if is_broken_kind(io.kind()) {
                return Failure::Broken;
            }
        }
        current = e.source();
    }
    Failure::Other
}

fn is_broken_kind(kind: std::io::ErrorKind) -> bool {
    use std::io::ErrorKind::*;
    matches!(
        kind,
        ConnectionReset | ConnectionAborted | BrokenPipe | UnexpectedEof | NotConnected
    )
}

/// Every error in the chain, including the errors wrapped inside each `io::Error`.
fn chain<'a>(error: &'a (dyn StdError + 'static)) -> Vec<&'a (dyn StdError + 'static)> {
    let mut all = Vec::new();
    let mut current = Some(error);
    while let Some(e) = current {
        all.push(e);
        if let Some(inner) = e
            .downcast_ref::<std::io::Error>()
            .and_then(std::io::Error::get_ref)
        {
            all.extend(chain(inner));
        }
        current = e.source();
    }
    all
}

/// Whether a TLS handshake failed because the server answered in plain HTTP: its first bytes
/// (`HTTP/1.x 400 ...`) are not a TLS record, so rustls finds an invalid content type. Such a
/// server speaks plain HTTP on that port, whatever else is wrong.
pub fn answered_in_plain_http(error: &reqwest::Error) -> bool {
    matches!(
        tls_error(error),
        Some(rustls::Error::InvalidMessage(
            rustls::InvalidMessage::InvalidContentType
        ))
    )
}

fn tls_error(error: &reqwest::Error) -> Option<&rustls::Error> {
    chain(error)
        .into_iter()
        .find_map(|e| e.downcast_ref::<rustls::Error>())
}

pub(crate) fn io_kind(error: &reqwest::Error) -> Option<std::io::ErrorKind> {
    chain(error)
        .into_iter()
        .find_map(|e| e.downcast_ref::<std::io::Error>().map(std::io::Error::kind))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn io_errors_by_kind_not_text() {
        let tls_named = std::io::Error::new(
            std::io::ErrorKind::ConnectionReset,
            "connection to nginx-tls.example (certificate handshake) reset",
        );
        assert_eq!(classify_any(&tls_named), Failure::Broken);
        let timed_out = std::io::Error::new(std::io::ErrorKind::TimedOut, "tls");
        assert_eq!(classify_any(&timed_out), Failure::Timeout);
        let other = std::io::Error::other("TLS certificate");
        assert_eq!(classify_any(&other), Failure::Other);
        assert!(!classify_any(&other).is_tls());
    }

    #[test]
    fn a_rustls_error_inside_an_io_error_is_found() {
        let wrapped = std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer),
        );
        let found: Vec<_> = chain(&wrapped)
            .into_iter()
            .filter_map(|e| e.downcast_ref::<rustls::Error>())
            .collect();
        assert_eq!(found.len(), 1);
    }
}
