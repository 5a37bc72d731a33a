//! Validation of TLS: the HTTPS listener's certificates (read, matched with their keys,
//! checked for expiry, named, OCSP response checked) and upstream TLS. `gatehouse check`
//! reports a missing file, a key that does not match its certificate, or an expired one.

use super::error::Problems;
use super::model::{LoadedCert, UpstreamTls};
use super::ocsp;
use super::raw::{RawCert, RawTls, RawUpstream};
use openssl::asn1::Asn1Time;
use openssl::pkey::PKey;
use openssl::x509::X509;
use std::net::SocketAddr;

/// Warn about certificates that expire within this many days.
const EXPIRY_WARNING_DAYS: u32 = 14;

pub struct TlsSettings {
    pub listen: Vec<SocketAddr>,
    pub certs: Vec<LoadedCert>,
    pub redirect_http: bool,
    pub h2: bool,
}

pub fn tls(raw: Option<&RawTls>, p: &mut Problems, warnings: &mut Vec<String>) -> TlsSettings {
    let Some(raw) = raw else {
        return TlsSettings {
            listen: Vec::new(),
            certs: Vec::new(),
            redirect_http: false,
            h2: true,
        };
    };
    let listen: Vec<SocketAddr> = raw
        .listen
        .iter()
        .flatten()
        .enumerate()
        .filter_map(|(i, a)| {
            a.parse()
                .map_err(|_| {
                    p.push(
                        format!("tls.listen[{i}]"),
                        format!("\"{a}\" is not an address (ip:port)"),
                    )
                })
                .ok()
        })
        .collect();
    if raw.listen.as_ref().is_none_or(|l| l.is_empty()) {
        p.push("tls.listen", "at least one address is required");
    }
    if raw.certs.is_empty() && raw.acme.is_none() {
        p.push(
            "tls.certs",
            "at least one certificate is required (or tls.acme to obtain them from an ACME CA)",
        );
    }
    let certs = raw
        .certs
        .iter()
        .enumerate()
        .filter_map(|(i, c)| load_cert(c, &format!("tls.certs[{i}]"), p, warnings))
        .collect();
    TlsSettings {
        listen,
        certs,
        redirect_http: raw.redirect_http.unwrap_or(false),
        h2: raw.h2.unwrap_or(true),
    }
}

fn load_cert(raw: &RawCert, path: &str, p: &mut Problems, warnings: &mut Vec<String>) -> Option<LoadedCert> {
    let (Some(cert_path), Some(key_path)) = (&raw.cert, &raw.key) else {
        p.push(path, "cert and key are required");
        return None;
    };
    let read = |file: &str, field: &str, p: &mut Problems| {
        std::fs::read(file)
            .map_err(|e| p.push(format!("{path}.{field}"), format!("cannot read \"{file}\": {e}")))
            .ok()
    };
    let (cert_pem, key_pem) = (read(cert_path, "cert", p), read(key_path, "key", p));
    let (cert_pem, key_pem) = (cert_pem?, key_pem?);
    let mut chain = match X509::stack_from_pem(&cert_pem) {
        Ok(chain) if !chain.is_empty() => chain,
        _ => {
            p.push(
                format!("{path}.cert"),
                format!("\"{cert_path}\" holds no PEM certificate"),
            );
            return None;
        }
    };
    let cert = chain.remove(0);
    let Ok(key) = PKey::private_key_from_pem(&key_pem) else {
        p.push(
            format!("{path}.key"),
            format!("\"{key_path}\" holds no PEM private key"),
        );
        return None;
    };
    if !cert.public_key().is_ok_and(|public| public.public_eq(&key)) {
        p.push(
            format!("{path}.key"),
            format!("\"{key_path}\" does not match the certificate \"{cert_path}\""),
        );
    }
    check_expiry(&cert, cert_path, path, p, warnings);
    let ocsp_auto = raw.ocsp.as_deref() == Some("auto");
    if ocsp_auto {
        if cert.ocsp_responders().map_or(true, |urls| urls.is_empty()) {
            p.push(
                format!("{path}.ocsp"),
                format!(
                    "auto: \"{cert_path}\" names no OCSP responder (authorityInfoAccess); give a response file instead"
                ),
            );
        }
        if chain.is_empty() {
            p.push(
                format!("{path}.ocsp"),
                "auto needs the issuer's certificate after the leaf in cert (a full-chain file)",
            );
        }
    }
    let ocsp = raw
        .ocsp
        .as_ref()
        .filter(|_| !ocsp_auto)
        .and_then(|file| ocsp::load(file, &cert, chain.first(), path, p, warnings));
    let names = match &raw.sni {
        Some(list) => list.iter().map(|n| n.to_ascii_lowercase()).collect(),
        None => cert_names(&cert),
    };
    if names.is_empty() {
        p.push(
            format!("{path}.sni"),
            "the certificate names no DNS host; list its names in sni:",
        );
    }
    Some(LoadedCert {
        cert_path: cert_path.clone(),
        names,
        cert,
        chain,
        key,
        ocsp,
        ocsp_auto,
    })
}

