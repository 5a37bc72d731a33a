//! `tls.acme`: which names to certify, from which CA, how each is proven (RFC 8555
//! HTTP-01 or RFC 8737 TLS-ALPN-01), where the account and certificates are kept.

use super::error::Problems;
use super::model::{AcmeChallenge, AcmeSettings};
use super::raw::{RawAcme, RawConfig};
use super::units::parse_duration;
use std::sync::Arc;
use std::time::Duration;

const DEFAULT_RENEW_BEFORE: Duration = Duration::from_secs(30 * 86_400);
const DEFAULT_CHECK_INTERVAL: Duration = Duration::from_secs(3_600);

pub fn acme(raw: &RawConfig, p: &mut Problems) -> Option<Arc<AcmeSettings>> {
    let acme = raw.tls.as_ref()?.acme.as_ref()?;
    let path = "tls.acme";
    let directory = match &acme.directory {
        Some(url) if url.starts_with("https://") || url.starts_with("http://") => url.clone(),
        Some(other) => {
            p.push(
                format!("{path}.directory"),
                format!("\"{other}\" is not a URL (e.g. https://acme-v02.api.letsencrypt.org/directory)"),
            );
            String::new()
        }
        None => {
            p.push(
                format!("{path}.directory"),
                "required: the CA's directory URL (e.g. https://acme-v02.api.letsencrypt.org/directory)",
            );
            String::new()
        }
    };
    let challenge = match acme.challenge.as_deref() {
        None | Some("http-01") => AcmeChallenge::Http01,
        Some("tls-alpn-01") => AcmeChallenge::TlsAlpn01,
        Some(other) => {
            p.push(
                format!("{path}.challenge"),
                format!("unknown challenge \"{other}\" (expected http-01 or tls-alpn-01)"),
            );
            AcmeChallenge::Http01
        }
    };
    let domains = domains(acme, raw, p);
    let duration = |value: &Option<String>, key: &str, default: Duration, p: &mut Problems| match value {
        Some(v) => parse_duration(v)
            .map_err(|e| p.push(format!("{path}.{key}"), e))
            .unwrap_or(default),
        None => default,
    };
    let renew_before = duration(&acme.renew_before, "renew_before", DEFAULT_RENEW_BEFORE, p);
    let check_interval = duration(&acme.check_interval, "check_interval", DEFAULT_CHECK_INTERVAL, p);
    if check_interval.is_zero() {
        p.push(format!("{path}.check_interval"), "must be more than 0s");
    }
    if let Some(ca) = &acme.ca_file {
        if let Err(e) = std::fs::read(ca) {
            p.push(format!("{path}.ca_file"), format!("cannot read \"{ca}\": {e}"));
        }
    }
    let storage = match &acme.storage {
        Some(dir) => dir.into(),
        None => super::validate::state_dir(raw).join("acme"),
    };
    Some(Arc::new(AcmeSettings {
        directory,
        email: acme.email.clone(),
        domains,
        challenge,
        storage,
        renew_before,
        check_interval,
        ca_file: acme.ca_file.clone(),
    }))
}

/// `domains`, else every exact route host (a wildcard needs DNS-01, which is not offered).
fn domains(acme: &RawAcme, raw: &RawConfig, p: &mut Problems) -> Vec<String> {
    let field = "tls.acme.domains";
    let mut names: Vec<String> = match &acme.domains {
        Some(list) => list.iter().map(|d| d.to_ascii_lowercase()).collect(),
        None => raw
            .routes
            .iter()
            .filter_map(|r| r.host.as_deref())
            .filter(|h| !h.contains('*'))
            .map(str::to_ascii_lowercase)
            .collect(),
    };
    names.sort();
    names.dedup();
    for name in &names {
        let valid = !name.is_empty()
            && name.len() <= 253
            && !name.starts_with("*.")
            && name
                .split('.')
                .all(|l| !l.is_empty() && l.len() <= 63 && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-'));
        if !valid {
            p.push(
                field,
                format!("\"{name}\" is not a host name an ACME CA can certify with http-01 or tls-alpn-01 (no wildcards, no ports)"),
            );
        }
    }
    if names.is_empty() {
        p.push(
            field,
            "no names to certify: list them in tls.acme.domains, or give routes a host",
        );
    }
    names
}
