//! `--verify`: cosign signatures and the containers policy.json, checked after the manifest is
//! resolved and before any layer moves. Signatures are made for real by
//! `acrpull_testenv::cosign` with keys generated per test, stored as cosign stores them:
//! `.sig` tags on the real `docker-registry`, sigstore bundles as referrers on the fake
//! referrers-capable registry, both inside OCI layouts for offline verification.

use std::path::{Path, PathBuf};

use acrpull_testenv::artifacts::{push_artifacts, push_raw, write_into_layout, Artifact, Subject};
use acrpull_testenv::cosign::{self, Key, SignedPayload};
use acrpull_testenv::fixtures::{Layout, OCI_MANIFEST};
use acrpull_testenv::oci_registry::OciRegistry;
use acrpull_testenv::proxy::FaultProxy;
use acrpull_testenv::registry::{skopeo_copy, Registry, RegistryOptions};
use serde_json::{json, Value};

use crate::support::{fails, make_layout, ok, run, Scratch};

/// A one-layer image in a layout, and its manifest as a subject.
pub(crate) struct Image {
    pub(crate) layout: PathBuf,
    pub(crate) subject: Subject,
}

impl Image {
    pub(crate) fn new(dir: &Path, name: &str) -> Image {
        let layout = dir.join(name);
        make_layout(
            &layout,
            &[vec![("hello.txt", format!("hello {name}").into_bytes())]],
        );
        let opened = Layout::open(&layout).unwrap();
        let main = opened.main_ref().unwrap();
        let bytes = opened.blob(&main.digest).unwrap();
        Image {
            subject: Subject::of(&main.media_type, &bytes),
            layout,
        }
    }

    /// Digests of the image's layers (what a refused pull must not download).
    pub(crate) fn layers(&self) -> Vec<String> {
        let layout = Layout::open(&self.layout).unwrap();
        let (_, layers) = layout.image_parts(&self.subject.digest).unwrap();
        layers.into_iter().map(|l| l.digest).collect()
    }

    /// Onto the real registry as `repository:v1`, with `artifacts` (cosign tags and all).
    pub(crate) fn push(&self, registry: &Registry, repository: &str, artifacts: &[&Artifact]) {
        skopeo_copy(
            &format!("oci:{}:v1", self.layout.display()),
            &format!("docker://{}/{repository}:v1", registry.host()),
            &["--preserve-digests"],
        )
        .unwrap();
        block_on(push_artifacts(
            &registry.url(),
            repository,
            artifacts,
            false,
        ));
    }

    /// Onto the fake referrers registry as `app:v1`, with `artifacts`.
    pub(crate) fn push_api(&self, registry: &OciRegistry, artifacts: &[&Artifact]) {
        let layout = Layout::open(&self.layout).unwrap();
        let blobs: Vec<(String, Vec<u8>)> = layout
            .reachable(&self.subject.digest)
            .unwrap()
            .into_iter()
            .filter(|d| d != &self.subject.digest)
            .map(|d| {
                let bytes = layout.blob(&d).unwrap();
                (d, bytes)
            })
            .collect();
        let manifest = layout.blob(&self.subject.digest).unwrap();
        block_on(push_raw(
            &registry.url(),
            "app",
            &blobs,
            &[("v1".to_owned(), manifest, OCI_MANIFEST.to_owned())],
        ));
        block_on(push_artifacts(&registry.url(), "app", artifacts, false));
    }
}

pub(crate) fn block_on(work: impl std::future::Future<Output = anyhow::Result<()>>) {
    tokio::runtime::Runtime::new()
        .unwrap()
        .block_on(work)
        .unwrap();
}

/// `key`'s public half in a file.
fn public_key(dir: &Path, name: &str, key: &Key) -> String {
    let path = dir.join(format!("{name}.pub"));
    std::fs::write(&path, key.public_pem()).unwrap();
    path.display().to_string()
}

/// `acrpull pull --no-cache ARGS... IMAGE DEST`.
pub(crate) fn pull(home: &Path, args: &[&str], image: &str, dest: &Path) -> std::process::Output {
    let mut all = vec!["pull", "--no-cache"];
    all.extend_from_slice(args);
    all.extend([image, dest.to_str().unwrap()]);
    run(home, &all, None)
}

