//! Revocation by CRL (`--revocation-check`), as trust-store-trust-policy.md ("Certificate
//! Revocation Evaluation") and notation-core-go's `revocation/crl` do it: for each
//! certificate of the signing chain that names CRL distribution points, every `http://` CRL
//! is downloaded (5 s per location, at most 32 MiB, no credentials, up to 5 redirects to other
//! `http://` locations), its signature verified with the issuing certificate's key, its
//! `thisUpdate`/`nextUpdate` checked against now, and the certificate's serial looked up in it.
//!
//! Off unless asked: it needs the network to the CA, which an air-gapped machine does not
//! have, and the library makes no network call on its own. A status that cannot be
//! determined (unreachable, invalid or expired CRL, a delta CRL, a certificate that names only
//! an OCSP responder, which acrpull does not query) is [`Status::Unknown`], which the
//! specification fails like a revoked certificate, enforced or logged as the level says.

use std::time::Duration;

use const_oid::ObjectIdentifier;
use der::{Decode, Encode};
use time::OffsetDateTime;
use x509_cert::crl::CertificateList;
use x509_cert::ext::pkix::crl::dp::DistributionPoint;
use x509_cert::ext::pkix::name::{DistributionPointName, GeneralName};
use x509_cert::ext::pkix::CrlDistributionPoints;

use crate::http::{build_client, read_capped, ClientError, HttpOptions, Pace, Proxy};
use crate::verify::x509::{self, Certificate, SignatureAlgorithm};

/// The largest CRL read (notation-core-go's limit).
pub const CRL_SIZE_LIMIT: u64 = 32 * 1024 * 1024;
/// How long one CRL location may take, redirects included (the specification's default
/// threshold).
pub const CRL_TIMEOUT: Duration = Duration::from_secs(5);
/// Most redirects followed for one CRL location.
pub const MAX_REDIRECTS: usize = 5;

const AUTHORITY_INFO_ACCESS: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.5.5.7.1.1");
const OCSP: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.5.5.7.48.1");
const FRESHEST_CRL: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.5.29.46");
const ISSUING_DISTRIBUTION_POINT: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.5.29.28");
const CRL_REASON: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.5.29.21");
const INVALIDITY_DATE: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.5.29.24");

/// The revocation status of a whole chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Status {
    /// No certificate names an OCSP responder or a CRL: nothing to check.
    NoEndpoints,
    /// Every CRL named was read, valid, and lists none of the chain.
    NotRevoked,
    /// A certificate is revoked (which, by which CRL).
    Revoked(String),
    /// The status could not be determined (why).
    Unknown(String),
}

/// Downloads CRLs over plain HTTP, through the project's HTTP stack.
#[derive(Debug, Clone)]
pub struct CrlFetcher {
    client: reqwest::Client,
    timeout: Duration,
}

impl CrlFetcher {
    /// A fetcher using `proxy` (CRL locations are usually public hosts, reached as the
    /// registry is; tests use [`Proxy::Direct`] to reach loopback).
    pub fn new(proxy: Proxy) -> Result<CrlFetcher, ClientError> {
        let client = build_client(&HttpOptions {
            proxy,
            connect_timeout: CRL_TIMEOUT,
            read_timeout: Some(CRL_TIMEOUT),
            ..HttpOptions::default()
        })?;
        Ok(CrlFetcher {
            client,
            timeout: CRL_TIMEOUT,
        })
    }

    /// The CRL at `url`, following up to [`MAX_REDIRECTS`] redirects to other `http://`
    /// locations (as Go's HTTP client under notation-core-go does), within one timeout.
    async fn fetch(&self, url: &str) -> Result<Vec<u8>, String> {
        let failed = |reason: String| format!("downloading the CRL {url} failed: {reason}");
        let deadline = tokio::time::Instant::now() + self.timeout;
        let mut location = url::Url::parse(url).map_err(|e| failed(e.to_string()))?;
        for _ in 0..=MAX_REDIRECTS {
            let remaining = deadline.saturating_duration_since(tokio::time::Instant::now());
            let response = self
                .client
                .get(location.clone())
                .timeout(remaining)
                .send()
                .await
                .map_err(|e| failed(crate::http::retry::root_cause(&e)))?;
            let status = response.status();
            if status.is_redirection() {
                let next = response
                    .headers()
                    .get(reqwest::header::LOCATION)
                    .and_then(|value| value.to_str().ok())
                    .and_then(|value| location.join(value).ok())
                    .ok_or_else(|| failed(format!("HTTP {status} without a usable Location")))?;
                if next.scheme() != "http" {
                    return Err(failed(format!(
                        "it redirects to {next}, and only http:// CRLs are fetched"
                    )));
                }
                location = next;
                continue;
            }
            if !status.is_success() {
                return Err(failed(format!("HTTP {status} from {location}")));
            }
            return read_capped(response, CRL_SIZE_LIMIT, Pace::default())
                .await
                .map(|body| body.to_vec())
                .map_err(|e| failed(e.to_string()));
        }
        Err(failed(format!("more than {MAX_REDIRECTS} redirects")))
    }

