//! Archives as sources: a `docker save` tarball (`docker-archive:PATH[:REF]`) or a tar of an
//! OCI layout (`oci-archive:PATH[:TAG|@DIGEST]`), read in place. The tar's headers are read
//! once ([`TarIndex`]); every manifest and blob is then served as a byte range of its member,
//! so an image on a USB stick unpacks without being extracted first, and the pipeline hashes
//! what it reads exactly as it does for a registry.
//!
//! A Docker 25+ archive carries an OCI layout (`index.json`, `oci-layout`, `blobs/`) next to
//! `manifest.json`: its manifests are used as stored. A classic archive has no manifest, only
//! `manifest.json` (`Config`, `RepoTags`, `Layers`): the OCI image manifest Docker 25 would
//! write for it is built from the members themselves (every layer hashed, its compression
//! detected, its uncompressed digest checked against the config's `rootfs.diff_ids`).
//!
//! Every byte is hostile: member names are validated by the index, `manifest.json`,
//! `index.json` and configs are read with caps, and whatever an archive claims is verified.

use std::collections::HashMap;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use bytes::Bytes;

use crate::digest::Digest;
use crate::manifest::{Descriptor, ImageIndex};
use crate::media_type;
use crate::registry::{Error, Missing, Result, MANIFEST_LIMIT};
use crate::source::{read_chunks, select_in_index, BlobBody, FetchedManifest, ImageSource};
use crate::tar_index::{Member, TarError, TarIndex};

/// The largest image config read from a classic archive.
pub const CONFIG_LIMIT: u64 = 16 * 1024 * 1024;
/// The annotation Docker (and containerd) put on `index.json` entries: the full image name.
const IMAGE_NAME_ANNOTATION: &str = "io.containerd.image.name";

mod classic;

pub use crate::source_spec::ArchiveKind;
use classic::DockerEntry;

/// What the archive holds, read once.
struct Opened {
    index: TarIndex,
    /// `index.json`, when the archive holds an OCI layout.
    layout: Option<ImageIndex>,
    /// `manifest.json` of a `docker save` archive.
    docker: Option<Vec<DockerEntry>>,
}

/// An image archive used as a source.
pub struct ArchiveSource {
    kind: ArchiveKind,
    path: PathBuf,
    opened: tokio::sync::OnceCell<Arc<Opened>>,
    /// Manifests built for classic `docker save` images, by digest.
    built: Mutex<HashMap<Digest, Bytes>>,
    /// Which member holds each blob of a built manifest.
    members: Mutex<HashMap<Digest, String>>,
}

