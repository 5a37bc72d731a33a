//! The one downstream module of the proxy: the last changes to an answer on its way to
//! the client, in one context per request (one allocation, one dispatch per phase):
//!
//! 1. gRPC-Web (Pingora's bridge context): a bridged request goes upstream as gRPC, its
//!    answer's content type and trailers come back as gRPC-Web;
//! 2. compression (Pingora's compression context), steered per route by compression.rs,
//!    plus the end of brotli streams: Pingora 0.9's brotli encoder flushes at the end of a
//!    body but never closes the stream, and strict decoders (the brotli crate, curl) refuse
//!    a stream without its last meta-block. After a flush the stream is byte-aligned, so
//!    the closing empty last meta-block is one byte, `0x03` (ISLAST = 1, ISLASTEMPTY = 1).
//!
//! Both start off; a request turns them on (`early_request_filter`, `request_filter`).

use async_trait::async_trait;
use bytes::{BufMut, Bytes, BytesMut};
use http::HeaderMap;
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::modules::http::{HttpModule, HttpModuleBuilder, Module, ModuleBuilder};
use pingora::protocols::http::bridge::grpc_web::GrpcWebCtx;
use pingora::protocols::http::compression::ResponseCompressionCtx;

/// The byte that ends a flushed brotli stream: an empty last meta-block.
const BROTLI_END: u8 = 0x03;

pub struct EdgeModule {
    pub grpc_web: GrpcWebCtx,
    pub compression: ResponseCompressionCtx,
    /// The body is being brotli-compressed by the gateway.
    brotli: bool,
    finished: bool,
}

impl EdgeModule {
    /// The module for `HttpModules::add_module`.
    pub fn builder() -> ModuleBuilder {
        Box::new(EdgeModuleBuilder)
    }

    /// A gRPC-Web request: bridge it (before the module sees the request header).
    pub fn bridge_grpc_web(&mut self) {
        self.grpc_web.init();
    }

    fn finish(&mut self, out: Option<Bytes>) -> Option<Bytes> {
        if !self.brotli || self.finished {
            return out;
        }
        self.finished = true;
        let mut end = BytesMut::with_capacity(out.as_ref().map_or(0, Bytes::len) + 1);
        if let Some(out) = out {
            end.extend_from_slice(&out);
        }
        end.put_u8(BROTLI_END);
        Some(end.freeze())
    }
}

struct EdgeModuleBuilder;

impl HttpModuleBuilder for EdgeModuleBuilder {
    fn init(&self) -> Module {
        Box::new(EdgeModule {
            grpc_web: GrpcWebCtx::default(),
            compression: ResponseCompressionCtx::new(0, false, false),
            brotli: false,
            finished: false,
        })
    }

    fn order(&self) -> i16 {
        // After any other module: compression is the last change to the body.
        i16::MIN / 2
    }
}

#[async_trait]
impl HttpModule for EdgeModule {
    fn as_any(&self) -> &dyn std::any::Any {
        self
    }

    fn as_any_mut(&mut self) -> &mut dyn std::any::Any {
        self
    }

    async fn request_header_filter(&mut self, req: &mut RequestHeader) -> pingora::Result<()> {
        self.grpc_web.request_header_filter(req);
        Ok(())
    }

    async fn response_header_filter(&mut self, resp: &mut ResponseHeader, end_of_stream: bool) -> pingora::Result<()> {
        self.grpc_web.response_header_filter(resp);
        self.compression.response_header_filter(resp, end_of_stream);
        self.brotli = self.compression.get_info().is_some_and(|(name, ..)| name == "brotli");
        Ok(())
    }

    fn response_body_filter(&mut self, body: &mut Option<Bytes>, end_of_stream: bool) -> pingora::Result<()> {
        if !self.compression.is_enabled() || self.finished {
            return Ok(());
        }
        let compressed = self.compression.response_body_filter(body.as_ref(), end_of_stream);
        if compressed.is_some() {
            *body = compressed;
        }
        if end_of_stream {
            *body = self.finish(body.take());
        }
        Ok(())
    }

    fn response_trailer_filter(&mut self, trailers: &mut Option<Box<HeaderMap>>) -> pingora::Result<Option<Bytes>> {
        match trailers {
            // gRPC-Web: the trailers become the body's last frame.
            Some(trailers) => self.grpc_web.response_trailer_filter(trailers),
            None => Ok(None),
        }
    }

    fn response_done_filter(&mut self) -> pingora::Result<Option<Bytes>> {
        if !self.compression.is_enabled() || self.finished {
            return Ok(None);
        }
        let rest = self.compression.response_body_filter(None, true);
        Ok(self.finish(rest))
    }
}
