//! The token endpoint on the machine that every managed-identity source talks to.
//!
//! IMDS, App Service, Azure Arc, Azure ML, Cloud Shell and Service Fabric each ask a local
//! endpoint for a token, retry it by the identity rules and cache the answer. That common part
//! lives here once: the endpoint URL checked from its variable, the direct HTTP client, the query
//! `api-version=..&resource=..[&<selector>=..]`, the retried request, the reading of the final
//! answer and the token cache. What differs stays in each source's module: the method and
//! headers, the parameter names, Arc's key-file challenge, Service Fabric's pinned certificate,
//! IMDS's 400 hints.

use std::future::Future;
use std::sync::atomic::AtomicBool;
use std::time::SystemTime;

use url::Url;

use super::cache::TokenCache;
use super::env::{self, Env};
use super::response::{describe_error_body, error_description, parse_token_response};
use super::retry::{self, Answer, RetryPolicy, RetryStatuses};
use super::{resource_of, AadToken, Error, UserAssignedId};

/// One managed-identity token endpoint: where it is, the client that reaches it, how it is
/// retried, whether it ever answered, and the token it last gave.
#[derive(Debug)]
pub(crate) struct ManagedEndpoint {
    url: Url,
    resource: String,
    http: reqwest::Client,
    policy: RetryPolicy,
    statuses: RetryStatuses,
    reached: AtomicBool,
    cache: TokenCache,
}

impl ManagedEndpoint {
    /// The endpoint `url` (checked by [`parse`]), reached directly (never through a proxy, as
    /// the docs say for IMDS, with a short connect timeout and no redirects), asked for
    /// `audience`.
    pub(crate) fn direct(
        url: Url,
        audience: &str,
        policy: RetryPolicy,
        statuses: RetryStatuses,
    ) -> Result<Self, Error> {
        let http = super::http_client(crate::http::Proxy::Direct, policy.connect_timeout, &url)?;
        Ok(Self::with_client(url, http, audience, policy, statuses))
    }

    /// The endpoint `url` reached with a client of the source's own making.
    pub(crate) fn with_client(
        url: Url,
        http: reqwest::Client,
        audience: &str,
        policy: RetryPolicy,
        statuses: RetryStatuses,
    ) -> Self {
        Self {
            url,
            resource: resource_of(audience),
            http,
            policy,
            statuses,
            reached: AtomicBool::new(false),
            cache: TokenCache::default(),
        }
    }

    /// The endpoint URL as configured.
    pub(crate) fn url(&self) -> &Url {
        &self.url
    }

    /// The endpoint URL for messages (no query string).
    pub(crate) fn shown(&self) -> String {
        crate::http::redact_url(&self.url)
    }

    /// The endpoint's scheme, host and port, for descriptions.
    pub(crate) fn origin(&self) -> String {
        self.url.origin().ascii_serialization()
    }

    /// `endpoint?api-version=..&resource=..[&<name>=<value>]`, the query every managed-identity
    /// GET sends; `selector` is the parameter that names a user-assigned identity.
    pub(crate) fn request_url(&self, api_version: &str, selector: Option<(&str, &str)>) -> Url {
        let mut url = self.url.clone();
        {
            let mut query = url.query_pairs_mut();
            query.append_pair("api-version", api_version);
            query.append_pair("resource", &self.resource);
            if let Some((name, value)) = selector {
                query.append_pair(name, value);
            }
        }
        url
    }

    /// The resource (v1 audience) asked for.
    pub(crate) fn resource(&self) -> &str {
        &self.resource
    }

    /// Send the request `build` makes with the endpoint's client, retried by the source's rules;
    /// the final answer, or the error that ended the retries.
    pub(crate) async fn send(
        &self,
        build: impl Fn(&reqwest::Client) -> reqwest::RequestBuilder,
    ) -> Result<Answer, Error> {
        retry::send(
            || build(&self.http),
            &self.url,
            &self.policy,
            self.statuses,
            &self.reached,
        )
        .await
    }

    /// Send the request `build` makes and read the token in the final answer, as [`Self::token`].
    pub(crate) async fn request(
        &self,
        build: impl Fn(&reqwest::Client) -> reqwest::RequestBuilder,
        selector: Option<&UserAssignedId>,
    ) -> Result<AadToken, Error> {
        let answer = self.send(build).await?;
        self.token(&answer, selector)
    }

