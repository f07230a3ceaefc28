//! Push and copy: an image (or a whole index) from a local OCI layout or another registry into
//! a registry. Blobs the destination already has are skipped (`HEAD`), blobs in another
//! repository of the same registry are mounted, the rest are uploaded (chunked above a size);
//! manifests go last, children before the index, so the destination never names a missing
//! object. Between two registries, blobs stream through without touching the disk.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use futures_util::{StreamExt as _, TryStreamExt as _};
use serde::Serialize;

use crate::credential::Credential;
use crate::digest::Digest;
use crate::download::{blobs_of, referrer_blobs};
use crate::error::{Error, Result};
use crate::manifest::Descriptor;
use crate::reference::Reference;
use crate::referrers::{Discovery, ReferrerDescriptor};
use crate::registry::{build_http, ClientOptions, RegistryClient};
use crate::report::Reporter;
use crate::resolve::{discover_referrers, open_source, resolve, PlatformChoice, SourceSpec};
use crate::source::ImageSource;

/// How to push.
#[derive(Debug, Clone)]
pub struct PushOptions {
    /// Which platforms of an index (default: all of them).
    pub platform: PlatformChoice,
    /// Blobs uploaded at once.
    pub jobs: usize,
    /// Blobs larger than this go up in `PATCH` chunks of this size.
    pub chunk_size: u64,
    /// Connection settings for both ends.
    pub client: ClientOptions,
    /// Carry the image's referrers from a registry source (`copy --referrers`). A layout
    /// source always pushes the referrers it holds.
    pub referrers: bool,
    /// Rewrite Docker media types to OCI ones (`--manifest-format oci`).
    pub convert_to_oci: bool,
    /// Signatures or policy the source image must satisfy before anything is pushed.
    pub verify: crate::verify::VerifyOptions,
}

impl Default for PushOptions {
    fn default() -> Self {
        Self {
            platform: PlatformChoice::All,
            jobs: 4,
            chunk_size: 64 << 20,
            client: ClientOptions::default(),
            referrers: false,
            convert_to_oci: false,
            verify: crate::verify::VerifyOptions::default(),
        }
    }
}

/// What a push did (the `--json` summary).
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PushOutcome {
    /// Source, normalised.
    pub source: String,
    /// Destination reference.
    pub destination: String,
    /// Digest of the manifest or index pushed under the tag.
    pub digest: Digest,
    /// Blobs uploaded.
    pub uploaded: usize,
    /// Blobs mounted from another repository.
    pub mounted: usize,
    /// Blobs the destination already had.
    pub existing: usize,
    /// Bytes uploaded.
    pub bytes_uploaded: u64,
    /// The referrers carried (always for a layout source, with `--referrers` otherwise).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub referrers: Vec<crate::referrers::CarriedReferrer>,
    /// Referrers ignored, and why.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
    /// With `--manifest-format oci`: the source manifest's digest `digest` was converted from.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub converted_from: Option<Digest>,
    /// What `--verify` accepted.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub verification: Option<crate::verify::Verification>,
    /// Wall time.
    pub seconds: f64,
}

enum Transfer {
    Existing,
    Mounted,
    Uploaded(u64),
}

