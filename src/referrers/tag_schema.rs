//! The write side of the referrers tag schema: on a registry without the referrers API, the
//! `<alg>-<hex>` tag holds an index listing a subject's referrers, and every writer must merge
//! into it without losing another writer's entries.

use std::collections::HashSet;

use bytes::Bytes;

use super::{tag_schema_tag, Error, ReferrerDescriptor, Result};
use crate::digest::Digest;
use crate::media_type::{self, ManifestKind};
use crate::registry::RegistryClient;

/// Add `entries` (referrers of `subject`) to the tag-schema index on a registry without the
/// referrers API: read, add what is missing, check nobody changed the tag meanwhile, write,
/// and read back; a concurrent writer's change makes it start over (a few times).
pub async fn add_to_tag_schema(
    client: &RegistryClient,
    subject: &Digest,
    entries: &[ReferrerDescriptor],
) -> Result<()> {
    const ATTEMPTS: u32 = 5;
    let tag = tag_schema_tag(subject);
    for attempt in 1..=ATTEMPTS {
        let (read_digest, mut index) = read_tag_schema(client, &tag).await?;
        let listed = listed_digests(&index);
        let missing: Vec<&ReferrerDescriptor> = entries
            .iter()
            .filter(|e| !listed.contains(&e.digest.to_string()))
            .collect();
        if missing.is_empty() {
            return Ok(());
        }
        if let Some(manifests) = index
            .get_mut("manifests")
            .and_then(serde_json::Value::as_array_mut)
        {
            for entry in missing {
                manifests.push(serde_json::to_value(entry).map_err(|e| {
                    crate::registry::Error::Unsupported {
                        url: tag.clone(),
                        reason: e.to_string(),
                    }
                })?);
            }
        }
        let bytes = Bytes::from(serde_json::to_vec(&index).map_err(|e| {
            crate::registry::Error::Unsupported {
                url: tag.clone(),
                reason: e.to_string(),
            }
        })?);
        // A writer that got in between our read and now: start over from its version.
        let (now, _) = read_tag_schema(client, &tag).await?;
        if now != read_digest {
            tracing::info!(%tag, attempt, "the referrers tag changed while we updated it; reading it again");
            continue;
        }
        client
            .put_manifest(&tag, bytes, media_type::OCI_INDEX)
            .await?;
        // A writer that replaced ours right after: start over so both sets are listed.
        let (_, written) = read_tag_schema(client, &tag).await?;
        let listed = listed_digests(&written);
        if entries
            .iter()
            .all(|e| listed.contains(&e.digest.to_string()))
        {
            return Ok(());
        }
        tracing::info!(%tag, attempt, "another writer replaced the referrers tag; merging again");
    }
    Err(Error::Contended {
        tag,
        attempts: ATTEMPTS,
    })
}

/// The tag-schema index at `tag` (its digest, and the document), or an empty one.
async fn read_tag_schema(
    client: &RegistryClient,
    tag: &str,
) -> Result<(Option<Digest>, serde_json::Value)> {
    match client.manifest(tag).await {
        Ok(found) if found.kind == ManifestKind::Index => {
            let value = serde_json::from_slice::<serde_json::Value>(&found.bytes)
                .ok()
                .filter(|v| v.get("manifests").is_some_and(serde_json::Value::is_array))
                .ok_or_else(|| Error::TagNotAnIndex {
                    tag: tag.to_string(),
                    media_type: "malformed index".into(),
                })?;
            Ok((Some(found.digest), value))
        }
        Ok(found) => Err(Error::TagNotAnIndex {
            tag: tag.to_string(),
            media_type: found.media_type,
        }),
        Err(crate::registry::Error::NotFound { .. }) => Ok((
            None,
            serde_json::json!({
                "schemaVersion": 2,
                "mediaType": media_type::OCI_INDEX,
                "manifests": [],
            }),
        )),
        Err(e) => Err(e.into()),
    }
}

fn listed_digests(index: &serde_json::Value) -> HashSet<String> {
    index
        .get("manifests")
        .and_then(serde_json::Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|m| m.get("digest").and_then(serde_json::Value::as_str))
        .map(str::to_string)
        .collect()
}
