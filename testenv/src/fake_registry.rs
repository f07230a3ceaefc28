//! An in-process, read-only registry over one OCI layout, with fault knobs.
//!
//! [`FakeRegistry::start`] serves the distribution API's read side on
//! 127.0.0.1 (`/v2/`, manifests, blobs with `Range`, tags list, a `/token`
//! endpoint) plus a second "storage" listener that blob GETs can be
//! redirected to, as ACR redirects to Azure Blob Storage. Both run on their
//! own thread and runtime, so they keep answering while a test blocks (for
//! instance on a CLI child process), and stop when the [`FakeRegistry`] is
//! dropped.
//!
//! Faults live in a [`Faults`] handle (an `Arc`): set them before start with
//! [`FakeRegistry::start_with`] or at any time through
//! [`FakeRegistry::faults`]. Every request is recorded ([`RequestRecord`]).

use std::collections::{HashMap, HashSet, VecDeque};
use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use anyhow::Context as _;
use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, Method, StatusCode};
use axum::response::Response;
use axum::Router;
use futures_util::StreamExt as _;

use crate::fixtures::{sha256_digest, Layout};

/// Media type served by [`Faults::unknown_media_type`].
pub const UNKNOWN_MEDIA_TYPE: &str = "application/vnd.example.unknown+json";

/// The `service` in the fake's bearer challenge.
pub const FAKE_SERVICE: &str = "fake";

/// Query string appended to redirected blob URLs, standing in for a SAS token.
pub const FAKE_SAS_QUERY: &str = "sv=2024-01-01&se=2099-01-01&sp=r&sig=fake-sas-signature";

/// Attacks a hostile registry makes on its clients (one at a time), for the hostile-registry
/// tests. Each is something the distribution spec does not allow or a client must bound.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Hostile {
    /// Blob bodies send one byte every `interval`, forever short of their length.
    DripBlobs(Duration),
    /// Blob bodies never end: no `Content-Length`, bytes for as long as the client reads.
    EndlessBlobs,
    /// `/token` answers with a token of this many bytes.
    HugeToken(usize),
    /// `/token` hands out a token with CR/LF in it (a header-splitting attempt).
    TokenWithLineBreak,
    /// Manifest requests fail with `500` and an error body that never ends.
    EndlessErrorBody,
    /// Blob answers announce a `Content-Length` larger than the bytes they send, then keep the
    /// connection open.
    LyingContentLength,
    /// Blob GETs without `Range` are answered `206` with a `Content-Range` for the whole blob.
    PartialWithoutRange,
}

/// When to cut a blob response short.
#[derive(Debug, Clone, Copy)]
struct DropRule {
    /// Absolute offset in the blob after which the connection is closed.
    after: u64,
    /// How many more times to fire; `None` for always.
    remaining: Option<u32>,
}

#[derive(Debug, Default)]
struct FaultState {
    corrupt_blobs: HashSet<String>,
    wrong_manifest_digest_header: bool,
    oversized_manifest: Option<usize>,
    unknown_media_type: bool,
    manifest_overrides: HashMap<String, (Vec<u8>, String)>,
    blob_status: HashMap<String, VecDeque<u16>>,
    drop_after: HashMap<String, DropRule>,
    redirect_blobs_to: Option<String>,
    bearer: Option<String>,
    token_basic: Option<(String, String)>,
    ignore_range: bool,
    hostile: Option<Hostile>,
}

/// Shared, mutable fault configuration of a [`FakeRegistry`].
///
/// Setters take `&self` and return `&Self` for chaining; changes apply to the
/// next request.
#[derive(Debug, Clone, Default)]
pub struct Faults(Arc<Mutex<FaultState>>);

impl Faults {
    fn lock(&self) -> MutexGuard<'_, FaultState> {
        // A panicking test thread must not wedge the server.
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Serve blob `digest` with one byte changed (same length), on every
    /// listener and for ranges too.
    pub fn corrupt_blob(&self, digest: &str) -> &Self {
        self.lock().corrupt_blobs.insert(digest.to_owned());
        self
    }

    /// Send a `Docker-Content-Digest` that does not match the manifest bytes.
    pub fn wrong_manifest_digest_header(&self, on: bool) -> &Self {
        self.lock().wrong_manifest_digest_header = on;
        self
    }

