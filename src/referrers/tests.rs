//! Discovery against an in-memory source: tag names, artifact types, the depth cap and endless
//! page lists.

use bytes::Bytes;

use super::*;
use crate::media_type;
use crate::referrer::ManifestFields;
use crate::registry::referrers::ReferrersPage;

const HEX: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

#[test]
fn tags_follow_the_tag_schema_and_cosign() {
    let digest: Digest = format!("sha256:{HEX}").parse().unwrap();
    assert_eq!(tag_schema_tag(&digest), format!("sha256-{HEX}"));
    assert_eq!(cosign_tag(&digest, "sig"), format!("sha256-{HEX}.sig"));
    let long: Digest = format!("sha512:{HEX}{HEX}").parse().unwrap();
    assert_eq!(tag_schema_tag(&long), format!("sha512-{HEX}"));
    assert!(is_referrer_tag(&format!("sha256-{HEX}")));
    assert!(is_referrer_tag(&format!("sha256-{HEX}.att")));
    assert!(!is_referrer_tag(&format!("sha256-{HEX}.zip")));
    assert!(!is_referrer_tag("v1"));
    assert!(!is_referrer_tag("sha256-abc"));
}

#[test]
fn artifact_type_falls_back_to_the_config_media_type() {
    let manifest = FetchedManifest::verify(
            Bytes::from(format!(
                r#"{{"schemaVersion":2,"mediaType":"{}","config":{{"mediaType":"application/vnd.example.config","digest":"sha256:{HEX}","size":0,"data":""}},"layers":[]}}"#,
                media_type::OCI_MANIFEST
            )),
            None,
            None,
            None,
            "test",
        )
        .unwrap();
    let fields = ManifestFields::parse(&manifest).unwrap();
    assert_eq!(
        fields.artifact_type().as_deref(),
        Some("application/vnd.example.config")
    );
    assert!(subject_of(&manifest).is_none());
}

/// Manifests by digest and tag, and a referrers API answering from their `subject`s (one
/// entry a page, to exercise paging), in memory.
struct Memory {
    manifests: std::collections::HashMap<String, FetchedManifest>,
    endless: bool,
}

impl Memory {
    fn new(documents: &[serde_json::Value]) -> Self {
        let mut manifests = std::collections::HashMap::new();
        for document in documents {
            let bytes = Bytes::from(serde_json::to_vec(document).unwrap());
            let manifest = FetchedManifest::verify(bytes, None, None, None, "memory").unwrap();
            manifests.insert(manifest.digest.to_string(), manifest);
        }
        Self {
            manifests,
            endless: false,
        }
    }

    fn listed(&self, subject: &Digest) -> Vec<ReferrerDescriptor> {
        let mut listed: Vec<ReferrerDescriptor> = self
            .manifests
            .values()
            .filter_map(listing_of)
            .filter(|(of, _)| of == subject)
            .map(|(_, d)| d)
            .collect();
        listed.sort_by(|a, b| a.digest.cmp(&b.digest));
        listed
    }
}

#[async_trait::async_trait]
impl ImageSource for Memory {
    fn describe(&self) -> String {
        "memory".into()
    }

    async fn manifest(&self, reference: &str) -> crate::registry::Result<FetchedManifest> {
        self.manifests
            .get(reference)
            .cloned()
            .ok_or_else(|| crate::registry::Error::NotFound {
                kind: crate::registry::Missing::Manifest,
                what: reference.into(),
                url: "memory".into(),
            })
    }

    async fn open_blob(
        &self,
        digest: &Digest,
        _offset: u64,
        _end: Option<u64>,
    ) -> crate::registry::Result<crate::source::BlobBody> {
        Err(crate::registry::Error::NotFound {
            kind: crate::registry::Missing::Blob,
            what: digest.to_string(),
            url: "memory".into(),
        })
    }

