//! The fake Service Fabric identity endpoint over TLS: a fresh self-signed certificate (as the
//! cluster's is) and its SHA-1 thumbprint, the value of `IDENTITY_SERVER_THUMBPRINT`.

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context as _;
use axum::Router;
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;

/// The running TLS endpoint; stops on drop.
pub struct ServiceFabricServer {
    address: SocketAddr,
    thumbprint: String,
    server: tokio::task::JoinHandle<()>,
}

impl ServiceFabricServer {
    pub(super) async fn start(router: Router) -> anyhow::Result<Self> {
        let key_pair = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
        let parameters = rcgen::CertificateParams::new(vec!["127.0.0.1".to_string()])?;
        let certificate = parameters.self_signed(&key_pair)?;
        let thumbprint = hex::encode_upper(ring::digest::digest(
            &ring::digest::SHA1_FOR_LEGACY_USE_ONLY,
            certificate.der(),
        ));
        let key = rustls::pki_types::PrivateKeyDer::try_from(key_pair.serialize_der())
            .map_err(|error| anyhow::anyhow!("{error}"))?;
        let config = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(vec![certificate.der().clone()], key)
        .context("building the TLS server configuration")?;
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .context("binding the Service Fabric fake on 127.0.0.1")?;
        let address = listener.local_addr()?;
        let tls = TlsListener {
            listener,
            acceptor: TlsAcceptor::from(Arc::new(config)),
        };
        let server = tokio::spawn(async move {
            let _ = axum::serve(tls, router).await;
        });
        Ok(Self {
            address,
            thumbprint,
            server,
        })
    }

    /// The value for `IDENTITY_ENDPOINT`.
    pub fn endpoint(&self) -> String {
        format!("https://{}/sf/token", self.address)
    }

    /// The value for `IDENTITY_SERVER_THUMBPRINT`: upper-case hex SHA-1 of the certificate.
    pub fn thumbprint(&self) -> String {
        self.thumbprint.clone()
    }
}

impl Drop for ServiceFabricServer {
    fn drop(&mut self) {
        self.server.abort();
    }
}

/// Accepts TCP connections and completes a TLS handshake on each; failed handshakes (a client
/// that rejected the certificate) are dropped and the next connection is awaited.
struct TlsListener {
    listener: TcpListener,
    acceptor: TlsAcceptor,
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            let Ok((stream, address)) = self.listener.accept().await else {
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                continue;
            };
            if let Ok(tls) = self.acceptor.accept(stream).await {
                return (tls, address);
            }
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        self.listener.local_addr()
    }
}
