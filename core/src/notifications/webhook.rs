//! Webhook requests as Standard Webhooks 1.0 says, through the
//! [`crate::notifications::ssrf`] guard.
//!
//! Every attempt is a `POST` of the delivery's body (`application/json`) with
//! - `webhook-id`: the event's id, the same in every retry and redelivery;
//! - `webhook-timestamp`: the attempt's time, Unix seconds;
//! - `webhook-signature`: `v1,` and the base64 of HMAC-SHA256, keyed with the bytes of
//!   the secret after `whsec_` (base64-decoded), over `{id}.{timestamp}.{body}`;
//!
//! and the channel's extra headers. The host is resolved once and the connection made
//! to the addresses the guard allowed
//! ([`crate::notifications::ssrf::Target`]); redirects are never followed;
//! the whole attempt is bounded by the configured timeout. What the receiver answered
//! decides what comes next ([`judge`]).

use std::collections::BTreeMap;
use std::sync::OnceLock;
use std::time::{Duration, Instant, SystemTime};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

use crate::notifications::ssrf::{Guard, Resolver};

/// How much of a response the log keeps.
pub const RESPONSE_SNIPPET: usize = 4096;

/// The longest `Retry-After` honoured.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(24 * 3600);

/// What the log shows instead of an extra header's value.
pub const HIDDEN: &str = "[hidden]";

/// The HMAC key of a `whsec_<base64>` secret: the decoded bytes.
pub fn signing_key(secret: &str) -> Result<Vec<u8>, String> {
    let body = secret.strip_prefix("whsec_").unwrap_or(secret);
    STANDARD
        .decode(body)
        .map_err(|_| "the signing secret is not whsec_ and base64".to_owned())
}

/// The `webhook-signature` value: `v1,<base64 HMAC-SHA256(key, "{id}.{ts}.{body}")>`.
pub fn sign(key: &[u8], id: &str, timestamp: i64, body: &str) -> String {
    // HMAC takes a key of any length, so this never fails.
    let Ok(mut mac) = <Hmac<Sha256> as KeyInit>::new_from_slice(key) else {
        return "v1,".to_owned();
    };
    mac.update(format!("{id}.{timestamp}.").as_bytes());
    mac.update(body.as_bytes());
    format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes()))
}

/// What an answer means for the delivery.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    Delivered,
    /// Try again: after the backoff, or after `after` when the receiver said.
    Retry {
        after: Option<Duration>,
    },
    /// Do not try again (a 4xx, a redirect, a refused address).
    Permanent,
    /// `410 Gone`: do not try again, and disable the channel.
    Gone,
}

/// One attempt as the log keeps it.
#[derive(Clone, Debug)]
pub struct Attempt {
    /// 0 when there was no HTTP answer.
    pub status: u16,
    /// '' when it was delivered.
    pub error: String,
    pub latency: Duration,
    pub response: String,
    /// As sent; extra header values hidden.
    pub headers: BTreeMap<String, String>,
    pub verdict: Verdict,
}

/// `Retry-After` as seconds or an HTTP date, relative to `now`.
pub fn retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    let wait = if let Ok(seconds) = value.parse::<u64>() {
        Duration::from_secs(seconds)
    } else {
        let at = httpdate::parse_http_date(value).ok()?;
        at.duration_since(now).unwrap_or(Duration::ZERO)
    };
    Some(wait.min(MAX_RETRY_AFTER))
}

/// What an HTTP status means (with the `Retry-After` seen).
pub fn judge(status: u16, retry_after: Option<Duration>) -> Verdict {
    match status {
        200..=299 => Verdict::Delivered,
        410 => Verdict::Gone,
        408 | 429 | 500..=599 => Verdict::Retry { after: retry_after },
        300..=499 => Verdict::Permanent,
        _ => Verdict::Retry { after: None },
    }
}

