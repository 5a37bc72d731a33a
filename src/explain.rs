//! `gatehouse explain` and `POST /admin/explain`: what the gateway would do with a request,
//! without sending it. Which route wins and why each route tried before it did not, the
//! steps that would run on it (auth, limits and their keys, CORS, cache key), the upstream
//! pool, and the exact request the upstream would get.
//!
//! Nothing is re-implemented here: the decision is the request path's own (`admit::route`
//! on a context over the same snapshot), and the upstream request is produced by running
//! the route's upstream steps on a copy of the request. No token is verified, no limit
//! counted, no connection made.

use crate::cache;
use crate::filters::request_id;
use crate::proxy::admit::{self, Decision};
use crate::request::RequestCtx;
use crate::snapshot::{Route, Snapshot};
use http::{HeaderValue, Method};
use pingora::http::RequestHeader;
use serde_json::{json, Value};
use std::net::IpAddr;
use std::sync::Arc;

/// The request to explain.
#[derive(Debug, Clone)]
pub struct Question {
    pub method: String,
    /// `http://host/path?query`, or only `/path?query` (then give a `Host` header).
    pub url: String,
    /// `Name: value` pairs, as curl's `-H`.
    pub headers: Vec<(String, String)>,
    /// The client's address, for IP lists and `key: ip` limits.
    pub client_ip: Option<IpAddr>,
}

/// The explanation as JSON (the admin API's answer; `render` prints it for a terminal).
pub fn explain(snapshot: Arc<Snapshot>, q: &Question) -> Result<Value, String> {
    let mut req = request_of(q)?;
    let mut ctx = RequestCtx::new(snapshot.clone());
    ctx.request_id = HeaderValue::from_static("explain");
    ctx.client_ip = q.client_ip;
    ctx.peer_ip = q.client_ip;
    ctx.scheme = if q.url.starts_with("https://") { "https" } else { "http" };
    let method = crate::filters::cors::preflight_method(&req).unwrap_or_else(|| req.method.clone());
    let tried = routes_tried(&snapshot, &req, &method);
    let request = json!({
        "method": req.method.as_str(),
        "host": crate::routing::request_host(&req),
        "path": req.uri.path(),
        "query": req.uri.query(),
        "client_ip": q.client_ip,
    });
    let mut answer = json!({ "request": request, "routes_tried": tried, "config_generation": snapshot.generation });
    match admit::route(&req, &mut ctx) {
        Some(Decision::Health) => {
            answer["outcome"] = json!("answered by the built-in health endpoint (200 JSON)");
        }
        Some(Decision::Redirect(to)) => answer["outcome"] = json!(format!("308 redirect to {to}")),
        Some(Decision::Reject(e)) => {
            answer["outcome"] = json!(format!("{} {} (answered by the gateway)", e.status(), e.message()));
            answer["status"] = json!(e.status());
        }
        Some(Decision::Respond(_) | Decision::Answer(..) | Decision::Proxy | Decision::Aggregate) | None => {}
    }
    let Some(index) = ctx.route else {
        return Ok(answer);
    };
    let route = &snapshot.routes[index];
    answer["route"] = json!({
        "name": route.name,
        "rules": snapshot.router.matcher(index).describe(),
        "config": snapshot.document.value()["routes"].get(index),
    });
    answer["steps"] = steps(route, &req, &ctx);
    if ctx.preflight.is_some() {
        answer["outcome"] =
            json!("CORS preflight: answered by the gateway (204, or 403 for a refused origin or method)");
        return Ok(answer);
    }
    if let Some(agg) = &route.aggregate {
        answer["outcome"] = json!(format!(
            "aggregated on route {}: the parts below are called in parallel and merged",
            route.name
        ));
        answer["parts"] = agg.describe(&req, &ctx);
        return Ok(answer);
    }
    answer["outcome"] = json!(format!("proxied on route {}", route.name));
    answer["cache"] = match &route.cache {
        Some(c) if matches!(req.method, Method::GET | Method::HEAD) => json!({
            "key": cache::request_url(&req).map(|url| format!("{url} {}", route.name)),
            "ttl_when_the_origin_says_nothing": format!("{:?}", c.ttl),
            "authorized_requests_shared": c.authorized,
        }),
        Some(_) => json!("only GET and HEAD are cached"),
        None => Value::Null,
    };
    answer["upstream"] = upstream(route);
    answer["upstream_request"] = upstream_request(route, &mut req, &ctx);
    Ok(answer)
}

