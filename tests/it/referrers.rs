//! Referrers (signatures, SBOMs, attestations): discovery and carrying them through copies.
//!
//! The real `docker-registry` (distribution 2.8) has no referrers API: it exercises the
//! tag-schema fallback and cosign's `.sig` tags. The referrers API itself is served by
//! `acrpull_testenv::oci_registry`, written from the distribution spec 1.1, which also
//! misbehaves on demand. The artifacts come from `acrpull_testenv::artifacts`.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use acrpull_testenv::artifacts::{
    cosign_signature, in_toto_attestation, notation_signature, push_artifacts, spdx_sbom,
    tag_schema_tag, write_into_layout, Artifact, Subject, IN_TOTO_TYPE, NOTATION_TYPE, SPDX_TYPE,
};
use acrpull_testenv::fixtures::{fixture_layout, Layout, OCI_INDEX, OCI_MANIFEST};
use acrpull_testenv::oci_registry::OciRegistry;
use acrpull_testenv::registry::{skopeo_copy, Registry, RegistryOptions};
use serde_json::{json, Value};

use crate::support::{fails, make_layout, ok, run, skopeo_raw_digest, Scratch};

const CREATED: &str = "2024-05-01T10:00:00Z";

/// An image with a Notation signature, an SPDX SBOM (itself signed), an in-toto attestation
/// and a cosign `.sig` manifest.
struct Staged {
    layout: PathBuf,
    image: Subject,
    notation: Artifact,
    sbom: Artifact,
    attestation: Artifact,
    cosign: Artifact,
    sbom_signature: Artifact,
}

impl Staged {
    fn new(dir: &Path) -> Self {
        let layout = dir.join("image");
        make_layout(&layout, &[vec![("hello.txt", b"hello referrers".to_vec())]]);
        let image = main_subject(&layout);
        let sbom = spdx_sbom(&image, CREATED);
        Staged {
            notation: notation_signature(&image, CREATED),
            attestation: in_toto_attestation(&image),
            cosign: cosign_signature(&image, "registry.example/app"),
            sbom_signature: notation_signature(&sbom.as_subject(), "2024-05-02T10:00:00Z"),
            sbom,
            image,
            layout,
        }
    }

    fn artifacts(&self) -> Vec<&Artifact> {
        vec![
            &self.notation,
            &self.sbom,
            &self.attestation,
            &self.cosign,
            &self.sbom_signature,
        ]
    }

    /// Every digest the image and its referrers consist of.
    fn digests(&self) -> BTreeSet<String> {
        let layout = Layout::open(&self.layout).unwrap();
        let mut all: BTreeSet<String> = layout
            .reachable(&self.image.digest)
            .unwrap()
            .into_iter()
            .collect();
        for artifact in self.artifacts() {
            all.insert(artifact.digest());
            all.extend(artifact.blobs.iter().map(|(d, _)| d.clone()));
        }
        all
    }

    /// The layout with every artifact in it (untagged entries with `subject`, cosign tagged).
    fn layout_with_artifacts(&self) -> PathBuf {
        for artifact in self.artifacts() {
            write_into_layout(&self.layout, artifact).unwrap();
        }
        self.layout.clone()
    }

    /// The image (skopeo) and its artifacts (plain HTTP) on a registry, with the tag-schema
    /// index for a registry without the API.
    fn push_to(&self, base_url: &str, host: &str, repository: &str, tag_schema: bool) {
        skopeo_copy(
            &format!("oci:{}:v1", self.layout.display()),
            &format!("docker://{host}/{repository}:v1"),
            &["--preserve-digests"],
        )
        .unwrap();
        push_blocking(base_url, repository, &self.artifacts(), tag_schema);
    }
}

fn main_subject(layout: &Path) -> Subject {
    let reference = Layout::open(layout).unwrap().main_ref().unwrap();
    let bytes = Layout::open(layout)
        .unwrap()
        .blob(&reference.digest)
        .unwrap();
    Subject::of(&reference.media_type, &bytes)
}

/// `acrpull inspect --referrers --json ARGS...`.
fn referrers_json(home: &Path, args: &[&str]) -> Value {
    let mut all = vec!["inspect", "--referrers", "--json"];
    all.extend_from_slice(args);
    json_of(&run(home, &all, None))
}

/// [`push_artifacts`] from a synchronous test.
fn push_blocking(base_url: &str, repository: &str, artifacts: &[&Artifact], tag_schema: bool) {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime
        .block_on(push_artifacts(base_url, repository, artifacts, tag_schema))
        .unwrap();
}

