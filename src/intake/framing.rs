//! The strict reading of an HTTP/1.x request head (RFC 9112), done before Pingora parses
//! it. Pingora is lenient where an edge proxy must not be: it forwards `Content-Length:
//! 3,3` and repeated Content-Length lines, drops a `Content-Length` sent along with
//! `Transfer-Encoding` (and `gzip` from `gzip, chunked`), percent-encodes control
//! characters of the request target, and passes `Transfer_Encoding`-like names on. An
//! upstream may frame any of these differently from us, so each is refused here with a
//! 400 before a byte goes upstream.
//!
//! Pure functions over bytes: unit-tested here and fuzzed (`fuzz/`).

use crate::config::client::MAX_HEADERS;
use crate::config::model::ClientLimits;

/// Header fields parsed without a heap allocation.
const USUAL_HEADERS: usize = 32;

/// A request head that passed every check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Head {
    /// Length of the head in the buffer, the blank line included.
    pub len: usize,
    pub body: Body,
    /// An `Upgrade` request (WebSocket): the bytes after the head belong to Pingora.
    pub upgrade: bool,
}

/// How the request body is framed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Body {
    None,
    Length(u64),
    Chunked,
}

/// Why a head is refused: the status, the `error` of the JSON answer, and the metric kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refusal {
    pub status: u16,
    pub reason: &'static str,
    pub kind: &'static str,
}

impl Refusal {
    const fn bad(reason: &'static str) -> Self {
        Refusal {
            status: 400,
            reason,
            kind: "bad_request",
        }
    }

    pub const URI_TOO_LONG: Refusal = Refusal {
        status: 414,
        reason: "request line too long",
        kind: "uri_too_long",
    };
    pub const HEADERS_TOO_LARGE: Refusal = Refusal {
        status: 431,
        reason: "request header section too large",
        kind: "headers_too_large",
    };
    pub const TOO_MANY_HEADERS: Refusal = Refusal {
        status: 431,
        reason: "too many request header fields",
        kind: "headers_too_large",
    };
    pub const TIMEOUT: Refusal = Refusal {
        status: 408,
        reason: "request header not received in time",
        kind: "header_timeout",
    };
}

/// The outcome of looking at the bytes received so far.
#[derive(Debug, PartialEq, Eq)]
pub enum Parsed {
    Complete(Head),
    /// Not all of the head is there yet (and nothing is wrong so far).
    Partial,
}

/// Reads the head at the start of `buf` (after any empty lines, RFC 9112 §2.2).
pub fn parse(buf: &[u8], limits: &ClientLimits) -> Result<Parsed, Refusal> {
    let start = buf.iter().take_while(|&&b| b == b'\r' || b == b'\n').count();
    let Some(line_len) = buf[start..].iter().position(|&b| b == b'\n') else {
        if buf.len() - start > limits.max_request_line {
            return Err(Refusal::URI_TOO_LONG);
        }
        // What is not a method is refused at once (a TLS handshake on the plain port, a
        // stray protocol), not after waiting for a line end that may never come.
        let method = buf[start..].split(|&b| b == b' ').next().unwrap_or_default();
        if !method.iter().all(|&b| is_tchar(b) || b == b'\r') {
            return Err(Refusal::bad("malformed request line"));
        }
        return Ok(Parsed::Partial);
    };
    if line_len > limits.max_request_line {
        return Err(Refusal::URI_TOO_LONG);
    }
    let line = &buf[start..start + line_len];
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let request = request_line(line)?;
    let fields_start = start + line_len + 1;

    // Most heads have a dozen fields: a small array on the stack (initialising 256 slots
    // cost ≈ 850 instructions a request), the configured maximum only when it overflows.
    let mut storage = [httparse::EMPTY_HEADER; USUAL_HEADERS];
    let mut spill = Vec::new();
    let fields_buf = &buf[fields_start..];
    let mut parsed = httparse::parse_headers(fields_buf, &mut storage);
    if matches!(parsed, Err(httparse::Error::TooManyHeaders)) && limits.max_headers > USUAL_HEADERS {
        spill.resize(limits.max_headers.min(MAX_HEADERS), httparse::EMPTY_HEADER);
        parsed = httparse::parse_headers(fields_buf, &mut spill);
    }
    let (fields_len, fields) = match parsed {
        Ok(httparse::Status::Complete(done)) => done,
        Ok(httparse::Status::Partial) => {
            if buf.len() - fields_start > limits.max_header_size {
                return Err(Refusal::HEADERS_TOO_LARGE);
            }
            return Ok(Parsed::Partial);
        }
        Err(httparse::Error::TooManyHeaders) => return Err(Refusal::TOO_MANY_HEADERS),
        Err(httparse::Error::HeaderName) => return Err(Refusal::bad("malformed header field name")),
        Err(httparse::Error::HeaderValue) => return Err(Refusal::bad("control character in a header field value")),
        Err(_) => return Err(Refusal::bad("malformed header section")),
    };
    if fields_len > limits.max_header_size {
        return Err(Refusal::HEADERS_TOO_LARGE);
    }
    if fields.len() > limits.max_headers {
        return Err(Refusal::TOO_MANY_HEADERS);
    }
    let (body, upgrade) = framing(&request, fields)?;
    Ok(Parsed::Complete(Head {
        len: fields_start + fields_len,
        body,
        upgrade,
    }))
}

