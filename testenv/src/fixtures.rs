//! Committed fixture images and a small reader for OCI image layouts.
//!
//! The images live in `fixtures/images/<name>/` at the workspace root and are
//! written by `fixtures/make_fixtures.py` (deterministic; the generated files
//! are committed). Every layout has exactly one tag, [`FIXTURE_TAG`].
//!
//! [`Layout`] reads just enough of a layout for tests and the fake registry:
//! `index.json` references, manifests by tag or digest, blobs by digest.

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{bail, ensure, Context as _};
use serde::Deserialize;
use sha2::{Digest as _, Sha256};

/// Names of the committed fixture images, one directory each.
pub const FIXTURE_NAMES: &[&str] = &[
    "simple",
    "multiarch",
    "whiteouts",
    "dockerv2",
    "uncompressed",
    "zstd",
];

/// The layout of shapes that real images from other projects take (platform-less index
/// entries, empty and attestation-only indexes, artifacts, foreign layers, Python-written
/// tars...), one tag per shape; see `fixtures/README.md`. Not in [`FIXTURE_NAMES`]: it has no
/// `v1`.
pub const CONFORMANCE: &str = "conformance";

/// The one tag every fixture layout carries.
pub const FIXTURE_TAG: &str = "v1";

/// OCI image manifest media type.
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
/// OCI image index media type.
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
/// Docker image manifest v2 schema 2 media type.
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
/// Docker manifest list media type.
pub const DOCKER_MANIFEST_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";

/// The annotation holding a tag in `index.json`.
const REF_NAME: &str = "org.opencontainers.image.ref.name";

/// `<workspace>/fixtures`.
pub fn fixtures_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures")
}

/// `<workspace>/fixtures/images/<name>`, the OCI layout of one fixture image.
pub fn fixture_layout(name: &str) -> PathBuf {
    fixtures_dir().join("images").join(name)
}

/// `sha256:<hex>` of `bytes`.
pub fn sha256_digest(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

/// An OCI content descriptor, as found in `index.json` and manifests.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    /// Media type of the referenced content.
    pub media_type: String,
    /// `sha256:<hex>`.
    pub digest: String,
    /// Size in bytes.
    pub size: u64,
    /// Annotations (`org.opencontainers.image.ref.name` in `index.json`).
    #[serde(default)]
    pub annotations: Option<serde_json::Map<String, serde_json::Value>>,
    /// Platform of an index entry.
    #[serde(default)]
    pub platform: Option<Platform>,
}

impl Descriptor {
    /// The tag (`org.opencontainers.image.ref.name`), if any.
    pub fn tag(&self) -> Option<&str> {
        self.annotations.as_ref()?.get(REF_NAME)?.as_str()
    }

    /// Whether this descriptor points at an index or manifest list.
    pub fn is_index(&self) -> bool {
        self.media_type == OCI_INDEX || self.media_type == DOCKER_MANIFEST_LIST
    }
}

/// Platform of an index entry.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Platform {
    /// `linux`.
    pub os: String,
    /// `amd64`, `arm64`, `arm`, ...
    pub architecture: String,
    /// `v8`, `v7`, ...
    #[serde(default)]
    pub variant: Option<String>,
}

#[derive(Deserialize)]
struct Index {
    manifests: Vec<Descriptor>,
}

#[derive(Deserialize)]
struct Manifest {
    config: Descriptor,
    layers: Vec<Descriptor>,
}

/// A read-only OCI image layout on disk.
#[derive(Debug, Clone)]
pub struct Layout {
    root: PathBuf,
}

impl Layout {
    /// Opens the layout at `root` (checks `oci-layout` and `index.json` exist).
    pub fn open(root: impl Into<PathBuf>) -> anyhow::Result<Layout> {
        let root = root.into();
        for file in ["oci-layout", "index.json"] {
            ensure!(
                root.join(file).is_file(),
                "{} is not an OCI layout: no {file}",
                root.display()
            );
        }
        Ok(Layout { root })
    }

    /// Opens the committed fixture `name` (see [`FIXTURE_NAMES`]).
    pub fn fixture(name: &str) -> anyhow::Result<Layout> {
        Layout::open(fixture_layout(name))
    }

