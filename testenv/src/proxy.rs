//! A fault-injecting HTTP proxy in front of a real registry (the `docker-registry` process),
//! for resilience tests: cut blob bodies after N bytes, stall them, answer bursts of 5xx or
//! 429 with `Retry-After`, ignore `Range`, corrupt a byte, lie about `Content-Length`, redirect
//! blobs to a "storage" listener that rejects any `Authorization` header (as Azure Blob Storage
//! does for ACR redirects), and refuse bearer tokens as expired. It counts every body byte it
//! sends, so tests can check that resumed downloads fetch no byte twice.
//!
//! Runs on its own thread and runtime (tests may block on a CLI child meanwhile) and binds
//! 127.0.0.1 only.

use std::collections::VecDeque;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::Response;
use axum::Router;
use futures_util::StreamExt as _;

/// One scripted answer to a blob GET.
#[derive(Debug, Clone)]
pub enum BlobFault {
    /// Serve this one normally.
    Pass,
    /// Close the connection after this many body bytes of the response.
    DropAfter(u64),
    /// Send this many bytes, then stall for the duration before going on.
    StallAfter(u64, Duration),
    /// Answer this status (with `Retry-After` if given) instead of the blob.
    Status(u16, Option<String>),
    /// Flip one byte in the middle of the body.
    CorruptByte,
    /// Send a `Content-Length` this many bytes larger than the body, then close.
    ShortBody(u64),
    /// Answer `401` with `error="invalid_token"` as if the bearer token had expired.
    ExpiredToken,
}

#[derive(Debug, Default)]
struct FaultState {
    /// Faults for the next blob GETs, in order (one each).
    blob_faults: VecDeque<BlobFault>,
    ignore_range: bool,
    redirect_blobs: bool,
    /// Storage requests still to refuse with 403 (an expired signature).
    storage_refusals: u32,
    /// Bytes per second for each blob response (a link whose connections are capped, as
    /// blob storage caps each one).
    rate: Option<u64>,
}

/// Shared fault switches; setters apply from the next request.
#[derive(Debug, Clone, Default)]
pub struct ProxyFaults(Arc<Mutex<FaultState>>);

impl ProxyFaults {
    fn lock(&self) -> MutexGuard<'_, FaultState> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Queue faults for the next blob GETs (on the registry listener), one per request.
    pub fn next_blob_gets(&self, faults: impl IntoIterator<Item = BlobFault>) -> &Self {
        self.lock().blob_faults.extend(faults);
        self
    }

    /// Ignore `Range` request headers (strip them before forwarding).
    pub fn ignore_range(&self, on: bool) -> &Self {
        self.lock().ignore_range = on;
        self
    }

    /// Refuse the next `count` storage requests with `403`, as blob storage does when a
    /// redirect's signature has expired.
    pub fn expire_storage(&self, count: u32) -> &Self {
        self.lock().storage_refusals = count;
        self
    }

    /// Cap every blob response at `bytes_per_second` (each connection on its own).
    pub fn rate_per_response(&self, bytes_per_second: Option<u64>) -> &Self {
        self.lock().rate = bytes_per_second;
        self
    }

    /// Answer blob GETs with `307` to the storage listener.
    pub fn redirect_blobs(&self, on: bool) -> &Self {
        self.lock().redirect_blobs = on;
        self
    }
}

/// What the proxy saw.
#[derive(Debug, Clone)]
pub struct ProxyRecord {
    /// `registry` or `storage`.
    pub listener: &'static str,
    /// Method.
    pub method: String,
    /// Path and query.
    pub path: String,
    /// Whether `Authorization` was present.
    pub authorization: bool,
    /// The `Range` header, if any.
    pub range: Option<String>,
    /// Status answered.
    pub status: u16,
}

struct Shared {
    upstream: String,
    storage_authorization: Option<String>,
    storage_url: String,
    faults: ProxyFaults,
    http: reqwest::Client,
    log: Mutex<Vec<ProxyRecord>>,
    blob_bytes: AtomicU64,
    /// Blob responses whose body is being sent, and the most there were at once.
    blob_bodies: AtomicU64,
    most_blob_bodies: AtomicU64,
}

/// One blob response body being sent (counted in [`Shared::blob_bodies`] until dropped).
struct BodyInFlight(Arc<Shared>);

impl BodyInFlight {
    fn enter(shared: &Arc<Shared>) -> Self {
        let now = shared.blob_bodies.fetch_add(1, Ordering::SeqCst) + 1;
        shared.most_blob_bodies.fetch_max(now, Ordering::SeqCst);
        Self(shared.clone())
    }
}

impl Drop for BodyInFlight {
    fn drop(&mut self) {
        self.0.blob_bodies.fetch_sub(1, Ordering::SeqCst);
    }
}

