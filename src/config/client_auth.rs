//! `tls.client_auth`: client certificates (mTLS) on the HTTPS listeners. The CA bundle and
//! the revocation lists are read and checked here, once per load, so a handshake only
//! looks them up; a reload replaces them like the server certificates.

use super::error::Problems;
use super::model::{ClientAuth, ClientAuthMode};
use super::raw::RawClientAuth;
use openssl::asn1::Asn1Time;
use openssl::x509::{X509Crl, X509};
use std::net::SocketAddr;
use std::sync::Arc;

const CRL_BEGIN: &str = "-----BEGIN X509 CRL-----";
const CRL_END: &str = "-----END X509 CRL-----";

/// `None` when the config asks for no client certificates.
pub fn client_auth(
    raw: Option<&RawClientAuth>,
    tls_listen: &[SocketAddr],
    p: &mut Problems,
    warnings: &mut Vec<String>,
) -> Option<Arc<ClientAuth>> {
    let raw = raw?;
    let path = "tls.client_auth";
    let mode = match raw.mode.as_deref() {
        None | Some("require") => ClientAuthMode::Require,
        Some("optional") => ClientAuthMode::Optional,
        Some(other) => {
            p.push(
                format!("{path}.mode"),
                format!("unknown mode \"{other}\" (expected require or optional)"),
            );
            ClientAuthMode::Require
        }
    };
    let listen = listeners(raw.listen.as_deref().unwrap_or_default(), tls_listen, p);
    let Some(ca_file) = &raw.ca_file else {
        p.push(
            format!("{path}.ca_file"),
            "required: the PEM bundle of the CAs that issue client certificates",
        );
        return None;
    };
    let cas = match std::fs::read(ca_file) {
        Ok(pem) => match X509::stack_from_pem(&pem) {
            Ok(cas) if !cas.is_empty() => cas,
            _ => {
                p.push(
                    format!("{path}.ca_file"),
                    format!("\"{ca_file}\" holds no PEM certificate"),
                );
                return None;
            }
        },
        Err(e) => {
            p.push(format!("{path}.ca_file"), format!("cannot read \"{ca_file}\": {e}"));
            return None;
        }
    };
    let crls = match &raw.crl_file {
        Some(file) => revocation_lists(file, &cas, p, warnings),
        None => Vec::new(),
    };
    Some(Arc::new(ClientAuth {
        mode,
        listen,
        ca_file: ca_file.clone(),
        cas,
        crls,
    }))
}

/// `listen`: each must be one of the TLS listeners.
fn listeners(specs: &[String], tls_listen: &[SocketAddr], p: &mut Problems) -> Vec<SocketAddr> {
    specs
        .iter()
        .enumerate()
        .filter_map(|(i, spec)| {
            let field = format!("tls.client_auth.listen[{i}]");
            match spec.parse::<SocketAddr>() {
                Ok(addr) if tls_listen.contains(&addr) => Some(addr),
                Ok(_) => {
                    let known: Vec<String> = tls_listen.iter().map(ToString::to_string).collect();
                    p.push(
                        field,
                        format!("\"{spec}\" is not a TLS listener (tls.listen: {})", known.join(", ")),
                    );
                    None
                }
                Err(_) => {
                    p.push(field, format!("\"{spec}\" is not an address (ip:port)"));
                    None
                }
            }
        })
        .collect()
}

