//! Errors from Azure identity sources and the ACR token exchange.
//!
//! Messages say which endpoint answered what, because the usual failures (no identity on the VM,
//! several identities and none chosen, no AcrPull role) are configuration problems the user fixes
//! from the message alone (docs/azure-auth.md 5, items 1-3). Response bodies are included only for
//! error responses, which carry descriptions and trace ids, never tokens.

/// Errors from Azure identity sources and the ACR exchange.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Placeholder kept for callers written against the first stub.
    #[error("Azure identity is not available: {0}")]
    Unavailable(String),

    /// The first request to the managed identity endpoint could not connect: not on Azure, or no
    /// managed identity enabled.
    #[error(
        "no managed identity endpoint reachable at {endpoint} \
         (is this an Azure VM with a managed identity enabled?)"
    )]
    EndpointUnreachable {
        /// The endpoint tried (no query string).
        endpoint: String,
        /// The connection failure.
        #[source]
        source: reqwest::Error,
    },

    /// IMDS answered, but this machine has no managed identity (none assigned, none chosen).
    #[error("{endpoint} has no managed identity for this machine: {description}")]
    NoIdentity {
        /// The endpoint (no query string).
        endpoint: String,
        /// IMDS `error_description`.
        description: String,
    },

    /// A request failed below HTTP (connection reset, timeout, TLS).
    #[error("request to {url} failed")]
    Transport {
        /// The URL (no query string).
        url: String,
        /// The transport failure.
        #[source]
        source: reqwest::Error,
    },

    /// IMDS answered that several user-assigned identities exist and none was chosen.
    #[error(
        "{endpoint} has several user-assigned managed identities and none was chosen: {description}; \
         pass `--client-id <id>` (or set AZURE_CLIENT_ID) to choose one"
    )]
    MultipleIdentities {
        /// The endpoint (no query string).
        endpoint: String,
        /// IMDS `error_description`.
        description: String,
    },

    /// The chosen managed identity is not assigned to this machine (or does not exist).
    #[error(
        "managed identity {identity} is not assigned to this machine ({endpoint}): {description}"
    )]
    IdentityNotAssigned {
        /// The selector, e.g. `client_id=...`.
        identity: String,
        /// The endpoint (no query string).
        endpoint: String,
        /// The endpoint's `error_description`.
        description: String,
    },

    /// An identity endpoint refused the request with a non-retryable status.
    #[error("{endpoint} refused the token request with HTTP {status}: {description}")]
    Refused {
        /// The endpoint (no query string).
        endpoint: String,
        /// HTTP status code.
        status: u16,
        /// `error: error_description` from the body, or the body itself (shortened).
        description: String,
    },

    /// A retryable status persisted through every retry.
    #[error("{endpoint} still answered HTTP {status} after {attempts} attempts: {description}")]
    RetriesExhausted {
        /// The endpoint (no query string).
        endpoint: String,
        /// How many requests were sent.
        attempts: u32,
        /// The last HTTP status code.
        status: u16,
        /// The last error description or body (shortened).
        description: String,
    },

    /// A success response that could not be understood.
    #[error("unexpected response from {endpoint}: {detail}")]
    InvalidResponse {
        /// The endpoint (no query string).
        endpoint: String,
        /// What was wrong (never includes token values).
        detail: String,
    },

    /// The environment names an identity but is incomplete or malformed.
    #[error("invalid Azure identity configuration: {detail}")]
    Configuration {
        /// What is wrong, naming the variable.
        detail: String,
    },

    /// The Azure Arc agent named a key file acrpull will not read (outside the agent's token
    /// directory, not a regular `.key` file, a symbolic link, or over 4 KiB).
    #[error("refusing the Azure Arc key file {path}: {reason}")]
    ArcKeyFile {
        /// The path the agent's challenge named.
        path: String,
        /// Why it was refused.
        reason: String,
    },

    /// The workload identity token file could not be read.
    #[error("cannot read the federated token file {path}")]
    FederatedTokenFile {
        /// The path from AZURE_FEDERATED_TOKEN_FILE.
        path: std::path::PathBuf,
        /// The IO failure.
        #[source]
        source: std::io::Error,
    },

    /// The registry did not send a usable `Bearer` challenge.
    #[error("{url} did not answer with a Bearer challenge (HTTP {status}): {detail}")]
    NoBearerChallenge {
        /// The URL pinged.
        url: String,
        /// HTTP status code.
        status: u16,
        /// What was missing.
        detail: String,
    },

    /// The challenge's realm is not on the registry host, so no Azure token is sent there.
    #[error(
        "the registry {registry} names the token realm {realm}, which is not on the registry host; \
         refusing to send an Azure token there"
    )]
    UntrustedRealm {
        /// The registry host.
        registry: String,
        /// The realm URL from the challenge.
        realm: String,
    },

    /// The ACR token service refused the exchange or token request.
    #[error("the ACR token service at {url} answered HTTP {status}: {body}")]
    AcrRefused {
        /// The endpoint (no query string).
        url: String,
        /// HTTP status code.
        status: u16,
        /// The error body (shortened; error bodies carry no tokens).
        body: String,
    },
}

impl Error {
    /// Whether the failure means "this machine has no Azure identity at all" (no endpoint
    /// reachable, or IMDS knows no identity for it), as opposed to a broken or refused one.
    pub fn is_no_identity(&self) -> bool {
        matches!(
            self,
            Error::EndpointUnreachable { .. } | Error::NoIdentity { .. }
        )
    }
}