/// `acrpull copy --json --referrers SRC DST`, which must carry `count` referrers.
fn copy_referrers(home: &Path, source: &str, destination: &str, count: usize) -> Value {
    let summary = json_of(&run(
        home,
        &["copy", "--json", "--referrers", source, destination],
        None,
    ));
    assert_eq!(
        summary["referrers"].as_array().map(Vec::len),
        Some(count),
        "{summary:#}"
    );
    summary
}

fn json_of(output: &std::process::Output) -> Value {
    serde_json::from_str(&ok(output)).expect("JSON on stdout")
}

/// `digest -> (artifactType, foundBy, its referrers' digests)` of a referrers JSON list.
fn by_digest(list: &Value) -> std::collections::BTreeMap<String, (String, String, Vec<String>)> {
    let mut out = std::collections::BTreeMap::new();
    for r in list.as_array().into_iter().flatten() {
        let children: Vec<String> = r["referrers"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|c| c["digest"].as_str().unwrap().to_owned())
            .collect();
        out.insert(
            r["digest"].as_str().unwrap().to_owned(),
            (
                r["artifactType"].as_str().unwrap_or_default().to_owned(),
                r["foundBy"].as_str().unwrap().to_owned(),
                children,
            ),
        );
        out.extend(by_digest(&r["referrers"]));
    }
    out
}

/// Every blob file in a layout, as digests.
fn layout_digests(layout: &Path) -> BTreeSet<String> {
    std::fs::read_dir(layout.join("blobs/sha256"))
        .unwrap()
        .map(|e| format!("sha256:{}", e.unwrap().file_name().to_string_lossy()))
        .collect()
}

