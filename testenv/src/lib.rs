//! Test environment for acrpull: the real `docker-registry` on loopback ([`registry`]), the
//! committed fixture images ([`fixtures`]), an in-process fault-injecting registry
//! ([`fake_registry`]), and loopback fakes of Azure IMDS, App Service, Entra ID and the ACR
//! token service ([`azure`]). Everything binds to 127.0.0.1 only.

pub mod azure;
pub mod fake_registry;
pub mod fixtures;
pub mod proxy;
pub mod registry;
mod serve;
