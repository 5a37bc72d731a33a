use super::*;
use std::time::Duration;

fn no_env(_: &str) -> Option<String> {
    None
}

fn parse(text: &str) -> Result<Config, ConfigError> {
    parse_yaml(text, "test.yaml", &no_env)
}

fn messages(err: ConfigError) -> Vec<String> {
    err.problems.iter().map(|p| p.to_string()).collect()
}

const VALID: &str = r#"
listen: ["127.0.0.1:8080"]
threads: 2
upstreams:
  users:
    targets: ["127.0.0.1:8081", { addr: "127.0.0.1:8082", weight: 3 }]
    health_check: { path: /health, interval: 2s, timeout: 1s, healthy: 2, unhealthy: 3 }
    retries: 2
    connect_timeout: 500ms
routes:
  - name: users
    path: /api/users/*path
    methods: [GET, post]
    upstream: users
    strip_prefix: /api/users
    timeout: 5s
"#;

#[test]
fn valid_config_becomes_the_model() {
    let c = parse(VALID).unwrap();
    assert_eq!(c.server.listen[0].to_string(), "127.0.0.1:8080");
    assert_eq!(c.server.threads, 2);
    let users = &c.upstreams["users"];
    assert_eq!(users.targets.len(), 2);
    assert_eq!(users.targets[1].weight, 3);
    assert_eq!(users.retries, 2);
    assert_eq!(users.connect_timeout, Duration::from_millis(500));
    let hc = users.health_check.as_ref().unwrap();
    assert_eq!((hc.healthy, hc.unhealthy, hc.interval), (2, 3, Duration::from_secs(2)));
    let route = &c.routes[0];
    assert_eq!(route.name, "users");
    assert_eq!(route.timeout, Some(Duration::from_secs(5)));
    assert_eq!(route.matcher.methods.as_ref().unwrap().len(), 2);
    assert!(c.warnings.is_empty(), "{:?}", c.warnings);
}

#[test]
fn every_problem_is_reported_at_once_with_its_path() {
    let err = parse(
        r#"
listen: ["nope"]
upstreams:
  users: { targets: [], retries: 1, connect_timeout: 5x }
routes:
  - { path: /a, upstream: billing, methods: [GTE] }
  - { prefix: /b, regex: "^/b", upstream: users }
"#,
    )
    .unwrap_err();
    let all = messages(err).join("\n");
    for expected in [
        "listen[0]: \"nope\" is not an address",
        "upstreams.users.targets: at least one target is required",
        "upstreams.users.connect_timeout: \"5x\" is not a duration",
        "routes[0].upstream: unknown upstream \"billing\"",
        "routes[0].methods[0]: unknown method \"GTE\"",
        "routes[1]: exactly one of path, prefix, regex or grpc is required",
    ] {
        assert!(all.contains(expected), "missing {expected:?} in:\n{all}");
    }
}

#[test]
fn unknown_keys_are_each_reported_with_their_path() {
    let err = parse(
        r#"
listn: ["127.0.0.1:1"]
upstreams: { u: { targets: ["127.0.0.1:1"], helth: {} } }
routes: [{ path: /, upstream: u, upstrem: u }]
"#,
    )
    .unwrap_err();
    let all = messages(err);
    assert!(
        all.contains(&"listn: unknown key (did you mean `listen`?)".to_string()),
        "{all:?}"
    );
    assert!(
        all.iter()
            .any(|m| m.starts_with("upstreams.u.helth: unknown key (known here: ")),
        "{all:?}"
    );
    assert!(
        all.contains(&"routes[0].upstrem: unknown key (did you mean `upstream`?)".to_string()),
        "{all:?}"
    );
}

#[test]
fn env_expansion_and_port_override() {
    let env = |k: &str| match k {
        "UPSTREAM_ADDR" => Some("127.0.0.1:9000".to_string()),
        "PORT" => Some("9999".to_string()),
        _ => None,
    };
    let text = "upstreams: { u: { targets: [\"${UPSTREAM_ADDR}\"], retries: ${RETRIES:-3} } }\nroutes: [{ prefix: /, upstream: u }]\n";
    let c = parse_yaml(text, "t", &env).unwrap();
    assert_eq!(c.upstreams["u"].targets[0].addr.map(|a| a.port()), Some(9000));
    assert_eq!(c.upstreams["u"].retries, 3);
    assert_eq!(c.server.listen[0].port(), 9999);
}

#[test]
fn shadowing_and_unused_upstreams_are_warnings_not_errors() {
    let c = parse(
        r#"
upstreams: { a: { targets: ["127.0.0.1:1"] }, spare: { targets: ["127.0.0.1:2"] } }
routes: [{ prefix: /, upstream: a }]
"#,
    )
    .unwrap();
    assert_eq!(c.warnings, vec!["upstreams.spare is not used by any route".to_string()]);
}

#[test]
fn syntax_errors_and_empty_files_are_refused() {
    assert!(messages(parse("routes: [").unwrap_err())[0].contains("invalid YAML"));
    assert!(messages(parse("  \n").unwrap_err())[0].contains("empty"));
    assert!(messages(parse("threads: many").unwrap_err())[0].contains("invalid YAML"));
}

#[test]
fn cache_settings_and_route_opt_in() {
    let text = "cache: { max_size: 64MiB, max_object_size: 2MiB, default_ttl: 30s }\n\
        upstreams: { u: { targets: [\"127.0.0.1:9000\"] } }\n\
        routes:\n  - { name: a, prefix: /a, upstream: u, cache: true }\n  - { name: b, prefix: /b, upstream: u, cache: { ttl: 5s, authorized: true } }\n  - { name: c, prefix: /, upstream: u }\n";
    let c = parse(text).unwrap();
    assert_eq!(c.server.cache.max_size, 64 << 20);
    assert_eq!(c.server.cache.max_object_size, 2 << 20);
    assert_eq!(c.routes[0].cache.as_ref().unwrap().ttl, Duration::from_secs(30));
    let b = c.routes[1].cache.as_ref().unwrap();
    assert_eq!((b.ttl, b.authorized), (Duration::from_secs(5), true));
    assert!(c.routes[2].cache.is_none());

    let off = |k: &str| (k == "ENABLE_CACHING").then(|| "false".to_string());
    let c = parse_yaml(text, "t", &off).unwrap();
    assert!(c.routes.iter().all(|r| r.cache.is_none()), "ENABLE_CACHING=false");
    let ttl = |k: &str| (k == "CACHE_TTL").then(|| "90".to_string());
    let c = parse_yaml(text, "t", &ttl).unwrap();
    assert_eq!(c.routes[0].cache.as_ref().unwrap().ttl, Duration::from_secs(90));
}

#[test]
fn bad_cache_config_is_refused_with_its_path() {
    let text = "cache: { max_size: lots, max_object_size: 100MiB, lock_timeout: 0s }\n\
        upstreams: { u: { targets: [\"127.0.0.1:9000\"] } }\n\
        routes:\n  - { name: a, prefix: /a, upstream: u, cache: { ttl: soon, shared: 1 } }\n  - { name: b, prefix: /, upstream: u, cache: 3 }\n";
    let all = messages(parse(text).unwrap_err()).join("\n");
    for expected in [
        "cache.max_size",
        "cache.max_object_size: must be at most 64MiB",
        "cache.lock_timeout: must be greater than zero",
        "routes[0].cache.ttl",
        "routes[0].cache.shared: unknown key",
        "routes[1].cache: expected true, false or",
    ] {
        assert!(all.contains(expected), "missing {expected:?} in:\n{all}");
    }
    let bad_switch = |k: &str| (k == "ENABLE_CACHING").then(|| "maybe".to_string());
    let text = "upstreams: { u: { targets: [\"127.0.0.1:9000\"] } }\nroutes: [{ prefix: /, upstream: u }]\n";
    let all = messages(parse_yaml(text, "t", &bad_switch).unwrap_err()).join("\n");
    assert!(all.contains("ENABLE_CACHING"), "{all}");
}

#[test]
fn disk_tier_and_targeting_settings_are_checked_at_load() {
    let routes = "upstreams: { u: { targets: [\"127.0.0.1:9000\"] } }\nroutes: [{ prefix: /, upstream: u }]\n";
    let file = tempfile::NamedTempFile::new().unwrap();
    let under_a_file = file.path().join("cache");
    let text = format!(
        "cache: {{ disk: {{ path: \"{}\" }}, targeted_header: Cache-Control, tag_headers: [Vary, \"bad name\"] }}\n{routes}",
        under_a_file.display()
    );
    let all = messages(parse(&text).unwrap_err()).join("\n");
    for expected in [
        "cache.disk.path",
        "cannot create or write there",
        "cache.targeted_header",
        "cache.tag_headers[0]",
        "cache.tag_headers[1]",
    ] {
        assert!(all.contains(expected), "missing {expected:?} in:\n{all}");
    }
    let text = format!("cache: {{ disk: {{ path: \"\" , max_object_size: 1GiB }} }}\n{routes}");
    assert!(messages(parse(&text).unwrap_err())
        .join("\n")
        .contains("cache.disk.path: is required"));
    let dir = tempfile::tempdir().unwrap();
    let text = format!(
        "cache: {{ disk: {{ path: \"{}\", max_size: 2GiB }}, heuristic: true }}\n{routes}",
        dir.path().display()
    );
    let c = parse(&text).unwrap();
    let disk = c.server.cache.disk.unwrap();
    assert_eq!((disk.max_size, disk.max_object_size), (2 << 30, 64 << 20));
    assert!(c.server.cache.heuristic);
}

#[test]
fn hsts_defaults_to_two_years_and_needs_a_max_age() {
    let routes = "upstreams: { u: { targets: [\"127.0.0.1:9000\"] } }\nroutes: [{ prefix: /, upstream: u }]\n";
    let c = parse(routes).unwrap();
    assert_eq!(
        c.security.headers.hsts.as_ref().map(|v| v.to_str().unwrap()),
        Some("max-age=63072000")
    );
    let off = parse(&format!("security_headers: {{ hsts: off }}\n{routes}")).unwrap();
    assert!(off.security.headers.hsts.is_none());
    let all =
        messages(parse(&format!("security_headers: {{ hsts: includeSubDomains }}\n{routes}")).unwrap_err()).join("\n");
    assert!(
        all.contains("security_headers.hsts") && all.contains("no max-age"),
        "{all}"
    );
}

#[test]
fn read_buffers_default_parse_and_are_bounded() {
    let routes = "upstreams: { u: { targets: [\"127.0.0.1:9000\"] } }\nroutes: [{ prefix: /, upstream: u }]\n";
    let c = parse(routes).unwrap();
    assert_eq!((c.server.read_buffer, c.server.tls_read_buffer), (0, 64 * 1024));
    let c = parse(&format!("read_buffer: 16KiB\n{routes}")).unwrap();
    assert_eq!(c.server.read_buffer, 16 * 1024);
    let all = messages(parse(&format!("read_buffer: 2MiB\n{routes}")).unwrap_err()).join("\n");
    assert!(all.contains("read_buffer: must be at most 1MiB"), "{all}");
    let all = messages(parse(&format!("read_buffer: big\n{routes}")).unwrap_err()).join("\n");
    assert!(all.contains("read_buffer: \"big\" is not a size"), "{all}");
}

#[test]
fn runtime_and_upstream_pool_settings_default_parse_and_are_bounded() {
    let routes = "upstreams: { u: { targets: [\"127.0.0.1:9000\"] } }\nroutes: [{ prefix: /, upstream: u }]\n";
    let c = parse(routes).unwrap();
    assert!(c.server.work_stealing);
    assert_eq!(
        c.server.upstream_keepalive_pool,
        super::model::DEFAULT_UPSTREAM_KEEPALIVE_POOL
    );
    let c = parse(&format!(
        "work_stealing: false\nupstream_keepalive_pool: 1024\n{routes}"
    ))
    .unwrap();
    assert!(!c.server.work_stealing);
    assert_eq!(c.server.upstream_keepalive_pool, 1024);
    for bad in ["0", "1000000"] {
        let all = messages(parse(&format!("upstream_keepalive_pool: {bad}\n{routes}")).unwrap_err()).join("\n");
        assert!(
            all.contains("upstream_keepalive_pool: must be between 1 and 65536"),
            "{all}"
        );
    }
    let all = messages(parse(&format!("upstream_keepalive_pool: -1\n{routes}")).unwrap_err()).join("\n");
    assert!(all.contains("upstream_keepalive_pool"), "{all}");
}

#[test]
fn client_limits_default_to_nginx_like_values_and_are_bounded() {
    let routes = "upstreams: { u: { targets: [\"127.0.0.1:9000\"] } }\nroutes: [{ prefix: /, upstream: u }]\n";
    let c = parse(routes).unwrap();
    let l = &c.server.client;
    assert_eq!(
        (
            l.header_timeout,
            l.keepalive_timeout,
            l.max_request_line,
            l.max_header_size,
            l.max_headers
        ),
        (Duration::from_secs(10), Duration::from_secs(60), 8 << 10, 32 << 10, 100)
    );
    let c = parse(&format!(
        "client_header_timeout: 2s\nclient_keepalive_timeout: 5s\nmax_request_line: 4KiB\nmax_header_size: 64KiB\nmax_headers: 256\n{routes}"
    ))
    .unwrap();
    let l = &c.server.client;
    assert_eq!(
        (
            l.header_timeout,
            l.keepalive_timeout,
            l.max_request_line,
            l.max_header_size,
            l.max_headers
        ),
        (Duration::from_secs(2), Duration::from_secs(5), 4 << 10, 64 << 10, 256)
    );
    let all = messages(
        parse(&format!(
            "client_header_timeout: 0s\nclient_keepalive_timeout: soon\nmax_request_line: 100\nmax_header_size: 1MiB\nmax_headers: 0\n{routes}"
        ))
        .unwrap_err(),
    )
    .join("\n");
    for expected in [
        "client_header_timeout: must be above zero",
        "client_keepalive_timeout: \"soon\" is not a duration",
        "max_request_line: must be between 1KiB and 512KiB",
        "max_header_size: must be between 1KiB and 512KiB",
        "max_headers: must be between 1 and 256",
    ] {
        assert!(all.contains(expected), "missing {expected:?} in:\n{all}");
    }
    let c = parse("upstreams: { u: { targets: [\"127.0.0.1:9000\"] } }\nroutes: [{ prefix: /, upstream: u, allow_get_body: true }]\n").unwrap();
    assert!(c.routes[0].security.allow_get_body);
}
