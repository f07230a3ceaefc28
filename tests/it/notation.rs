//! `--verify notation`: Notary Project signatures made for real by
//! `acrpull_testenv::notation` (fresh chains, RSA-PSS and ECDSA keys, JWS and COSE envelopes),
//! stored as Notation stores them: referrers of artifact type
//! `application/vnd.cncf.notary.signature`, through the referrers tag schema on the real
//! `docker-registry` and the referrers API of the fake registry, and inside OCI layouts for
//! offline verification. The trust policy and trust store are a Notation configuration
//! directory written per test.

use std::path::Path;

use acrpull_testenv::artifacts::{push_artifacts, Artifact, Subject};
use acrpull_testenv::fixtures::OCI_MANIFEST;
use acrpull_testenv::notation::{self as make, Chain, KeyKind, LeafSpec, SignSpec};
use acrpull_testenv::oci_registry::OciRegistry;
use acrpull_testenv::registry::{Registry, RegistryOptions};
use serde_json::{json, Value};

use crate::support::{acrpull, fails, ok, run, Scratch};
use crate::verify::{block_on, pull, Image};

const SIGNER: &str = "x509.subject: C=US, ST=WA, O=acrpull-test.io, CN=Signer";
const JWS: &str = "application/jose+json";
const COSE: &str = "application/cose";

/// A signature of `subject` by `chain` in a JWS or COSE envelope, as Notation pushes it.
fn signed(chain: &Chain, spec: &SignSpec, media_type: &str) -> Artifact {
    let envelope = if media_type == JWS {
        make::sign_jws(chain, spec)
    } else {
        make::sign_cose(chain, spec)
    };
    make::signature_artifact(&spec.target, envelope, media_type, &chain.ders())
}

/// A Notation configuration directory trusting `root` for `scopes` at `level`.
fn config(
    dir: &Path,
    name: &str,
    scopes: &[&str],
    level: &str,
    root: &Chain,
    identity: &str,
) -> String {
    let path = dir.join(name);
    make::write_config(
        &path,
        &make::policy("acrpull-test", scopes, level, &["ca:acrpull"], &[identity]),
        &[("ca", "acrpull", root.root.der())],
    );
    path.display().to_string()
}

/// `acrpull verify --json --verify notation --notation-config CONFIG IMAGE`.
fn verify(home: &Path, config: &str, image: &str) -> std::process::Output {
    run(
        home,
        &[
            "verify",
            "--json",
            "--verify",
            "notation",
            "--notation-config",
            config,
            image,
        ],
        None,
    )
}

