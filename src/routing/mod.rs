//! Request → route. Pure functions over `RequestHeader`; compiled once per snapshot.
//!
//! Routes are ranked by specificity, most specific first:
//! 1. host: exact host, then `*.wildcard` hosts (longer first), then routes without host;
//! 2. path kind: exact, then `:param` patterns, then `*wildcard` patterns, then `prefix:`,
//!    then `regex:`; within a kind, more literal text first;
//! 3. more `headers:` / `query:` conditions first;
//! 4. routes limited to some `methods` before routes open to all;
//! 5. config order.
//!
//! The first route in that ranking that takes the request wins. Only the candidates the
//! [`index`] files under the request's host and path segments are tried, so the cost of
//! routing does not grow with the number of routes.
//!
//! A path that matches but whose method no matching route allows answers 405 with `Allow`.

mod index;
mod pattern;
mod shadow;

pub use pattern::{HostPattern, ParamAt, PathPattern, Segment};
pub use shadow::shadowed_routes;

use http::{HeaderMap, HeaderName, Method};
use index::RouteIndex;
use pingora::http::RequestHeader;
use std::cmp::Reverse;
use std::sync::Arc;

/// Everything a route matches on, compiled.
#[derive(Debug, Clone)]
pub struct RouteMatcher {
    pub host: Option<HostPattern>,
    pub path: PathPattern,
    /// `None` = any method.
    pub methods: Option<Vec<Method>>,
    /// Header name and required value; `*` means "present with any value".
    pub headers: Vec<(HeaderName, String)>,
    /// Query parameter and required (raw, undecoded) value; `*` means "present".
    pub query: Vec<(String, String)>,
}

/// What the router decided for one request.
#[derive(Debug, PartialEq, Eq)]
pub enum RouteMatch {
    /// Index of the route in config order.
    Found(usize),
    /// Some route matches everything but the method; the value is the `Allow` header.
    MethodNotAllowed(String),
    NotFound,
}

/// The compiled route table.
#[derive(Debug, Default)]
pub struct Router {
    /// Shared with the loaded config's routes, which the reloader keeps for rebuilds.
    matchers: Box<[Arc<RouteMatcher>]>,
    /// Indices into `matchers`, most specific first.
    order: Vec<usize>,
    /// The candidates for a request, by host and path segments; ranks index `order`.
    index: RouteIndex,
    /// Some route has a host condition. Without one the request's host is not looked up
    /// (≈ 470 instructions a request: the Host field found, checked as text, its port cut).
    by_host: bool,
}

// === impl RouteMatcher ===

impl RouteMatcher {
    /// Everything but the method.
    fn matches_target(&self, host: Option<&str>, path: &str, query: Option<&str>, headers: &HeaderMap) -> bool {
        if let Some(pattern) = &self.host {
            match host {
                Some(h) if pattern.matches(h) => {}
                _ => return false,
            }
        }
        self.path.matches(path)
            && self
                .headers
                .iter()
                .all(|(name, want)| header_matches(headers, name, want))
            && self.query.iter().all(|(name, want)| query_matches(query, name, want))
    }

    /// The first rule of this route that `req` fails, in words (for `explain`); `None`
    /// when the route takes it.
    pub fn mismatch(&self, req: &RequestHeader, method: &Method) -> Option<String> {
        let host = request_host(req);
        if let Some(pattern) = &self.host {
            match host {
                Some(h) if pattern.matches(h) => {}
                Some(h) => return Some(format!("host {h} is not {}", pattern.source())),
                None => {
                    return Some(format!(
                        "the request has no host (the route wants {})",
                        pattern.source()
                    ))
                }
            }
        }
        let path = req.uri.path();
        if !self.path.matches(path) {
            return Some(format!(
                "path {path} does not match {} {}",
                self.path.kind(),
                self.path.source()
            ));
        }
        for (name, want) in &self.headers {
            if !header_matches(&req.headers, name, want) {
                return Some(match req.headers.get(name) {
                    None => format!("header {name} is missing"),
                    Some(v) => format!(
                        "header {name} is {:?}, not {want:?}",
                        String::from_utf8_lossy(v.as_bytes())
                    ),
                });
            }
        }
        for (name, want) in &self.query {
            if !query_matches(req.uri.query(), name, want) {
                return Some(format!("query parameter {name} is not {want:?}"));
            }
        }
        if !self.allows(method) {
            let allowed: Vec<&str> = self.methods.iter().flatten().map(Method::as_str).collect();
            return Some(format!("method {method} is not among {}", allowed.join(", ")));
        }
        None
    }

    /// The route's rules in words: `host api.example.com, prefix /api, methods GET`.
    pub fn describe(&self) -> String {
        let mut rules = Vec::new();
        if let Some(h) = &self.host {
            rules.push(format!("host {}", h.source()));
        }
        rules.push(format!("{} {}", self.path.kind(), self.path.source()));
        if let Some(methods) = &self.methods {
            let list: Vec<&str> = methods.iter().map(Method::as_str).collect();
            rules.push(format!("methods {}", list.join(", ")));
        }
        for (name, want) in &self.headers {
            rules.push(format!("header {name}: {want}"));
        }
        for (name, want) in &self.query {
            rules.push(format!("query {name}={want}"));
        }
        rules.join(", ")
    }

