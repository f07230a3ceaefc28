//! Root filesystem output (wired to the layer applier).

use std::path::Path;
use std::sync::Arc;

use crate::error::{Error, Result};
use crate::pull::{PullOptions, Resolved};
use crate::report::Reporter;
use crate::source::ImageSource;

/// Write the resolved image as a root filesystem at `destination`.
pub async fn write_rootfs(
    _resolved: &Resolved,
    _source: Arc<dyn ImageSource>,
    _destination: &Path,
    _options: &PullOptions,
    _reporter: &Arc<dyn Reporter>,
) -> Result<u64> {
    Err(Error::Unsupported(
        "root filesystem output is not available in this build yet: use --format oci".into(),
    ))
}
