//! Loopback fakes of Azure IMDS, the App Service identity endpoint, Entra ID and the ACR token
//! service, in one in-process axum server on `127.0.0.1:0`.
//!
//! The fakes follow the protocol reference (`docs/azure-auth.md`), not acrpull's
//! client: IMDS insists on `Metadata: true` and answers with string-typed fields, App Service
//! sends `expires_on` as a string and no `expires_in`, Entra ID sends numbers, and the IMDS and App
//! Service endpoints each honour only their own identity parameter names (an unknown name is
//! ignored and the system identity answers, as Arc does with `mi_res_id`), so a client sending the
//! wrong name gets the wrong identity and the test notices.
//!
//! The ACR half signs registry tokens (ES256, `x5c` header with a self-signed rcgen certificate)
//! that the real `docker-registry` verifies with `auth: token`; [`FakeAzure::registry_auth_config`]
//! gives the config fragment. Roles are a table principal -> repository -> actions; like the
//! Docker token protocol, the token service grants fewer actions than asked rather than refusing,
//! so an identity without a role gets a token the registry refuses with `insufficient_scope`.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context as _;
use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::Response;
use axum::routing::{get, post};
use axum::Router;

mod identity;
mod managed;
mod registry;
mod tls;
mod token_service;

pub use managed::ArcChallenge;
pub use registry::{push_tiny_image, ChallengeOnlyRegistry, TokenAuthRegistry};
pub use tls::ServiceFabricServer;

/// The ACR audience the fakes issue AAD tokens for (and the exchange accepts).
pub const ACR_AUDIENCE: &str = "https://containerregistry.azure.net";
/// The ARM audience, also accepted by the exchange (spec 3.8).
pub const ARM_AUDIENCE: &str = "https://management.azure.com";
/// The tenant of managed identities.
pub const MANAGED_IDENTITY_TENANT: &str = "72f988bf-86f1-41af-91ab-2d7cd011db47";
/// The `service` the registry is configured with and the token service expects.
pub const SERVICE: &str = "fake-acr.test";
/// The `iss` of registry tokens.
pub const ISSUER: &str = "fake-acr-token-service";

/// The fake's endpoints, for request counters and scripted failures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Endpoint {
    /// `GET /metadata/identity/oauth2/token`.
    Imds,
    /// `GET /msi/token` (App Service style).
    AppService,
    /// `GET /arc/metadata/identity/oauth2/token` (the Azure Arc agent).
    Arc,
    /// `GET /aml/token` (Azure ML, legacy App Service API).
    AzureMl,
    /// `POST /cloudshell/token` (Cloud Shell).
    CloudShell,
    /// `GET /sf/token` over TLS (Service Fabric).
    ServiceFabric,
    /// `POST /{tenant}/oauth2/v2.0/token`.
    Entra,
    /// `POST /oauth2/exchange`.
    Exchange,
    /// `POST /oauth2/token`.
    Token,
}

/// A managed identity; ids are derived from the principal name so tests can name them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManagedIdentity {
    /// The name roles are granted to and the token `sub`.
    pub principal: String,
    /// Client (application) id.
    pub client_id: String,
    /// Object (principal) id.
    pub object_id: String,
    /// Full ARM resource id.
    pub resource_id: String,
}

impl ManagedIdentity {
    /// An identity whose ids are `<principal>-client-id`, `<principal>-object-id` and an ARM id
    /// ending in `/userAssignedIdentities/<principal>`.
    pub fn named(principal: &str) -> Self {
        Self {
            principal: principal.to_string(),
            client_id: format!("{principal}-client-id"),
            object_id: format!("{principal}-object-id"),
            resource_id: format!(
                "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/test\
                 /providers/Microsoft.ManagedIdentity/userAssignedIdentities/{principal}"
            ),
        }
    }
}

/// One request the fake received and the `Authorization` header it carried.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthorizationRecord {
    /// The `Host` header.
    pub host: String,
    /// The request path.
    pub path: String,
    /// The `Authorization` header, if any.
    pub authorization: Option<String>,
}

/// One `/oauth2/exchange` request, as received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExchangeRecord {
    /// The `service` form field.
    pub service: Option<String>,
    /// The `tenant` form field.
    pub tenant: Option<String>,
    /// The principal of the AAD token, when it was one the fake issued.
    pub principal: Option<String>,
}

#[derive(Debug, Clone)]
struct ServicePrincipal {
    tenant: String,
    client_id: String,
    secret: String,
    principal: String,
}

#[derive(Debug, Clone)]
struct FederatedCredential {
    tenant: String,
    client_id: String,
    assertion: String,
    principal: String,
}

