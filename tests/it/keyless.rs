//! Keyless cosign verification (`--certificate-identity`, `--certificate-oidc-issuer`,
//! `--trusted-root`), offline. The signatures are made at test time by
//! `acrpull_testenv::sigstore`: a Fulcio-like CA issues the certificate (SAN, OIDC issuer
//! extensions, embedded SCT), a Rekor-like log records the entry (SET, Merkle tree,
//! checkpoint), and `trusted_root.json` names them; the signatures are pushed to the real
//! `docker-registry` as `.sig` tags and as v0.3 bundle referrers (tag schema).

use std::path::{Path, PathBuf};

use acrpull_testenv::artifacts::{push_artifacts, Artifact};
use acrpull_testenv::cosign::{self, SignedPayload};
use acrpull_testenv::registry::{Registry, RegistryOptions};
use acrpull_testenv::sigstore::{Identity, Signer, Sigstore};
use serde_json::{json, Value};

use crate::support::{fails, ok, run, Scratch};
use crate::verify::{block_on, pull, Image};

const EMAIL: &str = "builder@example.com";
const ISSUER: &str = "https://accounts.example.com";

/// A registry, a sigstore instance, its trusted root in a file, a scratch directory.
struct World {
    /// `None` once a test takes it away (air gap).
    registry: Option<Registry>,
    sigstore: Sigstore,
    scratch: Scratch,
    root: PathBuf,
}

impl World {
    fn new() -> World {
        let scratch = Scratch::new();
        let sigstore = Sigstore::new();
        let root = scratch.dir.path().join("trusted_root.json");
        std::fs::write(&root, sigstore.trusted_root(true).to_string()).unwrap();
        World {
            registry: Some(Registry::start(RegistryOptions::anonymous()).expect("registry")),
            sigstore,
            scratch,
            root,
        }
    }

    fn registry(&self) -> &Registry {
        self.registry.as_ref().expect("the registry is running")
    }

    fn home(&self) -> PathBuf {
        self.scratch.home()
    }

    /// A new image `repository:v1` whose `.sig` tag holds the layer `sign` makes.
    fn sig_image(&self, repository: &str, sign: impl Fn(&Image, &str) -> SignedPayload) -> String {
        let image = Image::new(self.scratch.dir.path(), repository);
        let reference = format!("{}/{repository}", self.registry().host());
        let layer = sign(&image, &reference);
        image.push(
            self.registry(),
            repository,
            &[&cosign::sig_manifest(&image.subject, &[layer])],
        );
        format!("{reference}:v1")
    }

    /// `image` as `repository:v1`, and `referrer` listed in the referrers tag schema (the real
    /// registry has no referrers API).
    fn push_with_tag_schema(&self, image: &Image, repository: &str, referrer: &Artifact) {
        image.push(self.registry(), repository, &[]);
        block_on(push_artifacts(
            &self.registry().url(),
            repository,
            &[referrer],
            true,
        ));
    }

    /// A new image whose `.sig` tag holds the layer `sign` makes, refused (exit 7): stderr.
    fn refused(&self, repository: &str, sign: impl Fn(&Image, &str) -> SignedPayload) -> String {
        let image = self.sig_image(repository, sign);
        refused(self, &image)
    }

    /// `acrpull verify --json --verify cosign` with the identity and issuer flags `flags`.
    fn verify(&self, flags: &[&str], image: &str) -> std::process::Output {
        let root = self.root.to_str().unwrap();
        let mut args = vec![
            "verify",
            "--json",
            "--verify",
            "cosign",
            "--trusted-root",
            root,
        ];
        args.extend_from_slice(flags);
        args.push(image);
        run(&self.home(), &args, None)
    }
}

const EXACT: [&str; 4] = [
    "--certificate-identity",
    EMAIL,
    "--certificate-oidc-issuer",
    ISSUER,
];

fn signer(world: &World) -> Signer {
    world.sigstore.issue(&Identity::email(EMAIL, ISSUER))
}

fn refused(world: &World, image: &str) -> String {
    fails(&world.verify(&EXACT, image), 7)
}

