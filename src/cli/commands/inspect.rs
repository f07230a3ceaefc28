//! `acrpull inspect`: what a reference points at, without pulling it (as `crane manifest`,
//! `crane config` and `skopeo inspect` do), for registries and `oci:` layouts alike.
//!
//! - default: a JSON summary on stdout: the manifest the reference names (digest, media
//!   type, size), an index's entries and platforms, and for one image (the `--platform`
//!   asked for, else this machine's platform when the index has it) its config, layers and
//!   the config's os/architecture/created/labels.
//! - `--raw`: the exact manifest bytes (of the chosen platform's image with `--platform`).
//! - `--config`: the exact config blob bytes (digest-verified).

use std::process::ExitCode;

use acrpull::manifest::Descriptor;
use acrpull::media_type::ManifestKind;
use acrpull::resolve::{open_source, read_config, resolve, ResolvedImage};
use acrpull::source::{FetchedManifest, ImageSource};
use acrpull::{Platform, PlatformChoice, SourceSpec};
use serde::Serialize;

use crate::cli::args::InspectArgs;

/// `acrpull inspect`: the summary, the raw manifest or config, or the referrers.
pub async fn run(args: &InspectArgs) -> anyhow::Result<ExitCode> {
    let (source, platform, output) = args.to_request()?;
    let credential = args.registry.credential_for_source(&source)?;
    let client = args.registry.client_options();
    if args.referrers {
        let request = ReferrersRequest {
            json: args.json,
            artifact_type: args.artifact_type.clone(),
        };
        referrers(&source, credential, &client, &request).await?;
    } else {
        inspect(&source, credential, &client, platform.as_ref(), output).await?;
    }
    Ok(ExitCode::SUCCESS)
}

/// One entry of an index.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct Entry {
    digest: String,
    media_type: String,
    size: u64,
    platform: Option<String>,
}

/// One image.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct Image {
    digest: String,
    media_type: String,
    size: u64,
    platform: Option<String>,
    config: Descriptor,
    layers: Vec<Descriptor>,
    layers_size: u64,
    created: Option<String>,
    labels: serde_json::Value,
}

/// The `inspect` JSON document.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct Inspection {
    reference: String,
    digest: String,
    media_type: String,
    size: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    manifests: Option<Vec<Entry>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    platforms: Option<Vec<String>>,
    image: Option<Image>,
}

/// What to print.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Output {
    /// The JSON summary.
    Summary,
    /// The manifest bytes.
    RawManifest,
    /// The config blob bytes.
    Config,
}

fn json_error(manifest: &FetchedManifest, e: &serde_json::Error) -> acrpull::Error {
    acrpull::Error::Unsupported(format!(
        "manifest {} ({}) is not valid: {e}",
        manifest.digest, manifest.media_type
    ))
}

/// The image to describe: the one the reference names, or the index's entry for `wanted`
/// (this machine's platform when `wanted` is none; `None` if the index lacks it).
async fn pick_image(
    source: &dyn ImageSource,
    root: &FetchedManifest,
    display: &str,
    wanted: Option<&Platform>,
) -> anyhow::Result<Option<ResolvedImage>> {
    if root.kind == ManifestKind::Image {
        return Ok(Some(ResolvedImage {
            parsed: serde_json::from_slice(&root.bytes).map_err(|e| json_error(root, &e))?,
            manifest: root.clone(),
            platform: None,
        }));
    }
    let choice = wanted
        .cloned()
        .map_or(PlatformChoice::Host, PlatformChoice::One);
    // Pinned to the digest already fetched, so a moving tag cannot mix two indexes.
    let pinned = root.digest.to_string();
    match resolve(source, &pinned, display, &choice).await {
        Ok(mut resolved) => Ok(resolved.images.pop()),
        Err(acrpull::Error::PlatformNotFound { .. }) if wanted.is_none() => Ok(None),
        Err(e) => Err(e.into()),
    }
}

