//! The W3C trace context a request belongs to: the client's `traceparent` when valid, else
//! a new trace; this hop gets a span of its own. The trace id is written in the access log
//! and sent upstream (filters/tracing.rs).

use pingora::http::RequestHeader;

pub const TRACEPARENT: &str = "traceparent";
/// For lookups: a `&str` key is parsed into a header name on every call.
const TRACEPARENT_NAME: http::HeaderName = http::HeaderName::from_static(TRACEPARENT);

/// Length of `00-<32 hex>-<16 hex>-<2 hex>`.
const TRACEPARENT_LEN: usize = 55;

/// The trace this request belongs to, read from the client's `traceparent` when valid.
/// Held as the `traceparent` this hop sends upstream (fixed size, no allocation); the ids
/// are slices of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TraceContext {
    /// `00-<trace-id>-<this hop's span id>-<flags>`, lowercase hex.
    pub(crate) traceparent: [u8; TRACEPARENT_LEN],
    /// The client's span (16 hex digits), when it sent a valid `traceparent`.
    parent_id: Option<[u8; 16]>,
}

impl TraceContext {
    /// The client's context, or a new sampled trace.
    pub fn for_request(req: &RequestHeader) -> Self {
        req.headers
            .get(TRACEPARENT_NAME)
            .and_then(|v| parse(v.as_bytes()))
            .unwrap_or_else(|| {
                let mut trace = [0u8; 32];
                let _ = hex::encode_to_slice(uuid::Uuid::new_v4().as_bytes(), &mut trace);
                Self::new(&trace, None, b"01")
            })
    }

    fn new(trace: &[u8; 32], parent_id: Option<[u8; 16]>, flags: &[u8]) -> Self {
        let mut traceparent = *b"00-00000000000000000000000000000000-0000000000000000-00";
        traceparent[3..35].copy_from_slice(trace);
        let _ = hex::encode_to_slice(&uuid::Uuid::new_v4().as_bytes()[..8], &mut traceparent[36..52]);
        traceparent[53..55].copy_from_slice(flags);
        TraceContext { traceparent, parent_id }
    }

    /// 32 lowercase hex digits.
    pub fn trace_id(&self) -> &str {
        ascii(&self.traceparent[3..35])
    }

    /// This hop's span: the parent of the upstream's (16 hex digits).
    pub fn span_id(&self) -> &str {
        ascii(&self.traceparent[36..52])
    }

    /// The client's span, when it sent a valid `traceparent`.
    pub fn parent_id(&self) -> Option<&str> {
        self.parent_id.as_ref().map(|p| ascii(p))
    }

    /// A `traceparent` for a call this hop makes itself (an aggregate part): the same
    /// trace, a new span of its own.
    pub fn child_traceparent(&self) -> [u8; TRACEPARENT_LEN] {
        let mut child = self.traceparent;
        let _ = hex::encode_to_slice(&uuid::Uuid::new_v4().as_bytes()[..8], &mut child[36..52]);
        child
    }

    /// Two hex digits (`01` = sampled).
    pub fn flags(&self) -> &str {
        ascii(&self.traceparent[53..55])
    }
}

/// Every byte in a `TraceContext` is an ASCII hex digit, `0` or `-`.
fn ascii(bytes: &[u8]) -> &str {
    std::str::from_utf8(bytes).unwrap_or_default()
}

/// `00-<trace-id>-<parent-id>-<flags>` (version 00; ids not all zero).
fn parse(value: &[u8]) -> Option<TraceContext> {
    let value = value.trim_ascii();
    if value.len() != TRACEPARENT_LEN || &value[..3] != b"00-" || value[35] != b'-' || value[52] != b'-' {
        return None;
    }
    let (trace, parent, flags) = (&value[3..35], &value[36..52], &value[53..55]);
    let hex = |s: &[u8]| s.iter().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(b));
    let not_zero = |s: &[u8]| s.iter().any(|&b| b != b'0');
    if !(hex(trace) && hex(parent) && hex(flags) && not_zero(trace) && not_zero(parent)) {
        return None;
    }
    Some(TraceContext::new(
        trace.try_into().ok()?,
        Some(parent.try_into().ok()?),
        flags,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn valid_traceparents_are_continued_others_replaced() {
        let good = parse(b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01").unwrap();
        assert_eq!(good.trace_id(), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(good.parent_id(), Some("00f067aa0ba902b7"));
        assert_eq!(good.flags(), "01");
        assert_eq!(good.span_id().len(), 16);
        assert_ne!(good.span_id(), "00f067aa0ba902b7", "a new span for this hop");
        let fresh = TraceContext::for_request(&RequestHeader::build("GET", b"/", None).unwrap());
        assert_eq!(
            (fresh.trace_id().len(), fresh.parent_id(), fresh.flags()),
            (32, None, "01")
        );
        assert!(
            parse(&fresh.traceparent).is_some(),
            "what it sends is a valid traceparent"
        );
        for bad in [
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",
            "garbage",
        ] {
            assert!(parse(bad.as_bytes()).is_none(), "{bad}");
        }
    }
}
