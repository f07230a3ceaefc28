//! Parsing token and error responses from IMDS, App Service and Entra ID.
//!
//! The three endpoints disagree on types: IMDS sends every field as a JSON string
//! (`"expires_in":"3599"`), App Service sends `expires_on` as a string and no `expires_in`, Entra
//! ID sends numbers. Older App Service APIs even send dates. Parsing is liberal, as MSAL Go's is
//! (spec 1.3): `expires_on` as number, integer string or date, then `expires_in`, then the JWT `exp`.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::Deserialize;

use super::{AadToken, Error};
use crate::secret::{jwt_expiry, Secret};

#[derive(Deserialize)]
struct RawTokenResponse {
    access_token: Option<String>,
    expires_in: Option<serde_json::Value>,
    expires_on: Option<serde_json::Value>,
}

/// Parse a successful token response received at `now`.
pub(crate) fn parse_token_response(
    endpoint: &str,
    body: &[u8],
    now: SystemTime,
) -> Result<AadToken, Error> {
    let invalid = |detail: String| Error::InvalidResponse {
        endpoint: endpoint.to_string(),
        detail,
    };
    // The body holds a token, so serde's message (which can quote values) is not shown.
    let raw: RawTokenResponse = serde_json::from_slice(body)
        .map_err(|_| invalid("the body is not a JSON token response".to_string()))?;
    let token = raw
        .access_token
        .filter(|token| !token.is_empty())
        .ok_or_else(|| invalid("no access_token in the response".to_string()))?;
    let expires_at = raw
        .expires_on
        .as_ref()
        .and_then(parse_expires_on)
        .or_else(|| {
            let seconds = raw.expires_in.as_ref().and_then(json_integer)?;
            now.checked_add(Duration::from_secs(seconds))
        })
        .or_else(|| jwt_expiry(&token))
        .ok_or_else(|| invalid("no usable expires_on, expires_in or JWT exp".to_string()))?;
    Ok(AadToken {
        token: Secret::new(token),
        expires_at,
    })
}

/// An integer carried as a JSON number or a string of digits.
fn json_integer(value: &serde_json::Value) -> Option<u64> {
    match value {
        serde_json::Value::Number(number) => number.as_u64(),
        serde_json::Value::String(text) => text.trim().parse().ok(),
        _ => None,
    }
}

/// `expires_on` as epoch seconds (number or string) or one of the date forms MSAL accepts.
/// Times `SystemTime` cannot hold count as absent (adding them would panic).
fn parse_expires_on(value: &serde_json::Value) -> Option<SystemTime> {
    if let Some(seconds) = json_integer(value) {
        return UNIX_EPOCH.checked_add(Duration::from_secs(seconds));
    }
    let text = value.as_str()?.trim();
    parse_utc_date(text).and_then(|seconds| UNIX_EPOCH.checked_add(Duration::from_secs(seconds)))
}