impl std::fmt::Debug for ArchiveSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ArchiveSource")
            .field("kind", &self.kind)
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl ArchiveSource {
    /// An archive at `path` (read when first asked for a manifest).
    pub fn new(kind: ArchiveKind, path: &Path) -> Self {
        Self {
            kind,
            path: path.to_path_buf(),
            opened: tokio::sync::OnceCell::new(),
            built: Mutex::new(HashMap::new()),
            members: Mutex::new(HashMap::new()),
        }
    }

    fn invalid(&self, reason: impl Into<String>) -> Error {
        Error::Unsupported {
            url: self.describe(),
            reason: reason.into(),
        }
    }

    fn tar_error(&self, error: TarError) -> Error {
        match error {
            TarError::Io(source) => Error::Io {
                path: self.path.clone(),
                source,
            },
            TarError::Invalid(reason) => self.invalid(reason),
        }
    }

    fn missing(&self, name: &str, named_by: &str) -> Error {
        self.invalid(format!(
            "it has no member `{name}`, which {named_by} names: the archive is incomplete or \
             corrupt"
        ))
    }

    async fn opened(&self) -> Result<Arc<Opened>> {
        self.opened
            .get_or_try_init(|| async {
                let this = self.clone_handle();
                tokio::task::spawn_blocking(move || this.open_blocking().map(Arc::new))
                    .await
                    .map_err(|e| Error::Io {
                        path: self.path.clone(),
                        source: std::io::Error::other(e.to_string()),
                    })?
            })
            .await
            .cloned()
    }

    /// A copy of what the blocking readers need (not the caches).
    fn clone_handle(&self) -> Self {
        Self::new(self.kind, &self.path)
    }

    fn open_file(&self) -> Result<std::fs::File> {
        std::fs::File::open(&self.path).map_err(|source| {
            if source.kind() == std::io::ErrorKind::NotFound {
                Error::NotFound {
                    kind: Missing::ArchiveFile,
                    what: format!("{} file", self.kind.scheme()),
                    url: self.path.display().to_string(),
                }
            } else {
                Error::Io {
                    path: self.path.clone(),
                    source,
                }
            }
        })
    }

    fn open_blocking(&self) -> Result<Opened> {
        let mut file = self.open_file()?;
        let length = file
            .metadata()
            .map_err(|source| Error::Io {
                path: self.path.clone(),
                source,
            })?
            .len();
        if length == 0 {
            return Err(self.invalid("the file is empty"));
        }
        let index = TarIndex::read(&mut file, length).map_err(|e| self.tar_error(e))?;
        let mut opened = Opened {
            index,
            layout: None,
            docker: None,
        };
        if self.kind == ArchiveKind::Docker && opened.index.contains("manifest.json") {
            let bytes = self.read_member(&opened, "manifest.json", MANIFEST_LIMIT, "docker")?;
            let entries: Vec<DockerEntry> = serde_json::from_slice(&bytes).map_err(|e| {
                self.invalid(format!(
                    "manifest.json is not a docker-archive manifest: {e}"
                ))
            })?;
            opened.docker = Some(entries);
        }
        if opened.index.contains("oci-layout") || opened.index.contains("index.json") {
            let bytes =
                self.read_member(&opened, "index.json", MANIFEST_LIMIT, "the OCI layout")?;
            match serde_json::from_slice::<ImageIndex>(&bytes) {
                Ok(layout) => opened.layout = Some(layout),
                // manifest.json decides in a docker-archive; the layout beside it only
                // supplies manifests. Docker 25.0 writes `"manifests": null` for an image
                // saved without a tag.
                Err(e) if opened.docker.is_some() => {
                    tracing::warn!(
                        archive = %self.path.display(),
                        "ignoring the OCI layout in this docker-archive (index.json: {e}); using manifest.json"
                    );
                }
                Err(e) => {
                    return Err(self.invalid(format!("index.json is not a valid OCI index: {e}")))
                }
            }
        }
        match (self.kind, &opened.layout, &opened.docker) {
            (ArchiveKind::Oci, None, _) => Err(self.invalid(
                "it holds no OCI layout (no index.json): is it a docker-archive? (docker-archive:PATH)",
            )),
            (ArchiveKind::Docker, None, None) => Err(self.invalid(
                "it holds neither manifest.json nor index.json: is it an image archive?",
            )),
            _ => Ok(opened),
        }
    }

    /// A whole member, at most `limit` bytes.
    fn read_member(
        &self,
        opened: &Opened,
        name: &str,
        limit: u64,
        named_by: &str,
    ) -> Result<Vec<u8>> {
        let member = self.member(opened, name, named_by)?;
        if member.size > limit {
            return Err(Error::ManifestTooLarge {
                url: format!("{} ({name})", self.describe()),
                limit,
            });
        }
        let mut file = self.open_file()?;
        let mut bytes = vec![0u8; usize::try_from(member.size).unwrap_or(usize::MAX)];
        file.seek(SeekFrom::Start(member.offset))
            .and_then(|_| file.read_exact(&mut bytes))
            .map_err(|source| Error::Io {
                path: self.path.clone(),
                source,
            })?;
        Ok(bytes)
    }

    fn member(&self, opened: &Opened, name: &str, named_by: &str) -> Result<Member> {
        opened
            .index
            .file(name)
            .map_err(|e| self.tar_error(e))?
            .cloned()
            .ok_or_else(|| self.missing(name, named_by))
    }

    fn blob_member_name(&self, digest: &Digest) -> String {
        if let Some(name) = lock(&self.members).get(digest) {
            return name.clone();
        }
        format!("blobs/{}/{}", digest.algorithm().as_str(), digest.hex())
    }

    /// A manifest blob of the archive's OCI layout, verified against `digest`.
    async fn layout_manifest(
        &self,
        opened: Arc<Opened>,
        digest: Digest,
        media_type: Option<String>,
    ) -> Result<FetchedManifest> {
        let name = self.blob_member_name(&digest);
        let this = self.clone_handle();
        let bytes = tokio::task::spawn_blocking(move || {
            this.read_member(&opened, &name, MANIFEST_LIMIT, "index.json")
        })
        .await
        .map_err(|e| self.invalid(e.to_string()))??;
        FetchedManifest::verify(
            Bytes::from(bytes),
            media_type,
            Some(&digest),
            None,
            &self.describe(),
        )
    }

    /// Every manifest the archive's `index.json` lists that has a `subject`: that subject and
    /// the entry the referrers API would list for it.
    async fn listings(
        &self,
        opened: &Arc<Opened>,
        layout: &ImageIndex,
    ) -> Result<Vec<(Digest, crate::referrer::ReferrerDescriptor)>> {
        let mut listed = Vec::new();
        for entry in &layout.manifests {
            if entry.size > MANIFEST_LIMIT || media_type::manifest_kind(&entry.media_type).is_none()
            {
                continue;
            }
            let manifest = self
                .layout_manifest(
                    opened.clone(),
                    entry.digest.clone(),
                    Some(entry.media_type.clone()),
                )
                .await?;
            listed.extend(crate::referrer::listing_of(&manifest));
        }
        Ok(listed)
    }

    /// The digests of the referrers listed in `index.json` (empty when they cannot be read:
    /// choosing the image then reports what is wrong).
    async fn referrer_digests(
        &self,
        opened: &Arc<Opened>,
        layout: &ImageIndex,
    ) -> std::collections::HashSet<Digest> {
        self.listings(opened, layout)
            .await
            .unwrap_or_default()
            .into_iter()
            .map(|(_, listing)| listing.digest)
            .collect()
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn descriptor(media_type: &str, digest: Digest, size: u64) -> Descriptor {
    Descriptor {
        media_type: media_type.to_string(),
        digest,
        size,
        urls: None,
        annotations: None,
        platform: None,
    }
}

#[async_trait::async_trait]
impl ImageSource for ArchiveSource {
    fn describe(&self) -> String {
        format!("{}:{}", self.kind.scheme(), self.path.display())
    }

    async fn manifest(&self, reference: &str) -> Result<FetchedManifest> {
        let opened = self.opened().await?;
        if let Ok(digest) = reference.parse::<Digest>() {
            let built = lock(&self.built).get(&digest).cloned();
            if let Some(bytes) = built {
                let media_type = Some(media_type::OCI_MANIFEST.to_string());
                return FetchedManifest::verify(
                    bytes,
                    media_type,
                    Some(&digest),
                    None,
                    &self.describe(),
                );
            }
        }
        let entries = match (&opened.docker, self.kind) {
            (Some(entries), ArchiveKind::Docker) if reference.parse::<Digest>().is_err() => {
                entries.clone()
            }
            _ => {
                let layout = opened
                    .layout
                    .as_ref()
                    .ok_or_else(|| self.invalid("it holds no OCI layout"))?;
                // Untagged referrers (manifests with a `subject`) are not images to choose.
                let referrers = if reference.is_empty() {
                    self.referrer_digests(&opened, layout).await
                } else {
                    std::collections::HashSet::new()
                };
                let (digest, media_type) = select_in_index(
                    layout,
                    reference,
                    &self.describe(),
                    self.kind.scheme(),
                    &|d| {
                        !d.ref_name().is_some_and(crate::referrer::is_referrer_tag)
                            && !referrers.contains(&d.digest)
                    },
                )?;
                return self.layout_manifest(opened, digest, media_type).await;
            }
        };
        let entry = self.docker_entry(&entries, reference)?.clone();
        if let Some((digest, media_type)) = self.docker_in_layout(&opened, &entry).await? {
            return self.layout_manifest(opened, digest, media_type).await;
        }
        self.built_manifest(opened, entry).await
    }

    /// An `oci-archive` (or a Docker 25+ archive holding a layout) answers like a layout: the
    /// manifests its `index.json` lists whose `subject` is the digest.
    async fn referrers_page(
        &self,
        subject: &Digest,
        _artifact_type: Option<&str>,
        _page: Option<&url::Url>,
    ) -> Result<crate::registry::referrers::ReferrersPage> {
        let opened = self.opened().await?;
        let Some(layout) = opened.layout.as_ref() else {
            return Ok(crate::registry::referrers::ReferrersPage::Unsupported);
        };
        let listed: Vec<crate::referrer::ReferrerDescriptor> = self
            .listings(&opened, layout)
            .await?
            .into_iter()
            .filter(|(of, _)| of == subject)
            .map(|(_, listing)| listing)
            .collect();
        Ok(crate::referrer::local_page(
            &listed,
            format!("{}/index.json", self.describe()),
        ))
    }

    async fn open_blob(&self, digest: &Digest, offset: u64, _end: Option<u64>) -> Result<BlobBody> {
        use tokio::io::{AsyncReadExt, AsyncSeekExt};
        let opened = self.opened().await?;
        let name = self.blob_member_name(digest);
        let member = opened
            .index
            .file(&name)
            .map_err(|e| self.tar_error(e))?
            .cloned()
            .ok_or_else(|| self.missing(&name, &format!("a manifest (blob {digest})")))?;
        let offset = offset.min(member.size);
        let io = |source| Error::Io {
            path: self.path.clone(),
            source,
        };
        let mut file = tokio::fs::File::open(&self.path).await.map_err(io)?;
        file.seek(SeekFrom::Start(member.offset + offset))
            .await
            .map_err(io)?;
        let remaining = member.size - offset;
        Ok(BlobBody {
            offset,
            content_length: Some(remaining),
            stream: read_chunks(file.take(remaining)),
        })
    }
}