    /// Serve every manifest padded with trailing JSON whitespace to `bytes`
    /// bytes (the digest header matches the padded bytes).
    pub fn oversized_manifest(&self, bytes: usize) -> &Self {
        self.lock().oversized_manifest = Some(bytes);
        self
    }

    /// Serve manifests with `Content-Type` and `mediaType` set to
    /// [`UNKNOWN_MEDIA_TYPE`].
    pub fn unknown_media_type(&self, on: bool) -> &Self {
        self.lock().unknown_media_type = on;
        self
    }

    /// Serve `bytes` with `media_type` for the tag `tag` and for the digest
    /// of `bytes`.
    pub fn serve_manifest_override(&self, tag: &str, bytes: &[u8], media_type: &str) -> &Self {
        self.lock()
            .manifest_overrides
            .insert(tag.to_owned(), (bytes.to_vec(), media_type.to_owned()));
        self
    }

    /// Answer successive blob GETs of `digest` with these statuses (`200`
    /// serves the blob); once they are used up, serve normally. HEADs are
    /// not affected.
    pub fn blob_status_sequence(&self, digest: &str, statuses: &[u16]) -> &Self {
        self.lock()
            .blob_status
            .insert(digest.to_owned(), statuses.iter().copied().collect());
        self
    }

    /// Close the connection once a GET of `digest` reaches absolute offset
    /// `after` (headers announce the full length). A `Range` request that
    /// starts at or past `after` is served completely, so resuming works
    /// and restarting from zero never does. Applies until cleared.
    pub fn drop_after_bytes(&self, digest: &str, after: u64) -> &Self {
        self.drop_rule(digest, after, None)
    }

    /// Like [`Faults::drop_after_bytes`], but only for the next GET that
    /// would cross `after`.
    pub fn drop_after_bytes_once(&self, digest: &str, after: u64) -> &Self {
        self.drop_rule(digest, after, Some(1))
    }

    fn drop_rule(&self, digest: &str, after: u64, remaining: Option<u32>) -> &Self {
        self.lock()
            .drop_after
            .insert(digest.to_owned(), DropRule { after, remaining });
        self
    }

    /// Answer blob GETs with `307` to `<base_url>/blobs/<digest>?<sas>`
    /// (usually [`StorageServer::url`]).
    pub fn redirect_blobs_to(&self, base_url: &str) -> &Self {
        self.lock().redirect_blobs_to = Some(base_url.trim_end_matches('/').to_owned());
        self
    }

    /// Require `Authorization: Bearer <token>` on `/v2/...`; `/token` hands
    /// out `token`.
    pub fn require_bearer(&self, token: &str) -> &Self {
        self.lock().bearer = Some(token.to_owned());
        self
    }

    /// Make `/token` demand `Authorization: Basic` with these credentials
    /// (401 otherwise), as a registry's token service does for logins.
    pub fn token_basic_auth(&self, user: &str, password: &str) -> &Self {
        self.lock().token_basic = Some((user.to_owned(), password.to_owned()));
        self
    }

    /// Ignore `Range` headers (always `200` with the whole blob).
    pub fn ignore_range(&self, on: bool) -> &Self {
        self.lock().ignore_range = on;
        self
    }

    /// Make one of the [`Hostile`] attacks (replacing any earlier one).
    pub fn hostile(&self, attack: Hostile) -> &Self {
        self.lock().hostile = Some(attack);
        self
    }

    /// Removes every fault.
    pub fn clear(&self) -> &Self {
        *self.lock() = FaultState::default();
        self
    }
}

/// Which listener saw a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Listener {
    /// The registry API.
    Registry,
    /// The blob storage that blob GETs may be redirected to.
    Storage,
}

/// One request seen by a listener.
#[derive(Debug, Clone)]
pub struct RequestRecord {
    /// Listener that received it.
    pub listener: Listener,
    /// `GET`, `HEAD`, ...
    pub method: String,
    /// Path and query.
    pub path: String,
    /// Every request header (lower-case names), `Authorization` included.
    pub headers: Vec<(String, String)>,
    /// Response status.
    pub status: u16,
    /// Body bytes sent (or, for a dropped response, sent before the drop).
    pub bytes_served: u64,
}

impl RequestRecord {
    /// The first value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Whether the request carried `Authorization`.
    pub fn has_authorization(&self) -> bool {
        self.header("authorization").is_some()
    }
}

/// A shared request log.
#[derive(Debug, Clone, Default)]
pub struct RequestLog(Arc<Mutex<Vec<RequestRecord>>>);

