//! The write side of the distribution API: blob existence checks, cross-repository mounts,
//! monolithic and chunked uploads, and manifest puts.

use bytes::Bytes;
use reqwest::header::{
    HeaderMap, HeaderValue, CONTENT_LENGTH, CONTENT_RANGE, CONTENT_TYPE, LOCATION,
};
use reqwest::{Method, Response, StatusCode};

use super::{redact_url, BodyFactory, Error, Missing, RegistryClient, Result};
use crate::digest::Digest;

impl RegistryClient {
    /// Whether the repository already has the blob (`HEAD`).
    pub async fn blob_exists(&self, digest: &Digest) -> Result<bool> {
        let path = format!("v2/{}/blobs/{digest}", self.repository);
        let response = self
            .send_authenticated(Method::HEAD, &path, HeaderMap::new())
            .await?;
        match response.status() {
            status if status.is_success() => Ok(true),
            StatusCode::NOT_FOUND => Ok(false),
            _ => self
                .check_status(response, Missing::Blob, || format!("blob {digest}"))
                .await
                .map(|_| false),
        }
    }

    /// Ask the registry to mount `digest` from repository `from` (same registry). `true` if
    /// mounted; `false` if the registry declined (then nothing is left open).
    pub async fn mount_blob(&self, digest: &Digest, from: &str) -> Result<bool> {
        let path = format!(
            "v2/{}/blobs/uploads/?mount={digest}&from={}",
            self.repository,
            url::form_urlencoded::byte_serialize(from.as_bytes()).collect::<String>()
        );
        let response = self
            .send_authenticated(Method::POST, &path, HeaderMap::new())
            .await?;
        match response.status() {
            StatusCode::CREATED => Ok(true),
            StatusCode::ACCEPTED => {
                // An upload session was opened instead: close it.
                if let Ok(location) = self.location(&response).await {
                    let _ = self
                        .send_authenticated_url(Method::DELETE, &location, HeaderMap::new(), None)
                        .await;
                }
                Ok(false)
            }
            _ => self
                .check_status(response, Missing::Blob, || {
                    format!("mount of {digest} from `{from}`")
                })
                .await
                .map(|_| false),
        }
    }

    /// Start an upload session; returns its URL.
    async fn start_upload(&self) -> Result<url::Url> {
        let path = format!("v2/{}/blobs/uploads/", self.repository);
        let response = self
            .send_authenticated(Method::POST, &path, HeaderMap::new())
            .await?;
        if response.status() != StatusCode::ACCEPTED {
            let what = || format!("upload to repository `{}`", self.repository);
            self.check_status(response, Missing::Repository, what)
                .await?;
            return Err(Error::Status {
                method: "POST".into(),
                url: path,
                status: 202,
                body: Some("expected 202 Accepted for an upload session".into()),
            });
        }
        self.location(&response).await
    }

