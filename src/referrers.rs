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

use std::collections::{BTreeMap, HashSet};

use bytes::Bytes;
use futures_util::future::BoxFuture;
use serde::{Deserialize, Serialize};

use crate::digest::Digest;
use crate::manifest::{Descriptor, REF_NAME};
use crate::media_type::{self, ManifestKind};
use crate::registry::referrers::ReferrersPage;
use crate::registry::RegistryClient;
use crate::source::{FetchedManifest, ImageSource};

use crate::referrer::ManifestFields;
pub use crate::referrer::{
    cosign_tag, is_referrer_tag, listing_of, local_page, subject_of, tag_schema_tag,
    ReferrerDescriptor, COSIGN_SUFFIXES,
};
pub use crate::registry::referrers::FoundBy;

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

/// One listed candidate before its manifest is fetched.
struct Candidate {
    descriptor: Option<ReferrerDescriptor>,
    found_by: FoundBy,
    tag: Option<String>,
}

struct Walker<'a> {
    source: &'a dyn ImageSource,
    options: &'a DiscoveryOptions,
    /// Digests already in the tree (subjects included): a second sighting is a loop.
    seen: HashSet<Digest>,
    count: usize,
    warnings: Vec<String>,
}

impl Walker<'_> {
    fn warn(&mut self, message: String) {
        tracing::warn!("{message}");
        self.warnings.push(message);
    }

    fn walk(&mut self, subject: Digest, depth: usize) -> BoxFuture<'_, Result<Vec<Referrer>>> {
        Box::pin(async move {
            let candidates = self.list(&subject).await?;
            if depth > self.options.max_depth {
                if !candidates.is_empty() {
                    let message = format!(
                        "{subject} has referrers deeper than {} levels; they are not followed",
                        self.options.max_depth
                    );
                    self.warn(message);
                }
                return Ok(Vec::new());
            }
            let mut found = Vec::new();
            let mut here = HashSet::new();
            for candidate in candidates {
                if let Some(d) = &candidate.descriptor {
                    if !here.insert(d.digest.clone()) {
                        continue;
                    }
                    if media_type::manifest_kind(&d.media_type).is_none() {
                        let message = format!(
                            "referrer {} of {subject} is a {}, which acrpull does not carry; ignored",
                            d.digest, d.media_type
                        );
                        self.warn(message);
                        continue;
                    }
                    if self.seen.contains(&d.digest) {
                        let message = format!(
                            "referrer {} of {subject} is already in the tree (a loop); ignored",
                            d.digest
                        );
                        self.warn(message);
                        continue;
                    }
                }
                let Some(mut referrer) = self.fetch(&subject, candidate).await? else {
                    continue;
                };
                if !here.insert(referrer.digest.clone()) && referrer.found_by == FoundBy::CosignTag
                {
                    // Listed by the API too: keep the first sighting.
                    continue;
                }
                if !self.seen.insert(referrer.digest.clone()) {
                    let message = format!(
                        "referrer {} of {subject} is already in the tree (a loop); ignored",
                        referrer.digest
                    );
                    self.warn(message);
                    continue;
                }
                self.count += 1;
                if self.count > self.options.max_referrers {
                    return Err(Error::TooManyReferrers {
                        what: "the image".into(),
                        source_name: self.source.describe(),
                        limit: self.options.max_referrers,
                    });
                }
                referrer.referrers = self.walk(referrer.digest.clone(), depth + 1).await?;
                found.push(referrer);
            }
            Ok(found)
        })
    }

    /// Every candidate for `subject`: the API (or the tag schema when there is none), then
    /// cosign's tags.
    async fn list(&mut self, subject: &Digest) -> Result<Vec<Candidate>> {
        let mut candidates = Vec::new();
        let (listed, found_by) = match self.api(subject).await? {
            Some(listed) => listed,
            None => (self.tag_schema(subject).await?, FoundBy::TagSchema),
        };
        let wanted = self.options.artifact_type.as_deref();
        candidates.extend(
            listed
                .into_iter()
                .filter(|d| wanted.is_none() || d.artifact_type.as_deref() == wanted)
                .map(|d| Candidate {
                    descriptor: Some(d),
                    found_by,
                    tag: None,
                }),
        );
        if self.options.cosign_tags {
            candidates.extend(COSIGN_SUFFIXES.iter().map(|suffix| Candidate {
                descriptor: None,
                found_by: FoundBy::CosignTag,
                tag: Some(cosign_tag(subject, suffix)),
            }));
        }
        Ok(candidates)
    }

    /// The referrers API's whole list, or `None` when the source has no API.
    async fn api(
        &mut self,
        subject: &Digest,
    ) -> Result<Option<(Vec<ReferrerDescriptor>, FoundBy)>> {
        let wanted = self.options.artifact_type.as_deref();
        let mut listed = Vec::new();
        let mut found_by = FoundBy::ReferrersApi;
        let mut page_url: Option<url::Url> = None;
        let mut read = HashSet::new();
        for page in 0.. {
            let answer = self
                .source
                .referrers_page(subject, wanted, page_url.as_ref())
                .await?;
            let (entries, next, url, origin) = match answer {
                ReferrersPage::Unsupported if page == 0 => return Ok(None),
                ReferrersPage::Unsupported => break,
                ReferrersPage::Listed {
                    bytes,
                    next,
                    url,
                    found_by,
                    ..
                } => (parse_index(&bytes, subject, &url)?, next, url, found_by),
            };
            found_by = origin;
            tracing::debug!(%url, entries = entries.len(), "referrers page");
            listed.extend(entries);
            if listed.len() > self.options.max_listed {
                return Err(Error::TooManyReferrers {
                    what: subject.to_string(),
                    source_name: self.source.describe(),
                    limit: self.options.max_listed,
                });
            }
            let Some(next) = next else { break };
            let shown = crate::registry::redact_url(&next);
            // Full URLs (the query is what tells pages apart); shown redacted.
            if !read.insert(next.to_string()) {
                return Err(Error::PageLoop {
                    subject: subject.clone(),
                    url: shown,
                });
            }
            if page + 1 >= self.options.max_pages {
                return Err(Error::TooManyPages {
                    subject: subject.clone(),
                    url: shown,
                    limit: self.options.max_pages,
                });
            }
            page_url = Some(next);
        }
        Ok(Some((listed, found_by)))
    }

    /// The tag-schema index's entries (none when the tag is absent or not an index).
    async fn tag_schema(&mut self, subject: &Digest) -> Result<Vec<ReferrerDescriptor>> {
        let tag = tag_schema_tag(subject);
        match self.source.manifest(&tag).await {
            Ok(index) if index.kind == ManifestKind::Index => {
                let entries = parse_index(&index.bytes, subject, &format!("tag `{tag}`"))?;
                if entries.len() > self.options.max_listed {
                    return Err(Error::TooManyReferrers {
                        what: subject.to_string(),
                        source_name: self.source.describe(),
                        limit: self.options.max_listed,
                    });
                }
                Ok(entries)
            }
            Ok(other) => {
                let message = format!(
                    "the referrers tag `{tag}` holds a {}, not an index; ignored",
                    other.media_type
                );
                self.warn(message);
                Ok(Vec::new())
            }
            Err(crate::registry::Error::NotFound { .. }) => Ok(Vec::new()),
            Err(e) => Err(e.into()),
        }
    }

    /// Fetch and check one candidate; `None` when it is absent (cosign tags) or ignored.
    async fn fetch(&mut self, subject: &Digest, candidate: Candidate) -> Result<Option<Referrer>> {
        let manifest = match (&candidate.descriptor, &candidate.tag) {
            (Some(d), _) => {
                let manifest = self.source.manifest(&d.digest.to_string()).await?;
                if manifest.digest != d.digest || manifest.bytes.len() as u64 != d.size {
                    return Err(crate::registry::Error::Integrity {
                        what: "referrer manifest".into(),
                        digest: d.digest.clone(),
                        expected: format!("{} ({} bytes)", d.digest, d.size),
                        actual: format!("{} ({} bytes)", manifest.digest, manifest.bytes.len()),
                    }
                    .into());
                }
                manifest
            }
            (None, Some(tag)) => match self.source.manifest(tag).await {
                Ok(manifest) => manifest,
                Err(crate::registry::Error::NotFound { .. }) => return Ok(None),
                Err(e) => return Err(e.into()),
            },
            (None, None) => return Ok(None),
        };
        let fields = ManifestFields::parse(&manifest).map_err(|reason| Error::Invalid {
            digest: manifest.digest.clone(),
            subject: subject.clone(),
            reason,
        })?;
        match (&fields.subject, candidate.found_by) {
            (Some(named), _) if &named.digest != subject => {
                let message = format!(
                    "referrer {} was listed for {subject} but its subject is {}; ignored",
                    manifest.digest, named.digest
                );
                self.warn(message);
                return Ok(None);
            }
            (None, FoundBy::ReferrersApi | FoundBy::TagSchema | FoundBy::Layout) => {
                let message = format!(
                    "referrer {} was listed for {subject} but has no subject; ignored",
                    manifest.digest
                );
                self.warn(message);
                return Ok(None);
            }
            _ => {}
        }
        let artifact_type = fields.artifact_type();
        if let Some(wanted) = &self.options.artifact_type {
            if artifact_type.as_ref() != Some(wanted) {
                return Ok(None);
            }
        }
        let (children, blobs) = self.parts(subject, &manifest, &fields).await?;
        Ok(Some(Referrer {
            media_type: manifest.media_type.clone(),
            digest: manifest.digest.clone(),
            size: manifest.bytes.len() as u64,
            artifact_type,
            annotations: fields.annotations.clone().unwrap_or_default(),
            subject: subject.clone(),
            found_by: candidate.found_by,
            tag: candidate.tag,
            referrers: Vec::new(),
            manifest,
            children,
            blobs,
        }))
    }

    /// The child manifests (of an index) and blobs a referrer needs.
    async fn parts(
        &mut self,
        subject: &Digest,
        manifest: &FetchedManifest,
        fields: &ManifestFields,
    ) -> Result<(Vec<FetchedManifest>, Vec<Descriptor>)> {
        let mut blobs = Vec::new();
        let mut children = Vec::new();
        if manifest.kind == ManifestKind::Image {
            let Some(config) = &fields.config else {
                return Err(Error::Invalid {
                    digest: manifest.digest.clone(),
                    subject: subject.clone(),
                    reason: "an image manifest without a config".into(),
                });
            };
            blobs.push(config.clone());
            blobs.extend(fields.layers.iter().cloned());
        } else {
            if fields.manifests.len() > self.options.max_listed {
                return Err(Error::TooManyReferrers {
                    what: manifest.digest.to_string(),
                    source_name: self.source.describe(),
                    limit: self.options.max_listed,
                });
            }
            for entry in &fields.manifests {
                let child = crate::source::fetch_child(self.source, entry)
                    .await
                    .map_err(|e| match e {
                        crate::source::ChildError::Source(e) => Error::Registry(e),
                        other => Error::Invalid {
                            digest: manifest.digest.clone(),
                            subject: subject.clone(),
                            reason: other.to_string(),
                        },
                    })?;
                let child_fields =
                    ManifestFields::parse(&child).map_err(|reason| Error::Invalid {
                        digest: child.digest.clone(),
                        subject: subject.clone(),
                        reason,
                    })?;
                match (&child.kind, &child_fields.config) {
                    (ManifestKind::Image, Some(config)) => {
                        blobs.push(config.clone());
                        blobs.extend(child_fields.layers.iter().cloned());
                    }
                    _ => {
                        return Err(Error::Invalid {
                            digest: manifest.digest.clone(),
                            subject: subject.clone(),
                            reason: format!(
                            "entry {} is not an image manifest (nested indexes are not carried)",
                            child.digest
                        ),
                        })
                    }
                }
                children.push(child);
            }
        }
        let mut unique = HashSet::new();
        blobs.retain(|b| unique.insert(b.digest.clone()));
        Ok((children, blobs))
    }
}

