//! `{…}` templates: text with request variables, compiled once at load and rendered per
//! request into a buffer. Braces without `$`: `${VAR}` is the config file's environment
//! expansion and is gone before a template is compiled.
//!
//! Variables: `{path.<param>}`, `{query.<name>}`, `{header.<name>}`, `{claims.<name>}`
//! (dotted for nested claims), `{consumer}`, `{client_ip}`, `{request_id}`,
//! `{client_cert.subject}`, `{client_cert.san}`, `{client_cert.fingerprint}`. `{{` and `}}`
//! are literal braces. A variable the request lacks renders as nothing.

use crate::routing::{ParamAt, PathPattern};
use http::{HeaderName, HeaderValue};
use pingora::http::RequestHeader;
use serde_json::{Map, Value};
use std::fmt::Write;
use std::net::IpAddr;

/// What a request knows besides its head: who it is from and its id. Borrowed from the
/// request's context (this module sits below it, beside the config that compiles
/// templates).
#[derive(Default)]
pub struct Vars<'a> {
    pub claims: Option<&'a Map<String, Value>>,
    pub consumer: Option<&'a str>,
    pub client_ip: Option<IpAddr>,
    pub request_id: Option<&'a HeaderValue>,
    /// The connection's verified client certificate (mTLS).
    pub client_cert: Option<CertVars<'a>>,
}

/// Which part of a client certificate a template (or a rate-limit key) reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientCertField {
    Subject,
    San,
    Fingerprint,
}

impl ClientCertField {
    pub fn name(self) -> &'static str {
        match self {
            ClientCertField::Subject => "subject",
            ClientCertField::San => "san",
            ClientCertField::Fingerprint => "fingerprint",
        }
    }
}

/// What `{client_cert.subject|san|fingerprint}` read.
#[derive(Clone, Copy)]
pub struct CertVars<'a> {
    pub subject: &'a str,
    pub san: &'a str,
    pub fingerprint: &'a str,
}

/// A compiled template.
#[derive(Debug, Clone)]
pub struct Template {
    pieces: Vec<Piece>,
    /// The text as written, for messages.
    source: String,
}

#[derive(Debug, Clone)]
enum Piece {
    Text(String),
    Var(Var),
}

/// What a `{…}` stands for.
#[derive(Debug, Clone)]
enum Var {
    Path(ParamAt),
    Query(String),
    Header(HeaderName),
    /// A claim, by its dotted path.
    Claim(Vec<String>),
    Consumer,
    ClientIp,
    RequestId,
    ClientCert(ClientCertField),
}

/// Where a rendered value goes: into a URL, variables that do not come from the URL
/// itself are percent-encoded; into a header, kept as they are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Escape {
    Url,
    Header,
}

impl Template {
    /// Compiles `source` for a route matching `pattern` (which names the `{path.…}`
    /// parameters). The error says which variable is wrong and what exists.
    pub fn compile(source: &str, pattern: &PathPattern) -> Result<Template, String> {
        let mut pieces = Vec::new();
        let mut text = String::new();
        let mut rest = source;
        while let Some(at) = rest.find(['{', '}']) {
            text.push_str(&rest[..at]);
            let tail = &rest[at..];
            if tail.starts_with("{{") || tail.starts_with("}}") {
                text.push_str(&tail[..1]);
                rest = &tail[2..];
                continue;
            }
            if tail.starts_with('}') {
                return Err(format!("unmatched }} in \"{source}\" (write }}}} for a literal brace)"));
            }
            let Some(end) = tail.find('}') else {
                return Err(format!("unclosed {{ in \"{source}\" (write {{{{ for a literal brace)"));
            };
            let name = &tail[1..end];
            if !text.is_empty() {
                pieces.push(Piece::Text(std::mem::take(&mut text)));
            }
            pieces.push(Piece::Var(Var::parse(name, pattern)?));
            rest = &tail[end + 1..];
        }
        text.push_str(rest);
        if !text.is_empty() {
            pieces.push(Piece::Text(text));
        }
        Ok(Template {
            pieces,
            source: source.to_string(),
        })
    }

    pub fn source(&self) -> &str {
        &self.source
    }

