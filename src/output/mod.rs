//! Outputs: what a pull writes once it knows the image(s), behind one [`Output`] trait. Each
//! gets the resolved images and a [`Downloads`] handle (the one scheduler), never the pull's
//! options: an OCI layout, an archive of one (`oci-archive`, `docker-archive`), or a root
//! filesystem.

pub mod archive;
pub mod layout;
pub mod rootfs;

use crate::download::{Downloads, Transfer};
use crate::error::Result;
use crate::referrers::Discovery;
use crate::resolve::{PlatformChoice, Resolved, SourceSpec};

/// What every output is handed.
pub struct Job<'a> {
    /// The source as asked for (tags, names in archives).
    pub spec: &'a SourceSpec,
    /// The image(s) to write.
    pub resolved: &'a Resolved,
    /// The referrers to carry (empty unless asked for).
    pub referrers: &'a Discovery,
    /// The platform asked for: a single image's config is held to it.
    pub platform: &'a PlatformChoice,
    /// Where blobs come from.
    pub downloads: &'a Downloads,
}

/// What an output writer did.
#[derive(Debug, Clone, Default)]
pub struct Written {
    /// Blob bytes downloaded and reused.
    pub transferred: Transfer,
    /// The image's platform from its config (`os/arch[/variant]`), when it names one.
    pub platform: Option<String>,
}

/// An output: write `job` and publish it at its destination, or leave the destination as it
/// was.
#[async_trait::async_trait]
pub trait Output: Sync {
    /// Write everything; the destination holds it complete when this returns `Ok`.
    async fn write(&self, job: &Job<'_>) -> Result<Written>;
}
