//! An in-memory, read-write registry that serves the referrers API of distribution spec 1.1,
//! for what the Debian `docker-registry` (distribution 2.8) cannot do.
//!
//! Written from the spec (`spec.md` of opencontainers/distribution-spec 1.1,
//! <https://github.com/opencontainers/distribution-spec/blob/v1.1.0/spec.md>):
//! - blobs: `HEAD`/`GET`, uploads (`POST` then `PUT ?digest=`, `PATCH` chunks, cross-repository
//!   mounts), digests checked;
//! - manifests: `GET`/`HEAD`/`PUT` by tag or digest; a `PUT` whose manifest has a `subject`
//!   answers `OCI-Subject: <digest>`; referenced blobs must exist (`MANIFEST_BLOB_UNKNOWN`),
//!   the subject need not;
//! - `GET /v2/<name>/referrers/<digest>`: an image index of the manifests whose `subject` is
//!   `<digest>`, each with `artifactType` (else the config media type; omitted for an index
//!   without one) and its annotations; `?artifactType=` filters and sets
//!   `OCI-Filters-Applied: artifactType`; long lists are paged with `Link: <...>; rel="next"`.
//!
//! Faults ([`OciFaults`]) make it misbehave the ways the client must survive: no referrers API
//! at all (404, no `OCI-Subject`), a `Link` that never ends, extra entries for another
//! subject, an answer padded past any sane size, and a competing writer that overwrites a tag
//! right after the client wrote it.

use std::collections::{BTreeMap, HashMap};
use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::sync::{Arc, Mutex, MutexGuard};

use anyhow::Context as _;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, Method, StatusCode};
use axum::response::Response;
use axum::Router;
use serde_json::{json, Value};

use crate::fixtures::sha256_digest;

/// How the registry misbehaves; change it at any time through [`OciRegistry::faults`].
#[derive(Debug, Clone)]
pub struct OciFaults {
    /// Serve the referrers API and `OCI-Subject` (default); off, it acts like a 1.0 registry.
    pub referrers_api: bool,
    /// Referrers per page (`n` in the query, when smaller, wins).
    pub page_size: usize,
    /// Every page links to a next one, forever.
    pub endless_pages: bool,
    /// Extra entries listed for a subject digest, whatever their own `subject` says.
    pub extra_listed: BTreeMap<String, Vec<Value>>,
    /// Pad every referrers answer with whitespace to this many bytes.
    pub pad_referrers_to: Option<usize>,
    /// `(tag, entry)`: right after the next `PUT` of this tag, another writer replaces it with
    /// the version from before that `PUT` plus `entry` (once).
    pub competing_writer: Option<(String, Value)>,
}

impl Default for OciFaults {
    fn default() -> Self {
        Self {
            referrers_api: true,
            page_size: 100,
            endless_pages: false,
            extra_listed: BTreeMap::new(),
            pad_referrers_to: None,
            competing_writer: None,
        }
    }
}

#[derive(Debug, Default)]
struct Repository {
    /// Manifests by digest: (media type, bytes).
    manifests: HashMap<String, (String, Vec<u8>)>,
    tags: HashMap<String, String>,
}

#[derive(Debug, Default)]
struct Store {
    blobs: HashMap<String, Vec<u8>>,
    repositories: HashMap<String, Repository>,
    uploads: HashMap<u64, Vec<u8>>,
    next_upload: u64,
    log: Vec<(String, String, u16)>,
}

struct Shared {
    store: Mutex<Store>,
    faults: Mutex<OciFaults>,
}

/// A running registry on 127.0.0.1; stops when dropped.
pub struct OciRegistry {
    addr: SocketAddr,
    shared: Arc<Shared>,
    _background: crate::serve::Background,
}