    /// The token in a final answer: a 2xx body parsed liberally; with a user-assigned
    /// `selector`, a 400/404 names that identity as not assigned; anything else is the
    /// endpoint's refusal with its error description.
    pub(crate) fn token(
        &self,
        answer: &Answer,
        selector: Option<&UserAssignedId>,
    ) -> Result<AadToken, Error> {
        let endpoint = self.shown();
        match (answer.status, selector) {
            (200..=299, _) => parse_token_response(&endpoint, &answer.body, SystemTime::now()),
            (400 | 404, Some(selector)) => Err(Error::IdentityNotAssigned {
                identity: selector.to_string(),
                endpoint,
                description: error_description(&answer.body)
                    .unwrap_or_else(|| describe_error_body(&answer.body)),
            }),
            (status, _) => Err(Error::Refused {
                endpoint,
                status,
                description: describe_error_body(&answer.body),
            }),
        }
    }

    /// The cached token while it is fresh, else the one `fetch` gets (single flight).
    pub(crate) async fn cached<F, Fut>(&self, fetch: F) -> Result<AadToken, Error>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<AadToken, Error>>,
    {
        self.cache.get_or_fetch(fetch).await
    }
}

/// A managed-identity endpoint from `variable`'s value: an http(s) URL with a host.
pub(crate) fn parse(raw: &str, variable: &str) -> Result<Url, Error> {
    Url::parse(raw)
        .ok()
        .filter(|url| matches!(url.scheme(), "http" | "https") && url.host().is_some())
        .ok_or_else(|| Error::Configuration {
            detail: format!("{variable} is not an http(s) URL: {raw}"),
        })
}

/// The query parameter names one managed-identity endpoint uses for each selector (they differ:
/// IMDS says `object_id`/`msi_res_id`, App Service `principal_id`/`mi_res_id`; spec 1.2).
pub(crate) struct SelectorNames {
    pub(crate) object_id: &'static str,
    pub(crate) resource_id: &'static str,
}

impl SelectorNames {
    /// The query parameter that names `selector`, and its value.
    pub(crate) fn pair<'a>(&self, selector: &'a UserAssignedId) -> (&'static str, &'a str) {
        let name = match selector {
            UserAssignedId::ClientId(_) => "client_id",
            UserAssignedId::ObjectId(_) => self.object_id,
            UserAssignedId::ResourceId(_) => self.resource_id,
        };
        (name, selector.value())
    }
}

/// How a description names the identity asked for: the selector, or `system-assigned`.
pub(crate) fn identity_name(selector: Option<&UserAssignedId>) -> String {
    match selector {
        Some(selector) => selector.to_string(),
        None => "system-assigned".to_string(),
    }
}

/// The user-assigned identity to ask for: the flag's, else `AZURE_CLIENT_ID` as a client id.
pub(crate) fn selector_or_env(
    selector: Option<UserAssignedId>,
    env: &Env,
) -> Option<UserAssignedId> {
    selector.or_else(|| {
        env.get(env::AZURE_CLIENT_ID)
            .map(|id| UserAssignedId::ClientId(id.to_string()))
    })
}

/// Refuse a user-assigned identity on a source whose endpoint cannot select one (Azure Arc,
/// Cloud Shell, Service Fabric), as the Azure SDKs do: asking would silently get the
/// system-assigned identity instead.
pub(crate) fn refuse_selector(
    source_name: &str,
    selector: Option<UserAssignedId>,
    env: &Env,
) -> Result<(), Error> {
    let from_env = selector.is_none() && env.contains(env::AZURE_CLIENT_ID);
    match selector_or_env(selector, env) {
        None => Ok(()),
        Some(selector) => Err(Error::Configuration {
            detail: format!(
                "{source_name} managed identity cannot select a user-assigned identity \
                 ({selector}{}): the endpoint always answers with the identity the platform \
                 assigned; drop --client-id/--object-id/--resource-id{}",
                if from_env {
                    ", from AZURE_CLIENT_ID"
                } else {
                    ""
                },
                if from_env {
                    " and unset AZURE_CLIENT_ID"
                } else {
                    ""
                },
            ),
        }),
    }
}