#[derive(Debug, Clone)]
struct IssuedAad {
    principal: String,
    tenant: String,
    audience: String,
    expires: u64,
}

#[derive(Debug, Clone)]
struct IssuedRefresh {
    principal: String,
    expires: u64,
}

/// Everything the handlers share; knobs are changed through [`FakeAzure`] methods at any time.
#[derive(Debug)]
struct Knobs {
    system_identity: Option<String>,
    user_assigned: Vec<ManagedIdentity>,
    app_service_header: String,
    msi_secret: String,
    arc_challenge: managed::ArcChallenge,
    arc_token_directory: PathBuf,
    arc_key: Option<String>,
    anonymous_pull: bool,
    service_principals: Vec<ServicePrincipal>,
    federated: Vec<FederatedCredential>,
    roles: BTreeMap<String, BTreeMap<String, BTreeSet<String>>>,
    scripts: HashMap<Endpoint, VecDeque<u16>>,
    aad_token_ttl: Duration,
    registry_token_ttl: Duration,
    backdate: Duration,
    imds_numeric_fields: bool,
    issued_aad: HashMap<String, IssuedAad>,
    issued_refresh: HashMap<String, IssuedRefresh>,
    counters: BTreeMap<Endpoint, usize>,
    authorization_log: Vec<AuthorizationRecord>,
    exchange_log: Vec<ExchangeRecord>,
    received_assertions: Vec<String>,
}

struct Shared {
    knobs: Mutex<Knobs>,
    signer: token_service::Signer,
}

impl Shared {
    fn knobs(&self) -> MutexGuard<'_, Knobs> {
        self.knobs
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Count a request and pop its scripted status, if any.
    fn begin(&self, endpoint: Endpoint) -> Option<u16> {
        let mut knobs = self.knobs();
        *knobs.counters.entry(endpoint).or_default() += 1;
        knobs
            .scripts
            .get_mut(&endpoint)
            .and_then(VecDeque::pop_front)
    }
}

/// Seconds since the epoch.
fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_secs())
}

/// The running fakes. Dropping it stops the server.
pub struct FakeAzure {
    address: SocketAddr,
    shared: Arc<Shared>,
    router: Router,
    directory: tempfile::TempDir,
    server: tokio::task::JoinHandle<()>,
}