    async fn referrers_page(
        &self,
        subject: &Digest,
        _artifact_type: Option<&str>,
        page: Option<&url::Url>,
    ) -> crate::registry::Result<ReferrersPage> {
        let number: usize = page
            .and_then(|u| u.query())
            .and_then(|q| q.parse().ok())
            .unwrap_or(0);
        let listed = self.listed(subject);
        let entries: Vec<&ReferrerDescriptor> = listed.iter().skip(number).take(1).collect();
        let more = self.endless || number + 1 < listed.len();
        Ok(ReferrersPage::Listed {
            bytes: Bytes::from(
                serde_json::to_vec(&serde_json::json!({"manifests": entries})).unwrap(),
            ),
            filtered: false,
            next: more
                .then(|| url::Url::parse(&format!("memory://x/referrers?{}", number + 1)).unwrap()),
            url: format!("memory://x/referrers?{number}"),
            found_by: FoundBy::ReferrersApi,
        })
    }
}

fn image() -> serde_json::Value {
    serde_json::json!({"schemaVersion": 2, "mediaType": media_type::OCI_MANIFEST,
            "config": {"mediaType": media_type::OCI_CONFIG, "digest": format!("sha256:{HEX}"), "size": 0},
            "layers": []})
}

fn signature_of(subject: &serde_json::Value, note: &str) -> serde_json::Value {
    let bytes = serde_json::to_vec(subject).unwrap();
    serde_json::json!({"schemaVersion": 2, "mediaType": media_type::OCI_MANIFEST,
            "artifactType": "application/vnd.example.signature",
            "config": {"mediaType": EMPTY_CONFIG, "digest": format!("sha256:{HEX}"), "size": 0},
            "layers": [], "annotations": {"note": note},
            "subject": {"mediaType": media_type::OCI_MANIFEST, "digest": Digest::sha256_of(&bytes).to_string(), "size": bytes.len()}})
}

fn subject(document: &serde_json::Value) -> Descriptor {
    let bytes = Bytes::from(serde_json::to_vec(document).unwrap());
    subject_descriptor(&FetchedManifest::verify(bytes, None, None, None, "t").unwrap())
}

#[tokio::test]
async fn a_chain_of_signatures_is_followed_to_the_depth_cap_and_no_further() {
    let image = image();
    let mut chain = vec![image.clone()];
    for level in 0..4 {
        let next = signature_of(chain.last().unwrap(), &format!("level {level}"));
        chain.push(next);
    }
    let source = Memory::new(&chain);
    let options = DiscoveryOptions {
        max_depth: 2,
        cosign_tags: false,
        ..DiscoveryOptions::default()
    };
    let found = discover(&source, &subject(&image), &options).await.unwrap();
    let all = found.all();
    assert_eq!(all.len(), 2, "{found:#?}");
    assert_eq!(all[0].annotations["note"], "level 0");
    assert_eq!(all[1].annotations["note"], "level 1");
    assert_eq!(all[1].subject, all[0].digest);
    assert_eq!(found.warnings.len(), 1, "{:?}", found.warnings);
    assert!(found.warnings[0].contains("deeper than 2"));
}

#[tokio::test]
async fn pages_are_followed_and_an_endless_list_is_cut_off() {
    let image = image();
    let documents: Vec<serde_json::Value> = std::iter::once(image.clone())
        .chain((0..5).map(|i| signature_of(&image, &format!("{i}"))))
        .collect();
    let mut source = Memory::new(&documents);
    let options = DiscoveryOptions {
        cosign_tags: false,
        max_pages: 8,
        ..DiscoveryOptions::default()
    };
    let found = discover(&source, &subject(&image), &options).await.unwrap();
    assert_eq!(found.all().len(), 5);
    source.endless = true;
    let error = discover(&source, &subject(&image), &options)
        .await
        .unwrap_err();
    assert!(
        matches!(error, Error::TooManyPages { limit: 8, .. }),
        "{error}"
    );
    let capped = DiscoveryOptions {
        max_listed: 3,
        ..options
    };
    source.endless = false;
    let error = discover(&source, &subject(&image), &capped)
        .await
        .unwrap_err();
    assert!(
        matches!(error, Error::TooManyReferrers { limit: 3, .. }),
        "{error}"
    );
}