impl std::fmt::Debug for OciRegistry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OciRegistry")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl OciRegistry {
    /// Start an empty registry.
    pub fn start() -> anyhow::Result<OciRegistry> {
        let listener =
            TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).context("binding 127.0.0.1:0")?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            store: Mutex::new(Store::default()),
            faults: Mutex::new(OciFaults::default()),
        });
        let app = Router::new().fallback(handle).with_state(shared.clone());
        let background = crate::serve::spawn(
            &format!("oci-registry-{}", addr.port()),
            vec![(listener, app)],
        )?;
        Ok(OciRegistry {
            addr,
            shared,
            _background: background,
        })
    }

    /// `127.0.0.1:PORT`.
    pub fn host(&self) -> String {
        self.addr.to_string()
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Change the faults.
    pub fn faults(&self, change: impl FnOnce(&mut OciFaults)) {
        change(&mut lock(&self.shared.faults));
    }

    /// `(media type, bytes)` of a manifest by tag or digest.
    pub fn manifest(&self, repository: &str, reference: &str) -> Option<(String, Vec<u8>)> {
        let store = lock(&self.shared.store);
        let repo = store.repositories.get(repository)?;
        let digest = repo
            .tags
            .get(reference)
            .cloned()
            .unwrap_or_else(|| reference.to_owned());
        repo.manifests.get(&digest).cloned()
    }

    /// The tags of a repository, sorted.
    pub fn tags(&self, repository: &str) -> Vec<String> {
        let store = lock(&self.shared.store);
        let mut tags: Vec<String> = store
            .repositories
            .get(repository)
            .map(|r| r.tags.keys().cloned().collect())
            .unwrap_or_default();
        tags.sort();
        tags
    }

    /// Whether the registry holds a blob.
    pub fn has_blob(&self, digest: &str) -> bool {
        lock(&self.shared.store).blobs.contains_key(digest)
    }

    /// Requests seen: `(method, path and query, status)`.
    pub fn requests(&self) -> Vec<(String, String, u16)> {
        lock(&self.shared.store).log.clone()
    }
}

async fn handle(State(shared): State<Arc<Shared>>, request: Request) -> Response {
    let method = request.method().clone();
    let uri = request.uri().clone();
    let headers = request.headers().clone();
    let body = axum::body::to_bytes(request.into_body(), 64 << 20)
        .await
        .unwrap_or_default()
        .to_vec();
    let response = route(&shared, &method, &uri, &headers, body);
    let path = uri
        .path_and_query()
        .map_or_else(|| uri.path().to_owned(), |p| p.as_str().to_owned());
    lock(&shared.store)
        .log
        .push((method.to_string(), path, response.status().as_u16()));
    response
}

fn error(status: StatusCode, code: &str, message: &str) -> Response {
    let body = json!({"errors": [{"code": code, "message": message}]}).to_string();
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(body))
        .unwrap_or_default()
}

fn empty(status: StatusCode) -> axum::http::response::Builder {
    Response::builder().status(status)
}

fn query(uri: &axum::http::Uri) -> HashMap<String, String> {
    uri.query()
        .map(|q| {
            url::form_urlencoded::parse(q.as_bytes())
                .into_owned()
                .collect()
        })
        .unwrap_or_default()
}

