//! The router on arbitrary requests (method, path, Host, headers, query) over a route set
//! with every kind of matcher. Whatever it finds must be consistent with the route list.
#![no_main]

use gatehouse::config::parse_yaml;
use gatehouse::routing::RouteMatch;
use gatehouse::snapshot::Snapshot;
use libfuzzer_sys::fuzz_target;
use pingora::http::RequestHeader;
use std::sync::OnceLock;

const ROUTES: &str = r#"
admin: { listen: "" }
upstreams: { u: { targets: ["127.0.0.1:9"] } }
routes:
  - { name: exact, path: /exact, upstream: u }
  - { name: param, path: "/users/:id/orders/:order", methods: [GET, DELETE], upstream: u }
  - { name: wild, path: "/files/*rest", upstream: u }
  - { name: prefix, prefix: /api/, upstream: u }
  - { name: regex, regex: "^/v[0-9]+/items/[a-z]+$", upstream: u }
  - { name: host, prefix: /, host: "*.example.com", upstream: u }
  - { name: header, prefix: /api/, headers: { X-Api-Version: "2" }, upstream: u }
  - { name: query, prefix: /api/, query: { beta: "*" }, upstream: u }
  - { name: post, path: /form, methods: [POST], upstream: u }
"#;

fn snapshot() -> &'static Snapshot {
    static SNAPSHOT: OnceLock<Snapshot> = OnceLock::new();
    SNAPSHOT.get_or_init(|| {
        let config = parse_yaml(ROUTES, "router.yaml", &|_| None).expect("the route set loads");
        Snapshot::build(config, None).expect("the route set builds")
    })
}

fuzz_target!(|data: &[u8]| {
    // method \n path \n host \n header-name \n header-value
    let mut parts = data.splitn(5, |&b| b == b'\n');
    let method = parts.next().unwrap_or_default();
    let path = parts.next().unwrap_or_default();
    let Ok(mut req) = RequestHeader::build(method, path, None) else {
        return;
    };
    if let Some(host) = parts.next() {
        let _ = req.insert_header("host", host);
    }
    if let (Some(name), Some(value)) = (parts.next(), parts.next()) {
        if let Ok(name) = http::HeaderName::from_bytes(name) {
            let _ = req.insert_header(name, value);
        }
    }
    let snapshot = snapshot();
    match snapshot.router.find(&req) {
        RouteMatch::Found(i) => assert!(i < snapshot.routes.len()),
        RouteMatch::MethodNotAllowed(allow) => assert!(!allow.is_empty()),
        RouteMatch::NotFound => {}
    }
});
