//! Runtime config generation (not yet implemented in this commit).
use std::path::Path;

/// OCI runtime-spec `config.json` for a bundle, generated from an image config.
pub fn runtime_config(
    _image_config: &oci_spec::image::ImageConfiguration,
    _rootfs: &Path,
    _rootless: bool,
) -> Result<serde_json::Value, super::Error> {
    Err(super::Error::RuntimeConfig {
        reason: "not implemented yet".to_string(),
    })
}
