//! Supply-chain artifacts for referrer tests, built the way their tools build them: a
//! Notation signature (JWS envelope, `application/vnd.cncf.notary.signature`), an SPDX SBOM
//! (empty config carrying `data`), an in-toto attestation, a cosign `.sig` manifest (simple
//! signing payload, no `subject`), and signatures of any of these.
//!
//! The bytes are shaped like the real ones (the envelope fields, payloads and annotations the
//! specifications name) but the signatures are not cryptographically valid: these fixtures
//! test carrying and discovery, not verification.
//!
//! [`Artifact`]s go into an OCI layout ([`write_into_layout`]: untagged `index.json` entries
//! with their `subject`, cosign manifests under their tag) or straight onto a registry over
//! HTTP ([`push_raw`]), with the referrers tag-schema index written by [`tag_schema_index`]
//! for registries without the referrers API.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{ensure, Context as _};
use base64::Engine as _;
use serde_json::{json, Value};

use crate::fixtures::{sha256_digest, OCI_INDEX, OCI_MANIFEST};

/// The empty config's media type.
pub const EMPTY_MEDIA_TYPE: &str = "application/vnd.oci.empty.v1+json";
/// Notation's artifact type.
pub const NOTATION_TYPE: &str = "application/vnd.cncf.notary.signature";
/// SPDX JSON.
pub const SPDX_TYPE: &str = "application/spdx+json";
/// in-toto.
pub const IN_TOTO_TYPE: &str = "application/vnd.in-toto+json";
/// cosign's simple signing layer.
pub const COSIGN_LAYER_TYPE: &str = "application/vnd.dev.cosign.simplesigning.v1+json";

/// What a manifest is, as a subject.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subject {
    /// Media type.
    pub media_type: String,
    /// `sha256:<hex>`.
    pub digest: String,
    /// Size.
    pub size: u64,
}

impl Subject {
    /// The subject of `bytes` with `media_type`.
    pub fn of(media_type: &str, bytes: &[u8]) -> Subject {
        Subject {
            media_type: media_type.to_owned(),
            digest: sha256_digest(bytes),
            size: bytes.len() as u64,
        }
    }

    fn descriptor(&self) -> Value {
        json!({"mediaType": self.media_type, "digest": self.digest, "size": self.size})
    }
}

/// One artifact manifest and the blobs it references.
#[derive(Debug, Clone)]
pub struct Artifact {
    /// A name for messages (`notation`, `sbom`, ...).
    pub name: String,
    /// The manifest bytes.
    pub manifest: Vec<u8>,
    /// The manifest's media type (an image manifest, or an index).
    pub media_type: String,
    /// Its blobs (config and layers) as `(digest, bytes)`.
    pub blobs: Vec<(String, Vec<u8>)>,
    /// The `subject` it names (none for cosign).
    pub subject: Option<Subject>,
    /// The cosign tag it lives under (cosign only).
    pub tag: Option<String>,
    /// `artifactType`, else the config media type.
    pub artifact_type: String,
    /// The manifest's annotations.
    pub annotations: BTreeMap<String, String>,
}

impl Artifact {
    /// The manifest's digest.
    pub fn digest(&self) -> String {
        sha256_digest(&self.manifest)
    }

    /// As a subject for further artifacts.
    pub fn as_subject(&self) -> Subject {
        Subject::of(&self.media_type, &self.manifest)
    }

    /// The descriptor the referrers API lists for it.
    pub fn listing(&self) -> Value {
        json!({
            "mediaType": self.media_type,
            "digest": self.digest(),
            "size": self.manifest.len(),
            "artifactType": self.artifact_type,
            "annotations": self.annotations,
        })
    }
}

pub(crate) fn blob(media_type: &str, bytes: Vec<u8>) -> (Value, (String, Vec<u8>)) {
    let digest = sha256_digest(&bytes);
    (
        json!({"mediaType": media_type, "digest": digest, "size": bytes.len()}),
        (digest, bytes),
    )
}

