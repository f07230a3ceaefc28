//! CRLs made by the test's own CA (rcgen), served from a loopback HTTP server that counts its
//! requests; the leaf certificate names that server as its CRL distribution point.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use acrpull_testenv::notation::{self as make, Chain, Issued, LeafSpec, SignSpec};
use rcgen::{CertificateRevocationListParams, KeyIdMethod, RevokedCertParams, SerialNumber};
use time::OffsetDateTime;

use super::*;
use crate::verify::notation::policy::Check;
use crate::verify::notation::tests::generated::{descriptor, image};
use crate::verify::notation::{
    envelope, Kind, NotationConfig, NotationVerifier, Rejection, Verified,
};

const SUBJECT: &str = "x509.subject: C=US, ST=WA, O=acrpull-test.io, CN=Signer";

/// A loopback server answering `GET /leaf.crl` with whatever CRL it holds, counting requests.
struct CrlServer {
    port: u16,
    crl: Arc<Mutex<Vec<u8>>>,
    requests: Arc<AtomicUsize>,
}

impl CrlServer {
    async fn start() -> CrlServer {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let crl = Arc::new(Mutex::new(Vec::new()));
        let requests = Arc::new(AtomicUsize::new(0));
        let (body, count) = (crl.clone(), requests.clone());
        let moved = requests.clone();
        let app = axum::Router::new()
            .route(
                "/leaf.crl",
                axum::routing::get(move || {
                    count.fetch_add(1, Ordering::SeqCst);
                    let bytes = body.lock().unwrap().clone();
                    async move { bytes }
                }),
            )
            // `/moved.crl` redirects to `/leaf.crl`; `/tls.crl` to an https:// location.
            .route(
                "/moved.crl",
                axum::routing::get(move || {
                    moved.fetch_add(1, Ordering::SeqCst);
                    async { axum::response::Redirect::temporary("/leaf.crl") }
                }),
            )
            .route(
                "/tls.crl",
                axum::routing::get(move || async move {
                    axum::response::Redirect::temporary(&format!(
                        "https://127.0.0.1:{port}/leaf.crl"
                    ))
                }),
            );
        tokio::spawn(async move { axum::serve(listener, app).await });
        CrlServer {
            port,
            crl,
            requests,
        }
    }

    fn url(&self) -> String {
        self.path("leaf.crl")
    }

    fn path(&self, name: &str) -> String {
        format!("http://127.0.0.1:{}/{name}", self.port)
    }

    fn serve(&self, crl: Vec<u8>) {
        *self.crl.lock().unwrap() = crl;
    }

    fn requests(&self) -> usize {
        self.requests.load(Ordering::SeqCst)
    }
}

/// A chain whose leaf names `url` as its CRL.
fn chain_with_crl(url: String) -> Chain {
    Chain::new(&LeafSpec {
        crl_urls: vec![url],
        ..LeafSpec::default()
    })
}

/// A CRL signed by `issuer`, valid from `this_update` to `next_update`, revoking `serials`.
fn crl(
    issuer: &Issued,
    this_update: OffsetDateTime,
    next_update: OffsetDateTime,
    serials: &[Vec<u8>],
) -> Vec<u8> {
    CertificateRevocationListParams {
        this_update,
        next_update,
        crl_number: SerialNumber::from(1u64),
        issuing_distribution_point: None,
        revoked_certs: serials
            .iter()
            .map(|serial| RevokedCertParams {
                serial_number: SerialNumber::from_slice(serial),
                revocation_time: this_update,
                reason_code: Some(rcgen::RevocationReason::KeyCompromise),
                invalidity_date: None,
            })
            .collect(),
        key_identifier_method: KeyIdMethod::Sha256,
    }
    .signed_by(&issuer.cert, &issuer.key.pair)
    .unwrap()
    .der()
    .to_vec()
}

/// A current CRL (yesterday to tomorrow).
fn current_crl(issuer: &Issued, serials: &[Vec<u8>]) -> Vec<u8> {
    let now = OffsetDateTime::now_utc();
    crl(
        issuer,
        now - time::Duration::days(1),
        now + time::Duration::days(1),
        serials,
    )
}

fn leaf_serial(chain: &Chain) -> Vec<u8> {
    Certificate::from_der(&chain.leaf.der())
        .unwrap()
        .serial()
        .to_vec()
}

/// Verify a fresh JWS signature by `chain` under a policy trusting its root at `level`,
/// with revocation checked when `check` is set.
async fn verify(chain: &Chain, level: &str, check: bool) -> Result<Verified, Rejection> {
    let dir = tempfile::tempdir().unwrap();
    make::write_config(
        dir.path(),
        &make::policy("acrpull-test", &["*"], level, &["ca:root"], &[SUBJECT]),
        &[("ca", "root", chain.root.der())],
    );
    let config = NotationConfig::load(dir.path()).unwrap();
    let subject = image();
    let target = descriptor(&subject);
    let signature = make::sign_jws(chain, &SignSpec::new(&subject));
    let mut verifier = NotationVerifier::new(config);
    if check {
        verifier = verifier.with_revocation_check(CrlFetcher::new(Proxy::Direct).unwrap());
    }
    let statement = verifier
        .config
        .policy
        .statement_for("registry.example/app")
        .unwrap();
    verifier
        .verify_one(
            statement,
            &target,
            envelope::JWS_MEDIA_TYPE,
            &signature,
            OffsetDateTime::now_utc(),
        )
        .await
}

fn revocation_record(verified: &Verified) -> (&'static str, &'static str, String) {
    let record = verified
        .checks
        .iter()
        .find(|c| c.check == "revocation")
        .expect("a revocation record");
    (
        record.action,
        record.result,
        record.detail.clone().unwrap_or_default(),
    )
}