/// Push `source` (a layout or registry image) to `destination`.
pub async fn push(
    source: &SourceSpec,
    source_credential: Credential,
    destination: &Reference,
    destination_credential: Credential,
    options: &PushOptions,
    reporter: Arc<dyn Reporter>,
) -> Result<PushOutcome> {
    let started = Instant::now();
    let verifier = options.verify.verifier()?;
    let (from, reference) = open_source(source, source_credential, &options.client, &[])?;
    let display = source.to_string();
    let resolved = resolve(from.as_ref(), &reference, &display, &options.platform).await?;
    // Before any blob moves: a refused image is not pushed at all.
    let verification = crate::verify::check(
        verifier.as_deref(),
        source,
        &resolved.root,
        from.as_ref(),
        reporter.as_ref(),
    )
    .await?;
    let (resolved, converted_from) = if options.convert_to_oci {
        crate::convert::to_oci(resolved)?
    } else {
        (resolved, None)
    };
    let mount_from = match source {
        SourceSpec::Registry(r)
            if r.registry() == destination.registry()
                && r.repository() != destination.repository() =>
        {
            vec![r.repository().to_string()]
        }
        _ => Vec::new(),
    };
    let client = options
        .client
        .for_host(destination.api_host())
        .map_err(crate::mirror::ConfigError::from)?;
    let http = build_http(&client)?;
    let to = Arc::new(
        RegistryClient::new(
            http,
            destination.registry(),
            destination.api_host(),
            destination.repository(),
            destination_credential,
            client,
        )
        .for_push(mount_from.clone()),
    );
    let layout_root = match source {
        SourceSpec::Layout { path, .. } => Some(path.clone()),
        SourceSpec::Registry(_) | SourceSpec::Archive { .. } => None,
    };
    let carry = options.referrers || matches!(source, SourceSpec::Layout { .. });
    let discovery = if carry {
        // Its warnings are logged as they are found (and listed in the summary).
        discover_referrers(from.as_ref(), &resolved).await?
    } else {
        Discovery::default()
    };
    let mut blobs = blobs_of(&resolved);
    blobs.extend(referrer_blobs(&discovery, &blobs));
    let transfers: Vec<Transfer> = futures_util::stream::iter(blobs)
        .map(|(descriptor, kind)| {
            let (to, from, reporter) = (to.clone(), from.clone(), reporter.clone());
            let (mount_from, layout_root) = (mount_from.clone(), layout_root.clone());
            async move {
                reporter.on_blob_start(&descriptor.digest, kind, descriptor.size, false);
                let transfer = transfer_blob(
                    &to,
                    from.as_ref(),
                    &descriptor,
                    &mount_from,
                    layout_root,
                    options,
                )
                .await?;
                reporter.on_blob_done(&descriptor.digest);
                Ok::<_, Error>(transfer)
            }
        })
        .buffer_unordered(options.jobs.max(1))
        .try_collect()
        .await?;
    // Children first, then what the tag names.
    for image in &resolved.images {
        if image.manifest.digest != resolved.top.digest {
            to.put_manifest(
                &image.manifest.digest.to_string(),
                image.manifest.bytes.clone(),
                &image.manifest.media_type,
            )
            .await?;
            reporter.on_blob_done(&image.manifest.digest);
        }
    }
    let top = &resolved.top;
    let tag = destination
        .tag()
        .map(str::to_string)
        .unwrap_or_else(|| top.digest.to_string());
    if let Some(pinned) = destination.digest() {
        if pinned != &top.digest {
            return Err(Error::Integrity {
                what: "manifest",
                digest: pinned.clone(),
                expected: pinned.to_string(),
                actual: top.digest.to_string(),
            });
        }
    }
    to.put_manifest(&tag, top.bytes.clone(), &top.media_type)
        .await?;
    push_referrers(&to, &discovery, reporter.as_ref()).await?;
    let count = |f: fn(&Transfer) -> bool| transfers.iter().filter(|t| f(t)).count();
    Ok(PushOutcome {
        source: display,
        destination: destination.to_string(),
        digest: top.digest.clone(),
        uploaded: count(|t| matches!(t, Transfer::Uploaded(_))),
        mounted: count(|t| matches!(t, Transfer::Mounted)),
        existing: count(|t| matches!(t, Transfer::Existing)),
        bytes_uploaded: transfers
            .iter()
            .map(|t| match t {
                Transfer::Uploaded(n) => *n,
                _ => 0,
            })
            .sum(),
        referrers: discovery.carried(),
        warnings: discovery.warnings,
        converted_from,
        verification,
        seconds: started.elapsed().as_secs_f64(),
    })
}

/// Put the referrers' manifests (their blobs are already there), parents before their own
/// referrers. A registry that answers `OCI-Subject` lists them itself; for one that does
/// not, each subject's tag-schema index is updated once, at the end. cosign manifests go
/// under their tag.
async fn push_referrers(
    to: &RegistryClient,
    discovery: &Discovery,
    reporter: &dyn Reporter,
) -> Result<()> {
    let mut unlisted: BTreeMap<Digest, Vec<ReferrerDescriptor>> = BTreeMap::new();
    for referrer in discovery.all() {
        for child in &referrer.children {
            to.put_manifest(
                &child.digest.to_string(),
                child.bytes.clone(),
                &child.media_type,
            )
            .await?;
        }
        let bytes = referrer.manifest.bytes.clone();
        if let Some(tag) = &referrer.tag {
            to.put_manifest(tag, bytes, &referrer.media_type).await?;
        } else {
            let listed = to
                .put_manifest_with_subject(
                    &referrer.digest,
                    bytes,
                    &referrer.media_type,
                    &referrer.subject,
                )
                .await?;
            if !listed {
                unlisted
                    .entry(referrer.subject.clone())
                    .or_default()
                    .push(referrer.descriptor());
            }
        }
        reporter.on_blob_done(&referrer.digest);
    }
    for (subject, entries) in &unlisted {
        tracing::info!(%subject, count = entries.len(), "no referrers API at the destination: updating the tag-schema index");
        crate::referrers::add_to_tag_schema(to, subject, entries).await?;
    }
    Ok(())
}

