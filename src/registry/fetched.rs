//! What a source hands back: a manifest with its exact bytes (verified against the digests it
//! was asked and served under, and classified), and a blob body streaming from an offset.

use bytes::Bytes;
use futures_util::stream::BoxStream;

use crate::digest::{Algorithm, Digest, Digester};
use crate::media_type::{self, ManifestKind};

use super::{Error, Result};

/// A manifest or index, with the exact bytes as served (digest-stable).
#[derive(Debug, Clone)]
pub struct FetchedManifest {
    /// Exact bytes.
    pub bytes: Bytes,
    /// Media type (from the document, else the response's `Content-Type`).
    pub media_type: String,
    /// Image manifest or index.
    pub kind: ManifestKind,
    /// Digest of `bytes`.
    pub digest: Digest,
}

/// Just enough of a document to recognise schema 1 before its digest is judged.
#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct Probe {
    schema_version: Option<u32>,
}

impl FetchedManifest {
    /// Check bytes against the digests we were given and classify them
    /// ([`crate::manifest::classify`]). `content_type` is the type the document came with: the
    /// registry's `Content-Type`, or the `mediaType` of the descriptor that named it.
    pub fn verify(
        bytes: Bytes,
        content_type: Option<String>,
        pinned: Option<&Digest>,
        served: Option<&Digest>,
        url: &str,
    ) -> Result<Self> {
        let algorithm = pinned
            .or(served)
            .map_or(Algorithm::Sha256, Digest::algorithm);
        let mut digester = Digester::new(algorithm);
        digester.update(&bytes);
        let digest = digester.finish();
        let probe = serde_json::from_slice::<Probe>(&bytes);
        // Classified before the digest is judged: a registry re-signs a schema 1 manifest on
        // every GET, so its body never hashes to the digest it announces.
        let schema1 = content_type
            .as_deref()
            .is_some_and(media_type::is_docker_schema1)
            || probe.as_ref().is_ok_and(|p| p.schema_version == Some(1));
        if schema1 {
            return Err(Error::Schema1 {
                url: url.to_string(),
            });
        }
        for expected in [pinned, served].into_iter().flatten() {
            if expected.algorithm() == digest.algorithm() && expected != &digest {
                return Err(Error::Integrity {
                    what: "manifest".into(),
                    digest: expected.clone(),
                    expected: expected.to_string(),
                    actual: digest.to_string(),
                });
            }
        }
        let crate::manifest::Classified { media_type, kind } =
            crate::manifest::classify(&bytes, content_type.as_deref()).map_err(|e| match e {
                crate::manifest::DocumentError::Ambiguous(reason) => Error::AmbiguousManifest {
                    url: url.to_string(),
                    reason,
                },
                other => Error::Unsupported {
                    url: url.to_string(),
                    reason: other.to_string(),
                },
            })?;
        Ok(Self {
            bytes,
            media_type,
            kind,
            digest,
        })
    }
}

/// An open blob body from some offset.
pub struct BlobBody {
    /// Where the body starts (0 if the source ignored a range request).
    pub offset: u64,
    /// The body length, if announced.
    pub content_length: Option<u64>,
    /// The bytes.
    pub stream: BoxStream<'static, std::io::Result<Bytes>>,
}
