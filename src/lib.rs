//! acrpull: pull container images without Docker.
//!
//! The library resolves an image reference (a registry or a local OCI layout), downloads and
//! verifies its blobs while they stream, and writes an OCI image layout or a root filesystem.
//! Credentials come from the command line, Docker/containers config files or Azure identities
//! (managed identity, workload identity, service principal) exchanged for ACR tokens.
//!
//! The entry point is [`pull::pull`].

pub mod archive;
pub mod auth;
pub mod azure;
pub mod credential;
pub mod digest;
pub mod error;
pub mod fetch;
pub mod layout;
pub mod manifest;
pub mod media_type;
pub mod mirror;
pub mod platform;
pub mod pull;
pub mod push;
pub mod reference;
pub mod registry;
pub mod report;
pub mod rootfs;
pub mod secret;
pub mod source;
pub mod unpack;

pub use digest::Digest;
pub use error::{Error, ErrorClass};
pub use platform::Platform;
pub use pull::{pull, OutputFormat, PlatformChoice, PullOptions, PullOutcome, SourceSpec};
pub use reference::Reference;
pub use report::{NoopReporter, Reporter};
