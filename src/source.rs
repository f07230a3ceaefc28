//! Where an image comes from: a registry or a local OCI image layout. Both answer the same two
//! questions (a manifest by tag or digest, a blob from an offset), so one pipeline serves both
//! and a layout staged on a connected machine unpacks the same way on a disconnected one.

use std::path::{Path, PathBuf};

use bytes::Bytes;
use futures_util::stream::BoxStream;

use crate::digest::Digest;
use crate::manifest::Descriptor;
use crate::media_type::{self, ManifestKind};
use crate::registry::referrers::ReferrersPage;
use crate::registry::{Error, Missing, Result, MANIFEST_LIMIT};

pub use crate::registry::{BlobBody, FetchedManifest};

/// The manifest a layout's `index.json` names for `reference`: a digest (any manifest blob of
/// the layout may be addressed, with its media type when the index lists it), a tag (the
/// `org.opencontainers.image.ref.name` annotation), or `""` for the only entry. `scheme` is
/// how the user names this kind of source (`oci`, `oci-archive`), for the message.
pub(crate) fn select_in_index(
    index: &crate::manifest::ImageIndex,
    reference: &str,
    describe: &str,
    scheme: &str,
    is_image: &dyn Fn(&crate::manifest::Descriptor) -> bool,
) -> Result<(Digest, Option<String>)> {
    if let Ok(digest) = reference.parse::<Digest>() {
        let media_type = index
            .manifests
            .iter()
            .find(|d| d.digest == digest)
            .map(|d| d.media_type.clone());
        return Ok((digest, media_type));
    }
    // With no reference, only images are candidates (not the referrers a layout carries).
    let candidates: Vec<&crate::manifest::Descriptor> = index
        .manifests
        .iter()
        .filter(|d| !reference.is_empty() || is_image(d))
        .collect();
    if reference.is_empty() && candidates.len() != 1 {
        return Err(Error::Unsupported {
            url: describe.to_string(),
            reason: format!(
                "it holds {} images: name one with {scheme}:PATH:TAG or {scheme}:PATH@DIGEST",
                candidates.len()
            ),
        });
    }
    let found = candidates
        .into_iter()
        .find(|d| reference.is_empty() || d.ref_name() == Some(reference))
        .ok_or_else(|| Error::NotFound {
            kind: Missing::Tag,
            what: format!("tag `{reference}`"),
            url: describe.to_string(),
        })?;
    Ok((found.digest.clone(), Some(found.media_type.clone())))
}

/// Why an index entry's manifest could not be taken.
#[derive(Debug, thiserror::Error)]
pub enum ChildError {
    /// The source failed to serve it, or served something ambiguous.
    #[error(transparent)]
    Source(#[from] Error),
    /// The manifest served is not the one the entry names (digest or size).
    #[error("manifest {digest} failed verification: expected {expected}, got {actual}")]
    Mismatch {
        /// The digest the entry names.
        digest: Digest,
        /// What the entry says (digest and size).
        expected: String,
        /// What was served.
        actual: String,
    },
}

/// Fetch an index entry's manifest, checking its digest and size against the entry.
pub async fn fetch_child(
    source: &dyn ImageSource,
    descriptor: &Descriptor,
) -> std::result::Result<FetchedManifest, ChildError> {
    let child = source.manifest(&descriptor.digest.to_string()).await?;
    if child.digest != descriptor.digest || child.bytes.len() as u64 != descriptor.size {
        return Err(ChildError::Mismatch {
            digest: descriptor.digest.clone(),
            expected: format!("{} ({} bytes)", descriptor.digest, descriptor.size),
            actual: format!("{} ({} bytes)", child.digest, child.bytes.len()),
        });
    }
    // The index said what the child is; the child must agree (CVE-2021-41190).
    if child.media_type != descriptor.media_type {
        return Err(ChildError::Source(Error::AmbiguousManifest {
            url: format!("{} {}", source.describe(), descriptor.digest),
            reason: format!(
                "the index entry says `{}` but the manifest is `{}`",
                descriptor.media_type, child.media_type
            ),
        }));
    }
    Ok(child)
}

/// A place images are read from.
#[async_trait::async_trait]
pub trait ImageSource: Send + Sync {
    /// For messages, e.g. `127.0.0.1:5000/app` or `oci:/path`.
    fn describe(&self) -> String;
    /// A manifest by tag or digest (`""` for a layout's only image).
    async fn manifest(&self, reference: &str) -> Result<FetchedManifest>;
    /// A blob body starting at `offset` (or 0 if the source ignores ranges), ending at `end`
    /// when given (a source may send more: the caller stops reading).
    async fn open_blob(&self, digest: &Digest, offset: u64, end: Option<u64>) -> Result<BlobBody>;
    /// Whether fetching ranges of one blob concurrently can pay off: a source across a
    /// network that honours `Range`. Not a local layout, nor a loopback registry, where one
    /// stream is already as fast as the CPU ([`crate::registry::ClientOptions::parallel_ranges`]
    /// decides for a registry).
    fn prefers_parallel_ranges(&self) -> bool {
        false
    }
    /// Which endpoint served each manifest and blob, when there is a choice (mirrors).
    fn served_by(&self) -> std::collections::BTreeMap<String, String> {
        std::collections::BTreeMap::new()
    }
    /// One page of the referrers of `subject` (distribution spec 1.1): the first when `page`
    /// is `None`, else the one a previous page linked to. Sources without the API answer
    /// [`ReferrersPage::Unsupported`] (the default), and discovery falls back to tags.
    async fn referrers_page(
        &self,
        _subject: &Digest,
        _artifact_type: Option<&str>,
        _page: Option<&url::Url>,
    ) -> Result<ReferrersPage> {
        Ok(ReferrersPage::Unsupported)
    }
}

#[async_trait::async_trait]
impl ImageSource for crate::registry::RegistryClient {
    fn describe(&self) -> String {
        self.repository().to_string()
    }

