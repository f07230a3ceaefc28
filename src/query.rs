//! Questions about a registry that need no pull: a repository's tags, the digest a reference
//! resolves to, the repositories a registry lists. What `acrpull tags`, `acrpull digest` and
//! `acrpull catalog` print, for library callers too.
//!
//! Each goes to the registry itself (mirrors answer pulls, not these), with the credential
//! and connection options given, and the host's certificates directory applied.

use crate::credential::Credential;
use crate::digest::Digest;
use crate::reference::Reference;
use crate::registry::{build_http, ClientOptions, RegistryClient};
use crate::Error;

/// Every tag of `reference`'s repository (its tag or digest is ignored), in the registry's
/// order; `page_size` asks for pages of that many.
pub async fn tags(
    reference: &Reference,
    credential: Credential,
    options: &ClientOptions,
    page_size: Option<u32>,
) -> Result<Vec<String>, Error> {
    let client = client(reference, reference.repository(), credential, options)?;
    Ok(client.tags(page_size).await?)
}

/// The digest of the manifest (or index) `reference` names, as the registry serves it.
pub async fn digest(
    reference: &Reference,
    credential: Credential,
    options: &ClientOptions,
) -> Result<Digest, Error> {
    let client = client(reference, reference.repository(), credential, options)?;
    Ok(client
        .manifest_digest(&reference.manifest_reference())
        .await?)
}

/// The repositories `registry` (`host[:port]`) lists at `/v2/_catalog`. Many registries
/// refuse (Docker Hub, ACR without registry-wide read): that is an authentication or
/// not-found error naming the catalog.
pub async fn catalog(
    registry: &str,
    credential: Credential,
    options: &ClientOptions,
    page_size: Option<u32>,
) -> Result<Vec<String>, Error> {
    // Validated as image references' registries are.
    let reference: Reference = format!("{}/catalog", registry.trim_end_matches('/')).parse()?;
    let client = client(&reference, "", credential, options)?.for_catalog();
    Ok(client.catalog(page_size).await?)
}

fn client(
    reference: &Reference,
    repository: &str,
    credential: Credential,
    options: &ClientOptions,
) -> Result<RegistryClient, Error> {
    let options = options
        .for_host(reference.api_host())
        .map_err(crate::mirror::ConfigError::from)?;
    let http = build_http(&options)?;
    Ok(RegistryClient::new(
        http,
        reference.registry(),
        reference.api_host(),
        repository,
        credential,
        options,
    ))
}
