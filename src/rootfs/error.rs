//! Errors of the layer applier.
//!
//! Two classes matter to the caller: *integrity* errors say the layer content is unsafe or does
//! not match what the image promised (bad digest, `..`, bad whiteout, bomb limits, malformed tar),
//! so retrying the same bytes cannot help; everything else is a local I/O problem. Both leave a
//! partly written tree that the caller must discard.

use std::io;
use std::path::PathBuf;

use crate::digest::Digest;

/// Why applying a layer (or generating a runtime config) failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The root directory could not be opened.
    #[error("cannot open root directory `{path}`")]
    OpenRoot {
        /// The root path given to [`super::Applier::new`].
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// A file system operation on a path inside the root failed.
    #[error("cannot {action} `{path}` in the root filesystem")]
    Io {
        /// What was being done (`create`, `remove`, `set the mode of`, ...).
        action: &'static str,
        /// The path inside the root, as named by the layer.
        path: String,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// Reading the compressed blob failed (the blob source itself reported an error).
    #[error("cannot read the layer blob")]
    ReadBlob(#[source] io::Error),
    /// The decompressed stream is not a valid tar archive, or decompression failed.
    #[error("the layer is corrupt (bad compression or tar structure)")]
    CorruptLayer(#[source] io::Error),
    /// The uncompressed stream does not hash to the diff_id from the image config.
    #[error("diff_id mismatch: expected {expected}, got {actual}")]
    DiffIdMismatch {
        /// The diff_id from the image config.
        expected: Digest,
        /// The digest of the uncompressed stream actually read.
        actual: Digest,
    },
    /// An entry name or link target is unsafe (`..`, NUL, over-long component).
    #[error("unsafe path `{path}` in layer: {reason}")]
    UnsafePath {
        /// The name as found in the layer.
        path: String,
        /// Why it is refused.
        reason: &'static str,
    },
    /// A whiteout entry with an invalid target (`.wh.`, `.wh..`, `.wh...`) or a `.wh.` parent.
    #[error("invalid whiteout `{path}` in layer")]
    InvalidWhiteout {
        /// The entry name.
        path: String,
    },
    /// The layer tries to replace the root directory with something else.
    #[error("layer entry `{path}` would change the root directory into a {kind}")]
    RootTypeChange {
        /// The entry name.
        path: String,
        /// The entry type.
        kind: &'static str,
    },
    /// An entry type the applier does not support (sparse files, sockets, unknown flags).
    #[error("unsupported entry `{path}`: {what}")]
    Unsupported {
        /// The entry name.
        path: String,
        /// What is unsupported.
        what: String,
    },
    /// A hardlink whose target is missing, a directory, or not reachable inside the root.
    #[error("invalid hardlink `{path}` -> `{target}`: {reason}")]
    InvalidHardlink {
        /// The entry name.
        path: String,
        /// The link target as named in the layer.
        target: String,
        /// Why the link cannot be made.
        reason: &'static str,
    },
    /// A parent component of an entry exists but is not a directory.
    #[error("a parent of `{path}` exists and is not a directory")]
    ParentNotDirectory {
        /// The entry name.
        path: String,
    },
    /// Resolving a path met too many symlinks (a loop).
    #[error("too many levels of symbolic links resolving `{path}`")]
    SymlinkLoop {
        /// The entry name.
        path: String,
    },
    /// The extension headers (PAX, GNU long name/link) of one entry exceed the limit.
    #[error("tar extension headers larger than {limit} bytes")]
    ExtensionHeaderTooLarge {
        /// The configured limit.
        limit: u64,
    },
    /// The uncompressed layer is larger than the limit (decompression bomb).
    #[error("layer is larger than {limit} bytes uncompressed")]
    TooLarge {
        /// The configured limit.
        limit: u64,
    },
    /// The layer has more entries than the limit.
    #[error("layer has more than {limit} entries")]
    TooManyEntries {
        /// The configured limit.
        limit: u64,
    },
    /// A header field has a value the applier refuses (owner id, device number, time).
    #[error("entry `{path}` has an invalid {field}")]
    InvalidHeader {
        /// The entry name.
        path: String,
        /// The field.
        field: &'static str,
    },
    /// The image config cannot be turned into a runtime config.
    #[error("cannot build the runtime config: {reason}")]
    RuntimeConfig {
        /// What is wrong.
        reason: String,
    },
}

impl Error {
    /// True when the layer content itself is at fault (unsafe, invalid, or not the promised
    /// bytes), as opposed to a local I/O failure.
    pub fn is_integrity(&self) -> bool {
        !matches!(
            self,
            Error::OpenRoot { .. } | Error::Io { .. } | Error::ReadBlob(_)
        )
    }

    pub(crate) fn io(action: &'static str, path: &[u8], source: io::Error) -> Error {
        Error::Io {
            action,
            path: display(path),
            source,
        }
    }
}

/// A lossy, printable form of a layer path.
pub(crate) fn display(path: &[u8]) -> String {
    let text = String::from_utf8_lossy(path);
    if text.is_empty() {
        "/".to_string()
    } else {
        text.into_owned()
    }
}