    /// The status of `chain` (leaf first, ending in its self-signed root) at `now`.
    /// `signing_time` (a verified timestamp or authentic signing time) spares a certificate
    /// revoked with an invalidity date after it, as RFC 5280 5.3.2 and Notation do.
    pub async fn check_chain(
        &self,
        chain: &[Certificate],
        signing_time: Option<OffsetDateTime>,
        now: OffsetDateTime,
    ) -> Status {
        let mut checked = false;
        let mut unknown = None;
        for (index, cert) in chain.iter().enumerate() {
            let issuer = chain.get(index + 1).unwrap_or(cert);
            let urls = match crl_urls(cert) {
                Ok(urls) => urls,
                Err(reason) => {
                    unknown.get_or_insert(reason);
                    continue;
                }
            };
            if urls.is_empty() {
                if names_ocsp(cert) {
                    unknown.get_or_insert(format!(
                        "`{}` names only an OCSP responder, which acrpull does not query",
                        cert.subject()
                    ));
                }
                continue;
            }
            checked = true;
            for url in urls {
                match self.check_one(cert, issuer, &url, signing_time, now).await {
                    Ok(None) => {}
                    Ok(Some(revoked)) => return Status::Revoked(revoked),
                    Err(reason) => {
                        unknown.get_or_insert(reason);
                    }
                }
            }
        }
        match unknown {
            Some(reason) => Status::Unknown(reason),
            None if checked => Status::NotRevoked,
            None => Status::NoEndpoints,
        }
    }

    /// `Ok(Some(why))` when the CRL at `url` revokes `cert`, `Ok(None)` when it does not,
    /// `Err` when it cannot say.
    async fn check_one(
        &self,
        cert: &Certificate,
        issuer: &Certificate,
        url: &str,
        signing_time: Option<OffsetDateTime>,
        now: OffsetDateTime,
    ) -> Result<Option<String>, String> {
        if !url.starts_with("http://") {
            return Err(format!(
                "`{}` names the CRL {url}: only http:// CRLs are fetched, as Notation does",
                cert.subject()
            ));
        }
        let bytes = self.fetch(url).await?;
        let crl = validate(&bytes, cert, issuer, now)
            .map_err(|reason| format!("the CRL {url} is not usable: {reason}"))?;
        revoked_entry(&crl, cert, signing_time)
            .map(|found| {
                found.map(|why| format!("`{}` is revoked by the CRL {url}: {why}", cert.subject()))
            })
            .map_err(|reason| format!("the CRL {url}: {reason}"))
    }
}

/// Whether a certificate names an OCSP responder (authorityInfoAccess) or a CRL
/// (cRLDistributionPoints).
pub fn has_endpoints(cert: &Certificate) -> bool {
    cert.extension(&const_oid::db::rfc5280::ID_CE_CRL_DISTRIBUTION_POINTS)
        .is_some()
        || names_ocsp(cert)
}

fn names_ocsp(cert: &Certificate) -> bool {
    cert.extension(&AUTHORITY_INFO_ACCESS)
        .is_some_and(|(_, value)| {
            x509_cert::ext::pkix::AuthorityInfoAccessSyntax::from_der(value)
                .map(|aia| aia.0.iter().any(|d| d.access_method == OCSP))
                .unwrap_or(true)
        })
}

/// The URIs of a certificate's CRL distribution points (empty without the extension).
fn crl_urls(cert: &Certificate) -> Result<Vec<String>, String> {
    let Some((_, value)) = cert.extension(&const_oid::db::rfc5280::ID_CE_CRL_DISTRIBUTION_POINTS)
    else {
        return Ok(Vec::new());
    };
    let points = CrlDistributionPoints::from_der(value).map_err(|e| {
        format!(
            "`{}` has an unreadable CRL distribution points extension: {e}",
            cert.subject()
        )
    })?;
    Ok(points
        .0
        .iter()
        .filter_map(
            |point: &DistributionPoint| match &point.distribution_point {
                Some(DistributionPointName::FullName(names)) => Some(names),
                _ => None,
            },
        )
        .flatten()
        .filter_map(|name| match name {
            GeneralName::UniformResourceIdentifier(uri) => Some(uri.to_string()),
            _ => None,
        })
        .collect())
}

fn time_of(time: x509_cert::time::Time) -> Result<OffsetDateTime, String> {
    OffsetDateTime::from_unix_timestamp(time.to_unix_duration().as_secs() as i64)
        .map_err(|e| e.to_string())
}