#[test]
fn a_keyless_sig_tag_verifies_names_the_signer_and_pulls() {
    let world = World::new();
    let signer = signer(&world);
    let image = world.sig_image("keyless", |image, reference| {
        world
            .sigstore
            .sign_layer(&signer, &image.subject, reference)
    });
    let verified: Value = serde_json::from_str(&ok(&world.verify(&EXACT, &image))).unwrap();
    assert_eq!(verified["scheme"], "cosign", "{verified}");
    assert_eq!(verified["level"], "keyless", "{verified}");
    assert_eq!(verified["signer"], EMAIL, "{verified}");
    assert_eq!(
        verified["identity"],
        json!({"subject": EMAIL, "issuer": ISSUER})
    );
    let checks = verified["checks"].to_string();
    for check in [
        "Rekor signed entry timestamp",
        "Rekor entry records this signature and certificate",
        "certificate valid at the log's integrated time",
        "certificate chain to the Fulcio CA https://fulcio.test",
        "certificate identity and OIDC issuer",
        "embedded SCT of CT log https://ctfe.test",
    ] {
        assert!(checks.contains(check), "{check} not in {checks}");
    }
    assert!(verified.get("skipped").is_none(), "{verified}");

    // The regexp flags match as cosign's do (anywhere; anchored here).
    let regexps = [
        "--certificate-identity-regexp",
        "^builder@example\\.com$",
        "--certificate-oidc-issuer-regexp",
        "accounts\\.example",
    ];
    ok(&world.verify(&regexps, &image));

    // A pull with the same flags verifies, then writes the root filesystem.
    let dest = world.scratch.dest("rootfs");
    let root = world.root.to_str().unwrap();
    let mut args = vec!["--json", "--verify", "cosign", "--trusted-root", root];
    args.extend_from_slice(&EXACT);
    let pulled: Value =
        serde_json::from_str(&ok(&pull(&world.home(), &args, &image, &dest))).unwrap();
    assert_eq!(pulled["verification"]["level"], "keyless", "{pulled}");
    assert_eq!(
        std::fs::read_to_string(dest.join("hello.txt")).unwrap(),
        "hello keyless"
    );

    // A copy verifies the source the same way before writing anything.
    let layout = world.scratch.dir.path().join("copied");
    let target = format!("oci:{}:v1", layout.display());
    let mut args = vec!["copy", "--verify", "cosign", "--trusted-root", root];
    args.extend_from_slice(&EXACT);
    args.extend([image.as_str(), target.as_str()]);
    ok(&run(&world.home(), &args, None));
    assert!(layout.join("index.json").exists());

    // Without the CT log in the trusted root, the SCT check is reported as skipped.
    let no_ct = world.scratch.dir.path().join("no_ct.json");
    std::fs::write(&no_ct, world.sigstore.trusted_root(false).to_string()).unwrap();
    let mut args = vec![
        "verify",
        "--json",
        "--verify",
        "cosign",
        "--trusted-root",
        no_ct.to_str().unwrap(),
    ];
    args.extend_from_slice(&EXACT);
    args.push(&image);
    let verified: Value = serde_json::from_str(&ok(&run(&world.home(), &args, None))).unwrap();
    assert!(
        verified["skipped"].to_string().contains("embedded SCT"),
        "{verified}"
    );
}