/// `acrpull verify --verify cosign --cosign-key KEY IMAGE`.
fn verify_cosign(home: &Path, key: &str, image: &str) -> std::process::Output {
    run(
        home,
        &[
            "verify",
            "--json",
            "--verify",
            "cosign",
            "--cosign-key",
            key,
            image,
        ],
        None,
    )
}

#[test]
fn cosign_sig_tags_verify_with_every_key_kind_and_pull_reports_the_verification() {
    let registry = Registry::start(RegistryOptions::anonymous()).expect("registry");
    let scratch = Scratch::new();
    let home = scratch.home();
    let keys = [
        ("p256", Key::p256()),
        ("p384", Key::p384()),
        ("rsa", Key::rsa()),
        ("ed25519", Key::ed25519()),
    ];
    for (name, key) in &keys {
        let image = Image::new(scratch.dir.path(), name);
        let repository = format!("signed/{name}");
        let reference = format!("{}/{repository}", registry.host());
        image.push(
            &registry,
            &repository,
            &[&cosign::signed(key, &image.subject, &reference)],
        );
        let pem = public_key(scratch.dir.path(), name, key);
        let verified: Value =
            serde_json::from_str(&ok(&verify_cosign(&home, &pem, &format!("{reference}:v1"))))
                .unwrap();
        assert_eq!(verified["scheme"], "cosign", "{name}: {verified}");
        assert_eq!(verified["digest"], image.subject.digest.as_str());
        assert_eq!(verified["level"], "keyed");
        assert!(
            verified["signer"].as_str().unwrap().contains("key sha256:"),
            "{verified}"
        );
        assert!(verified.get("warnings").is_none(), "{verified}");
    }
    // A pull carries the verification in --json, and writes the root filesystem.
    let (_, key) = &keys[0];
    let pem = public_key(scratch.dir.path(), "p256", key);
    let dest = scratch.dest("rootfs");
    let pulled: Value = serde_json::from_str(&ok(&pull(
        &home,
        &["--json", "--verify", "cosign", "--cosign-key", &pem],
        &format!("{}/signed/p256:v1", registry.host()),
        &dest,
    )))
    .unwrap();
    assert_eq!(pulled["verification"]["scheme"], "cosign", "{pulled}");
    assert_eq!(
        std::fs::read_to_string(dest.join("hello.txt")).unwrap(),
        "hello p256"
    );
}