/// The running proxy; stops on drop.
pub struct FaultProxy {
    addr: SocketAddr,
    storage_addr: SocketAddr,
    shared: Arc<Shared>,
    background: crate::serve::Background,
}

impl FaultProxy {
    /// Proxy `upstream` (e.g. `http://127.0.0.1:5000`).
    pub fn start(upstream: &str) -> anyhow::Result<FaultProxy> {
        FaultProxy::start_with(upstream, None)
    }

    /// Like [`FaultProxy::start`]; the storage listener fetches from the upstream with
    /// `storage_authorization` (its own credentials, as blob storage has a SAS of its own).
    pub fn start_with(
        upstream: &str,
        storage_authorization: Option<String>,
    ) -> anyhow::Result<FaultProxy> {
        let listener = std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?;
        let storage = std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?;
        listener.set_nonblocking(true)?;
        storage.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let storage_addr = storage.local_addr()?;
        let shared = Arc::new(Shared {
            upstream: upstream.trim_end_matches('/').to_string(),
            storage_authorization,
            storage_url: format!("http://{storage_addr}"),
            faults: ProxyFaults::default(),
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .no_proxy()
                .build()?,
            log: Mutex::new(Vec::new()),
            blob_bytes: AtomicU64::new(0),
            blob_bodies: AtomicU64::new(0),
            most_blob_bodies: AtomicU64::new(0),
        });
        let registry_app = Router::new()
            .fallback(registry_handler)
            .with_state(shared.clone());
        let storage_app = Router::new()
            .fallback(storage_handler)
            .with_state(shared.clone());
        let background = crate::serve::spawn(
            &format!("fault-proxy-{}", addr.port()),
            vec![(listener, registry_app), (storage, storage_app)],
        )?;
        Ok(FaultProxy {
            addr,
            storage_addr,
            shared,
            background,
        })
    }

    /// `127.0.0.1:PORT`, to use as the registry host in image references.
    pub fn host(&self) -> String {
        self.addr.to_string()
    }

    /// The fault switches.
    pub fn faults(&self) -> &ProxyFaults {
        &self.shared.faults
    }

    /// Connections accepted on the registry listener so far (a TLS attempt, which it
    /// answers in plain HTTP, counts as one).
    pub fn connections(&self) -> u64 {
        self.background.accepted(0)
    }

