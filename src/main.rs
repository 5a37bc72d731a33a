//! The `gatehouse` command line: run, check, token, hash-key, demo-upstream.

#![forbid(unsafe_code)]

use clap::{Parser, Subcommand};
use gatehouse::auth::api_key::hash_key;
use gatehouse::auth::mint::{mint, MintOptions};
use gatehouse::config::{parse_duration, ConfigSource};
use gatehouse::ports;
use gatehouse::server::{self, ProcessOptions};
use gatehouse::snapshot::Snapshot;
use pingora::server::RunArgs;
use std::path::PathBuf;
use std::process::ExitCode;
use std::str::FromStr;

/// mimalloc instead of glibc's malloc: the request path allocates and frees many small
/// objects (header maps, buffers) and mimalloc's per-thread free lists make that cheaper
/// (instructions per request with each allocator in loadtest/README.md, "Instructions per
/// request"). Built with `no_thp`: mimalloc asks for no transparent huge pages, which
/// on a host with THP on `madvise` (Debian's and Ubuntu's default) made an idle gatehouse
/// 44 MiB of RSS, 18 MiB of it huge pages barely used; 29 MiB without
/// (loadtest/conn_memory.sh). On hosts with THP `always`, `MIMALLOC_ALLOW_THP=0` does the
/// same. Asked through `gatehouse::allocator`, which keeps small allocations off mimalloc's
/// aligned path.
#[global_allocator]
static ALLOCATOR: gatehouse::allocator::Mimalloc = gatehouse::allocator::Mimalloc;

#[derive(Parser)]
#[command(name = "gatehouse", version, about = "An edge API gateway on Pingora")]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// Fleet mode: the config lives in etcd at these endpoints (comma-separated); `-c`
    /// then names the node's bootstrap file (node-local keys). Also GATEHOUSE_ETCD.
    #[arg(long, global = true, value_name = "URLS")]
    etcd: Option<String>,
    /// The fleet's key prefix (default /gatehouse/). Also GATEHOUSE_ETCD_PREFIX.
    #[arg(long, global = true, value_name = "PREFIX")]
    etcd_prefix: Option<String>,
    /// CA file for https:// etcd endpoints (default: the system's). Also GATEHOUSE_ETCD_CA.
    #[arg(long, global = true, value_name = "FILE")]
    etcd_ca: Option<String>,
    /// Client certificate for etcd (`--client-cert-auth`). Also GATEHOUSE_ETCD_CERT.
    #[arg(long, global = true, value_name = "FILE", requires = "etcd_key")]
    etcd_cert: Option<String>,
    /// The client certificate's key. Also GATEHOUSE_ETCD_KEY.
    #[arg(long, global = true, value_name = "FILE", requires = "etcd_cert")]
    etcd_key: Option<String>,
}

/// How to reach etcd, from the command line; the rest from the environment
/// (GATEHOUSE_ETCD_USERNAME and GATEHOUSE_ETCD_PASSWORD: no password on a command line).
#[derive(Clone)]
struct EtcdFlags {
    urls: Option<String>,
    prefix: Option<String>,
    ca: Option<String>,
    cert: Option<String>,
    key: Option<String>,
}

#[derive(Subcommand)]
enum ConfigAction {
    /// Validate FILE as `check` does, then write the difference in one etcd transaction.
    Push { file: PathBuf },
    /// Print the fleet's config as one YAML document.
    Pull,
    /// What `push FILE` would change (+ new, ~ changed, - removed); exit 1 when anything.
    Diff { file: PathBuf },
}

