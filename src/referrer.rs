//! Referrers as manifests and tags describe them, without I/O: the descriptor the referrers API
//! lists, the tag-schema and cosign tags, a manifest's `subject`, and the page a local source
//! answers with. Discovery (walking a source) is [`crate::referrers`].

use std::collections::BTreeMap;

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::digest::Digest;
use crate::manifest::Descriptor;
use crate::media_type;
use crate::registry::referrers::{FoundBy, ReferrersPage};
use crate::registry::FetchedManifest;

/// The suffixes of cosign's tags, in the order they are looked up.
pub const COSIGN_SUFFIXES: &[&str] = &["sig", "att", "sbom"];

/// A descriptor as the referrers API and the tag-schema index list them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ReferrerDescriptor {
    /// The referrer's manifest media type.
    pub media_type: String,
    /// Its digest.
    pub digest: Digest,
    /// Its size.
    pub size: u64,
    /// Its artifact type (the manifest's `artifactType`, else its config media type).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifact_type: Option<String>,
    /// Annotations (the manifest's, in API answers; the tag in a layout's `index.json`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<BTreeMap<String, String>>,
}

/// The referrers tag of `digest` (`<alg>-<hex>`, each part truncated as the spec says).
pub fn tag_schema_tag(digest: &Digest) -> String {
    let hex = digest.hex();
    format!(
        "{}-{}",
        digest.algorithm().as_str(),
        &hex[..hex.len().min(64)]
    )
}

/// cosign's tag for `digest` with `suffix` (`sig`, `att`, `sbom`).
pub fn cosign_tag(digest: &Digest, suffix: &str) -> String {
    format!("{}.{suffix}", tag_schema_tag(digest))
}

/// Whether `tag` names referrers rather than an image: a tag-schema or cosign tag.
pub fn is_referrer_tag(tag: &str) -> bool {
    let Some((algorithm, rest)) = tag.split_once('-') else {
        return false;
    };
    let hex = rest.split_once('.').map_or(rest, |(hex, suffix)| {
        if COSIGN_SUFFIXES.contains(&suffix) {
            hex
        } else {
            ""
        }
    });
    matches!(algorithm, "sha256" | "sha512")
        && hex.len() == 64
        && hex.bytes().all(|b| b.is_ascii_hexdigit())
}

/// The parts of a referrer manifest (image manifest or index) that discovery reads.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ManifestFields {
    #[serde(default)]
    pub(crate) artifact_type: Option<String>,
    #[serde(default)]
    pub(crate) config: Option<Descriptor>,
    #[serde(default)]
    pub(crate) layers: Vec<Descriptor>,
    #[serde(default)]
    pub(crate) manifests: Vec<Descriptor>,
    #[serde(default)]
    pub(crate) subject: Option<Descriptor>,
    #[serde(default)]
    pub(crate) annotations: Option<BTreeMap<String, String>>,
}

impl ManifestFields {
    pub(crate) fn parse(manifest: &FetchedManifest) -> std::result::Result<Self, String> {
        serde_json::from_slice(&manifest.bytes).map_err(|e| e.to_string())
    }

    /// `artifactType`, else the config's media type (the referrers API's rule).
    pub(crate) fn artifact_type(&self) -> Option<String> {
        self.artifact_type
            .clone()
            .filter(|t| !t.is_empty())
            .or_else(|| self.config.as_ref().map(|c| c.media_type.clone()))
    }
}

/// The subject of a manifest, if it has one (for layouts and pushes).
pub fn subject_of(manifest: &FetchedManifest) -> Option<Digest> {
    ManifestFields::parse(manifest)
        .ok()
        .and_then(|m| m.subject)
        .map(|s| s.digest)
}

/// A manifest that has a `subject`: that subject, and the entry the referrers API would list
/// for it (for sources that answer the API from their own content, such as layouts).
pub fn listing_of(manifest: &FetchedManifest) -> Option<(Digest, ReferrerDescriptor)> {
    let fields = ManifestFields::parse(manifest).ok()?;
    let subject = fields.subject.as_ref()?.digest.clone();
    Some((
        subject,
        ReferrerDescriptor {
            media_type: manifest.media_type.clone(),
            digest: manifest.digest.clone(),
            size: manifest.bytes.len() as u64,
            artifact_type: fields.artifact_type(),
            annotations: fields.annotations,
        },
    ))
}

/// The one page a local source (a layout, an archive) answers with the referrers it found in
/// its `index.json`.
pub fn local_page(listed: &[ReferrerDescriptor], url: String) -> ReferrersPage {
    let index = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": media_type::OCI_INDEX,
        "manifests": listed,
    });
    ReferrersPage::Listed {
        bytes: Bytes::from(index.to_string()),
        filtered: false,
        next: None,
        url,
        found_by: FoundBy::Layout,
    }
}
