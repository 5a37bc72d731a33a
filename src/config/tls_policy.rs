//! `tls.min_version` and `tls.profile`: which protocol versions, cipher suites and key
//! exchange groups the HTTPS listener offers. Profiles follow Mozilla's server-side TLS
//! recommendations: `intermediate` (default: TLS 1.2 and 1.3, AEAD suites with forward
//! secrecy only), `modern` (TLS 1.3 only), `custom` (`ciphers` for TLS 1.2, `ciphersuites`
//! for 1.3, `groups`). Anything that would enable a known-weak suite or protocol is
//! refused at load, and every list is tried on a real OpenSSL context, so a name OpenSSL
//! does not know is refused too rather than failing at start.

use super::error::Problems;
use super::model::TlsPolicy;
use super::raw::RawTls;
use openssl::ssl::{SslContext, SslMethod};

/// Mozilla's intermediate TLS 1.2 suites (ECDHE and DHE key exchange, AEAD ciphers).
pub const INTERMEDIATE_CIPHERS: &str = "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:\
ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:ECDHE-ECDSA-CHACHA20-POLY1305:\
ECDHE-RSA-CHACHA20-POLY1305:DHE-RSA-AES128-GCM-SHA256:DHE-RSA-AES256-GCM-SHA384:DHE-RSA-CHACHA20-POLY1305";

/// Parts of OpenSSL cipher names (or cipher-string keywords) that mean a broken or
/// deliberately weakened suite: no encryption, no authentication, export grade, RC4,
/// single and triple DES, MD5 MACs, or "everything" (which includes those).
const WEAK: [&str; 13] = [
    "NULL", "ANULL", "ENULL", "ADH", "AECDH", "EXP", "RC4", "DES", "3DES", "MD5", "IDEA", "ALL", "LOW",
];

pub fn policy(raw: Option<&RawTls>, p: &mut Problems) -> TlsPolicy {
    let Some(raw) = raw else {
        return TlsPolicy::default();
    };
    let min_tls13 = match raw.min_version.as_deref().map(str::trim) {
        None | Some("1.2") => false,
        Some("1.3") => true,
        Some(v @ ("1.0" | "1.1" | "1" | "ssl3")) => {
            p.push(
                "tls.min_version",
                format!("\"{v}\" is a broken protocol version; use 1.2 (default) or 1.3"),
            );
            false
        }
        Some(v) => {
            p.push("tls.min_version", format!("\"{v}\" is not 1.2 or 1.3"));
            false
        }
    };
    let custom_fields = raw.ciphers.is_some() || raw.ciphersuites.is_some() || raw.groups.is_some();
    let profile = raw.profile.as_deref().map(str::trim).unwrap_or("intermediate");
    let mut policy = match profile {
        "intermediate" => TlsPolicy {
            min_tls13,
            ciphers: Some(INTERMEDIATE_CIPHERS.to_string()),
            ..TlsPolicy::default()
        },
        "modern" => {
            if raw.min_version.as_deref().is_some_and(|v| v.trim() == "1.2") {
                p.push(
                    "tls.min_version",
                    "profile modern is TLS 1.3 only; drop min_version or use intermediate",
                );
            }
            TlsPolicy {
                min_tls13: true,
                ..TlsPolicy::default()
            }
        }
        "custom" => TlsPolicy {
            min_tls13,
            ciphers: raw.ciphers.clone(),
            ciphersuites: raw.ciphersuites.clone(),
            groups: raw.groups.as_ref().map(|g| g.join(":")),
        },
        other => {
            p.push(
                "tls.profile",
                format!("\"{other}\" is not intermediate, modern or custom"),
            );
            TlsPolicy::default()
        }
    };
    if custom_fields && profile != "custom" {
        p.push(
            "tls.profile",
            "ciphers, ciphersuites and groups apply only with profile: custom",
        );
    }
    if profile == "custom" {
        check_custom(&mut policy, p);
    }
    policy
}

fn check_custom(policy: &mut TlsPolicy, p: &mut Problems) {
    for (field, list) in [
        ("tls.ciphers", &policy.ciphers),
        ("tls.ciphersuites", &policy.ciphersuites),
    ] {
        let Some(list) = list else { continue };
        let weak: Vec<&str> = list
            .split([':', ',', ' '])
            .filter(|name| {
                let upper = name.trim_start_matches(['!', '-', '+']).to_ascii_uppercase();
                !name.starts_with('!') && WEAK.iter().any(|w| upper.split('-').any(|part| part.starts_with(w)))
            })
            .collect();
        if !weak.is_empty() {
            p.push(
                field,
                format!(
                    "{} would enable weak suites; name AEAD suites (e.g. ECDHE-RSA-AES128-GCM-SHA256) or use profile: intermediate",
                    weak.join(", ")
                ),
            );
        }
    }
    // OpenSSL is the judge of the names.
    let Ok(mut ctx) = SslContext::builder(SslMethod::tls_server()) else {
        return;
    };
    if let Some(list) = &policy.ciphers {
        if ctx.set_cipher_list(list).is_err() {
            p.push("tls.ciphers", format!("\"{list}\" names no cipher suite OpenSSL knows"));
        }
    }
    if let Some(list) = &policy.ciphersuites {
        if ctx.set_ciphersuites(list).is_err() {
            p.push(
                "tls.ciphersuites",
                format!("\"{list}\" names no TLS 1.3 suite OpenSSL knows (e.g. TLS_AES_128_GCM_SHA256)"),
            );
        }
    }
    if let Some(list) = &policy.groups {
        if ctx.set_groups_list(list).is_err() {
            p.push(
                "tls.groups",
                format!("\"{list}\" names a group OpenSSL does not know (e.g. X25519, P-256)"),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(yaml: &str) -> RawTls {
        serde_yaml::from_str(yaml).unwrap()
    }

    fn problems(yaml: &str) -> String {
        let mut p = Problems::default();
        policy(Some(&raw(yaml)), &mut p);
        format!("{p:?}")
    }

    #[test]
    fn profiles_and_refusals() {
        let mut p = Problems::default();
        let modern = policy(Some(&raw("profile: modern")), &mut p);
        assert!(modern.min_tls13 && modern.ciphers.is_none());
        let default = policy(Some(&raw("{}")), &mut p);
        assert_eq!(
            (default.min_tls13, default.ciphers.as_deref()),
            (false, Some(INTERMEDIATE_CIPHERS))
        );
        assert!(p.is_empty(), "{p:?}");

        assert!(problems("min_version: \"1.1\"").contains("broken protocol version"));
        assert!(problems("profile: custom\nciphers: \"RC4-SHA:ECDHE-RSA-AES128-GCM-SHA256\"").contains("RC4-SHA"));
        assert!(problems("profile: custom\nciphers: \"DES-CBC3-SHA\"").contains("weak"));
        assert!(problems("profile: custom\nciphers: ALL").contains("weak"));
        assert!(problems("profile: custom\nciphers: \"NOT-A-CIPHER\"").contains("OpenSSL knows"));
        assert!(problems("profile: custom\ngroups: [X25519, nope]").contains("tls.groups"));
        assert!(problems("ciphers: \"ECDHE-RSA-AES128-GCM-SHA256\"").contains("only with profile: custom"));
        let mut p = Problems::default();
        let custom = "profile: custom\nciphers: \"ECDHE-RSA-AES256-GCM-SHA384:!aNULL\"\ngroups: [X25519, P-256]";
        policy(Some(&raw(custom)), &mut p);
        assert!(p.is_empty(), "{p:?}");
    }
}
