//! The ACR token exchange (placeholder until the Azure work lands).

use crate::secret::Secret;

use super::{AadToken, Error};

/// Whether `realm`'s host may receive Azure tokens for `registry_host`.
pub fn realm_trusted(registry_host: &str, realm: &url::Url) -> bool {
    realm.host_str() == Some(registry_host)
}

/// AAD token -> ACR refresh token.
pub async fn exchange_for_refresh_token(
    _http: &reqwest::Client,
    _realm: &url::Url,
    _service: &str,
    _aad: &AadToken,
    _tenant: Option<&str>,
) -> Result<Secret, Error> {
    Err(Error::Unavailable("ACR exchange not built yet".into()))
}
