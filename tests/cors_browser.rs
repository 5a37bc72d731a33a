//! CORS as a real browser enforces it: headless Chromium loads a page from one loopback
//! origin that calls the gateway on another with a preflighted PUT. From the allowed
//! origin the call succeeds; from a refused one the browser blocks it and the upstream
//! never sees the PUT.
//!
//! Needs Debian's `chromium` (`make deps` installs it); without it the test fails.

mod common;

use common::*;

const CHROMIUM: &str = "chromium";

fn page(gateway: &str) -> String {
    format!(
        r#"<!doctype html><html><body><div id="out">pending</div><script>
fetch("{gateway}/api/items", {{ method: "PUT", headers: {{ "X-Custom": "1", "Content-Type": "application/json" }}, body: "{{}}" }})
  .then(r => r.text())
  .then(t => {{ document.getElementById("out").textContent = "RESULT:OK:" + t.length; }})
  .catch(e => {{ document.getElementById("out").textContent = "RESULT:BLOCKED:" + e.name; }});
</script></body></html>"#
    )
}

/// Loads `url` in headless Chromium and returns the DOM after the page's fetch settled.
fn load_in_browser(url: &str) -> String {
    let profile = tempfile::tempdir().unwrap();
    let out = headless_chromium(profile.path())
        .args(["--virtual-time-budget=15000", "--dump-dom"])
        .arg(url)
        .output()
        .expect("run chromium");
    String::from_utf8_lossy(&out.stdout).to_string()
}

#[tokio::test]
async fn a_browser_calls_the_gateway_from_an_allowed_origin_and_is_blocked_from_another() {
    require_tool(CHROMIUM, "chromium");
    let gw_port = free_port();
    let gateway = format!("http://127.0.0.1:{gw_port}");
    let allowed = FnServer::start({
        let html = page(&gateway);
        move |_, _, _| (200, html.clone(), "text/html")
    })
    .await;
    let refused = FnServer::start({
        let html = page(&gateway);
        move |_, _, _| (200, html.clone(), "text/html")
    })
    .await;
    let up = MockUpstream::start("api").await;
    let dir = tempfile::tempdir().unwrap();
    let body = format!(
        "cors: {{ origins: [\"http://{}\"], methods: [GET, PUT], headers: [X-Custom, Content-Type] }}\nupstreams: {{ api: {{ targets: [\"{}\"] }} }}\nroutes: [{{ path: /api/items, methods: [GET, PUT], upstream: api }}]\n",
        allowed.addr(),
        up.addr()
    );
    let gw = Gateway::start_on(gw_port, dir, &body).await;

    let dom = tokio::task::spawn_blocking({
        let url = allowed.url("/");
        move || load_in_browser(&url)
    })
    .await
    .unwrap();
    assert!(
        dom.contains("RESULT:OK"),
        "the allowed origin's call failed:\n{dom}\n{}",
        gw.logs()
    );
    assert_eq!(up.recorded().iter().filter(|r| r.method == "PUT").count(), 1);

    let dom = tokio::task::spawn_blocking({
        let url = refused.url("/");
        move || load_in_browser(&url)
    })
    .await
    .unwrap();
    assert!(
        dom.contains("RESULT:BLOCKED"),
        "the refused origin's call was not blocked:\n{dom}"
    );
    assert_eq!(
        up.recorded().iter().filter(|r| r.method == "PUT").count(),
        1,
        "the refused origin's PUT never left the browser"
    );
}
