//! Progress for people: one line per event on stderr. Library users get the events through
//! [`acrpull::Reporter`]; only the binary decides how they look.

use std::collections::HashMap;
use std::io::Write as _;
use std::sync::Mutex;

use acrpull::report::{BlobKind, Reporter};
use acrpull::Digest;

/// Prints one line per resolved image, blob and applied layer to stderr.
#[derive(Debug, Default)]
pub struct PlainReporter {
    sizes: Mutex<HashMap<Digest, (BlobKind, u64)>>,
}

fn short(digest: &Digest) -> &str {
    &digest.hex()[..12]
}

/// Bytes as a short human string.
pub fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

fn line(text: &str) {
    let mut stderr = std::io::stderr().lock();
    let _ = writeln!(stderr, "{text}");
}

impl Reporter for PlainReporter {
    fn on_resolved(&self, reference: &str, digest: &Digest, platform: Option<&str>) {
        let platform = platform.map(|p| format!(" ({p})")).unwrap_or_default();
        line(&format!("{reference}: resolved to {digest}{platform}"));
    }

    fn on_blob_start(&self, digest: &Digest, kind: BlobKind, size: u64, cached: bool) {
        if let Ok(mut sizes) = self.sizes.lock() {
            sizes.insert(digest.clone(), (kind, size));
        }
        if cached {
            let kind = format!("{kind:?}").to_lowercase();
            line(&format!("{} {kind}: exists", short(digest)));
        }
    }

    fn on_blob_retry(&self, digest: &Digest, offset: u64, reason: &str) {
        line(&format!(
            "{}: {reason}; resuming at {}",
            short(digest),
            human_bytes(offset)
        ));
    }

    fn on_blob_done(&self, digest: &Digest) {
        let entry = self.sizes.lock().ok().and_then(|s| s.get(digest).copied());
        if let Some((kind, size)) = entry {
            let kind = format!("{kind:?}").to_lowercase();
            line(&format!(
                "{} {kind}: downloaded {}",
                short(digest),
                human_bytes(size)
            ));
        }
    }

    fn on_layer_applied(&self, digest: &Digest, index: usize, count: usize) {
        line(&format!(
            "{}: applied layer {}/{count}",
            short(digest),
            index + 1
        ));
    }

    fn on_warning(&self, message: &str) {
        line(&format!("warning: {message}"));
    }
}
