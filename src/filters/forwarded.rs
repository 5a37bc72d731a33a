//! `X-Forwarded-For` (appended), `X-Forwarded-Proto` and `X-Forwarded-Host` (set), so that
//! the upstream knows who asked and how.

use crate::proxy::RequestCtx;
use http::header::HOST;
use pingora::http::RequestHeader;

pub struct Forwarded;

const XFF: &str = "x-forwarded-for";

impl Forwarded {
    pub fn apply(&self, req: &mut RequestHeader, ctx: &RequestCtx) -> pingora::Result<()> {
        // The hop that reached us, not the client resolved through trusted proxies: each
        // proxy appends its own peer.
        if let Some(ip) = ctx.peer_ip {
            let previous: Vec<&str> = req
                .headers
                .get_all(XFF)
                .iter()
                .filter_map(|v| v.to_str().ok())
                .collect();
            let chain = if previous.is_empty() {
                ip.to_string()
            } else {
                format!("{}, {ip}", previous.join(", "))
            };
            req.insert_header(XFF, chain)?;
        }
        req.insert_header("x-forwarded-proto", ctx.scheme)?;
        if let Some(host) = req.headers.get(HOST).cloned() {
            req.insert_header("x-forwarded-host", host)?;
        }
        Ok(())
    }
}
