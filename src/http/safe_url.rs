//! A URL that prints without its secrets: no user, no password, no query, no fragment.
//!
//! Blob storage redirects carry their signature in the query (`?sv=..&sig=..`, an Azure SAS);
//! token endpoints carry scopes there, identity endpoints the identity asked for. None of it
//! belongs in an error or a log line, so every URL that reaches one goes through this type
//! (as uv's `DisplaySafeUrl` does for credentials).

use std::fmt;

/// A URL for messages. `Display` shows `scheme://host[:port]/path`, followed by `?…` when a
/// query was dropped, so a reader knows there was one.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct SafeUrl(url::Url);

impl SafeUrl {
    /// The URL with its secrets (the full URL, for sending; never for printing).
    pub fn expose(&self) -> &url::Url {
        &self.0
    }
}

impl From<&url::Url> for SafeUrl {
    fn from(url: &url::Url) -> Self {
        SafeUrl(url.clone())
    }
}

impl From<url::Url> for SafeUrl {
    fn from(url: url::Url) -> Self {
        SafeUrl(url)
    }
}

impl fmt::Display for SafeUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let url = &self.0;
        write!(f, "{}://", url.scheme())?;
        if let Some(host) = url.host_str() {
            f.write_str(host)?;
        }
        if let Some(port) = url.port() {
            write!(f, ":{port}")?;
        }
        f.write_str(url.path())?;
        if url.query().is_some() {
            f.write_str("?…")?;
        }
        Ok(())
    }
}

impl fmt::Debug for SafeUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SafeUrl({self})")
    }
}

/// `url` as [`SafeUrl`] prints it.
pub fn redact_url(url: &url::Url) -> String {
    SafeUrl::from(url).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_userinfo_query_or_fragment() {
        let url = url::Url::parse(
            "https://user:pass@acct.blob.core.windows.net:8443/c/blob?sv=1&sig=SECRET#frag",
        )
        .unwrap();
        let shown = redact_url(&url);
        assert_eq!(shown, "https://acct.blob.core.windows.net:8443/c/blob?…");
        assert_eq!(
            format!("{:?}", SafeUrl::from(&url)),
            format!("SafeUrl({shown})")
        );
        let plain = url::Url::parse("http://[::1]:5000/v2/").unwrap();
        assert_eq!(redact_url(&plain), "http://[::1]:5000/v2/");
    }
}