impl RequestLog {
    fn lock(&self) -> MutexGuard<'_, Vec<RequestRecord>> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// A copy of every record so far, oldest first.
    pub fn all(&self) -> Vec<RequestRecord> {
        self.lock().clone()
    }

    /// Forget all records.
    pub fn clear(&self) {
        self.lock().clear();
    }

    /// How many `method` requests had a path containing `needle`.
    pub fn count(&self, method: &str, needle: &str) -> usize {
        self.lock()
            .iter()
            .filter(|r| r.method == method && r.path.contains(needle))
            .count()
    }

    /// Total body bytes served.
    pub fn bytes_served(&self) -> u64 {
        self.lock().iter().map(|r| r.bytes_served).sum()
    }

    fn push(&self, record: RequestRecord) {
        self.lock().push(record);
    }
}

struct Shared {
    layout: Layout,
    repo: String,
    faults: Faults,
    base_url: String,
    registry_log: RequestLog,
    storage_log: RequestLog,
}

/// The storage listener of a [`FakeRegistry`]: serves `/blobs/<digest>`,
/// rejects any request carrying `Authorization` with `400` (as Azure Blob
/// Storage does with a SAS URL) and records every request.
#[derive(Debug, Clone)]
pub struct StorageServer {
    addr: SocketAddr,
    log: RequestLog,
}

impl StorageServer {
    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// `127.0.0.1:PORT`.
    pub fn host(&self) -> String {
        self.addr.to_string()
    }

    /// Requests seen so far.
    pub fn requests(&self) -> Vec<RequestRecord> {
        self.log.all()
    }

    /// The request log itself (counting and clearing).
    pub fn log(&self) -> &RequestLog {
        &self.log
    }
}

/// A running fake registry; stops when dropped.
pub struct FakeRegistry {
    addr: SocketAddr,
    shared: Arc<Shared>,
    storage: StorageServer,
    _background: crate::serve::Background,
}

impl std::fmt::Debug for FakeRegistry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FakeRegistry")
            .field("addr", &self.addr)
            .field("repo", &self.shared.repo)
            .field("storage", &self.storage.addr)
            .finish_non_exhaustive()
    }
}

impl FakeRegistry {
    /// Serves the OCI layout at `layout` as repository `repo` (may contain
    /// `/`), without faults.
    pub fn start(layout: impl Into<PathBuf>, repo: &str) -> anyhow::Result<FakeRegistry> {
        FakeRegistry::start_with(layout, repo, Faults::default())
    }

    /// Like [`FakeRegistry::start`], with faults set up front.
    pub fn start_with(
        layout: impl Into<PathBuf>,
        repo: &str,
        faults: Faults,
    ) -> anyhow::Result<FakeRegistry> {
        let layout = Layout::open(layout)?;
        let registry_listener = bind_loopback()?;
        let storage_listener = bind_loopback()?;
        let addr = registry_listener.local_addr()?;
        let storage_addr = storage_listener.local_addr()?;
        let shared = Arc::new(Shared {
            layout,
            repo: repo.to_owned(),
            faults,
            base_url: format!("http://{addr}"),
            registry_log: RequestLog::default(),
            storage_log: RequestLog::default(),
        });
        let registry_app = Router::new()
            .fallback(registry_handler)
            .with_state(shared.clone());
        let storage_app = Router::new()
            .fallback(storage_handler)
            .with_state(shared.clone());
        let background = crate::serve::spawn(
            &format!("fake-registry-{}", addr.port()),
            vec![
                (registry_listener, registry_app),
                (storage_listener, storage_app),
            ],
        )?;
        Ok(FakeRegistry {
            addr,
            storage: StorageServer {
                addr: storage_addr,
                log: shared.storage_log.clone(),
            },
            shared,
            _background: background,
        })
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// `127.0.0.1:PORT`.
    pub fn host(&self) -> String {
        self.addr.to_string()
    }

    /// The repository name served.
    pub fn repo(&self) -> &str {
        &self.shared.repo
    }

    /// The layout served.
    pub fn layout(&self) -> &Layout {
        &self.shared.layout
    }

    /// The fault handle (shared with the running server).
    pub fn faults(&self) -> &Faults {
        &self.shared.faults
    }

    /// Requests the registry listener saw so far.
    pub fn requests(&self) -> Vec<RequestRecord> {
        self.shared.registry_log.all()
    }

    /// The registry listener's request log (counting and clearing).
    pub fn log(&self) -> &RequestLog {
        &self.shared.registry_log
    }

    /// The storage listener that blob GETs can be redirected to.
    pub fn storage(&self) -> &StorageServer {
        &self.storage
    }
}

fn bind_loopback() -> anyhow::Result<TcpListener> {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).context("binding 127.0.0.1:0")?;
    listener.set_nonblocking(true)?;
    Ok(listener)
}