struct RequestLine<'a> {
    method: &'a [u8],
    http11: bool,
    /// The authority of an absolute-form target (`GET http://host/path`).
    authority: Option<&'a [u8]>,
}

/// `method SP request-target SP HTTP-version` (RFC 9112 §3), nothing more or less.
fn request_line(line: &[u8]) -> Result<RequestLine<'_>, Refusal> {
    const MALFORMED: Refusal = Refusal::bad("malformed request line");
    let mut parts = line.splitn(3, |&b| b == b' ');
    let (Some(method), Some(target), Some(version)) = (parts.next(), parts.next(), parts.next()) else {
        return Err(MALFORMED);
    };
    if method.is_empty() || !method.iter().all(|&b| is_tchar(b)) || target.is_empty() {
        return Err(MALFORMED);
    }
    // Control characters (CR, NUL, TAB, DEL...) would be percent-encoded by Pingora and
    // forwarded; a space would make the line ambiguous (it ends up in `version`).
    if target.iter().any(|&b| b < 0x20 || b == 0x7f) {
        return Err(Refusal::bad("control character in the request target"));
    }
    let authority = target_authority(method, target)?;
    match version {
        b"HTTP/1.1" => Ok(RequestLine {
            method,
            http11: true,
            authority,
        }),
        b"HTTP/1.0" => Ok(RequestLine {
            method,
            http11: false,
            authority,
        }),
        [b'H', b'T', b'T', b'P', b'/', major, b'.', minor] if major.is_ascii_digit() && minor.is_ascii_digit() => {
            Err(Refusal {
                status: 505,
                reason: "HTTP version not supported",
                kind: "bad_request",
            })
        }
        _ => Err(MALFORMED),
    }
}

/// The request target's form (RFC 9112 §3.2): origin-form (`/path`), absolute-form (its
/// authority returned), `*` for OPTIONS. CONNECT (authority-form) is not proxied.
fn target_authority<'a>(method: &[u8], target: &'a [u8]) -> Result<Option<&'a [u8]>, Refusal> {
    if method == b"CONNECT" {
        return Err(Refusal {
            status: 405,
            reason: "CONNECT is not supported",
            kind: "bad_request",
        });
    }
    if target.starts_with(b"/") {
        return Ok(None);
    }
    if target == b"*" {
        return match method {
            b"OPTIONS" => Ok(None),
            _ => Err(Refusal::bad("malformed request target")),
        };
    }
    let rest = [&b"http://"[..], b"https://"]
        .iter()
        .find(|scheme| target.len() > scheme.len() && target[..scheme.len()].eq_ignore_ascii_case(scheme))
        .map(|scheme| &target[scheme.len()..])
        .ok_or(Refusal::bad("malformed request target"))?;
    let end = rest
        .iter()
        .position(|&b| matches!(b, b'/' | b'?' | b'#'))
        .unwrap_or(rest.len());
    let authority = &rest[..end];
    if !is_authority(authority) {
        return Err(Refusal::bad("invalid authority in the request target"));
    }
    Ok(Some(authority))
}

/// `host[:port]`: a reg-name, IPv4 or `[IPv6]` and a port (RFC 3986 §3.2.2), so no
/// whitespace, no userinfo (`user@host` is a classic way to confuse routing).
fn is_authority(value: &[u8]) -> bool {
    let allowed = |b: &u8| b.is_ascii_alphanumeric() || b"-._~%!$&'()*+,;=:[]".contains(b);
    !value.is_empty() && value.iter().all(allowed)
}

/// Checks the fields that decide where the request ends, and who it is for; also says
/// whether the request asks for an `Upgrade`.
fn framing(request: &RequestLine, fields: &[httparse::Header]) -> Result<(Body, bool), Refusal> {
    let mut length: Option<u64> = None;
    let mut chunked = false;
    let mut hosts = 0;
    let mut upgrade = false;
    for field in fields {
        match Framing::of(field.name)? {
            Some(Framing::ContentLength) => {
                if length.is_some() {
                    return Err(Refusal::bad("several Content-Length fields"));
                }
                length = Some(content_length(field.value)?);
            }
            Some(Framing::TransferEncoding) => {
                if chunked {
                    return Err(Refusal::bad("several Transfer-Encoding fields"));
                }
                transfer_encoding(field.value)?;
                chunked = true;
            }
            Some(Framing::Host) => {
                hosts += 1;
                // Empty is allowed when the target names no authority (RFC 9112 §3.2).
                if !(field.value.is_empty() || is_authority(field.value)) {
                    return Err(Refusal::bad("invalid Host"));
                }
                if request.authority.is_some_and(|a| !a.eq_ignore_ascii_case(field.value)) {
                    return Err(Refusal::bad("Host differs from the request target"));
                }
            }
            Some(Framing::Expect) if !field.value.eq_ignore_ascii_case(b"100-continue") => {
                return Err(Refusal {
                    status: 417,
                    reason: "only Expect: 100-continue is supported",
                    kind: "bad_request",
                });
            }
            Some(Framing::Expect) => {}
            Some(Framing::Upgrade) => upgrade = true,
            None => {}
        }
    }
    if chunked && length.is_some() {
        return Err(Refusal::bad("both Transfer-Encoding and Content-Length"));
    }
    if chunked && !request.http11 {
        return Err(Refusal::bad("Transfer-Encoding in an HTTP/1.0 request"));
    }
    if hosts > 1 {
        return Err(Refusal::bad("several Host fields"));
    }
    if hosts == 0 && request.http11 {
        return Err(Refusal::bad("HTTP/1.1 request without Host"));
    }
    let body = match (chunked, length) {
        (true, _) => Body::Chunked,
        (false, Some(0) | None) => Body::None,
        (false, Some(n)) => Body::Length(n),
    };
    if request.method == b"HEAD" && body != Body::None {
        return Err(Refusal::bad("HEAD request with a body"));
    }
    Ok((body, upgrade))
}