fn b64url(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

pub(crate) fn artifact(
    name: &str,
    artifact_type: &str,
    config: (Value, (String, Vec<u8>)),
    layers: Vec<(Value, (String, Vec<u8>))>,
    subject: &Subject,
    annotations: BTreeMap<String, String>,
) -> Artifact {
    let mut manifest = json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "artifactType": artifact_type,
        "config": config.0,
        "layers": layers.iter().map(|(d, _)| d.clone()).collect::<Vec<_>>(),
        "subject": subject.descriptor(),
    });
    if !annotations.is_empty() {
        manifest["annotations"] = json!(annotations);
    }
    let mut blobs = vec![config.1];
    blobs.extend(layers.into_iter().map(|(_, b)| b));
    Artifact {
        name: name.to_owned(),
        manifest: serde_json::to_vec(&manifest).unwrap_or_default(),
        media_type: OCI_MANIFEST.to_owned(),
        blobs,
        subject: Some(subject.clone()),
        tag: None,
        artifact_type: artifact_type.to_owned(),
        annotations,
    }
}

pub(crate) fn empty_config(with_data: bool) -> (Value, (String, Vec<u8>)) {
    let (mut descriptor, bytes) = blob(EMPTY_MEDIA_TYPE, b"{}".to_vec());
    if with_data {
        descriptor["data"] = json!("e30=");
    }
    (descriptor, bytes)
}

/// A Notation signature of `subject`: a JWS envelope (`application/jose+json`) whose payload
/// names the subject as `targetArtifact`, with Notation's annotations.
pub fn notation_signature(subject: &Subject, created: &str) -> Artifact {
    let payload = json!({"targetArtifact": subject.descriptor()});
    let protected = json!({
        "alg": "PS256",
        "crit": ["io.cncf.notary.signingScheme"],
        "cty": "application/vnd.cncf.notary.payload.v1+json",
        "io.cncf.notary.signingScheme": "notary.x509",
        "io.cncf.notary.signingTime": created,
    });
    let envelope = json!({
        "payload": b64url(payload.to_string().as_bytes()),
        "protected": b64url(protected.to_string().as_bytes()),
        "header": {
            "x5c": [base64::engine::general_purpose::STANDARD.encode(b"test certificate, not DER")],
            "io.cncf.notary.signingAgent": "acrpull-testenv",
        },
        "signature": b64url(format!("not a signature over {}", subject.digest).as_bytes()),
    });
    let layer = blob(
        "application/jose+json",
        serde_json::to_vec(&envelope).unwrap_or_default(),
    );
    let annotations = BTreeMap::from([
        (
            "io.cncf.notary.x509chain.thumbprint#S256".to_owned(),
            format!("[\"{}\"]", &sha256_digest(b"test certificate")[7..]),
        ),
        (
            "org.opencontainers.image.created".to_owned(),
            created.to_owned(),
        ),
    ]);
    artifact(
        "notation",
        NOTATION_TYPE,
        empty_config(false),
        vec![layer],
        subject,
        annotations,
    )
}

/// An SPDX 2.3 SBOM of `subject`, with the empty config carrying `data` (as oras writes it).
pub fn spdx_sbom(subject: &Subject, created: &str) -> Artifact {
    let document = json!({
        "spdxVersion": "SPDX-2.3",
        "dataLicense": "CC0-1.0",
        "SPDXID": "SPDXRef-DOCUMENT",
        "name": "acrpull-testenv-image",
        "documentNamespace": format!("https://example.invalid/spdx/{}", subject.digest),
        "creationInfo": {"created": created, "creators": ["Tool: acrpull-testenv"]},
        "packages": [{"SPDXID": "SPDXRef-Package-busybox", "name": "busybox", "versionInfo": "1.36.1", "downloadLocation": "NOASSERTION"}],
    });
    let layer = blob(
        SPDX_TYPE,
        serde_json::to_vec_pretty(&document).unwrap_or_default(),
    );
    let annotations = BTreeMap::from([(
        "org.opencontainers.image.created".to_owned(),
        created.to_owned(),
    )]);
    artifact(
        "sbom",
        SPDX_TYPE,
        empty_config(true),
        vec![layer],
        subject,
        annotations,
    )
}

/// An in-toto v1 statement (SLSA provenance predicate) about `subject`.
pub fn in_toto_attestation(subject: &Subject) -> Artifact {
    let statement = json!({
        "_type": "https://in-toto.io/Statement/v1",
        "subject": [{"name": "image", "digest": {"sha256": &subject.digest[7..]}}],
        "predicateType": "https://slsa.dev/provenance/v1",
        "predicate": {"buildDefinition": {"buildType": "https://example.invalid/build"}},
    });
    let layer = blob(
        IN_TOTO_TYPE,
        serde_json::to_vec(&statement).unwrap_or_default(),
    );
    artifact(
        "attestation",
        IN_TOTO_TYPE,
        empty_config(false),
        vec![layer],
        subject,
        BTreeMap::new(),
    )
}

