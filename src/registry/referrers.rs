//! The referrers endpoints of distribution spec 1.1: one page of `GET /v2/<name>/referrers/
//! <digest>` (with the `artifactType` filter, `OCI-Filters-Applied` and the `Link` to the next
//! page), and a manifest `PUT` that reports whether the registry processed its `subject`
//! (`OCI-Subject`). Walking pages, falling back to the tag schema and recursing live in
//! [`crate::referrers`]; this file only speaks HTTP.

use bytes::Bytes;
use reqwest::header::{HeaderMap, HeaderValue, ACCEPT, LINK};
use reqwest::{Method, StatusCode};

use super::{read_capped, redact_url, Error, Missing, RegistryClient, Result, MANIFEST_LIMIT};
use crate::digest::Digest;
use crate::media_type;

/// How a referrer was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub enum FoundBy {
    /// Listed by the registry's referrers API.
    ReferrersApi,
    /// Listed in the referrers tag-schema index (`<alg>-<hex>`).
    TagSchema,
    /// A cosign tag (`sha256-<hex>.sig`, `.att`, `.sbom`).
    CosignTag,
    /// A manifest in an OCI layout's `index.json` with this `subject`.
    Layout,
}

impl std::fmt::Display for FoundBy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            FoundBy::ReferrersApi => "referrers API",
            FoundBy::TagSchema => "tag schema",
            FoundBy::CosignTag => "cosign tag",
            FoundBy::Layout => "layout",
        })
    }
}

/// One answer of the referrers API.
#[derive(Debug, Clone)]
pub enum ReferrersPage {
    /// The registry has no referrers API (it answered `404`): use the tag schema.
    Unsupported,
    /// A page of the list.
    Listed {
        /// The image index as served (at most [`MANIFEST_LIMIT`] bytes).
        bytes: Bytes,
        /// Whether the registry applied the `artifactType` filter (`OCI-Filters-Applied`).
        filtered: bool,
        /// The next page (`Link: <url>; rel="next"`), resolved against this page's URL.
        next: Option<url::Url>,
        /// This page's URL, for messages (and to notice a page that links back).
        url: String,
        /// Where the list comes from: the registry's API, or a layout's `index.json`.
        found_by: FoundBy,
    },
}

impl RegistryClient {
    /// One page of the referrers of `subject`: the first page when `page` is `None`, else the
    /// page a previous answer linked to. `artifact_type` asks the registry to filter (it may
    /// not: see [`ReferrersPage::Listed::filtered`]).
    pub async fn referrers_page(
        &self,
        subject: &Digest,
        artifact_type: Option<&str>,
        page: Option<&url::Url>,
    ) -> Result<ReferrersPage> {
        let url = match page {
            Some(url) => url.clone(),
            None => {
                let mut url = self
                    .url_for(&format!(
                        "{}{}/referrers/{subject}",
                        self.route.api_root, self.repository
                    ))
                    .await?;
                if let Some(artifact_type) = artifact_type {
                    url.query_pairs_mut()
                        .append_pair("artifactType", artifact_type);
                }
                url
            }
        };
        let mut headers = HeaderMap::new();
        headers.insert(ACCEPT, HeaderValue::from_static(media_type::OCI_INDEX));
        let response = self
            .send_authenticated_url(Method::GET, &url, headers, None)
            .await?;
        let shown = redact_url(response.url());
        if response.status() == StatusCode::NOT_FOUND && page.is_none() {
            tracing::debug!(url = %shown, "no referrers API (404)");
            return Ok(ReferrersPage::Unsupported);
        }
        let what = || format!("referrers of {subject} in repository `{}`", self.repository);
        let response = self
            .check_status(response, Missing::Referrers, what)
            .await?;
        let filtered = response
            .headers()
            .get_all("oci-filters-applied")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .any(|f| f.trim() == "artifactType");
        let next = next_link(response.headers(), response.url());
        if response
            .content_length()
            .is_some_and(|n| n > MANIFEST_LIMIT)
        {
            return Err(Error::ManifestTooLarge {
                url: shown,
                limit: MANIFEST_LIMIT,
            });
        }
        let bytes = read_capped(response, MANIFEST_LIMIT, &shown, self.options.pace).await?;
        Ok(ReferrersPage::Listed {
            bytes,
            filtered,
            next,
            url: shown,
            found_by: FoundBy::ReferrersApi,
        })
    }

    /// Put a manifest that has a `subject` by its digest; `true` when the registry answered
    /// `OCI-Subject: <subject>` (it maintains the referrers list itself), `false` when the
    /// client must maintain the tag-schema index.
    pub async fn put_manifest_with_subject(
        &self,
        digest: &Digest,
        bytes: Bytes,
        media_type: &str,
        subject: &Digest,
    ) -> Result<bool> {
        let answer = self
            .put_manifest_answer(&digest.to_string(), bytes, media_type)
            .await?;
        Ok(answer
            .get("oci-subject")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.trim() == subject.to_string()))
    }
}

/// The `rel="next"` target of the `Link` headers (RFC 5988), resolved against `base`.
fn next_link(headers: &HeaderMap, base: &url::Url) -> Option<url::Url> {
    headers
        .get_all(LINK)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(split_links)
        .find_map(|(target, params)| {
            params
                .split(';')
                .filter_map(|p| p.split_once('='))
                .any(|(key, value)| {
                    key.trim().eq_ignore_ascii_case("rel")
                        && value
                            .trim()
                            .trim_matches('"')
                            .split_whitespace()
                            .any(|rel| rel.eq_ignore_ascii_case("next"))
                })
                .then(|| base.join(target).ok())
                .flatten()
        })
}

/// `<a>; rel="next", <b>; rel="prev"` -> `[("a", "; rel=\"next\""), ("b", ...)]`.
fn split_links(value: &str) -> Vec<(&str, &str)> {
    let mut out = Vec::new();
    let mut rest = value;
    while let Some(open) = rest.find('<') {
        let Some(close) = rest[open..].find('>') else {
            break;
        };
        let target = &rest[open + 1..open + close];
        let after = &rest[open + close + 1..];
        let end = after.find('<').unwrap_or(after.len());
        out.push((target, after[..end].trim_end_matches([',', ' '])));
        rest = &after[end..];
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(values: &[&str]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for v in values {
            map.append(LINK, HeaderValue::from_str(v).unwrap());
        }
        map
    }

    #[test]
    fn next_links_are_found_among_others_and_resolved() {
        let base = url::Url::parse("http://r.example/v2/app/referrers/sha256:aa").unwrap();
        let found = next_link(
            &headers(&[
                r#"</v2/app/referrers/sha256:aa?last=x>; rel="prev", </v2/app/referrers/sha256:aa?n=2&last=y>; rel="next""#,
            ]),
            &base,
        );
        assert_eq!(
            found.unwrap().as_str(),
            "http://r.example/v2/app/referrers/sha256:aa?n=2&last=y"
        );
        assert!(next_link(&headers(&[r#"</x>; rel="prev""#]), &base).is_none());
        assert!(next_link(&headers(&["garbage <unclosed"]), &base).is_none());
        let unquoted = next_link(&headers(&["</p2>;rel=next"]), &base).unwrap();
        assert_eq!(unquoted.as_str(), "http://r.example/p2");
    }
}
