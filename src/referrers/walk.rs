//! The walk behind [`discover`](super::discover): list a subject's candidates (the referrers
//! API page by page, else the tag-schema index, then cosign's tags), fetch and check each one,
//! and recurse into referrers of referrers. It lives apart from the types because it is where
//! every cap and every "ignored" warning is decided.

use std::collections::HashSet;

use futures_util::future::BoxFuture;
use serde::Deserialize;

use super::{
    cosign_tag, tag_schema_tag, DiscoveryOptions, Error, FoundBy, Referrer, ReferrerDescriptor,
    Result, COSIGN_SUFFIXES,
};
use crate::digest::Digest;
use crate::manifest::Descriptor;
use crate::media_type::{self, ManifestKind};
use crate::referrer::ManifestFields;
use crate::registry::referrers::ReferrersPage;
use crate::source::{FetchedManifest, ImageSource};

/// One listed candidate before its manifest is fetched.
struct Candidate {
    descriptor: Option<ReferrerDescriptor>,
    found_by: FoundBy,
    tag: Option<String>,
}

pub(super) struct Walker<'a> {
    pub(super) source: &'a dyn ImageSource,
    pub(super) options: &'a DiscoveryOptions,
    /// Digests already in the tree (subjects included): a second sighting is a loop.
    pub(super) seen: HashSet<Digest>,
    pub(super) count: usize,
    pub(super) warnings: Vec<String>,
}

impl Walker<'_> {
    fn warn(&mut self, message: String) {
        tracing::warn!("{message}");
        self.warnings.push(message);
    }

    pub(super) fn walk(
        &mut self,
        subject: Digest,
        depth: usize,
    ) -> BoxFuture<'_, Result<Vec<Referrer>>> {
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
