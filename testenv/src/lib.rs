//! Test environment for acrpull's registry interop tests: the real
//! `docker-registry` on loopback ([`registry`]) and the committed fixture
//! images ([`fixtures`]). Everything binds to 127.0.0.1 only.

pub mod fixtures;
pub mod registry;