/// A short text of an error and its causes.
fn describe(error: &reqwest::Error) -> String {
    let mut text = if error.is_timeout() {
        "timed out".to_owned()
    } else if error.is_connect() {
        "cannot connect".to_owned()
    } else {
        "request failed".to_owned()
    };
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// The TLS settings of every webhook client: ring, the webpki roots (`None` if they
/// cannot be built, and then reqwest's own are used).
fn tls_config() -> Option<rustls::ClientConfig> {
    static CONFIG: OnceLock<Option<rustls::ClientConfig>> = OnceLock::new();
    CONFIG
        .get_or_init(|| {
            let roots = rustls::RootCertStore {
                roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
            };
            let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
            rustls::ClientConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()
                .ok()
                .map(|b| b.with_root_certificates(roots).with_no_client_auth())
        })
        .clone()
}

/// What one attempt sends.
pub struct Request<'a> {
    pub url: &'a str,
    /// The signing secret (`whsec_...`).
    pub secret: &'a str,
    /// The channel's extra headers (values sent, hidden in the log).
    pub extra_headers: &'a BTreeMap<String, String>,
    pub event_id: &'a str,
    pub body: &'a str,
    pub timeout: Duration,
}

/// Makes one attempt; see the module docs.
pub async fn send(guard: &Guard, resolver: &dyn Resolver, request: Request<'_>) -> Attempt {
    let attempt = send_once(guard, resolver, request).await;
    crate::observe::webhook_delivery(match attempt.verdict {
        Verdict::Delivered => "delivered",
        Verdict::Retry { .. } => "retry",
        Verdict::Permanent => "permanent",
        Verdict::Gone => "gone",
    });
    attempt
}