    /// Whether the template has no variables (its text is its value).
    pub fn is_literal(&self) -> bool {
        self.pieces.iter().all(|p| matches!(p, Piece::Text(_)))
    }

    /// Appends the rendered template to `out`.
    pub fn render_into(&self, req: &RequestHeader, vars: &Vars, escape: Escape, out: &mut String) {
        for piece in &self.pieces {
            match piece {
                Piece::Text(t) => out.push_str(t),
                Piece::Var(v) => v.render(req, vars, escape, out),
            }
        }
    }

    pub fn render(&self, req: &RequestHeader, vars: &Vars, escape: Escape) -> String {
        let mut out = String::new();
        self.render_into(req, vars, escape, &mut out);
        out
    }
}

const KNOWN: &str = "path.<param>, query.<name>, header.<name>, claims.<name>, consumer, client_ip, request_id, client_cert.subject|san|fingerprint";

impl Var {
    fn parse(name: &str, pattern: &PathPattern) -> Result<Var, String> {
        let (kind, arg) = name.split_once('.').unwrap_or((name, ""));
        let need_arg = |what: &str| {
            if arg.is_empty() {
                Err(format!("{{{kind}.…}} needs a {what}: {{{kind}.<{what}>}}"))
            } else {
                Ok(())
            }
        };
        match kind {
            "path" => {
                need_arg("param")?;
                pattern.param(arg).map(Var::Path).ok_or_else(|| {
                    format!(
                        "{{path.{arg}}}: the route's {} \"{}\" has no parameter {arg}",
                        pattern.kind(),
                        pattern.source()
                    )
                })
            }
            "query" => need_arg("name").map(|_| Var::Query(arg.to_string())),
            "header" => {
                need_arg("name")?;
                HeaderName::from_bytes(arg.as_bytes())
                    .map(Var::Header)
                    .map_err(|_| format!("{{header.{arg}}}: invalid header name"))
            }
            "claims" => need_arg("name").map(|_| Var::Claim(arg.split('.').map(String::from).collect())),
            "consumer" if arg.is_empty() => Ok(Var::Consumer),
            "client_ip" if arg.is_empty() => Ok(Var::ClientIp),
            "request_id" if arg.is_empty() => Ok(Var::RequestId),
            "client_cert" => match arg {
                "subject" => Ok(Var::ClientCert(ClientCertField::Subject)),
                "san" => Ok(Var::ClientCert(ClientCertField::San)),
                "fingerprint" => Ok(Var::ClientCert(ClientCertField::Fingerprint)),
                _ => Err(format!(
                    "{{client_cert.{arg}}}: expected client_cert.subject, client_cert.san or client_cert.fingerprint"
                )),
            },
            _ => Err(format!("unknown variable {{{name}}} (known: {KNOWN})")),
        }
    }

    fn render(&self, req: &RequestHeader, vars: &Vars, escape: Escape, out: &mut String) {
        match self {
            // Taken from the URL, so already in URL form.
            Var::Path(at) => out.push_str(at.extract(req.uri.path()).unwrap_or("")),
            Var::Query(name) => out.push_str(query_value(req.uri.query(), name).unwrap_or("")),
            Var::Header(name) => {
                let value = req.headers.get(name).and_then(|v| v.to_str().ok());
                push(out, value.unwrap_or(""), escape);
            }
            Var::Claim(path) => {
                let Some(claims) = vars.claims else {
                    return;
                };
                let mut at = claims.get(path[0].as_str());
                for part in &path[1..] {
                    at = at.and_then(|v| v.get(part));
                }
                match at {
                    Some(Value::String(s)) => push(out, s, escape),
                    Some(Value::Array(items)) => {
                        for (i, item) in items.iter().enumerate() {
                            if i > 0 {
                                out.push(',');
                            }
                            match item {
                                Value::String(s) => push(out, s, escape),
                                other => push(out, &other.to_string(), escape),
                            }
                        }
                    }
                    Some(Value::Null) | None => {}
                    Some(other) => push(out, &other.to_string(), escape),
                }
            }
            Var::Consumer => {
                push(out, vars.consumer.unwrap_or(""), escape);
            }
            Var::ClientIp => {
                if let Some(ip) = vars.client_ip {
                    let _ = write!(out, "{ip}");
                }
            }
            Var::RequestId => {
                let id = vars.request_id.and_then(|v| v.to_str().ok());
                push(out, id.unwrap_or(""), escape);
            }
            Var::ClientCert(field) => {
                if let Some(cert) = vars.client_cert {
                    let value = match field {
                        ClientCertField::Subject => cert.subject,
                        ClientCertField::San => cert.san,
                        ClientCertField::Fingerprint => cert.fingerprint,
                    };
                    push(out, value, escape);
                }
            }
        }
    }
}