    async fn manifest(&self, reference: &str) -> Result<FetchedManifest> {
        crate::registry::RegistryClient::manifest(self, reference).await
    }

    async fn open_blob(&self, digest: &Digest, offset: u64, end: Option<u64>) -> Result<BlobBody> {
        crate::registry::RegistryClient::open_blob(self, digest, offset, end).await
    }

    fn prefers_parallel_ranges(&self) -> bool {
        self.parallel_ranges()
    }

    async fn referrers_page(
        &self,
        subject: &Digest,
        artifact_type: Option<&str>,
        page: Option<&url::Url>,
    ) -> Result<ReferrersPage> {
        crate::registry::RegistryClient::referrers_page(self, subject, artifact_type, page).await
    }
}

/// A local OCI image layout used as a source.
#[derive(Debug, Clone)]
pub struct LayoutSource {
    root: PathBuf,
}

impl LayoutSource {
    /// A layout at `root` (must contain `oci-layout` and `index.json`).
    pub fn open(root: &Path) -> Result<Self> {
        for file in ["oci-layout", "index.json"] {
            let path = root.join(file);
            if !path.is_file() {
                return Err(Error::NotFound {
                    kind: Missing::LayoutFile,
                    what: format!("OCI layout file `{file}`"),
                    url: path.display().to_string(),
                });
            }
        }
        Ok(Self {
            root: root.to_path_buf(),
        })
    }

    fn blob_path(&self, digest: &Digest) -> PathBuf {
        crate::layout::blob_path(&self.root, digest)
    }

    /// A small manifest blob of the layout, verified; `None` if absent, too large or invalid.
    fn small_manifest(&self, entry: &Descriptor) -> Option<FetchedManifest> {
        if entry.size > MANIFEST_LIMIT || media_type::manifest_kind(&entry.media_type).is_none() {
            return None;
        }
        let path = self.blob_path(&entry.digest);
        let bytes = std::fs::read(&path).ok()?;
        FetchedManifest::verify(
            Bytes::from(bytes),
            Some(entry.media_type.clone()),
            Some(&entry.digest),
            None,
            &path.display().to_string(),
        )
        .ok()
    }

    /// Whether an `index.json` entry is a referrer (under a referrers tag, or with a
    /// `subject`) rather than an image.
    fn is_referrer(&self, entry: &Descriptor) -> bool {
        entry
            .ref_name()
            .is_some_and(crate::referrer::is_referrer_tag)
            || self
                .small_manifest(entry)
                .is_some_and(|m| crate::referrer::subject_of(&m).is_some())
    }

    /// The referrers of `subject` the layout holds: manifests listed in `index.json` whose
    /// `subject` it is, and the entries of its tag-schema index if the layout has that tag.
    fn referrers_in_index(
        &self,
        subject: &Digest,
    ) -> Result<Vec<crate::referrer::ReferrerDescriptor>> {
        let index = crate::layout::read_index(&self.root).map_err(|source| Error::Io {
            path: self.root.join("index.json"),
            source,
        })?;
        let schema_tag = crate::referrer::tag_schema_tag(subject);
        let mut found = Vec::new();
        for entry in &index.manifests {
            let Some(manifest) = self.small_manifest(entry) else {
                continue;
            };
            if entry.ref_name() == Some(schema_tag.as_str()) && manifest.kind == ManifestKind::Index
            {
                #[derive(serde::Deserialize)]
                struct Listed {
                    #[serde(default)]
                    manifests: Vec<crate::referrer::ReferrerDescriptor>,
                }
                if let Ok(listed) = serde_json::from_slice::<Listed>(&manifest.bytes) {
                    found.extend(listed.manifests);
                }
                continue;
            }
            if let Some((of, listing)) = crate::referrer::listing_of(&manifest) {
                if &of == subject {
                    found.push(listing);
                }
            }
        }
        Ok(found)
    }