/// A response plus the number of body bytes it will send, for the log.
struct Reply {
    response: Response,
    bytes: u64,
}

impl Reply {
    fn new(response: Response, bytes: u64) -> Reply {
        Reply { response, bytes }
    }
}

fn header_pairs(headers: &HeaderMap) -> Vec<(String, String)> {
    headers
        .iter()
        .map(|(n, v)| {
            (
                n.as_str().to_owned(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect()
}

fn record(log: &RequestLog, listener: Listener, request: &Request, reply: Reply) -> Response {
    let path = request.uri().path_and_query().map_or_else(
        || request.uri().path().to_owned(),
        |pq| pq.as_str().to_owned(),
    );
    let bytes = if request.method() == Method::HEAD {
        0
    } else {
        reply.bytes
    };
    log.push(RequestRecord {
        listener,
        method: request.method().as_str().to_owned(),
        path,
        headers: header_pairs(request.headers()),
        status: reply.response.status().as_u16(),
        bytes_served: bytes,
    });
    reply.response
}

async fn registry_handler(State(shared): State<Arc<Shared>>, request: Request) -> Response {
    let reply = route_registry(&shared, &request);
    record(&shared.registry_log, Listener::Registry, &request, reply)
}

async fn storage_handler(State(shared): State<Arc<Shared>>, request: Request) -> Response {
    let reply = route_storage(&shared, &request);
    record(&shared.storage_log, Listener::Storage, &request, reply)
}

fn route_storage(shared: &Shared, request: &Request) -> Reply {
    if request.headers().contains_key(header::AUTHORIZATION) {
        let body = "<?xml version=\"1.0\" encoding=\"utf-8\"?><Error><Code>InvalidAuthenticationInfo</Code><Message>Authentication information is not given in the correct format.</Message></Error>";
        let response = Response::builder()
            .status(StatusCode::BAD_REQUEST)
            .header(header::CONTENT_TYPE, "application/xml")
            .body(Body::from(body))
            .unwrap_or_default();
        return Reply::new(response, body.len() as u64);
    }
    if !(request.method() == Method::GET || request.method() == Method::HEAD) {
        return error_reply(StatusCode::METHOD_NOT_ALLOWED, "UNSUPPORTED", "read-only");
    }
    match request.uri().path().strip_prefix("/blobs/") {
        Some(digest) => serve_blob(shared, digest, request, false),
        None => error_reply(StatusCode::NOT_FOUND, "NOT_FOUND", "no such path"),
    }
}

fn route_registry(shared: &Shared, request: &Request) -> Reply {
    let path = request.uri().path();
    if path == "/token" {
        return token_reply(shared, request);
    }
    let Some(rest) = path.strip_prefix("/v2") else {
        return error_reply(StatusCode::NOT_FOUND, "NOT_FOUND", "no such path");
    };
    let rest = rest.trim_start_matches('/');
    // (repository, kind, reference) for repository endpoints.
    let target = if rest.is_empty() {
        None
    } else if let Some((name, reference)) = rest.rsplit_once("/manifests/") {
        Some((name, "manifests", reference))
    } else if let Some((name, reference)) = rest.rsplit_once("/blobs/") {
        Some((name, "blobs", reference))
    } else if let Some(name) = rest.strip_suffix("/tags/list") {
        Some((name, "tags", ""))
    } else {
        return error_reply(StatusCode::NOT_FOUND, "NOT_FOUND", "no such path");
    };
    if let Some(reply) = check_bearer(shared, request, target.map(|(name, _, _)| name)) {
        return reply;
    }
    if !(request.method() == Method::GET || request.method() == Method::HEAD) {
        return error_reply(StatusCode::METHOD_NOT_ALLOWED, "UNSUPPORTED", "read-only");
    }
    let Some((name, kind, reference)) = target else {
        let response = Response::builder()
            .header("Docker-Distribution-API-Version", "registry/2.0")
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from("{}"))
            .unwrap_or_default();
        return Reply::new(response, 2);
    };
    if name != shared.repo {
        return error_reply(
            StatusCode::NOT_FOUND,
            "NAME_UNKNOWN",
            "repository name not known to registry",
        );
    }
    match kind {
        "manifests" => serve_manifest(shared, reference),
        "blobs" => serve_blob(shared, reference, request, true),
        _ => tags_reply(shared),
    }
}

/// `None` when the request may proceed, else the 401 challenge.
fn check_bearer(shared: &Shared, request: &Request, repo: Option<&str>) -> Option<Reply> {
    let token = shared.faults.lock().bearer.clone()?;
    let expected = format!("Bearer {token}");
    let given = request.headers().get(header::AUTHORIZATION);
    if given.is_some_and(|v| v.as_bytes() == expected.as_bytes()) {
        return None;
    }
    let mut challenge = format!(
        "Bearer realm=\"{}/token\",service=\"{FAKE_SERVICE}\"",
        shared.base_url
    );
    if let Some(repo) = repo {
        challenge.push_str(&format!(",scope=\"repository:{repo}:pull\""));
    }
    let mut reply = error_reply(
        StatusCode::UNAUTHORIZED,
        "UNAUTHORIZED",
        "authentication required",
    );
    if let Ok(value) = challenge.parse() {
        reply
            .response
            .headers_mut()
            .insert(header::WWW_AUTHENTICATE, value);
    }
    Some(reply)
}

fn token_reply(shared: &Shared, request: &Request) -> Reply {
    let faults = shared.faults.lock();
    if let Some((user, password)) = &faults.token_basic {
        use base64::Engine as _;
        let expected = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
        );
        let given = request.headers().get(header::AUTHORIZATION);
        if given.is_none_or(|v| v.as_bytes() != expected.as_bytes()) {
            let mut reply = error_reply(
                StatusCode::UNAUTHORIZED,
                "UNAUTHORIZED",
                "token service: bad credentials",
            );
            reply.response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                axum::http::HeaderValue::from_static("Basic realm=\"fake-token\""),
            );
            return reply;
        }
    }
    let mut token = faults
        .bearer
        .clone()
        .unwrap_or_else(|| "fake-anonymous-token".to_owned());
    match faults.hostile {
        Some(Hostile::HugeToken(size)) => token = "t".repeat(size),
        Some(Hostile::TokenWithLineBreak) => token.push_str("\r\nX-Injected: 1"),
        _ => {}
    }
    drop(faults);
    let body = serde_json::json!({ "token": token, "expires_in": 300 }).to_string();
    json_reply(StatusCode::OK, body)
}

fn tags_reply(shared: &Shared) -> Reply {
    let mut tags: Vec<String> = shared
        .layout
        .refs()
        .unwrap_or_default()
        .iter()
        .filter_map(|d| d.tag().map(str::to_owned))
        .collect();
    tags.extend(shared.faults.lock().manifest_overrides.keys().cloned());
    tags.sort();
    tags.dedup();
    let body = serde_json::json!({ "name": shared.repo, "tags": tags }).to_string();
    json_reply(StatusCode::OK, body)
}

fn json_reply(status: StatusCode, body: String) -> Reply {
    let len = body.len() as u64;
    let response = Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(body))
        .unwrap_or_default();
    Reply::new(response, len)
}