    async fn location(&self, response: &Response) -> Result<url::Url> {
        let location = response
            .headers()
            .get(LOCATION)
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| Error::Redirect {
                url: redact_url(response.url()),
                reason: "upload response without Location".into(),
            })?;
        response.url().join(location).map_err(|e| Error::Redirect {
            url: redact_url(response.url()),
            reason: format!("bad upload Location: {e}"),
        })
    }

    /// Upload a blob in one `PUT` (the body is made afresh for each attempt).
    pub async fn upload_blob(
        &self,
        digest: &Digest,
        size: u64,
        body: BodyFactory<'_>,
    ) -> Result<()> {
        let session = self.start_upload().await?;
        let mut url = session;
        url.query_pairs_mut()
            .append_pair("digest", &digest.to_string());
        let mut headers = HeaderMap::new();
        headers.insert(
            CONTENT_TYPE,
            HeaderValue::from_static("application/octet-stream"),
        );
        headers.insert(CONTENT_LENGTH, HeaderValue::from(size));
        let response = self
            .send_authenticated_url(Method::PUT, &url, headers, Some(body))
            .await?;
        self.expect_created(response, digest).await
    }

    /// Upload a blob in `PATCH` chunks of at most `chunk` bytes, then close it with a `PUT`.
    /// `read_chunk(offset, length)` returns the bytes at `offset`.
    pub async fn upload_blob_chunked(
        &self,
        digest: &Digest,
        size: u64,
        chunk: u64,
        read_chunk: &(dyn Fn(u64, u64) -> std::io::Result<Bytes> + Send + Sync),
    ) -> Result<()> {
        let mut url = self.start_upload().await?;
        let mut offset = 0;
        while offset < size {
            let length = chunk.min(size - offset);
            let bytes = read_chunk(offset, length).map_err(|source| Error::Io {
                path: format!("blob {digest}").into(),
                source,
            })?;
            let mut headers = HeaderMap::new();
            headers.insert(
                CONTENT_TYPE,
                HeaderValue::from_static("application/octet-stream"),
            );
            headers.insert(CONTENT_LENGTH, HeaderValue::from(length));
            let range = format!("{offset}-{}", offset + length - 1);
            headers.insert(CONTENT_RANGE, HeaderValue::from_str(&range).expect("ascii"));
            let body = move || reqwest::Body::from(bytes.clone());
            let response = self
                .send_authenticated_url(Method::PATCH, &url, headers, Some(&body))
                .await?;
            if response.status() != StatusCode::ACCEPTED {
                let what = || format!("chunk {range} of blob {digest}");
                self.check_status(response, Missing::Upload, what).await?;
                return Err(Error::Status {
                    method: "PATCH".into(),
                    url: redact_url(&url),
                    status: 202,
                    body: Some("expected 202 Accepted for a chunk".into()),
                });
            }
            url = self.location(&response).await?;
            offset += length;
        }
        url.query_pairs_mut()
            .append_pair("digest", &digest.to_string());
        let mut headers = HeaderMap::new();
        headers.insert(CONTENT_LENGTH, HeaderValue::from(0u64));
        let response = self
            .send_authenticated_url(Method::PUT, &url, headers, None)
            .await?;
        self.expect_created(response, digest).await
    }

    async fn expect_created(&self, response: Response, digest: &Digest) -> Result<()> {
        if response.status() == StatusCode::CREATED {
            return Ok(());
        }
        let what = || format!("upload of blob {digest}");
        self.check_status(response, Missing::Upload, what).await?;
        Err(Error::Status {
            method: "PUT".into(),
            url: format!("blob {digest}"),
            status: 201,
            body: Some("expected 201 Created".into()),
        })
    }

    /// Put a manifest (exact bytes) under `reference` (a tag or its digest).
    pub async fn put_manifest(
        &self,
        reference: &str,
        bytes: Bytes,
        media_type: &str,
    ) -> Result<()> {
        self.put_manifest_answer(reference, bytes, media_type)
            .await
            .map(drop)
    }

    /// [`Self::put_manifest`], returning the headers of the registry's answer (`OCI-Subject`).
    pub(super) async fn put_manifest_answer(
        &self,
        reference: &str,
        bytes: Bytes,
        media_type: &str,
    ) -> Result<HeaderMap> {
        let path = format!("v2/{}/manifests/{reference}", self.repository);
        let url = self.url_for(&path).await?;
        let mut headers = HeaderMap::new();
        headers.insert(
            CONTENT_TYPE,
            HeaderValue::from_str(media_type).map_err(|_| Error::Unsupported {
                url: path.clone(),
                reason: format!("media type `{media_type}` is not a valid header value"),
            })?,
        );
        let body = move || reqwest::Body::from(bytes.clone());
        let response = self
            .send_authenticated_url(Method::PUT, &url, headers, Some(&body))
            .await?;
        let answer = response.headers().clone();
        if response.status().is_success() {
            return Ok(answer);
        }
        let what = || format!("manifest `{reference}` of repository `{}`", self.repository);
        self.check_status(response, Missing::Repository, what)
            .await?;
        Ok(answer)
    }
}
