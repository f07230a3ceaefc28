//! Everything acrpull prints on standard output goes through here, so that a reader who leaves
//! early (`acrpull man | head`) ends the command quietly while every other broken pipe (a
//! registry or token endpoint hanging up mid-request) stays the error it is. The distinction is
//! made where stdout is written, never by searching an error's cause chain for `BrokenPipe`.

use std::io::Write as _;

/// Standard output was closed by its reader: the one failure that exits 0.
#[derive(Debug, thiserror::Error)]
#[error("standard output was closed by its reader")]
pub struct StdoutClosed;

/// Whether `error` is (only) a closed standard output.
pub fn is_closed(error: &anyhow::Error) -> bool {
    error.downcast_ref::<StdoutClosed>().is_some()
}

/// Write `bytes` to standard output and flush.
pub fn write(bytes: &[u8]) -> anyhow::Result<()> {
    let mut stdout = std::io::stdout().lock();
    stdout
        .write_all(bytes)
        .and_then(|()| stdout.flush())
        .map_err(|error| {
            if error.kind() == std::io::ErrorKind::BrokenPipe {
                anyhow::Error::new(StdoutClosed)
            } else {
                anyhow::Error::new(error).context("writing to standard output")
            }
        })
}

/// Write `value` as pretty JSON and a newline.
pub fn json_pretty(value: &impl serde::Serialize) -> anyhow::Result<()> {
    let mut bytes = serde_json::to_vec_pretty(value)?;
    bytes.push(b'\n');
    write(&bytes)
}

/// Write `value` as one line of JSON.
pub fn json_line(value: &impl serde::Serialize) -> anyhow::Result<()> {
    let mut bytes = serde_json::to_vec(value)?;
    bytes.push(b'\n');
    write(&bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_closed_stdout_counts_as_closed() {
        assert!(is_closed(&anyhow::Error::new(StdoutClosed)));
        // A broken pipe anywhere else (a registry or token endpoint hanging up, a helper
        // process gone) is an error like any other, however deep in the chain.
        let network = acrpull::Error::Io {
            path: "upload".into(),
            source: std::io::ErrorKind::BrokenPipe.into(),
        };
        let error = anyhow::Error::new(network).context("pushing");
        assert!(!is_closed(&error));
        assert_eq!(
            super::super::errors::class_of(&error),
            acrpull::ErrorClass::Other
        );
    }
}
