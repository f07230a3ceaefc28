//! Managed identity on Service Fabric (`IDENTITY_ENDPOINT` + `IDENTITY_HEADER` +
//! `IDENTITY_SERVER_THUMBPRINT`).
//!
//! The cluster runs a local token endpoint over HTTPS with a self-signed certificate and hands
//! the service its URL, a secret, and the certificate's thumbprint (spec 2.5). The request is
//! `GET ?api-version=2019-07-01-preview&resource=..` with the secret in a `secret` header. TLS
//! is pinned: the connection is accepted only when the SHA-1 of the server certificate's DER
//! equals the thumbprint (what the .NET SDK compares, `X509Certificate.GetCertHashString`), and
//! the handshake signature is still verified against that certificate. No CA, no host name:
//! the certificate is self-signed and the endpoint is usually an IP address. The identity is
//! the one the cluster configuration assigns, so user-assigned selectors are refused.

use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use url::Url;

use super::endpoint::{self, ManagedEndpoint};
use super::env::{Env, IDENTITY_ENDPOINT, IDENTITY_HEADER, IDENTITY_SERVER_THUMBPRINT};
use super::retry::{RetryPolicy, RetryStatuses};
use super::{AadToken, AadTokenSource, Error, UserAssignedId};
use crate::secret::Secret;

const API_VERSION: &str = "2019-07-01-preview";

/// A managed identity token from the Service Fabric endpoint.
#[derive(Debug)]
pub struct ServiceFabricSource {
    endpoint: ManagedEndpoint,
    header: Secret,
}

impl ServiceFabricSource {
    /// The endpoint, secret and thumbprint from the environment. A user-assigned `selector`
    /// (or `AZURE_CLIENT_ID`) is an error.
    pub fn new(env: &Env, selector: Option<UserAssignedId>, audience: &str) -> Result<Self, Error> {
        Self::with_policy(env, selector, audience, RetryPolicy::default())
    }

    /// As [`ServiceFabricSource::new`] with an explicit retry policy.
    pub fn with_policy(
        env: &Env,
        selector: Option<UserAssignedId>,
        audience: &str,
        policy: RetryPolicy,
    ) -> Result<Self, Error> {
        endpoint::refuse_selector("Service Fabric", selector, env)?;
        let require = |name| {
            env.require(
                name,
                "Service Fabric managed identity",
                &[
                    IDENTITY_ENDPOINT,
                    IDENTITY_HEADER,
                    IDENTITY_SERVER_THUMBPRINT,
                ],
            )
        };
        let raw = require(IDENTITY_ENDPOINT)?;
        let header = Secret::new(require(IDENTITY_HEADER)?);
        let thumbprint = require(IDENTITY_SERVER_THUMBPRINT)?;
        let url = endpoint::parse(raw, IDENTITY_ENDPOINT)?;
        if url.scheme() != "https" {
            return Err(Error::Configuration {
                detail: format!(
                    "{IDENTITY_ENDPOINT} must be an https URL on Service Fabric (its certificate \
                     is pinned to {IDENTITY_SERVER_THUMBPRINT}): {}",
                    crate::http::redact_url(&url)
                ),
            });
        }
        let thumbprint = parse_thumbprint(thumbprint)?;
        let http = pinned_client(thumbprint, &policy, &url)?;
        let endpoint =
            ManagedEndpoint::with_client(url, http, audience, policy, RetryStatuses::Service);
        Ok(Self { endpoint, header })
    }

    fn request_url(&self) -> Url {
        self.endpoint.request_url(API_VERSION, None)
    }

    async fn fetch(&self) -> Result<AadToken, Error> {
        let url = self.request_url();
        let header = self.header.expose();
        self.endpoint
            .request(
                |http| {
                    http.get(url.clone())
                        .header("secret", header)
                        .header(reqwest::header::ACCEPT, "application/json")
                },
                None,
            )
            .await
    }
}

#[async_trait::async_trait]
impl AadTokenSource for ServiceFabricSource {
    fn describe(&self) -> String {
        format!(
            "managed identity (Service Fabric endpoint {})",
            self.endpoint.shown()
        )
    }

    async fn aad_token(&self) -> Result<AadToken, Error> {
        self.endpoint.cached(|| self.fetch()).await
    }
}

/// A SHA-1 thumbprint: 40 hex digits, any case; `:` and spaces between them are ignored.
fn parse_thumbprint(text: &str) -> Result<[u8; 20], Error> {
    let digits: String = text
        .chars()
        .filter(|character| !matches!(character, ':' | ' '))
        .collect();
    let mut thumbprint = [0u8; 20];
    hex::decode_to_slice(&digits, &mut thumbprint).map_err(|_| Error::Configuration {
        detail: format!(
            "{IDENTITY_SERVER_THUMBPRINT} is not a SHA-1 certificate thumbprint (40 hex digits)"
        ),
    })?;
    Ok(thumbprint)
}

