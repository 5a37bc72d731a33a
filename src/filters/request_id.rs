//! X-Request-ID: kept when the client sent a sane one, generated otherwise; sent upstream
//! and returned on the response, and written in the access log.

use super::never_indexed;
use crate::request::RequestCtx;
use http::HeaderValue;
use pingora::http::{KnownHeaderName, RequestHeader};

pub const HEADER: &str = "x-request-id";
/// For inserting: checked once, no parse or allocation per request.
pub const NAME: KnownHeaderName = KnownHeaderName::from_static(HEADER);

/// Longest client-supplied id that is kept.
const MAX_LEN: usize = 128;

/// The id for this request: the client's if sane, else a fresh UUID. A header value, so
/// that the upstream request and the response share it without copying.
pub fn for_request(req: &RequestHeader) -> HeaderValue {
    match req.headers.get(NAME.name()) {
        Some(v) if is_sane(v.as_bytes()) => never_indexed(v.clone()),
        _ => fresh(),
    }
}

/// A new random id (a UUID).
pub fn fresh() -> HeaderValue {
    let mut buf = uuid::Uuid::encode_buffer();
    let id = uuid::Uuid::new_v4().hyphenated().encode_lower(&mut buf);
    never_indexed(HeaderValue::from_str(id).unwrap_or(HeaderValue::from_static("-")))
}

/// The id as text (every id [`for_request`] makes is ASCII).
pub fn as_str(id: &HeaderValue) -> &str {
    id.to_str().unwrap_or("-")
}

/// Short, and only characters that are safe in logs, headers and JSON.
fn is_sane(v: &[u8]) -> bool {
    !v.is_empty() && v.len() <= MAX_LEN && v.iter().all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(b))
}

pub struct PropagateRequestId;

impl PropagateRequestId {
    pub fn apply(&self, req: &mut RequestHeader, ctx: &RequestCtx) -> pingora::Result<()> {
        req.insert_known_header(&NAME, ctx.request_id.clone());
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id_for(value: Option<&str>) -> String {
        let mut req = RequestHeader::build("GET", b"/", None).unwrap();
        if let Some(v) = value {
            req.insert_header(HEADER, v).unwrap();
        }
        as_str(&for_request(&req)).to_string()
    }

    #[test]
    fn ids_are_left_out_of_header_compression_tables() {
        let mut req = RequestHeader::build("GET", b"/", None).unwrap();
        assert!(for_request(&req).is_sensitive());
        req.insert_header(HEADER, "client-id-1").unwrap();
        let kept = for_request(&req);
        assert_eq!(kept, "client-id-1");
        assert!(kept.is_sensitive());
    }

    #[test]
    fn sane_client_ids_are_kept_others_replaced() {
        assert_eq!(id_for(Some("abc-123_x.y:z")), "abc-123_x.y:z");
        assert_eq!(id_for(None).len(), 36);
        assert_ne!(id_for(Some("has space")), "has space");
        assert_ne!(id_for(Some("\"quote")), "\"quote");
        assert_eq!(id_for(Some(&"a".repeat(200))).len(), 36);
    }
}
