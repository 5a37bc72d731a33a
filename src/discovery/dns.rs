//! Targets found in DNS: every A/AAAA address of `name:port`, or every SRV record of
//! `_service._proto.name` (its target's addresses, its port and its weight).

use super::install;
use crate::config::model::TargetConfig;
use crate::reload::Reloader;
use hickory_resolver::config::{NameServerConfig, ResolverConfig};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::proto::rr::RData;
use hickory_resolver::TokioResolver;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A resolver asking `server`, or the system's (/etc/resolv.conf).
pub(super) fn resolver(server: Option<SocketAddr>) -> Result<TokioResolver, String> {
    let builder = match server {
        Some(addr) => {
            let mut ns = NameServerConfig::udp_and_tcp(addr.ip());
            for c in &mut ns.connections {
                c.port = addr.port();
            }
            TokioResolver::builder_with_config(
                ResolverConfig::from_name_servers(vec![ns]),
                TokioRuntimeProvider::default(),
            )
        }
        None => TokioResolver::builder_tokio().map_err(|e| format!("no system resolver: {e}"))?,
    };
    builder.build().map_err(|e| format!("cannot build the resolver: {e}"))
}

/// Shortest wait between two lookups, whatever the TTL says.
const MIN_WAIT: Duration = Duration::from_millis(500);
/// Wait after a failed lookup, at most.
const RETRY_WAIT: Duration = Duration::from_secs(5);
/// Weights above this are scaled down, keeping their proportions (SRV weights go to 65535).
const MAX_WEIGHT: u32 = 100;

/// Keeps `upstream`'s discovered targets equal to what `name` resolves to: its addresses
/// with `port`, or (no port) its SRV records.
pub(super) async fn follow(
    reloader: Arc<Reloader>,
    upstream: String,
    resolver: TokioResolver,
    name: String,
    port: Option<u16>,
    interval: Duration,
) {
    loop {
        let found = match port {
            Some(port) => addresses(&resolver, &name, port).await,
            None => services(&resolver, &name).await,
        };
        let wait = match found {
            Ok((targets, _)) if targets.is_empty() => {
                log::warn!("upstreams.{upstream}: {name} has no address; keeping the last targets");
                interval.min(RETRY_WAIT)
            }
            Ok((targets, valid_until)) => {
                install(&reloader, &upstream, targets, &format!("from {name}")).await;
                valid_until
                    .saturating_duration_since(Instant::now())
                    .clamp(MIN_WAIT, interval.max(MIN_WAIT))
            }
            Err(e) => {
                log::warn!("upstreams.{upstream}: cannot resolve {name} ({e}); keeping the last targets");
                interval.min(RETRY_WAIT)
            }
        };
        // The resolver caches answers for their TTL; the next lookup must ask again.
        resolver.clear_cache();
        tokio::time::sleep(wait).await;
    }
}

/// Targets found, sorted, and until when the answers hold.
type Found = (Vec<TargetConfig>, Instant);

/// Every A/AAAA address of `name`, with `port`, weight 1.
async fn addresses(resolver: &TokioResolver, name: &str, port: u16) -> Result<Found, String> {
    let found = resolver.lookup_ip(name).await.map_err(|e| e.to_string())?;
    let addrs = found.iter().map(|ip| (SocketAddr::new(ip, port), 1));
    Ok((targets(addrs), found.valid_until()))
}

/// The SRV records of `name` with the best (lowest) priority: each record's target
/// resolved to its addresses, with the record's port and weight. Records of a higher
/// priority are backups, used only when none of a better one resolves.
async fn services(resolver: &TokioResolver, name: &str) -> Result<Found, String> {
    let found = resolver.srv_lookup(name).await.map_err(|e| e.to_string())?;
    let mut valid_until = found.valid_until();
    let mut records: Vec<_> = found
        .answers()
        .iter()
        .filter_map(|r| match &r.data {
            RData::SRV(srv) => Some(srv.clone()),
            _ => None,
        })
        .collect();
    records.sort_by_key(|srv| srv.priority);
    let max_weight = records.iter().map(|srv| u32::from(srv.weight)).max().unwrap_or(0);
    let mut addrs = Vec::new();
    let mut priority = None;
    for srv in &records {
        if priority.is_some_and(|p| p != srv.priority) && !addrs.is_empty() {
            break;
        }
        priority = Some(srv.priority);
        let host = srv.target.to_ascii();
        let ips = match resolver.lookup_ip(host.as_str()).await {
            Ok(ips) => ips,
            Err(e) => {
                log::warn!("{name}: SRV target {host} does not resolve ({e})");
                continue;
            }
        };
        valid_until = valid_until.min(ips.valid_until());
        let weight = scaled_weight(srv.weight, max_weight);
        addrs.extend(ips.iter().map(|ip| (SocketAddr::new(ip, srv.port), weight)));
    }
    Ok((targets(addrs), valid_until))
}

/// SRV weight 0 means "very rarely" (RFC 2782): the smallest weight a target can have.
fn scaled_weight(weight: u16, max: u32) -> u16 {
    let w = u32::from(weight);
    let scaled = if max > MAX_WEIGHT { w * MAX_WEIGHT / max } else { w };
    scaled.clamp(1, MAX_WEIGHT) as u16
}

/// One target per address (the first weight seen for an address wins), sorted.
fn targets(addrs: impl IntoIterator<Item = (SocketAddr, u16)>) -> Vec<TargetConfig> {
    let mut targets: Vec<TargetConfig> = Vec::new();
    for (addr, weight) in addrs {
        if targets.iter().all(|t| t.addr != Some(addr)) {
            targets.push(TargetConfig {
                spec: addr.to_string(),
                addr: Some(addr),
                weight,
            });
        }
    }
    targets.sort_by_key(|t| t.addr);
    targets
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn srv_weights_keep_their_proportions_within_the_pool_s_range() {
        assert_eq!(scaled_weight(0, 10), 1);
        assert_eq!(scaled_weight(10, 10), 10);
        assert_eq!(scaled_weight(65535, 65535), 100);
        assert_eq!(scaled_weight(16383, 65535), 24);
        assert_eq!(scaled_weight(1, 65535), 1);
    }
}
