use super::*;

fn route(path: &str) -> RouteMatcher {
    let path = if let Some(p) = path.strip_prefix("prefix:") {
        PathPattern::parse_prefix(p).unwrap()
    } else if let Some(r) = path.strip_prefix("regex:") {
        PathPattern::parse_regex(r).unwrap()
    } else {
        PathPattern::parse_path(path).unwrap()
    };
    RouteMatcher {
        host: None,
        path,
        methods: None,
        headers: vec![],
        query: vec![],
    }
}

fn with_methods(mut m: RouteMatcher, methods: &[&str]) -> RouteMatcher {
    m.methods = Some(methods.iter().map(|s| s.parse().unwrap()).collect());
    m
}

fn req(method: &str, uri: &str, headers: &[(&str, &str)]) -> RequestHeader {
    let mut r = RequestHeader::build(method, uri.as_bytes(), None).unwrap();
    for (k, v) in headers {
        r.insert_header(k.to_string(), *v).unwrap();
    }
    r
}

fn find(router: &Router, method: &str, uri: &str) -> RouteMatch {
    router.find(&req(method, uri, &[]))
}

#[test]
fn most_specific_path_kind_wins_regardless_of_order() {
    let router = Router::new(vec![
        route("regex:^/api/.*"),
        route("prefix:/api"),
        route("/api/*rest"),
        route("/api/users/:id"),
        route("/api/users/me"),
    ]);
    assert_eq!(find(&router, "GET", "/api/users/me"), RouteMatch::Found(4));
    assert_eq!(find(&router, "GET", "/api/users/42"), RouteMatch::Found(3));
    assert_eq!(find(&router, "GET", "/api/users/42/x"), RouteMatch::Found(2));
    assert_eq!(find(&router, "GET", "/apix"), RouteMatch::Found(1));
    assert_eq!(find(&router, "GET", "/nothing"), RouteMatch::NotFound);
}

#[test]
fn longer_prefix_wins_and_regex_is_last() {
    let router = Router::new(vec![
        route("prefix:/"),
        route("prefix:/api/v2"),
        route("regex:^/api/v2/special$"),
    ]);
    assert_eq!(find(&router, "GET", "/api/v2/x"), RouteMatch::Found(1));
    assert_eq!(find(&router, "GET", "/other"), RouteMatch::Found(0));
    // The regex is less specific than any prefix, so `prefix: /api/v2` answers first.
    assert_eq!(find(&router, "GET", "/api/v2/special"), RouteMatch::Found(1));
}

#[test]
fn host_routes_rank_before_hostless_ones() {
    let mut api = route("prefix:/");
    api.host = Some(HostPattern::parse("api.example.com").unwrap());
    let mut wild = route("prefix:/");
    wild.host = Some(HostPattern::parse("*.example.com").unwrap());
    let router = Router::new(vec![route("prefix:/"), wild, api]);
    let by_host = |h: &str| router.find(&req("GET", "/x", &[("Host", h)]));
    assert_eq!(by_host("api.example.com:8080"), RouteMatch::Found(2));
    assert_eq!(by_host("www.example.com"), RouteMatch::Found(1));
    assert_eq!(by_host("example.org"), RouteMatch::Found(0));
}

#[test]
fn header_and_query_conditions_select_versions() {
    let mut v2 = route("prefix:/api");
    v2.headers = vec![(HeaderName::from_static("x-api-version"), "2".into())];
    let mut beta = route("prefix:/api");
    beta.query = vec![("beta".into(), "*".into())];
    let router = Router::new(vec![route("prefix:/api"), v2, beta]);
    assert_eq!(
        router.find(&req("GET", "/api/x", &[("X-Api-Version", "2")])),
        RouteMatch::Found(1)
    );
    assert_eq!(
        router.find(&req("GET", "/api/x", &[("X-Api-Version", "3")])),
        RouteMatch::Found(0)
    );
    assert_eq!(router.find(&req("GET", "/api/x?a=1&beta", &[])), RouteMatch::Found(2));
    assert_eq!(router.find(&req("GET", "/api/x?betax=1", &[])), RouteMatch::Found(0));
}

#[test]
fn wrong_method_is_405_with_allow_listing_every_matching_route() {
    let router = Router::new(vec![
        with_methods(route("/items"), &["GET"]),
        with_methods(route("/items"), &["POST"]),
    ]);
    assert_eq!(find(&router, "POST", "/items"), RouteMatch::Found(1));
    assert_eq!(find(&router, "HEAD", "/items"), RouteMatch::Found(0));
    assert_eq!(
        find(&router, "DELETE", "/items"),
        RouteMatch::MethodNotAllowed("GET, HEAD, POST".into())
    );
}

#[test]
fn method_limited_route_ranks_before_open_route_on_same_path() {
    let router = Router::new(vec![route("/x"), with_methods(route("/x"), &["POST"])]);
    assert_eq!(find(&router, "POST", "/x"), RouteMatch::Found(1));
    assert_eq!(find(&router, "GET", "/x"), RouteMatch::Found(0));
}

#[test]
fn host_is_read_without_port_and_from_v6_literals() {
    assert_eq!(request_host(&req("GET", "/", &[("Host", "a.b:80")])), Some("a.b"));
    assert_eq!(request_host(&req("GET", "/", &[("Host", "[::1]:80")])), Some("::1"));
    assert_eq!(request_host(&req("GET", "/", &[])), None);
}