async fn send_once(guard: &Guard, resolver: &dyn Resolver, request: Request<'_>) -> Attempt {
    let started = Instant::now();
    let timestamp = chrono::Utc::now().timestamp();
    let mut logged = BTreeMap::new();
    let fail = |error: String, verdict: Verdict, logged: BTreeMap<String, String>| Attempt {
        status: 0,
        error,
        latency: started.elapsed(),
        response: String::new(),
        headers: logged,
        verdict,
    };
    let key = match signing_key(request.secret) {
        Ok(key) => key,
        Err(e) => return fail(e, Verdict::Permanent, logged),
    };
    let signature = sign(&key, request.event_id, timestamp, request.body);
    let mut headers = reqwest::header::HeaderMap::new();
    let mut put = |name: &str, value: &str, shown: &str| {
        if let (Ok(n), Ok(v)) = (
            reqwest::header::HeaderName::from_bytes(name.as_bytes()),
            reqwest::header::HeaderValue::from_str(value),
        ) {
            headers.insert(n, v);
            logged.insert(name.to_owned(), shown.to_owned());
        }
    };
    for (name, value) in request.extra_headers {
        put(name, value, HIDDEN);
    }
    put("content-type", "application/json", "application/json");
    put("webhook-id", request.event_id, request.event_id);
    let ts = timestamp.to_string();
    put("webhook-timestamp", &ts, &ts);
    put("webhook-signature", &signature, &signature);
    let target = match tokio::time::timeout(request.timeout, guard.resolve(resolver, request.url))
        .await
    {
        Ok(Ok(target)) => target,
        Ok(Err(why)) => {
            // A name that does not resolve may resolve later; an address the guard
            // refuses will not become allowed by retrying.
            let verdict = if why.starts_with("cannot resolve") || why.ends_with("has no address") {
                Verdict::Retry { after: None }
            } else {
                Verdict::Permanent
            };
            return fail(format!("refused: {why}"), verdict, logged);
        }
        Err(_) => {
            return fail(
                "timed out resolving the host".into(),
                Verdict::Retry { after: None },
                logged,
            );
        }
    };
    let mut builder = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(request.timeout)
        .connect_timeout(request.timeout)
        .no_proxy()
        .user_agent(concat!("Berth-Webhooks/", env!("CARGO_PKG_VERSION")))
        .resolve_to_addrs(&target.host, &target.addrs);
    if let Some(tls) = tls_config() {
        builder = builder.tls_backend_preconfigured(tls);
    }
    let client = builder.build();
    let client = match client {
        Ok(client) => client,
        Err(e) => return fail(describe(&e), Verdict::Retry { after: None }, logged),
    };
    logged.insert(
        "user-agent".into(),
        concat!("Berth-Webhooks/", env!("CARGO_PKG_VERSION")).into(),
    );
    let sent = client
        .post(target.url.clone())
        .headers(headers)
        .body(request.body.to_owned())
        .send()
        .await;
    let mut response = match sent {
        Ok(response) => response,
        Err(e) => return fail(describe(&e), Verdict::Retry { after: None }, logged),
    };
    let status = response.status().as_u16();
    let wait = response
        .headers()
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| retry_after(v, SystemTime::now()));
    let location = response
        .headers()
        .get(reqwest::header::LOCATION)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let mut snippet: Vec<u8> = Vec::new();
    while snippet.len() < RESPONSE_SNIPPET {
        match response.chunk().await {
            Ok(Some(chunk)) => snippet.extend_from_slice(&chunk),
            Ok(None) | Err(_) => break,
        }
    }
    snippet.truncate(RESPONSE_SNIPPET);
    let text = String::from_utf8_lossy(&snippet).into_owned();
    let verdict = judge(status, wait);
    let reason = response
        .status()
        .canonical_reason()
        .map(|r| format!("{status} {r}"))
        .unwrap_or_else(|| status.to_string());
    let error = match (&verdict, status) {
        (Verdict::Delivered, _) => String::new(),
        (_, 300..=399) => format!(
            "the endpoint answered {reason}{}; redirects are not followed: set the channel's URL to the final address",
            location.map(|l| format!(" to {l}")).unwrap_or_default()
        ),
        (Verdict::Gone, _) => format!("the endpoint answered {reason}: it is gone"),
        _ => format!("the endpoint answered {reason}"),
    };
    Attempt {
        status,
        error,
        latency: started.elapsed(),
        response: text,
        headers: logged,
        verdict,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_follow_the_spec() {
        // HMAC-SHA256 over "{id}.{ts}.{body}" with the decoded secret, base64, v1 prefix:
        // checked against an independent computation of the same bytes.
        let key = signing_key("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").expect("key");
        assert_eq!(key.len(), 24);
        let signature = sign(
            &key,
            "msg_p5jXN8AQM9LWM0D4loKWxJek",
            1_614_265_330,
            r#"{"test": 2432232314}"#,
        );
        assert_eq!(signature, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
    }

    #[test]
    fn statuses_decide_what_comes_next() {
        assert_eq!(judge(200, None), Verdict::Delivered);
        assert_eq!(judge(204, None), Verdict::Delivered);
        assert_eq!(judge(500, None), Verdict::Retry { after: None });
        assert_eq!(
            judge(503, Some(Duration::from_secs(7))),
            Verdict::Retry {
                after: Some(Duration::from_secs(7))
            }
        );
        assert_eq!(judge(408, None), Verdict::Retry { after: None });
        assert_eq!(judge(429, None), Verdict::Retry { after: None });
        assert_eq!(judge(410, None), Verdict::Gone);
        assert_eq!(judge(400, None), Verdict::Permanent);
        assert_eq!(judge(404, None), Verdict::Permanent);
        assert_eq!(judge(302, None), Verdict::Permanent);
    }

    #[test]
    fn retry_after_reads_seconds_and_dates() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000_000);
        assert_eq!(retry_after("120", now), Some(Duration::from_secs(120)));
        let later = httpdate::fmt_http_date(now + Duration::from_secs(30));
        assert_eq!(retry_after(&later, now), Some(Duration::from_secs(30)));
        let earlier = httpdate::fmt_http_date(now - Duration::from_secs(30));
        assert_eq!(retry_after(&earlier, now), Some(Duration::ZERO));
        assert_eq!(retry_after("soon", now), None);
        assert_eq!(retry_after("999999999", now), Some(MAX_RETRY_AFTER));
    }
}
