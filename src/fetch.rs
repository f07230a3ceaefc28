//! Downloading one blob to a file: verified while it streams, resumed with `Range` when the
//! body breaks, and renamed into place only after the digest and size match.

use std::path::{Path, PathBuf};

use futures_util::StreamExt;
use tokio::io::{AsyncSeekExt, AsyncWriteExt};

use crate::digest::Digester;
use crate::error::{Error, Result};
use crate::manifest::Descriptor;
use crate::registry::retry::RetryPolicy;
use crate::report::Reporter;
use crate::source::ImageSource;

/// Download `descriptor` from `source` to `final_path` (atomically). Returns the number of
/// bytes transferred (more than the size if a server made us restart).
pub async fn fetch_blob(
    source: &dyn ImageSource,
    descriptor: &Descriptor,
    final_path: &Path,
    reporter: &dyn Reporter,
    retry: &RetryPolicy,
) -> Result<u64> {
    let digest = &descriptor.digest;
    let dir = final_path.parent().unwrap_or(Path::new("."));
    tokio::fs::create_dir_all(dir).await.map_err(io(dir))?;
    let temp_path = dir.join(format!(".tmp-{}-{:08x}", digest.hex(), fastrand::u32(..)));
    let result = download(source, descriptor, &temp_path, reporter, retry).await;
    match result {
        Ok(transferred) => {
            tokio::fs::rename(&temp_path, final_path)
                .await
                .map_err(io(final_path))?;
            Ok(transferred)
        }
        Err(e) => {
            let _ = tokio::fs::remove_file(&temp_path).await;
            Err(e)
        }
    }
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> Error {
    let path: PathBuf = path.to_path_buf();
    move |source| Error::Io { path, source }
}

async fn download(
    source: &dyn ImageSource,
    descriptor: &Descriptor,
    temp_path: &Path,
    reporter: &dyn Reporter,
    retry: &RetryPolicy,
) -> Result<u64> {
    let digest = &descriptor.digest;
    let size = descriptor.size;
    let file = tokio::fs::File::create(temp_path)
        .await
        .map_err(io(temp_path))?;
    let mut writer = tokio::io::BufWriter::with_capacity(1 << 20, file);
    let mut digester = Digester::new(digest.algorithm());
    let mut written: u64 = 0;
    let mut transferred: u64 = 0;
    let mut attempts: u32 = 0;
    loop {
        attempts += 1;
        let body = source.open_blob(digest, written).await?;
        if body.offset != written {
            // The source ignored our range: start this blob over.
            tracing::debug!(%digest, offset = written, "range ignored, restarting blob");
            writer.flush().await.map_err(io(temp_path))?;
            let file = writer.get_mut();
            file.set_len(0).await.map_err(io(temp_path))?;
            file.seek(std::io::SeekFrom::Start(0))
                .await
                .map_err(io(temp_path))?;
            digester = Digester::new(digest.algorithm());
            written = 0;
        }
        if let Some(length) = body.content_length {
            // Only the bytes themselves are held against the descriptor (below): a wrong
            // Content-Length is the server's problem, and a short body is resumed.
            if written + length != size {
                tracing::debug!(%digest, offset = written, length, size, "Content-Length disagrees with the descriptor");
            }
        }
        let mut stream = body.stream;
        let mut failure = None;
        while let Some(chunk) = stream.next().await {
            match chunk {
                Ok(bytes) => {
                    if written + bytes.len() as u64 > size {
                        return Err(too_long(descriptor, written + bytes.len() as u64));
                    }
                    digester.update(&bytes);
                    writer.write_all(&bytes).await.map_err(io(temp_path))?;
                    written += bytes.len() as u64;
                    transferred += bytes.len() as u64;
                    reporter.on_blob_progress(digest, bytes.len() as u64);
                }
                Err(e) => {
                    failure = Some(e);
                    break;
                }
            }
        }
        // Every promised byte arrived: the digest decides, whatever the connection did after.
        if written == size {
            break;
        }
        if attempts > retry.retries {
            return Err(Error::Registry(crate::registry::Error::Interrupted {
                digest: digest.clone(),
                source_name: source.describe(),
                received: written,
                expected: size,
                attempts,
                source: failure,
            }));
        }
        let reason = match &failure {
            Some(e) => format!("stream failed: {e}"),
            None => "stream ended early".to_string(),
        };
        tracing::info!(%digest, offset = written, %reason, "resuming blob");
        reporter.on_blob_retry(digest, written, &reason);
        tokio::time::sleep(retry.delay(attempts, None)).await;
    }
    writer.flush().await.map_err(io(temp_path))?;
    writer.get_ref().sync_all().await.map_err(io(temp_path))?;
    let actual = digester.finish();
    if &actual != digest {
        return Err(Error::Integrity {
            what: "blob",
            digest: digest.clone(),
            expected: digest.to_string(),
            actual: actual.to_string(),
        });
    }
    Ok(transferred)
}

fn too_long(descriptor: &Descriptor, at_least: u64) -> Error {
    Error::Integrity {
        what: "blob",
        digest: descriptor.digest.clone(),
        expected: format!("{} bytes", descriptor.size),
        actual: format!("at least {at_least} bytes"),
    }
}
