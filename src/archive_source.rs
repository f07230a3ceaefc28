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
use serde::{Deserialize, Serialize};

use crate::digest::{Algorithm, Digest, Digester};
use crate::manifest::{Descriptor, ImageConfigSummary, ImageIndex, ImageManifest};
use crate::media_type::{self, LayerCompression};
use crate::reference::Reference;
use crate::registry::{Error, Missing, Result, MANIFEST_LIMIT};
use crate::source::{read_chunks, select_in_index, BlobBody, FetchedManifest, ImageSource};
use crate::tar_index::{Member, TarError, TarIndex};

/// The largest image config read from a classic archive.
pub const CONFIG_LIMIT: u64 = 16 * 1024 * 1024;
/// The annotation Docker (and containerd) put on `index.json` entries: the full image name.
const IMAGE_NAME_ANNOTATION: &str = "io.containerd.image.name";

pub use crate::source_spec::ArchiveKind;

/// One entry of a `docker save` `manifest.json`.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct DockerEntry {
    config: String,
    #[serde(default)]
    repo_tags: Option<Vec<String>>,
    layers: Vec<String>,
}

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

/// Serialised in the order Docker 25 writes an image manifest.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct BuiltManifest<'a> {
    schema_version: u32,
    media_type: &'a str,
    config: &'a Descriptor,
    layers: &'a [Descriptor],
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

    /// For a docker-archive: which `manifest.json` entry `reference` names (`""` for the only
    /// one, `@N`, or `repo:tag` among the `RepoTags`).
    fn docker_entry<'a>(
        &self,
        entries: &'a [DockerEntry],
        reference: &str,
    ) -> Result<&'a DockerEntry> {
        if reference.is_empty() {
            if entries.len() != 1 {
                return Err(self.invalid(format!(
                    "it holds {} images: name one with docker-archive:PATH:REPO:TAG or \
                     docker-archive:PATH:@N",
                    entries.len()
                )));
            }
            return Ok(&entries[0]);
        }
        if let Some(number) = reference.strip_prefix('@') {
            let n: usize = number.parse().map_err(|_| {
                self.invalid(format!(
                    "`{reference}` is not an image number (@0, @1, ...)"
                ))
            })?;
            return entries.get(n).ok_or_else(|| Error::NotFound {
                kind: Missing::ArchiveImage,
                what: format!("image @{n} (it holds {})", entries.len()),
                url: self.describe(),
            });
        }
        let wanted = normalised_name(reference);
        entries
            .iter()
            .find(|entry| {
                entry.repo_tags.iter().flatten().any(|tag| {
                    tag == reference || (wanted.is_some() && normalised_name(tag) == wanted)
                })
            })
            .ok_or_else(|| Error::NotFound {
                kind: Missing::ArchiveImage,
                what: format!("image `{reference}`"),
                url: self.describe(),
            })
    }

    /// For a Docker 25+ archive: the `index.json` entry for a `manifest.json` entry, by the
    /// image name Docker records, else by the config digest.
    async fn docker_in_layout(
        &self,
        opened: &Arc<Opened>,
        entry: &DockerEntry,
    ) -> Result<Option<(Digest, Option<String>)>> {
        let Some(layout) = &opened.layout else {
            return Ok(None);
        };
        let names: Vec<String> = entry
            .repo_tags
            .iter()
            .flatten()
            .filter_map(|t| normalised_name(t))
            .collect();
        for descriptor in &layout.manifests {
            let name = descriptor
                .annotations
                .as_ref()
                .and_then(|a| a.get(IMAGE_NAME_ANNOTATION))
                .and_then(|n| normalised_name(n));
            if name.is_some_and(|n| names.contains(&n)) {
                return Ok(Some((
                    descriptor.digest.clone(),
                    Some(descriptor.media_type.clone()),
                )));
            }
        }
        let config = {
            let (this, opened, name) = (self.clone_handle(), opened.clone(), entry.config.clone());
            tokio::task::spawn_blocking(move || {
                this.read_member(&opened, &name, CONFIG_LIMIT, "manifest.json")
                    .map(|bytes| Digest::sha256_of(&bytes))
            })
            .await
            .map_err(|e| self.invalid(e.to_string()))??
        };
        for descriptor in &layout.manifests {
            if media_type::manifest_kind(&descriptor.media_type)
                != Some(media_type::ManifestKind::Image)
            {
                continue;
            }
            let manifest = self
                .layout_manifest(
                    opened.clone(),
                    descriptor.digest.clone(),
                    Some(descriptor.media_type.clone()),
                )
                .await?;
            let parsed: Option<ImageManifest> = serde_json::from_slice(&manifest.bytes).ok();
            if parsed.is_some_and(|m| m.config.digest == config) {
                return Ok(Some((
                    descriptor.digest.clone(),
                    Some(descriptor.media_type.clone()),
                )));
            }
        }
        Ok(None)
    }

    /// Build the OCI manifest of a classic `docker save` image (see the module docs).
    fn build_manifest(
        &self,
        opened: &Opened,
        entry: &DockerEntry,
    ) -> Result<(Bytes, Vec<(Digest, String)>)> {
        let config_bytes =
            self.read_member(opened, &entry.config, CONFIG_LIMIT, "manifest.json")?;
        let config_digest = Digest::sha256_of(&config_bytes);
        let summary: ImageConfigSummary = serde_json::from_slice(&config_bytes).map_err(|e| {
            self.invalid(format!(
                "the image config `{}` is not valid: {e}",
                entry.config
            ))
        })?;
        let diff_ids = summary
            .rootfs
            .as_ref()
            .map(|r| r.diff_ids.clone())
            .unwrap_or_default();
        if diff_ids.len() != entry.layers.len() {
            return Err(self.invalid(format!(
                "manifest.json lists {} layers, the image config {} diff_ids",
                entry.layers.len(),
                diff_ids.len()
            )));
        }
        let mut members = vec![(config_digest.clone(), entry.config.clone())];
        let mut layers = Vec::new();
        for (name, diff_id) in entry.layers.iter().zip(&diff_ids) {
            let member = self.member(opened, name, "manifest.json")?;
            let (digest, compression) = self.hash_layer(&member, name, diff_id)?;
            let media_type = match compression {
                LayerCompression::None => "application/vnd.oci.image.layer.v1.tar",
                LayerCompression::Gzip => "application/vnd.oci.image.layer.v1.tar+gzip",
                LayerCompression::Zstd => "application/vnd.oci.image.layer.v1.tar+zstd",
            };
            members.push((digest.clone(), name.clone()));
            layers.push(descriptor(media_type, digest, member.size));
        }
        // As Docker 25 writes it: the config descriptor names the platform.
        let mut config = descriptor(
            media_type::OCI_CONFIG,
            config_digest,
            config_bytes.len() as u64,
        );
        if !summary.os.is_empty() && !summary.architecture.is_empty() {
            config.platform = Some(crate::manifest::PlatformSpec {
                architecture: summary.architecture.clone(),
                os: summary.os.clone(),
                variant: summary.variant.clone(),
                os_version: None,
            });
        }
        let manifest = BuiltManifest {
            schema_version: 2,
            media_type: media_type::OCI_MANIFEST,
            config: &config,
            layers: &layers,
        };
        let bytes = serde_json::to_vec(&manifest).map_err(|e| self.invalid(e.to_string()))?;
        Ok((Bytes::from(bytes), members))
    }

    /// The digest of a layer member and its compression; its uncompressed bytes must hash to
    /// `diff_id`.
    fn hash_layer(
        &self,
        member: &Member,
        name: &str,
        diff_id: &Digest,
    ) -> Result<(Digest, LayerCompression)> {
        let io = |source| Error::Io {
            path: self.path.clone(),
            source,
        };
        let mut file = self.open_file()?;
        file.seek(SeekFrom::Start(member.offset)).map_err(io)?;
        let mut magic = [0u8; 4];
        let peeked = (&mut file)
            .take(member.size.min(4))
            .read(&mut magic)
            .map_err(io)?;
        let compression = match &magic[..peeked] {
            [0x1f, 0x8b, ..] => LayerCompression::Gzip,
            [0x28, 0xb5, 0x2f, 0xfd] => LayerCompression::Zstd,
            _ => LayerCompression::None,
        };
        file.seek(SeekFrom::Start(member.offset)).map_err(io)?;
        let blob = crate::digest::HashingReader::new(
            std::io::BufReader::with_capacity(1 << 20, file.take(member.size)),
            Algorithm::Sha256,
        );
        // One pass: the blob is hashed by the reader at the bottom, the uncompressed stream
        // here (unless it is the blob itself, hashed alike).
        let same_hash =
            compression == LayerCompression::None && diff_id.algorithm() == Algorithm::Sha256;
        let mut diff = (!same_hash).then(|| Digester::new(diff_id.algorithm()));
        let mut buffer = vec![0u8; 256 * 1024];
        let mut pump = |reader: &mut dyn Read| -> Result<()> {
            loop {
                let n = reader
                    .read(&mut buffer)
                    .map_err(|e| self.invalid(format!("layer `{name}` cannot be read: {e}")))?;
                if n == 0 {
                    return Ok(());
                }
                if let Some(diff) = diff.as_mut() {
                    diff.update(&buffer[..n]);
                }
            }
        };
        let mut blob = match compression {
            LayerCompression::None => {
                let mut blob = blob;
                pump(&mut blob)?;
                blob
            }
            LayerCompression::Gzip => {
                let mut decoder = flate2::read::MultiGzDecoder::new(blob);
                pump(&mut decoder)?;
                decoder.into_inner()
            }
            LayerCompression::Zstd => {
                let mut decoder =
                    zstd::stream::read::Decoder::with_buffer(std::io::BufReader::new(blob))
                        .map_err(io)?;
                pump(&mut decoder)?;
                decoder.finish().into_inner()
            }
        };
        // Bytes after the compressed stream's end belong to the blob too.
        std::io::copy(&mut blob, &mut std::io::sink()).map_err(io)?;
        let (digest, count, _) = blob.finish();
        if count != member.size {
            return Err(self.invalid(format!("layer `{name}` ends early")));
        }
        let uncompressed = match diff {
            Some(diff) => diff.finish(),
            None => digest.clone(),
        };
        if &uncompressed != diff_id {
            return Err(Error::Integrity {
                what: format!("layer `{name}` in {}", self.describe()),
                digest: diff_id.clone(),
                expected: format!("{diff_id} (the config's diff_id)"),
                actual: uncompressed.to_string(),
            });
        }
        Ok((digest, compression))
    }

    async fn built_manifest(
        &self,
        opened: Arc<Opened>,
        entry: DockerEntry,
    ) -> Result<FetchedManifest> {
        let this = self.clone_handle();
        let (bytes, members) =
            tokio::task::spawn_blocking(move || this.build_manifest(&opened, &entry))
                .await
                .map_err(|e| self.invalid(e.to_string()))??;
        let manifest = FetchedManifest::verify(
            bytes.clone(),
            Some(media_type::OCI_MANIFEST.to_string()),
            None,
            None,
            &self.describe(),
        )?;
        lock(&self.members).extend(members);
        lock(&self.built).insert(manifest.digest.clone(), bytes);
        Ok(manifest)
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

/// `alpine:3.19` and `docker.io/library/alpine:3.19` name the same image: compare them as
/// `registry/repository:tag`.
fn normalised_name(name: &str) -> Option<String> {
    let reference: Reference = name.parse().ok()?;
    if reference.digest().is_some() {
        return None;
    }
    let tag = reference.tag().unwrap_or("latest");
    Some(format!(
        "{}/{}:{tag}",
        reference.registry(),
        reference.repository()
    ))
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