    /// The layout directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The descriptors listed in `index.json`.
    pub fn refs(&self) -> anyhow::Result<Vec<Descriptor>> {
        let path = self.root.join("index.json");
        let bytes = fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
        let index: Index = serde_json::from_slice(&bytes)
            .with_context(|| format!("parsing {}", path.display()))?;
        Ok(index.manifests)
    }

    /// The `index.json` descriptor tagged `tag`.
    pub fn resolve_tag(&self, tag: &str) -> anyhow::Result<Descriptor> {
        self.refs()?
            .into_iter()
            .find(|desc| desc.tag() == Some(tag))
            .with_context(|| format!("no tag {tag:?} in {}", self.root.display()))
    }

    /// The descriptor of [`FIXTURE_TAG`] (or the only entry of `index.json`).
    pub fn main_ref(&self) -> anyhow::Result<Descriptor> {
        if let Ok(desc) = self.resolve_tag(FIXTURE_TAG) {
            return Ok(desc);
        }
        let mut refs = self.refs()?;
        ensure!(
            refs.len() == 1,
            "{}: no single reference",
            self.root.display()
        );
        Ok(refs.remove(0))
    }

    /// Path of the blob `digest` (`sha256:<hex>`); errors if it is absent or
    /// the digest is malformed.
    pub fn blob_path(&self, digest: &str) -> anyhow::Result<PathBuf> {
        let Some(hex) = digest.strip_prefix("sha256:") else {
            bail!("unsupported digest {digest:?}");
        };
        ensure!(
            hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit()),
            "malformed digest {digest:?}"
        );
        let path = self.root.join("blobs/sha256").join(hex);
        ensure!(
            path.is_file(),
            "blob {digest} not in {}",
            self.root.display()
        );
        Ok(path)
    }

    /// Whether the blob `digest` is present.
    pub fn has_blob(&self, digest: &str) -> bool {
        self.blob_path(digest).is_ok()
    }

    /// The bytes of blob `digest`.
    pub fn blob(&self, digest: &str) -> anyhow::Result<Vec<u8>> {
        let path = self.blob_path(digest)?;
        fs::read(&path).with_context(|| format!("reading {}", path.display()))
    }

    /// Digests of every blob in `blobs/sha256`, sorted.
    pub fn blob_digests(&self) -> anyhow::Result<Vec<String>> {
        let dir = self.root.join("blobs/sha256");
        let mut digests = Vec::new();
        for entry in fs::read_dir(&dir).with_context(|| format!("listing {}", dir.display()))? {
            digests.push(format!("sha256:{}", entry?.file_name().to_string_lossy()));
        }
        digests.sort();
        Ok(digests)
    }

    /// The manifest (or index) named by a tag or a `sha256:` digest:
    /// `(media type, digest, bytes)`. The media type comes from the
    /// manifest's own `mediaType` field, else from `index.json`.
    pub fn manifest(&self, reference: &str) -> anyhow::Result<(String, String, Vec<u8>)> {
        let (digest, listed_type) = if reference.starts_with("sha256:") {
            let listed = self.refs()?.into_iter().find(|d| d.digest == reference);
            (reference.to_owned(), listed.map(|d| d.media_type))
        } else {
            let desc = self.resolve_tag(reference)?;
            (desc.digest, Some(desc.media_type))
        };
        let bytes = self.blob(&digest)?;
        let value: serde_json::Value = serde_json::from_slice(&bytes)
            .with_context(|| format!("{digest} is not a JSON manifest"))?;
        let media_type = value
            .get("mediaType")
            .and_then(|v| v.as_str())
            .map(str::to_owned)
            .or(listed_type)
            .with_context(|| format!("{digest}: no mediaType"))?;
        Ok((media_type, digest, bytes))
    }

    /// The entries of the index `digest`.
    pub fn index_entries(&self, digest: &str) -> anyhow::Result<Vec<Descriptor>> {
        let index: Index = serde_json::from_slice(&self.blob(digest)?)
            .with_context(|| format!("{digest} is not an index"))?;
        Ok(index.manifests)
    }

    /// `(config, layers)` of the image manifest `digest`.
    pub fn image_parts(&self, digest: &str) -> anyhow::Result<(Descriptor, Vec<Descriptor>)> {
        let manifest: Manifest = serde_json::from_slice(&self.blob(digest)?)
            .with_context(|| format!("{digest} is not an image manifest"))?;
        Ok((manifest.config, manifest.layers))
    }

    /// Every digest reachable from the manifest or index `digest`
    /// (itself, child manifests, configs, layers), without duplicates.
    pub fn reachable(&self, digest: &str) -> anyhow::Result<Vec<String>> {
        let mut out = vec![digest.to_owned()];
        let (media_type, _, _) = self.manifest(digest)?;
        let children = if media_type == OCI_INDEX || media_type == DOCKER_MANIFEST_LIST {
            self.index_entries(digest)?
                .into_iter()
                .map(|d| d.digest)
                .collect()
        } else {
            vec![digest.to_owned()]
        };
        for child in children {
            if child != digest {
                out.push(child.clone());
            }
            let (config, layers) = self.image_parts(&child)?;
            for d in std::iter::once(config).chain(layers) {
                if !out.contains(&d.digest) {
                    out.push(d.digest);
                }
            }
        }
        Ok(out)
    }
}

