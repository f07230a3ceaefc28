//! Reading bodies into memory, always with a cap, and cutting excerpts of them for messages.
//!
//! A server decides how long a body is; we decide how much of it we hold. Every body read into
//! memory goes through [`read_capped`] (the whole body or an error) or [`read_excerpt`] (the start
//! of an error body, the rest left unread). Caps follow containerd and go-containerregistry:
//! bodies that are only ever small get 64 KiB to 1 MiB, never "whatever the server sends".

use bytes::Bytes;
use futures_util::{Stream, StreamExt};

use super::pace::Pace;

/// The most of an error body that is read (the rest is dropped with the connection).
pub const ERROR_BODY_LIMIT: u64 = 64 * 1024;
/// The largest token response accepted from a token endpoint, IMDS, App Service, Entra ID or the
/// ACR exchange. Real ones are a few KiB (a JWT with its claims).
pub const TOKEN_BODY_LIMIT: u64 = 1024 * 1024;
/// How many characters of an error body a message quotes.
const EXCERPT_CHARS: usize = 300;

/// Why a capped read failed.
#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    /// The body is longer than the cap (announced by `Content-Length` or found while reading).
    #[error("the response body is larger than the {limit}-byte limit")]
    TooLarge {
        /// The cap.
        limit: u64,
    },
    /// The connection failed, or the body fell below the pace, while reading.
    #[error("reading the response body failed")]
    Transport(#[source] std::io::Error),
}

/// A response's body as a stream of `io::Result`s (reqwest errors without their URL), held to
/// `pace`.
pub fn body_stream(
    response: reqwest::Response,
    pace: Pace,
) -> impl Stream<Item = Result<Bytes, std::io::Error>> + Send + Unpin {
    pace.apply(
        response
            .bytes_stream()
            .map(|chunk| chunk.map_err(|error| std::io::Error::other(error.without_url())))
            .boxed(),
    )
}

/// The whole body, or [`BodyError::TooLarge`] as soon as it is known to exceed `limit` bytes
/// (before reading when `Content-Length` says so; never more than `limit` bytes are held).
/// The body must keep `pace`.
pub async fn read_capped(
    response: reqwest::Response,
    limit: u64,
    pace: Pace,
) -> Result<Bytes, BodyError> {
    if response
        .content_length()
        .is_some_and(|length| length > limit)
    {
        return Err(BodyError::TooLarge { limit });
    }
    let mut stream = body_stream(response, pace);
    let mut buffer = Vec::new();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(BodyError::Transport)?;
        if buffer.len() as u64 + chunk.len() as u64 > limit {
            return Err(BodyError::TooLarge { limit });
        }
        buffer.extend_from_slice(&chunk);
    }
    Ok(Bytes::from(buffer))
}

/// At most the first [`ERROR_BODY_LIMIT`] bytes of a body, for describing an error. A body that
/// breaks off or falls below `pace` yields what arrived; the rest is never read.
pub async fn read_prefix(response: reqwest::Response, pace: Pace) -> Bytes {
    let mut stream = body_stream(response, pace);
    let mut buffer = Vec::new();
    while let Some(Ok(chunk)) = stream.next().await {
        let room = ERROR_BODY_LIMIT as usize - buffer.len();
        buffer.extend_from_slice(&chunk[..chunk.len().min(room)]);
        if buffer.len() as u64 >= ERROR_BODY_LIMIT {
            break;
        }
    }
    Bytes::from(buffer)
}

/// An excerpt of an error body for a message: see [`excerpt`]. `None` for an empty body.
pub async fn read_excerpt(response: reqwest::Response, pace: Pace) -> Option<String> {
    let body = read_prefix(response, pace).await;
    let text = excerpt(&String::from_utf8_lossy(&body));
    (!text.is_empty()).then_some(text)
}

/// A body for a message: on one line (whitespace runs become one space), at most 300 characters,
/// `…` where it was cut.
pub fn excerpt(body: &str) -> String {
    let mut one_line = String::new();
    for (index, word) in body.split_whitespace().enumerate() {
        if index > 0 {
            one_line.push(' ');
        }
        one_line.push_str(word);
        if one_line.len() > EXCERPT_CHARS * 4 {
            break;
        }
    }
    if one_line.chars().count() > EXCERPT_CHARS {
        let cut: String = one_line.chars().take(EXCERPT_CHARS).collect();
        format!("{cut}…")
    } else {
        one_line
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn excerpts_are_one_short_line() {
        assert_eq!(excerpt("  a\n\tb  c \n"), "a b c");
        let long = "é".repeat(1000);
        let cut = excerpt(&long);
        assert_eq!(cut.chars().count(), EXCERPT_CHARS + 1);
        assert!(cut.ends_with('…'));
        assert_eq!(excerpt(""), "");
    }
}