/// The entries of a referrers index (an API page or the tag-schema index).
fn parse_index(bytes: &[u8], subject: &Digest, url: &str) -> Result<Vec<ReferrerDescriptor>> {
    #[derive(Deserialize)]
    struct Index {
        #[serde(default)]
        manifests: Vec<ReferrerDescriptor>,
    }
    let index: Index =
        serde_json::from_slice(bytes).map_err(|e| crate::registry::Error::Unsupported {
            url: url.to_string(),
            reason: format!("the referrers list of {subject} is not a valid image index: {e}"),
        })?;
    Ok(index.manifests)
}

/// Add `entries` (referrers of `subject`) to the tag-schema index on a registry without the
/// referrers API: read, add what is missing, check nobody changed the tag meanwhile, write,
/// and read back; a concurrent writer's change makes it start over (a few times).
pub async fn add_to_tag_schema(
    client: &RegistryClient,
    subject: &Digest,
    entries: &[ReferrerDescriptor],
) -> Result<()> {
    const ATTEMPTS: u32 = 5;
    let tag = tag_schema_tag(subject);
    for attempt in 1..=ATTEMPTS {
        let (read_digest, mut index) = read_tag_schema(client, &tag).await?;
        let listed = listed_digests(&index);
        let missing: Vec<&ReferrerDescriptor> = entries
            .iter()
            .filter(|e| !listed.contains(&e.digest.to_string()))
            .collect();
        if missing.is_empty() {
            return Ok(());
        }
        if let Some(manifests) = index
            .get_mut("manifests")
            .and_then(serde_json::Value::as_array_mut)
        {
            for entry in missing {
                manifests.push(serde_json::to_value(entry).map_err(|e| {
                    crate::registry::Error::Unsupported {
                        url: tag.clone(),
                        reason: e.to_string(),
                    }
                })?);
            }
        }
        let bytes = Bytes::from(serde_json::to_vec(&index).map_err(|e| {
            crate::registry::Error::Unsupported {
                url: tag.clone(),
                reason: e.to_string(),
            }
        })?);
        // A writer that got in between our read and now: start over from its version.
        let (now, _) = read_tag_schema(client, &tag).await?;
        if now != read_digest {
            tracing::info!(%tag, attempt, "the referrers tag changed while we updated it; reading it again");
            continue;
        }
        client
            .put_manifest(&tag, bytes, media_type::OCI_INDEX)
            .await?;
        // A writer that replaced ours right after: start over so both sets are listed.
        let (_, written) = read_tag_schema(client, &tag).await?;
        let listed = listed_digests(&written);
        if entries
            .iter()
            .all(|e| listed.contains(&e.digest.to_string()))
        {
            return Ok(());
        }
        tracing::info!(%tag, attempt, "another writer replaced the referrers tag; merging again");
    }
    Err(Error::Contended {
        tag,
        attempts: ATTEMPTS,
    })
}

