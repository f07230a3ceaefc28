//! `acrpull push` (and `copy` to a registry): manifests and blobs uploaded with the
//! destination's credentials from the command line.

use std::sync::Arc;

use acrpull::credential::Credential;
use acrpull::{PlatformChoice, Reference, Reporter, SourceSpec};

use crate::cli::args::{ManifestFormatArg, PushArgs};

/// Copy `source` to the registry `reference`; the outcome as JSON.
pub async fn to_registry(
    args: &PushArgs,
    source: &SourceSpec,
    source_credential: Credential,
    reference: &Reference,
    platform: PlatformChoice,
    reporter: Arc<dyn Reporter>,
) -> anyhow::Result<serde_json::Value> {
    let credential = args.registry.credential_for(reference.registry())?;
    let options = acrpull::push::PushOptions {
        platform,
        jobs: usize::from(args.jobs),
        chunk_size: args.chunk_size.max(1) << 20,
        client: args.registry.client_options(),
        referrers: args.referrers,
        convert_to_oci: args.manifest_format == ManifestFormatArg::Oci,
        verify: args.verify.options(),
    };
    let outcome = acrpull::push::push(
        source,
        source_credential,
        reference,
        credential,
        &options,
        reporter,
    )
    .await?;
    Ok(serde_json::to_value(&outcome)?)
}
