//! Test environment for acrpull: the real docker-registry on loopback, fake Azure identity and
//! ACR token services, fault-injecting proxy.

pub mod azure;
