//! The `gatehouse` command line: run, check, demo-upstream.

#![forbid(unsafe_code)]

use clap::{Parser, Subcommand};
use gatehouse::config::ConfigSource;
use gatehouse::server::{self, ProcessOptions};
use gatehouse::snapshot::Snapshot;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser)]
#[command(name = "gatehouse", version, about = "An edge API gateway on Pingora")]
struct Cli {
    #[command(subcommand)]
    command: Command,
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
    },
    /// Parse, validate and build a config without serving; exit 1 with every problem.
    Check {
        #[arg(short = 'c', long = "config")]
        config: Option<PathBuf>,
    },
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

fn source(config: Option<PathBuf>) -> ConfigSource {
    config.map_or_else(ConfigSource::from_environment_or_default, ConfigSource::File)
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    gatehouse::observe::logging::init();
    match cli.command {
        Command::Run {
            config,
            daemon,
            upgrade,
        } => run(source(config), ProcessOptions { daemon, upgrade }),
        Command::Check { config } => check(source(config)),
        Command::DemoUpstream { port, host, name } => {
            let name = name.unwrap_or_else(|| format!("demo-{port}"));
            gatehouse::demo::run(&format!("{host}:{port}"), &name);
            ExitCode::SUCCESS
        }
    }
}

fn run(source: ConfigSource, options: ProcessOptions) -> ExitCode {
    match server::build(source, options) {
        Ok((server, snapshot)) => {
            let s = snapshot.load();
            log::info!(
                "gatehouse {} serving {} ({} routes, {} upstreams)",
                env!("CARGO_PKG_VERSION"),
                s.source,
                s.routes.len(),
                s.upstreams.len()
            );
            drop(s);
            server.run(Default::default());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{e}");
            ExitCode::FAILURE
        }
    }
}

fn check(source: ConfigSource) -> ExitCode {
    match source.load().and_then(|c| Snapshot::build(c, None)) {
        Ok(s) => {
            for w in &s.warnings {
                eprintln!("warning: {}: {w}", s.source);
            }
            println!(
                "{}: OK ({} routes, {} upstreams)",
                s.source,
                s.routes.len(),
                s.upstreams.len()
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{e}");
            ExitCode::FAILURE
        }
    }
}