#[test]
fn every_cosign_rejection_exits_7_and_names_the_digest_and_the_reason() {
    let registry = Registry::start(RegistryOptions::anonymous()).expect("registry");
    let scratch = Scratch::new();
    let home = scratch.home();
    let key = Key::p256();
    let pem = public_key(scratch.dir.path(), "signer", &key);
    let image_of = |name: &str, artifacts: &dyn Fn(&Subject, &str) -> Vec<Artifact>| {
        let image = Image::new(scratch.dir.path(), name);
        let reference = format!("{}/{name}", registry.host());
        let made = artifacts(&image.subject, &reference);
        image.push(&registry, name, &made.iter().collect::<Vec<_>>());
        (image, format!("{reference}:v1"))
    };

    // The payload changed after it was signed.
    let (image, reference) = image_of("tampered", &|subject, reference| {
        let mut signed = SignedPayload::new(&key, subject, reference);
        signed.payload = cosign::payload(&subject.digest, "evil.example/other");
        vec![cosign::sig_manifest(subject, &[signed])]
    });
    let stderr = fails(&verify_cosign(&home, &pem, &reference), 7);
    assert!(stderr.contains(&image.subject.digest), "{stderr}");
    assert!(stderr.contains("does not verify"), "{stderr}");
    assert!(
        stderr.contains("hint: the signature was not made with this key"),
        "{stderr}"
    );

    // A valid signature of another image, put under this image's tag.
    let other = Image::new(scratch.dir.path(), "other");
    let (_, reference) = image_of("replayed", &|subject, reference| {
        let signed = SignedPayload::new(&key, &other.subject, reference);
        vec![cosign::sig_manifest(subject, &[signed])]
    });
    let stderr = fails(&verify_cosign(&home, &pem, &reference), 7);
    assert!(
        stderr.contains(&format!("it signs {}", other.subject.digest)),
        "{stderr}"
    );

    // Signed, but with another key.
    let stranger = Key::p256();
    let (_, reference) = image_of("wrong-key", &|subject, reference| {
        vec![cosign::signed(&stranger, subject, reference)]
    });
    let stderr = fails(&verify_cosign(&home, &pem, &reference), 7);
    assert!(
        stderr.contains("does not verify with the ECDSA P-256 key"),
        "{stderr}"
    );

    // No signature at all.
    let (image, reference) = image_of("unsigned", &|_, _| Vec::new());
    let stderr = fails(&verify_cosign(&home, &pem, &reference), 7);
    assert!(
        stderr.contains(&format!(
            "({}) has no cosign signature",
            image.subject.digest
        )),
        "{stderr}"
    );
    assert!(stderr.contains(".sig"), "{stderr}");

    // One bad signature beside a good one: accepted, the bad one listed.
    let (_, reference) = image_of("mixed", &|subject, reference| {
        let good = SignedPayload::new(&key, subject, reference);
        let bad = SignedPayload::new(&stranger, subject, reference);
        vec![cosign::sig_manifest(subject, &[bad, good])]
    });
    let verified: Value =
        serde_json::from_str(&ok(&verify_cosign(&home, &pem, &reference))).unwrap();
    assert_eq!(verified["rejected"][0]["reason"]["kind"], "bad_signature");

    // A key file that is not a public key: refused before any request.
    let private = scratch.dir.path().join("private.pem");
    std::fs::write(
        &private,
        "-----BEGIN EC PRIVATE KEY-----\nAAAA\n-----END EC PRIVATE KEY-----\n",
    )
    .unwrap();
    let stderr = fails(
        &verify_cosign(&home, private.to_str().unwrap(), &reference),
        7,
    );
    assert!(stderr.contains("private.pem"), "{stderr}");
    // --verify cosign without a key is a usage error.
    let stderr = fails(
        &run(&home, &["verify", "--verify", "cosign", &reference], None),
        2,
    );
    assert!(stderr.contains("needs --cosign-key"), "{stderr}");
}

#[test]
fn a_refused_pull_downloads_no_layer_and_leaves_dest_absent() {
    let registry = Registry::start(RegistryOptions::anonymous()).expect("registry");
    let proxy = FaultProxy::start(&registry.url()).expect("proxy");
    let scratch = Scratch::new();
    let home = scratch.home();
    let image = Image::new(scratch.dir.path(), "refused");
    let signer = Key::p256();
    image.push(
        &registry,
        "app",
        &[&cosign::signed(&signer, &image.subject, "app")],
    );
    let stranger = Key::p256();
    let pem = public_key(scratch.dir.path(), "stranger", &stranger);
    for format in ["rootfs", "oci"] {
        let dest = scratch.dest(format);
        let stderr = fails(
            &pull(
                &home,
                &[
                    "--format",
                    format,
                    "--verify",
                    "cosign",
                    "--cosign-key",
                    &pem,
                ],
                &format!("{}/app:v1", proxy.host()),
                &dest,
            ),
            7,
        );
        assert!(
            stderr.contains("no cosign signature was accepted"),
            "{stderr}"
        );
        assert!(!dest.exists(), "{format}: DEST was created");
    }
    let requests = proxy.requests();
    for layer in image.layers() {
        assert!(
            requests.iter().all(|r| !r.path.contains(&layer)),
            "layer {layer} was requested: {requests:#?}"
        );
    }
    // The same pull with the signer's key goes through the same proxy.
    let pem = public_key(scratch.dir.path(), "signer", &signer);
    let dest = scratch.dest("accepted");
    ok(&pull(
        &home,
        &["--verify", "cosign", "--cosign-key", &pem],
        &format!("{}/app:v1", proxy.host()),
        &dest,
    ));
    assert!(dest.join("hello.txt").is_file());
}

