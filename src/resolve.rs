//! From a reference to what must be written: open the source (registry, mirrors, layout or
//! archive), fetch the manifest it names, and choose the image(s) for the platform asked for
//! (an index entry by its platform, or by its config's when the entry names none).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::credential::Credential;
use crate::digest::Digest;
use crate::error::{Error, Result};
use crate::layout;
use crate::manifest::{Descriptor, ImageConfigSummary, ImageIndex, ImageManifest};
use crate::media_type::{self, ManifestKind};
use crate::platform::Platform;
use crate::referrers::{Discovery, DiscoveryOptions};
use crate::registry::{build_http, ClientOptions, RegistryClient};
use crate::report::Reporter;
use crate::source::{fetch_child, FetchedManifest, ImageSource, LayoutSource};

use crate::source_spec::tag_of;
pub use crate::source_spec::{ArchiveKind, SourceSpec};

/// Which platform(s) to pull from an index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PlatformChoice {
    /// One platform, asked for: a single-platform image of another platform is refused.
    One(Platform),
    /// This machine's platform, by default: a single-platform image of another platform is
    /// pulled with a warning.
    Host,
    /// Every manifest of the index (OCI layout output only).
    All,
}

impl PlatformChoice {
    /// The one platform wanted (`None` for every platform).
    pub fn wanted(&self) -> Option<Platform> {
        match self {
            PlatformChoice::One(platform) => Some(platform.clone()),
            PlatformChoice::Host => Some(Platform::host()),
            PlatformChoice::All => None,
        }
    }
}

/// One image manifest to materialise.
#[derive(Debug, Clone)]
pub struct ResolvedImage {
    /// The manifest bytes.
    pub manifest: FetchedManifest,
    /// Parsed.
    pub parsed: ImageManifest,
    /// Its platform, if known from the index.
    pub platform: Option<Platform>,
}

/// A reference resolved to what must be written.
#[derive(Debug, Clone)]
pub struct Resolved {
    /// The manifest the reference points at (image or index).
    pub root: FetchedManifest,
    /// Images to write (one, or every index entry with `All`).
    pub images: Vec<ResolvedImage>,
    /// The manifest to name in the output (root for `All` or a plain image, else the chosen image).
    pub top: FetchedManifest,
    /// The reference as shown in messages.
    pub display: String,
}

impl Resolved {
    /// The one entry of the index `root` chosen for a platform.
    fn chosen(
        root: FetchedManifest,
        child: FetchedManifest,
        parsed: ImageManifest,
        platform: Option<Platform>,
        display: &str,
    ) -> Self {
        Resolved {
            root,
            top: child.clone(),
            images: vec![ResolvedImage {
                manifest: child,
                parsed,
                platform,
            }],
            display: display.to_string(),
        }
    }
}

/// Open the source for a spec.
pub fn open_source(
    spec: &SourceSpec,
    credential: Credential,
    client: &ClientOptions,
    mirrors: &[(crate::mirror::Endpoint, Credential)],
) -> Result<(Arc<dyn ImageSource>, String)> {
    match spec {
        SourceSpec::Registry(reference) if !mirrors.is_empty() => {
            let mut endpoints = Vec::new();
            for (endpoint, credential) in mirrors {
                let options = endpoint.client_options(client)?;
                let http = build_http(&options)?;
                let api_host = if endpoint.origin && endpoint.host == reference.registry() {
                    reference.api_host()
                } else {
                    &endpoint.host
                };
                let registry = RegistryClient::new(
                    http,
                    &endpoint.host,
                    api_host,
                    &endpoint.repository,
                    credential.clone(),
                    options,
                )
                .with_route(endpoint.route());
                endpoints.push((endpoint.clone(), Arc::new(registry)));
            }
            let source = crate::mirror::MirroredSource::new(endpoints);
            Ok((Arc::new(source), reference.manifest_reference()))
        }
        SourceSpec::Registry(reference) => {
            let client = &client
                .for_host(reference.api_host())
                .map_err(crate::mirror::ConfigError::from)?;
            let http = build_http(client)?;
            let registry = RegistryClient::new(
                http,
                reference.registry(),
                reference.api_host(),
                reference.repository(),
                credential,
                client.clone(),
            );
            Ok((Arc::new(registry), reference.manifest_reference()))
        }
        SourceSpec::Layout { path, reference } => {
            let (path, reference) = locate_layout(path, reference);
            let source = LayoutSource::open(&path)?;
            Ok((Arc::new(source), reference))
        }
        SourceSpec::Archive {
            kind,
            path,
            reference,
        } => {
            let source = crate::archive_source::ArchiveSource::new(*kind, path);
            Ok((Arc::new(source), reference.clone()))
        }
    }
}