    /// Every request so far.
    pub fn requests(&self) -> Vec<ProxyRecord> {
        self.shared
            .log
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Blob body bytes sent so far (both listeners).
    pub fn blob_bytes(&self) -> u64 {
        self.shared.blob_bytes.load(Ordering::SeqCst)
    }

    /// The most blob response bodies that were being sent at once (from the registry
    /// listener and the storage one together).
    pub fn most_blob_bodies_at_once(&self) -> u64 {
        self.shared.most_blob_bodies.load(Ordering::SeqCst)
    }

    /// `127.0.0.1:PORT` of the storage listener.
    pub fn storage_host(&self) -> String {
        self.storage_addr.to_string()
    }
}

fn record(shared: &Shared, listener: &'static str, request: &Request, status: u16) {
    let headers = request.headers();
    shared
        .log
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .push(ProxyRecord {
            listener,
            method: request.method().to_string(),
            path: request
                .uri()
                .path_and_query()
                .map(ToString::to_string)
                .unwrap_or_default(),
            authorization: headers.contains_key("authorization"),
            range: headers
                .get("range")
                .and_then(|v| v.to_str().ok())
                .map(str::to_string),
            status,
        });
}

fn is_blob_get(request: &Request) -> bool {
    request.method() == axum::http::Method::GET && request.uri().path().contains("/blobs/sha256:")
}

fn plain(status: StatusCode, headers: &[(&'static str, String)]) -> Response {
    let mut response = Response::new(Body::empty());
    *response.status_mut() = status;
    for (name, value) in headers {
        if let Ok(value) = HeaderValue::from_str(value) {
            response.headers_mut().insert(*name, value);
        }
    }
    response
}

async fn registry_handler(State(shared): State<Arc<Shared>>, request: Request) -> Response {
    let blob = is_blob_get(&request);
    let (fault, ignore_range, redirect) = {
        let mut faults = shared.faults.lock();
        let fault = if blob {
            faults.blob_faults.pop_front()
        } else {
            None
        };
        (fault, faults.ignore_range, faults.redirect_blobs)
    };
    if blob && redirect {
        let location = format!(
            "{}{}?se=2099-01-01&sig=fake-sas",
            shared.storage_url,
            request.uri().path()
        );
        record(&shared, "registry", &request, 307);
        return plain(StatusCode::TEMPORARY_REDIRECT, &[("location", location)]);
    }
    match &fault {
        Some(BlobFault::Status(status, retry_after)) => {
            record(&shared, "registry", &request, *status);
            let mut headers = Vec::new();
            if let Some(after) = retry_after {
                headers.push(("retry-after", after.clone()));
            }
            return plain(
                StatusCode::from_u16(*status).unwrap_or(StatusCode::SERVICE_UNAVAILABLE),
                &headers,
            );
        }
        Some(BlobFault::ExpiredToken) if request.headers().contains_key("authorization") => {
            // Reuse the upstream's challenge, marked as an expired token.
            let challenge = upstream_challenge(&shared).await.unwrap_or_default();
            record(&shared, "registry", &request, 401);
            let value = if challenge.is_empty() {
                "Bearer error=\"invalid_token\"".to_string()
            } else {
                format!("{challenge},error=\"invalid_token\"")
            };
            return plain(StatusCode::UNAUTHORIZED, &[("www-authenticate", value)]);
        }
        _ => {}
    }
    forward(&shared, "registry", request, ignore_range, fault).await
}

async fn storage_handler(State(shared): State<Arc<Shared>>, request: Request) -> Response {
    if request.headers().contains_key("authorization") {
        // Azure Blob Storage refuses requests carrying the registry's bearer token.
        record(&shared, "storage", &request, 400);
        return plain(StatusCode::BAD_REQUEST, &[]);
    }
    let expired = {
        let mut faults = shared.faults.lock();
        let expired = faults.storage_refusals > 0;
        faults.storage_refusals = faults.storage_refusals.saturating_sub(1);
        expired
    };
    if expired {
        record(&shared, "storage", &request, 403);
        return plain(StatusCode::FORBIDDEN, &[]);
    }
    forward(&shared, "storage", request, false, None).await
}

async fn upstream_challenge(shared: &Shared) -> Option<String> {
    let response = shared
        .http
        .get(format!("{}/v2/", shared.upstream))
        .send()
        .await
        .ok()?;
    response
        .headers()
        .get("www-authenticate")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

async fn forward(
    shared: &Arc<Shared>,
    listener: &'static str,
    request: Request,
    ignore_range: bool,
    fault: Option<BlobFault>,
) -> Response {
    let blob = is_blob_get(&request);
    let path = request
        .uri()
        .path_and_query()
        .map(|p| p.path().to_string())
        .unwrap_or_default();
    let query = request.uri().query().map(str::to_string);
    let url = match (listener, query) {
        ("registry", Some(q)) => format!("{}{path}?{q}", shared.upstream),
        _ => format!("{}{path}", shared.upstream),
    };
    let mut headers = HeaderMap::new();
    for (name, value) in request.headers() {
        // The Host header goes through, so the registry's upload Locations name the proxy.
        let skip = ignore_range && name == "range";
        if !skip {
            headers.insert(name.clone(), value.clone());
        }
    }
    if listener == "storage" {
        if let Some(value) = shared
            .storage_authorization
            .as_deref()
            .and_then(|v| HeaderValue::from_str(v).ok())
        {
            headers.insert("authorization", value);
        }
    }
    let method = request.method().clone();
    let (parts, body) = request.into_parts();
    let request = Request::from_parts(parts, Body::empty());
    let upstream = shared
        .http
        .request(method, &url)
        .headers(headers)
        .body(reqwest::Body::wrap_stream(body.into_data_stream()))
        .send()
        .await;
    let upstream = match upstream {
        Ok(response) => response,
        Err(_) => {
            record(shared, listener, &request, 502);
            return plain(StatusCode::BAD_GATEWAY, &[]);
        }
    };
    let status = upstream.status();
    record(shared, listener, &request, status.as_u16());
    let mut response = Response::new(Body::empty());
    *response.status_mut() = status;
    for (name, value) in upstream.headers() {
        if name != "transfer-encoding" && name != "connection" {
            response.headers_mut().insert(name.clone(), value.clone());
        }
    }
    if let Some(BlobFault::ShortBody(extra)) = &fault {
        if let Some(length) = upstream.content_length() {
            if let Ok(value) = HeaderValue::from_str(&(length + extra).to_string()) {
                response.headers_mut().insert("content-length", value);
            }
        }
    }
    let counter = shared.clone();
    let body = upstream.bytes_stream();
    let fault = if blob { fault } else { None };
    let rate = if blob {
        shared.faults.lock().rate
    } else {
        None
    };
    let in_flight = blob.then(|| BodyInFlight::enter(shared));
    // The count ends when the body does (sent, or dropped with its connection).
    let stream = faulty_stream(body, fault, counter, blob).inspect(move |_| {
        let _ = &in_flight;
    });
    *response.body_mut() = match rate {
        Some(rate) => Body::from_stream(throttled(stream, rate)),
        None => Body::from_stream(stream),
    };
    response
}

/// `stream` at no more than `rate` bytes per second, in pieces of a twentieth of a second
/// each: the upstream registry on loopback hands over chunks of hundreds of KiB, and a chunk
/// held back whole would arrive as one jump seconds later (a test that waits for a layer's
/// first bytes would then see none, then all of it).
fn throttled(
    stream: impl futures_util::Stream<Item = std::io::Result<Bytes>> + Send + 'static,
    rate: u64,
) -> impl futures_util::Stream<Item = std::io::Result<Bytes>> + Send + 'static {
    let rate = rate.max(1);
    let piece = (rate / 20).max(1) as usize;
    let start = tokio::time::Instant::now();
    let state = (Box::pin(stream), Bytes::new(), 0u64);
    futures_util::stream::unfold(state, move |(mut stream, mut held, sent)| async move {
        if held.is_empty() {
            match stream.next().await? {
                Ok(bytes) => held = bytes,
                Err(error) => return Some((Err(error), (stream, held, sent))),
            }
        }
        let out = held.split_to(held.len().min(piece));
        let sent = sent + out.len() as u64;
        let due = Duration::from_secs_f64(sent as f64 / rate as f64);
        tokio::time::sleep_until(start + due).await;
        Some((Ok(out), (stream, held, sent)))
    })
}

/// Where a faulty body stream is.
enum Phase {
    Running,
    /// The next item is an injected error, then the end.
    Fail(&'static str),
    Done,
}

fn faulty_stream(
    body: impl futures_util::Stream<Item = reqwest::Result<Bytes>> + Send + 'static,
    fault: Option<BlobFault>,
    shared: Arc<Shared>,
    count: bool,
) -> impl futures_util::Stream<Item = std::io::Result<Bytes>> + Send + 'static {
    let state = (Box::pin(body), 0u64, fault, Phase::Running);
    futures_util::stream::unfold(state, move |(mut body, sent, fault, phase)| {
        let shared = shared.clone();
        async move {
            match phase {
                Phase::Done => return None,
                Phase::Fail(why) => {
                    // Let the bytes already sent leave the socket before the reset, so the
                    // byte count matches what the client could receive.
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    let error = std::io::Error::new(std::io::ErrorKind::ConnectionReset, why);
                    return Some((Err(error), (body, sent, None, Phase::Done)));
                }
                Phase::Running => {}
            }
            let mut chunk = match body.next().await {
                None => {
                    return match fault {
                        Some(BlobFault::ShortBody(_)) => Some((
                            Ok(Bytes::new()),
                            (body, sent, None, Phase::Fail("injected short body")),
                        )),
                        _ => None,
                    }
                }
                Some(Err(e)) => {
                    return Some((
                        Err(std::io::Error::other(e)),
                        (body, sent, None, Phase::Done),
                    ))
                }
                Some(Ok(chunk)) => chunk.to_vec(),
            };
            let end = sent + chunk.len() as u64;
            let (next_fault, next_phase) = match fault {
                Some(BlobFault::DropAfter(limit)) if end >= limit => {
                    chunk.truncate(usize::try_from(limit - sent).unwrap_or(0));
                    (None, Phase::Fail("injected connection drop"))
                }
                Some(BlobFault::StallAfter(limit, pause)) if end >= limit => {
                    tokio::time::sleep(pause).await;
                    (None, Phase::Running)
                }
                Some(BlobFault::CorruptByte) if !chunk.is_empty() => {
                    let middle = chunk.len() / 2;
                    chunk[middle] ^= 0xff;
                    (None, Phase::Running)
                }
                other => (other, Phase::Running),
            };
            if count {
                shared
                    .blob_bytes
                    .fetch_add(chunk.len() as u64, Ordering::SeqCst);
            }
            let sent = sent + chunk.len() as u64;
            Some((Ok(Bytes::from(chunk)), (body, sent, next_fault, next_phase)))
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One large upstream chunk comes out in small pieces, paced from the start: the first
    /// bytes arrive at once, not when the whole chunk is due.
    #[tokio::test]
    async fn a_throttled_large_chunk_arrives_in_paced_pieces() {
        let rate = 200_000; // 10,000 bytes per twentieth of a second
        let upstream = futures_util::stream::iter([Ok(Bytes::from(vec![7u8; 100_000]))]);
        let start = tokio::time::Instant::now();
        let pieces: Vec<_> = throttled(upstream, rate)
            .map(|piece| (piece.unwrap().len(), start.elapsed()))
            .collect()
            .await;
        assert_eq!(pieces.len(), 10, "{pieces:?}");
        assert!(pieces.iter().all(|(len, _)| *len == 10_000), "{pieces:?}");
        // Whole, the chunk would be due at 0.5 s; its first piece is due at 0.05 s.
        assert!(pieces[0].1 < Duration::from_millis(300), "{pieces:?}");
        assert!(pieces[9].1 >= Duration::from_millis(500), "{pieces:?}");
    }
}
