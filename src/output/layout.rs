//! OCI image layout output: every blob downloaded into the layout (a new one in a staging
//! directory, or an existing one added to in place), the manifests written, and `index.json`
//! committed only once every blob the image reaches is there.

use std::collections::BTreeMap;

use crate::destination::Destination;
use crate::download::{blobs_of, referrer_blobs, Transfer};
use crate::error::Result;
use crate::layout::{self, LayoutWriter, Staging};
use crate::manifest::{Descriptor, ImageConfigSummary, REF_NAME};
use crate::media_type::ManifestKind;
use crate::report::BlobKind;
use crate::resolve::{check_single_platform, PlatformChoice};
use crate::source_spec::tag_of;

use super::{Job, Output, Written};

/// An OCI image layout at a claimed destination.
pub struct LayoutOutput<'a> {
    /// Where it goes.
    pub destination: &'a Destination,
    /// The tag to record instead of the source's (`copy SRC oci:DIR:TAG`, `pull -f`).
    pub tag: Option<String>,
}

#[async_trait::async_trait]
impl Output for LayoutOutput<'_> {
    async fn write(&self, job: &Job<'_>) -> Result<Written> {
        // A new layout is written in a staging directory (the destination was absent, empty,
        // or is replaced with --force); an existing one is added to in place.
        let writer = if self.destination.adds_to_layout() {
            LayoutWriter::add_to(self.destination.path())?
        } else {
            LayoutWriter::in_staging(self.destination.staging()?)?
        };
        let (written, staging) = fill(job, writer, self.tag.as_deref()).await?;
        if let Some(staging) = staging {
            self.destination.publish_dir(staging.path())?;
        }
        Ok(written)
    }
}

/// Fill the layout `writer` with the resolved images and commit it (verified complete first).
/// `tag` is recorded as the image's name, else the source's tag. Returns a new layout's
/// staging directory, to be published.
pub(super) async fn fill(
    job: &Job<'_>,
    writer: LayoutWriter,
    tag: Option<&str>,
) -> Result<(Written, Option<Staging>)> {
    let (resolved, downloads) = (job.resolved, job.downloads);
    let mut blobs = blobs_of(resolved);
    blobs.extend(referrer_blobs(job.referrers, &blobs));
    let mut transferred = Transfer::default();
    let config_summary = |config: &Descriptor| {
        std::fs::read(layout::blob_path(writer.root(), &config.digest))
            .ok()
            .and_then(|bytes| serde_json::from_slice::<ImageConfigSummary>(&bytes).ok())
    };
    let single = match (resolved.root.kind, resolved.images.first()) {
        (ManifestKind::Image, Some(image)) => Some(&image.parsed.config),
        _ => None,
    };
    // A single image's config is held to the platform asked for. An explicit `--platform` it
    // does not match refuses the pull, so the config comes first, before any layer. Otherwise
    // a mismatch only warns, and the config comes with the layers: fetching it alone first
    // costs a round trip before the first layer byte.
    let config_first = matches!(job.platform, PlatformChoice::One(_));
    if let (Some(config), true) = (single, config_first) {
        blobs.retain(|(blob, _)| blob.digest != config.digest);
        let first = vec![(config.clone(), BlobKind::Config)];
        transferred += downloads.all(first, writer.root()).await?;
    }
    let check_platform = || match single.and_then(config_summary) {
        Some(summary) => check_single_platform(
            resolved,
            job.platform,
            &summary,
            downloads.reporter.as_ref(),
        ),
        None => Ok(()),
    };
    if config_first {
        check_platform()?;
    }
    transferred += downloads.all(blobs, writer.root()).await?;
    if !config_first {
        check_platform()?;
    }
    // An empty index (`--platform all`) has no image, so no platform.
    let platform = resolved
        .images
        .first()
        .and_then(|image| config_summary(&image.parsed.config))
        .and_then(|summary| summary.platform())
        .map(|p| p.to_string());
    for image in &resolved.images {
        writer.put_bytes(&image.manifest.digest, &image.manifest.bytes)?;
    }
    writer.put_bytes(&resolved.top.digest, &resolved.top.bytes)?;
    for referrer in job.referrers.all() {
        for child in &referrer.children {
            writer.put_bytes(&child.digest, &child.bytes)?;
        }
        writer.put_bytes(&referrer.digest, &referrer.manifest.bytes)?;
    }
    let annotations = tag
        .map(str::to_string)
        .or_else(|| tag_of(job.spec))
        .map(|tag| BTreeMap::from([(REF_NAME.to_string(), tag)]));
    let descriptor = Descriptor {
        media_type: resolved.top.media_type.clone(),
        digest: resolved.top.digest.clone(),
        size: resolved.top.bytes.len() as u64,
        urls: None,
        annotations,
        platform: None,
    };
    let staging = writer
        .commit_with_referrers(descriptor, &crate::referrers::layout_entries(job.referrers))?;
    Ok((
        Written {
            transferred,
            platform,
        },
        staging,
    ))
}
