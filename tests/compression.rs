//! Response compression through the real gateway: each coding decoded by the test and
//! compared with the origin's bytes; q-values, types, sizes, ranges, already-encoded
//! answers and the cache (one identity copy, compressed per client).

mod common;

use common::raw::{ScriptedUpstream, Then};
use common::*;
use std::io::{Read, Write};

/// A JSON document of about 200 KB, compressible.
fn big_json() -> String {
    let items: Vec<String> = (0..4000)
        .map(|i| format!("{{\"id\":{i},\"name\":\"item number {i}\",\"tags\":[\"a\",\"b\"]}}"))
        .collect();
    format!("[{}]", items.join(","))
}

fn decode(encoding: &str, bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    match encoding {
        "gzip" => {
            flate2::read::GzDecoder::new(bytes).read_to_end(&mut out).expect("gzip");
        }
        "br" => {
            // Strict: a stream without its last meta-block is an error here.
            brotli::Decompressor::new(bytes, 4096)
                .read_to_end(&mut out)
                .expect("brotli");
        }
        "zstd" => out = zstd::decode_all(bytes).expect("zstd"),
        other => panic!("unexpected coding {other}"),
    }
    out
}

async fn origin() -> FnServer {
    FnServer::start(|_, path, _| match path {
        "/tiny" => (200, "{\"ok\":true}".to_string(), "application/json"),
        "/png" => (200, "x".repeat(5000), "image/png"),
        "/partial" => (206, "y".repeat(5000), "text/plain"),
        "/page" => (
            200,
            format!("<html>{}</html>", "hello ".repeat(2000)),
            "text/html; charset=utf-8",
        ),
        _ => (200, big_json(), "application/json"),
    })
    .await
}

async fn fetch(gw: &Gateway, path: &str, accept: Option<&str>) -> (reqwest::header::HeaderMap, Vec<u8>) {
    let mut req = client().get(gw.url(path));
    if let Some(a) = accept {
        req = req.header("Accept-Encoding", a);
    }
    let r = req.send().await.unwrap();
    assert_eq!(r.status().as_u16() / 100, 2);
    let headers = r.headers().clone();
    (headers, r.bytes().await.unwrap().to_vec())
}

#[tokio::test]
async fn each_coding_decodes_to_the_origin_bytes_and_q_values_decide() {
    let up = origin().await;
    let gw = Gateway::start(&format!(
        r#"
compression: true
upstreams: {{ u: {{ targets: ["{}"] }} }}
routes: [{{ name: all, prefix: /, upstream: u }}]
"#,
        up.addr()
    ))
    .await;
    let original = big_json().into_bytes();
    for (accept, expected) in [
        ("gzip", "gzip"),
        ("br", "br"),
        ("zstd", "zstd"),
        ("gzip, deflate, br, zstd", "zstd"),
        ("gzip;q=1.0, br;q=0.5", "gzip"),
        ("gzip;q=0, br;q=0.3", "br"),
    ] {
        let (h, body) = fetch(&gw, "/data", Some(accept)).await;
        assert_eq!(h["content-encoding"], expected, "Accept-Encoding: {accept}");
        assert!(h["vary"].to_str().unwrap().eq_ignore_ascii_case("accept-encoding"));
        assert!(!h.contains_key("content-length"), "streamed");
        assert!(body.len() < original.len() / 5, "{expected}: {} bytes", body.len());
        assert_eq!(
            decode(expected, &body),
            original,
            "{expected} decodes to the origin's bytes"
        );
    }
    let (h, body) = fetch(&gw, "/data", None).await;
    assert!(!h.contains_key("content-encoding"));
    assert!(
        h["vary"].to_str().unwrap().eq_ignore_ascii_case("accept-encoding"),
        "the answer depends on the header"
    );
    assert_eq!(body, original);
    let (h, _) = fetch(&gw, "/data", Some("gzip;q=0")).await;
    assert!(!h.contains_key("content-encoding"), "q=0 refuses");

    let (h, body) = fetch(&gw, "/page", Some("gzip")).await;
    assert_eq!(h["content-encoding"], "gzip");
    assert!(decode("gzip", &body).starts_with(b"<html>hello"));
}