/// The fields that framing depends on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Framing {
    ContentLength,
    TransferEncoding,
    Host,
    Expect,
    Upgrade,
}

impl Framing {
    /// `None` for other fields; a refusal for names that only look like one of these
    /// (`Transfer_Encoding`, `Content--Length`): some servers fold `_` into `-`.
    fn of(name: &str) -> Result<Option<Framing>, Refusal> {
        const CONTENT_LENGTH: (&str, &str, Framing) = ("content-length", "contentlength", Framing::ContentLength);
        const TRANSFER_ENCODING: (&str, &str, Framing) =
            ("transfer-encoding", "transferencoding", Framing::TransferEncoding);
        const HOST: (&str, &str, Framing) = ("host", "host", Framing::Host);
        const EXPECT: (&str, &str, Framing) = ("expect", "expect", Framing::Expect);
        const UPGRADE: (&str, &str, Framing) = ("upgrade", "upgrade", Framing::Upgrade);
        // Dispatch on the first letter: most fields (Accept, User-Agent...) stop here.
        let first = name
            .bytes()
            .find(|&b| b != b'-' && b != b'_')
            .map(|b| b.to_ascii_lowercase());
        let (exact, folded, kind) = match first {
            Some(b'c') => CONTENT_LENGTH,
            Some(b't') => TRANSFER_ENCODING,
            Some(b'h') => HOST,
            Some(b'e') => EXPECT,
            Some(b'u') => UPGRADE,
            _ => return Ok(None),
        };
        if name.len() == exact.len() && name.eq_ignore_ascii_case(exact) {
            return Ok(Some(kind));
        }
        if kind != Framing::Upgrade && name.len() >= folded.len() && folds_to(name, folded) {
            return Err(Refusal::bad("header field name resembles a framing field"));
        }
        Ok(None)
    }
}

/// Whether `name`, without `-` and `_` and lowercased, is `folded`.
fn folds_to(name: &str, folded: &str) -> bool {
    let mut letters = name
        .bytes()
        .filter(|&b| b != b'-' && b != b'_')
        .map(|b| b.to_ascii_lowercase());
    folded.bytes().all(|f| letters.next() == Some(f)) && letters.next().is_none()
}

/// `1*DIGIT`, nothing else: no list (`3,3`), no sign, no space inside.
fn content_length(value: &[u8]) -> Result<u64, Refusal> {
    let value = value.trim_ascii();
    if value.is_empty() || value.len() > 19 || !value.iter().all(u8::is_ascii_digit) {
        return Err(Refusal::bad("invalid Content-Length"));
    }
    Ok(value.iter().fold(0u64, |n, d| n * 10 + u64::from(d - b'0')))
}

/// Only `chunked`: other codings are not decoded by the gateway, and forwarding them as
/// bare `chunked` (as Pingora would) changes the body the upstream sees.
fn transfer_encoding(value: &[u8]) -> Result<(), Refusal> {
    const KNOWN: [&[u8]; 6] = [b"gzip", b"x-gzip", b"deflate", b"compress", b"x-compress", b"identity"];
    let mut codings = value.split(|&b| b == b',').map(|c| c.trim_ascii());
    let last = codings.next_back().unwrap_or_default();
    if !last.eq_ignore_ascii_case(b"chunked") {
        return Err(Refusal::bad("Transfer-Encoding does not end with chunked"));
    }
    let mut others = 0;
    for coding in codings {
        if !KNOWN.iter().any(|k| coding.eq_ignore_ascii_case(k)) {
            // `chunked` itself included: it is applied once, last (RFC 9112 §6.1).
            return Err(Refusal::bad("unknown transfer coding"));
        }
        others += 1;
    }
    if others > 0 {
        return Err(Refusal {
            status: 501,
            reason: "only the chunked transfer coding is supported",
            kind: "bad_request",
        });
    }
    Ok(())
}

/// RFC 9110 §5.6.2 token characters.
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

#[cfg(test)]
mod tests;