/// Unpacks `layout:tag` with `umoci unpack --rootless` into `bundle` (which
/// must not exist) and returns the rootfs path: the reference rootfs to
/// compare acrpull's against. umoci 0.4 reads OCI manifests with gzip or
/// plain layers only; convert other images first with
/// [`crate::registry::skopeo_copy`].
pub fn umoci_unpack(layout: &Path, tag: &str, bundle: &Path) -> anyhow::Result<PathBuf> {
    let output = std::process::Command::new("umoci")
        .args(["unpack", "--rootless", "--image"])
        .arg(format!("{}:{tag}", layout.display()))
        .arg(bundle)
        .stdin(std::process::Stdio::null())
        .output()
        .context("running umoci (is it installed?)")?;
    ensure!(
        output.status.success(),
        "umoci unpack {}:{tag} failed ({}):\n{}",
        layout.display(),
        output.status,
        String::from_utf8_lossy(&output.stderr).trim_end()
    );
    Ok(bundle.join("rootfs"))
}

/// One line per entry under `root`, sorted by path, comparable across
/// unpackers: `path dir 0755`, `path file 0644 <size> sha256:<hex>`,
/// `path symlink -> target`, `path other`. Ownership and times are left out
/// (rootless unpacks cannot keep owners); hardlinks show as equal files.
pub fn tree_snapshot(root: &Path) -> anyhow::Result<Vec<String>> {
    use std::os::unix::fs::PermissionsExt as _;
    fn walk(root: &Path, dir: &Path, out: &mut Vec<String>) -> anyhow::Result<()> {
        let mut entries: Vec<_> = fs::read_dir(dir)
            .with_context(|| format!("listing {}", dir.display()))?
            .collect::<Result<_, _>>()?;
        entries.sort_by_key(fs::DirEntry::file_name);
        for entry in entries {
            let path = entry.path();
            let relative = path.strip_prefix(root)?.display().to_string();
            let meta = fs::symlink_metadata(&path)?;
            let mode = meta.permissions().mode() & 0o7777;
            if meta.file_type().is_symlink() {
                let target = fs::read_link(&path)?;
                out.push(format!("{relative} symlink -> {}", target.display()));
            } else if meta.is_dir() {
                out.push(format!("{relative} dir {mode:04o}"));
                walk(root, &path, out)?;
            } else if meta.is_file() {
                let bytes = fs::read(&path)?;
                out.push(format!(
                    "{relative} file {mode:04o} {} {}",
                    bytes.len(),
                    sha256_digest(&bytes)
                ));
            } else {
                out.push(format!("{relative} other"));
            }
        }
        Ok(())
    }
    let mut out = Vec::new();
    walk(root, root, &mut out)?;
    Ok(out)
}
