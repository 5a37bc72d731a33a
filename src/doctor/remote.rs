//! The checks across the network: upstream targets (TCP, TLS, health path), the identity
//! provider (JWKS, introspection), Redis; and the clock against those that tell time.

use super::Finding;
use crate::config::model::{HealthCheckConfig, UpstreamTls};
use crate::snapshot::Snapshot;
use openssl::ssl::{SslConnector, SslMethod, SslVerifyMode};
use std::net::SocketAddr;
use std::time::Duration;

/// How long an identity provider or a health path may take to answer here.
const HTTP_TIMEOUT: Duration = Duration::from_secs(5);

/// Clock skew worth a warning: token `exp`/`nbf` checks and logs compared across hosts
/// go wrong beyond a few seconds.
const SKEW_WARN: Duration = Duration::from_secs(5);

/// A peer's clock minus ours, with who said so.
pub struct Clock {
    pub peer: String,
    pub skew_ms: i64,
}

pub async fn upstreams(s: &Snapshot) -> Vec<Finding> {
    let mut findings = Vec::new();
    for (name, pool) in &s.upstreams {
        let config = &pool.config;
        for target in &config.targets {
            let what = format!("{name} {}", target.spec);
            let Some(addr) = target.addr else {
                findings.push(Finding::fail(
                    "upstream",
                    format!("{what}: the name does not resolve"),
                    "check the name and DNS; gatehouse starts anyway and resolves it again every few seconds",
                ));
                continue;
            };
            let connected = tokio::time::timeout(config.connect_timeout, tokio::net::TcpStream::connect(addr)).await;
            match connected {
                Err(_) => {
                    findings.push(Finding::fail(
                        "upstream",
                        format!("{what}: no TCP connection within {:?}", config.connect_timeout),
                        "a firewall drops the packets, or the host is down",
                    ));
                    continue;
                }
                Ok(Err(e)) => {
                    findings.push(Finding::fail(
                        "upstream",
                        format!("{what}: cannot connect: {e}"),
                        format!("start the service, or fix upstreams.{name}.targets"),
                    ));
                    continue;
                }
                // Closed before the next check: a one-connection-at-a-time server would
                // wait on it.
                Ok(Ok(stream)) => drop(stream),
            }
            if let Some(tls) = &config.tls {
                let handshake = tls_handshake(addr, tls.clone()).await;
                if let Err(e) = handshake {
                    findings.push(Finding::fail(
                        "upstream",
                        format!("{what}: TLS handshake as {} failed: {e}", tls.sni),
                        format!("check upstreams.{name}.sni and ca_file (or verify: false for a test upstream)"),
                    ));
                    continue;
                }
            }
            let secure = if config.tls.is_some() { "TLS " } else { "" };
            match &config.health_check {
                None => findings.push(Finding::ok("upstream", format!("{what}: accepts {secure}connections"))),
                Some(hc) => findings.push(health_path(&what, addr, hc, config.tls.as_ref()).await),
            }
        }
    }
    findings
}

async fn tls_handshake(addr: SocketAddr, tls: UpstreamTls) -> Result<(), String> {
    let task = tokio::task::spawn_blocking(move || {
        let mut builder = SslConnector::builder(SslMethod::tls()).map_err(|e| e.to_string())?;
        if let Some(ca) = &tls.ca_file {
            builder.set_ca_file(ca).map_err(|e| format!("ca_file {ca}: {e}"))?;
        }
        if !tls.verify {
            builder.set_verify(SslVerifyMode::NONE);
        }
        let connector = builder.build();
        let stream = std::net::TcpStream::connect_timeout(&addr, HTTP_TIMEOUT).map_err(|e| e.to_string())?;
        let _ = stream.set_read_timeout(Some(HTTP_TIMEOUT));
        let mut config = connector.configure().map_err(|e| e.to_string())?;
        config.set_verify_hostname(tls.verify);
        config.connect(&tls.sni, stream).map(|_| ()).map_err(|e| e.to_string())
    });
    task.await.map_err(|e| e.to_string())?
}

