//! `gatehouse config push | pull | diff`: the fleet's config kept in a file under version
//! control and written to etcd as one transaction. A file that `check` refuses never
//! reaches etcd.

use crate::config::{fleet, ConfigSource};
use crate::etcd::{self, EtcdSettings, Listing};
use crate::snapshot::Snapshot;
use serde_yaml::Value;
use std::path::Path;

/// What writing a file would change under the prefix.
pub struct Plan {
    pub puts: Vec<(String, Vec<u8>)>,
    pub deletes: Vec<String>,
    /// `+ routes/api`, `~ settings`, `- upstreams/old`.
    pub lines: Vec<String>,
    /// Node-local keys of the file that are not pushed.
    pub left_out: Vec<String>,
}

/// Validates `file` as `gatehouse check` does, then compares its resources with `listing`.
pub fn plan(file: &Path, listing: &Listing) -> Result<Plan, String> {
    ConfigSource::File(file.to_path_buf())
        .load()
        .and_then(|c| Snapshot::build(c, None))
        .map_err(|e| format!("{e}\nnothing was written"))?;
    let source = file.display().to_string();
    let text = std::fs::read_to_string(file).map_err(|e| format!("{source}: {e}"))?;
    let (resources, left_out) = fleet::resources(&text, &source).map_err(|e| e.to_string())?;
    let current: Vec<(String, Option<Value>)> = listing
        .entries
        .iter()
        .map(|e| (e.key.clone(), serde_yaml::from_slice::<Value>(&e.value).ok()))
        .collect();
    let mut plan = Plan {
        puts: Vec::new(),
        deletes: Vec::new(),
        lines: Vec::new(),
        left_out,
    };
    for (key, value) in &resources {
        let was = current.iter().find(|(k, _)| k == key).map(|(_, v)| v);
        if was.is_some_and(|v| v.as_ref() == Some(value)) {
            continue;
        }
        let json = serde_json::to_vec(value).map_err(|e| format!("{key}: {e}"))?;
        plan.lines
            .push(format!("{} {key}", if was.is_some() { "~" } else { "+" }));
        plan.puts.push((key.clone(), json));
    }
    for (key, _) in &current {
        if !resources.iter().any(|(k, _)| k == key) {
            plan.lines.push(format!("- {key}"));
            plan.deletes.push(key.clone());
        }
    }
    Ok(plan)
}

/// Runs `work` on a runtime of its own (the CLI has none).
fn block_on<T>(work: impl std::future::Future<Output = Result<T, String>>) -> Result<T, String> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?
        .block_on(work)
}

/// `config push`: the difference, written in one transaction. The new revision (none when
/// there was nothing to write), and the plan.
pub fn push(file: &Path, s: &EtcdSettings) -> Result<(Option<i64>, Plan), String> {
    block_on(async {
        let mut client = etcd::connect(s).await?;
        let listing = etcd::list(&mut client, s).await?;
        let plan = plan(file, &listing)?;
        if plan.puts.is_empty() && plan.deletes.is_empty() {
            return Ok((None, plan));
        }
        let revision = etcd::write(&mut client, s, &plan.puts, &plan.deletes).await?;
        Ok((Some(revision), plan))
    })
}

/// `config diff`: what a push would change.
pub fn diff(file: &Path, s: &EtcdSettings) -> Result<Plan, String> {
    block_on(async {
        let mut client = etcd::connect(s).await?;
        let listing = etcd::list(&mut client, s).await?;
        plan(file, &listing)
    })
}

/// `config pull`: the fleet's config as one YAML document, and its revision.
pub fn pull(s: &EtcdSettings) -> Result<(i64, String), String> {
    block_on(async {
        let mut client = etcd::connect(s).await?;
        let listing = etcd::list(&mut client, s).await?;
        Ok((listing.revision, fleet::document(&listing)?))
    })
}
