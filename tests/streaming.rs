//! Bodies are streamed, not buffered: 100 MiB each way through the gateway while its peak
//! memory stays far below the body size.

mod common;

use common::*;

const BODY: usize = 100 * 1024 * 1024;
/// Allowed growth of the gateway's peak RSS while moving 100 MiB.
const MAX_GROWTH_KIB: u64 = 30 * 1024;

#[tokio::test]
async fn a_100_mib_upload_and_download_pass_with_flat_memory() {
    let up = MockUpstream::start("big").await;
    let gw = Gateway::start(&simple_config(&[up.addr()])).await;
    // Warm the paths once so that one-off allocations are not counted as growth.
    assert_eq!(gw.get("/bytes/1024").await.status(), 200);
    let before = gw.peak_rss_kib();
    assert!(before > 0, "cannot read the gateway's memory");

    let r = client()
        .post(gw.url("/upload"))
        .body(streaming_body(BODY))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let answer: serde_json::Value = r.json().await.unwrap();
    assert_eq!(answer["body_len"], BODY as u64, "the upstream got every byte");

    let r = gw.get(&format!("/bytes/{BODY}")).await;
    assert_eq!(r.status(), 200);
    assert_eq!(drain(r).await, BODY, "the client got every byte");

    let growth = gw.peak_rss_kib().saturating_sub(before);
    eprintln!("gateway peak RSS {before} KiB before, +{growth} KiB after moving 2 x 100 MiB");
    assert!(
        growth < MAX_GROWTH_KIB,
        "peak RSS grew by {growth} KiB moving 2 x 100 MiB"
    );
}
