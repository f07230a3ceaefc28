//! The everyday questions: a repository's tags, a reference's manifest digest, a registry's
//! repositories (`crane ls`, `crane digest`, `crane catalog`, `skopeo list-tags`).
//!
//! Lists are paged as the distribution spec says: `?n=` asks for a page size, the `Link:
//! <...>; rel="next"` header names the next page (followed on the registry's origin only),
//! and a registry that answers a full page without `Link` is asked again with `last=`.
//! Each page is capped like a manifest; a page that repeats itself ends the walk with an error
//! rather than a loop.

use reqwest::header::{HeaderMap, HeaderValue, ACCEPT};
use reqwest::{Method, StatusCode};

use super::{read_capped, Error, Missing, RegistryClient, Result, MANIFEST_LIMIT};
use crate::digest::Digest;
use crate::http::redact_url;
use crate::media_type;

/// Pages followed at most (a registry that pages forever is hostile, not large).
const MAX_PAGES: usize = 100_000;

#[derive(serde::Deserialize)]
struct TagsPage {
    #[serde(default)]
    tags: Option<Vec<String>>,
}

#[derive(serde::Deserialize)]
struct CatalogPage {
    #[serde(default)]
    repositories: Option<Vec<String>>,
}

impl RegistryClient {
    /// Every tag of the repository, in the registry's order; `page_size` asks for pages of
    /// that many (`?n=`).
    pub async fn tags(&self, page_size: Option<u32>) -> Result<Vec<String>> {
        let first = format!("{}{}/tags/list", self.route.api_root, self.repository);
        let what = format!("tags of repository `{}`", self.repository);
        let tags = self
            .paged(&first, page_size, Missing::Repository, &what, |bytes| {
                serde_json::from_slice::<TagsPage>(bytes).map(|page| page.tags.unwrap_or_default())
            })
            .await?;
        self.refuse_invalid(tags, crate::reference::valid_tag, "tag")
    }

    /// Every repository the registry lists at `/v2/_catalog` (a client made with
    /// [`RegistryClient::for_catalog`]).
    pub async fn catalog(&self, page_size: Option<u32>) -> Result<Vec<String>> {
        let first = format!("{}_catalog", self.route.api_root);
        let repositories = self
            .paged(
                &first,
                page_size,
                Missing::Catalog,
                "the repository catalog",
                |bytes| {
                    serde_json::from_slice::<CatalogPage>(bytes)
                        .map(|page| page.repositories.unwrap_or_default())
                },
            )
            .await?;
        self.refuse_invalid(
            repositories,
            crate::reference::valid_repository,
            "repository",
        )
    }