/// The tag-schema index at `tag` (its digest, and the document), or an empty one.
async fn read_tag_schema(
    client: &RegistryClient,
    tag: &str,
) -> Result<(Option<Digest>, serde_json::Value)> {
    match client.manifest(tag).await {
        Ok(found) if found.kind == ManifestKind::Index => {
            let value = serde_json::from_slice::<serde_json::Value>(&found.bytes)
                .ok()
                .filter(|v| v.get("manifests").is_some_and(serde_json::Value::is_array))
                .ok_or_else(|| Error::TagNotAnIndex {
                    tag: tag.to_string(),
                    media_type: "malformed index".into(),
                })?;
            Ok((Some(found.digest), value))
        }
        Ok(found) => Err(Error::TagNotAnIndex {
            tag: tag.to_string(),
            media_type: found.media_type,
        }),
        Err(crate::registry::Error::NotFound { .. }) => Ok((
            None,
            serde_json::json!({
                "schemaVersion": 2,
                "mediaType": media_type::OCI_INDEX,
                "manifests": [],
            }),
        )),
        Err(e) => Err(e.into()),
    }
}

fn listed_digests(index: &serde_json::Value) -> HashSet<String> {
    index
        .get("manifests")
        .and_then(serde_json::Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|m| m.get("digest").and_then(serde_json::Value::as_str))
        .map(str::to_string)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

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
                next: more.then(|| {
                    url::Url::parse(&format!("memory://x/referrers?{}", number + 1)).unwrap()
                }),
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
}
