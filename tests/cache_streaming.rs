//! Streaming fills: while a large response is still arriving from the origin, every
//! request for it reads what has arrived so far (one origin request in all); ranges are
//! served from a fill or a whole fetch; a fill the origin breaks off is never served as
//! a complete body. The origin is a raw TCP server so the test controls exactly when each
//! byte leaves it.

mod common;

use common::{client, Gateway};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

const MIB: usize = 1 << 20;

fn pattern(offset: usize) -> u8 {
    (offset % 251) as u8
}

/// Serves `size` bytes of [`pattern`] per request, 1 MiB every `pace`; with `break_at`
/// it closes the connection after that many bytes.
struct SlowOrigin {
    addr: std::net::SocketAddr,
    requests: Arc<AtomicUsize>,
    finished_at: Arc<Mutex<Option<Instant>>>,
    request_heads: Arc<Mutex<Vec<String>>>,
}

impl SlowOrigin {
    async fn start(size: usize, pace: Duration, break_at: Option<usize>) -> SlowOrigin {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let requests = Arc::new(AtomicUsize::new(0));
        let finished_at = Arc::new(Mutex::new(None));
        let request_heads = Arc::new(Mutex::new(Vec::new()));
        let (count, done, heads) = (requests.clone(), finished_at.clone(), request_heads.clone());
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                let (count, done, heads) = (count.clone(), done.clone(), heads.clone());
                tokio::spawn(async move {
                    let mut head = Vec::new();
                    let mut buf = [0u8; 4096];
                    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                        match stream.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => head.extend_from_slice(&buf[..n]),
                        }
                    }
                    count.fetch_add(1, Ordering::SeqCst);
                    heads
                        .lock()
                        .unwrap()
                        .push(String::from_utf8_lossy(&head).to_lowercase());
                    let header = format!(
                        "HTTP/1.1 200 OK\r\ncontent-length: {size}\r\ncache-control: max-age=600\r\ncontent-type: application/octet-stream\r\n\r\n"
                    );
                    if stream.write_all(header.as_bytes()).await.is_err() {
                        return;
                    }
                    let mut sent = 0;
                    while sent < size {
                        let end = (sent + MIB).min(size).min(break_at.unwrap_or(usize::MAX));
                        if end == sent {
                            return; // broken off: the connection closes short
                        }
                        let chunk: Vec<u8> = (sent..end).map(pattern).collect();
                        if stream.write_all(&chunk).await.is_err() {
                            return;
                        }
                        sent = end;
                        if sent < size {
                            tokio::time::sleep(pace).await;
                        }
                    }
                    *done.lock().unwrap() = Some(Instant::now());
                    // Keep the connection until the gateway is done with it.
                    let _ = stream.read(&mut buf).await;
                });
            }
        });
        SlowOrigin {
            addr,
            requests,
            finished_at,
            request_heads,
        }
    }
}

async fn gateway(origin: &SlowOrigin) -> Gateway {
    Gateway::start(&format!(
        "cache: {{ max_size: 200MiB, max_object_size: 64MiB }}\nupstreams:\n  origin: {{ targets: [\"{}\"] }}\nroutes:\n  - {{ prefix: /, upstream: origin, cache: true }}\n",
        origin.addr
    ))
    .await
}

/// Reads a whole body, checking every byte against the pattern from `start`; returns
/// when the first bytes came, and the length (or the error that cut it short).
async fn read_checked(resp: reqwest::Response, start: usize) -> (Instant, Result<usize, String>) {
    let mut resp = resp;
    let mut first = None;
    let mut offset = start;
    loop {
        match resp.chunk().await {
            Ok(Some(chunk)) => {
                first.get_or_insert_with(Instant::now);
                for (i, b) in chunk.iter().enumerate() {
                    assert_eq!(*b, pattern(offset + i), "byte {} is wrong", offset + i);
                }
                offset += chunk.len();
            }
            Ok(None) => return (first.unwrap_or_else(Instant::now), Ok(offset - start)),
            Err(e) => return (first.unwrap_or_else(Instant::now), Err(e.to_string())),
        }
    }
}

#[tokio::test]
async fn ten_readers_of_a_50_mib_fill_get_their_first_bytes_before_it_ends() {
    const SIZE: usize = 50 * MIB;
    let origin = SlowOrigin::start(SIZE, Duration::from_millis(40), None).await;
    let gw = gateway(&origin).await;
    let url = gw.url("/big");
    let readers = (0..10).map(|_| {
        let url = url.clone();
        tokio::spawn(async move {
            let resp = client().get(url).send().await.unwrap();
            assert_eq!(resp.status(), 200);
            read_checked(resp, 0).await
        })
    });
    let results = futures::future::join_all(readers).await;
    let finished = origin
        .finished_at
        .lock()
        .unwrap()
        .expect("the origin sent the whole body");
    for (i, r) in results.into_iter().enumerate() {
        let (first_byte, len) = r.unwrap();
        assert_eq!(len, Ok(SIZE), "reader {i} got the whole body");
        assert!(first_byte < finished, "reader {i} waited for the whole fill");
    }
    assert_eq!(
        origin.requests.load(Ordering::SeqCst),
        1,
        "one origin request for ten readers"
    );

    // Stored whole: a later request is a hit.
    let hit = client().get(gw.url("/big")).send().await.unwrap();
    assert_eq!(hit.headers()["x-cache"], "HIT");
    assert_eq!(read_checked(hit, 0).await.1, Ok(SIZE));
}

