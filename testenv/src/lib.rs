//! Test environment for acrpull's registry interop tests: the real
//! `docker-registry` on loopback ([`registry`]), the committed fixture
//! images ([`fixtures`]) and an in-process fault-injecting registry
//! ([`fake_registry`]). Everything binds to 127.0.0.1 only.

pub mod fake_registry;
pub mod fixtures;
pub mod registry;