#[test]
fn a_keyless_bundle_referrer_verifies_with_its_inclusion_proof() {
    let world = World::new();
    let signer = signer(&world);
    let image = Image::new(world.scratch.dir.path(), "bundled");
    let bundle = world
        .sigstore
        .dsse_bundle(&signer, &cosign::statement(&image.subject.digest));
    let referrer = cosign::bundle_referrer(&image.subject, &bundle);
    world.push_with_tag_schema(&image, "bundled", &referrer);
    let name = format!("{}/bundled:v1", world.registry().host());
    let verified: Value = serde_json::from_str(&ok(&world.verify(&EXACT, &name))).unwrap();
    assert_eq!(
        verified["signature"],
        format!("bundle {}", referrer.digest()),
        "{verified}"
    );
    assert_eq!(verified["level"], "keyless");
    let checks = verified["checks"].to_string();
    assert!(
        checks.contains("Rekor inclusion proof to a signed checkpoint (tree size 6)"),
        "{checks}"
    );
    assert!(checks.contains("Rekor signed entry timestamp"), "{checks}");

    // Another image's bundle with one hash of its audit path changed.
    let image = Image::new(world.scratch.dir.path(), "proof");
    let mut tampered = world
        .sigstore
        .dsse_bundle(&signer, &cosign::statement(&image.subject.digest));
    let hashes =
        &mut tampered["verificationMaterial"]["tlogEntries"][0]["inclusionProof"]["hashes"];
    hashes[0] = json!(base64_flip(hashes[0].as_str().unwrap()));
    world.push_with_tag_schema(
        &image,
        "proof",
        &cosign::bundle_referrer(&image.subject, &tampered),
    );
    let stderr = refused(&world, &format!("{}/proof:v1", world.registry().host()));
    assert!(
        stderr.contains("the inclusion proof is invalid"),
        "{stderr}"
    );
    assert!(stderr.contains(&image.subject.digest), "{stderr}");

    // A genuine checkpoint of the log, for another tree than the proof's.
    let image = Image::new(world.scratch.dir.path(), "checkpoint");
    let mut bundle = world
        .sigstore
        .dsse_bundle(&signer, &cosign::statement(&image.subject.digest));
    let other = world.sigstore.log_with(
        &world.sigstore.rekor,
        b"another entry",
        "dsse",
        signer.signed_at,
    );
    bundle["verificationMaterial"]["tlogEntries"][0]["inclusionProof"]["checkpoint"]["envelope"] =
        json!(other.checkpoint);
    world.push_with_tag_schema(
        &image,
        "checkpoint",
        &cosign::bundle_referrer(&image.subject, &bundle),
    );
    let stderr = refused(
        &world,
        &format!("{}/checkpoint:v1", world.registry().host()),
    );
    assert!(
        stderr.contains("the checkpoint commits to tree size 6 root"),
        "{stderr}"
    );

    // A bundle whose Rekor entry is genuine but records another envelope of the same signer
    // (a statement with another predicate).
    let image = Image::new(world.scratch.dir.path(), "entry");
    let statement = cosign::statement(&image.subject.digest);
    let mut bundle = world.sigstore.dsse_bundle(&signer, &statement);
    let mut other: Value = serde_json::from_slice(&statement).unwrap();
    other["predicate"] = json!({"another": "statement"});
    let again = world
        .sigstore
        .dsse_bundle(&signer, &serde_json::to_vec(&other).unwrap());
    bundle["verificationMaterial"]["tlogEntries"] =
        again["verificationMaterial"]["tlogEntries"].clone();
    world.push_with_tag_schema(
        &image,
        "entry",
        &cosign::bundle_referrer(&image.subject, &bundle),
    );
    let stderr = refused(&world, &format!("{}/entry:v1", world.registry().host()));
    assert!(
        stderr.contains("transparency log: the Rekor entry records payload"),
        "{stderr}"
    );
}

/// `text` (base64) with its first byte changed.
fn base64_flip(text: &str) -> String {
    use base64::Engine as _;
    let engine = base64::engine::general_purpose::STANDARD;
    let mut bytes = engine.decode(text).unwrap();
    bytes[0] ^= 1;
    engine.encode(bytes)
}

