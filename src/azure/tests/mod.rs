//! Integration tests of the identity sources and the ACR exchange against the loopback fakes in
//! `acrpull-testenv`, and end to end against the real `docker-registry` with `auth: token`.
//!
//! They live inside the library (not `tests/`) so they can reach the private challenge parser and
//! construct sources with millisecond retry policies. Every endpoint is on 127.0.0.1; every
//! environment is built with [`Env::from_pairs`], never read from the process.

use std::time::Duration;

use acrpull_testenv::azure::FakeAzure;

use super::{AadTokenSource, Env, Error, RetryPolicy};

mod identity;
mod registry;
mod sources;

/// The real retry schedule with millisecond delays.
fn fast_policy() -> RetryPolicy {
    RetryPolicy::with_delays(Duration::from_millis(5))
}

/// An environment pointing IMDS at the fake, plus `pairs`.
fn imds_env(fake: &FakeAzure, pairs: &[(&str, &str)]) -> Env {
    let host = fake.url();
    let mut all = vec![("AZURE_POD_IDENTITY_AUTHORITY_HOST", host.as_str())];
    all.extend_from_slice(pairs);
    Env::from_pairs(all)
}

/// A client that never uses a proxy (the tests talk to loopback only).
fn loopback_http() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .build()
        .expect("building a reqwest client")
}

/// The principal the fake issued `source`'s token to.
async fn principal_of(fake: &FakeAzure, source: &dyn AadTokenSource) -> String {
    let token = source.aad_token().await.expect("an AAD token");
    fake.issued_aad_principal(token.token.expose())
        .expect("a token the fake issued")
}

/// `source`'s refusal by an endpoint that did not take `secret`: a 401, the secret nowhere in
/// the message or its `Debug` form. The refusal, for further checks.
async fn refused_secret(source: &dyn AadTokenSource, secret: &str) -> Error {
    let error = source.aad_token().await.unwrap_err();
    assert!(
        matches!(error, Error::Refused { status: 401, .. }),
        "{error:?}"
    );
    let shown = format!("{error} {error:?}");
    assert!(!shown.contains(secret), "{shown}");
    error
}
