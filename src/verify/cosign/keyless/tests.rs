//! The keyless verifier against a real bundle of sigstore's staging instance (a Fulcio
//! certificate, a Rekor entry with its SET, inclusion proof and checkpoint, an embedded SCT)
//! and the trusted root it was made under (`fixtures/sigstore/`, from sigstore-python's test
//! data): real data proves the checks follow sigstore, not only our own fixtures.

use super::*;
use crate::digest::Digest;
use crate::verify::cosign::bundle::Bundle;
use crate::verify::cosign::trusted_root::tests::fixture;

const EMAIL: &str = "william@yossarian.net";
const GITHUB: &str = "https://github.com/login/oauth";

fn keyless(subject: Matcher, issuer: Matcher) -> Keyless {
    let root = TrustedRoot::parse(&fixture("staging_trusted_root.json"), "staging").unwrap();
    Keyless {
        root,
        identity: Identity { subject, issuer },
    }
}

fn exact(text: &str) -> Matcher {
    Matcher::Exact(text.into())
}

fn regex(text: &str) -> Matcher {
    Matcher::Regex(regex::Regex::new(text).unwrap())
}

/// The real bundle, edited by `edit` (its JSON), checked against the real artifact.
fn check(
    keyless: &Keyless,
    edit: impl FnOnce(&mut serde_json::Value),
) -> Result<crate::verify::cosign::Accepted, Reason> {
    let mut json: serde_json::Value =
        serde_json::from_slice(&fixture("bundle_v3.txt.sigstore")).unwrap();
    edit(&mut json);
    let bundle = Bundle::parse(&serde_json::to_vec(&json).unwrap())?;
    let artifact = fixture("bundle_v3.txt");
    bundle.check_keyless(&Digest::sha256_of(&artifact), &artifact, keyless)
}

fn entry(json: &mut serde_json::Value) -> &mut serde_json::Value {
    &mut json["verificationMaterial"]["tlogEntries"][0]
}

#[test]
fn a_real_staging_bundle_verifies_every_check() {
    let accepted = check(&keyless(exact(EMAIL), exact(GITHUB)), |_| {}).unwrap();
    assert_eq!(
        accepted.identity,
        Some(SignerIdentity {
            subject: EMAIL.into(),
            issuer: GITHUB.into()
        })
    );
    let checks = accepted.checks.join("\n");
    for expected in [
        "Rekor signed entry timestamp (log https://rekor.sigstage.dev, index 25915956)",
        "Rekor inclusion proof to a signed checkpoint (tree size 25901138)",
        "Rekor entry records this signature and certificate",
        "certificate valid at the log's integrated time 2024-04-02T19:19:09Z",
        "certificate chain to the Fulcio CA https://fulcio.sigstage.dev",
        "embedded SCT of CT log https://ctfe.sigstage.dev/2022-2",
    ] {
        assert!(checks.contains(expected), "{expected} not in:\n{checks}");
    }
    assert!(accepted.skipped.is_empty(), "{:?}", accepted.skipped);
    // cosign's regexps match anywhere in the value.
    check(
        &keyless(regex("@yossarian\\.net$"), regex("github\\.com")),
        |_| {},
    )
    .unwrap();
}

#[test]
fn another_identity_or_issuer_is_refused_naming_what_was_found() {
    let reason = check(
        &keyless(exact("someone@example.com"), exact(GITHUB)),
        |_| {},
    )
    .unwrap_err();
    let Reason::IdentityMismatch { expected, found } = &reason else {
        panic!("{reason:?}");
    };
    assert!(expected.contains("someone@example.com"), "{expected}");
    assert!(found.contains(EMAIL) && found.contains(GITHUB), "{found}");
    // Exact means the whole value; an anchored regexp likewise.
    assert!(check(&keyless(exact("yossarian.net"), exact(GITHUB)), |_| {}).is_err());
    assert!(check(&keyless(regex("^yossarian"), exact(GITHUB)), |_| {}).is_err());

    let reason = check(
        &keyless(exact(EMAIL), exact("https://accounts.google.com")),
        |_| {},
    )
    .unwrap_err();
    assert!(
        matches!(&reason, Reason::IdentityMismatch { expected, .. } if expected.contains("OIDC issuer")),
        "{reason:?}"
    );
}