    pub fn allows(&self, method: &Method) -> bool {
        match &self.methods {
            None => true,
            // HEAD is implied wherever GET is allowed, as every HTTP server does.
            Some(list) => list.contains(method) || (method == Method::HEAD && list.contains(&Method::GET)),
        }
    }

    fn conditions(&self) -> usize {
        self.headers.len() + self.query.len()
    }

    fn specificity(&self) -> impl Ord {
        let host = self.host.as_ref().map_or((2, Reverse(0)), HostPattern::specificity);
        (
            host,
            self.path.specificity(),
            Reverse(self.conditions()),
            self.methods.is_none(),
        )
    }
}

fn header_matches(headers: &HeaderMap, name: &HeaderName, want: &str) -> bool {
    match headers.get(name) {
        Some(value) => want == "*" || value.as_bytes() == want.as_bytes(),
        None => false,
    }
}

fn query_matches(query: Option<&str>, name: &str, want: &str) -> bool {
    let Some(query) = query else {
        return false;
    };
    query.split('&').any(|pair| {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        key == name && (want == "*" || value == want)
    })
}

/// The request's host without port, from the URI authority (h2, absolute-form) or `Host`.
pub fn request_host(req: &RequestHeader) -> Option<&str> {
    let raw = match req.uri.host() {
        Some(h) => return Some(h.trim_start_matches('[').trim_end_matches(']')),
        None => req.headers.get(http::header::HOST)?.to_str().ok()?,
    };
    if let Some(v6) = raw.strip_prefix('[') {
        return v6.split(']').next();
    }
    Some(match raw.rsplit_once(':') {
        Some((host, port)) if port.bytes().all(|b| b.is_ascii_digit()) => host,
        _ => raw,
    })
}

// === impl Router ===

impl Router {
    pub fn new<M: Into<Arc<RouteMatcher>>>(matchers: Vec<M>) -> Self {
        // A boxed slice is exact: a `collect` into a vector from one of bigger items (the
        // snapshot's route configs) kept their whole allocation, 1.3 KB per route.
        let matchers: Box<[Arc<RouteMatcher>]> = matchers.into_iter().map(Into::into).collect();
        let mut order: Vec<usize> = (0..matchers.len()).collect();
        // Stable sort: equal specificity keeps config order.
        order.sort_by_cached_key(|&i| matchers[i].specificity());
        let index = RouteIndex::new(order.iter().map(|&i| &*matchers[i]));
        let by_host = matchers.iter().any(|m| m.host.is_some());
        Router {
            matchers,
            order,
            index,
            by_host,
        }
    }

    /// Indices of routes, most specific first.
    pub fn order(&self) -> &[usize] {
        &self.order
    }

    pub fn matcher(&self, index: usize) -> &RouteMatcher {
        &self.matchers[index]
    }

    pub fn find(&self, req: &RequestHeader) -> RouteMatch {
        self.find_for_method(req, &req.method)
    }

    /// Routes `req` as if its method were `method` (a CORS preflight is routed by the
    /// method it asks about).
    pub fn find_for_method(&self, req: &RequestHeader, method: &Method) -> RouteMatch {
        let host = if self.by_host { request_host(req) } else { None };
        let path = req.uri.path();
        let query = req.uri.query();
        let mut method_mismatch = false;
        let found = self.index.first(host, path, |rank| {
            let m = &self.matchers[self.order[rank as usize]];
            if !m.matches_target(host, path, query, &req.headers) {
                return false;
            }
            method_mismatch |= !m.allows(method);
            m.allows(method)
        });
        match found {
            Some(rank) => RouteMatch::Found(self.order[rank as usize]),
            // With no route found, every candidate was tried: the flag is complete.
            None if method_mismatch => {
                RouteMatch::MethodNotAllowed(self.allowed_methods(host, path, query, &req.headers))
            }
            None => RouteMatch::NotFound,
        }
    }

    /// The `Allow` value for a 405: every method some matching route accepts.
    fn allowed_methods(&self, host: Option<&str>, path: &str, query: Option<&str>, headers: &HeaderMap) -> String {
        let mut allowed: Vec<&str> = Vec::new();
        for rank in self.index.candidates(host, path) {
            let m = &self.matchers[self.order[rank as usize]];
            if !m.matches_target(host, path, query, headers) {
                continue;
            }
            for method in m.methods.iter().flatten() {
                allowed.push(method.as_str());
                if method == Method::GET {
                    allowed.push("HEAD");
                }
            }
        }
        allowed.sort_unstable();
        allowed.dedup();
        allowed.join(", ")
    }
}

#[cfg(test)]
mod tests;