impl FakeAzure {
    /// Start the fakes on a free loopback port, with no identities and no roles.
    pub async fn start() -> anyhow::Result<Self> {
        let directory = tempfile::tempdir().context("creating the fake's directory")?;
        let signer =
            token_service::Signer::generate().context("generating the token signing key")?;
        std::fs::write(
            directory.path().join("rootcertbundle.pem"),
            signer.certificate_pem(),
        )
        .context("writing the root certificate bundle")?;
        let arc_token_directory = directory.path().join("arc-tokens");
        std::fs::create_dir(&arc_token_directory).context("creating the Arc token directory")?;
        let shared = Arc::new(Shared {
            knobs: Mutex::new(Knobs {
                system_identity: None,
                user_assigned: Vec::new(),
                app_service_header: "fake-identity-header".to_string(),
                msi_secret: "fake-msi-secret".to_string(),
                arc_challenge: managed::ArcChallenge::FreshKeyFile,
                arc_token_directory,
                arc_key: None,
                anonymous_pull: false,
                service_principals: Vec::new(),
                federated: Vec::new(),
                roles: BTreeMap::new(),
                scripts: HashMap::new(),
                aad_token_ttl: Duration::from_secs(24 * 3600),
                registry_token_ttl: Duration::from_secs(3 * 3600),
                backdate: Duration::ZERO,
                imds_numeric_fields: false,
                issued_aad: HashMap::new(),
                issued_refresh: HashMap::new(),
                counters: BTreeMap::new(),
                authorization_log: Vec::new(),
                exchange_log: Vec::new(),
                received_assertions: Vec::new(),
            }),
            signer,
        });
        let router = Router::new()
            .route("/metadata/identity/oauth2/token", get(identity::imds))
            .route("/msi/token", get(identity::app_service))
            .route("/arc/metadata/identity/oauth2/token", get(managed::arc))
            .route("/aml/token", get(managed::azure_ml))
            .route("/cloudshell/token", post(managed::cloud_shell))
            .route("/sf/token", get(managed::service_fabric))
            .route("/{tenant}/oauth2/v2.0/token", post(identity::entra))
            .route("/oauth2/exchange", post(token_service::exchange))
            .route(
                "/oauth2/token",
                post(token_service::token).get(token_service::token_basic),
            )
            .layer(axum::middleware::from_fn_with_state(
                shared.clone(),
                log_authorization,
            ))
            .with_state(shared.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .context("binding the fake on 127.0.0.1")?;
        let address = listener.local_addr()?;
        let served = router.clone();
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, served).await;
        });
        Ok(Self {
            address,
            shared,
            router,
            directory,
            server,
        })
    }

    /// `http://127.0.0.1:PORT` (no trailing slash): the value for `AZURE_POD_IDENTITY_AUTHORITY_HOST`.
    pub fn url(&self) -> String {
        format!("http://{}", self.address)
    }

    /// The value for `IDENTITY_ENDPOINT`.
    pub fn app_service_endpoint(&self) -> String {
        format!("{}/msi/token", self.url())
    }

    /// The value for `IDENTITY_ENDPOINT` on an Azure Arc server (with `IMDS_ENDPOINT` set too).
    pub fn arc_endpoint(&self) -> String {
        format!("{}/arc/metadata/identity/oauth2/token", self.url())
    }

    /// The directory the fake Arc agent writes its challenge key files into (the client must be
    /// given the same directory as its token directory).
    pub fn arc_token_directory(&self) -> PathBuf {
        self.shared.knobs().arc_token_directory.clone()
    }

    /// What the Arc agent's next challenges name.
    pub fn set_arc_challenge(&self, challenge: ArcChallenge) {
        self.shared.knobs().arc_challenge = challenge;
    }

    /// The value for `MSI_ENDPOINT` on Azure ML (with `MSI_SECRET` = [`Self::msi_secret`]).
    pub fn azure_ml_endpoint(&self) -> String {
        format!("{}/aml/token", self.url())
    }

    /// The `MSI_SECRET` the Azure ML endpoint demands.
    pub fn msi_secret(&self) -> String {
        self.shared.knobs().msi_secret.clone()
    }

    /// The value for `MSI_ENDPOINT` in Cloud Shell (no `MSI_SECRET`).
    pub fn cloud_shell_endpoint(&self) -> String {
        format!("{}/cloudshell/token", self.url())
    }

    /// Serve the Service Fabric endpoint over TLS with a fresh self-signed certificate, on its
    /// own loopback port; `IDENTITY_HEADER` is [`Self::app_service_header`].
    pub async fn serve_service_fabric(&self) -> anyhow::Result<ServiceFabricServer> {
        tls::ServiceFabricServer::start(self.router.clone()).await
    }

    /// Let the token service hand out pull tokens without credentials (ACR anonymous pull).
    pub fn set_anonymous_pull(&self, allowed: bool) {
        self.shared.knobs().anonymous_pull = allowed;
    }

    /// The value for `AZURE_AUTHORITY_HOST` (with the trailing slash the webhook sets).
    pub fn authority_host(&self) -> String {
        format!("{}/", self.url())
    }

    /// The token realm the registry advertises.
    pub fn realm(&self) -> String {
        format!("{}/oauth2/token", self.url())
    }

    /// The PEM bundle holding the certificate registry tokens are signed with.
    pub fn rootcertbundle_path(&self) -> PathBuf {
        self.directory.path().join("rootcertbundle.pem")
    }

    /// The `auth:` block of a registry configuration that trusts this token service.
    pub fn registry_auth_config(&self) -> String {
        format!(
            "auth:\n  token:\n    realm: {}\n    service: {SERVICE}\n    issuer: {ISSUER}\n    rootcertbundle: {}\n",
            self.realm(),
            self.rootcertbundle_path().display()
        )
    }

    /// Give the machine a system-assigned identity named `principal` (or remove it).
    pub fn set_system_identity(&self, principal: Option<&str>) {
        self.shared.knobs().system_identity = principal.map(str::to_string);
    }

    /// Assign a user-assigned identity to the machine.
    pub fn add_user_assigned(&self, identity: ManagedIdentity) {
        self.shared.knobs().user_assigned.push(identity);
    }

    /// The `IDENTITY_HEADER` value the App Service endpoint demands.
    pub fn app_service_header(&self) -> String {
        self.shared.knobs().app_service_header.clone()
    }

    /// Register a service principal with a client secret.
    pub fn add_service_principal(
        &self,
        tenant: &str,
        client_id: &str,
        secret: &str,
        principal: &str,
    ) {
        self.shared
            .knobs()
            .service_principals
            .push(ServicePrincipal {
                tenant: tenant.to_string(),
                client_id: client_id.to_string(),
                secret: secret.to_string(),
                principal: principal.to_string(),
            });
    }

    /// Accept `assertion` (a projected service-account token) for a workload identity.
    pub fn add_federated_credential(
        &self,
        tenant: &str,
        client_id: &str,
        assertion: &str,
        principal: &str,
    ) {
        self.shared.knobs().federated.push(FederatedCredential {
            tenant: tenant.to_string(),
            client_id: client_id.to_string(),
            assertion: assertion.to_string(),
            principal: principal.to_string(),
        });
    }

    /// Stop accepting `assertion` (it was rotated away).
    pub fn revoke_federated_assertion(&self, assertion: &str) {
        self.shared
            .knobs()
            .federated
            .retain(|credential| credential.assertion != assertion);
    }

    /// Client assertions received by the Entra fake, in order.
    pub fn received_assertions(&self) -> Vec<String> {
        self.shared.knobs().received_assertions.clone()
    }

    /// Grant `principal` the `actions` (`pull`, `push`, ...) on `repository`.
    pub fn grant(&self, principal: &str, repository: &str, actions: &[&str]) {
        self.shared
            .knobs()
            .roles
            .entry(principal.to_string())
            .or_default()
            .entry(repository.to_string())
            .or_default()
            .extend(actions.iter().map(|action| action.to_string()));
    }

    /// Answer the next requests to `endpoint` with these statuses before behaving normally.
    pub fn script(&self, endpoint: Endpoint, statuses: &[u16]) {
        self.shared
            .knobs()
            .scripts
            .entry(endpoint)
            .or_default()
            .extend(statuses.iter().copied());
    }

    /// Lifetime of AAD tokens from IMDS, App Service and Entra ID.
    pub fn set_aad_token_ttl(&self, ttl: Duration) {
        self.shared.knobs().aad_token_ttl = ttl;
    }

    /// Lifetime of ACR refresh and access tokens.
    pub fn set_registry_token_ttl(&self, ttl: Duration) {
        self.shared.knobs().registry_token_ttl = ttl;
    }

    /// Shift `iat`, `nbf` and `exp` of registry tokens this far into the past.
    pub fn set_backdate(&self, backdate: Duration) {
        self.shared.knobs().backdate = backdate;
    }

    /// Send IMDS numbers as JSON numbers instead of the strings real IMDS sends.
    pub fn set_imds_numeric_fields(&self, numeric: bool) {
        self.shared.knobs().imds_numeric_fields = numeric;
    }

    /// How many requests `endpoint` received (scripted failures included).
    pub fn requests(&self, endpoint: Endpoint) -> usize {
        self.shared
            .knobs()
            .counters
            .get(&endpoint)
            .copied()
            .unwrap_or(0)
    }

    /// Every request the fake received, with its Host and Authorization headers.
    pub fn authorization_log(&self) -> Vec<AuthorizationRecord> {
        self.shared.knobs().authorization_log.clone()
    }

    /// Every `/oauth2/exchange` request.
    pub fn exchange_log(&self) -> Vec<ExchangeRecord> {
        self.shared.knobs().exchange_log.clone()
    }

    /// Whether `token` is an AAD token this fake issued (for asserting where tokens went).
    pub fn issued_aad_principal(&self, token: &str) -> Option<String> {
        self.shared
            .knobs()
            .issued_aad
            .get(token)
            .map(|issued| issued.principal.clone())
    }

    /// A registry access token for `subject` with exactly these grants, honouring the TTL and
    /// back-dating knobs (e.g. to push fixtures with `skopeo --dest-registry-token`).
    pub fn mint_registry_token(
        &self,
        subject: &str,
        access: &[(&str, &[&str])],
    ) -> anyhow::Result<String> {
        let grants = access
            .iter()
            .map(|(repository, actions)| {
                (
                    repository.to_string(),
                    actions.iter().map(|action| action.to_string()).collect(),
                )
            })
            .collect::<Vec<(String, Vec<String>)>>();
        let (ttl, backdate) = {
            let knobs = self.shared.knobs();
            (knobs.registry_token_ttl, knobs.backdate)
        };
        self.shared
            .signer
            .access_token(subject, &grants, ttl, backdate)
    }

    /// The directory holding the fake's files.
    pub fn directory(&self) -> &Path {
        self.directory.path()
    }
}

impl Drop for FakeAzure {
    fn drop(&mut self) {
        self.server.abort();
    }
}

/// Record Host and Authorization of every request.
async fn log_authorization(
    State(shared): State<Arc<Shared>>,
    request: Request,
    next: Next,
) -> Response {
    let record = authorization_record(&request);
    shared.knobs().authorization_log.push(record);
    next.run(request).await
}

fn authorization_record(request: &Request) -> AuthorizationRecord {
    let header = |name: axum::http::HeaderName| {
        request
            .headers()
            .get(name)
            .and_then(|value| value.to_str().ok())
            .map(str::to_string)
    };
    AuthorizationRecord {
        host: header(axum::http::header::HOST).unwrap_or_default(),
        path: request.uri().path().to_string(),
        authorization: header(axum::http::header::AUTHORIZATION),
    }
}
