//! The fault proxy as a process, for benchmarks: `acrpull-proxy UPSTREAM_URL [BYTES_PER_SECOND]`
//! proxies a registry on a free loopback port, capping each blob response at the given rate
//! (a link whose connections are capped, as blob storage caps each one). It prints
//! `127.0.0.1:PORT` on stdout and serves until its stdin closes.

use std::io::Read as _;

use acrpull_testenv::proxy::FaultProxy;
use anyhow::Context as _;

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let upstream = args
        .next()
        .context("usage: acrpull-proxy UPSTREAM_URL [BYTES_PER_SECOND]")?;
    let rate = args
        .next()
        .map(|r| r.parse::<u64>())
        .transpose()
        .context("BYTES_PER_SECOND must be a number")?;
    let proxy = FaultProxy::start(&upstream)?;
    proxy.faults().rate_per_response(rate);
    println!("{}", proxy.host());
    // Serve until whoever started us closes our stdin.
    let mut sink = Vec::new();
    let _ = std::io::stdin().read_to_end(&mut sink);
    eprintln!("acrpull-proxy: {} blob bytes served", proxy.blob_bytes());
    Ok(())
}
