//! SIGHUP reload: a good file takes effect, a bad one is refused while the old config keeps
//! serving, unchanged upstreams keep their health state, fixed settings need a restart.

mod common;

use common::*;
use std::time::Duration;

fn config(a: &MockUpstream, extra_route: &str) -> String {
    format!(
        "upstreams: {{ u: {{ targets: [\"{}\"] }} }}\nroutes:\n  - {{ name: one, path: /one, upstream: u }}\n{extra_route}",
        a.addr()
    )
}

async fn generation(gw: &Gateway) -> u64 {
    gw.health().await["config_generation"].as_u64().unwrap()
}

#[tokio::test]
async fn a_good_file_is_applied_on_sighup() {
    let a = MockUpstream::start("a").await;
    let gw = Gateway::start(&config(&a, "")).await;
    assert_eq!(gw.get("/two").await.status(), 404);

    gw.write_config(&config(&a, "  - { name: two, path: /two, upstream: u }\n"));
    gw.signal("HUP");
    eventually(Duration::from_secs(5), "generation 2", || async {
        generation(&gw).await == 2
    })
    .await;
    assert_eq!(gw.get("/two").await.status(), 200);
    eventually(Duration::from_secs(5), "the reload logged", || async {
        gw.logs().contains("config reloaded")
    })
    .await;
}

#[tokio::test]
async fn a_bad_file_is_refused_and_the_old_config_keeps_serving() {
    let a = MockUpstream::start("a").await;
    let gw = Gateway::start(&config(&a, "")).await;

    gw.write_config(&config(&a, "  - { name: two, path: /two, upstream: billing }\n"));
    gw.signal("HUP");
    eventually(Duration::from_secs(5), "refusal logged", || async {
        gw.logs().contains("config reload refused")
    })
    .await;
    let logs = gw.logs();
    assert!(
        logs.contains("routes[1].upstream: unknown upstream \\\"billing\\\""),
        "{logs}"
    );
    assert_eq!(generation(&gw).await, 1);
    assert_eq!(gw.get("/one").await.status(), 200, "the old config still serves");

    // Broken YAML too.
    std::fs::write(&gw.config_path, "routes: [").unwrap();
    gw.signal("HUP");
    eventually(Duration::from_secs(5), "second refusal", || async {
        gw.logs().matches("config reload refused").count() == 2
    })
    .await;
    assert_eq!(gw.get("/one").await.status(), 200);
}

#[tokio::test]
async fn an_unchanged_upstream_keeps_its_health_across_reloads() {
    let a = MockUpstream::start("a").await;
    let dead = free_port();
    let body = |extra: &str| {
        format!(
            "upstreams:\n  u:\n    targets: [\"{}\", \"127.0.0.1:{dead}\"]\n    health_check: {{ interval: 1s, unhealthy: 1, healthy: 1 }}\nroutes:\n  - {{ name: one, path: /one, upstream: u }}\n{extra}",
            a.addr()
        )
    };
    let gw = Gateway::start(&body("")).await;
    eventually(Duration::from_secs(5), "dead target ejected", || async {
        gw.healthy_targets("u").await == 1
    })
    .await;

    gw.write_config(&body("  - { name: two, path: /two, upstream: u }\n"));
    gw.signal("HUP");
    eventually(Duration::from_secs(5), "generation 2", || async {
        generation(&gw).await == 2
    })
    .await;
    // A rebuilt pool would start with every target healthy until its first check.
    assert_eq!(gw.healthy_targets("u").await, 1, "health state survived the reload");
    let counts = distribution(&gw, "/two", 20).await;
    assert_eq!(counts.get("a"), Some(&20));
}

#[tokio::test]
async fn listeners_cannot_change_on_reload() {
    let a = MockUpstream::start("a").await;
    let gw = Gateway::start(&config(&a, "")).await;
    let text = std::fs::read_to_string(&gw.config_path).unwrap();
    let other = free_port();
    std::fs::write(&gw.config_path, text.replace(&gw.port.to_string(), &other.to_string())).unwrap();
    gw.signal("HUP");
    eventually(Duration::from_secs(5), "refusal logged", || async {
        gw.logs().contains("listen: cannot change on reload")
    })
    .await;
    assert_eq!(gw.get("/one").await.status(), 200);
}

#[tokio::test]
async fn with_watch_a_changed_file_reloads_by_itself_a_bad_one_is_refused_and_symlink_swaps_count() {
    let a = MockUpstream::start("a").await;
    let watched = |extra: &str| format!("watch: true\n{}", config(&a, extra));
    let gw = Gateway::start(&watched("")).await;
    assert_eq!(gw.get("/two").await.status(), 404);

    // An edit: no signal, the file is looked at.
    gw.write_config(&watched("  - { name: two, path: /two, upstream: u }\n"));
    eventually(Duration::from_secs(5), "reloaded by itself", || async {
        generation(&gw).await == 2
    })
    .await;
    assert_eq!(gw.get("/two").await.status(), 200);

    // A bad edit is refused as a SIGHUP's would be; the running config keeps serving.
    std::fs::write(&gw.config_path, "watch: true\nroutes: [").unwrap();
    eventually(Duration::from_secs(5), "refused", || async {
        gw.logs().contains("config reload refused")
    })
    .await;
    assert_eq!(gw.get("/two").await.status(), 200);
    assert_eq!(generation(&gw).await, 2);

    // What Kubernetes does to a mounted ConfigMap: the file is a link into `..data`, itself
    // a link to a versioned directory, swapped atomically for a new one.
    let dir = gw.config_path.parent().unwrap().to_path_buf();
    let version = |n: u32, text: &str| {
        let v = dir.join(format!("..v{n}"));
        std::fs::create_dir_all(&v).unwrap();
        std::fs::write(v.join("gatehouse.yaml"), text).unwrap();
        let tmp = dir.join("..data_tmp");
        let _ = std::fs::remove_file(&tmp);
        std::os::unix::fs::symlink(format!("..v{n}"), &tmp).unwrap();
        std::fs::rename(&tmp, dir.join("..data")).unwrap();
    };
    let full = |extra: &str| Gateway::config_text(gw.port, &dir, &watched(extra));
    version(1, &full("  - { name: three, path: /three, upstream: u }\n"));
    std::fs::remove_file(&gw.config_path).unwrap();
    std::os::unix::fs::symlink("..data/gatehouse.yaml", &gw.config_path).unwrap();
    eventually(Duration::from_secs(5), "the linked file applied", || async {
        gw.get("/three").await.status() == 200
    })
    .await;
    version(2, &full("  - { name: four, path: /four, upstream: u }\n"));
    eventually(Duration::from_secs(5), "the swapped version applied", || async {
        gw.get("/four").await.status() == 200
    })
    .await;
    assert_eq!(gw.get("/three").await.status(), 404);
}

#[tokio::test]
async fn without_watch_a_changed_file_waits_for_a_signal() {
    let a = MockUpstream::start("a").await;
    let gw = Gateway::start(&config(&a, "")).await;
    gw.write_config(&config(&a, "  - { name: two, path: /two, upstream: u }\n"));
    // A watcher looks every 200 ms: ten looks' time with nothing applied.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(generation(&gw).await, 1);
    assert_eq!(gw.get("/two").await.status(), 404);
}