fn request_of(q: &Question) -> Result<RequestHeader, String> {
    let method = Method::from_bytes(q.method.to_ascii_uppercase().as_bytes())
        .map_err(|_| format!("\"{}\" is not an HTTP method", q.method))?;
    let uri: http::Uri = q.url.parse().map_err(|e| format!("\"{}\" is not a URL: {e}", q.url))?;
    let target = uri.path_and_query().map_or("/", |pq| pq.as_str());
    let mut req = RequestHeader::build(method, target.as_bytes(), None).map_err(|e| e.to_string())?;
    if let Some(authority) = uri.authority() {
        req.insert_header(http::header::HOST, authority.as_str())
            .map_err(|e| e.to_string())?;
    }
    for (name, value) in &q.headers {
        req.append_header(name.clone(), value.as_str())
            .map_err(|e| format!("header {name}: {e}"))?;
    }
    if !req.headers.contains_key(http::header::HOST) {
        return Err("no host: give a full URL (http://host/path) or a Host header".into());
    }
    Ok(req)
}

/// Every route in the order the router tries them, up to the one that takes the request,
/// each with the rule that failed.
fn routes_tried(snapshot: &Snapshot, req: &RequestHeader, method: &Method) -> Vec<Value> {
    let mut tried = Vec::new();
    for &i in snapshot.router.order() {
        let matcher = snapshot.router.matcher(i);
        let why = matcher.mismatch(req, method);
        let taken = why.is_none();
        tried.push(json!({
            "route": snapshot.routes[i].name,
            "rules": matcher.describe(),
            "matches": taken,
            "why_not": why,
        }));
        if taken {
            break;
        }
    }
    tried
}

fn steps(route: &Route, req: &RequestHeader, ctx: &RequestCtx) -> Value {
    let mut steps: Vec<Value> = Vec::new();
    if req.method == Method::GET && !route.allow_get_body {
        steps.push(json!({ "step": "get_body", "detail": "a GET with a body gets 400 (allow_get_body: false)" }));
    }
    for step in &route.request_chain {
        let (name, detail) = step.describe(req, ctx);
        steps.push(json!({ "step": name, "detail": detail }));
    }
    Value::Array(steps)
}

fn upstream(route: &Route) -> Value {
    let pools: Vec<Value> = route
        .upstreams
        .shares()
        .into_iter()
        .map(|(pool, share)| {
            let targets: Vec<Value> = pool
                .targets()
                .map(|t| {
                    json!({
                        "addr": t.target.config.spec,
                        "resolved": t.target.config.addr.map(|a| a.to_string()),
                        "weight": t.target.config.weight,
                        "takes_traffic": t.healthy && !t.ejected,
                    })
                })
                .collect();
            json!({
                "name": pool.name,
                "share": share,
                "balance": format!("{:?}", pool.config.balance),
                "tls": pool.config.tls.as_ref().map(|t| t.sni.clone()),
                "circuit": pool.circuit_state(),
                "retries": pool.config.retries,
                "connect_timeout": format!("{:?}", pool.config.connect_timeout),
                "timeout": format!("{:?}", route.timeout.unwrap_or(pool.config.timeout)),
                "targets": targets,
            })
        })
        .collect();
    json!({ "pools": pools })
}

