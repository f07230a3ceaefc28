//! The verifier against real envelopes from notation-go's test data (`fixtures/notation/`,
//! Apache-2.0): JWS and COSE, with RFC 3161 timestamps from a real TSA.

use std::path::Path;

use super::*;

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/notation").join(name))
        .unwrap()
}

/// A Notation configuration directory: `policy` as trustpolicy.json, and the stores
/// `ca/test` (`ca`), `tsa/ts` (`tsa`).
fn configure(policy: &str, ca: &[&str], tsa: &[&str]) -> (tempfile::TempDir, NotationConfig) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("trustpolicy.json"), policy).unwrap();
    for (kind, files) in [("ca/test", ca), ("tsa/ts", tsa)] {
        let store = dir.path().join("truststore/x509").join(kind);
        std::fs::create_dir_all(&store).unwrap();
        for file in files {
            std::fs::write(store.join(file), fixture(file)).unwrap();
        }
    }
    let config = NotationConfig::load(dir.path()).unwrap();
    (dir, config)
}

fn policy(level: &str, stores: &str) -> String {
    format!(
        r#"{{"version":"1.0","trustPolicies":[{{"name":"fixtures","registryScopes":["*"],
        "signatureVerification":{{"level":"{level}"}},"trustStores":[{stores}],"trustedIdentities":["*"]}}]}}"#
    )
}

fn target() -> Descriptor {
    Descriptor {
        media_type: "application/vnd.docker.distribution.manifest.v2+json".into(),
        digest: "sha256:c0669ef34cdc14332c0f1ab0c2c01acb91d96014b172f1a76f3a39e63d1f0bda"
            .parse()
            .unwrap(),
        size: 528,
        urls: None,
        annotations: None,
        platform: None,
    }
}

fn at(text: &str) -> OffsetDateTime {
    OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339).unwrap()
}

fn run(config: &NotationConfig, file: &str, media_type: &str, now: &str) -> Result<Verified, Rejection> {
    let statement = config.policy.statement_for("registry.example/app").unwrap();
    verify_envelope(config, statement, &target(), media_type, &fixture(file), at(now))
}

