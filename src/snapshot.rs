//! The immutable runtime world built from one validated config: the router, each route's
//! filter chain, the upstream pools. Everything that can fail fails here, before the swap;
//! the request path only reads it.

use crate::config::model::{RouteConfig, ServerSettings};
use crate::config::{Config, ConfigError, Problem};
use crate::filters::{self, UpstreamStep};
use crate::routing::{shadowed_routes, Router};
use crate::upstream::UpstreamPool;
use arc_swap::ArcSwap;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

/// The one handle through which requests see the current snapshot and reloads replace it.
pub type SharedSnapshot = Arc<ArcSwap<Snapshot>>;

pub struct Snapshot {
    /// Counts builds in this process: 1 for the first config, +1 per successful reload.
    pub generation: u64,
    pub source: String,
    pub server: ServerSettings,
    pub router: Router,
    /// In config order (the router's indices point here).
    pub routes: Vec<Route>,
    pub upstreams: BTreeMap<String, Arc<UpstreamPool>>,
    pub warnings: Vec<String>,
}

/// A route, ready to serve.
pub struct Route {
    pub name: String,
    pub upstream: Arc<UpstreamPool>,
    /// Read/write timeout towards the upstream; `None` = the upstream's own.
    pub timeout: Option<Duration>,
    /// Applied in order to the request sent upstream.
    pub upstream_chain: Vec<UpstreamStep>,
}

impl Snapshot {
    /// Builds the runtime world from `config`. Pools whose config equals one in `previous`
    /// are reused as they are, so they keep their health state.
    pub fn build(config: Config, previous: Option<&Snapshot>) -> Result<Snapshot, ConfigError> {
        let mut problems = Vec::new();
        let mut upstreams = BTreeMap::new();
        for (name, cfg) in &config.upstreams {
            let reused = previous
                .and_then(|p| p.upstreams.get(name))
                .filter(|pool| pool.config == *cfg)
                .cloned();
            match reused
                .map(Ok)
                .unwrap_or_else(|| UpstreamPool::build(name, cfg).map(Arc::new))
            {
                Ok(pool) => {
                    upstreams.insert(name.clone(), pool);
                }
                Err(message) => problems.push(Problem {
                    path: format!("upstreams.{name}"),
                    message,
                }),
            }
        }
        let routes: Vec<Route> = config
            .routes
            .iter()
            .filter_map(|r| upstreams.get(&r.upstream).map(|pool| build_route(r, pool)))
            .collect();
        if !problems.is_empty() {
            return Err(ConfigError {
                source: config.source,
                problems,
            });
        }
        let names: Vec<String> = config.routes.iter().map(|r| r.name.clone()).collect();
        let router = Router::new(config.routes.into_iter().map(|r| r.matcher).collect());
        let mut warnings = config.warnings;
        warnings.extend(shadowed_routes(&router, &names));
        Ok(Snapshot {
            generation: previous.map_or(1, |p| p.generation + 1),
            source: config.source,
            server: config.server,
            router,
            routes,
            upstreams,
            warnings,
        })
    }
}

fn build_route(config: &RouteConfig, pool: &Arc<UpstreamPool>) -> Route {
    Route {
        name: config.name.clone(),
        upstream: pool.clone(),
        timeout: config.timeout,
        upstream_chain: filters::upstream_chain(config),
    }
}