#[tokio::test]
async fn tiny_unlisted_ranged_and_already_encoded_bodies_pass_as_they_are() {
    let up = origin().await;
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(big_json().as_bytes()).unwrap();
    let encoded = gz.finish().unwrap();
    let mut reply = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Encoding: gzip\r\nContent-Length: {}\r\n\r\n",
        encoded.len()
    )
    .into_bytes();
    reply.extend_from_slice(&encoded);
    let pre = ScriptedUpstream::start(Box::leak(reply.into_boxed_slice()), Then::Again).await;
    let gw = Gateway::start(&format!(
        r#"
upstreams: {{ u: {{ targets: ["{}"] }}, pre: {{ targets: ["{}"] }} }}
routes:
  - {{ name: pre, prefix: /pre, upstream: pre, compression: true }}
  - {{ name: off, prefix: /off, upstream: u, compression: false }}
  - name: all
    prefix: /
    upstream: u
    compression: {{ encodings: [gzip, br], types: [application/json], min_size: 1KiB, level: 4 }}
"#,
        up.addr(),
        pre.addr
    ))
    .await;
    for path in ["/tiny", "/png", "/partial", "/off/x"] {
        let (h, _) = fetch(&gw, path, Some("gzip, br")).await;
        assert!(!h.contains_key("content-encoding"), "{path} is not compressed: {h:?}");
    }
    let (h, _) = fetch(&gw, "/page", Some("gzip")).await;
    assert!(
        !h.contains_key("content-encoding"),
        "text/html is not in this route's types"
    );
    let (h, _) = fetch(&gw, "/data", Some("zstd, gzip")).await;
    assert_eq!(h["content-encoding"], "gzip", "zstd is not in this route's encodings");

    // Already gzip: passed as it is to a client that takes gzip, decoded for one that
    // does not.
    let (h, body) = fetch(&gw, "/pre", Some("gzip")).await;
    assert_eq!(h["content-encoding"], "gzip");
    assert_eq!(body, encoded, "not compressed twice");
    let (h, body) = fetch(&gw, "/pre", Some("br;q=0.5")).await;
    assert!(!h.contains_key("content-encoding"), "{h:?}");
    assert_eq!(
        body,
        big_json().into_bytes(),
        "decoded for a client that does not take gzip"
    );
}

#[tokio::test]
async fn the_cache_keeps_one_identity_copy_and_compresses_each_answer() {
    let up = MockUpstream::start("u").await;
    let doc = Box::leak(big_json().into_boxed_str());
    up.set_body(doc);
    let gw = Gateway::start(&format!(
        r#"
cache: {{ max_size: 16MiB }}
compression: true
upstreams: {{ u: {{ targets: ["{}"] }} }}
routes: [{{ name: all, prefix: /, upstream: u, cache: {{ ttl: 60s }} }}]
"#,
        up.addr()
    ))
    .await;
    let (h1, b1) = fetch(&gw, "/doc", Some("gzip")).await;
    let (h2, b2) = fetch(&gw, "/doc", Some("br")).await;
    let (h3, b3) = fetch(&gw, "/doc", None).await;
    assert_eq!(h1["x-cache"], "MISS");
    assert_eq!(
        (h2["x-cache"].to_str().unwrap(), h3["x-cache"].to_str().unwrap()),
        ("HIT", "HIT")
    );
    assert_eq!(up.hits(), 1, "one stored copy serves every coding");
    assert!(
        !up.last().headers.contains_key("accept-encoding"),
        "the upstream is asked for identity"
    );
    assert_eq!(decode("gzip", &b1), doc.as_bytes());
    assert_eq!(decode("br", &b2), doc.as_bytes());
    assert_eq!(b3, doc.as_bytes());
}

#[tokio::test]
async fn compression_streams_the_body_instead_of_holding_it() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    // An upstream that sends half of a 2 MiB JSON body, waits 3 s, then the rest.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let half = big_json().into_bytes().repeat(5);
    let origin = tokio::spawn(async move {
        while let Ok((mut conn, _)) = listener.accept().await {
            let half = half.clone();
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut byte = [0u8; 1];
                while !head.ends_with(b"\r\n\r\n") {
                    if conn.read(&mut byte).await.unwrap_or(0) == 0 {
                        return;
                    }
                    head.push(byte[0]);
                }
                let reply = format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
                    2 * half.len()
                );
                let _ = conn.write_all(reply.as_bytes()).await;
                let _ = conn.write_all(&half).await;
                tokio::time::sleep(std::time::Duration::from_secs(3)).await;
                let _ = conn.write_all(&half).await;
            });
        }
    });
    let gw = Gateway::start(&format!(
        "compression: true\nupstreams: {{ u: {{ targets: [\"{addr}\"] }} }}\nroutes: [{{ name: all, prefix: /, upstream: u }}]\n"
    ))
    .await;
    let started = std::time::Instant::now();
    let mut r = client()
        .get(gw.url("/slow"))
        .header("Accept-Encoding", "gzip")
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["content-encoding"], "gzip");
    let first = r.chunk().await.unwrap().expect("a first compressed chunk");
    assert!(!first.is_empty());
    assert!(
        started.elapsed() < std::time::Duration::from_secs(2),
        "compressed bytes of the first half arrive before the second half is sent ({:?})",
        started.elapsed()
    );
    let mut body = first.to_vec();
    while let Some(chunk) = r.chunk().await.unwrap() {
        body.extend_from_slice(&chunk);
    }
    assert!(started.elapsed() >= std::time::Duration::from_secs(3));
    assert_eq!(decode("gzip", &body).len(), 2 * big_json().len() * 5);
    origin.abort();
}
