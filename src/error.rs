//! The library's top-level error: one variant per layer, and the exit-code class the binary
//! maps it to.

use std::path::PathBuf;

/// What went wrong in a pull.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A bad command-line value.
    #[error("{0}")]
    Usage(String),
    /// A bad image reference.
    #[error(transparent)]
    Reference(#[from] crate::reference::ReferenceError),
    /// No usable credential could be formed (e.g. a bad Azure identity configuration).
    #[error(transparent)]
    Credential(#[from] crate::credential::Error),
    /// The mirror configuration is unusable or blocks the registry.
    #[error(transparent)]
    Mirror(#[from] crate::mirror::ConfigError),
    /// Talking to the registry (or reading the source layout) failed.
    #[error(transparent)]
    Registry(#[from] crate::registry::Error),
    /// Discovering or writing referrers failed.
    #[error(transparent)]
    Referrers(#[from] crate::referrers::Error),
    /// The index has no image for the requested platform.
    #[error(
        "{reference} has no image for platform {wanted}; {}",
        describe_available(available)
    )]
    PlatformNotFound {
        /// The reference.
        reference: String,
        /// What was asked.
        wanted: String,
        /// What the index offers.
        available: Vec<String>,
    },
    /// A foreign (non-distributable) layer that the source does not hold; acrpull never
    /// downloads from the URLs its descriptor lists.
    #[error("layer {digest} is a foreign (non-distributable) layer that the source does not hold; acrpull does not download it from the URLs its descriptor lists{}", if hosts.is_empty() { String::new() } else { format!(" ({})", hosts.join(", ")) })]
    ForeignLayerMissing {
        /// The layer.
        digest: crate::Digest,
        /// The hosts of its `urls` (never contacted).
        hosts: Vec<String>,
    },
    /// A blob failed verification.
    #[error("{what} {digest} failed verification: expected {expected}, got {actual}")]
    Integrity {
        /// e.g. "layer".
        what: &'static str,
        /// The digest.
        digest: crate::Digest,
        /// Expected value.
        expected: String,
        /// Actual value.
        actual: String,
    },
    /// The image uses something acrpull cannot handle (e.g. an unknown layer media type).
    #[error("{0}")]
    Unsupported(String),
    /// Applying a layer to the root filesystem failed.
    #[error("applying a layer to the root filesystem failed")]
    Rootfs(#[from] crate::rootfs::Error),
    /// The destination cannot be used or written.
    #[error(transparent)]
    Destination(#[from] crate::layout::DestinationError),
    /// The HTTP client could not be built (a CA file or client certificate that cannot be
    /// read or is not PEM).
    #[error("setting up HTTPS")]
    Client(#[from] crate::http::ClientError),
    /// Writing a downloaded blob failed.
    #[error("writing {path} failed")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The shared blob cache could not be used.
    #[error("blob cache: {0}")]
    Cache(#[from] crate::cache::CacheError),
    /// acrpull itself failed: a task panicked, or code broke one of its own rules. Never
    /// caused by the image, the registry or the machine.
    #[error(transparent)]
    Internal(#[from] Internal),
    /// Signature verification refused the image, or could not be done (`--verify`).
    #[error(transparent)]
    Verify(#[from] crate::verify::Error),
    /// The pull was asked to stop (SIGINT, SIGTERM): nothing was put at the destination.
    #[error("stopped by {0}")]
    Stopped(crate::cancel::StopSignal),
}

/// A failure inside acrpull (a bug), kept apart from what the image, the registry or the
/// machine did, so the binary can say "please report it" for these and only these.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Internal {
    /// A background task panicked (its message, when it had one).
    #[error("internal error: a background task ({task}) panicked{}", detail.as_ref().map(|d| format!(": {d}")).unwrap_or_default())]
    Panicked {
        /// Which task.
        task: &'static str,
        /// The panic message.
        detail: Option<String>,
    },
    /// A background task was cancelled before it finished (its runtime shut down).
    #[error("internal error: a background task ({task}) was cancelled")]
    Cancelled {
        /// Which task.
        task: &'static str,
    },
    /// A task stopped before its partner was done with it (the partner's own error, when it
    /// has one, is reported instead).
    #[error("internal error: a background task ({task}) stopped early")]
    Stopped {
        /// Which task.
        task: &'static str,
    },
    /// A rule of acrpull's own code did not hold (a programming error).
    #[error("internal error: {0}")]
    Broken(&'static str),
}

impl Internal {
    /// What a failed `join` of the task `task` means.
    pub fn join(task: &'static str, error: tokio::task::JoinError) -> Self {
        if error.is_panic() {
            let payload = error.into_panic();
            let detail = payload
                .downcast_ref::<&str>()
                .map(|s| (*s).to_string())
                .or_else(|| payload.downcast_ref::<String>().cloned());
            Internal::Panicked { task, detail }
        } else {
            Internal::Cancelled { task }
        }
    }
}

/// The platforms an index offers, for [`Error::PlatformNotFound`]: never an empty list.
fn describe_available(available: &[String]) -> String {
    if available.is_empty() {
        "it holds no image that names a platform (only attestations, artifacts, or nothing)".into()
    } else {
        format!("it has: {}", available.join(", "))
    }
}

/// The classes of failure, each with its own exit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorClass {
    /// Anything else (I/O, destination): exit 1.
    Other,
    /// Bad command line or reference: exit 2.
    Usage,
    /// Authentication or permission: exit 3.
    Auth,
    /// Repository, tag, blob or platform not found: exit 4.
    NotFound,
    /// Network failure after retries: exit 5.
    Network,
    /// Digest/size mismatch or unsafe content: exit 6.
    Integrity,
    /// A signature or policy refused the image, or it has no signature under `--verify`:
    /// exit 7.
    Verification,
    /// Stopped by SIGINT (Ctrl-C): exit 130, as a shell reports a process killed by it.
    Interrupted,
    /// Stopped by SIGTERM: exit 143.
    Terminated,
}

impl ErrorClass {
    /// The process exit code.
    pub fn exit_code(self) -> u8 {
        match self {
            ErrorClass::Other => 1,
            ErrorClass::Usage => 2,
            ErrorClass::Auth => 3,
            ErrorClass::NotFound => 4,
            ErrorClass::Network => 5,
            ErrorClass::Integrity => 6,
            ErrorClass::Verification => 7,
            ErrorClass::Interrupted => 130,
            ErrorClass::Terminated => 143,
        }
    }
}

impl Error {
    /// Which exit-code class this error belongs to.
    pub fn class(&self) -> ErrorClass {
        match self {
            Error::Reference(_) | Error::Usage(_) => ErrorClass::Usage,
            Error::Credential(_) => ErrorClass::Auth,
            Error::Mirror(_) => ErrorClass::Usage,
            Error::PlatformNotFound { .. } | Error::ForeignLayerMissing { .. } => {
                ErrorClass::NotFound
            }
            Error::Integrity { .. } => ErrorClass::Integrity,
            Error::Registry(e) => registry_class(e),
            Error::Referrers(crate::referrers::Error::Registry(e)) => registry_class(e),
            // A listing a source cannot bound or a referrer that is not one: unusable content.
            Error::Referrers(crate::referrers::Error::Contended { .. }) => ErrorClass::Other,
            Error::Referrers(_) => ErrorClass::Integrity,
            Error::Unsupported(_) => ErrorClass::Integrity,
            Error::Rootfs(e) if e.is_integrity() => ErrorClass::Integrity,
            Error::Rootfs(_) => ErrorClass::Other,
            Error::Destination(_)
            | Error::Io { .. }
            | Error::Cache(_)
            | Error::Client(_)
            | Error::Internal(_) => ErrorClass::Other,
            Error::Verify(crate::verify::Error::Usage(_)) => ErrorClass::Usage,
            Error::Verify(e) => match e.registry() {
                Some(registry) => registry_class(registry),
                None => ErrorClass::Verification,
            },
            Error::Stopped(crate::cancel::StopSignal::Interrupt) => ErrorClass::Interrupted,
            Error::Stopped(crate::cancel::StopSignal::Terminate) => ErrorClass::Terminated,
        }
    }

    /// Whether a disk filled up (`ENOSPC`, or `EDQUOT`: a quota) somewhere in the cause chain.
    pub fn is_out_of_space(&self) -> bool {
        is_out_of_space(self)
    }
}

/// Whether `error` or one of its causes is an I/O error saying the disk (or a quota) is full.
pub fn is_out_of_space(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut current = Some(error);
    while let Some(error) = current {
        let full = error
            .downcast_ref::<std::io::Error>()
            .and_then(std::io::Error::raw_os_error)
            .is_some_and(|code| code == libc::ENOSPC || code == libc::EDQUOT);
        if full {
            return true;
        }
        current = error.source();
    }
    false
}

fn registry_class(error: &crate::registry::Error) -> ErrorClass {
    use crate::registry::Error as R;
    match error {
        R::NotFound { .. } => ErrorClass::NotFound,
        R::Unauthorized { .. } | R::Token { .. } | R::Azure { .. } => ErrorClass::Auth,
        R::Transport { .. }
        | R::Body { .. }
        | R::Protocol { .. }
        | R::Tls { .. }
        | R::Redirect { .. }
        | R::Interrupted { .. } => ErrorClass::Network,
        R::Status { status, .. } if *status >= 500 || *status == 429 => ErrorClass::Network,
        R::Integrity { .. }
        | R::AmbiguousManifest { .. }
        | R::ManifestTooLarge { .. }
        | R::Unsupported { .. }
        | R::Schema1 { .. } => ErrorClass::Integrity,
        _ => ErrorClass::Other,
    }
}

impl From<crate::cancel::StopSignal> for Error {
    fn from(signal: crate::cancel::StopSignal) -> Self {
        Error::Stopped(signal)
    }
}

impl From<crate::source::ChildError> for Error {
    fn from(error: crate::source::ChildError) -> Self {
        match error {
            crate::source::ChildError::Source(e) => Error::Registry(e),
            crate::source::ChildError::Mismatch {
                digest,
                expected,
                actual,
            } => Error::Integrity {
                what: "manifest",
                digest,
                expected,
                actual,
            },
        }
    }
}

/// Result alias.
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_panicking_task_is_an_internal_error_with_its_message() {
        let joined = tokio::spawn(async { panic!("the applier tripped") }).await;
        let error = Error::from(Internal::join("layer applier", joined.unwrap_err()));
        assert_eq!(error.class(), ErrorClass::Other);
        assert_eq!(
            error.to_string(),
            "internal error: a background task (layer applier) panicked: the applier tripped"
        );
        let handle = tokio::spawn(std::future::pending::<()>());
        handle.abort();
        let cancelled = Internal::join("cache lock", handle.await.unwrap_err());
        assert!(matches!(
            cancelled,
            Internal::Cancelled { task: "cache lock" }
        ));
    }
}
