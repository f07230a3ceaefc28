//! The verifier against real envelopes from notation-go's test data (`fixtures/notation/`,
//! Apache-2.0): JWS and COSE, with RFC 3161 timestamps from a real TSA.

use std::path::Path;

use super::*;

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("fixtures/notation")
            .join(name),
    )
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

fn run(
    config: &NotationConfig,
    file: &str,
    media_type: &str,
    now: &str,
) -> Result<Verified, Rejection> {
    let statement = config.policy.statement_for("registry.example/app").unwrap();
    verify_envelope(
        config,
        statement,
        &target(),
        media_type,
        &fixture(file),
        at(now),
    )
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
        assert!(
            verified.checks.iter().all(|c| c.result != "failed"),
            "{:?}",
            verified.checks
        );
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
    let (_dir, without_tsa) = configure(
        &policy("strict", r#""ca:test""#),
        &["testTSA-expired.der"],
        &[],
    );
    let rejected = run(
        &without_tsa,
        "jwsExpiredWithTimestamp.sig",
        envelope::JWS_MEDIA_TYPE,
        "2025-06-01T00:00:00Z",
    )
    .unwrap_err();
    assert_eq!(rejected.check, Check::AuthenticTimestamp, "{rejected}");
    assert!(rejected.reason.contains("is not valid at"), "{rejected}");
    // permissive only logs it.
    let (_dir, permissive) = configure(
        &policy("permissive", r#""ca:test""#),
        &["testTSA-expired.der"],
        &[],
    );
    let verified = run(
        &permissive,
        "jwsExpiredWithTimestamp.sig",
        envelope::JWS_MEDIA_TYPE,
        "2025-06-01T00:00:00Z",
    )
    .unwrap();
    assert_eq!(verified.warnings.len(), 1, "{:?}", verified.warnings);
}

#[test]
fn a_missing_or_misplaced_timestamp_is_refused_when_the_policy_asks_for_one() {
    let (_dir, config) = configure(
        &policy("strict", r#""ca:test","tsa:ts""#),
        &["TestTimestamp.crt"],
        &["globalsignRoot.cer"],
    );
    let missing = run(
        &config,
        "withoutTimestamp.sig",
        envelope::JWS_MEDIA_TYPE,
        "2025-06-01T00:00:00Z",
    )
    .unwrap_err();
    assert_eq!(missing.check, Check::AuthenticTimestamp);
    assert!(missing.reason.contains("has none"), "{missing}");
    // A TSA root that did not sign the token.
    let (_dir, wrong_root) = configure(
        &policy("strict", r#""ca:test","tsa:ts""#),
        &["TestTimestamp.crt"],
        &["TestTimestamp.crt"],
    );
    let untrusted = run(
        &wrong_root,
        "jwsWithTimestamp.sig",
        envelope::JWS_MEDIA_TYPE,
        "2025-06-01T00:00:00Z",
    )
    .unwrap_err();
    assert_eq!(untrusted.check, Check::AuthenticTimestamp);
    assert!(untrusted.reason.contains("TSA certificate"), "{untrusted}");
}

#[test]
fn a_signature_for_another_manifest_or_with_a_changed_payload_fails_integrity() {
    let (_dir, config) = configure(
        &policy("audit", r#""ca:test""#),
        &["TestTimestamp.crt"],
        &[],
    );
    let statement = config.policy.statement_for("registry.example/app").unwrap();
    let mut other = target();
    other.size += 1;
    let rejected = verify_envelope(
        &config,
        statement,
        &other,
        envelope::JWS_MEDIA_TYPE,
        &fixture("jwsWithTimestamp.sig"),
        at("2025-06-01T00:00:00Z"),
    )
    .unwrap_err();
    assert_eq!(rejected.check, Check::Integrity);
    assert!(rejected.reason.contains("not for this image"), "{rejected}");

    let mut envelope: serde_json::Value =
        serde_json::from_slice(&fixture("jwsWithTimestamp.sig")).unwrap();
    let payload = br#"{"targetArtifact":{"digest":"sha256:c0669ef34cdc14332c0f1ab0c2c01acb91d96014b172f1a76f3a39e63d1f0bda","mediaType":"application/vnd.docker.distribution.manifest.v2+json","size":528,"annotations":{"x":"y"}}}"#;
    use base64::Engine as _;
    envelope["payload"] = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(payload)
        .into();
    let tampered = serde_json::to_vec(&envelope).unwrap();
    let rejected = verify_envelope(
        &config,
        statement,
        &target(),
        envelope::JWS_MEDIA_TYPE,
        &tampered,
        at("2025-06-01T00:00:00Z"),
    )
    .unwrap_err();
    assert_eq!(rejected.check, Check::Integrity);
    assert!(rejected.reason.contains("does not verify"), "{rejected}");

    // The COSE envelope with one payload byte changed.
    let mut cose = fixture("coseWithTimestamp.sig");
    let at_digest = cose.windows(6).position(|w| w == b"sha256").unwrap() + 8;
    cose[at_digest] ^= 1;
    let rejected = verify_envelope(
        &config,
        statement,
        &target(),
        envelope::COSE_MEDIA_TYPE,
        &cose,
        at("2025-06-01T00:00:00Z"),
    )
    .unwrap_err();
    assert_eq!(rejected.check, Check::Integrity, "{rejected}");
}

pub(super) mod generated {
    //! Signatures made by the test environment with fresh chains, as Notation makes them.
    use acrpull_testenv::artifacts::Subject;
    use acrpull_testenv::notation::{self as make, Chain, KeyKind, LeafSpec, SignSpec};
    use rcgen::{DnType, ExtendedKeyUsagePurpose};

    use super::*;

    const SUBJECT: &str = "x509.subject: C=US, ST=WA, O=acrpull-test.io, CN=Signer";

    /// The manifest the generated signatures sign.
    pub(in crate::verify::notation) fn image() -> Subject {
        Subject::of(
            "application/vnd.oci.image.manifest.v1+json",
            br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json"}"#,
        )
    }

    /// `subject` as a descriptor.
    pub(in crate::verify::notation) fn descriptor(subject: &Subject) -> Descriptor {
        Descriptor {
            media_type: subject.media_type.clone(),
            digest: subject.digest.parse().unwrap(),
            size: subject.size,
            urls: None,
            annotations: None,
            platform: None,
        }
    }

    /// A config trusting `root` (DER) in `ca:root` with `identity` at `level`.
    fn trusting(root: Vec<u8>, level: &str, identity: &str) -> (tempfile::TempDir, NotationConfig) {
        let dir = tempfile::tempdir().unwrap();
        make::write_config(
            dir.path(),
            &make::policy("acrpull-test", &["*"], level, &["ca:root"], &[identity]),
            &[("ca", "root", root)],
        );
        let config = NotationConfig::load(dir.path()).unwrap();
        (dir, config)
    }

    fn check(
        config: &NotationConfig,
        envelope: &[u8],
        media_type: &str,
        target: &Subject,
    ) -> Result<Verified, Rejection> {
        let statement = config.policy.statement_for("registry.example/app").unwrap();
        verify_envelope(
            config,
            statement,
            &descriptor(target),
            media_type,
            envelope,
            OffsetDateTime::now_utc(),
        )
    }

    #[test]
    fn rsa_pss_and_ecdsa_signatures_in_jws_and_cose_pass_for_a_trusted_subject() {
        for key in [
            KeyKind::Rsa2048,
            KeyKind::Rsa3072,
            KeyKind::P256,
            KeyKind::P384,
        ] {
            let chain = Chain::new(&LeafSpec {
                key,
                ..LeafSpec::default()
            });
            let (_dir, config) = trusting(chain.root.der(), "strict", SUBJECT);
            let spec = SignSpec::new(&image());
            for (envelope, media_type) in [
                (make::sign_jws(&chain, &spec), envelope::JWS_MEDIA_TYPE),
                (make::sign_cose(&chain, &spec), envelope::COSE_MEDIA_TYPE),
            ] {
                let verified = check(&config, &envelope, media_type, &image())
                    .unwrap_or_else(|e| panic!("{key:?} {media_type}: {e}"));
                assert_eq!(verified.level, "strict");
                assert!(verified.signer.contains("CN=Signer"), "{}", verified.signer);
                assert!(verified
                    .trusted_by
                    .as_deref()
                    .unwrap()
                    .contains("acrpull Test Root"));
                assert!(verified.warnings.is_empty(), "{:?}", verified.warnings);
            }
        }
    }

    #[test]
    fn every_rejection_names_its_check() {
        let target = image();
        let spec = SignSpec::new(&target);
        let good = Chain::new(&LeafSpec::default());
        let (_dir, config) = trusting(good.root.der(), "strict", SUBJECT);
        let rejected =
            |chain: &Chain, spec: &SignSpec, config: &NotationConfig, target: &Subject| {
                check(
                    config,
                    &make::sign_jws(chain, spec),
                    envelope::JWS_MEDIA_TYPE,
                    target,
                )
                .expect_err("must be rejected")
            };

        // A serverAuth leaf is no code-signing certificate.
        let wrong_eku = Chain::under(
            make::root_ca("acrpull Test Root"),
            &LeafSpec {
                extended_key_usages: vec![ExtendedKeyUsagePurpose::ServerAuth],
                ..LeafSpec::default()
            },
        );
        let (_d, wrong_eku_config) = trusting(wrong_eku.root.der(), "strict", SUBJECT);
        let e = rejected(&wrong_eku, &spec, &wrong_eku_config, &target);
        assert_eq!(e.check, Check::Integrity, "{e}");
        assert!(e.reason.contains("serverAuth"), "{e}");

        // A chain to a root the store does not hold.
        let stranger = Chain::new(&LeafSpec::default());
        let e = rejected(&stranger, &spec, &config, &target);
        assert_eq!(e.check, Check::Authenticity, "{e}");
        assert!(
            e.reason
                .contains("does not lead to a certificate of the trust stores"),
            "{e}"
        );

        // A signer outside trustedIdentities.
        let (_d, other_identity) = trusting(
            good.root.der(),
            "strict",
            "x509.subject: C=US, ST=WA, O=someone-else.io",
        );
        let e = rejected(&good, &spec, &other_identity, &target);
        assert_eq!(e.check, Check::Authenticity, "{e}");
        assert!(e.reason.contains("not a trusted identity"), "{e}");

        // An expired leaf.
        let now = OffsetDateTime::now_utc();
        let expired = Chain::under(
            make::root_ca("acrpull Test Root"),
            &LeafSpec {
                not_before: now - time::Duration::days(30),
                not_after: now - time::Duration::days(1),
                ..LeafSpec::default()
            },
        );
        let (_d, expired_config) = trusting(expired.root.der(), "strict", SUBJECT);
        let mut old = spec.clone();
        old.signing_time = now - time::Duration::days(2);
        let e = rejected(&expired, &old, &expired_config, &target);
        assert_eq!(e.check, Check::AuthenticTimestamp, "{e}");
        assert!(e.reason.contains("is not valid at"), "{e}");

        // A signature over another manifest.
        let other = Subject::of("application/vnd.oci.image.manifest.v1+json", b"{}");
        let e = rejected(&good, &SignSpec::new(&other), &config, &target);
        assert_eq!(e.check, Check::Integrity, "{e}");

        // A signature past its expiry.
        let mut stale = spec.clone();
        stale.signing_time = now - time::Duration::hours(2);
        stale.expiry = Some(now - time::Duration::hours(1));
        let e = rejected(&good, &stale, &config, &target);
        assert_eq!(e.check, Check::Expiry, "{e}");

        // A COSE envelope whose signature bytes were altered.
        let mut cose = make::sign_cose(&good, &spec);
        let last = cose.len() - 1;
        cose[last] ^= 0x55;
        let e = check(&config, &cose, envelope::COSE_MEDIA_TYPE, &target).unwrap_err();
        assert_eq!(e.check, Check::Integrity, "{e}");
    }

    #[test]
    fn audit_logs_an_untrusted_signer_and_permissive_an_expired_signature() {
        let target = image();
        let stranger = Chain::new(&LeafSpec::default());
        let trusted = Chain::new(&LeafSpec::default());
        let (_dir, audit) = trusting(trusted.root.der(), "audit", SUBJECT);
        let verified = check(
            &audit,
            &make::sign_jws(&stranger, &SignSpec::new(&target)),
            envelope::JWS_MEDIA_TYPE,
            &target,
        )
        .unwrap();
        assert_eq!(verified.warnings.len(), 1, "{:?}", verified.warnings);
        assert!(
            verified.warnings[0].contains("authenticity check failed"),
            "{:?}",
            verified.warnings
        );
        let authenticity = verified
            .checks
            .iter()
            .find(|c| c.check == "authenticity")
            .unwrap();
        assert_eq!(
            (authenticity.action, authenticity.result),
            ("log", "failed")
        );
        // Integrity stays enforced under audit.
        let other = Subject::of("application/vnd.oci.image.manifest.v1+json", b"{}");
        let e = check(
            &audit,
            &make::sign_jws(&stranger, &SignSpec::new(&other)),
            envelope::JWS_MEDIA_TYPE,
            &target,
        )
        .unwrap_err();
        assert_eq!(e.check, Check::Integrity);

        let (_dir, permissive) = trusting(trusted.root.der(), "permissive", SUBJECT);
        let now = OffsetDateTime::now_utc();
        let mut stale = SignSpec::new(&target);
        stale.signing_time = now - time::Duration::hours(2);
        stale.expiry = Some(now - time::Duration::hours(1));
        let verified = check(
            &permissive,
            &make::sign_cose(&trusted, &stale),
            envelope::COSE_MEDIA_TYPE,
            &target,
        )
        .unwrap();
        assert!(
            verified.warnings[0].contains("expiry check failed"),
            "{:?}",
            verified.warnings
        );
    }

    #[test]
    fn the_subject_match_is_a_subset_match_with_s_for_st_and_escapes() {
        let chain = Chain::new(&LeafSpec {
            subject: vec![
                (DnType::CountryName, "US".into()),
                (DnType::StateOrProvinceName, "WA".into()),
                (DnType::OrganizationName, "Acme, Inc.".into()),
                (DnType::CommonName, "Builder".into()),
            ],
            ..LeafSpec::default()
        });
        let target = image();
        let envelope = make::sign_jws(&chain, &SignSpec::new(&target));
        let (_d, matching) = trusting(
            chain.root.der(),
            "strict",
            r"x509.subject: C=US, S=WA, O=Acme\, Inc.",
        );
        check(&matching, &envelope, envelope::JWS_MEDIA_TYPE, &target).unwrap();
        let (_d, stricter) = trusting(
            chain.root.der(),
            "strict",
            r"x509.subject: C=US, ST=WA, O=Acme\, Inc., CN=Other",
        );
        let e = check(&stricter, &envelope, envelope::JWS_MEDIA_TYPE, &target).unwrap_err();
        assert_eq!(e.check, Check::Authenticity);
    }
}

mod policy_documents {
    use super::policy::{DistinguishedName, TrustPolicy};

    fn statement(name: &str, scopes: &str, level: &str, extra: &str) -> String {
        format!(
            r#"{{"name":"{name}","registryScopes":[{scopes}],"signatureVerification":{{"level":"{level}"{extra}}},"trustStores":["ca:acme"],"trustedIdentities":["*"]}}"#
        )
    }

    fn document(statements: &[String]) -> String {
        format!(
            r#"{{"version":"1.0","trustPolicies":[{}]}}"#,
            statements.join(",")
        )
    }

    fn refused(text: &str) -> String {
        TrustPolicy::parse(text.as_bytes()).expect_err(text).0
    }

    #[test]
    fn invalid_documents_are_refused_with_the_rule_they_break() {
        let one = statement("a", r#""registry.example/app""#, "strict", "");
        for (text, expected) in [
            (document(&[one.clone(), one.clone()]), "named `a`"),
            (document(&[one.clone(), statement("b", r#""registry.example/app""#, "strict", "")]), "may belong to one statement only"),
            (document(&[statement("a", r#""*","registry.example/app""#, "strict", "")]), "cannot be combined"),
            (document(&[statement("a", r#""registry.example/*""#, "strict", "")]), "not a fully qualified repository"),
            (document(&[statement("a", r#""app""#, "strict", "")]), "not a fully qualified repository"),
            (document(&[statement("a", "", "strict", "")]), "`registryScopes` is empty"),
            (document(&[statement("a", r#""*""#, "lenient", "")]), "not strict, permissive, audit or skip"),
            (document(&[statement("a", r#""*""#, "strict", r#","override":{"integrity":"log"}"#)]), "`integrity` cannot be overridden"),
            (document(&[statement("a", r#""*""#, "strict", r#","override":{"authenticity":"skip"}"#)]), "only revocation can"),
            (document(&[statement("a", r#""*""#, "skip", "")]), "remove them to skip"),
            (r#"{"version":"2.0","trustPolicies":[]}"#.to_string(), "version 1.0"),
            (r#"{"version":"1.0","trustPolicies":[]}"#.to_string(), "no statements"),
            (
                r#"{"version":"1.0","trustPolicies":[{"name":"a","registryScopes":["*"],"signatureVerification":{"level":"strict"},"trustStores":["ca:acme"],"trustedIdentities":["x509.subject: C=US, ST=WA, O=acme","x509.subject: C=US, ST=WA, O=acme, OU=build"]}]}"#.to_string(),
                "overlap",
            ),
            (
                r#"{"version":"1.0","trustPolicies":[{"name":"a","registryScopes":["*"],"signatureVerification":{"level":"strict"},"trustStores":["store"],"trustedIdentities":["*"]}]}"#.to_string(),
                "not TYPE:NAME",
            ),
        ] {
            let error = refused(&text);
            assert!(error.contains(expected), "{text}\n=> {error}");
        }
    }

    #[test]
    fn an_exact_scope_wins_over_the_global_one_and_an_unmatched_scope_is_refused() {
        let policy = TrustPolicy::parse(
            document(&[
                statement("global", r#""*""#, "audit", ""),
                statement(
                    "app",
                    r#""registry.example:5000/team/app""#,
                    "strict",
                    r#","override":{"revocation":"skip"}"#,
                ),
            ])
            .as_bytes(),
        )
        .unwrap();
        assert_eq!(
            policy
                .statement_for("registry.example:5000/team/app")
                .unwrap()
                .name,
            "app"
        );
        assert_eq!(
            policy
                .statement_for("registry.example:5000/team/other")
                .unwrap()
                .name,
            "global"
        );
        let only_app = TrustPolicy::parse(
            document(&[statement("app", r#""registry.example/app""#, "strict", "")]).as_bytes(),
        )
        .unwrap();
        let error = only_app
            .statement_for("registry.example/other")
            .unwrap_err()
            .0;
        assert!(
            error.contains("no trust policy statement applies"),
            "{error}"
        );
    }

    #[test]
    fn distinguished_names_follow_rfc4514_and_the_notary_rules() {
        let dn = DistinguishedName::parse(r" C=US, S=WA ,O=Acme\, Inc.;OU=\42uild\ ").unwrap();
        assert_eq!(dn.attributes["ST"], "WA");
        assert_eq!(dn.attributes["O"], "Acme, Inc.");
        assert_eq!(dn.attributes["OU"], "Build ");
        for bad in [
            "C=US, O=acme",
            "C=US, ST=WA, O=a, O=b",
            "C=US+ST=WA, O=a",
            "C=US, ST=WA, O=#0403",
            "C=US, ST=WA, O=a\\",
        ] {
            assert!(DistinguishedName::parse(bad).is_err(), "{bad}");
        }
    }
}
