//! Writing the responses the gateway makes itself. Every one is JSON, carries
//! X-Request-ID, and is written here and nowhere else.

use super::RequestCtx;
use crate::filters::response_headers;
use crate::request::{grpc, GatewayError};
use bytes::Bytes;
use http::header::{ALLOW, CACHE_CONTROL, CONTENT_LENGTH, CONTENT_TYPE, LOCATION, RETRY_AFTER, WWW_AUTHENTICATE};
use pingora::http::ResponseHeader;
use pingora::protocols::http::HttpTask;
use pingora::proxy::Session;
use serde::Serialize;

#[derive(Serialize)]
struct ErrorBody<'a> {
    error: &'a str,
    /// A stable name for errors a client may branch on (`idp_unavailable`).
    #[serde(skip_serializing_if = "Option::is_none")]
    code: Option<&'static str>,
    status: u16,
    request_id: &'a str,
}

/// `{"error": "...", "status": N, "request_id": "..."}` with the error's status; to a gRPC
/// call, a trailers-only gRPC answer instead.
pub async fn error(session: &mut Session, ctx: &mut RequestCtx, err: &GatewayError) -> pingora::Result<()> {
    if grpc::is_grpc(session.req_header()) {
        return grpc_error(session, ctx, err).await;
    }
    let (resp, body) = error_response(ctx, err)?;
    send(session, ctx, resp, body).await
}

/// HTTP 200 with `grpc-status` and `grpc-message` in one HEADERS frame that ends the stream
/// (gRPC's trailers-only answer), plus the gateway's usual headers.
async fn grpc_error(session: &mut Session, ctx: &mut RequestCtx, err: &GatewayError) -> pingora::Result<()> {
    let status = grpc::status_of(err);
    ctx.grpc_status = Some(status);
    let mut resp = ResponseHeader::build(200, Some(8))?;
    resp.insert_header(CONTENT_TYPE, "application/grpc")?;
    resp.insert_header("grpc-status", status.to_string())?;
    resp.insert_header("grpc-message", grpc::encode_message(&err.message()))?;
    if let Some(challenge) = err.challenge() {
        resp.insert_header(WWW_AUTHENTICATE, challenge)?;
    }
    if let GatewayError::RateLimited { retry_after } = err {
        resp.insert_header(RETRY_AFTER, *retry_after)?;
    }
    if session.req_header().version < http::Version::HTTP_2 {
        // gRPC-Web over HTTP/1.1: the empty body needs its length.
        resp.insert_header(CONTENT_LENGTH, 0)?;
    }
    response_headers::finish(&mut resp, ctx)?;
    session
        .write_response_tasks(vec![HttpTask::Header(Box::new(resp), true)])
        .await
        .map(|_| ())
}

/// The header (without the JSON framing headers `send` adds) and body of an error answer.
fn error_response(ctx: &RequestCtx, err: &GatewayError) -> pingora::Result<(ResponseHeader, Bytes)> {
    let status = err.status();
    let message = err.message();
    let body = serde_json::to_vec(&ErrorBody {
        error: &message,
        code: err.code(),
        status,
        request_id: crate::filters::request_id::as_str(&ctx.request_id),
    })
    .unwrap_or_default();
    let mut resp = ResponseHeader::build(status, Some(8))?;
    if let GatewayError::MethodNotAllowed { allow } = err {
        resp.insert_header(ALLOW, allow.as_str())?;
    }
    if let GatewayError::RateLimited { retry_after } = err {
        resp.insert_header(RETRY_AFTER, *retry_after)?;
    }
    if let Some(challenge) = err.challenge() {
        resp.insert_header(WWW_AUTHENTICATE, challenge)?;
    }
    Ok((resp, body.into()))
}

/// An error answer as HTTP/1.1 bytes, for a connection Pingora never saw a request on:
/// the same JSON body and headers as [`error`], with `Date` and `Connection: close`.
/// Also returns the length of the body sent.
pub fn error_wire(ctx: &RequestCtx, err: &GatewayError, head_only: bool) -> pingora::Result<(Vec<u8>, usize)> {
    let (mut resp, body) = error_response(ctx, err)?;
    resp.insert_header(CONTENT_TYPE, "application/json")?;
    resp.insert_header(CONTENT_LENGTH, body.len())?;
    response_headers::finish(&mut resp, ctx)?;
    let date = jiff::fmt::rfc2822::DateTimePrinter::new().timestamp_to_rfc9110_string(&jiff::Timestamp::now());
    if let Ok(date) = date {
        resp.insert_header(http::header::DATE, date)?;
    }
    resp.insert_header(http::header::CONNECTION, "close")?;
    let mut wire = Vec::with_capacity(512 + body.len());
    let reason = resp.status.canonical_reason().unwrap_or("");
    wire.extend_from_slice(format!("HTTP/1.1 {} {reason}\r\n", resp.status.as_u16()).as_bytes());
    resp.header_to_h1_wire(&mut wire);
    wire.extend_from_slice(b"\r\n");
    if head_only {
        return Ok((wire, 0));
    }
    wire.extend_from_slice(&body);
    Ok((wire, body.len()))
}