/// Epoch seconds of `yyyy-MM-dd HH:mm:ss`, `yyyy-MM-ddTHH:mm:ss[.fff]Z` (RFC 3339 in UTC, or with
/// a `+00:00` offset) or `MM/dd/yyyy HH:mm:ss [+00:00]`. Other offsets are not accepted: a wrong
/// guess would make the cache keep an expired token.
fn parse_utc_date(text: &str) -> Option<u64> {
    let text = text
        .strip_suffix("+00:00")
        .or_else(|| text.strip_suffix('Z'))
        .unwrap_or(text)
        .trim();
    let (date, time) = text.split_once([' ', 'T'])?;
    let (year, month, day) = if date.contains('/') {
        let mut parts = date.split('/');
        let month = parts.next()?.parse().ok()?;
        let day = parts.next()?.parse().ok()?;
        (parts.next()?.parse().ok()?, month, day)
    } else {
        let mut parts = date.split('-');
        (
            parts.next()?.parse().ok()?,
            parts.next()?.parse().ok()?,
            parts.next()?.parse().ok()?,
        )
    };
    let time = time.split('.').next()?;
    let mut parts = time.split(':');
    let hour: u64 = parts.next()?.parse().ok()?;
    let minute: u64 = parts.next()?.parse().ok()?;
    let second: u64 = parts.next()?.parse().ok()?;
    // Years past 9999 are not dates any endpoint sends, and would overflow the day count.
    if !(1..=12).contains(&month)
        || !(1..=31).contains(&day)
        || hour > 23
        || minute > 59
        || year > 9999
    {
        return None;
    }
    let days = days_from_civil(year, month, day)?;
    Some(days * 86_400 + hour * 3600 + minute * 60 + second.min(60))
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(year: i64, month: u32, day: u32) -> Option<u64> {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let month = i64::from(month);
    let day_of_year =
        (153 * (if month > 2 { month - 3 } else { month + 9 }) + 2) / 5 + i64::from(day) - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    u64::try_from(era * 146_097 + day_of_era - 719_468).ok()
}

/// A readable description of an error body: `error: error_description` (OAuth and IMDS),
/// `code: message` of a nested `error` object (Service Fabric), the first `errors[]` entry
/// (registry style), a bare `message` (the legacy App Service API Azure ML serves), or the
/// body itself, shortened.
pub(crate) fn describe_error_body(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let Ok(serde_json::Value::Object(parsed)) = serde_json::from_slice::<serde_json::Value>(body)
    else {
        return crate::http::excerpt(&text);
    };
    let field = |value: Option<&serde_json::Value>, name: &str| {
        value
            .and_then(|value| value.get(name))
            .and_then(serde_json::Value::as_str)
            .map(str::to_string)
    };
    let pair = |code: Option<String>, message: Option<String>| match (code, message) {
        (Some(code), Some(message)) => Some(format!("{code}: {message}")),
        (None, Some(message)) => Some(message),
        (Some(code), None) => Some(code),
        (None, None) => None,
    };
    let object = serde_json::Value::Object(parsed.clone());
    let described = match parsed.get("error") {
        Some(serde_json::Value::Object(_)) => pair(
            field(parsed.get("error"), "code"),
            field(parsed.get("error"), "message"),
        ),
        _ => pair(
            field(Some(&object), "error"),
            field(Some(&object), "error_description"),
        ),
    }
    .or_else(|| {
        let first = parsed.get("errors")?.as_array()?.first()?;
        Some(format!(
            "{}: {}",
            field(Some(first), "code").unwrap_or_else(|| "error".into()),
            field(Some(first), "message").unwrap_or_default()
        ))
    })
    .or_else(|| field(Some(&object), "message"));
    match described {
        Some(described) => crate::http::excerpt(&described),
        None => crate::http::excerpt(&text),
    }
}

/// Only the `error_description` of an IMDS / App Service error body, if present.
pub(crate) fn error_description(body: &[u8]) -> Option<String> {
    #[derive(Deserialize)]
    struct Described {
        error_description: Option<String>,
    }
    serde_json::from_slice::<Described>(body)
        .ok()?
        .error_description
        .map(|description| crate::http::excerpt(&description))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn epoch(time: SystemTime) -> u64 {
        time.duration_since(UNIX_EPOCH).unwrap().as_secs()
    }

    #[test]
    fn imds_string_fields() {
        let body = br#"{"access_token":"abc","refresh_token":"","expires_in":"3599",
            "expires_on":"1506484173","not_before":"1506480273","resource":"r","token_type":"Bearer"}"#;
        let token = parse_token_response("imds", body, SystemTime::now()).unwrap();
        assert_eq!(token.token.expose(), "abc");
        assert_eq!(epoch(token.expires_at), 1_506_484_173);
    }

    #[test]
    fn numeric_fields_and_expires_in_fallback() {
        let now = UNIX_EPOCH + Duration::from_secs(1_000);
        let token =
            parse_token_response("e", br#"{"access_token":"a","expires_in":3599}"#, now).unwrap();
        assert_eq!(epoch(token.expires_at), 4_599);
        let token =
            parse_token_response("e", br#"{"access_token":"a","expires_on":2000}"#, now).unwrap();
        assert_eq!(epoch(token.expires_at), 2_000);
        let token =
            parse_token_response("e", br#"{"access_token":"a","expires_in":"60"}"#, now).unwrap();
        assert_eq!(epoch(token.expires_at), 1_060);
    }

    #[test]
    fn date_forms() {
        for form in [
            "2017-09-27 03:49:33",
            "2017-09-27T03:49:33Z",
            "2017-09-27T03:49:33.123+00:00",
            "09/27/2017 03:49:33 +00:00",
            "09/27/2017 03:49:33",
        ] {
            let value = serde_json::Value::String(form.to_string());
            assert_eq!(
                parse_expires_on(&value).map(epoch),
                Some(1_506_484_173),
                "{form}"
            );
        }
        let value = serde_json::Value::String("09/27/2017 03:49:33 +02:00".to_string());
        assert_eq!(parse_expires_on(&value), None);
    }

    #[test]
    fn jwt_exp_fallback_and_failures() {
        // {"alg":"none"}.{"exp":1700000000}.
        let body = br#"{"access_token":"eyJhbGciOiJub25lIn0.eyJleHAiOjE3MDAwMDAwMDB9."}"#;
        let token = parse_token_response("e", body, SystemTime::now()).unwrap();
        assert_eq!(epoch(token.expires_at), 1_700_000_000);

        let error = parse_token_response(
            "e",
            br#"{"access_token":"opaque-secret"}"#,
            SystemTime::now(),
        )
        .unwrap_err()
        .to_string();
        assert!(error.contains("expires"), "{error}");
        assert!(!error.contains("opaque-secret"), "{error}");
        let error =
            parse_token_response("e", br#"{"access_token":42}"#, SystemTime::now()).unwrap_err();
        assert!(error.to_string().contains("not a JSON token response"));
    }

    #[test]
    fn error_bodies() {
        assert_eq!(
            describe_error_body(
                br#"{"error":"invalid_request","error_description":"Identity not found"}"#
            ),
            "invalid_request: Identity not found"
        );
        assert_eq!(
            describe_error_body(br#"{"errors":[{"code":"UNAUTHORIZED","message":"no"}]}"#),
            "UNAUTHORIZED: no"
        );
        assert_eq!(describe_error_body(b"  plain text "), "plain text");
        assert_eq!(
            describe_error_body(
                br#"{"error":{"code":"SecretHeaderNotFound","message":"Secret is not found"}}"#
            ),
            "SecretHeaderNotFound: Secret is not found"
        );
        assert_eq!(
            describe_error_body(br#"{"statusCode":400,"message":"No MSI found"}"#),
            "No MSI found"
        );
        assert_eq!(describe_error_body(br#"{"other":1}"#), r#"{"other":1}"#);
        assert_eq!(
            error_description(
                br#"{"error":"x","error_description":"Multiple user assigned identities exist"}"#
            )
            .as_deref(),
            Some("Multiple user assigned identities exist")
        );
    }

    /// Found by the `token_response` fuzz target's corpus: expiries `SystemTime` cannot hold
    /// used to panic (`Instant`/`SystemTime` overflow) instead of being treated as absent.
    #[test]
    fn expiry_beyond_system_time_is_refused_not_a_panic() {
        let now = UNIX_EPOCH + Duration::from_secs(1_000);
        for body in [
            &br#"{"access_token":"a","expires_on":18446744073709551615}"#[..],
            br#"{"access_token":"a","expires_in":"18446744073709551615"}"#,
            br#"{"access_token":"a","expires_on":"9223372036854775807-01-01 00:00:00"}"#,
            br#"{"access_token":"a","expires_on":"99999999999-01-01 00:00:00"}"#,
        ] {
            assert!(parse_token_response("e", body, now).is_err());
        }
        // A representable expires_on still wins; an absurd one falls back to expires_in.
        let token = parse_token_response(
            "e",
            br#"{"access_token":"a","expires_on":18446744073709551615,"expires_in":60}"#,
            now,
        )
        .unwrap();
        assert_eq!(epoch(token.expires_at), 1_060);
    }
}
