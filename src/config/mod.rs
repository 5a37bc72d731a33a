//! Configuration: where it comes from, how it is parsed and validated.
//!
//! Load = read → `${VAR}` expansion → parse (unknown keys collected, not fatal) →
//! validate (every problem with its field path) → [`Config`]. The snapshot is built from
//! that; this module knows nothing of the running gateway and is the only one that knows
//! YAML or the seeds' `routes.json`.

pub mod acme;
mod cache;
pub mod client_auth;
pub use cache::defaults as cache_defaults;
pub use tls::read_cert_key;
pub mod client;
mod compression;
pub mod document;
mod env;
mod error;
pub mod fleet;
pub mod locate;
pub mod model;
pub mod ocsp;
mod raw;
mod security;
mod seed;
mod session_tickets;
mod suggest;
mod tls;
mod tls_policy;
mod traffic;
mod transform;
mod units;
mod validate;

pub use error::{ConfigError, Problem};
pub use model::Config;
pub use units::{parse_duration, parse_size};
pub use validate::resolve;

use error::Problems;
use raw::RawConfig;
use std::path::{Path, PathBuf};

/// Where the config comes from; kept by the reloader so that a reload reads the same place.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfigSource {
    /// A `gatehouse.yaml` file.
    File(PathBuf),
    /// No file: the seeds' variables (PORT, BACKEND_URL(S), ROUTES_CONFIG_PATH, ...).
    Environment,
    /// Fleet mode: the config under an etcd prefix; node-local keys from `bootstrap` (the
    /// file holding `config_source`, when there is one).
    Etcd {
        settings: crate::etcd::EtcdSettings,
        bootstrap: Option<PathBuf>,
    },
}

/// The file `gatehouse run` uses when given neither `-c` nor backend variables.
pub const DEFAULT_CONFIG_PATH: &str = "conf/gatehouse.yaml";

impl ConfigSource {
    /// `gatehouse run` without `-c`: environment mode when BACKEND_URL, BACKEND_URLS or
    /// ROUTES_CONFIG_PATH is set, else the file GATEHOUSE_CONFIG names (the container
    /// image's /etc/gatehouse/gatehouse.yaml), else the bundled `conf/gatehouse.yaml`.
    pub fn from_environment_or_default() -> Result<Self, ConfigError> {
        let lookup = |k: &str| std::env::var(k).ok();
        if seed::environment_mode_requested(&lookup) {
            return Ok(ConfigSource::Environment);
        }
        match lookup("GATEHOUSE_CONFIG").filter(|p| !p.is_empty()) {
            Some(path) => ConfigSource::for_file(PathBuf::from(path)),
            None => Ok(ConfigSource::File(PathBuf::from(DEFAULT_CONFIG_PATH))),
        }
    }

    pub fn load(&self) -> Result<Config, ConfigError> {
        let lookup = |k: &str| std::env::var(k).ok();
        match self {
            ConfigSource::File(path) if path == Path::new(DEFAULT_CONFIG_PATH) && !path.exists() => {
                Err(ConfigError::single(
                    DEFAULT_CONFIG_PATH,
                    "",
                    "no config: pass -c FILE, or set BACKEND_URL=http://host:port (BACKEND_URLS for several, \
                     ROUTES_CONFIG_PATH for a routes.json) to run on environment variables alone; \
                     run from the repository's root to use the bundled conf/gatehouse.yaml",
                ))
            }
            ConfigSource::File(path) => load_file(path, &lookup),
            ConfigSource::Environment => seed::load(&lookup),
            ConfigSource::Etcd { settings, .. } => {
                let listing = crate::etcd::list_blocking(settings)
                    .map_err(|e| ConfigError::unavailable(settings.describe(), e))?;
                self.load_listing(&listing)
            }
        }
    }

    /// Fleet mode: the config made of `listing` (the prefix read at one revision, by the
    /// caller's own client) and the bootstrap file.
    pub fn load_listing(&self, listing: &crate::etcd::Listing) -> Result<Config, ConfigError> {
        let ConfigSource::Etcd { settings, .. } = self else {
            return self.load();
        };
        let local = self.node_local()?;
        // The revision in the source names a refused change in logs and /admin/config.
        let source = format!("{} (revision {})", settings.describe(), listing.revision);
        fleet::load(listing, &local, &source, &|k: &str| std::env::var(k).ok())
    }