#[test]
fn a_tampered_set_inclusion_proof_or_checkpoint_is_refused() {
    let keyless = keyless(exact(EMAIL), exact(GITHUB));
    let reason = check(&keyless, |json| {
        // Another integrated time: the SET no longer covers it.
        entry(json)["integratedTime"] = "1712085550".into();
    })
    .unwrap_err();
    assert!(
        reason
            .to_string()
            .contains("signed entry timestamp (SET) does not verify"),
        "{reason}"
    );

    let reason = check(&keyless, |json| {
        entry(json)["inclusionProof"]["hashes"][3] =
            "SxC6nr0zP+a6kWb6nO2fmEtz8BYAbqEXc+dsqGLdRPM=".into();
    })
    .unwrap_err();
    assert!(
        reason.to_string().contains("inclusion proof is invalid"),
        "{reason}"
    );

    let reason = check(&keyless, |json| {
        let checkpoint = &mut entry(json)["inclusionProof"]["checkpoint"]["envelope"];
        let text = checkpoint
            .as_str()
            .unwrap()
            .replacen("25901138", "25901139", 1);
        *checkpoint = text.into();
    })
    .unwrap_err();
    assert!(reason.to_string().contains("checkpoint"), "{reason}");

    // The SET removed and the integrated time moved: the proof still holds, but nothing
    // signed says when the entry was logged, so the certificate's validity cannot be judged.
    let reason = check(&keyless, |json| {
        entry(json)
            .as_object_mut()
            .unwrap()
            .remove("inclusionPromise");
        entry(json)["integratedTime"] = "1712085600".into();
    })
    .unwrap_err();
    assert!(
        reason.to_string().contains("has no signed entry timestamp"),
        "{reason}"
    );

    // No entry at all.
    let reason = check(&keyless, |json| {
        json["verificationMaterial"]["tlogEntries"] = serde_json::json!([]);
    })
    .unwrap_err();
    assert!(
        reason.to_string().contains("has no Rekor entry"),
        "{reason}"
    );
}

#[test]
fn an_untrusted_ca_or_a_log_outside_the_root_is_refused() {
    // The CA's root without its intermediate: no path from the leaf to the root.
    let mut no_intermediate = keyless(exact(EMAIL), exact(GITHUB));
    no_intermediate.root.authorities[0].intermediates.clear();
    let reason = check(&no_intermediate, |_| {}).unwrap_err();
    assert!(matches!(reason, Reason::UntrustedChain(_)), "{reason:?}");
    // No CA at all.
    let mut no_ca = keyless(exact(EMAIL), exact(GITHUB));
    no_ca.root.authorities.clear();
    let reason = check(&no_ca, |_| {}).unwrap_err();
    assert!(matches!(reason, Reason::UntrustedChain(_)), "{reason:?}");

    let mut no_log = keyless(exact(EMAIL), exact(GITHUB));
    no_log
        .root
        .tlogs
        .retain(|l| l.name != "https://rekor.sigstage.dev");
    let reason = check(&no_log, |_| {}).unwrap_err();
    assert!(
        reason
            .to_string()
            .contains("which the trusted root staging does not name"),
        "{reason}"
    );
}

#[test]
fn another_artifact_is_a_digest_mismatch() {
    let keyless = keyless(exact(EMAIL), exact(GITHUB));
    let bundle = Bundle::parse(&fixture("bundle_v3.txt.sigstore")).unwrap();
    let other = b"another artifact".to_vec();
    let reason = bundle
        .check_keyless(&Digest::sha256_of(&other), &other, &keyless)
        .unwrap_err();
    assert!(
        matches!(reason, Reason::DigestMismatch { .. }),
        "{reason:?}"
    );
}