/// The raw value of the first `name=` parameter in `query`.
pub fn query_value<'a>(query: Option<&'a str>, name: &str) -> Option<&'a str> {
    query?.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        (k == name).then_some(v)
    })
}

/// Appends `value`, percent-encoding what a URL component cannot carry as it is, and
/// dropping control characters from header values (a claim with a newline must not
/// split a header).
fn push(out: &mut String, value: &str, escape: Escape) {
    match escape {
        Escape::Header => out.extend(value.chars().filter(|c| !c.is_control())),
        Escape::Url => {
            for b in value.bytes() {
                if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                    out.push(b as char);
                } else {
                    let _ = write!(out, "%{b:02X}");
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pattern() -> PathPattern {
        PathPattern::parse_path("/users/:user/*rest").unwrap()
    }

    #[test]
    fn every_variable_renders_from_the_request() {
        let mut req = RequestHeader::build("GET", b"/users/42/a/b?x=1&y=two%20words", None).unwrap();
        req.insert_header("x-tenant", "acme").unwrap();
        let claims = serde_json::json!({"sub": "auth0|7", "org": {"id": 5}, "groups": ["a", "b"]});
        let id = HeaderValue::from_static("rid-1");
        let ctx = Vars {
            claims: claims.as_object(),
            consumer: Some("alice"),
            client_ip: "203.0.113.9".parse().ok(),
            request_id: Some(&id),
            client_cert: Some(CertVars {
                subject: "CN=a b",
                san: "DNS:a.example",
                fingerprint: "ab12",
            }),
        };
        let t = Template::compile(
            "/p/{path.user}/{path.rest}?q={query.y}&t={header.x-tenant}&s={claims.sub}&o={claims.org.id}&g={claims.groups}&c={consumer}&ip={client_ip}&r={request_id}{{}}",
            &pattern(),
        )
        .unwrap();
        assert_eq!(
            t.render(&req, &ctx, Escape::Url),
            "/p/42/a/b?q=two%20words&t=acme&s=auth0%7C7&o=5&g=a,b&c=alice&ip=203.0.113.9&r=rid-1{}"
        );
        let h = Template::compile("{claims.sub} via {header.missing}!", &pattern()).unwrap();
        assert_eq!(h.render(&req, &ctx, Escape::Header), "auth0|7 via !");
        let c = Template::compile(
            "{client_cert.subject}|{client_cert.san}|{client_cert.fingerprint}",
            &pattern(),
        )
        .unwrap();
        assert_eq!(c.render(&req, &ctx, Escape::Url), "CN%3Da%20b|DNS%3Aa.example|ab12");
        assert!(Template::compile("{client_cert.serial}", &pattern()).is_err());
    }

    #[test]
    fn unknown_variables_and_bad_braces_are_load_errors() {
        let p = pattern();
        assert!(Template::compile("{path.nope}", &p)
            .unwrap_err()
            .contains("no parameter nope"));
        assert!(Template::compile("{nope}", &p)
            .unwrap_err()
            .contains("known: path.<param>"));
        assert!(Template::compile("{query}", &p).unwrap_err().contains("needs a name"));
        assert!(Template::compile("{header.bad name}", &p).is_err());
        assert!(Template::compile("a{b", &p).unwrap_err().contains("unclosed"));
        assert!(Template::compile("a}b", &p).unwrap_err().contains("unmatched"));
        assert!(Template::compile("plain", &p).unwrap().is_literal());
    }
}