/// cosign's `.sig` manifest for `subject` (tag `sha256-<hex>.sig`, no `subject` field): an
/// image manifest whose layer is the simple signing payload, the signature in an annotation.
pub fn cosign_signature(subject: &Subject, docker_reference: &str) -> Artifact {
    let payload = json!({
        "critical": {
            "identity": {"docker-reference": docker_reference},
            "image": {"docker-manifest-digest": subject.digest},
            "type": "cosign container image signature",
        },
        "optional": null,
    });
    let payload = serde_json::to_vec(&payload).unwrap_or_default();
    let layer_digest = sha256_digest(&payload);
    let config = json!({
        "architecture": "", "os": "", "created": "0001-01-01T00:00:00Z",
        "config": {}, "rootfs": {"type": "layers", "diff_ids": [layer_digest]},
    });
    let config = blob(
        "application/vnd.oci.image.config.v1+json",
        serde_json::to_vec(&config).unwrap_or_default(),
    );
    let (mut layer, layer_blob) = blob(COSIGN_LAYER_TYPE, payload);
    layer["annotations"] = json!({
        "dev.cosignproject.cosign/signature": base64::engine::general_purpose::STANDARD.encode(b"not a signature"),
    });
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": config.0,
        "layers": [layer],
    });
    Artifact {
        name: "cosign".to_owned(),
        manifest: serde_json::to_vec(&manifest).unwrap_or_default(),
        media_type: OCI_MANIFEST.to_owned(),
        blobs: vec![config.1, layer_blob],
        subject: None,
        tag: Some(format!("sha256-{}.sig", &subject.digest[7..])),
        artifact_type: "application/vnd.oci.image.config.v1+json".to_owned(),
        annotations: BTreeMap::new(),
    }
}

/// A referrer that is an index: one SPDX SBOM per platform (plain artifact manifests without
/// a `subject`), gathered in an index whose `subject` is `subject`. Returns the index and
/// its manifests, which must be pushed first.
pub fn sbom_index(subject: &Subject, platforms: &[(&str, &str)]) -> (Artifact, Vec<Artifact>) {
    let mut children = Vec::new();
    let mut entries = Vec::new();
    for (os, architecture) in platforms {
        let document = json!({"spdxVersion": "SPDX-2.3", "name": format!("{os}/{architecture}")});
        let (layer, layer_blob) =
            blob(SPDX_TYPE, serde_json::to_vec(&document).unwrap_or_default());
        let (config, config_blob) = empty_config(false);
        let manifest = json!({
            "schemaVersion": 2, "mediaType": OCI_MANIFEST, "artifactType": SPDX_TYPE,
            "config": config, "layers": [layer],
        });
        let bytes = serde_json::to_vec(&manifest).unwrap_or_default();
        entries.push(json!({
            "mediaType": OCI_MANIFEST, "digest": sha256_digest(&bytes), "size": bytes.len(),
            "platform": {"os": os, "architecture": architecture},
        }));
        children.push(Artifact {
            name: format!("sbom {os}/{architecture}"),
            manifest: bytes,
            media_type: OCI_MANIFEST.to_owned(),
            blobs: vec![config_blob, layer_blob],
            subject: None,
            tag: None,
            artifact_type: SPDX_TYPE.to_owned(),
            annotations: BTreeMap::new(),
        });
    }
    let index = json!({
        "schemaVersion": 2, "mediaType": OCI_INDEX, "artifactType": SPDX_TYPE,
        "manifests": entries, "subject": subject.descriptor(),
    });
    let index = Artifact {
        name: "sbom index".to_owned(),
        manifest: serde_json::to_vec(&index).unwrap_or_default(),
        media_type: OCI_INDEX.to_owned(),
        blobs: Vec::new(),
        subject: Some(subject.clone()),
        tag: None,
        artifact_type: SPDX_TYPE.to_owned(),
        annotations: BTreeMap::new(),
    };
    (index, children)
}

/// The referrers tag-schema index listing `artifacts` (all with the same subject).
pub fn tag_schema_index(artifacts: &[&Artifact]) -> Vec<u8> {
    let index = json!({
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": artifacts.iter().map(|a| a.listing()).collect::<Vec<_>>(),
    });
    serde_json::to_vec(&index).unwrap_or_default()
}

/// The referrers tag of a subject digest (`sha256-<hex>`).
pub fn tag_schema_tag(subject_digest: &str) -> String {
    subject_digest.replacen(':', "-", 1)
}