    fn io(path: &Path) -> impl FnOnce(std::io::Error) -> Error + '_ {
        move |source| {
            if source.kind() == std::io::ErrorKind::NotFound {
                Error::NotFound {
                    kind: Missing::Blob,
                    what: "blob".into(),
                    url: path.display().to_string(),
                }
            } else {
                Error::Io {
                    path: path.to_path_buf(),
                    source,
                }
            }
        }
    }
}

#[async_trait::async_trait]
impl ImageSource for LayoutSource {
    fn describe(&self) -> String {
        format!("oci:{}", self.root.display())
    }

    async fn manifest(&self, reference: &str) -> Result<FetchedManifest> {
        let index_path = self.root.join("index.json");
        let index = crate::layout::read_index(&self.root).map_err(|source| {
            if source.kind() == std::io::ErrorKind::InvalidData {
                // Readable but not an index (`"manifests": null`, bad JSON): the content is
                // wrong, not the disk.
                Error::Unsupported {
                    url: index_path.display().to_string(),
                    reason: source.to_string(),
                }
            } else {
                Error::Io {
                    path: index_path,
                    source,
                }
            }
        })?;
        // The referrers a layout carries are not images to choose from.
        let (digest, media_type) =
            select_in_index(&index, reference, &self.describe(), "oci", &|d| {
                !self.is_referrer(d)
            })?;
        let path = self.blob_path(&digest);
        let metadata = tokio::fs::metadata(&path).await.map_err(Self::io(&path))?;
        if metadata.len() > MANIFEST_LIMIT {
            return Err(Error::ManifestTooLarge {
                url: path.display().to_string(),
                limit: MANIFEST_LIMIT,
            });
        }
        let bytes = tokio::fs::read(&path).await.map_err(Self::io(&path))?;
        FetchedManifest::verify(
            Bytes::from(bytes),
            media_type,
            Some(&digest),
            None,
            &path.display().to_string(),
        )
    }

    async fn referrers_page(
        &self,
        subject: &Digest,
        _artifact_type: Option<&str>,
        _page: Option<&url::Url>,
    ) -> Result<ReferrersPage> {
        let listed = self.referrers_in_index(subject)?;
        Ok(crate::referrer::local_page(
            &listed,
            format!("{}/index.json", self.describe()),
        ))
    }

    async fn open_blob(&self, digest: &Digest, offset: u64, _end: Option<u64>) -> Result<BlobBody> {
        use tokio::io::AsyncSeekExt;
        let path = self.blob_path(digest);
        let mut file = tokio::fs::File::open(&path)
            .await
            .map_err(Self::io(&path))?;
        let length = file.metadata().await.map_err(Self::io(&path))?.len();
        let offset = offset.min(length);
        file.seek(std::io::SeekFrom::Start(offset))
            .await
            .map_err(Self::io(&path))?;
        Ok(BlobBody {
            offset,
            content_length: Some(length - offset),
            stream: read_chunks(file),
        })
    }
}

/// A local file (or a range of one) as a blob body: 256 KiB chunks until `reader` ends.
pub(crate) fn read_chunks<R>(reader: R) -> BoxStream<'static, std::io::Result<Bytes>>
where
    R: tokio::io::AsyncRead + Unpin + Send + 'static,
{
    use tokio::io::AsyncReadExt;
    Box::pin(futures_util::stream::unfold(
        reader,
        |mut reader| async move {
            let mut buffer = vec![0u8; 256 * 1024];
            match reader.read(&mut buffer).await {
                Ok(0) => None,
                Ok(n) => {
                    buffer.truncate(n);
                    Some((Ok(Bytes::from(buffer)), reader))
                }
                Err(e) => Some((Err(e), reader)),
            }
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Issue 16 item 3: a registry re-signs schema 1 on every GET, so the body never hashes to
    /// the announced digest; it is named for what it is, not called corrupt.
    #[test]
    fn schema1_is_named_before_the_digest_is_judged() {
        let announced = Digest::sha256_of(b"the stored, unsigned payload");
        let body = br#"{"schemaVersion":1,"name":"a","tag":"v1","fsLayers":[],"signatures":[]}"#;
        for content_type in [
            Some("application/vnd.docker.distribution.manifest.v1+prettyjws".to_string()),
            None,
        ] {
            let error = FetchedManifest::verify(
                Bytes::from_static(body),
                content_type,
                None,
                Some(&announced),
                "u",
            )
            .unwrap_err();
            assert!(matches!(error, Error::Schema1 { .. }), "{error}");
        }
        let body = br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","layers":[]}"#;
        let error =
            FetchedManifest::verify(Bytes::from_static(body), None, None, Some(&announced), "u")
                .unwrap_err();
        assert!(matches!(error, Error::Integrity { .. }), "{error}");
    }
}
