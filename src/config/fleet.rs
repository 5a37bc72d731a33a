//! Fleet mode's config: the resources under an etcd prefix assembled into one document of
//! exactly the YAML file's shape, then validated and built as a file is.
//!
//! | key                 | value (JSON or YAML)            | becomes                          |
//! |---------------------|---------------------------------|----------------------------------|
//! | `settings`          | a map of top-level keys         | the top level                    |
//! | `routes/<name>`     | a route                         | `routes[]`, `name` = `<name>`    |
//! | `upstreams/<name>`  | an upstream                     | `upstreams.<name>`               |
//! | `consumers/<name>`  | `{ sha256: ... }`               | `auth.api_keys.keys[]`, consumer `<name>` |
//! | `certs/<name>`      | `{ cert, key, ocsp }` (paths)   | `tls.certs[]`                    |
//!
//! Routes are in key order (the router orders them by specificity anyway). Node-local keys
//! (listen addresses, admin listener, threads, files) come from the node's bootstrap file
//! and win over `settings`, so that nodes sharing one config can differ where they must.
//! Problems are reported by etcd key (`routes/api: upstream: unknown upstream "x"`).

use super::error::{ConfigError, Problems};
use super::raw::{RawConfig, RawEtcd, RawEtcdTls};
use super::{env, field_path, finish, port_override, suggest, switch_overrides, validate, Config};
use crate::etcd::Listing;
use crate::etcd::{EtcdSettings, EtcdTls};
use serde_yaml::{Mapping, Value};
use std::path::{Path, PathBuf};

/// Top-level keys that belong to the node, not the fleet: its addresses, files and process
/// lifetime (all fixed for the life of the process anyway).
pub const NODE_LOCAL: [&str; 15] = [
    "drain_period",
    "grace_period",
    "shutdown_timeout",
    "listen",
    "admin",
    "threads",
    "work_stealing",
    "upstream_keepalive_pool",
    "pid_file",
    "upgrade_sock",
    "log_file",
    "state_dir",
    "reuse_port",
    "read_buffer",
    "config_source",
];

/// Environment variables by name, for `${VAR}` expansion.
type Lookup<'a> = &'a dyn Fn(&str) -> Option<String>;

/// A config file as the fleet's resources: (key without prefix, value) pairs, and the
/// node-local keys left out.
pub type Resources = (Vec<(String, Value)>, Vec<String>);

/// Which etcd key each assembled list entry came from, for messages.
#[derive(Default)]
struct Origins {
    routes: Vec<String>,
    consumers: Vec<String>,
    certs: Vec<String>,
}

