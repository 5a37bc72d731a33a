//! `GET /health` on the main listener: per upstream, healthy and total targets (the shape of
//! seed 004's `/health`), plus each target. Always 200: the gateway itself is alive; the
//! `status` field says whether every upstream can serve.

use crate::snapshot::Snapshot;
use serde_json::{json, Map, Value};

pub fn report(snapshot: &Snapshot) -> Vec<u8> {
    let mut services = Map::new();
    let mut all_serving = true;
    for (name, pool) in &snapshot.upstreams {
        let targets: Vec<Value> = pool
            .targets()
            .map(|t| {
                // `healthy` is whether the target takes traffic: active checks passing, not
                // ejected by passive health, and its name resolved. `state` says which.
                let state = if t.target.config.addr.is_none() {
                    "unresolved"
                } else if !t.healthy {
                    "unhealthy"
                } else if t.ejected {
                    "ejected"
                } else {
                    "healthy"
                };
                json!({
                    "addr": t.target.config.spec,
                    "weight": t.target.config.weight,
                    "healthy": state == "healthy",
                    "state": state,
                    "ejected": t.ejected,
                    "in_flight": t.target.in_flight(),
                })
            })
            .collect();
        let healthy = targets.iter().filter(|t| t["healthy"] == true).count();
        let circuit = pool.circuit_state();
        all_serving &= healthy > 0 && circuit != Some("open");
        let mut service = json!({
            "healthy_instances": healthy,
            "total_instances": targets.len(),
            "status": format!("{healthy}/{}", targets.len()),
            "targets": targets,
        });
        if let Some(state) = circuit {
            service["circuit"] = json!(state);
        }
        services.insert(name.clone(), service);
    }
    let doc = json!({
        "status": if all_serving { "healthy" } else { "degraded" },
        "timestamp": jiff::Timestamp::now().to_string(),
        "version": env!("CARGO_PKG_VERSION"),
        "config_generation": snapshot.generation,
        "services": services,
    });
    serde_json::to_vec(&doc).unwrap_or_default()
}