#[test]
fn inspect_referrers_on_a_registry_without_the_api_reads_the_tag_schema_and_cosign_tags() {
    let registry = Registry::start(RegistryOptions::anonymous()).expect("registry");
    let scratch = Scratch::new();
    let staged = Staged::new(scratch.dir.path());
    staged.push_to(&registry.url(), &registry.host(), "app", true);
    let image = format!("{}/app:v1", registry.host());
    let home = scratch.home();
    let document = referrers_json(&home, &[&image]);
    assert_eq!(document["digest"], staged.image.digest.as_str());
    let found = by_digest(&document["referrers"]);
    let expect = |artifact: &Artifact, kind: &str, how: &str| {
        let (artifact_type, found_by, _) = &found[&artifact.digest()];
        assert_eq!(
            (artifact_type.as_str(), found_by.as_str()),
            (kind, how),
            "{document:#}"
        );
    };
    expect(&staged.notation, NOTATION_TYPE, "tagSchema");
    expect(&staged.sbom, SPDX_TYPE, "tagSchema");
    expect(&staged.attestation, IN_TOTO_TYPE, "tagSchema");
    expect(
        &staged.cosign,
        "application/vnd.oci.image.config.v1+json",
        "cosignTag",
    );
    expect(&staged.sbom_signature, NOTATION_TYPE, "tagSchema");
    assert_eq!(found.len(), 5, "{document:#}");
    // The SBOM's signature hangs below the SBOM, annotations and the cosign tag are shown.
    assert_eq!(
        found[&staged.sbom.digest()].2,
        vec![staged.sbom_signature.digest()]
    );
    let notation = document["referrers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["digest"] == staged.notation.digest().as_str())
        .unwrap();
    assert_eq!(
        notation["annotations"]["org.opencontainers.image.created"],
        CREATED
    );
    // The tree for people.
    let tree = ok(&run(&home, &["inspect", "--referrers", &image], None));
    assert!(
        tree.contains(&format!("{NOTATION_TYPE} {}", staged.notation.digest())),
        "{tree}"
    );
    assert!(tree.contains(&format!("created {CREATED}")), "{tree}");
    assert!(tree.contains(".sig`"), "{tree}");
    assert!(
        tree.contains("│   └── ") || tree.contains("    └── "),
        "{tree}"
    );
    // A filter on the artifact type, applied by the client for a tag-schema registry.
    let signatures = referrers_json(&home, &["--artifact-type", SPDX_TYPE, &image]);
    let only = by_digest(&signatures["referrers"]);
    assert!(only.contains_key(&staged.sbom.digest()), "{signatures:#}");
    assert!(
        !only.contains_key(&staged.notation.digest()),
        "{signatures:#}"
    );
    assert!(
        !only.contains_key(&staged.cosign.digest()),
        "{signatures:#}"
    );
}

#[test]
fn referrers_round_trip_registry_layout_registry_layout_keeps_every_digest() {
    // A (no API, tag schema) -> layout L1 -> B (referrers API) -> C (no API) -> layout L2.
    let a = Registry::start(RegistryOptions::anonymous()).expect("registry a");
    let b = OciRegistry::start().expect("registry b");
    let c = Registry::start(RegistryOptions::anonymous()).expect("registry c");
    let scratch = Scratch::new();
    let home = scratch.home();
    let staged = Staged::new(scratch.dir.path());
    staged.push_to(&a.url(), &a.host(), "app", true);
    let expected = staged.digests();

    let l1 = scratch.dest("l1");
    let pulled = json_of(&run(
        &home,
        &[
            "pull",
            "--json",
            "--format",
            "oci",
            "--referrers",
            &format!("{}/app:v1", a.host()),
            l1.to_str().unwrap(),
        ],
        None,
    ));
    let carried: BTreeSet<String> = pulled["referrers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["digest"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(carried.len(), 5, "{pulled:#}");
    assert_eq!(
        layout_digests(&l1),
        expected,
        "L1 holds exactly the image and its referrers"
    );
    // In the layout: referrers are index.json entries; their manifests keep `subject`; the
    // cosign manifest keeps its tag; the image is still the layout's one image.
    let index: Value =
        serde_json::from_slice(&std::fs::read(l1.join("index.json")).unwrap()).unwrap();
    let entries = index["manifests"].as_array().unwrap();
    assert_eq!(entries.len(), 6, "{index:#}");
    let sbom = Layout::open(&l1)
        .unwrap()
        .blob(&staged.sbom.digest())
        .unwrap();
    assert_eq!(sbom, staged.sbom.manifest, "byte for byte");
    assert!(entries
        .iter()
        .any(|e| e["annotations"]["org.opencontainers.image.ref.name"]
            == staged.cosign.tag.as_deref().unwrap()));
    let untagged = json_of(&run(
        &home,
        &["inspect", &format!("oci:{}", l1.display())],
        None,
    ));
    assert_eq!(untagged["digest"], staged.image.digest.as_str());
    assert_eq!(
        skopeo_raw_digest(&format!("oci:{}:v1", l1.display())),
        staged.image.digest,
        "other tools still read the layout's image"
    );
    // The layout answers discovery from index.json (and cosign's tag from its ref name).
    let in_layout = referrers_json(&home, &[&format!("oci:{}:v1", l1.display())]);
    let found = by_digest(&in_layout["referrers"]);
    assert_eq!(found.len(), 5, "{in_layout:#}");
    assert_eq!(found[&staged.sbom_signature.digest()].1, "layout");
    assert_eq!(found[&staged.cosign.digest()].1, "cosignTag");
    // A list of references stages the same referrers (`-f`).
    let list = scratch.dir.path().join("refs.txt");
    std::fs::write(&list, format!("{}/app:v1\n", a.host())).unwrap();
    let listed = scratch.dest("listed");
    let outcomes = json_of(&run(
        &home,
        &[
            "pull",
            "--json",
            "--format",
            "oci",
            "--referrers",
            "-f",
            list.to_str().unwrap(),
            listed.to_str().unwrap(),
        ],
        None,
    ));
    assert_eq!(
        outcomes[0]["referrers"].as_array().unwrap().len(),
        5,
        "{outcomes:#}"
    );
    assert_eq!(layout_digests(&listed), expected);
    // An OCI archive carries them too, and answers discovery as a source.
    let archive = scratch.dest("staged.tar");
    ok(&run(
        &home,
        &[
            "pull",
            "-q",
            "--format",
            "oci-archive",
            "--referrers",
            &format!("{}/app:v1", a.host()),
            archive.to_str().unwrap(),
        ],
        None,
    ));
    let in_archive = referrers_json(&home, &[&format!("oci-archive:{}:v1", archive.display())]);
    let found = by_digest(&in_archive["referrers"]);
    assert_eq!(found.len(), 5, "{in_archive:#}");
    assert_eq!(found[&staged.sbom.digest()].1, "layout");
    let untagged = json_of(&run(
        &home,
        &["inspect", &format!("oci-archive:{}", archive.display())],
        None,
    ));
    assert_eq!(untagged["digest"], staged.image.digest.as_str());

    // The layout serves its referrers as a source, and `push` carries them without a flag.
    let pushed = json_of(&run(
        &home,
        &[
            "push",
            "--json",
            &format!("oci:{}:v1", l1.display()),
            &format!("{}/app:v1", b.host()),
        ],
        None,
    ));
    assert_eq!(
        pushed["referrers"].as_array().unwrap().len(),
        5,
        "{pushed:#}"
    );
    // B has the API: no tag-schema tag was written, only the image's and cosign's tags.
    assert_eq!(
        b.tags("app"),
        vec![staged.cosign.tag.clone().unwrap(), "v1".to_owned()]
    );
    for artifact in staged.artifacts() {
        let (_, bytes) = b.manifest("app", &artifact.digest()).expect("on B");
        assert_eq!(bytes, artifact.manifest);
        for (digest, _) in &artifact.blobs {
            assert!(b.has_blob(digest), "{} of {}", digest, artifact.name);
        }
    }
    let on_b = referrers_json(&home, &[&format!("{}/app:v1", b.host())]);
    let found = by_digest(&on_b["referrers"]);
    assert_eq!(found[&staged.notation.digest()].1, "referrersApi");
    assert_eq!(found[&staged.sbom_signature.digest()].1, "referrersApi");

    // B (API) -> C (no API): the tag-schema index is written for each subject.
    copy_referrers(
        &home,
        &format!("{}/app:v1", b.host()),
        &format!("{}/app:v1", c.host()),
        5,
    );
    let on_c = referrers_json(&home, &[&format!("{}/app:v1", c.host())]);
    let found = by_digest(&on_c["referrers"]);
    assert_eq!(found.len(), 5, "{on_c:#}");
    assert_eq!(found[&staged.attestation.digest()].1, "tagSchema");
    assert_eq!(found[&staged.sbom_signature.digest()].1, "tagSchema");
    assert_eq!(found[&staged.cosign.digest()].1, "cosignTag");

    // C -> L2: the same bytes as L1, every one.
    let l2 = scratch.dest("l2");
    ok(&run(
        &home,
        &[
            "copy",
            "-q",
            "--referrers",
            &format!("{}/app:v1", c.host()),
            &format!("oci:{}:v1", l2.display()),
        ],
        None,
    ));
    assert_eq!(layout_digests(&l2), expected);
    for digest in &expected {
        let path = |root: &Path| root.join("blobs/sha256").join(&digest[7..]);
        assert_eq!(
            std::fs::read(path(&l1)).unwrap(),
            std::fs::read(path(&l2)).unwrap()
        );
    }
}

#[test]
fn a_multi_platform_index_carries_the_referrers_of_each_child() {
    let registry = OciRegistry::start().expect("registry");
    let scratch = Scratch::new();
    let home = scratch.home();
    let layout = scratch.dir.path().join("multi");
    let copied = std::process::Command::new("cp")
        .args([
            "-r",
            fixture_layout("multiarch").to_str().unwrap(),
            layout.to_str().unwrap(),
        ])
        .status()
        .unwrap();
    assert!(copied.success());
    let fixture = Layout::open(&layout).unwrap();
    let index = main_subject(&layout);
    let mut artifacts = vec![notation_signature(&index, CREATED)];
    let children = fixture.index_entries(&index.digest).unwrap();
    for child in &children {
        let subject = Subject {
            media_type: child.media_type.clone(),
            digest: child.digest.clone(),
            size: child.size,
        };
        artifacts.push(spdx_sbom(&subject, CREATED));
    }
    for artifact in &artifacts {
        write_into_layout(&layout, artifact).unwrap();
    }
    ok(&run(
        &home,
        &[
            "push",
            "-q",
            &format!("oci:{}:v1", layout.display()),
            &format!("{}/multi:v1", registry.host()),
        ],
        None,
    ));
    let image = format!("{}/multi:v1", registry.host());
    let document = referrers_json(&home, &[&image]);
    assert_eq!(
        by_digest(&document["referrers"]).keys().collect::<Vec<_>>(),
        vec![&artifacts[0].digest()]
    );
    let manifests = document["manifests"].as_array().unwrap();
    assert_eq!(manifests.len(), children.len());
    for (entry, artifact) in manifests.iter().zip(&artifacts[1..]) {
        assert!(entry["platform"].is_string(), "{entry}");
        assert_eq!(entry["referrers"][0]["digest"], artifact.digest().as_str());
    }
    // Every platform: all the referrers. One platform: only that child's.
    let all = scratch.dest("all");
    let pulled = json_of(&run(
        &home,
        &[
            "pull",
            "--json",
            "--format",
            "oci",
            "--platform",
            "all",
            "--referrers",
            &image,
            all.to_str().unwrap(),
        ],
        None,
    ));
    assert_eq!(
        pulled["referrers"].as_array().unwrap().len(),
        artifacts.len()
    );
    let platform = children[0].platform.as_ref().unwrap();
    let one = scratch.dest("one");
    let pulled = json_of(&run(
        &home,
        &[
            "pull",
            "--json",
            "--format",
            "oci",
            "--referrers",
            "--platform",
            &format!("{}/{}", platform.os, platform.architecture),
            &image,
            one.to_str().unwrap(),
        ],
        None,
    ));
    let carried = pulled["referrers"].as_array().unwrap();
    assert_eq!(carried.len(), 1, "{pulled:#}");
    assert_eq!(carried[0]["subject"], children[0].digest.as_str());
}

/// A registry with the API, the image and its artifacts on it.
fn api_registry_with(staged: &Staged) -> OciRegistry {
    let registry = OciRegistry::start().expect("registry");
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let layout = Layout::open(&staged.layout).unwrap();
    let mut blobs = Vec::new();
    for digest in layout.reachable(&staged.image.digest).unwrap() {
        if digest != staged.image.digest {
            blobs.push((digest.clone(), layout.blob(&digest).unwrap()));
        }
    }
    let image = layout.blob(&staged.image.digest).unwrap();
    runtime
        .block_on(acrpull_testenv::artifacts::push_raw(
            &registry.url(),
            "app",
            &blobs,
            &[("v1".to_owned(), image, OCI_MANIFEST.to_owned())],
        ))
        .unwrap();
    runtime
        .block_on(push_artifacts(
            &registry.url(),
            "app",
            &staged.artifacts(),
            false,
        ))
        .unwrap();
    registry
}

#[test]
fn hostile_referrers_lists_are_capped_warned_about_and_bounded() {
    let scratch = Scratch::new();
    let home = scratch.home();
    let staged = Staged::new(scratch.dir.path());
    let registry = api_registry_with(&staged);
    let image = format!("{}/app:v1", registry.host());
    let inspect = || run(&home, &["inspect", "--referrers", "--json", &image], None);

    // The registry applies the artifactType filter (OCI-Filters-Applied).
    let filtered = referrers_json(&home, &["--artifact-type", SPDX_TYPE, &image]);
    let only = by_digest(&filtered["referrers"]);
    assert_eq!(
        only.keys().collect::<Vec<_>>(),
        vec![&staged.sbom.digest()],
        "{filtered:#}"
    );
    assert!(registry
        .requests()
        .iter()
        .any(|(_, path, _)| path.contains("/referrers/") && path.contains("artifactType=")));
    // Paging through the API works (one referrer a page)...
    registry.faults(|f| f.page_size = 1);
    let paged = json_of(&inspect());
    assert_eq!(by_digest(&paged["referrers"]).len(), 5, "{paged:#}");
    // ...but a `Link` that never ends is cut off.
    registry.faults(|f| f.endless_pages = true);
    let before = registry.requests().len();
    let stderr = fails(&inspect(), 6);
    assert!(stderr.contains("pages"), "{stderr}");
    let made = registry.requests().len() - before;
    assert!(made < 100, "{made} requests for an endless list");
    registry.faults(|f| {
        f.endless_pages = false;
        f.page_size = 100;
    });

    // A huge answer is refused like a huge manifest.
    registry.faults(|f| f.pad_referrers_to = Some(5 << 20));
    let stderr = fails(&inspect(), 6);
    assert!(stderr.contains("limit"), "{stderr}");
    registry.faults(|f| f.pad_referrers_to = None);

    // An artifact for another subject, and a loop (the image listed as a referrer of its
    // own SBOM): both ignored with a warning; the rest is found.
    let other = notation_signature(
        &Subject::of(OCI_MANIFEST, b"{\"another\":\"image\"}"),
        CREATED,
    );
    push_blocking(&registry.url(), "app", &[&other], false);
    let image_listing = json!({
        "mediaType": OCI_MANIFEST,
        "digest": staged.image.digest,
        "size": staged.image.size,
        "artifactType": "application/vnd.example.loop",
    });
    registry.faults(|f| {
        f.extra_listed
            .insert(staged.image.digest.clone(), vec![other.listing()]);
        f.extra_listed
            .insert(staged.sbom.digest(), vec![image_listing.clone()]);
    });
    let output = inspect();
    let document = json_of(&output);
    let stderr = String::from_utf8_lossy(&output.stderr);
    let found = by_digest(&document["referrers"]);
    assert_eq!(found.len(), 5, "{document:#}");
    assert!(!found.contains_key(&other.digest()));
    assert!(stderr.contains("its subject is"), "{stderr}");
    assert!(stderr.contains("a loop"), "{stderr}");
    assert_eq!(
        document["warnings"].as_array().unwrap().len(),
        2,
        "{document:#}"
    );
}

#[test]
fn a_referrer_that_is_an_index_travels_with_its_manifests() {
    let scratch = Scratch::new();
    let home = scratch.home();
    let staged = Staged::new(scratch.dir.path());
    let with_api = api_registry_with(&staged);
    let without = Registry::start(RegistryOptions::anonymous()).expect("registry");
    let (index, children) = acrpull_testenv::artifacts::sbom_index(
        &staged.image,
        &[("linux", "amd64"), ("linux", "arm64")],
    );
    let mut pushed: Vec<&Artifact> = children.iter().collect();
    pushed.push(&index);
    push_blocking(&with_api.url(), "app", &pushed, false);
    copy_referrers(
        &home,
        &format!("{}/app:v1", with_api.host()),
        &format!("{}/app:v1", without.host()),
        6,
    );
    let on_c = referrers_json(&home, &[&format!("{}/app:v1", without.host())]);
    let listed = on_c["referrers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["digest"] == index.digest().as_str())
        .expect("the index referrer");
    assert_eq!(listed["mediaType"], OCI_INDEX);
    assert_eq!(listed["artifactType"], SPDX_TYPE);
    assert_eq!(listed["foundBy"], "tagSchema");
    let layout = scratch.dest("layout");
    ok(&run(
        &home,
        &[
            "copy",
            "-q",
            "--referrers",
            &format!("{}/app:v1", without.host()),
            &format!("oci:{}:v1", layout.display()),
        ],
        None,
    ));
    let mut expected = staged.digests();
    for artifact in &pushed {
        expected.insert(artifact.digest());
        expected.extend(artifact.blobs.iter().map(|(d, _)| d.clone()));
    }
    assert_eq!(layout_digests(&layout), expected);
}

#[test]
fn the_tag_schema_index_survives_a_concurrent_writer() {
    let scratch = Scratch::new();
    let home = scratch.home();
    let staged = Staged::new(scratch.dir.path());
    let layout = staged.layout_with_artifacts();
    let registry = OciRegistry::start().expect("registry");
    // A 1.0 registry, where another client adds its own referrer right after our write.
    let other = in_toto_attestation(&Subject::of(OCI_MANIFEST, b"{\"another\":\"image\"}"));
    push_blocking(&registry.url(), "app", &[&other], false);
    let theirs = other.listing();
    let tag = tag_schema_tag(&staged.image.digest);
    registry.faults(|f| {
        f.referrers_api = false;
        f.competing_writer = Some((tag.clone(), theirs.clone()));
    });
    ok(&run(
        &home,
        &[
            "push",
            "-q",
            &format!("oci:{}:v1", layout.display()),
            &format!("{}/app:v1", registry.host()),
        ],
        None,
    ));
    let (media_type, bytes) = registry.manifest("app", &tag).expect("the referrers tag");
    assert_eq!(media_type, OCI_INDEX);
    let index: Value = serde_json::from_slice(&bytes).unwrap();
    let listed: BTreeSet<&str> = index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["digest"].as_str().unwrap())
        .collect();
    let ours = [&staged.notation, &staged.sbom, &staged.attestation];
    for artifact in ours {
        assert!(listed.contains(artifact.digest().as_str()), "{index:#}");
    }
    assert!(
        listed.contains(theirs["digest"].as_str().unwrap()),
        "{index:#}"
    );
    assert_eq!(listed.len(), 4, "{index:#}");
}

#[test]
fn referrers_need_an_oci_layout_destination() {
    let scratch = Scratch::new();
    let output = run(
        &scratch.home(),
        &[
            "pull",
            "--referrers",
            &format!("oci:{}:v1", fixture_layout("simple").display()),
            scratch.dest("rootfs").to_str().unwrap(),
        ],
        None,
    );
    let stderr = fails(&output, 2);
    assert!(stderr.contains("--format oci"), "{stderr}");
    assert_eq!(scratch.out_entries(), Vec::<String>::new());
}