fn route(
    shared: &Shared,
    method: &Method,
    uri: &axum::http::Uri,
    headers: &axum::http::HeaderMap,
    body: Vec<u8>,
) -> Response {
    let path = uri.path();
    if path == "/v2/" || path == "/v2" {
        return empty(StatusCode::OK)
            .header("Docker-Distribution-API-Version", "registry/2.0")
            .body(Body::from("{}"))
            .unwrap_or_default();
    }
    let Some(rest) = path.strip_prefix("/v2/") else {
        return error(StatusCode::NOT_FOUND, "NOT_FOUND", "no such path");
    };
    let params = query(uri);
    if let Some((name, id)) = rest.rsplit_once("/blobs/uploads/") {
        return upload(shared, method, name, id, &params, body);
    }
    if let Some((name, reference)) = rest.rsplit_once("/manifests/") {
        return match *method {
            Method::GET | Method::HEAD => get_manifest(shared, method, name, reference),
            Method::PUT => put_manifest(shared, name, reference, headers, body),
            _ => error(StatusCode::METHOD_NOT_ALLOWED, "UNSUPPORTED", "method"),
        };
    }
    if let Some((_, digest)) = rest.rsplit_once("/blobs/") {
        let store = lock(&shared.store);
        return match store.blobs.get(digest) {
            Some(bytes) => {
                let builder = empty(StatusCode::OK)
                    .header(header::CONTENT_LENGTH, bytes.len())
                    .header("Docker-Content-Digest", digest)
                    .header(header::CONTENT_TYPE, "application/octet-stream");
                let body = if *method == Method::HEAD {
                    Body::empty()
                } else {
                    Body::from(bytes.clone())
                };
                builder.body(body).unwrap_or_default()
            }
            None => error(StatusCode::NOT_FOUND, "BLOB_UNKNOWN", "blob unknown"),
        };
    }
    if let Some((name, digest)) = rest.rsplit_once("/referrers/") {
        return referrers(shared, name, digest, &params, uri.path());
    }
    error(StatusCode::NOT_FOUND, "NOT_FOUND", "no such path")
}

fn upload(
    shared: &Shared,
    method: &Method,
    name: &str,
    id: &str,
    params: &HashMap<String, String>,
    body: Vec<u8>,
) -> Response {
    let mut store = lock(&shared.store);
    if *method == Method::POST {
        if let Some(digest) = params.get("mount") {
            if store.blobs.contains_key(digest) {
                return empty(StatusCode::CREATED)
                    .header(header::LOCATION, format!("/v2/{name}/blobs/{digest}"))
                    .body(Body::empty())
                    .unwrap_or_default();
            }
        }
        store.next_upload += 1;
        let upload = store.next_upload;
        store.uploads.insert(upload, Vec::new());
        return empty(StatusCode::ACCEPTED)
            .header(
                header::LOCATION,
                format!("/v2/{name}/blobs/uploads/{upload}"),
            )
            .header(header::RANGE, "0-0")
            .body(Body::empty())
            .unwrap_or_default();
    }
    let Some(upload) = id
        .parse::<u64>()
        .ok()
        .filter(|u| store.uploads.contains_key(u))
    else {
        return error(
            StatusCode::NOT_FOUND,
            "BLOB_UPLOAD_UNKNOWN",
            "upload unknown",
        );
    };
    let received = store.uploads.entry(upload).or_default();
    received.extend_from_slice(&body);
    let length = received.len();
    match *method {
        Method::PATCH => empty(StatusCode::ACCEPTED)
            .header(
                header::LOCATION,
                format!("/v2/{name}/blobs/uploads/{upload}"),
            )
            .header(header::RANGE, format!("0-{}", length.saturating_sub(1)))
            .body(Body::empty())
            .unwrap_or_default(),
        Method::PUT => {
            let Some(digest) = params.get("digest") else {
                return error(StatusCode::BAD_REQUEST, "DIGEST_INVALID", "no digest");
            };
            let bytes = store.uploads.remove(&upload).unwrap_or_default();
            if &sha256_digest(&bytes) != digest {
                return error(StatusCode::BAD_REQUEST, "DIGEST_INVALID", "digest mismatch");
            }
            store.blobs.insert(digest.clone(), bytes);
            empty(StatusCode::CREATED)
                .header(header::LOCATION, format!("/v2/{name}/blobs/{digest}"))
                .header("Docker-Content-Digest", digest)
                .body(Body::empty())
                .unwrap_or_default()
        }
        _ => error(StatusCode::METHOD_NOT_ALLOWED, "UNSUPPORTED", "method"),
    }
}