/// Write `artifact` into the OCI layout at `root`: its blobs and manifest, and an `index.json`
/// entry (untagged, or under its cosign tag).
pub fn write_into_layout(root: &Path, artifact: &Artifact) -> anyhow::Result<()> {
    let blobs = root.join("blobs/sha256");
    std::fs::create_dir_all(&blobs)?;
    let mut all = artifact.blobs.clone();
    all.push((artifact.digest(), artifact.manifest.clone()));
    for (digest, bytes) in &all {
        std::fs::write(blobs.join(&digest[7..]), bytes)?;
    }
    let index_path = root.join("index.json");
    let mut index: Value = serde_json::from_slice(&std::fs::read(&index_path)?)
        .with_context(|| format!("parsing {}", index_path.display()))?;
    let mut entry = json!({
        "mediaType": artifact.media_type,
        "digest": artifact.digest(),
        "size": artifact.manifest.len(),
        "artifactType": artifact.artifact_type,
    });
    if let Some(tag) = &artifact.tag {
        entry["annotations"] = json!({"org.opencontainers.image.ref.name": tag});
    }
    let manifests = index["manifests"]
        .as_array_mut()
        .context("index.json has no manifests")?;
    manifests.push(entry);
    std::fs::write(&index_path, serde_json::to_vec(&index)?)?;
    Ok(())
}

/// Push blobs and manifests to a registry over plain HTTP (anonymous), as any client would:
/// each blob with `POST` + `PUT`, then each manifest `PUT` under its reference (a digest or
/// a tag), in the order given.
pub async fn push_raw(
    base_url: &str,
    repository: &str,
    blobs: &[(String, Vec<u8>)],
    manifests: &[(String, Vec<u8>, String)],
) -> anyhow::Result<()> {
    let client = reqwest::Client::new();
    for (digest, bytes) in blobs {
        let started = client
            .post(format!("{base_url}/v2/{repository}/blobs/uploads/"))
            .send()
            .await?;
        ensure!(
            started.status().as_u16() == 202,
            "starting an upload: {}",
            started.status()
        );
        let location = started
            .headers()
            .get("location")
            .and_then(|v| v.to_str().ok())
            .context("upload without Location")?;
        let mut url = url::Url::parse(base_url)?.join(location)?;
        url.query_pairs_mut().append_pair("digest", digest);
        let put = client
            .put(url)
            .header("content-type", "application/octet-stream")
            .body(bytes.clone())
            .send()
            .await?;
        ensure!(
            put.status().as_u16() == 201,
            "uploading {digest}: {}",
            put.status()
        );
    }
    for (reference, bytes, media_type) in manifests {
        let put = client
            .put(format!("{base_url}/v2/{repository}/manifests/{reference}"))
            .header("content-type", media_type)
            .body(bytes.clone())
            .send()
            .await?;
        let status = put.status();
        let body = put.text().await.unwrap_or_default();
        ensure!(
            status.is_success(),
            "putting manifest {reference}: {status} {body}"
        );
    }
    Ok(())
}

/// Push `artifacts` to a registry: blobs, manifests by digest (cosign ones under their tag),
/// and, with `tag_schema`, the referrers tag-schema index of each subject (for registries
/// without the referrers API).
pub async fn push_artifacts(
    base_url: &str,
    repository: &str,
    artifacts: &[&Artifact],
    tag_schema: bool,
) -> anyhow::Result<()> {
    let mut blobs = Vec::new();
    let mut manifests = Vec::new();
    let mut by_subject: BTreeMap<String, Vec<&Artifact>> = BTreeMap::new();
    for artifact in artifacts {
        blobs.extend(artifact.blobs.iter().cloned());
        let reference = artifact.tag.clone().unwrap_or_else(|| artifact.digest());
        // Served back with this Content-Type: it must be the document's own type (an index
        // referrer is an index), or readers refuse it as ambiguous (CVE-2021-41190).
        manifests.push((
            reference,
            artifact.manifest.clone(),
            artifact.media_type.clone(),
        ));
        if let Some(subject) = &artifact.subject {
            by_subject
                .entry(subject.digest.clone())
                .or_default()
                .push(artifact);
        }
    }
    if tag_schema {
        for (subject, listed) in &by_subject {
            manifests.push((
                tag_schema_tag(subject),
                tag_schema_index(listed),
                OCI_INDEX.to_owned(),
            ));
        }
    }
    push_raw(base_url, repository, &blobs, &manifests).await
}