/// The SHA-1 thumbprint of a DER certificate.
pub fn certificate_thumbprint(der: &[u8]) -> [u8; 20] {
    let digest = ring::digest::digest(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY, der);
    let mut thumbprint = [0u8; 20];
    thumbprint.copy_from_slice(digest.as_ref());
    thumbprint
}

/// A direct (no proxy), redirect-free client whose TLS accepts only the pinned certificate.
fn pinned_client(
    thumbprint: [u8; 20],
    policy: &RetryPolicy,
    endpoint: &Url,
) -> Result<reqwest::Client, Error> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let failed = |detail: String| Error::Configuration {
        detail: format!(
            "no HTTP client for {}: {detail}",
            crate::http::redact_url(endpoint)
        ),
    };
    let config = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|error| failed(error.to_string()))?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(PinnedCertificate {
            thumbprint,
            provider,
        }))
        .with_no_client_auth();
    reqwest::Client::builder()
        .use_preconfigured_tls(config)
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .user_agent(concat!("acrpull/", env!("CARGO_PKG_VERSION")))
        .connect_timeout(policy.connect_timeout)
        .build()
        .map_err(|error| failed(error.to_string()))
}

/// The server presented another certificate than the pinned one.
#[derive(Debug, thiserror::Error)]
#[error(
    "the identity endpoint's certificate has thumbprint {actual}, not the {expected} \
     IDENTITY_SERVER_THUMBPRINT pins"
)]
struct ThumbprintMismatch {
    expected: String,
    actual: String,
}

/// Accepts exactly one server certificate, by thumbprint.
#[derive(Debug)]
struct PinnedCertificate {
    thumbprint: [u8; 20],
    provider: Arc<rustls::crypto::CryptoProvider>,
}

impl ServerCertVerifier for PinnedCertificate {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        if certificate_thumbprint(end_entity.as_ref()) == self.thumbprint {
            Ok(ServerCertVerified::assertion())
        } else {
            Err(rustls::Error::InvalidCertificate(
                rustls::CertificateError::Other(rustls::OtherError(Arc::new(ThumbprintMismatch {
                    expected: hex::encode_upper(self.thumbprint),
                    actual: hex::encode_upper(certificate_thumbprint(end_entity.as_ref())),
                }))),
            ))
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        certificate: &CertificateDer<'_>,
        signature: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            certificate,
            signature,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        certificate: &CertificateDer<'_>,
        signature: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            certificate,
            signature,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thumbprints() {
        let expected: [u8; 20] = core::array::from_fn(|index| (index as u8).wrapping_mul(17));
        let text = hex::encode(expected);
        assert_eq!(parse_thumbprint(&text).unwrap(), expected);
        assert_eq!(parse_thumbprint(&text.to_uppercase()).unwrap(), expected);
        let spaced: Vec<String> = expected.iter().map(|byte| format!("{byte:02X}")).collect();
        assert_eq!(parse_thumbprint(&spaced.join(":")).unwrap(), expected);
        for bad in [
            "",
            "abc",
            &text[..38],
            &format!("{text}00"),
            &"zz".repeat(20),
        ] {
            assert!(parse_thumbprint(bad).is_err(), "{bad}");
        }
        // SHA-1("abc"), FIPS 180-1 appendix A.
        assert_eq!(
            hex::encode(certificate_thumbprint(b"abc")),
            "a9993e364706816aba3e25717850c26c9cd0d89d"
        );
    }

    #[test]
    fn plain_http_and_selectors_are_refused() {
        let env = |endpoint| {
            Env::from_pairs([
                (IDENTITY_ENDPOINT, endpoint),
                (IDENTITY_HEADER, "sf-secret"),
                (IDENTITY_SERVER_THUMBPRINT, &"ab".repeat(20)),
            ])
        };
        let error = ServiceFabricSource::new(&env("http://127.0.0.1:2377/m"), None, "a")
            .unwrap_err()
            .to_string();
        assert!(error.contains("https"), "{error}");
        let error = ServiceFabricSource::new(
            &env("https://127.0.0.1:2377/m"),
            Some(UserAssignedId::ObjectId("o".into())),
            "a",
        )
        .unwrap_err()
        .to_string();
        assert!(error.contains("Service Fabric"), "{error}");
        let source = ServiceFabricSource::new(&env("https://127.0.0.1:2377/m"), None, "a").unwrap();
        assert!(!format!("{source:?} {}", source.describe()).contains("sf-secret"));
    }
}