#[test]
fn notation_signatures_on_the_real_registry_verify_and_pull_with_every_level() {
    let registry = Registry::start(RegistryOptions::anonymous()).expect("registry");
    let scratch = Scratch::new();
    let home = scratch.home();
    let image = Image::new(scratch.dir.path(), "signed");
    let chain = Chain::new(&LeafSpec {
        key: KeyKind::Rsa2048,
        ..LeafSpec::default()
    });
    let signature = signed(&chain, &SignSpec::new(&image.subject), JWS);
    image.push(&registry, "app", &[]);
    // docker-registry 2.8 has no referrers API: the tag-schema index lists the signature.
    block_on(push_artifacts(&registry.url(), "app", &[&signature], true));
    let reference = format!("{}/app:v1", registry.host());
    let scope = format!("{}/app", registry.host());

    let strict = config(
        scratch.dir.path(),
        "strict",
        &[&scope],
        "strict",
        &chain,
        SIGNER,
    );
    let verified: Value = serde_json::from_str(&ok(&verify(&home, &strict, &reference))).unwrap();
    assert_eq!(verified["scheme"], "notation", "{verified}");
    assert_eq!(verified["level"], "strict", "{verified}");
    assert!(
        verified["signer"].as_str().unwrap().contains("CN=Signer"),
        "{verified}"
    );
    assert!(
        verified["signature"]
            .as_str()
            .unwrap()
            .contains(&signature.digest()),
        "{verified}"
    );
    assert!(
        verified["policy"]
            .as_str()
            .unwrap()
            .contains("acrpull-test"),
        "{verified}"
    );

    // pull, with the configuration found where the notation CLI keeps it (~/.config/notation).
    make::write_config(
        &home.join(".config/notation"),
        &make::policy("acrpull-test", &["*"], "strict", &["ca:acrpull"], &[SIGNER]),
        &[("ca", "acrpull", chain.root.der())],
    );
    let rootfs = scratch.dest("rootfs");
    let mut command = acrpull(&home);
    command
        .env_remove("NOTATION_CONFIG")
        .env_remove("XDG_CONFIG_HOME");
    command.args([
        "pull",
        "--no-cache",
        "--verify",
        "notation",
        &reference,
        rootfs.to_str().unwrap(),
    ]);
    ok(&command.output().unwrap());
    assert!(rootfs.join("hello.txt").is_file());

    // audit: a signer the store does not trust passes, with a warning on stderr.
    let stranger = Chain::new(&LeafSpec::default());
    let audit = config(
        scratch.dir.path(),
        "audit",
        &["*"],
        "audit",
        &stranger,
        SIGNER,
    );
    let output = verify(&home, &audit, &reference);
    ok(&output);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("authenticity check failed"), "{stderr}");
    // strict with the same store: refused.
    let refused = config(
        scratch.dir.path(),
        "refused",
        &["*"],
        "strict",
        &stranger,
        SIGNER,
    );
    let stderr = fails(&verify(&home, &refused, &reference), 7);
    assert!(stderr.contains("untrusted certificate chain"), "{stderr}");
    assert!(stderr.contains(&image.subject.digest), "{stderr}");

    // skip: nothing verified, and said so.
    let skip = scratch.dir.path().join("skip");
    make::write_config(
        &skip,
        &make::policy("unsigned", &[&scope], "skip", &[], &[]),
        &[],
    );
    let output = verify(&home, skip.to_str().unwrap(), &reference);
    ok(&output);
    assert!(String::from_utf8_lossy(&output.stderr).contains("were not verified"));

    // A policy whose scopes name another repository only: refused before any signature.
    let elsewhere = config(
        scratch.dir.path(),
        "elsewhere",
        &["registry.example/other"],
        "strict",
        &chain,
        SIGNER,
    );
    let stderr = fails(&verify(&home, &elsewhere, &reference), 7);
    assert!(
        stderr.contains("no trust policy statement applies"),
        "{stderr}"
    );

    // An image without signatures.
    let bare = Image::new(scratch.dir.path(), "bare");
    bare.push(&registry, "bare", &[]);
    let global = config(
        scratch.dir.path(),
        "global",
        &["*"],
        "strict",
        &chain,
        SIGNER,
    );
    let stderr = fails(
        &verify(&home, &global, &format!("{}/bare:v1", registry.host())),
        7,
    );
    assert!(stderr.contains("no notation signature"), "{stderr}");
}