    /// The digest of the manifest `reference` (tag or digest) names: from a `HEAD`'s
    /// `Docker-Content-Digest`, else from a `GET` whose body is hashed and checked against the
    /// header and a pinned digest.
    pub async fn manifest_digest(&self, reference: &str) -> Result<Digest> {
        let path = self.repository_path(&format!("manifests/{reference}"));
        let mut headers = HeaderMap::new();
        headers.insert(
            ACCEPT,
            HeaderValue::from_static(media_type::MANIFEST_ACCEPT),
        );
        let response = self
            .send_authenticated(Method::HEAD, &path, headers)
            .await?;
        let status = response.status();
        let header = response
            .headers()
            .get("docker-content-digest")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<Digest>().ok());
        let pinned = reference.parse::<Digest>().ok();
        match (status, header) {
            (StatusCode::NOT_FOUND, _) => {
                return Err(Error::NotFound {
                    kind: Missing::Manifest,
                    what: format!("manifest `{reference}` of repository `{}`", self.repository),
                    url: redact_url(response.url()),
                })
            }
            (status, Some(digest))
                if status.is_success() && pinned.as_ref().is_none_or(|p| *p == digest) =>
            {
                return Ok(digest)
            }
            (status, _) if status.is_success() => {
                tracing::debug!("HEAD gave no usable Docker-Content-Digest; asking with GET");
            }
            (status, _) => {
                tracing::debug!(%status, "HEAD refused; asking with GET");
            }
        }
        Ok(self.manifest(reference).await?.digest)
    }

    /// `names`, unless one is not a valid `kind` name: printed one a line, a hostile name could
    /// carry terminal escapes or forge lines.
    fn refuse_invalid(
        &self,
        names: Vec<String>,
        valid: fn(&str) -> bool,
        kind: &str,
    ) -> Result<Vec<String>> {
        match names.iter().position(|name| !valid(name)) {
            None => Ok(names),
            Some(index) => Err(Error::Protocol {
                url: self.host.clone(),
                reason: format!(
                    "the registry listed a {kind} name that is not valid ({:?}, entry {})",
                    names[index].chars().take(64).collect::<String>(),
                    index + 1
                ),
            }),
        }
    }

    /// GET `first` and the pages after it, each parsed by `items`.
    async fn paged(
        &self,
        first: &str,
        page_size: Option<u32>,
        missing: Missing,
        what: &str,
        items: impl Fn(&[u8]) -> serde_json::Result<Vec<String>>,
    ) -> Result<Vec<String>> {
        let base = self.base().await?.clone();
        let mut url = self.url_for(first).await?;
        if let Some(n) = page_size {
            url.query_pairs_mut().append_pair("n", &n.to_string());
        }
        let mut all: Vec<String> = Vec::new();
        let mut seen = std::collections::HashSet::new();
        for _ in 0..MAX_PAGES {
            if !seen.insert(url.clone()) {
                return Err(Error::Protocol {
                    url: redact_url(&url),
                    reason: format!("paging through {what} came back to a page already read"),
                });
            }
            let mut headers = HeaderMap::new();
            headers.insert(ACCEPT, HeaderValue::from_static("application/json"));
            let response = self
                .send_authenticated_url(Method::GET, &url, headers, None)
                .await?;
            let response = self
                .check_status(response, missing, || what.to_string())
                .await?;
            let next = next_link(response.headers(), &url)
                .map(|link| {
                    if link.origin() == base.origin() {
                        Ok(link)
                    } else {
                        Err(Error::Protocol {
                            url: redact_url(&url),
                            reason: format!(
                                "the next page of {what} is on another origin ({})",
                                redact_url(&link)
                            ),
                        })
                    }
                })
                .transpose()?;
            let shown = redact_url(&url);
            let bytes = read_capped(response, MANIFEST_LIMIT, &shown, self.options.pace).await?;
            let page = items(&bytes).map_err(|e| Error::Protocol {
                url: shown.clone(),
                reason: format!("the answer for {what} is not the JSON the API defines: {e}"),
            })?;
            // Exactly a page: a registry that ignores `n` sends more, and is done.
            let full_page = page_size.is_some_and(|n| n > 0 && page.len() == n as usize);
            let last = page.last().cloned();
            all.extend(page);
            url = match (next, full_page, last) {
                (Some(next), _, _) => next,
                // A full page and no Link: ask for what follows the last entry.
                (None, true, Some(last)) => {
                    let mut next = url.clone();
                    let kept: Vec<(String, String)> = url
                        .query_pairs()
                        .filter(|(k, _)| k != "last")
                        .map(|(k, v)| (k.into_owned(), v.into_owned()))
                        .collect();
                    next.query_pairs_mut()
                        .clear()
                        .extend_pairs(kept)
                        .append_pair("last", &last);
                    next
                }
                _ => return Ok(all),
            };
        }
        Err(Error::Protocol {
            url: redact_url(&url),
            reason: format!("{what} did not end after {MAX_PAGES} pages"),
        })
    }
}

/// The `rel="next"` target of a `Link` header, resolved against the request URL.
fn next_link(headers: &HeaderMap, request: &url::Url) -> Option<url::Url> {
    for value in headers.get_all(reqwest::header::LINK) {
        let Ok(value) = value.to_str() else { continue };
        for link in value.split(',') {
            let mut parts = link.split(';');
            let target = parts.next()?.trim();
            let target = target.strip_prefix('<')?.strip_suffix('>')?;
            let is_next = parts.any(|param| {
                let param = param.trim();
                param
                    .strip_prefix("rel=")
                    .map(|rel| {
                        rel.trim_matches('"')
                            .split_whitespace()
                            .any(|r| r == "next")
                    })
                    .unwrap_or(false)
            });
            if is_next {
                return request.join(target).ok();
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn link_headers_as_distribution_and_acr_write_them() {
        let request = url::Url::parse("https://r.example/v2/team/app/tags/list?n=2").unwrap();
        let mut headers = HeaderMap::new();
        headers.insert(
            reqwest::header::LINK,
            HeaderValue::from_static("</v2/team/app/tags/list?last=b&n=2>; rel=\"next\""),
        );
        assert_eq!(
            next_link(&headers, &request).unwrap().as_str(),
            "https://r.example/v2/team/app/tags/list?last=b&n=2"
        );
        let mut headers = HeaderMap::new();
        headers.insert(
            reqwest::header::LINK,
            HeaderValue::from_static(
                "<https://r.example/a>; rel=\"prev\", <https://r.example/b?last=x>; rel=next",
            ),
        );
        assert_eq!(
            next_link(&headers, &request).unwrap().as_str(),
            "https://r.example/b?last=x"
        );
        assert!(next_link(&HeaderMap::new(), &request).is_none());
    }
}
