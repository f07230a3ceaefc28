//! The parts of OCI / Docker manifests, indexes and configs that a puller reads.
//!
//! Small serde types rather than the full spec: unknown fields are ignored when reading, and
//! manifests are always stored as the exact bytes served, never re-serialised. Digests are
//! validated while parsing, so a descriptor's digest is safe to turn into a path.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::digest::Digest;
use crate::platform::Platform;

/// A content descriptor.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    /// Media type.
    pub media_type: String,
    /// Digest.
    pub digest: Digest,
    /// Size in bytes: at most `i64::MAX`, the image spec's `int64` (no registry can serve more,
    /// and a larger one would only overflow offsets and ranges further on).
    #[serde(deserialize_with = "size_in_int64")]
    pub size: u64,
    /// Alternative download URLs (foreign layers).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub urls: Option<Vec<String>>,
    /// Annotations.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<BTreeMap<String, String>>,
    /// Platform (index entries).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<PlatformSpec>,
}

/// A descriptor size, refused beyond `i64::MAX` (the image spec's `int64`).
fn size_in_int64<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<u64, D::Error> {
    let size = u64::deserialize(deserializer)?;
    if i64::try_from(size).is_err() {
        return Err(serde::de::Error::custom(format!(
            "descriptor size {size} is beyond the image spec's int64 range"
        )));
    }
    Ok(size)
}

/// The tag annotation of layout index entries.
pub const REF_NAME: &str = "org.opencontainers.image.ref.name";

impl Descriptor {
    /// The `org.opencontainers.image.ref.name` annotation.
    pub fn ref_name(&self) -> Option<&str> {
        self.annotations
            .as_ref()
            .and_then(|a| a.get(REF_NAME))
            .map(String::as_str)
    }
}

/// A platform as written in an index.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlatformSpec {
    /// Architecture.
    pub architecture: String,
    /// OS.
    pub os: String,
    /// Variant.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
    /// OS version (Windows).
    #[serde(
        default,
        rename = "os.version",
        skip_serializing_if = "Option::is_none"
    )]
    pub os_version: Option<String>,
}

impl PlatformSpec {
    /// As a normalised [`Platform`].
    pub fn to_platform(&self) -> Platform {
        Platform::new(&self.os, &self.architecture, self.variant.as_deref())
    }
}

/// An image manifest (OCI or Docker v2 schema 2).
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ImageManifest {
    /// Must be 2.
    pub schema_version: u32,
    /// The config blob.
    pub config: Descriptor,
    /// Layers, lowest first.
    #[serde(default)]
    pub layers: Vec<Descriptor>,
}

/// An index or manifest list.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ImageIndex {
    /// Must be 2.
    pub schema_version: u32,
    /// Entries.
    #[serde(default)]
    pub manifests: Vec<Descriptor>,
}

/// The parts of an image config the puller reads.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct ImageConfigSummary {
    /// OS.
    #[serde(default)]
    pub os: String,
    /// Architecture.
    #[serde(default)]
    pub architecture: String,
    /// Variant.
    #[serde(default)]
    pub variant: Option<String>,
    /// Root filesystem.
    #[serde(default)]
    pub rootfs: Option<RootFs>,
}

impl ImageConfigSummary {
    /// `os/arch[/variant]`, normalised, when the config names both.
    pub fn platform(&self) -> Option<Platform> {
        (!self.os.is_empty() && !self.architecture.is_empty())
            .then(|| Platform::new(&self.os, &self.architecture, self.variant.as_deref()))
    }
}

/// `rootfs` of an image config.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct RootFs {
    /// Uncompressed layer digests.
    #[serde(default)]
    pub diff_ids: Vec<Digest>,
}

/// Why a manifest document was refused by [`classify`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DocumentError {
    /// The document could be read as two different things (CVE-2021-41190): the integrity
    /// class, as a digest mismatch is.
    #[error("the manifest is ambiguous: {0}")]
    Ambiguous(String),
    /// The document is not one acrpull reads (bad JSON, schema 1, unknown media type).
    #[error("{0}")]
    Unsupported(String),
}