fn get_manifest(shared: &Shared, method: &Method, name: &str, reference: &str) -> Response {
    let store = lock(&shared.store);
    let found = store.repositories.get(name).and_then(|repo| {
        let digest = repo
            .tags
            .get(reference)
            .cloned()
            .unwrap_or_else(|| reference.to_owned());
        repo.manifests.get(&digest).cloned().map(|m| (digest, m))
    });
    let Some((digest, (media_type, bytes))) = found else {
        return error(
            StatusCode::NOT_FOUND,
            "MANIFEST_UNKNOWN",
            "manifest unknown",
        );
    };
    let builder = empty(StatusCode::OK)
        .header(header::CONTENT_TYPE, media_type)
        .header(header::CONTENT_LENGTH, bytes.len())
        .header("Docker-Content-Digest", &digest)
        .header(header::ETAG, format!("\"{digest}\""));
    let body = if *method == Method::HEAD {
        Body::empty()
    } else {
        Body::from(bytes)
    };
    builder.body(body).unwrap_or_default()
}

fn put_manifest(
    shared: &Shared,
    name: &str,
    reference: &str,
    headers: &axum::http::HeaderMap,
    body: Vec<u8>,
) -> Response {
    let Ok(document) = serde_json::from_slice::<Value>(&body) else {
        return error(StatusCode::BAD_REQUEST, "MANIFEST_INVALID", "not JSON");
    };
    let digest = sha256_digest(&body);
    if reference.starts_with("sha256:") && reference != digest {
        return error(StatusCode::BAD_REQUEST, "DIGEST_INVALID", "digest mismatch");
    }
    let media_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
        .or_else(|| document["mediaType"].as_str().map(str::to_owned))
        .unwrap_or_default();
    let faults = lock(&shared.faults).clone();
    let mut store = lock(&shared.store);
    // Referenced content must exist (the subject need not).
    let blobs = document["layers"]
        .as_array()
        .into_iter()
        .flatten()
        .chain(std::iter::once(&document["config"]).filter(|c| c.is_object()));
    for descriptor in blobs {
        let wanted = descriptor["digest"].as_str().unwrap_or_default();
        if !store.blobs.contains_key(wanted) {
            return error(
                StatusCode::BAD_REQUEST,
                "MANIFEST_BLOB_UNKNOWN",
                &format!("blob {wanted} unknown"),
            );
        }
    }
    let repo = store.repositories.entry(name.to_owned()).or_default();
    for child in document["manifests"].as_array().into_iter().flatten() {
        let wanted = child["digest"].as_str().unwrap_or_default();
        if !repo.manifests.contains_key(wanted) {
            return error(
                StatusCode::BAD_REQUEST,
                "MANIFEST_BLOB_UNKNOWN",
                &format!("manifest {wanted} unknown"),
            );
        }
    }
    let previous = repo
        .tags
        .get(reference)
        .and_then(|d| repo.manifests.get(d))
        .cloned();
    repo.manifests
        .insert(digest.clone(), (media_type.clone(), body));
    if !reference.starts_with("sha256:") {
        repo.tags.insert(reference.to_owned(), digest.clone());
    }
    if let Some((tag, entry)) = faults.competing_writer.filter(|(t, _)| t == reference) {
        lock(&shared.faults).competing_writer = None;
        let mut theirs = previous
            .and_then(|(_, bytes)| serde_json::from_slice::<Value>(&bytes).ok())
            .unwrap_or_else(
                || json!({"schemaVersion": 2, "mediaType": media_type, "manifests": []}),
            );
        if let Some(list) = theirs["manifests"].as_array_mut() {
            list.push(entry);
        }
        let bytes = serde_json::to_vec(&theirs).unwrap_or_default();
        let theirs_digest = sha256_digest(&bytes);
        repo.manifests
            .insert(theirs_digest.clone(), (media_type.clone(), bytes));
        repo.tags.insert(tag, theirs_digest);
    }
    let mut builder = empty(StatusCode::CREATED)
        .header(header::LOCATION, format!("/v2/{name}/manifests/{digest}"))
        .header("Docker-Content-Digest", &digest);
    if faults.referrers_api {
        if let Some(subject) = document["subject"]["digest"].as_str() {
            builder = builder.header("OCI-Subject", subject);
        }
    }
    builder.body(Body::empty()).unwrap_or_default()
}