#[tokio::test]
async fn a_certificate_missing_from_a_valid_crl_passes() {
    let server = CrlServer::start().await;
    let chain = chain_with_crl(server.url());
    // The CRL revokes another serial, not the leaf's.
    server.serve(current_crl(&chain.intermediate, &[vec![0x42]]));
    let verified = verify(&chain, "strict", true).await.unwrap();
    assert_eq!(revocation_record(&verified).1, "passed");
    assert!(verified.warnings.is_empty(), "{:?}", verified.warnings);
    assert_eq!(server.requests(), 1);
}

#[tokio::test]
async fn a_revoked_signing_certificate_is_refused_at_strict() {
    let server = CrlServer::start().await;
    let chain = chain_with_crl(server.url());
    server.serve(current_crl(&chain.intermediate, &[leaf_serial(&chain)]));
    let e = verify(&chain, "strict", true).await.unwrap_err();
    assert_eq!(
        (e.check, e.kind.clone()),
        (Check::Revocation, Kind::Revoked)
    );
    assert!(e.reason.contains("is revoked by the CRL"), "{e}");
    assert!(e.reason.contains("reason code 1"), "{e}");
    let digest = format!("sha256:{}", "0".repeat(64)).parse().unwrap();
    let reason = crate::verify::Reason::from((&e, &digest));
    assert!(
        reason.to_string().starts_with("revoked: revocation check"),
        "{reason}"
    );
}

#[tokio::test]
async fn a_revoked_signing_certificate_is_accepted_with_a_warning_at_audit() {
    let server = CrlServer::start().await;
    let chain = chain_with_crl(server.url());
    server.serve(current_crl(&chain.intermediate, &[leaf_serial(&chain)]));
    let verified = verify(&chain, "audit", true).await.unwrap();
    let (action, result, detail) = revocation_record(&verified);
    assert_eq!((action, result), ("log", "failed"));
    assert!(detail.contains("is revoked"), "{detail}");
    assert!(
        verified
            .warnings
            .iter()
            .any(|w| w.contains("revocation check failed")),
        "{:?}",
        verified.warnings
    );
}

#[tokio::test]
async fn a_crl_signed_by_another_key_does_not_pass() {
    let server = CrlServer::start().await;
    let chain = chain_with_crl(server.url());
    // Same issuer name, another key.
    let impostor = make::root_ca("acrpull Test Intermediate");
    server.serve(current_crl(&impostor, &[]));
    let e = verify(&chain, "strict", true).await.unwrap_err();
    assert_eq!(
        (e.check, e.kind.clone()),
        (Check::Revocation, Kind::RevocationUnknown)
    );
    assert!(e.reason.contains("signature does not verify"), "{e}");
}

#[tokio::test]
async fn an_expired_crl_does_not_pass_even_without_the_certificate() {
    let server = CrlServer::start().await;
    let chain = chain_with_crl(server.url());
    let now = OffsetDateTime::now_utc();
    server.serve(crl(
        &chain.intermediate,
        now - time::Duration::days(3),
        now - time::Duration::days(1),
        &[],
    ));
    let e = verify(&chain, "strict", true).await.unwrap_err();
    assert_eq!(e.kind, Kind::RevocationUnknown, "{e}");
    assert!(e.reason.contains("expired"), "{e}");
    // Permissive logs it, recorded as unknown (not as not-revoked).
    let verified = verify(&chain, "permissive", true).await.unwrap();
    assert_eq!(revocation_record(&verified).1, "unknown");
}

#[tokio::test]
async fn an_unreachable_crl_server_fails_at_strict() {
    // A loopback port that was bound and released: nothing listens there.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let chain = chain_with_crl(format!("http://127.0.0.1:{port}/leaf.crl"));
    let e = verify(&chain, "strict", true).await.unwrap_err();
    assert_eq!(
        (e.check, e.kind.clone()),
        (Check::Revocation, Kind::RevocationUnknown)
    );
    assert!(e.reason.contains("could not be determined"), "{e}");
}

#[tokio::test]
async fn without_the_flag_nothing_is_fetched_and_the_result_says_not_checked() {
    let server = CrlServer::start().await;
    let chain = chain_with_crl(server.url());
    server.serve(current_crl(&chain.intermediate, &[leaf_serial(&chain)]));
    let verified = verify(&chain, "strict", false).await.unwrap();
    let (action, result, detail) = revocation_record(&verified);
    assert_eq!((action, result), ("enforce", "notChecked"));
    assert!(detail.contains("pass --revocation-check"), "{detail}");
    assert_eq!(server.requests(), 0);
}

#[tokio::test]
async fn a_chain_without_crls_needs_no_request() {
    let server = CrlServer::start().await;
    let chain = Chain::new(&LeafSpec::default());
    let verified = verify(&chain, "strict", true).await.unwrap();
    assert_eq!(revocation_record(&verified).1, "passed");
    assert_eq!(server.requests(), 0);
}

#[tokio::test]
async fn a_redirect_to_another_http_location_is_followed_and_one_to_https_is_not() {
    let server = CrlServer::start().await;
    let chain = chain_with_crl(server.path("moved.crl"));
    server.serve(current_crl(&chain.intermediate, &[leaf_serial(&chain)]));
    let e = verify(&chain, "strict", true).await.unwrap_err();
    assert_eq!(e.kind, Kind::Revoked, "{e}");
    // The redirect and the CRL itself.
    assert_eq!(server.requests(), 2);

    let chain = chain_with_crl(server.path("tls.crl"));
    server.serve(current_crl(&chain.intermediate, &[]));
    let e = verify(&chain, "strict", true).await.unwrap_err();
    assert_eq!(e.kind, Kind::RevocationUnknown, "{e}");
    assert!(e.reason.contains("only http:// CRLs are fetched"), "{e}");
}