    /// `-c FILE`: the file, or fleet mode when the file holds `config_source`.
    pub fn for_file(path: PathBuf) -> Result<Self, ConfigError> {
        let source = path.display().to_string();
        let Ok(text) = std::fs::read_to_string(&path) else {
            return Ok(ConfigSource::File(path));
        };
        let lookup = |k: &str| std::env::var(k).ok();
        let mut problems = Problems::default();
        let expanded = env::expand(&text, lookup, &mut problems);
        let raw: Option<RawConfig> = serde_yaml::from_str::<serde_yaml::Value>(&expanded)
            .ok()
            .and_then(|v| serde_yaml::from_value(v).ok());
        let Some(etcd) = raw.and_then(|r| r.config_source).and_then(|c| c.etcd) else {
            return Ok(ConfigSource::File(path));
        };
        let settings = fleet::etcd_settings(&etcd, &source)?;
        Ok(ConfigSource::Etcd {
            settings,
            bootstrap: Some(path),
        })
    }

    /// The bootstrap file's document (node-local keys), or nothing.
    pub fn node_local(&self) -> Result<serde_yaml::Mapping, ConfigError> {
        let ConfigSource::Etcd {
            bootstrap: Some(path), ..
        } = self
        else {
            return Ok(serde_yaml::Mapping::new());
        };
        let source = path.display().to_string();
        let text =
            std::fs::read_to_string(path).map_err(|e| ConfigError::single(&source, "", format!("cannot read: {e}")))?;
        let mut problems = Problems::default();
        let expanded = env::expand(&text, |k: &str| std::env::var(k).ok(), &mut problems);
        if !problems.is_empty() {
            return Err(problems.into_error(&source));
        }
        match serde_yaml::from_str::<serde_yaml::Value>(&expanded) {
            Ok(serde_yaml::Value::Mapping(m)) => {
                let stray: Vec<String> = m
                    .keys()
                    .filter_map(|k| k.as_str())
                    .filter(|k| !fleet::NODE_LOCAL.contains(k) && *k != "tls")
                    .map(String::from)
                    .collect();
                if stray.is_empty() {
                    Ok(m)
                } else {
                    let mut p = Problems::default();
                    for key in stray {
                        p.push(
                            key,
                            "the fleet's config comes from etcd: only node-local keys belong in the bootstrap file (listen, admin, threads, pid_file, upgrade_sock, log_file, state_dir, reuse_port, drain_period, grace_period, shutdown_timeout, tls.listen, ...)",
                        );
                    }
                    Err(p.into_error(&source))
                }
            }
            Ok(_) => Err(ConfigError::single(&source, "", "expected a map of settings")),
            Err(e) => Err(ConfigError::single(&source, "", format!("invalid YAML: {e}"))),
        }
    }

    /// Where a fleet node keeps its last good config (known before the config is).
    pub fn state_dir(&self) -> PathBuf {
        let local = self.node_local().unwrap_or_default();
        let raw: RawConfig = serde_yaml::from_value(serde_yaml::Value::Mapping(local)).unwrap_or_default();
        validate::state_dir(&raw)
    }

    /// Whether this is the bundled default file (chosen because nothing else was given).
    pub fn is_default(&self) -> bool {
        matches!(self, ConfigSource::File(path) if path == Path::new(DEFAULT_CONFIG_PATH))
    }

    pub fn describe(&self) -> String {
        match self {
            ConfigSource::File(path) => path.display().to_string(),
            ConfigSource::Environment => "environment".to_string(),
            ConfigSource::Etcd { settings, .. } => settings.describe(),
        }
    }
}

fn load_file(path: &Path, lookup: &dyn Fn(&str) -> Option<String>) -> Result<Config, ConfigError> {
    let source = path.display().to_string();
    let text =
        std::fs::read_to_string(path).map_err(|e| ConfigError::single(&source, "", format!("cannot read: {e}")))?;
    parse_yaml(&text, &source, lookup)
}

