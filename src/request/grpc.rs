//! gRPC's vocabulary for what the gateway says itself: a request is gRPC when its
//! `Content-Type` is `application/grpc…`; the gateway's own answers to it are trailers-only
//! (HTTP 200, `grpc-status`, `grpc-message`), with the status its error maps to; the
//! client's `grpc-timeout` is read as the call's deadline.

use super::GatewayError;
use http::header::{HeaderName, CONTENT_TYPE};
use pingora::http::RequestHeader;
use std::time::Duration;

/// gRPC status codes the gateway answers with (grpc/doc/statuscodes.md).
pub mod code {
    pub const INVALID_ARGUMENT: u8 = 3;
    pub const DEADLINE_EXCEEDED: u8 = 4;
    pub const PERMISSION_DENIED: u8 = 7;
    pub const RESOURCE_EXHAUSTED: u8 = 8;
    pub const UNIMPLEMENTED: u8 = 12;
    pub const INTERNAL: u8 = 13;
    pub const UNAVAILABLE: u8 = 14;
    pub const UNAUTHENTICATED: u8 = 16;
}

/// `application/grpc`, `application/grpc+proto`, … (gRPC-Web is `application/grpc-web…`,
/// which the gRPC-Web bridge turns into this before the gateway answers).
pub fn is_grpc(req: &RequestHeader) -> bool {
    req.headers
        .get(CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/grpc"))
}

/// The gRPC status for a gateway-made error.
pub fn status_of(err: &GatewayError) -> u8 {
    use code::*;
    match err {
        GatewayError::NotFound | GatewayError::MethodNotAllowed { .. } => UNIMPLEMENTED,
        GatewayError::Unauthorized { .. } | GatewayError::ClientCertRequired => UNAUTHENTICATED,
        GatewayError::ForwardAuthDenied { status: 401 } => UNAUTHENTICATED,
        GatewayError::Forbidden { .. }
        | GatewayError::IpDenied
        | GatewayError::CorsRefused
        | GatewayError::ForwardAuthDenied { .. } => PERMISSION_DENIED,
        GatewayError::RateLimited { .. } | GatewayError::PayloadTooLarge => RESOURCE_EXHAUSTED,
        GatewayError::NoHealthyTarget { .. }
        | GatewayError::CircuitOpen { .. }
        | GatewayError::BadGateway
        | GatewayError::Unavailable(_) => UNAVAILABLE,
        GatewayError::GatewayTimeout => DEADLINE_EXCEEDED,
        GatewayError::BadRequest(_) | GatewayError::BadHead { .. } => INVALID_ARGUMENT,
        GatewayError::Internal | GatewayError::ClientGone => INTERNAL,
    }
}

/// `grpc-message`: percent-encoded as the gRPC HTTP/2 spec asks (printable ASCII except
/// `%` goes as it is).
pub fn encode_message(message: &str) -> String {
    let mut out = String::with_capacity(message.len());
    for b in message.bytes() {
        if (0x20..=0x7e).contains(&b) && b != b'%' {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

const GRPC_TIMEOUT: HeaderName = HeaderName::from_static("grpc-timeout");

/// The client's `grpc-timeout` (`100m`, `5S`, `1H`, …: at most 8 digits and a unit).
pub fn timeout(req: &RequestHeader) -> Option<Duration> {
    let value = req.headers.get(GRPC_TIMEOUT)?.to_str().ok()?;
    let (digits, unit) = value.split_at(value.len().checked_sub(1)?);
    if digits.is_empty() || digits.len() > 8 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let n: u64 = digits.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(n.saturating_mul(3600)),
        "M" => Duration::from_secs(n.saturating_mul(60)),
        "S" => Duration::from_secs(n),
        "m" => Duration::from_millis(n),
        "u" => Duration::from_micros(n),
        "n" => Duration::from_nanos(n),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_timeout(v: &str) -> Option<Duration> {
        let mut req = RequestHeader::build("POST", b"/pkg.Svc/Get", None).unwrap();
        req.insert_header("grpc-timeout", v).unwrap();
        timeout(&req)
    }

    #[test]
    fn grpc_timeouts_parse_with_their_units() {
        assert_eq!(with_timeout("100m"), Some(Duration::from_millis(100)));
        assert_eq!(with_timeout("5S"), Some(Duration::from_secs(5)));
        assert_eq!(with_timeout("2M"), Some(Duration::from_secs(120)));
        assert_eq!(with_timeout("123456789S"), None, "at most 8 digits");
        assert_eq!(with_timeout("5x"), None);
        assert_eq!(with_timeout("S"), None);
    }

    #[test]
    fn messages_are_percent_encoded() {
        assert_eq!(encode_message("no route: /a b"), "no route: /a b");
        assert_eq!(encode_message("100% é"), "100%25 %C3%A9");
    }
}
