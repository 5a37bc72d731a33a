//! Response headers on the way back: hop-by-hop headers of the upstream connection are
//! dropped (Pingora writes its own `Connection`), and X-Request-ID is added.

use super::request_id;
use crate::proxy::RequestCtx;
use http::header::{CONNECTION, UPGRADE};
use pingora::http::ResponseHeader;

/// Hop-by-hop response headers that are never forwarded (RFC 9110 §7.6.1).
const HOP_BY_HOP: [&str; 3] = ["keep-alive", "proxy-connection", "te"];

pub fn apply(resp: &mut ResponseHeader, ctx: &RequestCtx) -> pingora::Result<()> {
    // A 101 keeps Connection/Upgrade: they are the handshake.
    if resp.status != http::StatusCode::SWITCHING_PROTOCOLS {
        drop_connection_nominated(resp);
        resp.remove_header(&CONNECTION);
        resp.remove_header(&UPGRADE);
    }
    for name in HOP_BY_HOP {
        resp.remove_header(name);
    }
    resp.insert_header(request_id::HEADER, ctx.request_id.as_str())
}

/// Removes the headers the upstream's `Connection` names (`Connection: close, X-Internal`).
fn drop_connection_nominated(resp: &mut ResponseHeader) {
    let Some(value) = resp.headers.get(CONNECTION) else {
        return;
    };
    let Ok(tokens) = value.to_str() else {
        return;
    };
    let nominated: Vec<String> = tokens
        .split(',')
        .map(|t| t.trim().to_ascii_lowercase())
        .filter(|t| !t.is_empty() && t != "close" && t != "keep-alive")
        .collect();
    for name in nominated {
        resp.remove_header(name.as_str());
    }
}
