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

#[cfg(test)]
mod tests {
    use super::*;

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
