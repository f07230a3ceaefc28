//! Referrers: the signatures, SBOMs and attestations attached to an image (distribution spec
//! 1.1). [`discover`] finds them for a subject manifest, from any [`ImageSource`], as a typed
//! tree that says how each one was found:
//!
//! - the referrers API (`GET /v2/<name>/referrers/<digest>`, paged with `Link`, filtered by
//!   `artifactType` when the registry applies it, else filtered here);
//! - the referrers tag schema (`<alg>-<hex>` tag holding an index) when the API answers 404;
//! - cosign's tags (`sha256-<hex>.sig`, `.att`, `.sbom`), the layout cosign used before 1.1;
//! - in an OCI layout, the manifests listed in `index.json` whose `subject` is the digest.
//!
//! Every referrer manifest is fetched and verified (digest, size), and its `subject` must name
//! the subject it was listed for: a registry can be wrong, so one that is not is ignored with a
//! warning. Referrers of referrers (a signature of an SBOM) are found recursively. Everything
//! a hostile source could make unbounded is capped: pages, referrers, depth, loops, and each
//! index's size (as manifests are).
//!
//! The write side lives here too: [`add_to_tag_schema`] maintains the tag-schema index on a
//! registry without the API, and [`layout_entries`] says what `index.json` lists for the
//! referrers written into a layout.
//!
//! This file holds the types and the entry points; `walk` does the discovery and
//! `tag_schema` the tag-schema writes.

mod tag_schema;
mod walk;

use std::collections::BTreeMap;

use serde::Serialize;

use crate::digest::Digest;
use crate::manifest::{Descriptor, REF_NAME};
use crate::source::{FetchedManifest, ImageSource};

pub use crate::referrer::{
    cosign_tag, is_referrer_tag, listing_of, local_page, subject_of, tag_schema_tag,
    ReferrerDescriptor, COSIGN_SUFFIXES,
};
pub use crate::registry::referrers::FoundBy;
pub use tag_schema::add_to_tag_schema;
use walk::Walker;

/// The media type of the empty config (`{}`) artifact manifests use.
pub const EMPTY_CONFIG: &str = "application/vnd.oci.empty.v1+json";

/// One referrer, with its own referrers.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Referrer {
    /// The manifest's media type (an image manifest or an index).
    pub media_type: String,
    /// The manifest's digest (verified against the bytes).
    pub digest: Digest,
    /// The manifest's size.
    pub size: u64,
    /// `artifactType`, else the config's media type (as the referrers API reports it).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub artifact_type: Option<String>,
    /// The manifest's annotations (`org.opencontainers.image.created` and the like).
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
    /// The digest this referrer refers to.
    pub subject: Digest,
    /// How it was found.
    pub found_by: FoundBy,
    /// The cosign tag it was found under.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tag: Option<String>,
    /// Its own referrers.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub referrers: Vec<Referrer>,
    /// The exact manifest bytes.
    #[serde(skip)]
    pub manifest: FetchedManifest,
    /// For an index: its child manifests (exact bytes).
    #[serde(skip)]
    pub children: Vec<FetchedManifest>,
    /// Every blob the manifest (and its children) reference: configs and layers of any media
    /// type, copied byte for byte, never unpacked.
    #[serde(skip)]
    pub blobs: Vec<Descriptor>,
}

impl Referrer {
    /// The entry the referrers API (or the tag-schema index) lists for this referrer.
    pub fn descriptor(&self) -> ReferrerDescriptor {
        ReferrerDescriptor {
            media_type: self.media_type.clone(),
            digest: self.digest.clone(),
            size: self.size,
            artifact_type: self.artifact_type.clone(),
            annotations: (!self.annotations.is_empty()).then(|| self.annotations.clone()),
        }
    }
}

/// The referrers of one subject manifest.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ReferrerTree {
    /// The subject.
    pub subject: Descriptor,
    /// Its referrers, each with theirs.
    pub referrers: Vec<Referrer>,
}

impl ReferrerTree {
    /// Every referrer in the tree, parents before their own referrers.
    pub fn flatten(&self) -> Vec<&Referrer> {
        fn walk<'a>(referrers: &'a [Referrer], out: &mut Vec<&'a Referrer>) {
            for referrer in referrers {
                out.push(referrer);
                walk(&referrer.referrers, out);
            }
        }
        let mut out = Vec::new();
        walk(&self.referrers, &mut out);
        out
    }
}

/// What discovery found, and what it ignored (also logged as warnings).
#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Discovery {
    /// One tree per subject asked for.
    pub trees: Vec<ReferrerTree>,
    /// Referrers ignored, and why (wrong subject, loop, depth cap, unsupported kind).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
}

impl Discovery {
    /// Every referrer of every tree, each once.
    pub fn all(&self) -> Vec<&Referrer> {
        self.trees.iter().flat_map(ReferrerTree::flatten).collect()
    }

    /// The summary of what was carried, for `--json`.
    pub fn carried(&self) -> Vec<CarriedReferrer> {
        self.all()
            .into_iter()
            .map(|r| CarriedReferrer {
                digest: r.digest.clone(),
                subject: r.subject.clone(),
                media_type: r.media_type.clone(),
                artifact_type: r.artifact_type.clone(),
                size: r.size,
                found_by: r.found_by,
                tag: r.tag.clone(),
            })
            .collect()
    }
}