fn describe_image(image: &ResolvedImage, config: &[u8]) -> Image {
    let value: serde_json::Value = serde_json::from_slice(config).unwrap_or_default();
    let text = |key: &str| value.get(key).and_then(|v| v.as_str()).map(str::to_string);
    let platform = image
        .platform
        .as_ref()
        .map(ToString::to_string)
        .or_else(|| {
            let os = text("os")?;
            let architecture = text("architecture")?;
            Some(Platform::new(&os, &architecture, text("variant").as_deref()).to_string())
        });
    Image {
        digest: image.manifest.digest.to_string(),
        media_type: image.manifest.media_type.clone(),
        size: image.manifest.bytes.len() as u64,
        platform,
        config: image.parsed.config.clone(),
        layers: image.parsed.layers.clone(),
        layers_size: image.parsed.layers.iter().map(|l| l.size).sum(),
        created: text("created"),
        labels: value
            .get("config")
            .and_then(|c| c.get("Labels"))
            .cloned()
            .filter(|l| !l.is_null())
            .unwrap_or_else(|| serde_json::json!({})),
    }
}

/// Inspect `spec` and print the chosen output on stdout.
pub async fn inspect(
    spec: &SourceSpec,
    credential: acrpull::credential::Credential,
    client: &acrpull::registry::ClientOptions,
    platform: Option<&Platform>,
    output: Output,
) -> anyhow::Result<()> {
    let (source, reference) = open_source(spec, credential, client, &[])?;
    let display = spec.to_string();
    let root = source
        .manifest(&reference)
        .await
        .map_err(acrpull::Error::from)?;
    if output == Output::RawManifest && platform.is_none() {
        return crate::cli::stdout::write(&root.bytes);
    }
    let mut stdout = Vec::new();
    let image = pick_image(source.as_ref(), &root, &display, platform).await?;
    match output {
        Output::RawManifest => {
            // `platform` is set here, so `pick_image` found the image or failed.
            if let Some(image) = &image {
                stdout.extend_from_slice(&image.manifest.bytes);
            }
        }
        Output::Config => {
            let Some(image) = &image else {
                let host = Platform::host();
                return Err(acrpull::Error::Usage(format!(
                    "{display} has no image for this machine ({host}); choose one with --platform"
                ))
                .into());
            };
            stdout.extend_from_slice(&read_config(source.as_ref(), &image.parsed.config).await?);
        }
        Output::Summary => {
            let entries = if root.kind == ManifestKind::Index {
                let index: acrpull::manifest::ImageIndex =
                    serde_json::from_slice(&root.bytes).map_err(|e| json_error(&root, &e))?;
                Some(
                    index
                        .manifests
                        .into_iter()
                        .map(|d| Entry {
                            platform: d.platform.as_ref().map(|p| p.to_platform().to_string()),
                            digest: d.digest.to_string(),
                            media_type: d.media_type,
                            size: d.size,
                        })
                        .collect::<Vec<_>>(),
                )
            } else {
                None
            };
            let image = match &image {
                Some(image) => Some(describe_image(
                    image,
                    &read_config(source.as_ref(), &image.parsed.config).await?,
                )),
                None => None,
            };
            let inspection = Inspection {
                reference: display,
                digest: root.digest.to_string(),
                media_type: root.media_type.clone(),
                size: root.bytes.len() as u64,
                platforms: entries
                    .as_ref()
                    .map(|e| e.iter().filter_map(|e| e.platform.clone()).collect()),
                manifests: entries,
                image,
            };
            serde_json::to_writer_pretty(&mut stdout, &inspection)?;
            stdout.push(b'\n');
        }
    }
    crate::cli::stdout::write(&stdout)
}

/// What `inspect --referrers` prints.
#[derive(Debug, Clone, Default)]
pub struct ReferrersRequest {
    /// JSON instead of the tree.
    pub json: bool,
    /// Only referrers of this artifact type.
    pub artifact_type: Option<String>,
}

/// One manifest of an index, with its referrers (the `manifests` of the JSON).
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct ChildReferrers<'a> {
    digest: String,
    media_type: &'a str,
    size: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    platform: Option<String>,
    referrers: &'a [acrpull::referrers::Referrer],
}

/// The `inspect --referrers --json` document.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct ReferrersDocument<'a> {
    reference: String,
    digest: String,
    media_type: &'a str,
    size: u64,
    referrers: &'a [acrpull::referrers::Referrer],
    #[serde(skip_serializing_if = "Vec::is_empty")]
    manifests: Vec<ChildReferrers<'a>>,
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    warnings: &'a [String],
}

