//! Managed identity through the Azure Instance Metadata Service (VMs, scale sets, AKS nodes).
//!
//! This is the headline path: an Azure VM with no Docker and no Azure CLI pulls from ACR with its
//! managed identity alone. The request is a plain-HTTP GET to the link-local address with the
//! `Metadata: true` header (spec 1.1), sent without any proxy because IMDS must not be reached
//! through one. `AZURE_POD_IDENTITY_AUTHORITY_HOST` replaces the host, as in the Python, .NET and
//! JS SDKs, which is also how tests point it at a loopback fake (spec 1.7).

use url::Url;

use super::endpoint::{self, ManagedEndpoint, SelectorNames};
use super::env::{Env, AZURE_POD_IDENTITY_AUTHORITY_HOST};
use super::response::{describe_error_body, error_description};
use super::retry::{RetryPolicy, RetryStatuses};
use super::{AadToken, AadTokenSource, Error, UserAssignedId};

/// The IMDS host on Azure.
pub const DEFAULT_IMDS_HOST: &str = "http://169.254.169.254";
/// Path of the managed identity token endpoint under the IMDS host.
const TOKEN_PATH: &str = "/metadata/identity/oauth2/token";
/// The documented floor, sent by MSAL and the Python SDK.
const API_VERSION: &str = "2018-02-01";
/// IMDS's names for the object-id and resource-id selectors.
const SELECTOR_NAMES: SelectorNames = SelectorNames {
    object_id: "object_id",
    resource_id: "msi_res_id",
};

/// A managed identity token from IMDS, cached until shortly before it expires.
#[derive(Debug)]
pub struct ImdsSource {
    endpoint: ManagedEndpoint,
    selector: Option<UserAssignedId>,
}

impl ImdsSource {
    /// IMDS for `audience`, with the user-assigned identity `selector`, or `AZURE_CLIENT_ID` as a
    /// client id, or (neither) the system-assigned identity.
    pub fn new(env: &Env, selector: Option<UserAssignedId>, audience: &str) -> Result<Self, Error> {
        Self::with_policy(env, selector, audience, RetryPolicy::default())
    }

    /// As [`ImdsSource::new`] with an explicit retry policy (tests use millisecond delays).
    pub fn with_policy(
        env: &Env,
        selector: Option<UserAssignedId>,
        audience: &str,
        policy: RetryPolicy,
    ) -> Result<Self, Error> {
        let host = env
            .get(AZURE_POD_IDENTITY_AUTHORITY_HOST)
            .unwrap_or(DEFAULT_IMDS_HOST);
        let url = endpoint::parse(
            &format!("{}{TOKEN_PATH}", host.trim_end_matches('/')),
            AZURE_POD_IDENTITY_AUTHORITY_HOST,
        )?;
        let endpoint = ManagedEndpoint::direct(url, audience, policy, RetryStatuses::Imds)?;
        let selector = endpoint::selector_or_env(selector, env);
        Ok(Self { endpoint, selector })
    }

    /// The user-assigned identity this source asks for, if any.
    pub fn selector(&self) -> Option<&UserAssignedId> {
        self.selector.as_ref()
    }

    fn request_url(&self) -> Url {
        let selector = self
            .selector
            .as_ref()
            .map(|selector| SELECTOR_NAMES.pair(selector));
        self.endpoint.request_url(API_VERSION, selector)
    }

    async fn fetch(&self) -> Result<AadToken, Error> {
        let url = self.request_url();
        let answer = self
            .endpoint
            .send(|http| http.get(url.clone()).header("Metadata", "true"))
            .await?;
        match answer.status {
            200..=299 => self.endpoint.token(&answer, None),
            400 => Err(self.bad_request(self.endpoint.shown(), &answer.body)),
            status => Err(Error::Refused {
                endpoint: self.endpoint.shown(),
                status,
                description: describe_error_body(&answer.body),
            }),
        }
    }

    /// IMDS answers 400 both for "several identities, none chosen" and for "that identity is not
    /// here". The text is matched only to add a hint; any other 400 is still reported verbatim.
    fn bad_request(&self, endpoint: String, body: &[u8]) -> Error {
        let description = error_description(body).unwrap_or_else(|| describe_error_body(body));
        if description
            .to_ascii_lowercase()
            .contains("multiple user assigned identities")
        {
            return Error::MultipleIdentities {
                endpoint,
                description,
            };
        }
        match &self.selector {
            Some(selector) => Error::IdentityNotAssigned {
                identity: selector.to_string(),
                endpoint,
                description,
            },
            None if description
                .to_ascii_lowercase()
                .contains("identity not found") =>
            {
                Error::NoIdentity {
                    endpoint,
                    description,
                }
            }
            None => Error::Refused {
                endpoint,
                status: 400,
                description: describe_error_body(body),
            },
        }
    }
}

#[async_trait::async_trait]
impl AadTokenSource for ImdsSource {
    fn describe(&self) -> String {
        format!(
            "managed identity (IMDS at {}, {})",
            self.endpoint.origin(),
            endpoint::identity_name(self.selector.as_ref())
        )
    }

    async fn aad_token(&self) -> Result<AadToken, Error> {
        self.endpoint.cached(|| self.fetch()).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::azure::env::AZURE_CLIENT_ID;

    fn source(pairs: &[(&str, &str)], selector: Option<UserAssignedId>) -> ImdsSource {
        ImdsSource::new(
            &Env::from_pairs(pairs.iter().copied()),
            selector,
            "https://containerregistry.azure.net",
        )
        .unwrap()
    }

    #[test]
    fn request_urls() {
        let url = source(&[], None).request_url();
        assert_eq!(
            url.as_str(),
            "http://169.254.169.254/metadata/identity/oauth2/token?api-version=2018-02-01\
             &resource=https%3A%2F%2Fcontainerregistry.azure.net"
        );
        let url = source(
            &[
                (AZURE_POD_IDENTITY_AUTHORITY_HOST, "http://127.0.0.1:8080/"),
                (AZURE_CLIENT_ID, "env-id"),
            ],
            None,
        )
        .request_url();
        assert!(url
            .as_str()
            .starts_with("http://127.0.0.1:8080/metadata/identity/oauth2/token?"));
        assert!(url.as_str().ends_with("&client_id=env-id"), "{url}");

        let explicit = source(
            &[(AZURE_CLIENT_ID, "env-id")],
            Some(UserAssignedId::ResourceId("/subscriptions/s/x".into())),
        );
        let url = explicit.request_url();
        assert!(
            url.as_str()
                .ends_with("&msi_res_id=%2Fsubscriptions%2Fs%2Fx"),
            "{url}"
        );
        let url = source(&[], Some(UserAssignedId::ObjectId("oid".into()))).request_url();
        assert!(url.as_str().ends_with("&object_id=oid"), "{url}");
    }

    #[test]
    fn rejects_a_bad_host_override() {
        let env = Env::from_pairs([(AZURE_POD_IDENTITY_AUTHORITY_HOST, "not a url")]);
        let error = ImdsSource::new(&env, None, "a").unwrap_err();
        assert!(error
            .to_string()
            .contains(AZURE_POD_IDENTITY_AUTHORITY_HOST));
    }
}