#[test]
fn another_identity_is_refused_naming_the_san_found() {
    let world = World::new();
    let signer = world
        .sigstore
        .issue(&Identity::email("intruder@example.org", ISSUER));
    let stderr = world.refused("intruder", |image, reference| {
        world
            .sigstore
            .sign_layer(&signer, &image.subject, reference)
    });
    assert!(stderr.contains("signer identity mismatch"), "{stderr}");
    assert!(
        stderr.contains(&format!("certificate identity `{EMAIL}`")),
        "{stderr}"
    );
    assert!(
        stderr.contains("hint: the Fulcio certificate names another signer"),
        "{stderr}"
    );
    assert!(
        stderr.contains("found SAN intruder@example.org"),
        "{stderr}"
    );

    // Neither a pull nor a copy of it moves anything.
    let image = format!("{}/intruder:v1", world.registry().host());
    let root = world.root.to_str().unwrap();
    let mut flags = vec!["--verify", "cosign", "--trusted-root", root];
    flags.extend_from_slice(&EXACT);
    let dest = world.scratch.dest("rootfs");
    fails(&pull(&world.home(), &flags, &image, &dest), 7);
    assert!(!dest.exists(), "a refused pull wrote {}", dest.display());
    let layout = world.scratch.dir.path().join("copied");
    let target = format!("oci:{}:v1", layout.display());
    let mut args = vec!["copy"];
    args.extend_from_slice(&flags);
    args.extend([image.as_str(), target.as_str()]);
    fails(&run(&world.home(), &args, None), 7);
    assert!(
        !layout.join("index.json").exists(),
        "a refused copy wrote the layout"
    );
}

#[test]
fn another_oidc_issuer_is_refused() {
    let world = World::new();
    let signer = world
        .sigstore
        .issue(&Identity::email(EMAIL, "https://issuer.evil.example"));
    let stderr = world.refused("issuer", |image, reference| {
        world
            .sigstore
            .sign_layer(&signer, &image.subject, reference)
    });
    assert!(
        stderr.contains(&format!("expected OIDC issuer `{ISSUER}`")),
        "{stderr}"
    );
    assert!(stderr.contains("https://issuer.evil.example"), "{stderr}");
}

#[test]
fn a_certificate_from_another_ca_is_refused() {
    let world = World::new();
    let elsewhere = Sigstore::new();
    let signer = elsewhere.issue(&Identity::email(EMAIL, ISSUER));
    // Logged in the trusted Rekor, its chain annotation naming the trusted CA: only the
    // certificate's issuer is foreign.
    let stderr = world.refused("foreign", |image, reference| {
        world
            .sigstore
            .sign_layer(&signer, &image.subject, reference)
    });
    assert!(stderr.contains("untrusted certificate chain"), "{stderr}");
}

#[test]
fn a_signature_logged_after_the_certificate_expired_is_refused() {
    let world = World::new();
    let identity = Identity::email(EMAIL, ISSUER);
    let mut signer = world.sigstore.issue(&identity);
    signer.signed_at = identity.not_after.unix_timestamp() + 60;
    let stderr = world.refused("late", |image, reference| {
        world
            .sigstore
            .sign_layer(&signer, &image.subject, reference)
    });
    assert!(stderr.contains("expired:"), "{stderr}");
    assert!(stderr.contains("the signature was logged at"), "{stderr}");
}

#[test]
fn a_tampered_or_missing_signed_entry_timestamp_is_refused() {
    let world = World::new();
    let signer = signer(&world);
    let stderr = world.refused("set", |image, reference| {
        let mut layer = world
            .sigstore
            .sign_layer(&signer, &image.subject, reference);
        let mut annotation: Value =
            serde_json::from_str(layer.rekor_bundle.as_deref().unwrap()).unwrap();
        let set = annotation["SignedEntryTimestamp"]
            .as_str()
            .unwrap()
            .to_string();
        annotation["SignedEntryTimestamp"] = json!(base64_flip(&set));
        layer.rekor_bundle = Some(annotation.to_string());
        layer
    });
    assert!(
        stderr.contains("the signed entry timestamp (SET) does not verify"),
        "{stderr}"
    );
    assert!(
        stderr.contains("hint: a keyless signature is trusted only with its Rekor entry"),
        "{stderr}"
    );

    let stderr = world.refused("unlogged", |image, reference| {
        let mut layer = world
            .sigstore
            .sign_layer(&signer, &image.subject, reference);
        layer.rekor_bundle = None;
        layer
    });
    assert!(stderr.contains("has no Rekor entry"), "{stderr}");

    // A genuine entry of the log, for another signature by the same certificate.
    let stderr = world.refused("mismatched", |image, reference| {
        let mut layer = world
            .sigstore
            .sign_layer(&signer, &image.subject, reference);
        let other = world
            .sigstore
            .sign_layer(&signer, &image.subject, "elsewhere.example/app");
        layer.rekor_bundle = other.rekor_bundle;
        layer
    });
    assert!(
        stderr.contains("transparency log: the Rekor entry records"),
        "{stderr}"
    );
}