async fn health_path(what: &str, addr: SocketAddr, hc: &HealthCheckConfig, tls: Option<&UpstreamTls>) -> Finding {
    let client = match http_client(tls.map(|t| (t, addr))) {
        Ok(c) => c,
        Err(e) => return Finding::fail("upstream", format!("{what}: {e}"), "check the upstream's tls settings"),
    };
    let url = match tls {
        Some(t) => format!("https://{}:{}{}", t.sni, addr.port(), hc.path),
        None => format!("http://{addr}{}", hc.path),
    };
    let mut req = client.get(&url);
    if let Some(host) = &hc.host {
        req = req.header(http::header::HOST, host);
    }
    match req.send().await {
        Ok(r) if r.status().is_success() => Finding::ok(
            "upstream",
            format!("{what}: health check {} answers {}", hc.path, r.status().as_u16()),
        ),
        Ok(r) => Finding::fail(
            "upstream",
            format!("{what}: health check {} answers {}", hc.path, r.status().as_u16()),
            "the target will be marked unhealthy and get no traffic: fix the service or health_check.path",
        ),
        Err(e) => Finding::fail(
            "upstream",
            format!("{what}: health check {} failed: {e}", hc.path),
            "the target will be marked unhealthy and get no traffic",
        ),
    }
}

/// A client for one check; over TLS, `sni` resolves to the target's address.
fn http_client(tls: Option<(&UpstreamTls, SocketAddr)>) -> Result<reqwest::Client, String> {
    let mut builder = reqwest::Client::builder().timeout(HTTP_TIMEOUT).no_proxy();
    if let Some((t, addr)) = tls {
        builder = builder.resolve(&t.sni, addr);
        if let Some(ca) = &t.ca_file {
            let pem = std::fs::read(ca).map_err(|e| format!("ca_file {ca}: {e}"))?;
            for cert in reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| format!("ca_file {ca}: {e}"))? {
                builder = builder.add_root_certificate(cert);
            }
        }
        if !t.verify {
            builder = builder.danger_accept_invalid_certs(true);
        }
    }
    builder.build().map_err(|e| e.to_string())
}

pub async fn identity_provider(s: &Snapshot, clocks: &mut Vec<Clock>) -> Vec<Finding> {
    let mut findings = Vec::new();
    let Ok(client) = http_client(None) else {
        return findings;
    };
    if let Some(jwks) = &s.edge.jwks {
        let url = jwks.url();
        let fetched = client.get(url).send().await;
        match fetched {
            Ok(r) => {
                note_clock(url, &r, clocks);
                let status = r.status();
                let body = r.bytes().await.unwrap_or_default();
                match (status.is_success(), crate::auth::jwks::parse_document(&body)) {
                    (true, Ok(keys)) => {
                        let mut kids: Vec<&String> = keys.keys().collect();
                        kids.sort();
                        findings.push(Finding::ok(
                            "idp",
                            format!("JWKS {url}: {} usable keys ({})", keys.len(), join(&kids)),
                        ));
                    }
                    (true, Err(e)) => findings.push(Finding::fail(
                        "idp",
                        format!("JWKS {url}: {e}"),
                        "auth.jwt.jwks_url must serve the IdP's public keys (RSA or EC, each with a kid)",
                    )),
                    (false, _) => findings.push(Finding::fail(
                        "idp",
                        format!("JWKS {url}: HTTP {}", status.as_u16()),
                        "tokens get 503 idp_unavailable until the keys load: check the URL and the IdP",
                    )),
                }
            }
            Err(e) => findings.push(Finding::fail(
                "idp",
                format!("JWKS {url}: {e}"),
                "tokens get 503 idp_unavailable until the keys load: check the URL, DNS and firewall",
            )),
        }
    }
    if let Some(i) = &s.edge.config.introspection {
        let mut req = client
            .post(&i.url)
            .form(&[("token", "gatehouse-doctor-probe"), ("token_type_hint", "access_token")]);
        if let Some(id) = &i.client_id {
            req = req.basic_auth(id, i.client_secret.as_deref());
        }
        match req.send().await {
            Ok(r) => {
                note_clock(&i.url, &r, clocks);
                let status = r.status();
                let active = r
                    .json::<serde_json::Value>()
                    .await
                    .ok()
                    .and_then(|v| v.get("active").and_then(serde_json::Value::as_bool));
                findings.push(match (status.as_u16(), active) {
                    (200, Some(_)) => Finding::ok(
                        "idp",
                        format!("introspection {}: answers (a probe token is inactive)", i.url),
                    ),
                    (401 | 403, _) => Finding::fail(
                        "idp",
                        format!(
                            "introspection {}: HTTP {} for gatehouse's credentials",
                            i.url,
                            status.as_u16()
                        ),
                        "check auth.introspection.client_id and client_secret",
                    ),
                    (code, _) => Finding::fail(
                        "idp",
                        format!("introspection {}: HTTP {code}, not an RFC 7662 answer", i.url),
                        "check auth.introspection.url",
                    ),
                });
            }
            Err(e) => findings.push(Finding::fail(
                "idp",
                format!("introspection {}: {e}", i.url),
                "opaque tokens get 503 idp_unavailable while it is unreachable",
            )),
        }
    }
    findings
}