/// The environment-mode config (the seeds' variables from `lookup`) with the routes.json
/// `text` in place of the file ROUTES_CONFIG_PATH names.
pub fn parse_routes_json(
    text: &str,
    source: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<Config, ConfigError> {
    seed::with_routes_json(text, source, lookup)
}

/// Parses and validates YAML `text` that came from `source`.
pub fn parse_yaml(text: &str, source: &str, lookup: &dyn Fn(&str) -> Option<String>) -> Result<Config, ConfigError> {
    let mut problems = Problems::default();
    let expanded = env::expand(text, lookup, &mut problems);
    if !problems.is_empty() {
        return Err(problems.into_error(source));
    }
    if expanded
        .lines()
        .all(|l| l.trim().is_empty() || l.trim_start().starts_with('#'))
    {
        return Err(ConfigError::single(source, "", "the file is empty"));
    }
    let mut unknown = Vec::new();
    let mut raw: RawConfig = serde_ignored::deserialize(serde_yaml::Deserializer::from_str(&expanded), |path| {
        unknown.push(field_path(&path))
    })
    .map_err(|e| ConfigError::single(source, "", format!("invalid YAML: {e}")))?;
    switch_overrides(&mut raw, lookup, &mut problems);
    let port = port_override(lookup, &mut problems);
    for path in unknown {
        let message = suggest::unknown_key(&path);
        problems.push(path, message);
    }
    located(
        finish(validate::validate(raw, source, port), problems, source),
        &expanded,
    )
}

/// Every problem of `result` with its line and column in `text`; a config that loads
/// keeps the locations for problems found when its snapshot is built.
pub(crate) fn located(result: Result<Config, ConfigError>, text: &str) -> Result<Config, ConfigError> {
    let locations = locate::Locations::of(text);
    match result {
        Ok(mut config) => {
            config.locations = std::sync::Arc::new(locations);
            Ok(config)
        }
        Err(e) => Err(e.locate(&locations)),
    }
}

/// `auth.jwt` from JWT_SECRET (and JWT_ISSUER) alone, as environment mode builds it:
/// what `gatehouse token` signs with when there is no config to read. `Ok(None)` when
/// JWT_SECRET is not set.
pub fn jwt_from_environment() -> Result<Option<model::JwtConfig>, ConfigError> {
    let lookup = |k: &str| std::env::var(k).ok();
    let raw = RawConfig {
        auth: seed::jwt_from_env(&lookup),
        ..Default::default()
    };
    if raw.auth.is_none() {
        return Ok(None);
    }
    let (mut problems, mut warnings) = (Problems::default(), Vec::new());
    let security = security::security(&raw, &mut problems, &mut warnings);
    problems.into_result("environment", security.jwt)
}

/// Merges problems found before validation with validation's own.
pub(crate) fn finish(
    validated: Result<Config, ConfigError>,
    early: Problems,
    source: &str,
) -> Result<Config, ConfigError> {
    match validated {
        Ok(config) if early.is_empty() => Ok(config),
        Ok(_) => Err(early.into_error(source)),
        Err(e) => {
            let mut all = early.into_error(source);
            all.problems.extend(e.problems);
            Err(all)
        }
    }
}

/// `PORT`, when set, replaces the port of every listener (the seeds' contract).
fn port_override(lookup: &dyn Fn(&str) -> Option<String>, problems: &mut Problems) -> Option<u16> {
    let value = lookup("PORT").filter(|v| !v.is_empty())?;
    match value.parse::<u16>() {
        Ok(port) if port > 0 => Some(port),
        _ => {
            problems.push("PORT", format!("\"{value}\" is not a port number"));
            None
        }
    }
}

/// The seeds' switches win over the file: `ENABLE_METRICS`, `ENABLE_CACHING` (true/false)
/// and `CACHE_TTL` (seconds, the default freshness of cached responses).
fn switch_overrides(raw: &mut RawConfig, lookup: &dyn Fn(&str) -> Option<String>, problems: &mut Problems) {
    if let Some(on) = switch(lookup, "ENABLE_METRICS", problems) {
        raw.metrics = Some(on);
    }
    if let Some(on) = switch(lookup, "ENABLE_CACHING", problems) {
        raw.cache.get_or_insert_with(Default::default).enabled = Some(on);
    }
    if let Some(ttl) = lookup("CACHE_TTL").filter(|v| !v.is_empty()) {
        match ttl.trim().parse::<u64>() {
            Ok(secs) => raw.cache.get_or_insert_with(Default::default).default_ttl = Some(format!("{secs}s")),
            Err(_) => problems.push("CACHE_TTL", format!("\"{ttl}\" is not a number of seconds")),
        }
    }
}

fn switch(lookup: &dyn Fn(&str) -> Option<String>, name: &str, problems: &mut Problems) -> Option<bool> {
    match lookup(name).as_deref().map(str::to_ascii_lowercase).as_deref() {
        None | Some("") => None,
        Some("true" | "1" | "yes") => Some(true),
        Some("false" | "0" | "no") => Some(false),
        Some(other) => {
            problems.push(name, format!("\"{other}\" is not true or false"));
            None
        }
    }
}

/// `routes[2].upstrem` from serde_ignored's path.
fn field_path(path: &serde_ignored::Path) -> String {
    use serde_ignored::Path as P;
    match path {
        P::Root => String::new(),
        P::Seq { parent, index } => format!("{}[{index}]", field_path(parent)),
        P::Map { parent, key } => {
            let parent = field_path(parent);
            if parent.is_empty() {
                key.clone()
            } else {
                format!("{parent}.{key}")
            }
        }
        P::Some { parent } | P::NewtypeStruct { parent } | P::NewtypeVariant { parent } => field_path(parent),
    }
}

#[cfg(test)]
mod tests;
