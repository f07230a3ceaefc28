//! A link shaper: a TCP proxy on loopback that makes a registry look far away, for benchmarks
//! of real links. It adds a round-trip time (half of it each way, and one more round trip to
//! set up a connection, as TCP's handshake costs) and caps bandwidth twice: in total, shared by
//! every connection (the link), and per connection (as blob storage serves each one). It works
//! on bytes, not HTTP, so TLS and HTTP/2 go through unchanged.
//!
//! Each direction of a connection is a paced reader (it reads a chunk, then waits until both
//! caps allow it, which also slows the sender through TCP's flow control) feeding a delay line
//! (each chunk is written one-way-delay after it was paced). Runs on its own thread and
//! runtime, binds 127.0.0.1 only, and stops (with its connections) when dropped.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context as _;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

/// Bytes read per chunk: small enough that connections sharing the link interleave finely.
const CHUNK: usize = 32 * 1024;
/// Chunks in the delay line of one direction (with `CHUNK`, 8 MiB: more than one round trip
/// of a 1 Gbit/s link at 80 ms, so the line never limits the rate).
const LINE: usize = 256;

/// How far behind a pacer may fall and still catch up: longer idle time is not credited, so
/// bursts stay short.
const CATCH_UP: Duration = Duration::from_millis(5);

/// What the link looks like.
#[derive(Debug, Clone, Copy, Default)]
pub struct Link {
    /// Round-trip time.
    pub rtt: Duration,
    /// Bytes per second shared by all connections, per direction (None: no cap).
    pub total_rate: Option<u64>,
    /// Bytes per second of each connection, per direction (None: no cap).
    pub connection_rate: Option<u64>,
}

/// When the next byte may leave at `rate`: a virtual clock, so short sleeps add up exactly.
#[derive(Debug)]
struct Pacer {
    rate: u64,
    next: Instant,
}

impl Pacer {
    fn new(rate: u64) -> Self {
        Pacer {
            rate: rate.max(1),
            next: Instant::now(),
        }
    }

    /// Reserve `bytes` and return when they have gone through. A reader that woke up late
    /// (tokio's timer has millisecond ticks, and one chunk lasts about a millisecond at
    /// 25 MiB/s) is still owed the time it lost, up to [`CATCH_UP`]: starting the next chunk at
    /// `now` instead threw that time away at every chunk, and one connection reached half its
    /// rate (12.4 MB/s of 26.2 through a 20 ms link, measured with curl).
    fn reserve(&mut self, bytes: usize, now: Instant) -> Instant {
        let start = self.next.max(now.checked_sub(CATCH_UP).unwrap_or(now));
        self.next = start + Duration::from_secs_f64(bytes as f64 / self.rate as f64);
        self.next
    }
}

/// One direction's shared pacer (the link), if it has a total cap.
type SharedPacer = Option<Arc<Mutex<Pacer>>>;