/// A distribution-style error: `{"errors":[{"code","message"}]}`.
fn error_reply(status: StatusCode, code: &str, message: &str) -> Reply {
    let body = serde_json::json!({ "errors": [{ "code": code, "message": message }] }).to_string();
    json_reply(status, body)
}

/// The manifest bytes and media type for a tag or digest, faults applied.
fn serve_manifest(shared: &Shared, reference: &str) -> Reply {
    let faults = shared.faults.lock();
    if faults.hostile == Some(Hostile::EndlessErrorBody) {
        let response = Response::builder()
            .status(StatusCode::INTERNAL_SERVER_ERROR)
            .header(header::CONTENT_TYPE, "application/json")
            .body(endless_body(Duration::ZERO))
            .unwrap_or_default();
        return Reply::new(response, u64::MAX);
    }
    let found = faults
        .manifest_overrides
        .get(reference)
        .cloned()
        .or_else(|| {
            faults
                .manifest_overrides
                .values()
                .find(|(bytes, _)| sha256_digest(bytes) == reference)
                .cloned()
        });
    let found = match found {
        Some(found) => Some(found),
        None => shared
            .layout
            .manifest(reference)
            .ok()
            .map(|(media_type, _, bytes)| (bytes, media_type)),
    };
    let Some((mut bytes, mut media_type)) = found else {
        return error_reply(
            StatusCode::NOT_FOUND,
            "MANIFEST_UNKNOWN",
            "manifest unknown",
        );
    };
    if faults.unknown_media_type {
        media_type = UNKNOWN_MEDIA_TYPE.to_owned();
        if let Ok(serde_json::Value::Object(mut map)) = serde_json::from_slice(&bytes) {
            map.insert("mediaType".into(), UNKNOWN_MEDIA_TYPE.into());
            bytes = serde_json::Value::Object(map).to_string().into_bytes();
        }
    }
    if let Some(size) = faults.oversized_manifest {
        if size > bytes.len() {
            bytes.resize(size, b' ');
        }
    }
    let mut digest = sha256_digest(&bytes);
    if faults.wrong_manifest_digest_header {
        let mut other = bytes.clone();
        other.push(b'\n');
        digest = sha256_digest(&other);
    }
    drop(faults);
    let len = bytes.len() as u64;
    let response = Response::builder()
        .header(header::CONTENT_TYPE, media_type)
        .header(header::CONTENT_LENGTH, len)
        .header("Docker-Content-Digest", &digest)
        .header(header::ETAG, format!("\"{digest}\""))
        .header("Docker-Distribution-API-Version", "registry/2.0")
        .body(Body::from(bytes))
        .unwrap_or_default();
    Reply::new(response, len)
}

