//! `--manifest-format oci`: Docker media types rewritten to OCI ones, for consumers that read
//! only OCI (Debian's skopeo 1.9 and umoci 0.4.7 refuse Docker v2 schema 2 manifests in an OCI
//! layout). By default manifests are kept byte for byte, so digests stay those of the source;
//! this conversion makes new manifests (new digests) and records each original digest in the
//! [`CONVERTED_FROM`] annotation. Config and layer blobs are untouched: only the descriptors'
//! media types change, and a Docker config is a valid OCI config.

use std::collections::HashMap;

use bytes::Bytes;

use crate::digest::Digest;
use crate::error::{Error, Result};
use crate::media_type::{self, ManifestKind};
use crate::resolve::{Resolved, ResolvedImage};
use crate::source::FetchedManifest;

/// The annotation on a converted manifest or index that holds the digest it was converted
/// from.
pub const CONVERTED_FROM: &str = "io.acrpull.converted-from";

/// The OCI media type for a Docker one (config, layer, manifest, list), if there is one.
fn oci_equivalent(media_type: &str) -> Option<&'static str> {
    Some(match media_type {
        media_type::DOCKER_MANIFEST => media_type::OCI_MANIFEST,
        media_type::DOCKER_MANIFEST_LIST => media_type::OCI_INDEX,
        media_type::DOCKER_CONFIG => media_type::OCI_CONFIG,
        "application/vnd.docker.image.rootfs.diff.tar.gzip" => {
            "application/vnd.oci.image.layer.v1.tar+gzip"
        }
        "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip" => {
            "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip"
        }
        "application/vnd.docker.image.rootfs.diff.tar" => "application/vnd.oci.image.layer.v1.tar",
        _ => return None,
    })
}

/// Replace the `mediaType` of `value` by its OCI equivalent; whether it changed.
fn convert_media_type(value: &mut serde_json::Value) -> bool {
    let Some(object) = value.as_object_mut() else {
        return false;
    };
    let Some(new) = object
        .get("mediaType")
        .and_then(serde_json::Value::as_str)
        .and_then(oci_equivalent)
    else {
        return false;
    };
    object.insert("mediaType".into(), serde_json::Value::from(new));
    true
}

/// The document as a JSON object, its `mediaType` filled in from how it was served.
fn object_of(manifest: &FetchedManifest) -> Result<serde_json::Value> {
    let mut value: serde_json::Value =
        serde_json::from_slice(&manifest.bytes).map_err(|e| invalid(manifest, e))?;
    let object = value
        .as_object_mut()
        .ok_or_else(|| invalid(manifest, "not a JSON object"))?;
    object
        .entry("mediaType")
        .or_insert_with(|| serde_json::Value::from(manifest.media_type.clone()));
    Ok(value)
}

fn invalid(manifest: &FetchedManifest, e: impl std::fmt::Display) -> Error {
    Error::Unsupported(format!(
        "manifest {} ({}) cannot be converted: {e}",
        manifest.digest, manifest.media_type
    ))
}

/// The new manifest for `value` (changed in place), annotated with where it came from.
fn finish(original: &FetchedManifest, mut value: serde_json::Value) -> Result<FetchedManifest> {
    let object = value
        .as_object_mut()
        .ok_or_else(|| invalid(original, "not a JSON object"))?;
    let annotations = object
        .entry("annotations")
        .or_insert_with(|| serde_json::json!({}));
    let annotations = annotations
        .as_object_mut()
        .ok_or_else(|| invalid(original, "`annotations` is not an object"))?;
    annotations.insert(
        CONVERTED_FROM.to_string(),
        serde_json::Value::from(original.digest.to_string()),
    );
    let bytes = serde_json::to_vec(&value).map_err(|e| invalid(original, e))?;
    let media_type = value
        .get("mediaType")
        .and_then(serde_json::Value::as_str)
        .unwrap_or_default()
        .to_string();
    let kind =
        media_type::manifest_kind(&media_type).ok_or_else(|| invalid(original, "no media type"))?;
    Ok(FetchedManifest {
        digest: Digest::sha256_of(&bytes),
        bytes: Bytes::from(bytes),
        media_type,
        kind,
    })
}