#[test]
fn every_notation_rejection_exits_7_and_a_refused_pull_leaves_dest_absent() {
    let scratch = Scratch::new();
    let home = scratch.home();
    let image = Image::new(scratch.dir.path(), "target");
    let trusted = Chain::new(&LeafSpec {
        key: KeyKind::P384,
        ..LeafSpec::default()
    });
    let strict = config(
        scratch.dir.path(),
        "strict",
        &["*"],
        "strict",
        &trusted,
        SIGNER,
    );
    let now = time::OffsetDateTime::now_utc();
    let spec = SignSpec::new(&image.subject);

    // The good COSE signature first, on the referrers API.
    let registry = OciRegistry::start().expect("registry");
    image.push_api(&registry, &[&signed(&trusted, &spec, COSE)]);
    ok(&verify(
        &home,
        &strict,
        &format!("{}/app:v1", registry.host()),
    ));

    let under_trusted_root =
        |leaf: LeafSpec| Chain::under(make::root_ca("acrpull Test Root"), &leaf);
    let wrong_eku = under_trusted_root(LeafSpec {
        extended_key_usages: vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth],
        ..LeafSpec::default()
    });
    let expired = under_trusted_root(LeafSpec {
        not_before: now - time::Duration::days(30),
        not_after: now - time::Duration::days(1),
        ..LeafSpec::default()
    });
    let mut old = spec.clone();
    old.signing_time = now - time::Duration::days(2);
    let other = Subject::of(OCI_MANIFEST, b"{\"another\":\"manifest\"}");
    let mut tampered = signed(&trusted, &spec, JWS);
    {
        // Swap the payload for one naming the same image with an annotation: same digest
        // check, broken signature.
        let (digest, bytes) = tampered.blobs[1].clone();
        let mut envelope: Value = serde_json::from_slice(&bytes).unwrap();
        use base64::Engine as _;
        let payload = json!({"targetArtifact": {"mediaType": image.subject.media_type, "digest": image.subject.digest, "size": image.subject.size, "annotations": {"x": "y"}}});
        envelope["payload"] = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(payload.to_string())
            .into();
        let bytes = serde_json::to_vec(&envelope).unwrap();
        let _ = digest;
        tampered = make::signature_artifact(&image.subject, bytes, JWS, &trusted.ders());
    }
    let cases: Vec<(&str, Artifact, String, &str)> = vec![
        (
            "tampered payload",
            tampered,
            strict.clone(),
            "does not verify",
        ),
        (
            "another digest",
            // Listed for this image, the envelope signs another manifest.
            make::signature_artifact(
                &image.subject,
                make::sign_jws(&trusted, &SignSpec::new(&other)),
                JWS,
                &trusted.ders(),
            ),
            strict.clone(),
            "a signature over another digest",
        ),
        (
            "untrusted root",
            signed(&Chain::new(&LeafSpec::default()), &spec, COSE),
            strict.clone(),
            "untrusted certificate chain",
        ),
        (
            "wrong EKU",
            signed(&wrong_eku, &spec, JWS),
            config(
                scratch.dir.path(),
                "eku",
                &["*"],
                "strict",
                &wrong_eku,
                SIGNER,
            ),
            "serverAuth",
        ),
        (
            "expired certificate",
            signed(&expired, &old, JWS),
            config(
                scratch.dir.path(),
                "expired",
                &["*"],
                "strict",
                &expired,
                SIGNER,
            ),
            "expired",
        ),
        (
            "identity not trusted",
            signed(&trusted, &spec, COSE),
            config(
                scratch.dir.path(),
                "identity",
                &["*"],
                "strict",
                &trusted,
                "x509.subject: C=US, ST=WA, O=someone-else.io",
            ),
            "identity mismatch",
        ),
    ];
    for (what, artifact, config, expected) in cases {
        let registry = OciRegistry::start().expect("registry");
        image.push_api(&registry, &[&artifact]);
        let reference = format!("{}/app:v1", registry.host());
        let stderr = fails(&verify(&home, &config, &reference), 7);
        assert!(stderr.contains(expected), "{what}: {stderr}");
        assert!(stderr.contains(&artifact.digest()), "{what}: {stderr}");
        // pull refuses before any layer: DEST absent, no layer requested.
        let dest = scratch.dest(&format!("dest-{}", what.replace(' ', "-")));
        fails(
            &pull(
                &home,
                &["--verify", "notation", "--notation-config", &config],
                &reference,
                &dest,
            ),
            7,
        );
        assert!(!dest.exists(), "{what}: DEST was created");
        let requested: Vec<String> = registry
            .requests()
            .into_iter()
            .map(|(_, path, _)| path)
            .collect();
        for layer in image.layers() {
            assert!(
                !requested.iter().any(|p| p.contains(&layer)),
                "{what}: layer {layer} requested"
            );
        }
    }

    // 1,000 signatures listed: refused after a few requests, not followed.
    let registry = OciRegistry::start().expect("registry");
    image.push_api(&registry, &[]);
    let listed: Vec<Value> = (0..1000)
        .map(|i| {
            json!({"mediaType": OCI_MANIFEST, "digest": format!("sha256:{:064x}", i), "size": 100,
                       "artifactType": acrpull_testenv::artifacts::NOTATION_TYPE})
        })
        .collect();
    registry.faults(|f| {
        f.extra_listed.insert(image.subject.digest.clone(), listed);
    });
    let stderr = fails(
        &verify(&home, &strict, &format!("{}/app:v1", registry.host())),
        7,
    );
    assert!(stderr.contains("more than 256 referrers"), "{stderr}");
    assert!(registry.requests().len() < 20, "{:?}", registry.requests());
}

#[test]
fn a_layout_staged_with_notation_signatures_verifies_offline() {
    let registry = Registry::start(RegistryOptions::anonymous()).expect("registry");
    let scratch = Scratch::new();
    let home = scratch.home();
    let image = Image::new(scratch.dir.path(), "staged");
    let chain = Chain::new(&LeafSpec::default());
    image.push(&registry, "app", &[]);
    block_on(push_artifacts(
        &registry.url(),
        "app",
        &[&signed(&chain, &SignSpec::new(&image.subject), COSE)],
        true,
    ));
    let staged = scratch.dest("staged");
    ok(&pull(
        &home,
        &["--format", "oci", "--referrers"],
        &format!("{}/app:v1", registry.host()),
        &staged,
    ));
    drop(registry);
    let layout = format!("oci:{}:v1", staged.display());
    // Layouts are scoped `local/<directory>`: the global statement applies here.
    let global = config(
        scratch.dir.path(),
        "global",
        &["*"],
        "strict",
        &chain,
        SIGNER,
    );
    ok(&verify(&home, &global, &layout));
    let rootfs = scratch.dest("rootfs");
    ok(&pull(
        &home,
        &["--verify", "notation", "--notation-config", &global],
        &layout,
        &rootfs,
    ));
    assert!(rootfs.join("hello.txt").is_file());
    let local = config(
        scratch.dir.path(),
        "local",
        &["local/staged"],
        "strict",
        &chain,
        SIGNER,
    );
    ok(&verify(&home, &local, &layout));
}