#[test]
fn a_keyless_signature_over_another_digest_is_refused() {
    let world = World::new();
    let signer = signer(&world);
    let other = Image::new(world.scratch.dir.path(), "other");
    let stderr = world.refused("replayed", |_, reference| {
        world
            .sigstore
            .sign_layer(&signer, &other.subject, reference)
    });
    assert!(
        stderr.contains("a signature over another digest"),
        "{stderr}"
    );
    assert!(stderr.contains(&other.subject.digest), "{stderr}");
}

#[test]
fn keyless_flags_need_an_identity_an_issuer_and_a_trusted_root_and_no_key() {
    let scratch = Scratch::new();
    let home = scratch.home();
    let root = scratch.dir.path().join("trusted_root.json");
    std::fs::write(&root, Sigstore::new().trusted_root(true).to_string()).unwrap();
    let root = root.to_str().unwrap();
    let key = scratch.dir.path().join("cosign.pub");
    std::fs::write(&key, cosign::Key::p256().public_pem()).unwrap();
    let image = "127.0.0.1:9/never:v1";
    let usage = |flags: &[&str], expected: &str| {
        let mut args = vec!["verify", "--verify", "cosign"];
        args.extend_from_slice(flags);
        args.push(image);
        let stderr = fails(&run(&home, &args, None), 2);
        assert!(stderr.contains(expected), "{flags:?}: {stderr}");
    };
    usage(
        &[
            "--cosign-key",
            key.to_str().unwrap(),
            "--certificate-identity",
            EMAIL,
        ],
        "give one or the other",
    );
    usage(
        &["--certificate-identity", EMAIL, "--trusted-root", root],
        "needs --certificate-oidc-issuer or --certificate-oidc-issuer-regexp",
    );
    usage(
        &["--certificate-oidc-issuer", ISSUER, "--trusted-root", root],
        "needs --certificate-identity or --certificate-identity-regexp",
    );
    usage(&EXACT, "needs --trusted-root FILE");
    usage(
        &[
            "--certificate-identity",
            EMAIL,
            "--certificate-identity-regexp",
            ".*",
            "--certificate-oidc-issuer",
            ISSUER,
            "--trusted-root",
            root,
        ],
        "not both",
    );
    usage(
        &[
            "--certificate-identity-regexp",
            "(unclosed",
            "--certificate-oidc-issuer",
            ISSUER,
            "--trusted-root",
            root,
        ],
        "--certificate-identity-regexp `(unclosed`",
    );
    // An unreadable trusted root is a trust configuration error (exit 7), before any request.
    let missing = Path::new(root).with_file_name("missing.json");
    let mut args = vec![
        "verify",
        "--verify",
        "cosign",
        "--trusted-root",
        missing.to_str().unwrap(),
    ];
    args.extend_from_slice(&EXACT);
    args.push(image);
    let stderr = fails(&run(&home, &args, None), 7);
    assert!(stderr.contains("trusted root"), "{stderr}");
}