/// An image manifest with OCI media types, or `None` when it has no Docker ones.
fn convert_image(manifest: &FetchedManifest) -> Result<Option<FetchedManifest>> {
    let mut value = object_of(manifest)?;
    let mut changed = convert_media_type(&mut value);
    if let Some(config) = value.get_mut("config") {
        changed |= convert_media_type(config);
    }
    if let Some(layers) = value.get_mut("layers").and_then(|l| l.as_array_mut()) {
        for layer in layers {
            changed |= convert_media_type(layer);
        }
    }
    if !changed {
        return Ok(None);
    }
    finish(manifest, value).map(Some)
}

/// An index whose children were replaced as `children` says (old digest to new manifest),
/// with OCI media types; `None` when nothing changed.
fn convert_index(
    index: &FetchedManifest,
    children: &HashMap<Digest, FetchedManifest>,
) -> Result<Option<FetchedManifest>> {
    let mut value = object_of(index)?;
    let mut changed = convert_media_type(&mut value);
    if let Some(entries) = value.get_mut("manifests").and_then(|m| m.as_array_mut()) {
        for entry in entries {
            let digest = entry
                .get("digest")
                .and_then(serde_json::Value::as_str)
                .and_then(|d| d.parse::<Digest>().ok());
            let new = digest.and_then(|d| children.get(&d));
            if let (Some(new), Some(entry)) = (new, entry.as_object_mut()) {
                entry.insert("digest".into(), new.digest.to_string().into());
                entry.insert("size".into(), (new.bytes.len() as u64).into());
                entry.insert("mediaType".into(), new.media_type.clone().into());
                changed = true;
            } else {
                changed |= convert_media_type(entry);
            }
        }
    }
    if !changed {
        return Ok(None);
    }
    finish(index, value).map(Some)
}