/// What a manifest document is, decided once from its bytes and the type it came with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Classified {
    /// The media type (the document's own, else the declared one, else from its shape).
    pub media_type: String,
    /// Image manifest or index.
    pub kind: crate::media_type::ManifestKind,
}

/// The fields that decide what a document is. Values rather than `IgnoredAny`, so that
/// serde_json's nesting limit applies to them (a 100 000-deep `manifests` is an error).
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Shape {
    schema_version: Option<u32>,
    media_type: Option<String>,
    manifests: Option<serde_json::Value>,
    layers: Option<serde_json::Value>,
    config: Option<serde_json::Value>,
}

/// Whether a declared type says nothing about which manifest this is (a generic type some
/// servers send): then the document's own `mediaType` or its shape decides.
fn is_generic(media_type: &str) -> bool {
    media_type.is_empty()
        || media_type.eq_ignore_ascii_case("application/json")
        || media_type.eq_ignore_ascii_case("application/octet-stream")
}

/// Classify a manifest so that it means one thing, as the image and distribution specs
/// require since CVE-2021-41190. Every reader (registry, layout, cache) calls this.
/// `declared` is the type the document came with: a registry's `Content-Type`, or the
/// `mediaType` of the descriptor that named it (a layout's `index.json`, an index entry).
///
/// Refused as [`DocumentError::Ambiguous`]: a document with both `manifests` and
/// `layers`/`config`; a `mediaType` in the body that differs from a specific declared type;
/// an index type on a document with `layers`/`config`, or an image type on one with
/// `manifests`.
pub fn classify(bytes: &[u8], declared: Option<&str>) -> Result<Classified, DocumentError> {
    use crate::media_type::{self, ManifestKind};
    let unsupported = |reason: String| DocumentError::Unsupported(reason);
    let ambiguous = |reason: String| DocumentError::Ambiguous(reason);
    // A JSON object, nothing else: serde would also read a struct from an array, by position.
    if bytes.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
        return Err(unsupported("manifest is not a JSON object".into()));
    }
    let shape: Shape = serde_json::from_slice(bytes)
        .map_err(|e| unsupported(format!("manifest is not valid JSON: {e}")))?;
    if shape.schema_version == Some(1) {
        return Err(unsupported(
            "Docker schema 1 manifests are not supported (deprecated since 2019)".into(),
        ));
    }
    let is_index_shaped = shape.manifests.is_some();
    let is_image_shaped = shape.layers.is_some() || shape.config.is_some();
    if is_index_shaped && is_image_shaped {
        return Err(ambiguous(
            "it has both `manifests` (an index) and `layers`/`config` (an image)".into(),
        ));
    }
    let declared = declared.filter(|d| !is_generic(d));
    let own = shape.media_type.filter(|m| !m.is_empty());
    if let (Some(own), Some(declared)) = (&own, declared) {
        if own != declared {
            return Err(ambiguous(format!(
                "its `mediaType` is `{own}` but it was declared as `{declared}`"
            )));
        }
    }
    let media_type = own
        .or_else(|| declared.map(str::to_string))
        .or_else(|| {
            if is_index_shaped {
                Some(media_type::OCI_INDEX.to_string())
            } else if is_image_shaped {
                Some(media_type::OCI_MANIFEST.to_string())
            } else {
                None
            }
        })
        .ok_or_else(|| unsupported("manifest has no media type".into()))?;
    let kind = media_type::manifest_kind(&media_type)
        .ok_or_else(|| unsupported(format!("unknown manifest media type `{media_type}`")))?;
    match kind {
        ManifestKind::Index if is_image_shaped => Err(ambiguous(format!(
            "it is typed `{media_type}` (an index) but has `layers`/`config`"
        ))),
        ManifestKind::Image if is_index_shaped => Err(ambiguous(format!(
            "it is typed `{media_type}` (an image) but has `manifests`"
        ))),
        _ => Ok(Classified { media_type, kind }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DIGEST: &str = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    fn image() -> String {
        format!(
            r#"{{"schemaVersion":2,"mediaType":"{}","config":{{"mediaType":"{}","digest":"{DIGEST}","size":0}},"layers":[]}}"#,
            crate::media_type::OCI_MANIFEST,
            crate::media_type::OCI_CONFIG
        )
    }

    #[test]
    fn a_document_with_manifests_and_layers_is_ambiguous() {
        let both = format!(
            r#"{{"schemaVersion":2,"manifests":[],"config":{{"mediaType":"x","digest":"{DIGEST}","size":0}},"layers":[]}}"#
        );
        for declared in [
            None,
            Some(crate::media_type::OCI_INDEX),
            Some(crate::media_type::OCI_MANIFEST),
        ] {
            assert!(matches!(
                classify(both.as_bytes(), declared),
                Err(DocumentError::Ambiguous(_))
            ));
        }
    }

    #[test]
    fn a_media_type_that_differs_from_the_declared_one_is_ambiguous() {
        let image = image();
        assert!(matches!(
            classify(image.as_bytes(), Some(crate::media_type::OCI_INDEX)),
            Err(DocumentError::Ambiguous(_))
        ));
        assert!(matches!(
            classify(image.as_bytes(), Some(crate::media_type::DOCKER_MANIFEST)),
            Err(DocumentError::Ambiguous(_))
        ));
        // Generic or missing declarations leave the document's own type in charge.
        for declared in [
            None,
            Some("application/json"),
            Some("application/octet-stream"),
        ] {
            let classified = classify(image.as_bytes(), declared).unwrap();
            assert_eq!(classified.media_type, crate::media_type::OCI_MANIFEST);
        }
    }

    #[test]
    fn a_declared_type_that_contradicts_the_shape_is_ambiguous() {
        let untyped_image = format!(
            r#"{{"schemaVersion":2,"config":{{"mediaType":"x","digest":"{DIGEST}","size":0}},"layers":[]}}"#
        );
        assert!(matches!(
            classify(untyped_image.as_bytes(), Some(crate::media_type::OCI_INDEX)),
            Err(DocumentError::Ambiguous(_))
        ));
        let untyped_index = r#"{"schemaVersion":2,"manifests":[]}"#;
        assert!(matches!(
            classify(
                untyped_index.as_bytes(),
                Some(crate::media_type::DOCKER_MANIFEST)
            ),
            Err(DocumentError::Ambiguous(_))
        ));
        assert_eq!(
            classify(untyped_index.as_bytes(), None).unwrap().kind,
            crate::media_type::ManifestKind::Index
        );
    }

    #[test]
    fn rejects_traversal_digests() {
        let bad = r#"{"mediaType":"x","digest":"sha256:../../../etc/passwd","size":1}"#;
        assert!(serde_json::from_str::<Descriptor>(bad).is_err());
    }

    #[test]
    fn reads_index_platforms() {
        let index: ImageIndex = serde_json::from_str(
            r#"{"schemaVersion":2,"manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855","size":3,"platform":{"architecture":"arm64","os":"linux","variant":"v8"}}]}"#,
        )
        .unwrap();
        let platform = index.manifests[0].platform.as_ref().unwrap().to_platform();
        assert_eq!(platform.to_string(), "linux/arm64/v8");
    }

    /// A size no registry can serve is refused when the document is read, not when a download
    /// of it overflows an offset.
    #[test]
    fn sizes_beyond_int64_are_refused() {
        let descriptor = |size: &str| {
            format!(
                r#"{{"mediaType":"x","digest":"sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855","size":{size}}}"#
            )
        };
        assert!(serde_json::from_str::<Descriptor>(&descriptor("9223372036854775807")).is_ok());
        for size in ["9223372036854775808", "18446744073709551615"] {
            let error = serde_json::from_str::<Descriptor>(&descriptor(size)).unwrap_err();
            assert!(error.to_string().contains("int64"), "{error}");
        }
    }
}