#[derive(Subcommand)]
enum Command {
    /// Run the gateway. Without -c: environment mode when BACKEND_URL(S) or
    /// ROUTES_CONFIG_PATH is set, else conf/gatehouse.yaml.
    Run {
        #[arg(short = 'c', long = "config")]
        config: Option<PathBuf>,
        /// Run in the background (writes the pid file).
        #[arg(short, long)]
        daemon: bool,
        /// Take the listeners over from a running gatehouse (graceful upgrade).
        #[arg(short, long)]
        upgrade: bool,
        /// Reload when the config file or a file it names changes (as `watch: true`).
        #[arg(long)]
        watch: bool,
    },
    /// Parse, validate and build a config without serving; exit 1 with every problem.
    Check {
        #[arg(short = 'c', long = "config")]
        config: Option<PathBuf>,
    },
    /// Mint a development JWT with the configured secret (or --key), for curl and tests.
    Token {
        #[arg(short = 'c', long = "config")]
        config: Option<PathBuf>,
        #[arg(long, default_value = "dev-user")]
        sub: String,
        /// Repeatable; goes into the `scope` claim.
        #[arg(long = "scope")]
        scopes: Vec<String>,
        /// Repeatable; goes into the configured roles claim.
        #[arg(long = "role")]
        roles: Vec<String>,
        /// Lifetime (`15m`, `1h`); default JWT_EXPIRATION seconds, else 1h.
        #[arg(long)]
        ttl: Option<String>,
        /// PEM private key (RSA or EC) instead of the configured secret.
        #[arg(long)]
        key: Option<PathBuf>,
        /// Signing algorithm (default: the config's first, or RS256/ES256 for --key).
        #[arg(long)]
        alg: Option<String>,
        #[arg(long)]
        kid: Option<String>,
    },
    /// Preflight: every check before serving (config, ports, upstreams and their health
    /// paths, IdP, Redis, certificates, stop timing, descriptors, clock), one line each.
    /// Exit code: 0 ok, 1 warnings, 2 failures.
    Doctor {
        #[arg(short = 'c', long = "config")]
        config: Option<PathBuf>,
        /// The report as JSON.
        #[arg(long)]
        json: bool,
    },
    /// What the gateway would do with a request, without sending it: the route that wins
    /// and why the others did not, the steps that would run, the upstream request.
    Explain {
        method: String,
        /// `http://host/path?query` (or `/path` with a Host header).
        url: String,
        /// Request headers, as curl's: `-H 'Authorization: Bearer x'`; repeatable.
        #[arg(short = 'H', long = "header")]
        headers: Vec<String>,
        #[arg(short = 'c', long = "config")]
        config: Option<PathBuf>,
        /// The client address (IP lists, `key: ip` limits).
        #[arg(long)]
        client_ip: Option<std::net::IpAddr>,
        /// The explanation as JSON.
        #[arg(long)]
        json: bool,
    },
    /// The fleet's config in etcd (--etcd or GATEHOUSE_ETCD): push a file, pull it back,
    /// or see what a push would change.
    Config {
        #[command(subcommand)]
        action: ConfigAction,
    },
    /// Keep a service instance registered in etcd (--etcd) for `targets_from`, under a
    /// lease: removed when this process stops (SIGTERM) or, if it dies, when the lease expires.
    Register {
        #[arg(long)]
        service: String,
        /// The instance's `host:port`.
        #[arg(long)]
        addr: String,
        #[arg(long, default_value_t = 1)]
        weight: u16,
        #[arg(long, default_value = "10s")]
        ttl: String,
        /// Where services register (the upstream's `targets_from.etcd` is PREFIX/SERVICE/).
        #[arg(long, default_value = "/services/")]
        prefix: String,
    },
    /// Exit 0 when URL answers 2xx within 2 s, 1 otherwise: a HEALTHCHECK without curl.
    Health {
        /// Default: http://127.0.0.1:$PORT/health (PORT defaults to 8080).
        #[arg(long)]
        url: Option<String>,
    },
    /// Print the SHA-256 of an API key, as `auth.api_keys.keys[].sha256` wants it.
    HashKey { key: String },
    /// A small HTTP service to route to (quick start, tests, load tests).
    DemoUpstream {
        #[arg(long)]
        port: u16,
        #[arg(long, default_value = "127.0.0.1")]
        host: String,
        /// Reported in every answer (default: demo-PORT).
        #[arg(long)]
        name: Option<String>,
    },
}