/// `resolved` with OCI media types throughout (unchanged when it has none of Docker's), and
/// the digest of the manifest it named before, when that changed.
pub fn to_oci(resolved: Resolved) -> Result<(Resolved, Option<Digest>)> {
    let mut converted = HashMap::new();
    let mut images = Vec::with_capacity(resolved.images.len());
    for image in resolved.images {
        let Some(manifest) = convert_image(&image.manifest)? else {
            images.push(image);
            continue;
        };
        let parsed = serde_json::from_slice(&manifest.bytes).map_err(|e| invalid(&manifest, e))?;
        converted.insert(image.manifest.digest.clone(), manifest.clone());
        images.push(ResolvedImage {
            manifest,
            parsed,
            platform: image.platform,
        });
    }
    let convert = |manifest: &FetchedManifest| -> Result<FetchedManifest> {
        Ok(match manifest.kind {
            ManifestKind::Image => converted.get(&manifest.digest).cloned(),
            ManifestKind::Index => convert_index(manifest, &converted)?,
        }
        .unwrap_or_else(|| manifest.clone()))
    };
    let root = convert(&resolved.root)?;
    let top = convert(&resolved.top)?;
    let original = (top.digest != resolved.top.digest).then(|| resolved.top.digest.clone());
    let display = resolved.display;
    Ok((
        Resolved {
            root,
            images,
            top,
            display,
        },
        original,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fetched(value: serde_json::Value) -> FetchedManifest {
        let bytes = Bytes::from(serde_json::to_vec(&value).unwrap());
        FetchedManifest::verify(bytes, None, None, None, "test").unwrap()
    }

    fn docker_image() -> FetchedManifest {
        let d = |c: char| format!("sha256:{}", c.to_string().repeat(64));
        fetched(serde_json::json!({
            "schemaVersion": 2,
            "mediaType": media_type::DOCKER_MANIFEST,
            "config": {"mediaType": media_type::DOCKER_CONFIG, "digest": d('a'), "size": 10},
            "layers": [
                {"mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip", "digest": d('b'), "size": 20},
                {"mediaType": "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip", "digest": d('c'), "size": 30, "urls": ["https://example.invalid/x"]},
            ],
        }))
    }

    fn resolved_of(
        root: FetchedManifest,
        images: Vec<FetchedManifest>,
        top: FetchedManifest,
    ) -> Resolved {
        Resolved {
            root,
            images: images
                .into_iter()
                .map(|manifest| ResolvedImage {
                    parsed: serde_json::from_slice(&manifest.bytes).unwrap(),
                    manifest,
                    platform: None,
                })
                .collect(),
            top,
            display: "test".into(),
        }
    }

    #[test]
    fn docker_image_becomes_oci_with_its_origin_annotated() {
        let original = docker_image();
        let (resolved, from) = to_oci(resolved_of(
            original.clone(),
            vec![original.clone()],
            original.clone(),
        ))
        .unwrap();
        assert_eq!(from, Some(original.digest.clone()));
        let top: serde_json::Value = serde_json::from_slice(&resolved.top.bytes).unwrap();
        assert_eq!(top["mediaType"], media_type::OCI_MANIFEST);
        assert_eq!(top["config"]["mediaType"], media_type::OCI_CONFIG);
        assert_eq!(
            top["layers"][0]["mediaType"],
            "application/vnd.oci.image.layer.v1.tar+gzip"
        );
        assert_eq!(
            top["layers"][1]["mediaType"],
            "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip"
        );
        assert_eq!(top["layers"][1]["urls"][0], "https://example.invalid/x");
        assert_eq!(
            top["annotations"][CONVERTED_FROM],
            original.digest.to_string()
        );
        assert_eq!(resolved.top.digest, Digest::sha256_of(&resolved.top.bytes));
        assert_eq!(resolved.images[0].manifest.digest, resolved.top.digest);
        assert_eq!(
            resolved.images[0].parsed.config.media_type,
            media_type::OCI_CONFIG
        );
    }

    #[test]
    fn manifest_list_becomes_an_oci_index_naming_the_new_children() {
        let child = docker_image();
        let list = fetched(serde_json::json!({
            "schemaVersion": 2,
            "mediaType": media_type::DOCKER_MANIFEST_LIST,
            "manifests": [{"mediaType": media_type::DOCKER_MANIFEST, "digest": child.digest, "size": child.bytes.len(), "platform": {"os": "linux", "architecture": "amd64"}}],
        }));
        let (resolved, from) =
            to_oci(resolved_of(list.clone(), vec![child.clone()], list.clone())).unwrap();
        assert_eq!(from, Some(list.digest.clone()));
        let index: serde_json::Value = serde_json::from_slice(&resolved.top.bytes).unwrap();
        assert_eq!(index["mediaType"], media_type::OCI_INDEX);
        assert_eq!(index["manifests"][0]["mediaType"], media_type::OCI_MANIFEST);
        assert_eq!(
            index["manifests"][0]["digest"],
            resolved.images[0].manifest.digest.to_string()
        );
        assert_eq!(
            index["manifests"][0]["size"],
            resolved.images[0].manifest.bytes.len()
        );
        assert_eq!(index["manifests"][0]["platform"]["architecture"], "amd64");
        assert_eq!(
            index["annotations"][CONVERTED_FROM],
            list.digest.to_string()
        );
    }

    #[test]
    fn oci_images_are_kept_byte_for_byte() {
        let d = format!("sha256:{}", "a".repeat(64));
        let oci = fetched(serde_json::json!({
            "schemaVersion": 2,
            "mediaType": media_type::OCI_MANIFEST,
            "config": {"mediaType": media_type::OCI_CONFIG, "digest": d, "size": 1},
            "layers": [],
        }));
        let (resolved, from) =
            to_oci(resolved_of(oci.clone(), vec![oci.clone()], oci.clone())).unwrap();
        assert_eq!(from, None);
        assert_eq!(resolved.top.bytes, oci.bytes);
    }
}