/// The layout directory and reference of `oci:PATH:REF`. The reference is what follows the
/// last `:` after the last `/`, so PATH may hold colons; when that PATH is not a layout, the
/// split at an earlier `:` that names one is taken instead (skopeo splits at the first), so a
/// full reference such as `registry:5000/repo:tag` (as `pull -f` names images that share a tag)
/// can be asked for.
fn locate_layout(path: &Path, reference: &str) -> (PathBuf, String) {
    let is_layout = |dir: &Path| dir.join("oci-layout").is_file();
    if is_layout(path) || reference.is_empty() {
        return (path.to_path_buf(), reference.to_string());
    }
    let separator = if reference.parse::<Digest>().is_ok() {
        '@'
    } else {
        ':'
    };
    let whole = format!("{}{separator}{reference}", path.display());
    whole
        .match_indices(':')
        .map(|(at, _)| (Path::new(&whole[..at]), &whole[at + 1..]))
        .find(|(dir, _)| is_layout(dir))
        .map_or_else(
            || (path.to_path_buf(), reference.to_string()),
            |(dir, reference)| (dir.to_path_buf(), reference.to_string()),
        )
}

/// The `org.opencontainers.image.ref.name` each listed image gets in one layout (`pull -f`), so
/// that no image replaces another: its tag where no other listed image has that tag, else its
/// full reference (`registry/repository:tag`, which the image-layout ref grammar allows).
/// `None` for untagged (digest) references. Fails, before anything is written, when images
/// sharing a tag cannot be named apart (layout sources, names outside the grammar).
pub fn layout_names(specs: &[SourceSpec]) -> Result<Vec<Option<String>>> {
    let mut by_tag: HashMap<String, std::collections::BTreeSet<String>> = HashMap::new();
    for spec in specs {
        if let Some(tag) = tag_of(spec) {
            by_tag.entry(tag).or_default().insert(spec.to_string());
        }
    }
    specs
        .iter()
        .map(|spec| {
            let Some(tag) = tag_of(spec) else {
                return Ok(None);
            };
            if by_tag.get(&tag).is_none_or(|images| images.len() < 2) {
                return Ok(Some(tag));
            }
            let full = match spec {
                SourceSpec::Registry(reference) => Some(reference.to_string()),
                SourceSpec::Layout { .. } | SourceSpec::Archive { .. } => None,
            };
            full.filter(|name| layout::is_valid_ref_name(name))
                .map(Some)
                .ok_or_else(|| {
                    Error::Usage(format!(
                        "{spec} shares the tag `{tag}` with another listed image and cannot be \
                         named apart in one layout: pull it into a layout of its own"
                    ))
                })
        })
        .collect()
}

fn parse_json<T: serde::de::DeserializeOwned>(manifest: &FetchedManifest) -> Result<T> {
    serde_json::from_slice(&manifest.bytes).map_err(|e| {
        Error::Unsupported(format!(
            "manifest {} ({}) is not valid: {e}",
            manifest.digest, manifest.media_type
        ))
    })
}

/// Largest image config read into memory (configs are a few KiB; this only bounds a bad one).
pub const CONFIG_LIMIT: u64 = 16 * 1024 * 1024;

/// The bytes of a config blob, read into memory and checked against its digest and size.
pub async fn read_config(source: &dyn ImageSource, config: &Descriptor) -> Result<Vec<u8>> {
    let integrity = |expected: String, actual: String| Error::Integrity {
        what: "config",
        digest: config.digest.clone(),
        expected,
        actual,
    };
    if config.size > CONFIG_LIMIT {
        return Err(integrity(
            format!("at most {CONFIG_LIMIT} bytes"),
            format!("{} bytes", config.size),
        ));
    }
    let mut body = source.open_blob(&config.digest, 0, None).await?;
    let mut bytes = Vec::new();
    while let Some(chunk) = futures_util::StreamExt::next(&mut body.stream).await {
        let chunk = chunk.map_err(|source| Error::Io {
            path: format!("config {}", config.digest).into(),
            source,
        })?;
        bytes.extend_from_slice(&chunk);
        if bytes.len() as u64 > config.size {
            break;
        }
    }
    let mut digester = crate::digest::Digester::new(config.digest.algorithm());
    digester.update(&bytes);
    let actual = digester.finish();
    if actual != config.digest || bytes.len() as u64 != config.size {
        return Err(integrity(
            format!("{} ({} bytes)", config.digest, config.size),
            format!("{actual} ({} bytes)", bytes.len()),
        ));
    }
    Ok(bytes)
}