/// Where the config comes from: etcd (`--etcd` or GATEHOUSE_ETCD; `-c` is then the
/// bootstrap file), a file (fleet mode too when it holds `config_source`), or the
/// environment / the bundled file.
fn config_source(config: Option<PathBuf>, flags: &EtcdFlags) -> Result<ConfigSource, String> {
    let env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
    if let Some(urls) = flags.urls.clone().or_else(|| env("GATEHOUSE_ETCD")) {
        let endpoints = urls
            .split(',')
            .map(|u| u.trim().to_string())
            .filter(|u| !u.is_empty())
            .collect();
        let prefix = flags.prefix.clone().or_else(|| env("GATEHOUSE_ETCD_PREFIX"));
        let mut settings = gatehouse::etcd::EtcdSettings::new(endpoints, prefix.as_deref());
        settings.tls = gatehouse::etcd::EtcdTls {
            ca_file: flags.ca.clone().or_else(|| env("GATEHOUSE_ETCD_CA")),
            cert_file: flags.cert.clone().or_else(|| env("GATEHOUSE_ETCD_CERT")),
            key_file: flags.key.clone().or_else(|| env("GATEHOUSE_ETCD_KEY")),
        };
        if settings.tls.cert_file.is_some() != settings.tls.key_file.is_some() {
            return Err("GATEHOUSE_ETCD_CERT and GATEHOUSE_ETCD_KEY go together".into());
        }
        settings.credentials = match (env("GATEHOUSE_ETCD_USERNAME"), env("GATEHOUSE_ETCD_PASSWORD")) {
            (Some(user), Some(password)) => Some((user, password)),
            (None, None) => None,
            _ => return Err("GATEHOUSE_ETCD_USERNAME and GATEHOUSE_ETCD_PASSWORD go together".into()),
        };
        return Ok(ConfigSource::Etcd {
            settings,
            bootstrap: config,
        });
    }
    match config {
        Some(path) => ConfigSource::for_file(path).map_err(|e| e.to_string()),
        None => ConfigSource::from_environment_or_default().map_err(|e| e.to_string()),
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    gatehouse::observe::logging::init();
    let flags = EtcdFlags {
        urls: cli.etcd,
        prefix: cli.etcd_prefix,
        ca: cli.etcd_ca,
        cert: cli.etcd_cert,
        key: cli.etcd_key,
    };
    let source = |config: Option<PathBuf>| config_source(config, &flags);
    let outcome = match cli.command {
        Command::Run {
            config,
            daemon,
            upgrade,
            watch,
        } => source(config).and_then(|s| run(s, ProcessOptions { daemon, upgrade, watch })),
        Command::Check { config } => source(config).and_then(check),
        Command::Token {
            config,
            sub,
            scopes,
            roles,
            ttl,
            key,
            alg,
            kid,
        } => source(config).and_then(|s| token(s, sub, scopes, roles, ttl, key, alg, kid)),
        Command::Doctor { config, json } => match source(config) {
            Ok(s) => return doctor(s, json),
            Err(e) => Err(e),
        },
        Command::Explain {
            method,
            url,
            headers,
            config,
            client_ip,
            json,
        } => source(config).and_then(|s| explain(s, method, url, headers, client_ip, json)),
        Command::Config { action } => return fleet_config(action, etcd_settings(&flags)),
        Command::Register {
            service,
            addr,
            weight,
            ttl,
            prefix,
        } => register(
            etcd_settings(&EtcdFlags {
                prefix: None,
                ..flags.clone()
            }),
            service,
            addr,
            weight,
            &ttl,
            &prefix,
        ),
        Command::Health { url } => {
            let url = url.unwrap_or_else(gatehouse::probe::default_url);
            gatehouse::probe::check(&url).map(|line| println!("{line}"))
        }
        Command::HashKey { key } => {
            println!("{}", hash_key(&key));
            Ok(())
        }
        Command::DemoUpstream { port, host, name } => {
            let name = name.unwrap_or_else(|| format!("demo-{port}"));
            gatehouse::demo::run(&format!("{host}:{port}"), &name);
            Ok(())
        }
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("{message}");
            ExitCode::FAILURE
        }
    }
}