/// A 200 JSON document (the health endpoint).
pub async fn json(session: &mut Session, ctx: &RequestCtx, body: Vec<u8>) -> pingora::Result<()> {
    let mut resp = ResponseHeader::build(200, Some(4))?;
    resp.insert_header(CACHE_CONTROL, "no-store")?;
    send(session, ctx, resp, body.into()).await
}

/// The answer to an ACME HTTP-01 challenge (RFC 8555 §8.3): the key authorization, as
/// text.
pub async fn acme_challenge(session: &mut Session, ctx: &RequestCtx, answer: String) -> pingora::Result<()> {
    let mut resp = ResponseHeader::build(200, Some(4))?;
    resp.insert_header(CACHE_CONTROL, "no-store")?;
    let body = Bytes::from(answer);
    resp.insert_header(CONTENT_LENGTH, body.len())?;
    resp.insert_header(CONTENT_TYPE, "application/octet-stream")?;
    response_headers::finish(&mut resp, ctx)?;
    session.write_response_header(Box::new(resp), false).await?;
    session.write_response_body(Some(body), true).await
}

/// 308 Permanent Redirect to `location` (method and body are kept by the client).
pub async fn redirect(session: &mut Session, ctx: &RequestCtx, location: &str) -> pingora::Result<()> {
    let mut resp = ResponseHeader::build(308, Some(6))?;
    resp.insert_header(LOCATION, location)?;
    let body = serde_json::to_vec(&serde_json::json!({ "location": location })).unwrap_or_default();
    send(session, ctx, resp, body.into()).await
}

/// An aggregate route's answer: the parts are called, merged and sent as one JSON
/// document with `X-Aggregated: true` (and `X-Cache` on a caching route).
pub async fn aggregate(
    session: &mut Session,
    ctx: &mut RequestCtx,
    caller: &crate::aggregate::Caller,
) -> pingora::Result<()> {
    let snapshot = std::sync::Arc::clone(&ctx.snapshot);
    let Some(route) = ctx.route.map(|i| &snapshot.routes[i]) else {
        return error(session, ctx, &GatewayError::Internal).await;
    };
    let Some(agg) = &route.aggregate else {
        return error(session, ctx, &GatewayError::Internal).await;
    };
    let cache = route
        .cache
        .as_ref()
        .filter(|_| session.req_header().method == http::Method::GET);
    let original = session.req_header().clone();
    let answer = agg.answer(&route.name, cache, &original, ctx, caller).await;
    let mut body = answer.body;
    if let Some(edits) = route.json.as_ref().filter(|_| answer.status == 200) {
        if let Ok(mut doc) = serde_json::from_slice::<serde_json::Value>(&body) {
            crate::filters::json_body::edit(&mut doc, edits);
            body = serde_json::to_vec(&doc).unwrap_or_default().into();
        }
    }
    let mut resp = ResponseHeader::build(answer.status, Some(8))?;
    resp.insert_header("x-aggregated", "true")?;
    resp.insert_header(CACHE_CONTROL, "no-store")?;
    if let Some(hit) = answer.cache_hit {
        resp.insert_header("x-cache", if hit { "HIT" } else { "MISS" })?;
    }
    if let Some(edits) = &route.response_edits {
        edits.apply_response(&mut resp, &original, ctx)?;
    }
    send(session, ctx, resp, body).await
}

/// An answer made elsewhere (the forward-auth service's refusal), with the gateway's
/// headers added and its own framing.
pub async fn relay(
    session: &mut Session,
    ctx: &RequestCtx,
    mut resp: ResponseHeader,
    body: Bytes,
) -> pingora::Result<()> {
    resp.insert_header(CONTENT_LENGTH, body.len())?;
    response_headers::finish(&mut resp, ctx)?;
    let body = (session.req_header().method != http::Method::HEAD).then_some(body);
    session.write_response_header(Box::new(resp), false).await?;
    session.write_response_body(body, true).await
}

/// A response with headers only (a CORS preflight's 204).
pub async fn headers_only(session: &mut Session, ctx: &RequestCtx, mut resp: ResponseHeader) -> pingora::Result<()> {
    response_headers::finish(&mut resp, ctx)?;
    session.write_response_header(Box::new(resp), false).await?;
    session.write_response_body(None, true).await
}

async fn send(session: &mut Session, ctx: &RequestCtx, mut resp: ResponseHeader, body: Bytes) -> pingora::Result<()> {
    resp.insert_header(CONTENT_TYPE, "application/json")?;
    resp.insert_header(CONTENT_LENGTH, body.len())?;
    response_headers::finish(&mut resp, ctx)?;
    if let Some(compression) = ctx.route().and_then(|r| r.compression.as_ref()) {
        compression.on_response(&mut session.downstream_modules_ctx, &resp);
    }
    // HEAD gets the headers only; Pingora's HTTP/1 writer knows not to send a body.
    let body = (session.req_header().method != http::Method::HEAD).then_some(body);
    session.write_response_header(Box::new(resp), false).await?;
    session.write_response_body(body, true).await
}
