//! Test environment for acrpull: the real `docker-registry` on loopback ([`registry`]), the
//! committed fixture images ([`fixtures`]), an in-process fault-injecting registry
//! ([`fake_registry`]), and loopback fakes of Azure IMDS, App Service, Entra ID and the ACR
//! token service ([`azure`]). For benchmarks of real links: a TCP shaper that adds a
//! round-trip time and caps bandwidth ([`shaper`]). For referrers: a read-write registry
//! serving the referrers API ([`oci_registry`]), supply-chain artifacts to attach
//! ([`artifacts`]) and cosign signatures made with keys generated per test ([`cosign`]).
//! Everything binds to 127.0.0.1 only.

pub mod artifacts;
pub mod azure;
pub mod cosign;
pub mod fake_registry;
pub mod fixtures;
pub mod notation;
pub mod oci_registry;
pub mod proxy;
pub mod registry;
mod serve;
pub mod shaper;
pub mod sigstore;
