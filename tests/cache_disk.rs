//! The disk tier (`cache.disk`): answers written through to files survive a restart (even
//! a SIGKILL), hits on a memory miss stream from disk (`Cache-Status: …; detail=disk`),
//! answers too large for memory live on disk alone, damaged or truncated files are a miss
//! and never a wrong answer, purges (by URL, tag, soft) reach disk, and the disk bound holds.

mod common;

use common::origin::{reply, Origin, Reply, Seen};
use common::{client, eventually, Gateway};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::time::Duration;

fn body_for(path: &str, n: usize, size: usize) -> Vec<u8> {
    let seed = format!("{path} #{n} ");
    seed.bytes().cycle().take(size.max(seed.len())).collect()
}

/// `/small/*`: 2 KiB, `/big/*`: 100 KiB, `/huge/*`: 64 KiB; ETag and a tag on each.
fn script(req: &Seen, n: usize) -> Reply {
    if req.headers.get("if-none-match").is_some_and(|v| v == "\"e\"") {
        return Reply {
            status: 304,
            headers: vec![("etag", "\"e\"".into()), ("cache-control", "max-age=600".into())],
            ..Default::default()
        };
    }
    let size = match req.path.split('/').nth(1) {
        Some("big") => 100 * 1024,
        Some("huge") => 64 * 1024,
        _ => 2048,
    };
    reply(
        &[
            ("cache-control", "max-age=600"),
            ("etag", "\"e\""),
            ("content-type", "application/x-test"),
            ("cache-tag", "all"),
        ],
        body_for(&req.path, n, size),
    )
}

fn config(origin: &Origin, disk: &Path, memory: &str, disk_extra: &str) -> String {
    format!(
        "cache: {{ {memory} disk: {{ path: \"{}\" {disk_extra} }} }}\nupstreams:\n  origin: {{ targets: [\"{}\"] }}\nroutes:\n  - {{ prefix: /, upstream: origin, cache: true }}\n",
        disk.display(),
        origin.addr
    )
}

struct Got {
    status: u16,
    x_cache: String,
    cache_status: String,
    headers: reqwest::header::HeaderMap,
    body: Vec<u8>,
}

async fn get(gw: &Gateway, path: &str, headers: &[(&str, &str)]) -> Got {
    let mut req = client().get(gw.url(path));
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp = req.send().await.unwrap();
    let h = |n: &str| {
        resp.headers()
            .get(n)
            .map_or("(none)".into(), |v| v.to_str().unwrap().to_string())
    };
    let (status, x_cache, cache_status, headers) = (
        resp.status().as_u16(),
        h("x-cache"),
        h("cache-status"),
        resp.headers().clone(),
    );
    Got {
        status,
        x_cache,
        cache_status,
        headers,
        body: resp.bytes().await.map(|b| b.to_vec()).unwrap_or_default(),
    }
}

