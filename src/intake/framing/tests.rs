use super::*;

fn limits() -> ClientLimits {
    ClientLimits::default()
}

fn check(raw: &[u8]) -> Result<Parsed, Refusal> {
    parse(raw, &limits())
}

fn head(raw: &[u8]) -> Head {
    match check(raw) {
        Ok(Parsed::Complete(h)) => h,
        other => panic!("{:?}: {other:?}", String::from_utf8_lossy(raw)),
    }
}

/// Each `(request, status, reason)` is refused with that status and reason.
fn assert_refusals(cases: &[(&[u8], u16, &str)]) {
    for &(raw, status, reason) in cases {
        let r = refused(raw);
        assert_eq!(
            (r.status, r.reason),
            (status, reason),
            "{:?}",
            String::from_utf8_lossy(raw)
        );
    }
}

fn refused(raw: &[u8]) -> Refusal {
    match check(raw) {
        Err(r) => r,
        other => panic!("should be refused: {:?}: {other:?}", String::from_utf8_lossy(raw)),
    }
}

#[test]
fn plain_requests_pass_with_their_framing() {
    let h = head(b"GET /a?b=c HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!((h.len, h.body, h.upgrade), (32, Body::None, false));
    let h = head(b"POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc");
    assert_eq!(h.body, Body::Length(3));
    assert_eq!(h.len, 48, "the body is not part of the head");
    let h = head(b"POST /a HTTP/1.1\r\nHost: x\r\ntransfer-encoding:  Chunked \r\n\r\n3\r\nabc\r\n0\r\n\r\n");
    assert_eq!(h.body, Body::Chunked);
    assert_eq!(
        head(b"POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n").body,
        Body::None
    );
    // HTTP/1.0 needs no Host; bare LF line ends and leading empty lines are tolerated.
    assert_eq!(head(b"GET / HTTP/1.0\r\n\r\n").body, Body::None);
    assert_eq!(head(b"GET / HTTP/1.1\nHost: x\n\n").len, 24);
    assert_eq!(head(b"\r\nGET / HTTP/1.1\r\nHost: x\r\n\r\n").len, 29);
    let h = head(b"GET /ws HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n");
    assert!(h.upgrade);
    // Underscores are allowed in other names; `<>"` in the target are Pingora's to escape.
    head(b"GET /a?q=<\"b\"> HTTP/1.1\r\nHost: x\r\nX_Api_Key: k\r\n\r\n");
    head(b"POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n");
}

#[test]
fn incomplete_heads_wait_for_more() {
    for partial in [
        &b""[..],
        b"GE",
        b"GET / HTTP/1.1\r\n",
        b"GET / HTTP/1.1\r\nHost: x\r\n",
        b"GET / HTTP/1.1\r\nHo",
    ] {
        assert_eq!(
            check(partial),
            Ok(Parsed::Partial),
            "{:?}",
            String::from_utf8_lossy(partial)
        );
    }
}

#[test]
fn what_cannot_be_a_request_line_is_refused_before_its_end() {
    assert_eq!(refused(b"\x16\x03\x01\x02\x00").reason, "malformed request line");
    assert_eq!(refused(b"GE{T").reason, "malformed request line");
}

#[test]
fn ambiguous_content_length_is_refused() {
    for raw in [
        &b"POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 3,3\r\n\r\nabc"[..],
        b"POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 3, 4\r\n\r\nabc",
        b"POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\nabc",
        b"POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: +3\r\n\r\nabc",
        b"POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 0x3\r\n\r\nabc",
        b"POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: \r\n\r\n",
        b"POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999999999999999\r\n\r\n",
    ] {
        let r = refused(raw);
        assert_eq!(r.status, 400, "{:?}", String::from_utf8_lossy(raw));
    }
}

#[test]
fn transfer_encoding_must_be_exactly_chunked_and_alone() {
    let cases: [(&[u8], u16, &str); 7] = [
        (
            b"POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n",
            400,
            "both Transfer-Encoding and Content-Length",
        ),
        (
            b"POST /a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n",
            400,
            "several Transfer-Encoding fields",
        ),
        (
            b"POST /a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked, identity\r\n\r\n",
            400,
            "Transfer-Encoding does not end with chunked",
        ),
        (
            b"POST /a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: foo, chunked\r\n\r\n",
            400,
            "unknown transfer coding",
        ),
        (
            b"POST /a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: xchunked\r\n\r\n",
            400,
            "Transfer-Encoding does not end with chunked",
        ),
        (
            b"POST /a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
            501,
            "only the chunked transfer coding is supported",
        ),
        (
            b"POST /a HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n",
            400,
            "Transfer-Encoding in an HTTP/1.0 request",
        ),
    ];
    assert_refusals(&cases);
}

#[test]
fn names_that_look_like_framing_fields_are_refused() {
    for name in [
        "Transfer_Encoding",
        "Content_Length",
        "Transfer---Encoding",
        "content--length",
        "HO_ST",
        "Ex-pect",
    ] {
        let raw = format!("GET /a HTTP/1.1\r\nHost: x\r\n{name}: 0\r\n\r\n");
        let r = refused(raw.as_bytes());
        assert_eq!(
            (r.status, r.reason),
            (400, "header field name resembles a framing field"),
            "{name}"
        );
    }
    // Names that merely contain one are fine.
    head(b"GET /a HTTP/1.1\r\nHost: x\r\nX-Content-Length: 1\r\nX-Forwarded-Host: y\r\n\r\n");
}

#[test]
fn malformed_names_values_and_targets_are_refused() {
    let cases: [(&[u8], &str); 12] = [
        (
            b"GET /a HTTP/1.1\r\nHost: x\r\nContent-Length : 0\r\n\r\n",
            "malformed header field name",
        ),
        (
            b"GET /a HTTP/1.1\r\nHost: x\r\nX(y): 1\r\n\r\n",
            "malformed header field name",
        ),
        (
            b"GET /a HTTP/1.1\r\nHost: x\r\nX-A: a\x00b\r\n\r\n",
            "control character in a header field value",
        ),
        (
            b"GET /a HTTP/1.1\r\nHost: x\r\nX-A: a\x01b\r\n\r\n",
            "control character in a header field value",
        ),
        (
            b"GET /a HTTP/1.1\r\nHost: x\r\nX-A: a\rb\r\n\r\n",
            "control character in a header field value",
        ),
        (
            b"GET /a HTTP/1.1\r\nHost: x\r\nX-A: a\x7fb\r\n\r\n",
            "control character in a header field value",
        ),
        (
            b"GET /a\x00b HTTP/1.1\r\nHost: x\r\n\r\n",
            "control character in the request target",
        ),
        (
            b"GET /a\rb HTTP/1.1\r\nHost: x\r\n\r\n",
            "control character in the request target",
        ),
        (
            b"GET /a\tb HTTP/1.1\r\nHost: x\r\n\r\n",
            "control character in the request target",
        ),
        (b"GET /a b HTTP/1.1\r\nHost: x\r\n\r\n", "malformed request line"),
        (b"GARBAGE\r\n\r\n", "malformed request line"),
        (
            b"GET /a HTTP/1.1\r\nHost: x\r\nX-A: a\r\n b\r\n\r\n",
            "malformed header field name",
        ),
    ];
    assert_refusals(&cases.map(|(raw, reason)| (raw, 400, reason)));
    assert_eq!(refused(b"GET / HTTP/2.0\r\n\r\n").status, 505);
    assert_eq!(refused(b"GET / HTTPS/1.1\r\n\r\n").status, 400);
    assert_eq!(refused(b"G(T / HTTP/1.1\r\n\r\n").status, 400);
}

#[test]
fn targets_and_hosts_name_one_authority() {
    head(b"GET http://x/a HTTP/1.1\r\nHost: x\r\n\r\n");
    head(b"GET HTTPS://X:8443?q HTTP/1.1\r\nHost: x:8443\r\n\r\n");
    head(b"OPTIONS * HTTP/1.1\r\nHost: x\r\n\r\n");
    head(b"GET / HTTP/1.1\r\nHost: [::1]:8080\r\n\r\n");
    let cases: [(&[u8], u16, &str); 9] = [
        (
            b"GET http://evil/a HTTP/1.1\r\nHost: x\r\n\r\n",
            400,
            "Host differs from the request target",
        ),
        (
            b"GET http://u@x/a HTTP/1.1\r\nHost: x\r\n\r\n",
            400,
            "invalid authority in the request target",
        ),
        (
            b"GET http:///a HTTP/1.1\r\nHost: x\r\n\r\n",
            400,
            "invalid authority in the request target",
        ),
        (b"GET /a HTTP/1.1\r\nHost: user@x\r\n\r\n", 400, "invalid Host"),
        (b"GET /a HTTP/1.1\r\nHost: a b\r\n\r\n", 400, "invalid Host"),
        (b"GET a HTTP/1.1\r\nHost: x\r\n\r\n", 400, "malformed request target"),
        (b"GET * HTTP/1.1\r\nHost: x\r\n\r\n", 400, "malformed request target"),
        (
            b"GET ftp://x/a HTTP/1.1\r\nHost: x\r\n\r\n",
            400,
            "malformed request target",
        ),
        (
            b"CONNECT x:443 HTTP/1.1\r\nHost: x:443\r\n\r\n",
            405,
            "CONNECT is not supported",
        ),
    ];
    assert_refusals(&cases);
}

#[test]
fn host_is_required_once_on_http11() {
    assert_eq!(
        refused(b"GET /a HTTP/1.1\r\n\r\n").reason,
        "HTTP/1.1 request without Host"
    );
    assert_eq!(
        refused(b"GET /a HTTP/1.1\r\nHost: x\r\nhost: y\r\n\r\n").reason,
        "several Host fields"
    );
}

#[test]
fn head_with_a_body_and_other_expectations_are_refused() {
    assert_eq!(
        refused(b"HEAD /a HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc").reason,
        "HEAD request with a body"
    );
    assert_eq!(
        refused(b"HEAD /a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n").reason,
        "HEAD request with a body"
    );
    assert_eq!(
        refused(b"GET /a HTTP/1.1\r\nHost: x\r\nExpect: magic\r\n\r\n").status,
        417
    );
}

#[test]
fn limits_give_414_and_431() {
    let l = ClientLimits {
        max_request_line: 1024,
        max_header_size: 1024,
        max_headers: 4,
        ..ClientLimits::default()
    };
    let long_target = format!("GET /{} HTTP/1.1\r\nHost: x\r\n\r\n", "a".repeat(1100));
    assert_eq!(parse(long_target.as_bytes(), &l), Err(Refusal::URI_TOO_LONG));
    // Refused before the line is complete, too.
    assert_eq!(parse(&long_target.as_bytes()[..1050], &l), Err(Refusal::URI_TOO_LONG));
    let big = format!("GET / HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n", "b".repeat(1100));
    assert_eq!(parse(big.as_bytes(), &l), Err(Refusal::HEADERS_TOO_LARGE));
    assert_eq!(parse(&big.as_bytes()[..1080], &l), Err(Refusal::HEADERS_TOO_LARGE));
    let many = "GET / HTTP/1.1\r\nHost: x\r\nA: 1\r\nB: 2\r\nC: 3\r\nD: 4\r\n\r\n";
    assert_eq!(parse(many.as_bytes(), &l), Err(Refusal::TOO_MANY_HEADERS));
    let four = "GET / HTTP/1.1\r\nHost: x\r\nA: 1\r\nB: 2\r\nC: 3\r\n\r\n";
    assert!(matches!(parse(four.as_bytes(), &l), Ok(Parsed::Complete(_))));
}