/// The CRLs of `file`, each issued by one of `cas` and signed by it. A CRL past its next
/// update still loads (with a warning): the handshake then refuses every certificate of
/// that CA, as a stale list cannot vouch for any of them.
fn revocation_lists(file: &str, cas: &[X509], p: &mut Problems, warnings: &mut Vec<String>) -> Vec<X509Crl> {
    let field = "tls.client_auth.crl_file";
    let text = match std::fs::read_to_string(file) {
        Ok(text) => text,
        Err(e) => {
            p.push(field, format!("cannot read \"{file}\": {e}"));
            return Vec::new();
        }
    };
    let mut crls = Vec::new();
    let mut blocks = 0;
    for (i, block) in pem_blocks(&text).enumerate() {
        blocks += 1;
        let Ok(crl) = X509Crl::from_pem(block.as_bytes()) else {
            p.push(field, format!("\"{file}\": CRL #{} is not a valid X509 CRL", i + 1));
            continue;
        };
        let issuer = cas
            .iter()
            .find(|ca| ca.subject_name().try_cmp(crl.issuer_name()).is_ok_and(|o| o.is_eq()));
        let Some(issuer) = issuer else {
            p.push(
                field,
                format!(
                    "\"{file}\": CRL #{} is issued by {}, which is not in ca_file",
                    i + 1,
                    name_text(crl.issuer_name())
                ),
            );
            continue;
        };
        let signed = issuer.public_key().and_then(|key| crl.verify(&key)).unwrap_or(false);
        if !signed {
            p.push(
                field,
                format!("\"{file}\": CRL #{} is not signed by its issuer's key", i + 1),
            );
            continue;
        }
        if let (Some(next), Ok(now)) = (crl.next_update(), Asn1Time::days_from_now(0)) {
            if *next < *now {
                warnings.push(format!(
                    "{field}: \"{file}\" CRL #{} expired on {next}: every client certificate of its CA is refused until it is renewed",
                    i + 1
                ));
            }
        }
        crls.push(crl);
    }
    if blocks == 0 {
        p.push(field, format!("\"{file}\" holds no PEM X509 CRL ({CRL_BEGIN})"));
    }
    crls
}

/// Each `-----BEGIN X509 CRL-----` … `-----END X509 CRL-----` block of `text`.
fn pem_blocks(text: &str) -> impl Iterator<Item = &str> {
    let mut rest = text;
    std::iter::from_fn(move || {
        let start = rest.find(CRL_BEGIN)?;
        let end = rest[start..].find(CRL_END)? + start + CRL_END.len();
        let block = &rest[start..end];
        rest = &rest[end..];
        Some(block)
    })
}

/// A distinguished name as RFC 4514 writes it (most significant last reversed: `CN=a,O=b`).
pub fn name_text(name: &openssl::x509::X509NameRef) -> String {
    let mut out = String::new();
    for entry in name.entries().collect::<Vec<_>>().into_iter().rev() {
        if !out.is_empty() {
            out.push(',');
        }
        let key = entry.object().nid().short_name().unwrap_or("?");
        out.push_str(key);
        out.push('=');
        let value = entry.data().to_string().unwrap_or_default();
        escape_value(&value, &mut out);
    }
    out
}

/// RFC 4514 §2.4 escaping, plus control and non-ASCII characters as `\XX`, so the text is
/// a valid header value and log field.
fn escape_value(value: &str, out: &mut String) {
    use std::fmt::Write;
    let last = value.chars().count().saturating_sub(1);
    for (i, c) in value.chars().enumerate() {
        let special = matches!(c, ',' | '+' | '"' | '\\' | '<' | '>' | ';' | '=')
            || (i == 0 && matches!(c, '#' | ' '))
            || (i == last && c == ' ');
        if special {
            out.push('\\');
            out.push(c);
        } else if c.is_ascii_control() || !c.is_ascii() {
            let mut buf = [0u8; 4];
            for b in c.encode_utf8(&mut buf).bytes() {
                let _ = write!(out, "\\{b:02X}");
            }
        } else {
            out.push(c);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pem_blocks_are_split() {
        let text = format!("junk\n{CRL_BEGIN}\nAAA\n{CRL_END}\n\n{CRL_BEGIN}\nBBB\n{CRL_END}\n");
        let blocks: Vec<&str> = pem_blocks(&text).collect();
        assert_eq!(blocks.len(), 2);
        assert!(blocks[1].contains("BBB") && blocks[1].ends_with(CRL_END));
    }

    #[test]
    fn values_are_escaped_as_rfc_4514_says() {
        let mut out = String::new();
        escape_value(" a,b+c=é\n ", &mut out);
        assert_eq!(out, "\\ a\\,b\\+c\\=\\C3\\A9\\0A\\ ");
    }
}