/// Parse a CRL and check that `issuer` signed it for `cert`'s issuer name, that it is current
/// at `now`, and that it has no delta CRL and no critical extension acrpull does not know.
fn validate(
    bytes: &[u8],
    cert: &Certificate,
    issuer: &Certificate,
    now: OffsetDateTime,
) -> Result<CertificateList, String> {
    let crl = CertificateList::from_der(bytes).map_err(|e| format!("not a DER CRL ({e})"))?;
    let tbs = &crl.tbs_cert_list;
    let issuer_name = tbs.issuer.to_der().map_err(|e| e.to_string())?;
    if issuer_name != cert.issuer_der() {
        return Err(format!(
            "it is issued by `{}`, not by `{}`",
            tbs.issuer,
            cert.issuer()
        ));
    }
    if tbs.signature != crl.signature_algorithm {
        return Err("its inner and outer signature algorithms differ".into());
    }
    let algorithm = SignatureAlgorithm::from_algorithm_identifier(&crl.signature_algorithm)
        .map_err(|e| e.to_string())?;
    let signature = crl
        .signature
        .as_bytes()
        .ok_or("its signature bit string has unused bits")?;
    let (outer, _) = x509::tlv_header(bytes, 0).map_err(|e| e.to_string())?;
    let (inner, length) = x509::tlv_header(bytes, outer).map_err(|e| e.to_string())?;
    let signed = bytes
        .get(outer..outer + inner + length)
        .ok_or("truncated tbsCertList")?;
    issuer
        .public_key()
        .map_err(|e| e.to_string())?
        .verify(algorithm, signed, signature)
        .map_err(|e| {
            format!(
                "its signature does not verify with the key of `{}` ({e})",
                issuer.subject()
            )
        })?;
    let this_update = time_of(tbs.this_update)?;
    if this_update > now {
        return Err(format!(
            "it is not valid before {} (thisUpdate)",
            x509::rfc3339(this_update)
        ));
    }
    if let Some(next_update) = tbs.next_update {
        let next_update = time_of(next_update)?;
        if now > next_update {
            return Err(format!(
                "it expired at {} (nextUpdate)",
                x509::rfc3339(next_update)
            ));
        }
    }
    for extension in tbs.crl_extensions.iter().flatten() {
        if extension.extn_id == FRESHEST_CRL {
            return Err("it names a delta CRL, which acrpull does not read".into());
        }
        if extension.critical && extension.extn_id != ISSUING_DISTRIBUTION_POINT {
            return Err(format!(
                "it has the unknown critical extension {}",
                extension.extn_id
            ));
        }
    }
    Ok(crl)
}

/// `cert`'s entry in `crl`, if it is revoked: its revocation date and reason. An entry whose
/// invalidity date is after `signing_time` does not revoke a signature made before it.
fn revoked_entry(
    crl: &CertificateList,
    cert: &Certificate,
    signing_time: Option<OffsetDateTime>,
) -> Result<Option<String>, String> {
    let serial = trim_serial(cert.serial());
    let entries = crl.tbs_cert_list.revoked_certificates.iter().flatten();
    for entry in entries.filter(|e| trim_serial(e.serial_number.as_bytes()) == serial) {
        let mut invalidity = None;
        let mut reason = None;
        for extension in entry.crl_entry_extensions.iter().flatten() {
            let value = extension.extn_value.as_bytes();
            if extension.extn_id == INVALIDITY_DATE {
                let date = der::asn1::GeneralizedTime::from_der(value)
                    .map_err(|e| format!("an unreadable invalidity date ({e})"))?;
                invalidity = Some(
                    OffsetDateTime::from_unix_timestamp(date.to_unix_duration().as_secs() as i64)
                        .map_err(|e| e.to_string())?,
                );
            } else if extension.extn_id == CRL_REASON {
                reason = der::asn1::Any::from_der(value)
                    .ok()
                    .and_then(|any| any.value().first().copied());
            } else if extension.critical {
                return Err(format!(
                    "an entry has the unknown critical extension {}",
                    extension.extn_id
                ));
            }
        }
        if let (Some(signed), Some(invalid)) = (signing_time, invalidity) {
            if signed < invalid {
                continue;
            }
        }
        let revoked_at = time_of(entry.revocation_date)?;
        return Ok(Some(format!(
            "serial {} revoked at {}{}",
            hex::encode(serial),
            x509::rfc3339(revoked_at),
            reason
                .map(|code| format!(" (reason code {code})"))
                .unwrap_or_default()
        )));
    }
    Ok(None)
}

/// A serial number's bytes without the sign-padding zeros, so encodings compare equal.
fn trim_serial(bytes: &[u8]) -> &[u8] {
    let start = bytes.iter().position(|b| *b != 0).unwrap_or(bytes.len());
    &bytes[start..]
}

#[cfg(test)]
#[path = "revocation_tests.rs"]
mod tests;