fn join(items: &[&String]) -> String {
    items.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", ")
}

/// The peer's `Date` header against our clock (1 s resolution).
fn note_clock(peer: &str, r: &reqwest::Response, clocks: &mut Vec<Clock>) {
    let Some(date) = r.headers().get(http::header::DATE).and_then(|d| d.to_str().ok()) else {
        return;
    };
    let Ok(theirs) = jiff::fmt::rfc2822::parse(date).map(|z| z.timestamp()) else {
        return;
    };
    let ours = jiff::Timestamp::now();
    let skew_ms = theirs.as_millisecond() - ours.as_millisecond();
    clocks.push(Clock {
        peer: peer.to_string(),
        skew_ms,
    });
}

pub async fn redis(s: &Snapshot, clocks: &mut Vec<Clock>) -> Vec<Finding> {
    let Some(store) = &s.redis else {
        return Vec::new();
    };
    let url = &store.config.url;
    vec![match crate::limits::global::probe(&store.config).await {
        Ok(p) => {
            clocks.push(Clock {
                peer: format!("redis {url}"),
                skew_ms: p.skew_ms,
            });
            Finding::ok("redis", format!("{url}: connected, rate-limit script loaded"))
        }
        Err(e) => Finding::fail(
            "redis",
            format!("{url}: {e}"),
            "global limits follow on_redis_error while Redis is unreachable: check redis.url, the server and its auth",
        ),
    }]
}

pub fn clock(clocks: &[Clock]) -> Finding {
    let Some(worst) = clocks.iter().max_by_key(|c| c.skew_ms.unsigned_abs()) else {
        return Finding::ok("clock", "no peer to compare with (no IdP or Redis configured)");
    };
    let detail = format!(
        "largest skew: {} ms against {} ({} peers compared)",
        worst.skew_ms,
        worst.peer,
        clocks.len()
    );
    if worst.skew_ms.unsigned_abs() > SKEW_WARN.as_millis() as u64 {
        Finding::warn(
            "clock",
            detail,
            "run NTP (chrony, systemd-timesyncd): token exp/nbf checks go wrong when clocks disagree",
        )
    } else {
        Finding::ok("clock", detail)
    }
}

/// Fleet mode: the store answers, and this node has a last good config to fall back on.
pub async fn etcd(settings: &crate::etcd::EtcdSettings, state_dir: &std::path::Path) -> Vec<Finding> {
    let mut findings = Vec::new();
    let listed = match crate::etcd::connect(settings).await {
        Ok(mut client) => crate::etcd::list(&mut client, settings).await,
        Err(e) => Err(e),
    };
    findings.push(match listed {
        Ok(l) if l.entries.is_empty() => Finding::fail(
            "etcd",
            format!("{}: nothing under the prefix (revision {})", settings.describe(), l.revision),
            "push a config first: gatehouse config push FILE --etcd URL",
        ),
        Ok(l) => Finding::ok(
            "etcd",
            format!("{}: {} keys at revision {}", settings.describe(), l.entries.len(), l.revision),
        ),
        Err(e) => Finding::fail(
            "etcd",
            e,
            "check the endpoints and that a quorum of members is up; nodes keep serving (a restarted one its state file) meanwhile",
        ),
    });
    let state = crate::config::fleet::state_file(state_dir);
    findings.push(if state.exists() {
        Finding::ok("etcd", format!("last good config kept at {}", state.display()))
    } else {
        Finding::warn(
            "etcd",
            format!("no last good config at {} yet", state.display()),
            "written by the first run that reads etcd; until then a start while etcd is down has nothing to serve",
        )
    });
    findings
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::doctor::Level;

    #[test]
    fn a_skew_over_five_seconds_is_a_warning_naming_the_peer() {
        let clock_of = |ms| Clock {
            peer: "redis redis://db:6379".into(),
            skew_ms: ms,
        };
        assert_eq!(clock(&[clock_of(1200)]).status, Level::Ok);
        let f = clock(&[clock_of(300), clock_of(-7_500)]);
        assert_eq!(f.status, Level::Warn);
        assert!(
            f.detail.contains("-7500 ms against redis redis://db:6379"),
            "{}",
            f.detail
        );
        assert_eq!(clock(&[]).status, Level::Ok);
    }
}