#[test]
fn sigstore_bundles_as_referrers_verify_and_a_bundle_for_another_digest_does_not() {
    let registry = OciRegistry::start().expect("registry");
    let scratch = Scratch::new();
    let home = scratch.home();
    let key = Key::p256();
    let pem = public_key(scratch.dir.path(), "signer", &key);
    let image = Image::new(scratch.dir.path(), "bundled");
    let other = Image::new(scratch.dir.path(), "elsewhere");
    let good = cosign::bundle_referrer(
        &image.subject,
        &cosign::dsse_bundle(&key, &cosign::statement(&image.subject.digest)),
    );
    image.push_api(&registry, &[&good]);
    let reference = format!("{}/app:v1", registry.host());
    let verified: Value =
        serde_json::from_str(&ok(&verify_cosign(&home, &pem, &reference))).unwrap();
    assert_eq!(
        verified["signature"],
        format!("bundle {}", good.digest()),
        "{verified}"
    );

    // Only a bundle whose statement names another image.
    let registry = OciRegistry::start().expect("registry");
    let replayed = cosign::bundle_referrer(
        &image.subject,
        &cosign::dsse_bundle(&key, &cosign::statement(&other.subject.digest)),
    );
    image.push_api(&registry, &[&replayed]);
    let stderr = fails(
        &verify_cosign(&home, &pem, &format!("{}/app:v1", registry.host())),
        7,
    );
    assert!(
        stderr.contains(&format!("bundle {}", replayed.digest())),
        "{stderr}"
    );
    assert!(stderr.contains(&other.subject.digest), "{stderr}");

    // A registry listing 1,000 bundles is not followed: refused after a few pages.
    let registry = OciRegistry::start().expect("registry");
    image.push_api(&registry, &[]);
    let listed: Vec<Value> = (0..1000)
        .map(|i| {
            json!({"mediaType": OCI_MANIFEST,
                   "digest": format!("sha256:{:064x}", i),
                   "size": 100, "artifactType": cosign::BUNDLE_V03})
        })
        .collect();
    registry.faults(|f| {
        f.extra_listed.insert(image.subject.digest.clone(), listed);
    });
    let stderr = fails(
        &verify_cosign(&home, &pem, &format!("{}/app:v1", registry.host())),
        7,
    );
    assert!(stderr.contains("more than 256 referrers"), "{stderr}");
    let requests = registry.requests();
    assert!(
        requests.len() < 20,
        "{} requests: {requests:?}",
        requests.len()
    );
}

#[test]
fn a_layout_staged_with_referrers_verifies_offline() {
    let registry = Registry::start(RegistryOptions::anonymous()).expect("registry");
    let scratch = Scratch::new();
    let home = scratch.home();
    let key = Key::ed25519();
    let pem = public_key(scratch.dir.path(), "signer", &key);
    let image = Image::new(scratch.dir.path(), "staged");
    let reference = format!("{}/app", registry.host());
    image.push(
        &registry,
        "app",
        &[&cosign::signed(&key, &image.subject, &reference)],
    );
    let staged = scratch.dest("staged");
    ok(&pull(
        &home,
        &["--format", "oci", "--referrers"],
        &format!("{reference}:v1"),
        &staged,
    ));
    drop(registry);
    // The registry is gone: only the layout answers.
    let layout = format!("oci:{}:v1", staged.display());
    ok(&verify_cosign(&home, &pem, &layout));
    let rootfs = scratch.dest("rootfs");
    ok(&pull(
        &home,
        &["--verify", "cosign", "--cosign-key", &pem],
        &layout,
        &rootfs,
    ));
    assert!(rootfs.join("hello.txt").is_file());
    // A layout without its signatures: refused, with the hint to stage them.
    let bare = Image::new(scratch.dir.path(), "bare");
    let stderr = fails(
        &verify_cosign(&home, &pem, &format!("oci:{}:v1", bare.layout.display())),
        7,
    );
    assert!(stderr.contains("--referrers"), "{stderr}");
    // A bundle written into a layout (untagged, found by its subject) verifies too.
    let bundle = cosign::bundle_referrer(
        &bare.subject,
        &cosign::dsse_bundle(&key, &cosign::statement(&bare.subject.digest)),
    );
    write_into_layout(&bare.layout, &bundle).unwrap();
    ok(&verify_cosign(
        &home,
        &pem,
        &format!("oci:{}:v1", bare.layout.display()),
    ));
}