async fn disk_stats(gw: &Gateway) -> Value {
    let stats: Value = client()
        .get(gw.admin_url("/admin/cache"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    stats["disk"].clone()
}

async fn wait_on_disk(gw: &Gateway, entries: u64) {
    eventually(Duration::from_secs(10), "entries written to disk", || async {
        disk_stats(gw).await["entries"].as_u64() == Some(entries)
    })
    .await;
}

fn files(dir: &Path, suffix: &str) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for sub in std::fs::read_dir(dir).unwrap().flatten() {
        if sub.path().is_dir() {
            for f in std::fs::read_dir(sub.path()).unwrap().flatten() {
                if f.path().to_string_lossy().ends_with(suffix) {
                    out.push(f.path());
                }
            }
        }
    }
    out
}

#[tokio::test]
async fn entries_survive_a_kill_and_restart_and_are_served_from_disk() {
    let origin = Origin::start(script).await;
    let disk = tempfile::tempdir().unwrap();
    let cfg = config(&origin, disk.path(), "", "");
    let gw = Gateway::start(&cfg).await;
    let first = get(&gw, "/small/a?x=1", &[]).await;
    assert_eq!(first.x_cache, "MISS");
    wait_on_disk(&gw, 1).await;
    let memory_hit = get(&gw, "/small/a?x=1", &[]).await;
    assert!(
        !memory_hit.cache_status.contains("detail=disk"),
        "memory first: {}",
        memory_hit.cache_status
    );
    drop(gw.kill());

    let gw = Gateway::start(&cfg).await;
    assert_eq!(disk_stats(&gw).await["entries"], 1, "loaded at start");
    let hit = get(&gw, "/small/a?x=1", &[]).await;
    assert_eq!(hit.x_cache, "HIT");
    assert!(
        hit.cache_status.starts_with("gatehouse; hit; ttl=") && hit.cache_status.ends_with("; detail=disk"),
        "{}",
        hit.cache_status
    );
    assert_eq!(hit.body, first.body);
    assert_eq!(hit.headers["content-type"], "application/x-test");
    assert_eq!(hit.headers["etag"], "\"e\"");
    assert!(hit.headers.contains_key("age"));
    assert_eq!(origin.hits("/small/a?x=1"), 1);

    // A range of the disk copy; a conditional request answered from it.
    let range = get(&gw, "/small/a?x=1", &[("range", "bytes=100-199")]).await;
    assert_eq!((range.status, range.body.as_slice()), (206, &first.body[100..200]));
    let not_modified = get(&gw, "/small/a?x=1", &[("if-none-match", "\"e\"")]).await;
    assert_eq!(not_modified.status, 304);
    assert_eq!(origin.hits("/small/a?x=1"), 1);
}

#[tokio::test]
async fn answers_too_large_for_memory_live_on_disk_alone_and_stream_from_it() {
    let origin = Origin::start(script).await;
    let disk = tempfile::tempdir().unwrap();
    let gw = Gateway::start(&config(
        &origin,
        disk.path(),
        "max_size: 1MiB, max_object_size: 8KiB,",
        "",
    ))
    .await;
    let first = get(&gw, "/big/x", &[]).await;
    assert_eq!((first.x_cache.as_str(), first.body.len()), ("MISS", 100 * 1024));
    wait_on_disk(&gw, 1).await;
    let stats: Value = client()
        .get(gw.admin_url("/admin/cache"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(stats["entries"], 0, "not in memory: {stats}");
    for _ in 0..3 {
        let hit = get(&gw, "/big/x", &[]).await;
        assert!(hit.cache_status.ends_with("detail=disk"), "{}", hit.cache_status);
        assert_eq!(hit.body, first.body);
    }
    let range = get(&gw, "/big/x", &[("range", "bytes=70000-70099")]).await;
    assert_eq!((range.status, range.body.as_slice()), (206, &first.body[70000..70100]));
    assert_eq!(origin.hits("/big/x"), 1);
}

#[tokio::test]
async fn a_truncated_or_damaged_file_is_a_miss_never_a_wrong_answer() {
    let origin = Origin::start(script).await;
    let disk = tempfile::tempdir().unwrap();
    let cfg = config(&origin, disk.path(), "max_size: 1MiB, max_object_size: 8KiB,", "");
    let gw = Gateway::start(&cfg).await;
    get(&gw, "/big/cut-while-running", &[]).await;
    wait_on_disk(&gw, 1).await;
    // Truncated while the gateway runs: the next hit sees the length is wrong.
    let bodies = files(disk.path(), ".body");
    assert_eq!(bodies.len(), 1);
    std::fs::OpenOptions::new()
        .write(true)
        .open(&bodies[0])
        .unwrap()
        .set_len(5000)
        .unwrap();
    let after = get(&gw, "/big/cut-while-running", &[]).await;
    assert_eq!(after.x_cache, "MISS", "{}", after.cache_status);
    assert_eq!(after.body, body_for("/big/cut-while-running", 1, 100 * 1024));
    wait_on_disk(&gw, 1).await; // stored again, whole

    // Damaged while stopped: the start's scan drops them.
    get(&gw, "/big/meta-damaged", &[]).await;
    wait_on_disk(&gw, 2).await;
    drop(gw.kill());
    for meta in files(disk.path(), ".meta") {
        let mut bytes = std::fs::read(&meta).unwrap();
        if String::from_utf8_lossy(&bytes).contains("meta-damaged") {
            let middle = bytes.len() / 2;
            bytes[middle] ^= 0xff;
            std::fs::write(&meta, bytes).unwrap();
        }
    }
    for body in files(disk.path(), ".body") {
        std::fs::OpenOptions::new()
            .write(true)
            .open(&body)
            .unwrap()
            .set_len(10)
            .unwrap();
    }
    let gw = Gateway::start(&cfg).await;
    assert_eq!(disk_stats(&gw).await["entries"], 0, "both refused by the scan");
    assert!(files(disk.path(), ".body").is_empty() && files(disk.path(), ".meta").is_empty());
    for path in ["/big/cut-while-running", "/big/meta-damaged"] {
        let again = get(&gw, path, &[]).await;
        assert_eq!(
            (again.x_cache.as_str(), again.body.len()),
            ("MISS", 100 * 1024),
            "{path}"
        );
    }
}

#[tokio::test]
async fn purges_reach_the_disk_and_the_disk_bound_holds() {
    let origin = Origin::start(script).await;
    let disk = tempfile::tempdir().unwrap();
    let gw = Gateway::start(&config(
        &origin,
        disk.path(),
        "max_size: 1MiB, max_object_size: 1KiB,",
        ", max_size: 1MiB, max_object_size: 256KiB",
    ))
    .await;
    for i in 0..40 {
        get(&gw, &format!("/huge/{i}"), &[]).await;
    }
    eventually(Duration::from_secs(10), "every write done", || async {
        files(disk.path(), ".tmp.").is_empty() && disk_stats(&gw).await["entries"].as_u64().unwrap_or(0) > 0
    })
    .await;
    let stats = disk_stats(&gw).await;
    assert!(stats["bytes"].as_u64().unwrap() <= 1 << 20, "{stats}");
    let metrics = gw
        .metrics_with(&[&format!("gateway_cache_disk_entries {}", stats["entries"])])
        .await;
    assert!(metrics.contains("gateway_cache_disk_bytes "), "{metrics}");
    let on_disk: u64 = files(disk.path(), ".body")
        .iter()
        .map(|f| f.metadata().unwrap().len())
        .sum();
    assert!(on_disk <= 1 << 20, "{on_disk} bytes of bodies for a 1 MiB bound");
    assert_eq!(
        files(disk.path(), ".body").len() as u64,
        stats["entries"].as_u64().unwrap(),
        "evicted files are deleted"
    );

    // A soft purge by tag: kept on disk, revalidated with a 304 on next use.
    let kept = stats["entries"].as_u64().unwrap();
    let purge = |body: Value| {
        let gw = &gw;
        async move {
            let r: Value = client()
                .post(gw.admin_url("/admin/cache/purge"))
                .json(&body)
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            r["purged"].as_u64().unwrap()
        }
    };
    assert_eq!(purge(json!({ "tags": ["all"], "soft": true })).await, kept);
    let newest = "/huge/39";
    assert_eq!(get(&gw, newest, &[]).await.x_cache, "REVALIDATED");
    assert_eq!(origin.last(newest).headers.get("if-none-match").unwrap(), "\"e\"");
    // A hard purge by URL removes the files.
    assert_eq!(purge(json!({ "url": format!("127.0.0.1{newest}") })).await, 1);
    assert_eq!(get(&gw, newest, &[]).await.x_cache, "MISS");
}

fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| !s.contains(") Z"))
}

#[tokio::test]
async fn a_graceful_upgrade_keeps_the_disk_tier() {
    let origin = Origin::start(script).await;
    let disk = tempfile::tempdir().unwrap();
    let old = Gateway::start(&config(&origin, disk.path(), "", "")).await;
    let first = get(&old, "/small/upgrade", &[]).await;
    wait_on_disk(&old, 1).await;

    // The new binary takes the listener over the upgrade socket, then the old one quits.
    let mut new = std::process::Command::new(env!("CARGO_BIN_EXE_gatehouse"))
        .args(["run", "-u", "-c"])
        .arg(&old.config_path)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let sock = old.dir.path().join("upgrade.sock");
    eventually(Duration::from_secs(10), "upgrade socket", || {
        let exists = sock.exists();
        async move { exists }
    })
    .await;
    old.signal("QUIT");
    let old_pid = old.pid();
    eventually(Duration::from_secs(15), "old process exited", || async {
        !alive(old_pid)
    })
    .await;

    let hit = get(&old, "/small/upgrade", &[]).await;
    assert_eq!(hit.x_cache, "HIT", "served by the new process: {}", hit.cache_status);
    assert!(hit.cache_status.ends_with("detail=disk"), "{}", hit.cache_status);
    assert_eq!(hit.body, first.body);
    assert_eq!(origin.hits("/small/upgrade"), 1);
    let _ = new.kill();
    let _ = new.wait();
}
