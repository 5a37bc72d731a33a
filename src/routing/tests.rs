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