/// The platform an image's config names: `None` when the config is not an image config (an
/// artifact) or names none.
async fn config_platform(
    source: &dyn ImageSource,
    image: &ImageManifest,
) -> Result<Option<Platform>> {
    if !media_type::is_image_config(&image.config.media_type) {
        return Ok(None);
    }
    let bytes = read_config(source, &image.config).await?;
    Ok(serde_json::from_slice::<ImageConfigSummary>(&bytes)
        .ok()
        .and_then(|summary| summary.platform()))
}

/// Resolve `reference` at `source` for `platform`.
///
/// An index entry is chosen by its `platform`; entries without one (the field is optional)
/// are candidates too, matched by the platform their config names, as containerd does. A
/// single image is held to an explicit `--platform` by its config the same way; for the
/// default platform a mismatch is only a warning.
pub async fn resolve(
    source: &dyn ImageSource,
    reference: &str,
    display: &str,
    platform: &PlatformChoice,
) -> Result<Resolved> {
    let root = source.manifest(reference).await?;
    if root.kind == ManifestKind::Image {
        // Its platform is judged by the writer, which reads the config anyway
        // ([`check_single_platform`]).
        let parsed: ImageManifest = parse_json(&root)?;
        return Ok(Resolved {
            top: root.clone(),
            images: vec![ResolvedImage {
                manifest: root.clone(),
                parsed,
                platform: None,
            }],
            root,
            display: display.to_string(),
        });
    }
    let index: ImageIndex = parse_json(&root)?;
    let Some(wanted) = platform.wanted() else {
        // Every entry (none, for an empty index: it is written as it is, as skopeo does).
        let mut images = Vec::new();
        for entry in &index.manifests {
            let child = fetch_image(source, entry, display).await?;
            images.push(ResolvedImage {
                parsed: parse_json(&child)?,
                manifest: child,
                platform: entry.platform.as_ref().map(|p| p.to_platform()),
            });
        }
        return Ok(Resolved {
            top: root.clone(),
            root,
            images,
            display: display.to_string(),
        });
    };
    let listed = index.manifests.iter().find(|entry| {
        entry
            .platform
            .as_ref()
            .is_some_and(|p| wanted.matches(&p.os, &p.architecture, p.variant.as_deref()))
    });
    if let Some(entry) = listed {
        let child = fetch_image(source, entry, display).await?;
        let parsed = parse_json(&child)?;
        let platform = entry.platform.as_ref().map(|p| p.to_platform());
        return Ok(Resolved::chosen(root, child, parsed, platform, display));
    }
    let mut available: Vec<String> = index
        .manifests
        .iter()
        .filter_map(|e| e.platform.as_ref())
        .map(|p| p.to_platform().to_string())
        .filter(|p| !p.starts_with("unknown/"))
        .collect();
    // Entries that name no platform: their config says.
    let unnamed = index.manifests.iter().filter(|entry| {
        entry.platform.is_none()
            && media_type::manifest_kind(&entry.media_type) == Some(ManifestKind::Image)
    });
    for entry in unnamed {
        let child = fetch_child(source, entry).await?;
        if child.kind != ManifestKind::Image {
            continue;
        }
        let parsed: ImageManifest = parse_json(&child)?;
        let Some(found) = config_platform(source, &parsed).await? else {
            continue;
        };
        if wanted.matches(&found.os, &found.architecture, found.variant.as_deref()) {
            return Ok(Resolved::chosen(root, child, parsed, Some(found), display));
        }
        available.push(found.to_string());
    }
    let mut seen = std::collections::HashSet::new();
    available.retain(|p| seen.insert(p.clone()));
    Err(Error::PlatformNotFound {
        reference: display.to_string(),
        wanted: wanted.to_string(),
        available,
    })
}