fn run(source: ConfigSource, options: ProcessOptions) -> Result<(), String> {
    let (server, running) = server::build(source, options).map_err(|e| e.to_string())?;
    let s = running.snapshot.load();
    log::info!(
        "gatehouse {} serving {} ({} routes, {} upstreams)",
        env!("CARGO_PKG_VERSION"),
        s.source,
        s.routes.len(),
        s.upstreams.len()
    );
    let urls: Vec<String> = ports::listeners(&s.server)
        .iter()
        .map(|l| {
            let scheme = if l.role == "tls.listen" { "https" } else { "http" };
            format!("{} {scheme}://{}", l.role, l.addr)
        })
        .collect();
    log::info!("listening on {}", urls.join(", "));
    drop(s);
    server.run(RunArgs {
        shutdown_signal: Box::new(running.signals),
    });
    if let Some(spans) = running.spans {
        spans.shutdown();
    }
    // Last: every line logged so far, the shutdown's included, is written before exit.
    gatehouse::observe::log_writer::drain();
    Ok(())
}

fn check(source: ConfigSource) -> Result<(), String> {
    let s = source
        .load()
        .and_then(|c| Snapshot::build(c, None))
        .map_err(|e| e.to_string())?;
    for w in &s.warnings {
        eprintln!("warning: {}: {w}", s.source);
    }
    // A warning only: the address may be free by the time the gateway starts.
    for busy in ports::unavailable(&ports::listeners(&s.server), s.server.reuse_port) {
        eprintln!("warning: {}: {}: {busy}", s.source, busy.listener.role);
    }
    println!(
        "{}: OK ({} routes, {} upstreams)",
        s.source,
        s.routes.len(),
        s.upstreams.len()
    );
    Ok(())
}

/// `--etcd`/`--etcd-prefix`, else GATEHOUSE_ETCD/GATEHOUSE_ETCD_PREFIX.
fn etcd_settings(flags: &EtcdFlags) -> Result<gatehouse::etcd::EtcdSettings, String> {
    match config_source(None, flags)? {
        ConfigSource::Etcd { settings, .. } => Ok(settings),
        _ => Err("no etcd: pass --etcd http://host:2379 (or set GATEHOUSE_ETCD)".into()),
    }
}

fn fleet_config(action: ConfigAction, settings: Result<gatehouse::etcd::EtcdSettings, String>) -> ExitCode {
    let fail = |e: String| {
        eprintln!("{e}");
        ExitCode::FAILURE
    };
    let settings = match settings {
        Ok(s) => s,
        Err(e) => return fail(e),
    };
    let show = |plan: &gatehouse::gitops::Plan| {
        for line in &plan.lines {
            println!("{line}");
        }
        if !plan.left_out.is_empty() {
            eprintln!(
                "node-local keys, not pushed (each node's bootstrap file has them): {}",
                plan.left_out.join(", ")
            );
        }
    };
    match action {
        ConfigAction::Push { file } => match gatehouse::gitops::push(&file, &settings) {
            Ok((Some(revision), plan)) => {
                show(&plan);
                println!("{}: written at revision {revision}", settings.describe());
                ExitCode::SUCCESS
            }
            Ok((None, plan)) => {
                show(&plan);
                println!("{}: already up to date", settings.describe());
                ExitCode::SUCCESS
            }
            Err(e) => fail(e),
        },
        ConfigAction::Diff { file } => match gatehouse::gitops::diff(&file, &settings) {
            Ok(plan) => {
                show(&plan);
                ExitCode::from(u8::from(!plan.lines.is_empty()))
            }
            Err(e) => fail(e),
        },
        ConfigAction::Pull => match gatehouse::gitops::pull(&settings) {
            Ok((revision, yaml)) => {
                let text = format!("# {} at revision {revision}\n{yaml}", settings.describe());
                let _ = std::io::Write::write_all(&mut std::io::stdout(), text.as_bytes());
                ExitCode::SUCCESS
            }
            Err(e) => fail(e),
        },
    }
}