#[test]
fn shadowed_routes_are_reported() {
    let names: Vec<String> = (0..4).map(|i| format!("r{i}")).collect();
    let router = Router::new(vec![
        route("/api/*rest"),
        route("prefix:/api/v1"),
        with_methods(route("/dup"), &["GET", "POST"]),
        with_methods(route("/dup"), &["GET", "PUT"]),
    ]);
    let warnings = shadowed_routes(&router, &names);
    assert_eq!(warnings.len(), 2, "{warnings:?}");
    let has = |needle: &str| warnings.iter().any(|w| w.contains(needle));
    assert!(has("routes[1] (r1) is unreachable: routes[0] (r0)"), "{warnings:?}");
    assert!(has("routes[3] (r3) never receives GET"), "{warnings:?}");
}

#[test]
fn distinct_routes_are_not_reported() {
    let names: Vec<String> = (0..3).map(|i| format!("r{i}")).collect();
    let router = Router::new(vec![route("/a/*rest"), route("prefix:/b"), route("/a/:id")]);
    assert!(shadowed_routes(&router, &names).is_empty());
}

/// What the router decided before it had an index: every route in precedence order.
fn scan(router: &Router, r: &RequestHeader) -> RouteMatch {
    let (host, path, query) = (request_host(r), r.uri.path(), r.uri.query());
    let matching: Vec<usize> = router
        .order()
        .iter()
        .copied()
        .filter(|&i| router.matcher(i).matches_target(host, path, query, &r.headers))
        .collect();
    match matching.iter().find(|&&i| router.matcher(i).allows(&r.method)) {
        Some(&i) => RouteMatch::Found(i),
        None if matching.is_empty() => RouteMatch::NotFound,
        None => {
            let mut allow: Vec<&str> = matching
                .iter()
                .flat_map(|&i| router.matcher(i).methods.iter().flatten())
                .flat_map(|m| [m.as_str()].into_iter().chain((m == Method::GET).then_some("HEAD")))
                .collect();
            allow.sort_unstable();
            allow.dedup();
            RouteMatch::MethodNotAllowed(allow.join(", "))
        }
    }
}

#[test]
fn the_index_picks_what_a_scan_in_precedence_order_picks() {
    let patterns = [
        "/",
        "/a",
        "/a/",
        "/a/b",
        "/a/:x",
        "/a/:x/c",
        "/a/*rest",
        "/a/b/*rest",
        "/:x/b",
        "/*all",
        "prefix:/",
        "prefix:/a",
        "prefix:/a/",
        "prefix:/a/b",
        "prefix:/ab",
        "regex:^/a/b$",
        "regex:b",
        "/a//b",
        "/b/:y/*rest",
        "prefix:/a/b/c",
    ];
    let hosts = [None, Some("api.example.com"), Some("*.example.com"), Some("other.org")];
    let methods: [&[&str]; 3] = [&[], &["GET"], &["POST", "PUT"]];
    // A deterministic mix of patterns, hosts, methods and a header condition.
    let mut matchers = Vec::new();
    for i in 0..120usize {
        let mut m = route(patterns[(i * 7) % patterns.len()]);
        m.host = hosts[(i / 3) % hosts.len()].map(|h| HostPattern::parse(h).unwrap());
        if !methods[i % 3].is_empty() {
            m = with_methods(m, methods[i % 3]);
        }
        if i % 11 == 0 {
            m.headers = vec![(HeaderName::from_static("x-v"), "2".into())];
        }
        matchers.push(m);
    }
    let router = Router::new(matchers);
    let paths = [
        "/", "/a", "/a/", "/a/b", "/a/b/", "/a/b/c", "/a/b/c/d", "/a/x", "/a/x/c", "/ab", "/abc", "/b", "/b/b", "/x/b",
        "/a//b", "/b/1/2/3", "/zz", "/a/b?x=1",
    ];
    let mut checked = 0;
    for path in paths {
        for host in [
            "api.example.com",
            "API.Example.com",
            "w.example.com",
            "other.org",
            "none.net",
        ] {
            for method in ["GET", "HEAD", "POST", "DELETE"] {
                for header in [None, Some("2")] {
                    let headers: Vec<(&str, &str)> =
                        [("Host", host)].into_iter().chain(header.map(|v| ("x-v", v))).collect();
                    let r = req(method, path, &headers);
                    assert_eq!(
                        router.find(&r),
                        scan(&router, &r),
                        "{method} {host}{path} x-v={header:?}"
                    );
                    checked += 1;
                }
            }
        }
    }
    assert_eq!(checked, 18 * 5 * 4 * 2);
}

#[test]
fn ten_thousand_routes_are_found_by_their_first_segment() {
    let router = Router::new((0..10_000).map(|i| route(&format!("/svc{i}/:id/items"))).collect());
    assert_eq!(find(&router, "GET", "/svc9999/7/items"), RouteMatch::Found(9999));
    assert_eq!(find(&router, "GET", "/svc0/7/items"), RouteMatch::Found(0));
    assert_eq!(find(&router, "GET", "/svc10000/7/items"), RouteMatch::NotFound);
    // Only the one route under `svc9999` is a candidate.
    assert_eq!(router.index.candidates(Some("x"), "/svc9999/7/items").len(), 1);
}