/// Parses `bytes=N-` or `bytes=N-M`; `None` for anything else.
fn parse_range(value: &str) -> Option<(u64, Option<u64>)> {
    let spec = value.trim().strip_prefix("bytes=")?;
    let (start, end) = spec.split_once('-')?;
    let start = start.trim().parse().ok()?;
    let end = end.trim();
    if end.is_empty() {
        Some((start, None))
    } else {
        Some((start, Some(end.parse().ok()?)))
    }
}

/// Serves blob `digest`: `registry` enables the registry-only faults
/// (status sequence, redirect).
fn serve_blob(shared: &Shared, digest: &str, request: &Request, registry: bool) -> Reply {
    let Ok(mut data) = shared.layout.blob(digest) else {
        return error_reply(StatusCode::NOT_FOUND, "BLOB_UNKNOWN", "blob unknown");
    };
    let is_get = request.method() == Method::GET;
    let mut faults = shared.faults.lock();
    if registry && is_get {
        let status = faults
            .blob_status
            .get_mut(digest)
            .and_then(VecDeque::pop_front);
        if let Some(status) = status.filter(|s| *s != 200) {
            let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            return error_reply(status, "UNKNOWN", "injected failure");
        }
        if let Some(base) = &faults.redirect_blobs_to {
            let location = format!("{base}/blobs/{digest}?{FAKE_SAS_QUERY}");
            let response = Response::builder()
                .status(StatusCode::TEMPORARY_REDIRECT)
                .header(header::LOCATION, location)
                .body(Body::empty())
                .unwrap_or_default();
            return Reply::new(response, 0);
        }
    }
    if faults.corrupt_blobs.contains(digest) && !data.is_empty() {
        let middle = data.len() / 2;
        data[middle] ^= 0xff;
    }
    let total = data.len() as u64;
    let has_range = request.headers().contains_key(header::RANGE);
    match faults.hostile.clone() {
        Some(Hostile::DripBlobs(interval)) if is_get => {
            let response = Response::builder()
                .header(header::CONTENT_TYPE, "application/octet-stream")
                .header(header::CONTENT_LENGTH, total)
                .body(endless_body(interval))
                .unwrap_or_default();
            return Reply::new(response, total);
        }
        Some(Hostile::EndlessBlobs) if is_get => {
            let response = Response::builder()
                .header(header::CONTENT_TYPE, "application/octet-stream")
                .body(endless_body(Duration::ZERO))
                .unwrap_or_default();
            return Reply::new(response, u64::MAX);
        }
        Some(Hostile::LyingContentLength) if is_get => {
            let half = Bytes::from(data).slice(..usize::try_from(total / 2).unwrap_or(0));
            let sent = half.len() as u64;
            let stream = futures_util::stream::once(async move { Ok::<_, std::io::Error>(half) })
                .chain(futures_util::stream::pending());
            let response = Response::builder()
                .header(header::CONTENT_TYPE, "application/octet-stream")
                .header(header::CONTENT_LENGTH, total * 2)
                .body(Body::from_stream(stream))
                .unwrap_or_default();
            return Reply::new(response, sent);
        }
        Some(Hostile::PartialWithoutRange) if is_get && !has_range => {
            let response = Response::builder()
                .status(StatusCode::PARTIAL_CONTENT)
                .header(header::CONTENT_TYPE, "application/octet-stream")
                .header(
                    header::CONTENT_RANGE,
                    format!("bytes 0-{}/{total}", total.saturating_sub(1)),
                )
                .header(header::CONTENT_LENGTH, total)
                .body(Body::from(data))
                .unwrap_or_default();
            return Reply::new(response, total);
        }
        _ => {}
    }
    let range = if faults.ignore_range {
        None
    } else {
        request
            .headers()
            .get(header::RANGE)
            .and_then(|v| v.to_str().ok())
            .and_then(parse_range)
    };
    let mut builder = Response::builder()
        .header(header::CONTENT_TYPE, "application/octet-stream")
        .header("Docker-Content-Digest", digest)
        .header(header::ETAG, format!("\"{digest}\""))
        .header(header::ACCEPT_RANGES, "bytes");
    let (start, end) = match range {
        Some((start, end)) => {
            let end = end.unwrap_or(u64::MAX).min(total.saturating_sub(1));
            if start >= total || start > end {
                let response = builder
                    .status(StatusCode::RANGE_NOT_SATISFIABLE)
                    .header(header::CONTENT_RANGE, format!("bytes */{total}"))
                    .body(Body::empty())
                    .unwrap_or_default();
                return Reply::new(response, 0);
            }
            builder = builder.status(StatusCode::PARTIAL_CONTENT).header(
                header::CONTENT_RANGE,
                format!("bytes {start}-{end}/{total}"),
            );
            (start, end + 1)
        }
        None => (0, total),
    };
    builder = builder.header(header::CONTENT_LENGTH, end - start);
    if !is_get {
        return Reply::new(builder.body(Body::empty()).unwrap_or_default(), 0);
    }
    // Indices are within `data`, whose length fits in usize.
    let body =
        data[usize::try_from(start).unwrap_or(0)..usize::try_from(end).unwrap_or(0)].to_vec();
    let drop_at = match faults.drop_after.get_mut(digest) {
        Some(rule) if start < rule.after && rule.after < end => {
            let after = rule.after;
            if let Some(remaining) = &mut rule.remaining {
                *remaining = remaining.saturating_sub(1);
                if *remaining == 0 {
                    faults.drop_after.remove(digest);
                }
            }
            Some(after - start)
        }
        _ => None,
    };
    drop(faults);
    match drop_at {
        None => {
            let len = body.len() as u64;
            Reply::new(builder.body(Body::from(body)).unwrap_or_default(), len)
        }
        Some(sent) => {
            let chunk = Bytes::from(body).slice(..usize::try_from(sent).unwrap_or(0));
            Reply::new(
                builder.body(truncated_body(chunk)).unwrap_or_default(),
                sent,
            )
        }
    }
}

