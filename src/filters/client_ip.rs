//! Who the client is: the socket peer, unless that peer is a trusted proxy, in which case
//! the right-most X-Forwarded-For entry that is not itself a trusted proxy (entries to its
//! left could have been written by anyone).

use ipnet::IpNet;
use pingora::http::RequestHeader;
use std::net::{IpAddr, SocketAddr};

pub fn resolve(peer: Option<IpAddr>, req: &RequestHeader, trusted: &[IpNet]) -> Option<IpAddr> {
    let peer = peer?;
    let is_trusted = |ip: &IpAddr| trusted.iter().any(|net| net.contains(ip));
    if !is_trusted(&peer) {
        return Some(peer);
    }
    let mut client = peer;
    for value in req.headers.get_all("x-forwarded-for").iter().rev() {
        let Ok(list) = value.to_str() else {
            return Some(client);
        };
        for entry in list.rsplit(',') {
            let Some(ip) = parse_entry(entry.trim()) else {
                // Garbage: stop at the last address we could vouch for.
                return Some(client);
            };
            if !is_trusted(&ip) {
                return Some(ip);
            }
            client = ip;
        }
    }
    Some(client)
}

fn parse_entry(s: &str) -> Option<IpAddr> {
    s.parse::<IpAddr>()
        .ok()
        .or_else(|| s.parse::<SocketAddr>().ok().map(|a| a.ip()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(xff: &[&str]) -> RequestHeader {
        let mut r = RequestHeader::build("GET", b"/", None).unwrap();
        for v in xff {
            r.append_header("x-forwarded-for", *v).unwrap();
        }
        r
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn untrusted_peer_is_the_client_whatever_xff_says() {
        let trusted: Vec<IpNet> = vec!["10.0.0.0/8".parse().unwrap()];
        assert_eq!(
            resolve(Some(ip("203.0.113.9")), &req(&["1.2.3.4"]), &trusted),
            Some(ip("203.0.113.9"))
        );
        assert_eq!(
            resolve(Some(ip("203.0.113.9")), &req(&["1.2.3.4"]), &[]),
            Some(ip("203.0.113.9"))
        );
    }

    #[test]
    fn behind_trusted_proxies_the_rightmost_untrusted_entry_wins() {
        let trusted: Vec<IpNet> = vec!["10.0.0.0/8".parse().unwrap()];
        let r = req(&["6.6.6.6, 198.51.100.7", "10.0.0.2"]);
        assert_eq!(resolve(Some(ip("10.0.0.1")), &r, &trusted), Some(ip("198.51.100.7")));
        // Only proxies in the chain: the left-most of them.
        assert_eq!(
            resolve(Some(ip("10.0.0.1")), &req(&["10.0.0.3"]), &trusted),
            Some(ip("10.0.0.3"))
        );
        // Garbage stops the walk.
        assert_eq!(
            resolve(Some(ip("10.0.0.1")), &req(&["1.1.1.1, junk"]), &trusted),
            Some(ip("10.0.0.1"))
        );
    }
}