/// Answer every request on the loopback `listener` with `body`, counting requests (it runs
/// until the test process ends).
fn serve(
    listener: std::net::TcpListener,
    body: Vec<u8>,
) -> std::sync::Arc<std::sync::atomic::AtomicUsize> {
    use std::io::{Read as _, Write as _};
    let count = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let seen = count.clone();
    std::thread::spawn(move || {
        for mut stream in listener.incoming().flatten() {
            let mut request = Vec::new();
            let mut buffer = [0u8; 1024];
            while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                match stream.read(&mut buffer) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => request.extend_from_slice(&buffer[..n]),
                }
            }
            seen.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let head = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: application/pkix-crl\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            );
            let _ = stream.write_all(head.as_bytes());
            let _ = stream.write_all(&body);
        }
    });
    count
}

#[test]
fn revocation_is_checked_by_crl_only_with_revocation_check_and_a_revoked_signer_is_refused() {
    let registry = Registry::start(RegistryOptions::anonymous()).expect("registry");
    let scratch = Scratch::new();
    let home = scratch.home();
    let image = Image::new(scratch.dir.path(), "revoked");
    // The leaf names a loopback CRL; the listener is bound before the chain is made and
    // answers only once the CRL exists (a connection before that would be counted then).
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let chain = Chain::new(&LeafSpec {
        crl_urls: vec![format!("http://127.0.0.1:{port}/leaf.crl")],
        ..LeafSpec::default()
    });
    image.push(&registry, "app", &[]);
    block_on(push_artifacts(
        &registry.url(),
        "app",
        &[&signed(&chain, &SignSpec::new(&image.subject), JWS)],
        true,
    ));
    let reference = format!("{}/app:v1", registry.host());
    let strict = config(
        scratch.dir.path(),
        "strict",
        &["*"],
        "strict",
        &chain,
        SIGNER,
    );

    // Without the flag: accepted, revocation reported as not checked, and no CRL is fetched.
    let verified: Value = serde_json::from_str(&ok(&verify(&home, &strict, &reference))).unwrap();
    let skipped = verified["skipped"].to_string();
    assert!(skipped.contains("revocation: notChecked"), "{verified}");
    assert!(skipped.contains("pass --revocation-check"), "{verified}");

    // The intermediate revokes the leaf.
    let serial = acrpull::verify::x509::Certificate::from_der(&chain.leaf.der())
        .unwrap()
        .serial()
        .to_vec();
    let now = time::OffsetDateTime::now_utc();
    let crl = rcgen::CertificateRevocationListParams {
        this_update: now - time::Duration::hours(1),
        next_update: now + time::Duration::days(1),
        crl_number: rcgen::SerialNumber::from(7u64),
        issuing_distribution_point: None,
        revoked_certs: vec![rcgen::RevokedCertParams {
            serial_number: rcgen::SerialNumber::from_slice(&serial),
            revocation_time: now - time::Duration::hours(1),
            reason_code: None,
            invalidity_date: None,
        }],
        key_identifier_method: rcgen::KeyIdMethod::Sha256,
    }
    .signed_by(&chain.intermediate.cert, &chain.intermediate.key.pair)
    .unwrap();
    let requests = serve(listener, crl.der().to_vec());
    ok(&verify(&home, &strict, &reference));
    assert_eq!(requests.load(std::sync::atomic::Ordering::SeqCst), 0);

    let mut args = vec![
        "verify",
        "--verify",
        "notation",
        "--notation-config",
        &strict,
        "--revocation-check",
    ];
    args.push(&reference);
    let stderr = fails(&run(&home, &args, None), 7);
    assert!(stderr.contains("revoked"), "{stderr}");
    assert!(stderr.contains("revocation check"), "{stderr}");
    assert!(requests.load(std::sync::atomic::Ordering::SeqCst) >= 1);

    // A pull with the flag is refused before anything is written.
    let rootfs = scratch.dest("rootfs");
    fails(
        &pull(
            &home,
            &[
                "--verify",
                "notation",
                "--notation-config",
                &strict,
                "--revocation-check",
            ],
            &reference,
            &rootfs,
        ),
        7,
    );
    assert!(!rootfs.exists());
}