#[test]
fn a_policy_fulcio_requirement_verifies_keyless_signatures_as_skopeo_does() {
    use base64::Engine as _;
    let world = World::new();
    let b64 = |text: &str| base64::engine::general_purpose::STANDARD.encode(text);
    let policy = world.scratch.dir.path().join("policy.json");
    let write = |requirement: Value| {
        let text = json!({"default": [requirement]}).to_string();
        std::fs::write(&policy, text).unwrap();
    };
    let fulcio = |email: &str| {
        json!({"type": "sigstoreSigned",
               "fulcio": {"caData": b64(&world.sigstore.chain_pem()),
                          "oidcIssuer": ISSUER, "subjectEmail": email},
               "rekorPublicKeyData": b64(&world.sigstore.rekor.public_pem()),
               "signedIdentity": {"type": "matchRepository"}})
    };
    let signer = signer(&world);
    let image = world.sig_image("policy", |image, reference| {
        world
            .sigstore
            .sign_layer(&signer, &image.subject, reference)
    });
    let verify = || {
        let args = [
            "verify",
            "--json",
            "--verify",
            "policy",
            "--policy",
            policy.to_str().unwrap(),
            &image,
        ];
        run(&world.home(), &args, None)
    };
    write(fulcio(EMAIL));
    let verified: Value = serde_json::from_str(&ok(&verify())).unwrap();
    assert_eq!(verified["level"], "sigstoreSigned", "{verified}");
    assert_eq!(verified["signer"], EMAIL, "{verified}");
    // skopeo checks no SCT; neither does a policy: said, not silent.
    assert!(
        verified["skipped"].to_string().contains("embedded SCT"),
        "{verified}"
    );

    write(fulcio("someone.else@example.com"));
    let stderr = fails(&verify(), 7);
    assert!(stderr.contains("signer identity mismatch"), "{stderr}");
    assert!(stderr.contains(EMAIL), "{stderr}");

    // subjectEmail is an email SAN: the same text as a URI SAN does not count (it would for
    // --certificate-identity, which compares every SAN as cosign does).
    write(fulcio(EMAIL));
    let uri_signer = world.sigstore.issue(&Identity::uri(EMAIL, ISSUER));
    let uri_image = world.sig_image("policy-uri", |image, reference| {
        world
            .sigstore
            .sign_layer(&uri_signer, &image.subject, reference)
    });
    let args = [
        "verify",
        "--verify",
        "policy",
        "--policy",
        policy.to_str().unwrap(),
        &uri_image,
    ];
    let stderr = fails(&run(&world.home(), &args, None), 7);
    assert!(stderr.contains("signer identity mismatch"), "{stderr}");
    ok(&world.verify(&EXACT, &uri_image));

    // Another Rekor key: the SET of the signature's entry is not trusted.
    let mut other_rekor = fulcio(EMAIL);
    other_rekor["rekorPublicKeyData"] = json!(b64(&cosign::Key::p256().public_pem()));
    write(other_rekor);
    let stderr = fails(&verify(), 7);
    assert!(stderr.contains("which the trusted root"), "{stderr}");

    // pki stays refused, saying so.
    write(json!({"type": "sigstoreSigned",
                 "pki": {"caRootsData": b64(&world.sigstore.chain_pem()), "subjectEmail": EMAIL},
                 "signedIdentity": {"type": "matchRepository"}}));
    let stderr = fails(&verify(), 7);
    assert!(
        stderr.contains("pki (a private CA) is not verified"),
        "{stderr}"
    );
}

#[test]
fn a_layout_staged_with_referrers_verifies_keyless_with_no_registry() {
    let mut world = World::new();
    let signer = signer(&world);
    let image = world.sig_image("staged", |image, reference| {
        world
            .sigstore
            .sign_layer(&signer, &image.subject, reference)
    });
    let bundled = Image::new(world.scratch.dir.path(), "bundled-staged");
    let bundle = world
        .sigstore
        .dsse_bundle(&signer, &cosign::statement(&bundled.subject.digest));
    world.push_with_tag_schema(
        &bundled,
        "bundled-staged",
        &cosign::bundle_referrer(&bundled.subject, &bundle),
    );
    let staged = world.scratch.dest("staged");
    let staged_bundle = world.scratch.dest("staged-bundle");
    let flags = ["--format", "oci", "--referrers"];
    ok(&pull(&world.home(), &flags, &image, &staged));
    let name = format!("{}/bundled-staged:v1", world.registry().host());
    ok(&pull(&world.home(), &flags, &name, &staged_bundle));
    // Only the layouts and the trusted root answer now.
    drop(world.registry.take());
    for layout in [&staged, &staged_bundle] {
        let layout = format!("oci:{}:v1", layout.display());
        let verified: Value = serde_json::from_str(&ok(&world.verify(&EXACT, &layout))).unwrap();
        assert_eq!(verified["level"], "keyless", "{verified}");
        assert_eq!(verified["identity"]["subject"], EMAIL, "{verified}");
    }
}
