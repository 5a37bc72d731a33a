//! IP allow/deny lists: the global rules, then the route's. In each, deny wins and a
//! non-empty allow list admits only its members.

use crate::config::model::IpRules;
use crate::request::GatewayError;
use std::net::IpAddr;

pub struct IpFilter {
    rules: Vec<IpRules>,
}

impl IpFilter {
    /// `None` when no list is configured: the step is left out of the chain.
    pub fn new(global: &IpRules, route: &IpRules) -> Option<Self> {
        let rules: Vec<IpRules> = [global, route]
            .into_iter()
            .filter(|r| !r.allow.is_empty() || !r.deny.is_empty())
            .cloned()
            .collect();
        (!rules.is_empty()).then_some(IpFilter { rules })
    }

    /// The lists in words, and what they say of `client` (explain).
    pub fn describe(&self, client: Option<IpAddr>) -> String {
        let lists: Vec<String> = self
            .rules
            .iter()
            .map(|r| {
                let nets = |n: &[ipnet::IpNet]| n.iter().map(|n| n.to_string()).collect::<Vec<_>>().join(" ");
                format!("allow [{}] deny [{}]", nets(&r.allow), nets(&r.deny))
            })
            .collect();
        let verdict = match (client, self.check(client)) {
            (None, _) => "no client address given".to_string(),
            (Some(ip), Ok(())) => format!("{ip} is admitted"),
            (Some(ip), Err(_)) => format!("{ip} is refused: 403"),
        };
        format!("{}; {verdict}", lists.join(", then "))
    }

    pub fn check(&self, client: Option<IpAddr>) -> Result<(), GatewayError> {
        let Some(ip) = client else {
            return Err(GatewayError::IpDenied);
        };
        for r in &self.rules {
            if r.deny.iter().any(|n| n.contains(&ip))
                || (!r.allow.is_empty() && !r.allow.iter().any(|n| n.contains(&ip)))
            {
                return Err(GatewayError::IpDenied);
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(allow: &[&str], deny: &[&str]) -> IpRules {
        IpRules {
            allow: allow.iter().map(|s| s.parse().unwrap()).collect(),
            deny: deny.iter().map(|s| s.parse().unwrap()).collect(),
        }
    }

    #[test]
    fn deny_wins_and_allow_lists_are_exclusive_in_v4_and_v6() {
        let f = IpFilter::new(
            &rules(&["10.0.0.0/8", "2001:db8::/32"], &["10.9.0.0/16"]),
            &IpRules::default(),
        )
        .unwrap();
        assert!(f.check(Some("10.1.2.3".parse().unwrap())).is_ok());
        assert!(f.check(Some("2001:db8::1".parse().unwrap())).is_ok());
        assert_eq!(f.check(Some("10.9.1.1".parse().unwrap())), Err(GatewayError::IpDenied));
        assert_eq!(
            f.check(Some("192.168.0.1".parse().unwrap())),
            Err(GatewayError::IpDenied)
        );
        assert_eq!(f.check(None), Err(GatewayError::IpDenied));
    }

    #[test]
    fn route_rules_apply_after_global_ones() {
        let f = IpFilter::new(&rules(&[], &["10.0.0.9/32"]), &rules(&["10.0.0.0/24"], &[])).unwrap();
        assert!(f.check(Some("10.0.0.1".parse().unwrap())).is_ok());
        assert!(f.check(Some("10.0.0.9".parse().unwrap())).is_err());
        assert!(f.check(Some("10.0.1.1".parse().unwrap())).is_err());
        assert!(IpFilter::new(&IpRules::default(), &IpRules::default()).is_none());
    }
}
