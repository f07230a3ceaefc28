//! `acrpull tags`, `digest` and `catalog` against the real registry, cross-checked with
//! skopeo (`list-tags`, `inspect --raw`).

use acrpull_testenv::registry::{seed, skopeo, Registry, RegistryOptions};

use crate::support::{fails, ok, run, skopeo_raw_digest, Scratch};

fn lines(text: &str) -> Vec<String> {
    text.lines().map(str::to_string).collect()
}

#[test]
fn tags_paged_digest_and_catalog_agree_with_skopeo() {
    let registry = Registry::start(RegistryOptions::anonymous()).expect("registry");
    for tag in ["v1", "v2", "v3", "latest", "z-last"] {
        seed(&registry, "simple", &format!("team/app:{tag}")).expect("seeded");
    }
    seed(&registry, "multiarch", "other/multi:v1").expect("seeded");
    let scratch = Scratch::new();
    let home = scratch.home();
    let repo = format!("{}/team/app", registry.host());

    // Pages of 2: the registry sends Link headers; every tag arrives once.
    let tags = lines(&ok(&run(&home, &["tags", "--page-size", "2", &repo], None)));
    let listed = skopeo(&[
        "list-tags",
        "--tls-verify=false",
        &format!("docker://{repo}"),
    ])
    .expect("skopeo list-tags");
    let listed: serde_json::Value = serde_json::from_slice(&listed).unwrap();
    let mut expected: Vec<String> = listed["Tags"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap().to_string())
        .collect();
    expected.sort();
    let mut sorted = tags.clone();
    sorted.sort();
    assert_eq!(sorted, expected);
    assert_eq!(tags.len(), 5);
    let json: serde_json::Value =
        serde_json::from_str(&ok(&run(&home, &["tags", "--json", &repo], None))).unwrap();
    assert_eq!(json["repository"], serde_json::json!(repo));
    assert_eq!(json["tags"].as_array().unwrap().len(), 5);

    // digest: one line, what skopeo hashes; an index too; --json.
    for image in [
        format!("{repo}:v2"),
        format!("{}/other/multi:v1", registry.host()),
    ] {
        let out = ok(&run(&home, &["digest", &image], None));
        assert_eq!(
            out,
            format!("{}\n", skopeo_raw_digest(&format!("docker://{image}")))
        );
    }
    let json: serde_json::Value = serde_json::from_str(&ok(&run(
        &home,
        &["digest", "--json", &format!("{repo}:v1")],
        None,
    )))
    .unwrap();
    assert!(json["digest"].as_str().unwrap().starts_with("sha256:"));
    fails(&run(&home, &["digest", &format!("{repo}:absent")], None), 4);

    // catalog, paged.
    let repositories = lines(&ok(&run(
        &home,
        &["catalog", "--page-size", "1", &registry.host()],
        None,
    )));
    assert_eq!(repositories, ["other/multi", "team/app"]);
    let json: serde_json::Value = serde_json::from_str(&ok(&run(
        &home,
        &["catalog", "--json", &registry.host()],
        None,
    )))
    .unwrap();
    assert_eq!(
        json["repositories"],
        serde_json::json!(["other/multi", "team/app"])
    );
}

/// A registry that refuses: no credentials for an htpasswd registry is exit 3, a repository
/// that does not exist exit 4.
#[test]
fn refusals_are_clear_errors() {
    let registry = Registry::start(RegistryOptions::anonymous().htpasswd("alice", "s3cret"))
        .expect("registry");
    let scratch = Scratch::new();
    let home = scratch.home();
    let stderr = fails(&run(&home, &["catalog", &registry.host()], None), 3);
    assert!(
        stderr.contains("catalog") || stderr.contains("401"),
        "{stderr}"
    );
    let open = Registry::start(RegistryOptions::anonymous()).expect("registry");
    fails(
        &run(&home, &["tags", &format!("{}/no/such", open.host())], None),
        4,
    );
    fails(&run(&home, &["tags", "oci:/tmp/x"], None), 2);
}