#[tokio::test]
async fn a_range_on_a_miss_fetches_the_whole_object_once_and_ranges_come_from_the_fill() {
    const SIZE: usize = 8 * MIB;
    let origin = SlowOrigin::start(SIZE, Duration::from_millis(50), None).await;
    let gw = gateway(&origin).await;
    let range = |from: usize, to: usize| {
        let url = gw.url("/video");
        async move {
            let resp = client()
                .get(url)
                .header("range", format!("bytes={from}-{to}"))
                .send()
                .await
                .unwrap();
            assert_eq!(resp.status(), 206);
            let content_range = resp.headers()["content-range"].to_str().unwrap().to_string();
            assert_eq!(content_range, format!("bytes {from}-{to}/{SIZE}"));
            read_checked(resp, from).await.1
        }
    };
    // The first asks for the start; the second, while the fill runs, for bytes near the end.
    let (a, b) = tokio::join!(range(100, 199), range(7 * MIB, 7 * MIB + 9));
    assert_eq!((a, b), (Ok(100), Ok(10)));
    assert_eq!(range(5 * MIB, 6 * MIB - 1).await, Ok(MIB), "a range of the stored copy");
    assert_eq!(origin.requests.load(Ordering::SeqCst), 1);
    let head = origin.request_heads.lock().unwrap()[0].clone();
    assert!(
        !head.contains("\r\nrange:"),
        "the origin was asked for the whole object: {head}"
    );
}

#[tokio::test]
async fn a_fill_the_origin_breaks_off_is_never_served_as_complete_nor_stored() {
    const SIZE: usize = 6 * MIB;
    let origin = SlowOrigin::start(SIZE, Duration::from_millis(20), Some(3 * MIB)).await;
    let gw = gateway(&origin).await;
    let readers = (0..3).map(|_| {
        let url = gw.url("/broken");
        tokio::spawn(async move {
            let resp = client().get(url).send().await.unwrap();
            read_checked(resp, 0).await.1
        })
    });
    for r in futures::future::join_all(readers).await {
        let got = r.unwrap();
        assert!(got != Ok(SIZE), "a truncated body must not look whole: {got:?}");
        if let Ok(len) = got {
            panic!("the body ended cleanly after {len} of {SIZE} bytes");
        }
    }
    let again = client().get(gw.url("/broken")).send().await.unwrap();
    assert_ne!(again.headers()["x-cache"], "HIT", "nothing was stored");
}

#[tokio::test]
async fn range_miss_pass_forwards_the_range_and_serves_covered_ranges_from_the_stored_part() {
    use common::origin::{reply, Origin, Reply, Seen};
    const SIZE: usize = 100_000;
    // An origin that honours single ranges.
    let origin = Origin::start(|req: &Seen, _| {
        let whole: Vec<u8> = (0..SIZE).map(pattern).collect();
        let range = req.headers.get("range").map(|v| v.to_str().unwrap().to_string());
        let Some(spec) = range.as_deref().and_then(|r| r.strip_prefix("bytes=")) else {
            return reply(&[("cache-control", "max-age=600")], whole);
        };
        let (a, b) = spec.split_once('-').unwrap();
        let (a, b): (usize, usize) = (a.parse().unwrap(), b.parse().unwrap());
        let content_range = format!("bytes {a}-{b}/{SIZE}");
        Reply {
            status: 206,
            ..reply(
                &[("cache-control", "max-age=600"), ("content-range", &content_range)],
                whole[a..=b].to_vec(),
            )
        }
    })
    .await;
    let gw = Gateway::start(&format!(
        "cache: {{ range_miss: pass }}\nupstreams:\n  origin: {{ targets: [\"{}\"] }}\nroutes:\n  - {{ prefix: /, upstream: origin, cache: true }}\n",
        origin.addr
    ))
    .await;
    let fetch = |range: Option<&'static str>| {
        let url = gw.url("/file");
        async move {
            let mut req = client().get(url);
            if let Some(r) = range {
                req = req.header("range", r);
            }
            let resp = req.send().await.unwrap();
            let h = |n: &str| {
                resp.headers()
                    .get(n)
                    .map_or(String::new(), |v| v.to_str().unwrap().to_string())
            };
            let (status, x_cache, content_range) = (resp.status().as_u16(), h("x-cache"), h("content-range"));
            (status, x_cache, content_range, resp.bytes().await.unwrap().to_vec())
        }
    };
    let expect = |from: usize, to: usize| (from..=to).map(pattern).collect::<Vec<u8>>();

    let first = fetch(Some("bytes=1000-1999")).await;
    assert_eq!(
        (first.0, first.1.as_str(), first.3.clone()),
        (206, "MISS", expect(1000, 1999))
    );
    assert_eq!(
        origin.last("/file").headers["range"],
        "bytes=1000-1999",
        "the range went to the origin"
    );

    let inside = fetch(Some("bytes=1200-1299")).await;
    assert_eq!((inside.0, inside.1.as_str()), (206, "HIT"));
    assert_eq!(inside.2, format!("bytes 1200-1299/{SIZE}"));
    assert_eq!(inside.3, expect(1200, 1299));
    assert_eq!(origin.hits("/file"), 1);

    let outside = fetch(Some("bytes=0-99")).await;
    assert_eq!((outside.0, outside.3.clone()), (206, expect(0, 99)));
    assert_eq!(
        origin.hits("/file"),
        2,
        "a range the part does not hold goes to the origin"
    );

    let whole = fetch(None).await;
    assert_eq!((whole.0, whole.3.len()), (200, SIZE));
    assert_eq!(origin.hits("/file"), 3, "the whole object is not served from a part");
    let from_whole = fetch(Some("bytes=5000-5009")).await;
    assert_eq!(
        (from_whole.0, from_whole.1.as_str(), from_whole.3),
        (206, "HIT", expect(5000, 5009))
    );
    assert_eq!(origin.hits("/file"), 3);
}
