//! A classic `docker save` archive: `manifest.json` entries chosen by `RepoTags` or `@N`, and
//! the OCI image manifest Docker 25 would write for them built from the members themselves
//! (each layer hashed, its compression detected, its diff_id checked against the config).

use std::io::{Read, Seek, SeekFrom};
use std::sync::Arc;

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use super::{descriptor, lock, ArchiveSource, Opened, CONFIG_LIMIT, IMAGE_NAME_ANNOTATION};
use crate::digest::{Algorithm, Digest, Digester};
use crate::manifest::{Descriptor, ImageConfigSummary, ImageManifest};
use crate::media_type::{self, LayerCompression};
use crate::reference::Reference;
use crate::registry::{Error, Missing, Result};
use crate::source::{FetchedManifest, ImageSource as _};
use crate::tar_index::Member;

/// One entry of a `docker save` `manifest.json`.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(super) struct DockerEntry {
    config: String,
    #[serde(default)]
    repo_tags: Option<Vec<String>>,
    layers: Vec<String>,
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
    /// For a docker-archive: which `manifest.json` entry `reference` names (`""` for the only
    /// one, `@N`, or `repo:tag` among the `RepoTags`).
    pub(super) fn docker_entry<'a>(
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
    pub(super) async fn docker_in_layout(
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
                let mut decoder = crate::gzip::GzipMembers::new(blob);
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

    pub(super) async fn built_manifest(
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