/// The descriptor the referrers API lists for a manifest.
fn listing(digest: &str, media_type: &str, size: usize, document: &Value) -> Value {
    let mut entry = json!({"mediaType": media_type, "digest": digest, "size": size});
    let artifact_type = document["artifactType"]
        .as_str()
        .filter(|t| !t.is_empty())
        .or_else(|| document["config"]["mediaType"].as_str());
    if let Some(artifact_type) = artifact_type {
        entry["artifactType"] = json!(artifact_type);
    }
    if let Some(annotations) = document.get("annotations").filter(|a| a.is_object()) {
        entry["annotations"] = annotations.clone();
    }
    entry
}

fn referrers(
    shared: &Shared,
    name: &str,
    digest: &str,
    params: &HashMap<String, String>,
    path: &str,
) -> Response {
    let faults = lock(&shared.faults).clone();
    if !faults.referrers_api {
        return error(StatusCode::NOT_FOUND, "NOT_FOUND", "no such path");
    }
    if !digest.starts_with("sha256:") || digest.len() != 71 {
        return error(StatusCode::BAD_REQUEST, "DIGEST_INVALID", "bad digest");
    }
    let store = lock(&shared.store);
    let mut entries: Vec<Value> = store
        .repositories
        .get(name)
        .map(|repo| {
            repo.manifests
                .iter()
                .filter_map(|(d, (media_type, bytes))| {
                    let document: Value = serde_json::from_slice(bytes).ok()?;
                    (document["subject"]["digest"].as_str() == Some(digest))
                        .then(|| listing(d, media_type, bytes.len(), &document))
                })
                .collect()
        })
        .unwrap_or_default();
    drop(store);
    entries.extend(faults.extra_listed.get(digest).cloned().unwrap_or_default());
    entries.sort_by(|a, b| a["digest"].as_str().cmp(&b["digest"].as_str()));
    let filter = params.get("artifactType");
    if let Some(wanted) = filter {
        entries.retain(|e| e["artifactType"].as_str() == Some(wanted.as_str()));
    }
    let requested = params
        .get("n")
        .and_then(|n| n.parse::<usize>().ok())
        .unwrap_or(faults.page_size);
    let size = std::cmp::max(1, requested.min(faults.page_size));
    let page: usize = params.get("page").and_then(|p| p.parse().ok()).unwrap_or(0);
    let start = page.saturating_mul(size).min(entries.len());
    let end = (start + size).min(entries.len());
    let index = json!({
        "schemaVersion": 2,
        "mediaType": crate::fixtures::OCI_INDEX,
        "manifests": entries[start..end].to_vec(),
    });
    let mut bytes = serde_json::to_vec(&index).unwrap_or_default();
    if let Some(pad) = faults.pad_referrers_to {
        if pad > bytes.len() {
            bytes.resize(pad, b' ');
        }
    }
    let mut builder = empty(StatusCode::OK)
        .header(header::CONTENT_TYPE, crate::fixtures::OCI_INDEX)
        .header(header::CONTENT_LENGTH, bytes.len());
    if filter.is_some() {
        builder = builder.header("OCI-Filters-Applied", "artifactType");
    }
    if end < entries.len() || faults.endless_pages {
        let mut next = format!("{path}?page={}", page + 1);
        if let Some(wanted) = filter {
            let encoded: String = url::form_urlencoded::byte_serialize(wanted.as_bytes()).collect();
            next.push_str(&format!("&artifactType={encoded}"));
        }
        builder = builder.header(header::LINK, format!("<{next}>; rel=\"next\""));
    }
    builder.body(Body::from(bytes)).unwrap_or_default()
}