fn check_expiry(cert: &X509, file: &str, path: &str, p: &mut Problems, warnings: &mut Vec<String>) {
    let (Ok(now), Ok(soon)) = (Asn1Time::days_from_now(0), Asn1Time::days_from_now(EXPIRY_WARNING_DAYS)) else {
        return;
    };
    if cert.not_after() < now {
        p.push(
            format!("{path}.cert"),
            format!("\"{file}\" expired on {}", cert.not_after()),
        );
    } else if cert.not_after() < soon {
        warnings.push(format!("{path}.cert: \"{file}\" expires on {}", cert.not_after()));
    }
    if cert.not_before() > now {
        p.push(
            format!("{path}.cert"),
            format!("\"{file}\" is not valid before {}", cert.not_before()),
        );
    }
}

/// DNS names of the certificate's subjectAltName, else its common name.
fn cert_names(cert: &X509) -> Vec<String> {
    let sans: Vec<String> = cert
        .subject_alt_names()
        .iter()
        .flatten()
        .filter_map(|n| n.dnsname().map(|d| d.to_ascii_lowercase()))
        .collect();
    if !sans.is_empty() {
        return sans;
    }
    cert.subject_name()
        .entries_by_nid(openssl::nid::Nid::COMMONNAME)
        .filter_map(|e| e.data().to_string().ok().map(|s| s.to_ascii_lowercase()))
        .collect()
}

/// `tls: true` on an upstream: SNI (default the first target's host), verification, CAs.
pub fn upstream_tls(raw: &RawUpstream, path: &str, p: &mut Problems) -> Option<UpstreamTls> {
    if !raw.tls.unwrap_or(false) {
        for (key, set) in [
            ("sni", raw.sni.is_some()),
            ("verify", raw.verify.is_some()),
            ("ca_file", raw.ca_file.is_some()),
            ("client_cert", raw.client_cert.is_some()),
            ("client_key", raw.client_key.is_some()),
        ] {
            if set {
                p.push(format!("{path}.{key}"), "only applies with tls: true");
            }
        }
        return None;
    }
    let first_host = raw
        .targets
        .first()
        .and_then(|t| t.as_str().or_else(|| t.get("addr").and_then(|a| a.as_str())))
        .and_then(|spec| {
            spec.rsplit_once(':')
                .map(|(h, _)| h.trim_matches(['[', ']']).to_string())
        })
        .unwrap_or_default();
    let sni = raw.sni.clone().unwrap_or(first_host);
    if let Some(ca) = &raw.ca_file {
        match std::fs::read(ca) {
            Ok(pem) if X509::stack_from_pem(&pem).is_ok_and(|s| !s.is_empty()) => {}
            Ok(_) => p.push(format!("{path}.ca_file"), format!("\"{ca}\" holds no PEM certificate")),
            Err(e) => p.push(format!("{path}.ca_file"), format!("cannot read \"{ca}\": {e}")),
        }
    }
    let client_cert = match (&raw.client_cert, &raw.client_key) {
        (Some(cert), Some(key)) => {
            upstream_client_cert(cert, key, path, p);
            Some((cert.clone(), key.clone()))
        }
        (None, None) => None,
        (Some(_), None) | (None, Some(_)) => {
            p.push(
                format!("{path}.client_cert"),
                "client_cert and client_key go together (the gateway's certificate for upstream mTLS)",
            );
            None
        }
    };
    Some(UpstreamTls {
        sni,
        verify: raw.verify.unwrap_or(true),
        ca_file: raw.ca_file.clone(),
        client_cert,
    })
}

/// The certificate the gateway presents to an upstream: readable, and the key its own.
fn upstream_client_cert(cert: &str, key: &str, path: &str, p: &mut Problems) {
    if let Err(e) = read_cert_key(cert, key) {
        p.push(format!("{path}.client_cert"), e);
    }
}

/// A PEM certificate chain (leaf first) and its PEM private key, checked to match.
pub fn read_cert_key(cert: &str, key: &str) -> Result<(Vec<X509>, PKey<openssl::pkey::Private>), String> {
    let cert_pem = std::fs::read(cert).map_err(|e| format!("cannot read \"{cert}\": {e}"))?;
    let key_pem = std::fs::read(key).map_err(|e| format!("cannot read \"{key}\": {e}"))?;
    let chain = X509::stack_from_pem(&cert_pem)
        .ok()
        .filter(|c| !c.is_empty())
        .ok_or_else(|| format!("\"{cert}\" holds no PEM certificate"))?;
    let key_pair = PKey::private_key_from_pem(&key_pem).map_err(|_| format!("\"{key}\" holds no PEM private key"))?;
    if !chain[0].public_key().is_ok_and(|public| public.public_eq(&key_pair)) {
        return Err(format!("\"{key}\" does not match the certificate \"{cert}\""));
    }
    Ok((chain, key_pair))
}
