//! A verified client certificate (mTLS) as an identity: its subject, subjectAltNames and
//! SHA-256 fingerprint, read once per connection when the handshake ends and shared by
//! every request on it. The header values sent upstream are built here too, so a request
//! only clones them.

use crate::config::client_auth::name_text;
use http::HeaderValue;
use openssl::hash::MessageDigest;
use openssl::x509::X509Ref;
use std::fmt::Write;

pub const SUBJECT_HEADER: &str = "x-client-cert-subject";
pub const SAN_HEADER: &str = "x-client-cert-san";
pub const FINGERPRINT_HEADER: &str = "x-client-cert-fingerprint";
/// RFC 9440: the certificate itself, DER as a structured-field byte sequence.
pub const CERT_HEADER: &str = "client-cert";
/// Every header the gateway sets from a client certificate: removed from what clients
/// send, on every route, so an upstream can trust them.
pub const HEADERS: [&str; 4] = [SUBJECT_HEADER, SAN_HEADER, FINGERPRINT_HEADER, CERT_HEADER];

/// What the connection's certificate says. Made once per connection and shared behind an
/// `Arc`, so the size difference of the variants costs nothing per request.
#[derive(Debug, Clone)]
#[allow(clippy::large_enum_variant)]
pub enum PeerCert {
    Verified(ClientCert),
    /// On a listener that requires a certificate, a connection without one: a TLS session
    /// resumed from before `tls.client_auth` asked (its first handshake asked for none).
    Missing,
}

impl PeerCert {
    pub fn verified(&self) -> Option<&ClientCert> {
        match self {
            PeerCert::Verified(cert) => Some(cert),
            PeerCert::Missing => None,
        }
    }
}

#[derive(Debug, Clone)]
pub struct ClientCert {
    /// RFC 4514 (`CN=alice,O=Example`), non-ASCII escaped as `\XX`.
    pub subject: String,
    /// `DNS:a.example, URI:spiffe://x, email:b@example, IP:10.0.0.1`, in certificate order.
    pub san: String,
    /// SHA-256 of the DER, lowercase hex.
    pub fingerprint: String,
    /// The values of [`HEADERS`], in that order (a value that cannot be a header is left out).
    pub header_values: [Option<HeaderValue>; 4],
}

impl ClientCert {
    pub fn read(cert: &X509Ref) -> ClientCert {
        let subject = name_text(cert.subject_name());
        let san = san_text(cert);
        let fingerprint = cert
            .digest(MessageDigest::sha256())
            .map(|d| hex::encode(&*d))
            .unwrap_or_default();
        let der = cert
            .to_der()
            .map(|der| format!(":{}:", openssl::base64::encode_block(&der)))
            .unwrap_or_default();
        let header_values = [&subject, &san, &fingerprint, &der].map(|v| HeaderValue::from_str(v).ok());
        ClientCert {
            subject,
            san,
            fingerprint,
            header_values,
        }
    }
}

fn san_text(cert: &X509Ref) -> String {
    let mut out = String::new();
    for name in cert.subject_alt_names().iter().flatten() {
        let (kind, value) = if let Some(dns) = name.dnsname() {
            ("DNS", dns.to_string())
        } else if let Some(uri) = name.uri() {
            ("URI", uri.to_string())
        } else if let Some(email) = name.email() {
            ("email", email.to_string())
        } else if let Some(ip) = name.ipaddress() {
            ("IP", ip_text(ip))
        } else {
            continue;
        };
        if !out.is_empty() {
            out.push_str(", ");
        }
        out.push_str(kind);
        out.push(':');
        printable(&value, &mut out);
    }
    out
}

fn ip_text(bytes: &[u8]) -> String {
    match bytes.len() {
        4 => <[u8; 4]>::try_from(bytes).map(|b| std::net::Ipv4Addr::from(b).to_string()),
        16 => <[u8; 16]>::try_from(bytes).map(|b| std::net::Ipv6Addr::from(b).to_string()),
        _ => return hex::encode(bytes),
    }
    .unwrap_or_default()
}

/// A certificate may carry any bytes in a name: control characters, commas and non-ASCII
/// become `\XX`, so the list stays parseable and a valid header value.
fn printable(value: &str, out: &mut String) {
    for b in value.bytes() {
        if b.is_ascii_graphic() && b != b',' && b != b'\\' || b == b' ' {
            out.push(char::from(b));
        } else {
            let _ = write!(out, "\\{b:02X}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn odd_bytes_in_names_are_escaped() {
        let mut out = String::new();
        printable("a,b\\c\nd é", &mut out);
        assert_eq!(out, "a\\2Cb\\5Cc\\0Ad \\C3\\A9");
    }

    #[test]
    fn ip_addresses_are_written_as_addresses() {
        assert_eq!(ip_text(&[10, 0, 0, 1]), "10.0.0.1");
        assert_eq!(ip_text(&[0; 16]), "::");
        assert_eq!(ip_text(&[1, 2]), "0102");
    }
}