/// The config of `listing` (read from `source`), with the node-local keys of `local` (the
/// bootstrap file's document).
pub fn load(
    listing: &Listing,
    local: &Mapping,
    source: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<Config, ConfigError> {
    let mut problems = Problems::default();
    let (document, origins) = assemble(listing, local, Some(lookup), &mut problems);
    if listing.entries.is_empty() {
        problems.push(
            "",
            "nothing under this prefix: push a config first (gatehouse config push FILE, or etcdctl put)",
        );
        return Err(problems.into_error(source));
    }
    let mut unknown = Vec::new();
    let raw: Result<RawConfig, _> = serde_ignored::deserialize(document, |path| unknown.push(field_path(&path)));
    let mut raw = match raw {
        Ok(raw) => raw,
        Err(e) => {
            problems.push("", format!("the assembled config does not parse: {e}"));
            return Err(by_key(problems.into_error(source), &origins));
        }
    };
    switch_overrides(&mut raw, lookup, &mut problems);
    let port = port_override(lookup, &mut problems);
    for path in unknown {
        let message = suggest::unknown_key(&path);
        problems.push(path, message);
    }
    match finish(validate::validate(raw, source, port), problems, source) {
        Ok(mut config) => {
            config.revision = u64::try_from(listing.revision).ok();
            Ok(config)
        }
        Err(e) => Err(by_key(e, &origins)),
    }
}

/// The etcd settings of a bootstrap file's `config_source.etcd`.
pub fn etcd_settings(raw: &RawEtcd, source: &str) -> Result<EtcdSettings, ConfigError> {
    let mut p = Problems::default();
    let endpoints = raw.endpoints.clone().unwrap_or_default();
    if endpoints.is_empty() {
        p.push(
            "config_source.etcd.endpoints",
            "at least one endpoint is required (http://host:2379)",
        );
    }
    let mut settings = EtcdSettings::new(endpoints, raw.prefix.as_deref());
    match (&raw.username, &raw.password) {
        (Some(u), Some(pw)) => settings.credentials = Some((u.clone(), pw.clone())),
        (None, None) => {}
        _ => p.push("config_source.etcd", "username and password go together"),
    }
    if let Some(tls) = &raw.tls {
        settings.tls = etcd_tls(tls, &mut p);
    }
    if let Some(t) = &raw.timeout {
        match super::parse_duration(t) {
            Ok(d) if !d.is_zero() => settings.timeout = d,
            Ok(_) => p.push("config_source.etcd.timeout", "must be more than 0"),
            Err(e) => p.push("config_source.etcd.timeout", e),
        }
    }
    p.into_result(source, settings)
}

/// `config_source.etcd.tls`: files that exist, a certificate with its key.
fn etcd_tls(raw: &RawEtcdTls, p: &mut Problems) -> EtcdTls {
    for (field, file) in [
        ("ca_file", &raw.ca_file),
        ("cert_file", &raw.cert_file),
        ("key_file", &raw.key_file),
    ] {
        if let Some(path) = file {
            if let Err(e) = std::fs::metadata(path) {
                p.push(format!("config_source.etcd.tls.{field}"), format!("\"{path}\": {e}"));
            }
        }
    }
    if raw.cert_file.is_some() != raw.key_file.is_some() {
        p.push("config_source.etcd.tls", "cert_file and key_file go together");
    }
    EtcdTls {
        ca_file: raw.ca_file.clone(),
        cert_file: raw.cert_file.clone(),
        key_file: raw.key_file.clone(),
    }
}

/// Where the last good config of a fleet node is kept, under its `state_dir`.
pub fn state_file(dir: &Path) -> PathBuf {
    dir.join("gatehouse-fleet-state.json")
}

/// Keeps `config` (read from etcd) as this node's last good config: served at the next
/// start if etcd is down then. Written whole to a temporary file, then renamed; 0600, as it
/// holds the fleet's secrets.
pub fn save_state(dir: &Path, config: &Config) -> Result<(), String> {
    write_state(dir, &state_text(config)?)
}

/// The state file's content for `config` (taken before the config is consumed by a build,
/// written once the build succeeded).
pub fn state_text(config: &Config) -> Result<Vec<u8>, String> {
    let state = serde_json::json!({ "revision": config.revision, "config": config.document.value() });
    serde_json::to_vec_pretty(&state).map_err(|e| e.to_string())
}

/// Writes a state file's content whole to a temporary file, then renames it.
pub fn write_state(dir: &Path, text: &[u8]) -> Result<(), String> {
    let path = state_file(dir);
    let tmp = path.with_extension("json.tmp");
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(&tmp).map_err(|e| format!("{}: {e}", tmp.display()))?;
    std::io::Write::write_all(&mut file, text).map_err(|e| format!("{}: {e}", tmp.display()))?;
    std::fs::rename(&tmp, &path).map_err(|e| format!("{}: {e}", path.display()))
}

/// The last good config kept by [`save_state`], validated again (with this node's
/// environment), with its revision.
pub fn load_state(dir: &Path, lookup: &dyn Fn(&str) -> Option<String>) -> Result<Config, ConfigError> {
    let path = state_file(dir);
    let source = path.display().to_string();
    let text =
        std::fs::read_to_string(&path).map_err(|e| ConfigError::single(&source, "", format!("cannot read: {e}")))?;
    let state: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| ConfigError::single(&source, "", format!("not a state file: {e}")))?;
    let document = serde_json::to_string(&state["config"]).unwrap_or_default();
    let mut config = super::parse_yaml(&document, &source, lookup)?;
    config.revision = state["revision"].as_u64();
    Ok(config)
}