/// The running shaper; stops on drop.
pub struct Shaper {
    addr: SocketAddr,
    shutdown: Option<oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Shaper {
    /// Shape the TCP service at `upstream` (e.g. the registry's `127.0.0.1:5000`).
    pub fn start(upstream: SocketAddr, link: Link) -> anyhow::Result<Shaper> {
        let listener = std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let (shutdown, stopped) = oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name(format!("shaper-{}", addr.port()))
            .spawn(move || {
                let Ok(runtime) = tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(2)
                    .enable_all()
                    .build()
                else {
                    return;
                };
                runtime.block_on(async move {
                    let Ok(listener) = TcpListener::from_std(listener) else {
                        return;
                    };
                    tokio::select! {
                        () = accept_loop(listener, upstream, link) => {}
                        _ = stopped => {}
                    }
                });
                // Dropping the runtime ends every connection.
            })
            .context("spawning the shaper thread")?;
        Ok(Shaper {
            addr,
            shutdown: Some(shutdown),
            thread: Some(thread),
        })
    }

    /// `127.0.0.1:PORT`, to use as the registry host in image references.
    pub fn host(&self) -> String {
        self.addr.to_string()
    }
}

impl Drop for Shaper {
    fn drop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

async fn accept_loop(listener: TcpListener, upstream: SocketAddr, link: Link) {
    let shared = |rate: Option<u64>| rate.map(|rate| Arc::new(Mutex::new(Pacer::new(rate))));
    let (up, down) = (shared(link.total_rate), shared(link.total_rate));
    while let Ok((client, _)) = listener.accept().await {
        let (up, down) = (up.clone(), down.clone());
        tokio::spawn(async move {
            let accepted = Instant::now();
            let Ok(server) = TcpStream::connect(upstream).await else {
                return;
            };
            let _ = client.set_nodelay(true);
            let _ = server.set_nodelay(true);
            let (client_read, client_write) = client.into_split();
            let (server_read, server_write) = server.into_split();
            // The handshake: nothing reaches the server before one round trip has passed.
            let opened = accepted + link.rtt;
            let requests = direction(client_read, server_write, link, up, opened);
            let responses = direction(server_read, client_write, link, down, accepted);
            tokio::join!(requests, responses);
        });
    }
}

/// Copy one direction through the pacers and the delay line; shuts the writer down at EOF.
async fn direction(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    link: Link,
    shared: SharedPacer,
    not_before: Instant,
) {
    let one_way = link.rtt / 2;
    let (line, mut arriving) = mpsc::channel::<(Instant, Vec<u8>)>(LINE);
    let reader = async move {
        let mut own = link.connection_rate.map(Pacer::new);
        loop {
            let mut buffer = vec![0; CHUNK];
            let read = match from.read(&mut buffer).await {
                Ok(0) | Err(_) => break,
                Ok(read) => read,
            };
            buffer.truncate(read);
            let now = Instant::now();
            let mut sent = now;
            if let Some(pacer) = &shared {
                let done = pacer
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .reserve(read, now);
                sent = sent.max(done);
            }
            if let Some(pacer) = &mut own {
                sent = sent.max(pacer.reserve(read, now));
            }
            tokio::time::sleep_until(sent).await;
            if line
                .send((sent.max(not_before) + one_way, buffer))
                .await
                .is_err()
            {
                break;
            }
        }
    };
    let writer = async move {
        while let Some((due, bytes)) = arriving.recv().await {
            tokio::time::sleep_until(due).await;
            if to.write_all(&bytes).await.is_err() {
                return;
            }
        }
        let _ = to.shutdown().await;
    };
    tokio::join!(reader, writer);
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{BufRead as _, BufReader, Read as _, Write as _};

    /// Answers every line with the same line, on every connection.
    fn echo_server() -> SocketAddr {
        let listener = std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        let addr = listener.local_addr().unwrap();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                std::thread::spawn(move || {
                    let mut writer = stream.try_clone().unwrap();
                    for line in BufReader::new(stream).lines() {
                        let Ok(line) = line else { return };
                        if writeln!(writer, "{line}").is_err() {
                            return;
                        }
                    }
                });
            }
        });
        addr
    }

    /// Sends `size` bytes to every connection, then closes it.
    fn blob_server(size: usize) -> SocketAddr {
        let listener = std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        let addr = listener.local_addr().unwrap();
        std::thread::spawn(move || {
            for mut stream in listener.incoming().flatten() {
                std::thread::spawn(move || {
                    let _ = stream.write_all(&vec![7u8; size]);
                });
            }
        });
        addr
    }

    /// Download `size` bytes over `connections` connections at once through a shaper with
    /// `link` in front of a blob server; returns how long it took.
    #[test]
    fn a_pacer_woken_late_keeps_its_rate_without_bursting_after_idle_time() {
        let rate = 1_000_000; // 1 byte per microsecond
        let mut pacer = Pacer::new(rate);
        let begin = Instant::now();
        let mut now = begin;
        // 100 chunks of 1 ms each, the reader waking 0.7 ms late every time.
        for _ in 0..100 {
            let due = pacer.reserve(1000, now);
            now = due + Duration::from_micros(700);
        }
        let elapsed = now - begin;
        assert!(
            elapsed < Duration::from_millis(105),
            "late wake-ups cost the rate: {elapsed:?} for 100 ms of data"
        );
        // After a long pause only CATCH_UP is credited.
        let later = now + Duration::from_secs(1);
        let due = pacer.reserve(100_000, later);
        assert!(
            due >= later + Duration::from_millis(100) - CATCH_UP,
            "{:?}",
            due - later
        );
    }

    fn timed_downloads(link: Link, connections: usize, size: usize) -> Duration {
        let shaper = Shaper::start(blob_server(size), link).unwrap();
        let started = std::time::Instant::now();
        let downloads: Vec<_> = (0..connections)
            .map(|_| {
                let host = shaper.host();
                std::thread::spawn(move || {
                    let mut stream = std::net::TcpStream::connect(host).unwrap();
                    let mut received = Vec::new();
                    stream.read_to_end(&mut received).unwrap();
                    received.len()
                })
            })
            .collect();
        for download in downloads {
            assert_eq!(download.join().unwrap(), size);
        }
        started.elapsed()
    }

    #[test]
    fn every_round_trip_takes_the_rtt() {
        let rtt = Duration::from_millis(100);
        let link = Link {
            rtt,
            ..Link::default()
        };
        let shaper = Shaper::start(echo_server(), link).unwrap();
        let started = std::time::Instant::now();
        let stream = std::net::TcpStream::connect(shaper.host()).unwrap();
        let mut writer = stream.try_clone().unwrap();
        let mut lines = BufReader::new(stream).lines();
        for round in 0..4 {
            writeln!(writer, "ping {round}").unwrap();
            assert_eq!(lines.next().unwrap().unwrap(), format!("ping {round}"));
        }
        let elapsed = started.elapsed();
        // The handshake plus four exchanges: never less; generous above for a loaded machine.
        assert!(elapsed >= 5 * rtt, "5 round trips took only {elapsed:?}");
        assert!(elapsed < 5 * rtt + Duration::from_secs(5), "{elapsed:?}");
    }

    #[test]
    fn the_total_cap_is_shared_by_all_connections() {
        let size = 1 << 20;
        let link = Link {
            rtt: Duration::ZERO,
            total_rate: Some(2 << 20),
            connection_rate: None,
        };
        let elapsed = timed_downloads(link, 3, size);
        // 3 MiB at 2 MiB/s in total, however many connections share it.
        assert!(
            elapsed >= Duration::from_millis(1400),
            "took only {elapsed:?}"
        );
        assert!(elapsed < Duration::from_secs(10), "{elapsed:?}");
    }

    #[test]
    fn each_connection_is_capped_on_its_own() {
        let size = 1 << 20;
        let link = Link {
            rtt: Duration::ZERO,
            total_rate: None,
            connection_rate: Some(2 << 20),
        };
        let elapsed = timed_downloads(link, 2, size);
        // Each 1 MiB at 2 MiB/s on its own connection: at least half a second.
        assert!(
            elapsed >= Duration::from_millis(450),
            "took only {elapsed:?}"
        );
        assert!(elapsed < Duration::from_secs(10), "{elapsed:?}");
    }
}