#[test]
fn containers_policy_scopes_reject_and_sigstore_signed_identities() {
    let registry = Registry::start(RegistryOptions::anonymous()).expect("registry");
    let scratch = Scratch::new();
    let home = scratch.home();
    let key = Key::p256();
    public_key(scratch.dir.path(), "signer", &key);
    let host = registry.host();
    let trusted = Image::new(scratch.dir.path(), "trusted");
    trusted.push(
        &registry,
        "team/app",
        &[&cosign::signed(
            &key,
            &trusted.subject,
            &format!("{host}/team/app"),
        )],
    );
    let open = Image::new(scratch.dir.path(), "open");
    open.push(&registry, "public/tool", &[]);
    let policy = scratch.dir.path().join("policy.json");
    let write_policy = |identity: Value| {
        let document = json!({
            "default": [{"type": "reject"}],
            "transports": {"docker": {
                format!("{host}/team"): [{"type": "sigstoreSigned", "keyPath": "signer.pub",
                                          "signedIdentity": identity}],
                format!("{host}/public"): [{"type": "insecureAcceptAnything"}],
            }},
        });
        std::fs::write(&policy, serde_json::to_vec_pretty(&document).unwrap()).unwrap();
    };
    let verify = |image: &str| {
        run(
            &home,
            &[
                "verify",
                "--json",
                "--verify",
                "policy",
                "--policy",
                policy.to_str().unwrap(),
                image,
            ],
            None,
        )
    };
    write_policy(json!({"type": "matchRepository"}));
    let accepted: Value =
        serde_json::from_str(&ok(&verify(&format!("{host}/team/app:v1")))).unwrap();
    assert_eq!(accepted["scheme"], "policy");
    assert_eq!(accepted["level"], "sigstoreSigned");
    assert!(
        accepted["policy"]
            .as_str()
            .unwrap()
            .ends_with(&format!("transports.docker.\"{host}/team\"")),
        "{accepted}"
    );
    let anything: Value =
        serde_json::from_str(&ok(&verify(&format!("{host}/public/tool:v1")))).unwrap();
    assert_eq!(anything["level"], "insecureAcceptAnything");

    // The default scope rejects whatever no scope names, before any layer.
    trusted.push(&registry, "elsewhere/app", &[]);
    let stderr = fails(&verify(&format!("{host}/elsewhere/app:v1")), 7);
    assert!(stderr.contains("is refused by"), "{stderr}");
    assert!(stderr.contains("default (reject)"), "{stderr}");

    // cosign claims a repository; the default matcher wants more: identity mismatch.
    write_policy(json!({"type": "matchRepoDigestOrExact"}));
    let stderr = fails(&verify(&format!("{host}/team/app:v1")), 7);
    assert!(stderr.contains("signer identity mismatch"), "{stderr}");
    write_policy(
        json!({"type": "exactRepository", "dockerRepository": format!("{host}/team/other")}),
    );
    fails(&verify(&format!("{host}/team/app:v1")), 7);

    // A pull under the policy: refused ones leave nothing, accepted ones unpack.
    write_policy(json!({"type": "matchRepository"}));
    let dest = scratch.dest("pulled");
    ok(&pull(
        &home,
        &["--verify", "policy", "--policy", policy.to_str().unwrap()],
        &format!("{host}/team/app:v1"),
        &dest,
    ));
    assert!(dest.join("hello.txt").is_file());

    // An invalid policy is refused as a whole.
    std::fs::write(&policy, r#"{"default": []}"#).unwrap();
    let stderr = fails(&verify(&format!("{host}/public/tool:v1")), 7);
    assert!(stderr.contains("must not be empty"), "{stderr}");
}

#[test]
fn a_policy_with_a_rekor_key_needs_the_rekor_entry_of_the_signature() {
    let registry = Registry::start(RegistryOptions::anonymous()).expect("registry");
    let scratch = Scratch::new();
    let home = scratch.home();
    let host = registry.host();
    let (key, rekor, other_rekor) = (Key::p256(), Key::p256(), Key::p256());
    public_key(scratch.dir.path(), "signer", &key);
    public_key(scratch.dir.path(), "rekor", &rekor);
    let policy = scratch.dir.path().join("policy.json");
    std::fs::write(
        &policy,
        json!({"default": [{"type": "sigstoreSigned", "keyPath": "signer.pub",
                             "rekorPublicKeyPath": "rekor.pub",
                             "signedIdentity": {"type": "matchRepository"}}]})
        .to_string(),
    )
    .unwrap();
    let verify = |repository: &str, layer: &dyn Fn(&Subject, &str) -> SignedPayload| {
        let image = Image::new(scratch.dir.path(), repository);
        let reference = format!("{host}/{repository}");
        let signed = layer(&image.subject, &reference);
        image.push(
            &registry,
            repository,
            &[&cosign::sig_manifest(&image.subject, &[signed])],
        );
        let args = ["verify", "--json", "--verify", "policy", "--policy"];
        let mut all = args.to_vec();
        all.push(policy.to_str().unwrap());
        let image = format!("{reference}:v1");
        all.push(&image);
        run(&home, &all, None)
    };
    let logged = verify("logged", &|subject, reference| {
        SignedPayload::new(&key, subject, reference).logged(&rekor, &key)
    });
    let accepted: Value = serde_json::from_str(&ok(&logged)).unwrap();
    assert!(
        accepted["signature"]
            .as_str()
            .unwrap()
            .ends_with("(Rekor log index 7)"),
        "{accepted}"
    );

    let unlogged = verify("unlogged", &|subject, reference| {
        SignedPayload::new(&key, subject, reference)
    });
    let stderr = fails(&unlogged, 7);
    assert!(stderr.contains("has no Rekor entry"), "{stderr}");

    let forged = verify("forged", &|subject, reference| {
        SignedPayload::new(&key, subject, reference).logged(&other_rekor, &key)
    });
    let stderr = fails(&forged, 7);
    assert!(
        stderr.contains("does not verify with the Rekor key"),
        "{stderr}"
    );

    // A genuine Rekor entry, for another signature of the same key.
    let mismatched = verify("mismatched", &|subject, reference| {
        let mut signed = SignedPayload::new(&key, subject, reference);
        let elsewhere = SignedPayload::new(&key, subject, "somewhere.example/else");
        let body = cosign::hashedrekord(&elsewhere.payload, &elsewhere.signature, &key);
        signed.rekor_bundle = Some(cosign::rekor_bundle(&rekor, &body, 8));
        signed
    });
    let stderr = fails(&mismatched, 7);
    assert!(
        stderr.contains("transparency log: the Rekor entry records"),
        "{stderr}"
    );
}

#[test]
fn copy_and_push_verify_the_source_before_anything_is_pushed() {
    let source = Registry::start(RegistryOptions::anonymous()).expect("source registry");
    let target = OciRegistry::start().expect("target registry");
    let scratch = Scratch::new();
    let home = scratch.home();
    let key = Key::p256();
    let image = Image::new(scratch.dir.path(), "copied");
    image.push(
        &source,
        "app",
        &[&cosign::signed(&key, &image.subject, "app")],
    );
    let stranger = public_key(scratch.dir.path(), "stranger", &Key::p256());
    let signer = public_key(scratch.dir.path(), "signer", &key);
    let copy = |pem: &str| {
        run(
            &home,
            &[
                "copy",
                "--json",
                "--verify",
                "cosign",
                "--cosign-key",
                pem,
                &format!("{}/app:v1", source.host()),
                &format!("{}/app:v1", target.host()),
            ],
            None,
        )
    };
    let stderr = fails(&copy(&stranger), 7);
    assert!(stderr.contains(&image.subject.digest), "{stderr}");
    assert!(
        target.manifest("app", "v1").is_none(),
        "a refused copy pushed the image"
    );
    let pushes: Vec<_> = target
        .requests()
        .into_iter()
        .filter(|(method, _, _)| method != "GET" && method != "HEAD")
        .collect();
    assert!(pushes.is_empty(), "{pushes:?}");
    let copied: Value = serde_json::from_str(&ok(&copy(&signer))).unwrap();
    assert_eq!(copied["verification"]["scheme"], "cosign", "{copied}");
    assert!(target.manifest("app", "v1").is_some());
    // push from a layout: the layout's own signatures are checked (here: none).
    let stderr = fails(
        &run(
            &home,
            &[
                "push",
                "--verify",
                "cosign",
                "--cosign-key",
                &signer,
                &format!("oci:{}:v1", image.layout.display()),
                &format!("{}/unsigned:v1", target.host()),
            ],
            None,
        ),
        7,
    );
    assert!(stderr.contains("has no cosign signature"), "{stderr}");
    assert!(target.manifest("unsigned", "v1").is_none());
}