/// Hold a single-platform image (the reference named an image, not an index) to the platform
/// asked for, once its config is read: an explicit `--platform` it does not match is refused
/// (not found, as containerd refuses it); for the default platform a mismatch is a warning.
/// Indexes were matched by [`resolve`]; configs that name no platform pass.
pub fn check_single_platform(
    resolved: &Resolved,
    choice: &PlatformChoice,
    config: &ImageConfigSummary,
    reporter: &dyn Reporter,
) -> Result<()> {
    let (Some(wanted), Some(found)) = (choice.wanted(), config.platform()) else {
        return Ok(());
    };
    if resolved.root.kind != ManifestKind::Image
        || wanted.matches(&found.os, &found.architecture, found.variant.as_deref())
    {
        return Ok(());
    }
    if *choice == PlatformChoice::Host {
        reporter.on_warning(&format!(
            "{} is a single-platform image for {found}, not for this machine ({wanted}); \
             pass --platform {found} if that is intended",
            resolved.display
        ));
        return Ok(());
    }
    Err(Error::PlatformNotFound {
        reference: resolved.display.clone(),
        wanted: wanted.to_string(),
        available: vec![found.to_string()],
    })
}

/// An index entry that must be an image manifest (nested indexes are not supported).
async fn fetch_image(
    source: &dyn ImageSource,
    entry: &Descriptor,
    display: &str,
) -> Result<FetchedManifest> {
    let child = fetch_child(source, entry).await?;
    if child.kind != ManifestKind::Image {
        return Err(Error::Unsupported(format!(
            "nested index {} inside {display} is not supported",
            entry.digest
        )));
    }
    Ok(child)
}

/// The manifests a pull writes (the top manifest and each image), as referrer subjects: a
/// single platform taken from an index leaves the index out, and its referrers with it.
pub fn written_subjects(resolved: &Resolved) -> Vec<Descriptor> {
    let mut subjects = vec![crate::referrers::subject_descriptor(&resolved.top)];
    for image in &resolved.images {
        if image.manifest.digest != resolved.top.digest {
            let mut subject = crate::referrers::subject_descriptor(&image.manifest);
            subject.platform = image
                .platform
                .as_ref()
                .map(|p| crate::manifest::PlatformSpec {
                    architecture: p.architecture.clone(),
                    os: p.os.clone(),
                    variant: p.variant.clone(),
                    os_version: None,
                });
            subjects.push(subject);
        }
    }
    subjects
}

/// Every referrer (recursively) of the manifests a pull or push writes.
pub async fn discover_referrers(
    source: &dyn ImageSource,
    resolved: &Resolved,
) -> Result<Discovery> {
    let subjects = written_subjects(resolved);
    Ok(crate::referrers::discover_all(source, &subjects, &DiscoveryOptions::default()).await?)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Issue 16 item 4: listed images that share a tag get their full reference; the rest
    /// keep their tag; layout sources that collide are refused.
    #[test]
    fn layout_names_keep_every_listed_image_apart() {
        let specs: Vec<SourceSpec> = [
            "reg:5000/a:latest",
            "reg:5000/b:latest",
            "reg:5000/c:v2",
            "reg:5000/a:latest",
            "reg:5000/d@sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
        ]
        .iter()
        .map(|s| s.parse().unwrap())
        .collect();
        let names = layout_names(&specs).unwrap();
        assert_eq!(
            names,
            [
                Some("reg:5000/a:latest".to_string()),
                Some("reg:5000/b:latest".to_string()),
                Some("v2".to_string()),
                Some("reg:5000/a:latest".to_string()),
                None,
            ]
        );
        let layouts: Vec<SourceSpec> = ["oci:/x:v1", "oci:/y:v1"]
            .iter()
            .map(|s| s.parse().unwrap())
            .collect();
        assert!(matches!(layout_names(&layouts), Err(Error::Usage(_))));
    }

    #[test]
    fn parses_layout_specs() {
        let d = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
        assert_eq!(
            "oci:/tmp/x:v1".parse::<SourceSpec>().unwrap(),
            SourceSpec::Layout {
                path: "/tmp/x".into(),
                reference: "v1".into()
            }
        );
        assert_eq!(
            format!("oci:./a/b@{d}").parse::<SourceSpec>().unwrap(),
            SourceSpec::Layout {
                path: "./a/b".into(),
                reference: d.into()
            }
        );
        assert_eq!(
            "oci:relative".parse::<SourceSpec>().unwrap(),
            SourceSpec::Layout {
                path: "relative".into(),
                reference: String::new()
            }
        );
        assert!(matches!(
            "alpine".parse::<SourceSpec>().unwrap(),
            SourceSpec::Registry(_)
        ));
        assert!("oci:/x@sha256:bad".parse::<SourceSpec>().is_err());
    }
}