/// `inspect --referrers`: the referrers of the image (and of each manifest of an index), as a
/// tree for people or JSON for machines.
pub async fn referrers(
    spec: &SourceSpec,
    credential: acrpull::credential::Credential,
    client: &acrpull::registry::ClientOptions,
    request: &ReferrersRequest,
) -> anyhow::Result<()> {
    use acrpull::referrers::{discover_all, subject_descriptor, DiscoveryOptions};
    let (source, reference) = open_source(spec, credential, client, &[])?;
    let root = source
        .manifest(&reference)
        .await
        .map_err(acrpull::Error::from)?;
    let mut subjects = vec![subject_descriptor(&root)];
    if root.kind == ManifestKind::Index {
        let index: acrpull::manifest::ImageIndex =
            serde_json::from_slice(&root.bytes).map_err(|e| json_error(&root, &e))?;
        subjects.extend(index.manifests);
    }
    let options = DiscoveryOptions {
        artifact_type: request.artifact_type.clone(),
        ..DiscoveryOptions::default()
    };
    let discovery = discover_all(source.as_ref(), &subjects, &options)
        .await
        .map_err(acrpull::Error::from)?;
    let (top, children) = discovery
        .trees
        .split_first()
        .map_or((&[][..], &[][..]), |(top, rest)| (&top.referrers[..], rest));
    if request.json {
        let document = ReferrersDocument {
            reference: spec.to_string(),
            digest: root.digest.to_string(),
            media_type: &root.media_type,
            size: root.bytes.len() as u64,
            referrers: top,
            manifests: children
                .iter()
                .map(|tree| ChildReferrers {
                    digest: tree.subject.digest.to_string(),
                    media_type: &tree.subject.media_type,
                    size: tree.subject.size,
                    platform: tree
                        .subject
                        .platform
                        .as_ref()
                        .map(|p| p.to_platform().to_string()),
                    referrers: &tree.referrers,
                })
                .collect(),
            warnings: &discovery.warnings,
        };
        crate::cli::stdout::json_pretty(&document)
    } else {
        let mut text = format!("{spec} {} {}\n", root.digest, root.media_type);
        let mut branches: Vec<Branch<'_>> = top.iter().map(Branch::Referrer).collect();
        branches.extend(children.iter().map(Branch::Child));
        render_branches(&branches, "", &mut text);
        crate::cli::stdout::write(text.as_bytes())
    }
}

/// One line of the tree and what hangs below it.
enum Branch<'a> {
    Referrer(&'a acrpull::referrers::Referrer),
    Child(&'a acrpull::referrers::ReferrerTree),
}

fn render_branches(branches: &[Branch<'_>], prefix: &str, text: &mut String) {
    for (i, branch) in branches.iter().enumerate() {
        let last = i + 1 == branches.len();
        let (joint, below) = if last {
            ("└── ", "    ")
        } else {
            ("├── ", "│   ")
        };
        let (line, next): (String, Vec<Branch<'_>>) = match branch {
            Branch::Referrer(r) => {
                let mut line = format!(
                    "{} {} {} bytes ({}",
                    r.artifact_type.as_deref().unwrap_or(&r.media_type),
                    r.digest,
                    r.size,
                    r.found_by
                );
                if let Some(tag) = &r.tag {
                    line.push_str(&format!(" `{tag}`"));
                }
                line.push(')');
                if let Some(created) = r.annotations.get("org.opencontainers.image.created") {
                    line.push_str(&format!(" created {created}"));
                }
                (line, r.referrers.iter().map(Branch::Referrer).collect())
            }
            Branch::Child(tree) => {
                let platform = tree
                    .subject
                    .platform
                    .as_ref()
                    .map_or_else(|| "manifest".to_string(), |p| p.to_platform().to_string());
                (
                    format!(
                        "{platform} {} {}",
                        tree.subject.digest, tree.subject.media_type
                    ),
                    tree.referrers.iter().map(Branch::Referrer).collect(),
                )
            }
        };
        text.push_str(&format!("{prefix}{joint}{line}\n"));
        render_branches(&next, &format!("{prefix}{below}"), text);
    }
}
