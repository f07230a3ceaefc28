//! The link shaper as a process, for benchmarks of real links: `acrpull-shaper
//! UPSTREAM_HOST:PORT RTT_MS [TOTAL_BYTES_PER_SECOND [CONNECTION_BYTES_PER_SECOND]]` proxies a TCP service (a registry, plain or TLS) on a free loopback port with the given
//! round-trip time and bandwidth caps (0 or absent: no cap). It prints `127.0.0.1:PORT` on
//! stdout and serves until its stdin closes.

use std::io::Read as _;
use std::time::Duration;

use acrpull_testenv::shaper::{Link, Shaper};
use anyhow::Context as _;

const USAGE: &str = "usage: acrpull-shaper UPSTREAM_HOST:PORT RTT_MS \
     [TOTAL_BYTES_PER_SECOND [CONNECTION_BYTES_PER_SECOND]]";

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let upstream = args
        .first()
        .context(USAGE)?
        .parse()
        .context("UPSTREAM_HOST:PORT must be an address such as 127.0.0.1:5000")?;
    let number = |index: usize| -> anyhow::Result<u64> {
        args.get(index)
            .map_or(Ok(0), |value| value.parse())
            .with_context(|| format!("argument {} must be a number; {USAGE}", index + 1))
    };
    let rate = |value: u64| (value > 0).then_some(value);
    let link = Link {
        rtt: Duration::from_millis(number(1)?),
        total_rate: rate(number(2)?),
        connection_rate: rate(number(3)?),
    };
    let shaper = Shaper::start(upstream, link)?;
    println!("{}", shaper.host());
    // Serve until whoever started us closes our stdin.
    let mut sink = Vec::new();
    let _ = std::io::stdin().read_to_end(&mut sink);
    Ok(())
}