#[test]
fn a_tampered_sct_is_refused_and_no_ct_log_is_a_skipped_check() {
    let keyless = keyless(exact(EMAIL), exact(GITHUB));
    let mut no_ct = keyless.clone();
    no_ct.root.ctlogs.clear();
    let accepted = check(&no_ct, |_| {}).unwrap();
    assert!(
        accepted
            .skipped
            .iter()
            .any(|s| s.starts_with("embedded SCT")),
        "{:?}",
        accepted.skipped
    );

    let mut wrong_ct = keyless.clone();
    for log in &mut wrong_ct.root.ctlogs {
        log.key = Err("not this one".into());
    }
    let reason = check(&wrong_ct, |_| {}).unwrap_err();
    assert!(
        reason.to_string().contains("certificate transparency"),
        "{reason}"
    );

    // The CT log's ID kept, its key another (Rekor's): the SCT's signature does not verify.
    let mut forged_ct = keyless.clone();
    let rekor_key = forged_ct.root.tlogs[0].key.clone();
    for log in &mut forged_ct.root.ctlogs {
        log.key = rekor_key.clone();
    }
    let reason = check(&forged_ct, |_| {}).unwrap_err();
    assert!(
        reason
            .to_string()
            .contains("the SCT does not verify with the key of CT log"),
        "{reason}"
    );
}

#[test]
fn a_real_public_good_bundle_of_a_github_workflow_verifies() {
    // sigstore's production instance: a GitHub Actions certificate (a URI SAN) as a v0.2
    // bundle's x509CertificateChain, under the public-good trusted root.
    let root =
        TrustedRoot::parse(&fixture("public_good_trusted_root.json"), "public-good").unwrap();
    let workflow =
        "https://github.com/trailofbits/rfc8785.py/.github/workflows/release.yml@refs/tags/v0.1.2";
    let actions = "https://token.actions.githubusercontent.com";
    let keyless = |subject: Matcher| Keyless {
        root: root.clone(),
        identity: Identity {
            subject,
            issuer: exact(actions),
        },
    };
    let bundle = Bundle::parse(&fixture("bundle_v3_github.whl.sigstore")).unwrap();
    let artifact = fixture("bundle_v3_github.whl");
    let digest = Digest::sha256_of(&artifact);
    let accepted = bundle
        .check_keyless(&digest, &artifact, &keyless(exact(workflow)))
        .unwrap();
    assert_eq!(accepted.signer, workflow);
    let checks = accepted.checks.join("\n");
    assert!(
        checks.contains("Rekor inclusion proof to a signed checkpoint"),
        "{checks}"
    );
    assert!(
        checks.contains("embedded SCT of CT log https://ctfe.sigstore.dev/2022"),
        "{checks}"
    );
    // Any workflow of the repository, anchored as cosign users anchor it.
    let repository = regex("^https://github\\.com/trailofbits/rfc8785\\.py/");
    bundle
        .check_keyless(&digest, &artifact, &keyless(repository))
        .unwrap();
    let other = regex("^https://github\\.com/trailofbits/other/");
    let reason = bundle
        .check_keyless(&digest, &artifact, &keyless(other))
        .unwrap_err();
    assert!(
        matches!(reason, Reason::IdentityMismatch { .. }),
        "{reason:?}"
    );
    // Under the staging root the same bundle is not trusted.
    let staging = Keyless {
        root: TrustedRoot::parse(&fixture("staging_trusted_root.json"), "staging").unwrap(),
        identity: Identity {
            subject: exact(workflow),
            issuer: exact(actions),
        },
    };
    assert!(matches!(
        bundle.check_keyless(&digest, &artifact, &staging),
        Err(Reason::Transparency(_))
    ));
}

#[test]
fn a_log_or_ca_outside_its_valid_for_window_is_not_trusted() {
    let before = OffsetDateTime::from_unix_timestamp(1_712_000_000).ok();
    let mut old_log = keyless(exact(EMAIL), exact(GITHUB));
    old_log.root.tlogs[0].valid.end = before;
    let reason = check(&old_log, |_| {}).unwrap_err();
    assert!(
        reason
            .to_string()
            .contains("is not trusted at the entry's integrated time"),
        "{reason}"
    );
    let mut old_ca = keyless(exact(EMAIL), exact(GITHUB));
    old_ca.root.authorities[0].valid.end = before;
    let reason = check(&old_ca, |_| {}).unwrap_err();
    assert!(
        matches!(&reason, Reason::UntrustedChain(text) if text.contains("no certificate authority")),
        "{reason:?}"
    );
}