fn register(
    etcd: Result<gatehouse::etcd::EtcdSettings, String>,
    service: String,
    addr: String,
    weight: u16,
    ttl: &str,
    prefix: &str,
) -> Result<(), String> {
    let mut etcd = etcd?;
    etcd.prefix = gatehouse::etcd::EtcdSettings::new(Vec::new(), Some(prefix)).prefix;
    if service.is_empty() || service.contains('/') {
        return Err("--service: a name without `/`".into());
    }
    let registration = gatehouse::register::Registration {
        etcd,
        service,
        addr,
        weight: weight.clamp(1, 100),
        ttl: parse_duration(ttl)?,
    };
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?
        .block_on(gatehouse::register::run(registration))
}

fn doctor(source: ConfigSource, as_json: bool) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("cannot start the checks: {e}");
            return ExitCode::from(2);
        }
    };
    let findings = runtime.block_on(gatehouse::doctor::run(&source));
    let worst = gatehouse::doctor::worst(&findings);
    let text = if as_json {
        let report = serde_json::json!({ "checks": findings, "worst": worst });
        serde_json::to_string_pretty(&report).unwrap_or_default() + "\n"
    } else {
        gatehouse::doctor::render(&findings)
    };
    let _ = std::io::Write::write_all(&mut std::io::stdout(), text.as_bytes());
    ExitCode::from(worst.exit_code())
}

fn explain(
    source: ConfigSource,
    method: String,
    url: String,
    headers: Vec<String>,
    client_ip: Option<std::net::IpAddr>,
    as_json: bool,
) -> Result<(), String> {
    let snapshot = source
        .load()
        .and_then(|c| Snapshot::build(c, None))
        .map_err(|e| e.to_string())?;
    let headers = headers
        .iter()
        .map(|h| {
            h.split_once(':')
                .map(|(n, v)| (n.trim().to_string(), v.trim().to_string()))
                .ok_or_else(|| format!("-H \"{h}\": expected 'Name: value'"))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let question = gatehouse::explain::Question {
        method,
        url,
        headers,
        client_ip,
    };
    let answer = gatehouse::explain::explain(std::sync::Arc::new(snapshot), &question)?;
    let text = if as_json {
        serde_json::to_string_pretty(&answer).map_err(|e| e.to_string())? + "\n"
    } else {
        gatehouse::explain::render(&answer)
            + "\n(from the config alone: a running gateway's POST /admin/explain adds live target health)\n"
    };
    // A closed pipe (`| head`) is not an error worth a panic.
    let _ = std::io::Write::write_all(&mut std::io::stdout(), text.as_bytes());
    Ok(())
}

#[allow(clippy::too_many_arguments)]
fn token(
    source: ConfigSource,
    subject: String,
    scopes: Vec<String>,
    roles: Vec<String>,
    ttl: Option<String>,
    key: Option<PathBuf>,
    alg: Option<String>,
    kid: Option<String>,
) -> Result<(), String> {
    // With --key the config is optional: a missing or broken one only loses iss/aud.
    // Without -c, when there is no config to read, JWT_SECRET alone is enough (as
    // environment mode would verify with it).
    let config = match source.load() {
        Ok(c) => c.security.jwt,
        Err(e) if source.is_default() && std::env::var_os("JWT_SECRET").is_some() => {
            log::debug!("no config ({e}): signing with JWT_SECRET");
            gatehouse::config::jwt_from_environment().map_err(|e| e.to_string())?
        }
        Err(e) if key.is_some() => {
            log::debug!("no config for the token's claims: {e}");
            None
        }
        Err(e) => return Err(e.to_string()),
    };
    let ttl = match ttl.or_else(|| std::env::var("JWT_EXPIRATION").ok().map(|s| format!("{s}s"))) {
        Some(t) => parse_duration(&t)?,
        None => std::time::Duration::from_secs(3600),
    };
    let private_key = key
        .map(|path| std::fs::read(&path).map_err(|e| format!("{}: {e}", path.display())))
        .transpose()?;
    let algorithm = alg
        .map(|a| jsonwebtoken::Algorithm::from_str(&a).map_err(|_| format!("unknown algorithm {a}")))
        .transpose()?;
    let options = MintOptions {
        subject,
        scopes,
        roles,
        ttl,
        private_key,
        algorithm,
        kid,
    };
    println!("{}", mint(config.as_ref(), &options)?);
    Ok(())
}
