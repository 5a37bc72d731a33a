//! `rate_limit` (global, then the route's): one decision per configured limit, keyed by
//! client address, API-key consumer, token subject, route, a header or the client
//! certificate (subject, SANs or fingerprint). Over the limit →
//! 429 with Retry-After; every response of a limited route carries RateLimit-Limit,
//! -Remaining and -Reset of the tightest limit.
//!
//! A decision taken by `on_redis_error` (Redis could not answer) sets no RateLimit-*
//! header (nothing was counted) and is marked in the access log (`rate_limit_policy`).
//!
//! A request without a value for the key (no token on a `key: sub` limit) is counted by
//! its client address instead.

use crate::config::model::{ClientCertField, RateKey};
use crate::limits::{Decision, RateLimit};
use crate::request::{GatewayError, RequestCtx};
use http::HeaderValue;
use pingora::http::{KnownHeaderName, RequestHeader};
use std::sync::Arc;

pub struct RateLimitStep {
    limits: Vec<Arc<RateLimit>>,
}

impl RateLimitStep {
    /// `None` when no limit applies.
    pub fn new(limits: Vec<Arc<RateLimit>>) -> Option<Self> {
        (!limits.is_empty()).then_some(RateLimitStep { limits })
    }

    /// Each limit, with the key this request would be counted under (explain).
    pub fn describe(&self, req: &RequestHeader, ctx: &RequestCtx) -> Vec<String> {
        self.limits
            .iter()
            .map(|limit| {
                let c = &limit.config;
                let scope = match c.scope {
                    crate::config::model::RateScope::Local => "local",
                    crate::config::model::RateScope::Global => "global (Redis)",
                };
                format!(
                    "{} requests per {:?}, {scope}, limit {:?}, this request counted under key {:?}",
                    c.requests,
                    c.per,
                    limit.name,
                    key_value(limit.key_kind(), req, ctx)
                )
            })
            .collect()
    }

    pub async fn run(&self, req: &RequestHeader, ctx: &mut RequestCtx) -> Result<(), GatewayError> {
        for limit in &self.limits {
            let key = key_value(limit.key_kind(), req, ctx);
            let decision = limit.check(&key, ctx.started).await;
            if decision.by_policy {
                ctx.rate_limit_policy = Some(if decision.allowed { "allow" } else { "deny" });
                if !decision.allowed {
                    return Err(GatewayError::RateLimited {
                        retry_after: decision.retry_after_secs,
                    });
                }
                continue;
            }
            let (allowed, retry_after) = (decision.allowed, decision.retry_after_secs);
            ctx.rate_limit = Some(match ctx.rate_limit.take() {
                Some(seen) if seen.remaining <= decision.remaining && allowed => seen,
                _ => decision,
            });
            if !allowed {
                return Err(GatewayError::RateLimited { retry_after });
            }
        }
        Ok(())
    }
}

fn key_value(kind: &RateKey, req: &RequestHeader, ctx: &RequestCtx) -> String {
    let identity = ctx.identity.as_deref();
    let value = match kind {
        RateKey::ClientIp => None,
        RateKey::ApiKey => identity.and_then(|i| i.consumer.clone()),
        RateKey::Subject => identity.and_then(|i| i.subject.clone()),
        RateKey::Route => Some(String::new()),
        RateKey::Header(name) => req
            .headers
            .get(name)
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned()),
        RateKey::ClientCert(field) => ctx.verified_cert().map(|cert| {
            match field {
                ClientCertField::Subject => &cert.subject,
                ClientCertField::San => &cert.san,
                ClientCertField::Fingerprint => &cert.fingerprint,
            }
            .clone()
        }),
    };
    value.unwrap_or_else(|| match ctx.client_ip_text() {
        Some(ip) => {
            let ip = ip.as_str();
            let mut key = String::with_capacity(3 + ip.len());
            key.push_str("ip:");
            key.push_str(ip);
            key
        }
        None => "ip:unknown".to_string(),
    })
}

static LIMIT: KnownHeaderName = KnownHeaderName::from_static("ratelimit-limit");
static REMAINING: KnownHeaderName = KnownHeaderName::from_static("ratelimit-remaining");
static RESET: KnownHeaderName = KnownHeaderName::from_static("ratelimit-reset");

/// The RateLimit-* headers of `decision`.
pub fn headers(decision: &Decision) -> [(&'static KnownHeaderName, HeaderValue); 3] {
    [
        (&LIMIT, decision.limit_value.clone()),
        (&REMAINING, count(decision.remaining)),
        (&RESET, count(decision.reset_secs)),
    ]
}

/// `n` as a header value. Below 100 (a reset in seconds, a nearly spent bucket) it is
/// static text: `HeaderValue::from(n)` allocates its text, ≈ 280 instructions a value.
fn count(n: u64) -> HeaderValue {
    const SMALL: [&str; 100] = [
        "0", "1", "2", "3", "4", "5", "6", "7", "8", "9", "10", "11", "12", "13", "14", "15", "16", "17", "18", "19",
        "20", "21", "22", "23", "24", "25", "26", "27", "28", "29", "30", "31", "32", "33", "34", "35", "36", "37",
        "38", "39", "40", "41", "42", "43", "44", "45", "46", "47", "48", "49", "50", "51", "52", "53", "54", "55",
        "56", "57", "58", "59", "60", "61", "62", "63", "64", "65", "66", "67", "68", "69", "70", "71", "72", "73",
        "74", "75", "76", "77", "78", "79", "80", "81", "82", "83", "84", "85", "86", "87", "88", "89", "90", "91",
        "92", "93", "94", "95", "96", "97", "98", "99",
    ];
    match usize::try_from(n).ok().and_then(|i| SMALL.get(i)) {
        Some(text) => HeaderValue::from_static(text),
        None => HeaderValue::from(n),
    }
}

#[cfg(test)]
mod tests {
    use super::count;

    #[test]
    fn counts_are_written_in_decimal_from_the_table_and_beyond_it() {
        for n in [0, 7, 42, 99, 100, 1_000_000, u64::MAX] {
            assert_eq!(count(n).to_str().unwrap(), n.to_string());
        }
    }
}