/// A config file split into the fleet's resources (key without prefix, value), the
/// reverse of assembling: what `gatehouse config push` writes. The file's text is taken
/// before `${VAR}` expansion, so that each node expands variables (secrets) from its own
/// environment. Node-local keys are left out (each node's bootstrap file has them); they
/// are returned by name.
pub fn resources(text: &str, source: &str) -> Result<Resources, ConfigError> {
    let mut p = Problems::default();
    let mut top = match serde_yaml::from_str::<Value>(text) {
        Ok(Value::Mapping(m)) => m,
        Ok(_) => return Err(ConfigError::single(source, "", "expected a map of settings")),
        Err(e) => return Err(ConfigError::single(source, "", format!("invalid YAML: {e}"))),
    };
    let mut out = Vec::new();
    let mut left_out = Vec::new();
    for key in NODE_LOCAL {
        if top.remove(key).is_some() {
            left_out.push(key.to_string());
        }
    }
    if let Some(Value::Sequence(routes)) = top.remove("routes") {
        for (i, mut route) in routes.into_iter().enumerate() {
            let name = match route.as_mapping_mut().and_then(|m| m.remove("name")) {
                Some(Value::String(n)) => n,
                _ => format!("route-{i}"),
            };
            out.push((resource_key("routes", &name, &mut p), route));
        }
    }
    if let Some(Value::Mapping(upstreams)) = top.remove("upstreams") {
        for (name, upstream) in upstreams {
            let name = name.as_str().unwrap_or_default().to_string();
            out.push((resource_key("upstreams", &name, &mut p), upstream));
        }
    }
    let consumers = top
        .get_mut("auth")
        .and_then(|a| a.get_mut("api_keys"))
        .and_then(Value::as_mapping_mut)
        .and_then(|k| k.remove("keys"));
    if let Some(Value::Sequence(keys)) = consumers {
        for (i, mut key) in keys.into_iter().enumerate() {
            let name = match key.as_mapping_mut().and_then(|m| m.remove("consumer")) {
                Some(Value::String(n)) => n,
                _ => format!("consumer-{i}"),
            };
            out.push((resource_key("consumers", &name, &mut p), key));
        }
    }
    if let Some(tls) = top.get_mut("tls").and_then(Value::as_mapping_mut) {
        if tls.remove("listen").is_some() {
            left_out.push("tls.listen".into());
        }
        if let Some(Value::Sequence(certs)) = tls.remove("certs") {
            for (i, cert) in certs.into_iter().enumerate() {
                let name = cert
                    .get("cert")
                    .and_then(Value::as_str)
                    .and_then(|c| Path::new(c).file_stem())
                    .map_or_else(|| format!("cert-{i}"), |s| s.to_string_lossy().into_owned());
                out.push((resource_key("certs", &name, &mut p), cert));
            }
        }
    }
    if !top.is_empty() {
        out.push(("settings".into(), Value::Mapping(top)));
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    p.into_result(source, (out, left_out))
}

/// `routes/<name>`; a name with `/` would read as another key.
fn resource_key(kind: &str, name: &str, p: &mut Problems) -> String {
    if name.is_empty() || name.contains('/') {
        p.push(
            format!("{kind}.{name}"),
            "a name stored in etcd must be non-empty and hold no `/`",
        );
    }
    format!("{kind}/{name}")
}

/// The fleet's config as one YAML document again (`gatehouse config pull`), variables
/// left as they were written.
pub fn document(listing: &Listing) -> Result<String, String> {
    let mut problems = Problems::default();
    let (document, _) = assemble(listing, &Mapping::new(), None, &mut problems);
    serde_yaml::to_string(&document).map_err(|e| e.to_string())
}

fn assemble(listing: &Listing, local: &Mapping, lookup: Option<Lookup>, problems: &mut Problems) -> (Value, Origins) {
    let mut top = Mapping::new();
    let mut routes = Vec::new();
    let mut upstreams = Mapping::new();
    let mut consumers = Vec::new();
    let mut certs = Vec::new();
    let mut origins = Origins::default();
    for entry in &listing.entries {
        let (key, bytes) = (&entry.key, &entry.value);
        let Some(value) = parse_value(key, bytes, lookup, problems) else {
            continue;
        };
        let (kind, name) = key.split_once('/').unwrap_or((key.as_str(), ""));
        match (kind, name) {
            ("settings", "") => match value {
                Value::Mapping(m) => top = m,
                _ => problems.push(key.clone(), "must be a map of top-level settings"),
            },
            ("routes", name) if !name.is_empty() => {
                routes.push(named(value, "name", name));
                origins.routes.push(key.clone());
            }
            ("upstreams", name) if !name.is_empty() => {
                upstreams.insert(Value::String(name.to_string()), value);
            }
            ("consumers", name) if !name.is_empty() => {
                consumers.push(named(value, "consumer", name));
                origins.consumers.push(key.clone());
            }
            ("certs", name) if !name.is_empty() => {
                certs.push(value);
                origins.certs.push(key.clone());
            }
            _ => problems.push(
                key.clone(),
                "not a gatehouse resource (expected settings, routes/<name>, upstreams/<name>, consumers/<name> or certs/<name>)",
            ),
        }
    }
    for key in NODE_LOCAL {
        top.remove(key);
        if let Some(v) = local.get(key) {
            top.insert(Value::String(key.into()), v.clone());
        }
    }
    if !routes.is_empty() {
        top.insert("routes".into(), Value::Sequence(routes));
    }
    if !upstreams.is_empty() {
        top.insert("upstreams".into(), Value::Mapping(upstreams));
    }
    if !consumers.is_empty() {
        let auth = child(&mut top, "auth");
        let keys = child(auth, "api_keys");
        keys.insert("keys".into(), Value::Sequence(consumers));
    }
    let tls = (!certs.is_empty() || local_tls_listen(local).is_some()).then(|| child(&mut top, "tls"));
    if let Some(tls) = tls {
        if !certs.is_empty() {
            tls.insert("certs".into(), Value::Sequence(certs));
        }
        // The TLS listen addresses are the node's, like the plain ones.
        tls.remove("listen");
        if let Some(listen) = local_tls_listen(local) {
            tls.insert("listen".into(), listen.clone());
        }
    }
    (Value::Mapping(top), origins)
}

fn local_tls_listen(local: &Mapping) -> Option<&Value> {
    local.get("tls")?.get("listen")
}

/// `key`'s value: YAML (JSON is YAML), `${VAR}` expanded as in a file (`lookup` `None`:
/// left as written).
fn parse_value(key: &str, bytes: &[u8], lookup: Option<Lookup>, problems: &mut Problems) -> Option<Value> {
    let Ok(text) = std::str::from_utf8(bytes) else {
        problems.push(key, "is not UTF-8 text");
        return None;
    };
    let Some(lookup) = lookup else {
        return serde_yaml::from_str::<Value>(text)
            .map_err(|e| problems.push(key, format!("is neither JSON nor YAML: {e}")))
            .ok();
    };
    let mut expansion = Problems::default();
    let expanded = env::expand(text, lookup, &mut expansion);
    if !expansion.is_empty() {
        let error = expansion.into_error(key);
        for p in error.problems {
            problems.push(key, p.message);
        }
        return None;
    }
    match serde_yaml::from_str::<Value>(&expanded) {
        Ok(v) => Some(v),
        Err(e) => {
            problems.push(key, format!("is neither JSON nor YAML: {e}"));
            None
        }
    }
}

/// `value` (a map) with `field` set to `name` unless it has one.
fn named(mut value: Value, field: &str, name: &str) -> Value {
    if let Value::Mapping(m) = &mut value {
        m.entry(field.into()).or_insert_with(|| Value::String(name.into()));
    }
    value
}

/// The map under `key` in `map`, created when missing (replaced when not a map).
fn child<'a>(map: &'a mut Mapping, key: &str) -> &'a mut Mapping {
    let entry = map.entry(key.into()).or_insert_with(|| Value::Mapping(Mapping::new()));
    if !entry.is_mapping() {
        *entry = Value::Mapping(Mapping::new());
    }
    match entry {
        Value::Mapping(m) => m,
        _ => unreachable!("just made a mapping"),
    }
}

