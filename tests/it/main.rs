//! Integration tests: the `acrpull` binary against the real distribution registry
//! (`docker-registry`), an in-process fault-injecting registry, and skopeo/umoci cross-checks.
//! Everything runs on loopback.

mod architecture;
mod archives;
mod azure;
mod build_features;
mod cache;
mod certificates;
mod cli;
mod cli_docs;
mod conformance;
mod credentials;
mod errors;
mod fuzz_regressions;
mod hardening;
mod hostile;
mod keyless;
mod kubelet;
mod mirrors;
mod notation;
mod operator;
mod properties;
mod pull_layout;
mod push;
mod queries;
mod referrers;
mod resilience;
mod rootfs;
mod support;
mod terminal;
mod verify;