async fn transfer_blob(
    to: &RegistryClient,
    from: &dyn ImageSource,
    descriptor: &Descriptor,
    mount_from: &[String],
    layout_root: Option<PathBuf>,
    options: &PushOptions,
) -> Result<Transfer> {
    let digest = &descriptor.digest;
    if to.blob_exists(digest).await? {
        return Ok(Transfer::Existing);
    }
    for repository in mount_from {
        if to.mount_blob(digest, repository).await? {
            return Ok(Transfer::Mounted);
        }
    }
    if let Some(root) = layout_root {
        let path = crate::layout::blob_path(&root, digest);
        let size = std::fs::metadata(&path)
            .map_err(|source| Error::Io {
                path: path.clone(),
                source,
            })?
            .len();
        if size != descriptor.size {
            return Err(Error::Integrity {
                what: "blob",
                digest: digest.clone(),
                expected: format!("{} bytes", descriptor.size),
                actual: format!("{size} bytes in {}", path.display()),
            });
        }
        if size > options.chunk_size {
            let read = move |offset: u64, length: u64| read_range(&path, offset, length);
            to.upload_blob_chunked(digest, size, options.chunk_size, &read)
                .await?;
        } else {
            let body = move || match std::fs::read(&path) {
                Ok(bytes) => reqwest::Body::from(bytes),
                Err(e) => reqwest::Body::wrap_stream(futures_util::stream::once(async move {
                    Err::<Bytes, _>(e)
                })),
            };
            to.upload_blob(digest, size, &body).await?;
        }
        return Ok(Transfer::Uploaded(size));
    }
    // Registry to registry: stream the source body straight into the upload. A body can be
    // sent once, so a failed attempt re-opens the source.
    let mut attempts = 0;
    loop {
        attempts += 1;
        let body = from.open_blob(digest, 0, None).await?;
        // Verified on the way through: a source that lies is an integrity failure here, not a
        // refusal by the destination (or, from a source nobody checks, a stored lie).
        let lie = Arc::new(std::sync::Mutex::new(None));
        let stream = verified(body.stream, descriptor.clone(), lie.clone());
        let once = std::sync::Mutex::new(Some(stream));
        let factory = move || match once.lock().ok().and_then(|mut s| s.take()) {
            Some(stream) => reqwest::Body::wrap_stream(stream),
            None => reqwest::Body::wrap_stream(futures_util::stream::once(async {
                Err::<Bytes, _>(std::io::Error::other("blob stream already consumed"))
            })),
        };
        let result = to.upload_blob(digest, descriptor.size, &factory).await;
        if let Some(actual) = lie.lock().ok().and_then(|mut l| l.take()) {
            return Err(Error::Integrity {
                what: "blob",
                digest: digest.clone(),
                expected: format!("{digest} ({} bytes)", descriptor.size),
                actual: format!("{actual} from {}", from.describe()),
            });
        }
        match result {
            Ok(()) => return Ok(Transfer::Uploaded(descriptor.size)),
            Err(e) if attempts <= options.client.retry.retries && e.is_retryable() => {
                tracing::info!(%digest, error = %e, "retrying streamed upload");
            }
            Err(e) => return Err(e.into()),
        }
    }
}

/// `stream` checked against `descriptor` as it passes: more bytes than the size, or a
/// different digest at the end, fail the stream and record what was received in `lie`.
fn verified(
    stream: futures_util::stream::BoxStream<'static, std::io::Result<Bytes>>,
    descriptor: Descriptor,
    lie: Arc<std::sync::Mutex<Option<String>>>,
) -> futures_util::stream::BoxStream<'static, std::io::Result<Bytes>> {
    let digester = crate::digest::Digester::new(descriptor.digest.algorithm());
    let state = (stream, Some(digester), 0u64);
    Box::pin(futures_util::stream::unfold(
        state,
        move |(mut stream, mut digester, mut count)| {
            let (descriptor, lie) = (descriptor.clone(), lie.clone());
            async move {
                let fail = |actual: String| {
                    if let Ok(mut lie) = lie.lock() {
                        *lie = Some(actual.clone());
                    }
                    std::io::Error::new(
                        std::io::ErrorKind::InvalidData,
                        format!("blob {} is {actual}", descriptor.digest),
                    )
                };
                let hashing = digester.as_mut()?;
                match stream.next().await {
                    Some(Ok(bytes)) => {
                        count += bytes.len() as u64;
                        if count > descriptor.size {
                            digester = None;
                            let error = fail(format!("more than {} bytes", descriptor.size));
                            return Some((Err(error), (stream, digester, count)));
                        }
                        hashing.update(&bytes);
                        // Judged before the last bytes go: a body whose length is announced
                        // is complete, and not polled again, once they are sent.
                        if count == descriptor.size {
                            let actual = digester.take()?.finish();
                            if actual != descriptor.digest {
                                let error = fail(format!("{actual} ({count} bytes)"));
                                return Some((Err(error), (stream, None, count)));
                            }
                        }
                        Some((Ok(bytes), (stream, digester, count)))
                    }
                    Some(Err(e)) => Some((Err(e), (stream, digester, count))),
                    None => {
                        let actual = digester.take()?.finish();
                        if actual == descriptor.digest && count == descriptor.size {
                            return None; // an empty blob
                        }
                        let error = fail(format!("{actual} ({count} bytes)"));
                        Some((Err(error), (stream, None, count)))
                    }
                }
            }
        },
    ))
}

fn read_range(path: &std::path::Path, offset: u64, length: u64) -> std::io::Result<Bytes> {
    use std::io::{Read as _, Seek as _};
    let mut file = std::fs::File::open(path)?;
    file.seek(std::io::SeekFrom::Start(offset))?;
    let mut buffer = vec![0u8; usize::try_from(length).map_err(std::io::Error::other)?];
    file.read_exact(&mut buffer)?;
    Ok(Bytes::from(buffer))
}