/// Problem paths of the assembled document, told by etcd key.
fn by_key(mut error: ConfigError, origins: &Origins) -> ConfigError {
    for p in &mut error.problems {
        p.path = key_of(&p.path, origins);
    }
    error
}

fn key_of(path: &str, origins: &Origins) -> String {
    let indexed = |rest: &str, keys: &[String]| -> Option<String> {
        let (index, tail) = rest.split_once(']')?;
        let key = keys.get(index.parse::<usize>().ok()?)?;
        Some(format!(
            "{key}{}",
            tail.strip_prefix('.').map(|t| format!(": {t}")).unwrap_or_default()
        ))
    };
    if let Some(rest) = path.strip_prefix("routes[") {
        return indexed(rest, &origins.routes).unwrap_or_else(|| path.to_string());
    }
    if let Some(rest) = path.strip_prefix("auth.api_keys.keys[") {
        return indexed(rest, &origins.consumers).unwrap_or_else(|| path.to_string());
    }
    if let Some(rest) = path.strip_prefix("tls.certs[") {
        return indexed(rest, &origins.certs).unwrap_or_else(|| path.to_string());
    }
    if let Some(rest) = path.strip_prefix("upstreams.") {
        return match rest.split_once('.') {
            Some((name, tail)) => format!("upstreams/{name}: {tail}"),
            None => format!("upstreams/{rest}"),
        };
    }
    let root = path.split(['.', '[']).next().unwrap_or("");
    if path.is_empty()
        || path.contains('/')
        || NODE_LOCAL.contains(&root)
        || root.chars().any(|c| c.is_ascii_uppercase())
    {
        // Already a key, a node-local key (the bootstrap file's), or an environment variable.
        path.to_string()
    } else {
        format!("settings: {path}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn listing(entries: &[(&str, &str)]) -> Listing {
        Listing {
            revision: 42,
            entries: entries
                .iter()
                .map(|(k, v)| crate::etcd::Entry {
                    key: k.to_string(),
                    value: v.as_bytes().to_vec(),
                    mod_revision: 1,
                })
                .collect(),
        }
    }

    fn local(yaml: &str) -> Mapping {
        serde_yaml::from_str(yaml).unwrap()
    }

    #[test]
    fn resources_assemble_into_one_config_with_the_node_s_own_keys() {
        let l = listing(&[
            (
                "consumers/partner",
                r#"{"sha256": "c48a01f49fd0f2cc404bc3cbbc80e91457a3d41bb429a695243de4c61794155c"}"#,
            ),
            ("routes/api", "{ prefix: /api, upstream: users, auth: api_key }"),
            (
                "settings",
                "listen: [\"0.0.0.0:1\"]\nauth: { api_keys: { header: X-Key } }\nmax_body: 1MiB\n",
            ),
            ("upstreams/users", r#"{"targets": ["127.0.0.1:9001"]}"#),
        ]);
        let c = load(&l, &local("listen: [\"127.0.0.1:8081\"]\n"), "etcd test", &|_| None).unwrap();
        assert_eq!(c.revision, Some(42));
        assert_eq!(c.routes[0].name, "api");
        assert_eq!(
            c.server.listen[0].to_string(),
            "127.0.0.1:8081",
            "the node's listen wins"
        );
        let keys = c.security.api_keys.unwrap();
        assert_eq!(keys.keys[0].1, "partner");
        assert_eq!(keys.header.as_str(), "x-key");
    }

    #[test]
    fn problems_are_told_by_etcd_key() {
        let l = listing(&[
            ("routes/api", "{ prefix: /api, upstream: nowhere, methds: [GET] }"),
            ("routes/bad", "{ prefix: /b, upstream: users"),
            ("stray", "1"),
            ("upstreams/users", "{ targets: [\"127.0.0.1:1\"], retries: many }"),
        ]);
        let e = load(&l, &Mapping::new(), "etcd test", &|_| None).unwrap_err();
        let all: Vec<String> = e.problems.iter().map(|p| p.to_string()).collect();
        let has = |s: &str| all.iter().any(|p| p.contains(s));
        assert!(has("routes/bad: is neither JSON nor YAML"), "{all:#?}");
        assert!(has("stray: not a gatehouse resource"), "{all:#?}");
        assert!(!has("routes["), "{all:#?}");
    }
}