/// The request as the upstream gets it: the route's upstream steps run on a copy. Pingora
/// forwards the rest as it is (hop-by-hop headers aside).
fn upstream_request(route: &Route, req: &mut RequestHeader, ctx: &RequestCtx) -> Value {
    let before = header_list(req);
    let mut sent = req.clone();
    let mut problems = Vec::new();
    for step in &route.upstream_chain {
        if let Err(e) = step.apply(&mut sent, req, ctx) {
            problems.push(e.to_string());
        }
    }
    let after = header_list(&sent);
    let added: Vec<&(String, String)> = after.iter().filter(|h| !before.contains(h)).collect();
    let removed: Vec<&(String, String)> = before.iter().filter(|h| !after.contains(h)).collect();
    json!({
        "method": sent.method.as_str(),
        "path": sent.uri.path_and_query().map_or("/", |pq| pq.as_str()),
        "headers": after,
        "added_or_changed": added,
        "removed_or_replaced": removed,
        "notes": [
            format!("X-Request-ID is the request's own id ({} here)", request_id::as_str(&ctx.request_id)),
            "Connection and other hop-by-hop headers are not forwarded".to_string(),
        ],
        "problems": problems,
    })
}

fn header_list(req: &RequestHeader) -> Vec<(String, String)> {
    req.headers
        .iter()
        .map(|(n, v)| {
            (
                n.as_str().to_string(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect()
}

/// The explanation for a terminal.
pub fn render(v: &Value) -> String {
    let mut out = String::new();
    let r = &v["request"];
    out.push_str(&format!(
        "{} {}{}{}\n",
        r["method"].as_str().unwrap_or(""),
        r["host"].as_str().unwrap_or(""),
        r["path"].as_str().unwrap_or(""),
        r["query"].as_str().map(|q| format!("?{q}")).unwrap_or_default()
    ));
    out.push_str(&format!("→ {}\n", v["outcome"].as_str().unwrap_or("?")));
    out.push_str("\nroutes, in the order they are tried:\n");
    for t in v["routes_tried"].as_array().into_iter().flatten() {
        let mark = if t["matches"] == true { "✓" } else { "✗" };
        out.push_str(&format!(
            "  {mark} {} ({})",
            t["route"].as_str().unwrap_or(""),
            t["rules"].as_str().unwrap_or("")
        ));
        if let Some(why) = t["why_not"].as_str() {
            out.push_str(&format!(": {why}"));
        }
        out.push('\n');
    }
    if let Some(steps) = v["steps"].as_array() {
        out.push_str("\nsteps on this route:\n");
        for s in steps {
            out.push_str(&format!(
                "  {}: {}\n",
                s["step"].as_str().unwrap_or(""),
                s["detail"].as_str().unwrap_or("")
            ));
        }
        if steps.is_empty() {
            out.push_str("  none (no auth, limit, CORS or IP list)\n");
        }
    }
    if let Some(key) = v["cache"]["key"].as_str() {
        out.push_str(&format!("\ncache key: {key}\n"));
    }
    for p in v["upstream"]["pools"].as_array().into_iter().flatten() {
        out.push_str(&format!(
            "\nupstream {} (share {}, {}, {} retries, timeout {}):\n",
            p["name"].as_str().unwrap_or(""),
            p["share"],
            p["balance"].as_str().unwrap_or(""),
            p["retries"],
            p["timeout"].as_str().unwrap_or("")
        ));
        for t in p["targets"].as_array().into_iter().flatten() {
            let state = if t["takes_traffic"] == true {
                "takes traffic"
            } else {
                "out of service"
            };
            out.push_str(&format!(
                "  {} weight {}: {state}\n",
                t["addr"].as_str().unwrap_or(""),
                t["weight"]
            ));
        }
    }
    let u = &v["upstream_request"];
    if u.is_object() {
        out.push_str(&format!(
            "\nthe upstream gets:\n  {} {}\n",
            u["method"].as_str().unwrap_or(""),
            u["path"].as_str().unwrap_or("")
        ));
        for h in u["headers"].as_array().into_iter().flatten() {
            out.push_str(&format!(
                "  {}: {}\n",
                h[0].as_str().unwrap_or(""),
                h[1].as_str().unwrap_or("")
            ));
        }
        for h in u["removed_or_replaced"].as_array().into_iter().flatten() {
            out.push_str(&format!(
                "  (removed or replaced: {}: {})\n",
                h[0].as_str().unwrap_or(""),
                h[1].as_str().unwrap_or("")
            ));
        }
    }
    out
}