/// One referrer a pull, copy or push carried (the `referrers` list of `--json`).
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CarriedReferrer {
    /// Its manifest digest.
    pub digest: Digest,
    /// What it refers to.
    pub subject: Digest,
    /// Its manifest media type.
    pub media_type: String,
    /// Its artifact type.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub artifact_type: Option<String>,
    /// Its manifest size.
    pub size: u64,
    /// How it was found at the source.
    pub found_by: FoundBy,
    /// The cosign tag it lives under.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tag: Option<String>,
}

/// Bounds and filters for [`discover`].
#[derive(Debug, Clone)]
pub struct DiscoveryOptions {
    /// Only referrers of this artifact type (cosign tags included when their type matches).
    pub artifact_type: Option<String>,
    /// How deep to follow referrers of referrers (1: only direct referrers).
    pub max_depth: usize,
    /// Pages of one referrers list followed at most.
    pub max_pages: usize,
    /// Referrers (in the whole discovery) at most.
    pub max_referrers: usize,
    /// Entries of one subject's listing at most.
    pub max_listed: usize,
    /// Look up cosign's `.sig`/`.att`/`.sbom` tags.
    pub cosign_tags: bool,
}

impl Default for DiscoveryOptions {
    fn default() -> Self {
        Self {
            artifact_type: None,
            max_depth: 8,
            max_pages: 64,
            max_referrers: 512,
            max_listed: 512,
            cosign_tags: true,
        }
    }
}

/// Why discovery or a referrers update failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The registry kept linking to another page.
    #[error("the referrers list of {subject} at {url} runs past {limit} pages (the registry keeps sending `Link: rel=\"next\"`)")]
    TooManyPages {
        /// The subject.
        subject: Digest,
        /// The last page asked for.
        url: String,
        /// The cap.
        limit: usize,
    },
    /// A page linked back to one already read.
    #[error("the referrers list of {subject} links back to a page already read ({url})")]
    PageLoop {
        /// The subject.
        subject: Digest,
        /// The page.
        url: String,
    },
    /// More referrers than the cap.
    #[error(
        "{what} has more than {limit} referrers at {source_name}; not following a list that large"
    )]
    TooManyReferrers {
        /// The subject, or "the image" for the whole discovery.
        what: String,
        /// Where.
        source_name: String,
        /// The cap.
        limit: usize,
    },
    /// A referrer manifest that cannot be read as one.
    #[error("referrer {digest} of {subject} is not a valid manifest: {reason}")]
    Invalid {
        /// The referrer.
        digest: Digest,
        /// Its subject.
        subject: Digest,
        /// What is wrong.
        reason: String,
    },
    /// The tag-schema tag holds something else than an index.
    #[error(
        "the referrers tag `{tag}` holds a {media_type}, not an image index; not replacing it"
    )]
    TagNotAnIndex {
        /// The tag.
        tag: String,
        /// What it holds.
        media_type: String,
    },
    /// Other writers kept changing the tag-schema index.
    #[error("the referrers tag `{tag}` changed under another writer {attempts} times in a row; try again")]
    Contended {
        /// The tag.
        tag: String,
        /// Attempts made.
        attempts: u32,
    },
    /// Talking to the source or destination failed.
    #[error(transparent)]
    Registry(#[from] crate::registry::Error),
}

/// Result alias for this module.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The `index.json` entry of a referrer written into a layout: untagged (found by its
/// `subject`, as the image-layout spec's tools look for it), or under its cosign tag.
pub fn layout_entry(referrer: &Referrer) -> ReferrerDescriptor {
    ReferrerDescriptor {
        media_type: referrer.media_type.clone(),
        digest: referrer.digest.clone(),
        size: referrer.size,
        artifact_type: referrer.artifact_type.clone(),
        annotations: referrer
            .tag
            .as_ref()
            .map(|tag| BTreeMap::from([(REF_NAME.to_string(), tag.clone())])),
    }
}

/// The `index.json` entries for every referrer of `discovery`.
pub fn layout_entries(discovery: &Discovery) -> Vec<ReferrerDescriptor> {
    discovery.all().into_iter().map(layout_entry).collect()
}

/// The descriptor of a fetched manifest, as a subject.
pub fn subject_descriptor(manifest: &FetchedManifest) -> Descriptor {
    Descriptor {
        media_type: manifest.media_type.clone(),
        digest: manifest.digest.clone(),
        size: manifest.bytes.len() as u64,
        urls: None,
        annotations: None,
        platform: None,
    }
}

/// Find the referrers of `subject` at `source` (see the module documentation).
pub async fn discover(
    source: &dyn ImageSource,
    subject: &Descriptor,
    options: &DiscoveryOptions,
) -> Result<Discovery> {
    discover_all(source, std::slice::from_ref(subject), options).await
}

/// [`discover`] for several subjects (an index and its children) at once: one tree each,
/// with the caps and the loop check shared.
pub async fn discover_all(
    source: &dyn ImageSource,
    subjects: &[Descriptor],
    options: &DiscoveryOptions,
) -> Result<Discovery> {
    let mut walker = Walker {
        source,
        options,
        seen: subjects.iter().map(|s| s.digest.clone()).collect(),
        count: 0,
        warnings: Vec::new(),
    };
    let mut trees = Vec::new();
    for subject in subjects {
        let referrers = walker.walk(subject.digest.clone(), 1).await?;
        trees.push(ReferrerTree {
            subject: subject.clone(),
            referrers,
        });
    }
    Ok(Discovery {
        trees,
        warnings: walker.warnings,
    })
}

#[cfg(test)]
mod tests;
