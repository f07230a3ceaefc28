//! Archive output (`oci-archive`, `docker-archive`): a layout built in a staging directory
//! beside the destination, tarred into a file there, and that file put at the destination.

use crate::archive_source::ArchiveKind;
use crate::destination::Destination;
use crate::error::{Error, Internal, Result};
use crate::layout::{self, LayoutWriter};
use crate::resolve::SourceSpec;

use super::{Job, Output, Written};

/// An archive file at a claimed destination.
pub struct ArchiveOutput<'a> {
    /// Where it goes.
    pub destination: &'a Destination,
    /// `docker save` or a tar of an OCI layout.
    pub kind: ArchiveKind,
    /// The tag to record in the layout inside instead of the source's.
    pub tag: Option<String>,
}

#[async_trait::async_trait]
impl Output for ArchiveOutput<'_> {
    async fn write(&self, job: &Job<'_>) -> Result<Written> {
        write_archive(self, job).await
    }
}

/// An archive: the layout is built in a staging directory beside `destination`, tarred into a
/// file there, and that file is put at the destination.
async fn write_archive(output: &ArchiveOutput<'_>, job: &Job<'_>) -> Result<Written> {
    let (resolved, destination) = (job.resolved, output.destination);
    if output.kind == ArchiveKind::Docker && resolved.images.len() != 1 {
        return Err(Error::Unsupported(
            "a docker-archive holds one image: choose one platform with --platform".into(),
        ));
    }
    let staging = destination.staging()?;
    let layout_dir = staging.path().join("layout");
    let writer = LayoutWriter::create(&layout_dir)?;
    let (written, _) = super::layout::fill(job, writer, output.tag.as_deref()).await?;
    let archive = staging.path().join("archive");
    let kind = output.kind;
    let image = resolved.images.first().map(|image| image.parsed.clone());
    let repo_tag = match job.spec {
        SourceSpec::Registry(r) => r
            .tag()
            .map(|t| format!("{}/{}:{t}", r.registry(), r.repository())),
        SourceSpec::Layout { .. } | SourceSpec::Archive { .. } => None,
    };
    let archived = tokio::task::spawn_blocking({
        let archive = archive.clone();
        move || match kind {
            ArchiveKind::Docker => {
                let Some(image) = image else {
                    return Err(Internal::Broken(
                        "a docker-archive is written from exactly one image",
                    )
                    .into());
                };
                let config_path = layout::blob_path(&layout_dir, &image.config.digest);
                let config: crate::manifest::ImageConfigSummary = std::fs::read(&config_path)
                    .map_err(|source| Error::Io {
                        path: config_path.clone(),
                        source,
                    })
                    .and_then(|bytes| {
                        serde_json::from_slice(&bytes)
                            .map_err(|e| Error::Unsupported(format!("image config: {e}")))
                    })?;
                let diff_ids = config.rootfs.map(|r| r.diff_ids).unwrap_or_default();
                crate::archive::write_docker_archive(
                    &layout_dir,
                    &image,
                    &diff_ids,
                    repo_tag.as_deref(),
                    &archive,
                )
            }
            ArchiveKind::Oci => crate::archive::write_oci_archive(&layout_dir, &archive),
        }
    })
    .await
    .map_err(|e| Internal::join("archive writer", e))?;
    archived?;
    destination.publish_file(&archive)?;
    Ok(written)
}