/// A body that never ends: 64 KiB chunks as fast as the client reads, or (with a non-zero
/// `interval`) one byte every `interval`.
fn endless_body(interval: Duration) -> Body {
    let chunk = if interval.is_zero() {
        Bytes::from(vec![b'x'; 64 * 1024])
    } else {
        Bytes::from_static(b"x")
    };
    let stream = futures_util::stream::repeat(chunk).then(move |chunk| async move {
        if !interval.is_zero() {
            tokio::time::sleep(interval).await;
        }
        Ok::<Bytes, std::io::Error>(chunk)
    });
    Body::from_stream(stream)
}

/// A body that sends `chunk`, waits for it to be flushed, then fails, so
/// hyper closes the connection short of the announced `Content-Length`.
fn truncated_body(chunk: Bytes) -> Body {
    let stream = futures_util::stream::unfold(0u8, move |step| {
        let chunk = chunk.clone();
        async move {
            match step {
                0 => Some((Ok::<Bytes, std::io::Error>(chunk), 1)),
                1 => {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    Some((
                        Err(std::io::Error::new(
                            std::io::ErrorKind::ConnectionReset,
                            "injected connection drop",
                        )),
                        2,
                    ))
                }
                _ => None,
            }
        }
    });
    Body::from_stream(stream)
}