#[test]
fn real_jws_and_cose_envelopes_verify_with_their_rfc3161_timestamps() {
    let (_dir, config) = configure(
        &policy("strict", r#""ca:test","tsa:ts""#),
        &["TestTimestamp.crt"],
        &["globalsignRoot.cer"],
    );
    for (file, media_type, format) in [
        ("jwsWithTimestamp.sig", envelope::JWS_MEDIA_TYPE, "jws"),
        ("coseWithTimestamp.sig", envelope::COSE_MEDIA_TYPE, "cose"),
    ] {
        let verified = run(&config, file, media_type, "2025-06-01T00:00:00Z")
            .unwrap_or_else(|e| panic!("{file}: {e}"));
        assert_eq!(verified.envelope, format);
        assert_eq!(verified.signer, "CN=alpine,O=Notary,L=Seattle,ST=WA,C=US");
        let stamp = verified.timestamp.as_deref().unwrap();
        assert!(stamp.starts_with("2024-06-18T"), "{stamp}");
        assert!(verified.checks.iter().all(|c| c.result != "failed"), "{:?}", verified.checks);
    }
}

#[test]
fn an_expired_signing_certificate_passes_only_with_a_timestamp_inside_its_validity() {
    let (_dir, with_tsa) = configure(
        &policy("strict", r#""ca:test","tsa:ts""#),
        &["testTSA-expired.der"],
        &["globalsignRoot.cer"],
    );
    for (file, media_type) in [
        ("jwsExpiredWithTimestamp.sig", envelope::JWS_MEDIA_TYPE),
        ("coseExpiredWithTimestamp.sig", envelope::COSE_MEDIA_TYPE),
    ] {
        run(&with_tsa, file, media_type, "2025-06-01T00:00:00Z")
            .unwrap_or_else(|e| panic!("{file}: {e}"));
    }
    // Without a tsa store the chain must be valid now, and it is not.
    let (_dir, without_tsa) = configure(&policy("strict", r#""ca:test""#), &["testTSA-expired.der"], &[]);
    let rejected = run(&without_tsa, "jwsExpiredWithTimestamp.sig", envelope::JWS_MEDIA_TYPE, "2025-06-01T00:00:00Z")
        .unwrap_err();
    assert_eq!(rejected.check, Check::AuthenticTimestamp, "{rejected}");
    assert!(rejected.reason.contains("is not valid at"), "{rejected}");
    // permissive only logs it.
    let (_dir, permissive) = configure(&policy("permissive", r#""ca:test""#), &["testTSA-expired.der"], &[]);
    let verified = run(&permissive, "jwsExpiredWithTimestamp.sig", envelope::JWS_MEDIA_TYPE, "2025-06-01T00:00:00Z").unwrap();
    assert_eq!(verified.warnings.len(), 1, "{:?}", verified.warnings);
}

#[test]
fn a_missing_or_misplaced_timestamp_is_refused_when_the_policy_asks_for_one() {
    let (_dir, config) = configure(
        &policy("strict", r#""ca:test","tsa:ts""#),
        &["TestTimestamp.crt"],
        &["globalsignRoot.cer"],
    );
    let missing = run(&config, "withoutTimestamp.sig", envelope::JWS_MEDIA_TYPE, "2025-06-01T00:00:00Z").unwrap_err();
    assert_eq!(missing.check, Check::AuthenticTimestamp);
    assert!(missing.reason.contains("has none"), "{missing}");
    // A TSA root that did not sign the token.
    let (_dir, wrong_root) = configure(
        &policy("strict", r#""ca:test","tsa:ts""#),
        &["TestTimestamp.crt"],
        &["TestTimestamp.crt"],
    );
    let untrusted = run(&wrong_root, "jwsWithTimestamp.sig", envelope::JWS_MEDIA_TYPE, "2025-06-01T00:00:00Z").unwrap_err();
    assert_eq!(untrusted.check, Check::AuthenticTimestamp);
    assert!(untrusted.reason.contains("TSA certificate"), "{untrusted}");
}

#[test]
fn a_signature_for_another_manifest_or_with_a_changed_payload_fails_integrity() {
    let (_dir, config) = configure(&policy("audit", r#""ca:test""#), &["TestTimestamp.crt"], &[]);
    let statement = config.policy.statement_for("registry.example/app").unwrap();
    let mut other = target();
    other.size += 1;
    let rejected = verify_envelope(&config, statement, &other, envelope::JWS_MEDIA_TYPE, &fixture("jwsWithTimestamp.sig"), at("2025-06-01T00:00:00Z")).unwrap_err();
    assert_eq!(rejected.check, Check::Integrity);
    assert!(rejected.reason.contains("not for this image"), "{rejected}");

    let mut envelope: serde_json::Value = serde_json::from_slice(&fixture("jwsWithTimestamp.sig")).unwrap();
    let payload = br#"{"targetArtifact":{"digest":"sha256:c0669ef34cdc14332c0f1ab0c2c01acb91d96014b172f1a76f3a39e63d1f0bda","mediaType":"application/vnd.docker.distribution.manifest.v2+json","size":528,"annotations":{"x":"y"}}}"#;
    use base64::Engine as _;
    envelope["payload"] = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(payload).into();
    let tampered = serde_json::to_vec(&envelope).unwrap();
    let rejected = verify_envelope(&config, statement, &target(), envelope::JWS_MEDIA_TYPE, &tampered, at("2025-06-01T00:00:00Z")).unwrap_err();
    assert_eq!(rejected.check, Check::Integrity);
    assert!(rejected.reason.contains("does not verify"), "{rejected}");

    // The COSE envelope with one payload byte changed.
    let mut cose = fixture("coseWithTimestamp.sig");
    let at_digest = cose.windows(6).position(|w| w == b"sha256").unwrap() + 8;
    cose[at_digest] ^= 1;
    let rejected = verify_envelope(&config, statement, &target(), envelope::COSE_MEDIA_TYPE, &cose, at("2025-06-01T00:00:00Z")).unwrap_err();
    assert_eq!(rejected.check, Check::Integrity, "{rejected}");
}
