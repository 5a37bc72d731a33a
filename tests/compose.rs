//! deploy/compose/: the compose stack is checked by the tools that read it
//! (deploy/compose/validate.sh: the compose spec's JSON schema, podman-compose, `gatehouse
//! check`, promtool), and its parts are checked against each other here: the ports the
//! compose file publishes and health-checks are the ones its gatehouse configs listen on,
//! the demo services are on the ports the upstreams name, Prometheus scrapes gatehouse's
//! admin port with the token, and what Prometheus and Grafana mount are the rules and the
//! dashboard that tests/deploy.rs tests.
//!
//! Needs podman-compose, prometheus (promtool), etcd-server (validate.sh); without them
//! the test fails, naming the package.

mod common;

use common::*;
use serde_yaml::Value;
use std::path::{Path, PathBuf};
use std::process::Command;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn compose_dir() -> PathBuf {
    root().join("deploy/compose")
}

fn yaml(path: &Path) -> Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_yaml::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn compose() -> Value {
    yaml(&compose_dir().join("docker-compose.yml"))
}

fn service<'a>(compose: &'a Value, name: &str) -> &'a Value {
    let s = &compose["services"][name];
    assert!(s.is_mapping(), "no service {name} in docker-compose.yml");
    s
}

fn strings(v: &Value) -> Vec<String> {
    v.as_sequence()
        .unwrap_or_else(|| panic!("not a list: {v:?}"))
        .iter()
        .map(|x| match x {
            Value::String(s) => s.clone(),
            Value::Number(n) => n.to_string(),
            other => panic!("not a string: {other:?}"),
        })
        .collect()
}

/// The value after `flag` in a command line.
fn arg(command: &[String], flag: &str) -> String {
    let i = command
        .iter()
        .position(|a| a == flag)
        .unwrap_or_else(|| panic!("no {flag} in {command:?}"));
    command[i + 1].clone()
}

fn port_of(addr: &str) -> u16 {
    addr.rsplit(':')
        .next()
        .unwrap()
        .trim_end_matches('/')
        .parse()
        .unwrap_or_else(|_| panic!("no port in {addr}"))
}

/// `http://host:port/path` → (host, port, path).
fn url_parts(url: &str) -> (String, u16, String) {
    let rest = url
        .strip_prefix("http://")
        .unwrap_or_else(|| panic!("not http://: {url}"));
    let (authority, path) = rest
        .split_once('/')
        .map(|(a, p)| (a, format!("/{p}")))
        .unwrap_or((rest, "/".into()));
    let (host, port) = authority.rsplit_once(':').unwrap_or_else(|| panic!("no port in {url}"));
    (host.to_string(), port.parse().unwrap(), path)
}

/// The container ports a service publishes ("host_ip:host:container" or "host:container").
fn published(svc: &Value) -> Vec<u16> {
    strings(&svc["ports"]).iter().map(|p| port_of(p)).collect()
}

/// The URL a `gatehouse health --url URL` healthcheck asks.
fn health_url(svc: &Value) -> String {
    let test = strings(&svc["healthcheck"]["test"]);
    assert_eq!(&test[..3], ["CMD", "/usr/local/bin/gatehouse", "health"], "{test:?}");
    arg(&test, "--url")
}

/// The host file (canonical) mounted at `target` in `svc`.
fn mounted_at(svc: &Value, target: &str) -> PathBuf {
    for v in strings(&svc["volumes"]) {
        let parts: Vec<&str> = v.split(':').collect();
        if parts.get(1) == Some(&target) {
            let host = compose_dir().join(parts[0]);
            return host
                .canonicalize()
                .unwrap_or_else(|e| panic!("{}: {e}", host.display()));
        }
    }
    panic!("nothing is mounted at {target}: {:?}", svc["volumes"]);
}

fn canonical(relative: &str) -> PathBuf {
    root().join(relative).canonicalize().unwrap()
}

/// The service's whole command line: entrypoint, then command.
fn command_line(svc: &Value) -> Vec<String> {
    let mut line = strings(&svc["entrypoint"]);
    line.extend(strings(&svc["command"]));
    line
}

#[test]
fn validate_sh_passes() {
    require_tool("podman-compose", "podman-compose");
    require_tool("promtool", "prometheus");
    require_tool("etcd", "etcd-server");
    require_tool("python3", "python3");
    let out = Command::new("bash")
        .arg(compose_dir().join("validate.sh"))
        .arg(BIN)
        .output()
        .expect("run validate.sh");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    println!("{text}");
    assert!(out.status.success(), "deploy/compose/validate.sh failed:\n{text}");
    for check in [
        "compose spec schema",
        "podman-compose",
        "gatehouse check gatehouse.yaml",
        "bootstrap.yaml",
        "promtool",
        "grafana",
    ] {
        assert!(
            text.lines().any(|l| l.starts_with("ok") && l.contains(check)),
            "no passed check for {check}:\n{text}"
        );
    }
}

/// deploy/compose/rehearse.sh: every service but Grafana run from its compose definition
/// (command, environment, mounts, tmpfs, user, healthcheck, depends_on conditions) with
/// this machine's binaries in a network and mount namespace of its own, and traffic
/// through it: routes, the global limit in Redis, the admin token, Prometheus scraping
/// with the rules loaded, then the fleet profile serving from etcd.
#[test]
fn the_stack_rehearsed_without_containers_serves_limits_and_is_scraped() {
    for (tool, package) in [
        ("unshare", "util-linux"),
        ("setpriv", "util-linux"),
        ("redis-server", "redis-server"),
        ("redis-cli", "redis-server"),
        ("prometheus", "prometheus"),
        ("etcd", "etcd-server"),
        ("etcdctl", "etcd-client"),
        ("curl", "curl"),
        ("wget", "wget"),
        ("python3", "python3"),
    ] {
        require_tool(tool, package);
    }
    let out = Command::new("bash")
        .arg(compose_dir().join("rehearse.sh"))
        .arg(BIN)
        .output()
        .expect("run rehearse.sh");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    println!("{text}");
    assert!(out.status.success(), "deploy/compose/rehearse.sh failed:\n{text}");
    assert!(text.contains("rehearsal passed"), "{text}");
}

#[test]
fn the_compose_file_is_current_spec_with_health_checks_and_conditions() {
    let c = compose();
    assert!(c.get("version").is_none(), "the obsolete `version:` key");
    let services = c["services"].as_mapping().unwrap();
    for (name, svc) in services {
        let name = name.as_str().unwrap();
        let one_shot = svc["restart"].as_str() == Some("no");
        assert!(
            one_shot || svc["healthcheck"]["test"].is_sequence(),
            "{name} has no healthcheck"
        );
        if let Some(deps) = svc["depends_on"].as_mapping() {
            for (dep, how) in deps {
                let dep = dep.as_str().unwrap();
                let condition = how["condition"]
                    .as_str()
                    .unwrap_or_else(|| panic!("{name} → {dep}: no condition"));
                let target = service(&c, dep);
                match condition {
                    "service_healthy" => assert!(
                        target["healthcheck"].is_mapping(),
                        "{name} waits for {dep}'s health, which has no check"
                    ),
                    "service_completed_successfully" => {
                        assert_eq!(target["restart"].as_str(), Some("no"), "{dep} is not a one-shot")
                    }
                    other => panic!("{name} → {dep}: condition {other}"),
                }
                // A service of the default profile never waits for one of a profile.
                if svc["profiles"].is_null() {
                    assert!(
                        target["profiles"].is_null(),
                        "{name} (no profile) depends on {dep}, which has one"
                    );
                }
            }
        }
    }
    // Every service run from the gatehouse image: the one built, the binary at the path
    // the Dockerfile puts it, and never pulled.
    for name in ["gatehouse", "users", "orders", "fleet-push", "gatehouse-fleet"] {
        let svc = service(&c, name);
        assert_eq!(svc["image"].as_str(), Some("gatehouse:latest"), "{name}");
        assert_eq!(strings(&svc["entrypoint"]), ["/usr/local/bin/gatehouse"], "{name}");
        let policy = svc["pull_policy"].as_str();
        if name == "gatehouse" {
            assert_eq!(svc["build"]["context"].as_str(), Some("../.."));
            assert_eq!(policy, Some("build"));
        } else {
            assert!(svc["build"].is_null());
            assert_eq!(
                policy,
                Some("never"),
                "{name} would look for gatehouse:latest on a registry"
            );
        }
    }
    for name in ["etcd", "fleet-push", "gatehouse-fleet"] {
        assert_eq!(strings(&service(&c, name)["profiles"]), ["fleet"], "{name}");
    }
}

#[test]
fn gatehouse_listens_where_the_compose_file_publishes_and_checks() {
    let c = compose();
    for (name, file) in [("gatehouse", "gatehouse.yaml"), ("gatehouse-fleet", "bootstrap.yaml")] {
        let svc = service(&c, name);
        let cmd = command_line(svc);
        let config_path = arg(&cmd, "-c");
        assert_eq!(
            mounted_at(svc, &config_path),
            compose_dir().join(file).canonicalize().unwrap()
        );
        let config = yaml(&compose_dir().join(file));
        let listen = strings(&config["listen"]);
        let admin = config["admin"]["listen"].as_str().unwrap();
        assert!(
            admin.starts_with("0.0.0.0:"),
            "{file}: Prometheus reaches the admin listener from another container"
        );
        assert_eq!(
            config["admin"]["token"].as_str(),
            Some("${ADMIN_TOKEN}"),
            "{file}: a non-loopback admin needs the token"
        );
        assert!(
            svc["environment"]["ADMIN_TOKEN"]
                .as_str()
                .unwrap()
                .starts_with("${ADMIN_TOKEN:?"),
            "{name}: ADMIN_TOKEN required"
        );
        let ports = published(svc);
        assert_eq!(
            ports,
            vec![port_of(&listen[0]), port_of(admin)],
            "{name} publishes {ports:?}; {file} listens on {listen:?} and admin {admin}"
        );
        // The admin port only on the host's loopback.
        let admin_mapping = strings(&svc["ports"])[1].clone();
        assert!(admin_mapping.starts_with("127.0.0.1:"), "{name}: {admin_mapping}");
        let (host, port, path) = url_parts(&health_url(svc));
        assert_eq!(
            (host.as_str(), port, path.as_str()),
            ("127.0.0.1", port_of(admin), "/ready"),
            "{name}: /ready is an admin endpoint"
        );
    }
}

#[test]
fn the_demo_services_are_where_the_upstreams_point() {
    let c = compose();
    let config = yaml(&compose_dir().join("gatehouse.yaml"));
    for name in ["users", "orders"] {
        let svc = service(&c, name);
        let cmd = command_line(svc);
        assert_eq!(cmd[1], "demo-upstream");
        assert_eq!(
            arg(&cmd, "--host"),
            "0.0.0.0",
            "{name}: reachable from other containers"
        );
        assert_eq!(arg(&cmd, "--name"), name);
        let port: u16 = arg(&cmd, "--port").parse().unwrap();
        assert_eq!(strings(&svc["expose"]), [port.to_string()]);
        let upstream = &config["upstreams"][name];
        assert_eq!(
            strings(&upstream["targets"]),
            [format!("{name}:{port}")],
            "gatehouse.yaml's upstream {name}"
        );
        let (host, checked, path) = url_parts(&health_url(svc));
        assert_eq!((host.as_str(), checked), ("127.0.0.1", port), "{name}'s healthcheck");
        assert_eq!(
            upstream["health_check"]["path"].as_str(),
            Some(path.as_str()),
            "gatehouse checks what compose checks"
        );
        assert_eq!(path, "/health", "the demo service's health path");
    }
    // Redis: the service gatehouse.yaml names, on the port it names, and a global limit to use it.
    let (host, port, _) = url_parts(&config["redis"]["url"].as_str().unwrap().replace("redis://", "http://"));
    assert_eq!(strings(&service(&c, &host)["expose"]), [port.to_string()]);
    assert_eq!(
        strings(&service(&c, &host)["healthcheck"]["test"]),
        ["CMD", "redis-cli", "ping"]
    );
    let routes = config["routes"].as_sequence().unwrap();
    assert!(
        routes
            .iter()
            .any(|r| r["rate_limit"]["scope"].as_str() == Some("global")),
        "no route with a global rate limit"
    );
}

#[test]
fn prometheus_scrapes_the_admin_port_with_the_rules_deploy_tests() {
    let c = compose();
    let prom = service(&c, "prometheus");
    let cmd = strings(&prom["command"]);
    let config_path = cmd
        .iter()
        .find_map(|a| a.strip_prefix("--config.file="))
        .expect("--config.file")
        .to_string();
    assert_eq!(
        mounted_at(prom, &config_path),
        compose_dir().join("prometheus.yml").canonicalize().unwrap()
    );
    let config = yaml(&compose_dir().join("prometheus.yml"));
    let job = &config["scrape_configs"][0];
    let targets = strings(&job["static_configs"][0]["targets"]);
    let gatehouse = yaml(&compose_dir().join("gatehouse.yaml"));
    let admin_port = port_of(gatehouse["admin"]["listen"].as_str().unwrap());
    assert_eq!(targets, [format!("gatehouse:{admin_port}")]);
    service(&c, "gatehouse");
    assert_eq!(job["metrics_path"].as_str(), Some("/metrics"));
    // The token: the file the entrypoint writes from ADMIN_TOKEN, on a tmpfs.
    let credentials = job["authorization"]["credentials_file"].as_str().unwrap();
    let entrypoint = strings(&prom["entrypoint"]).join(" ");
    assert!(
        entrypoint.contains(&format!("\"$$ADMIN_TOKEN\" > {credentials}")),
        "{entrypoint}"
    );
    let dir = Path::new(credentials).parent().unwrap().to_str().unwrap().to_string();
    assert_eq!(strings(&prom["tmpfs"]), [dir]);
    assert!(prom["environment"]["ADMIN_TOKEN"]
        .as_str()
        .unwrap()
        .starts_with("${ADMIN_TOKEN:?"));

    // The rules: deploy/gatehouse.rules.yml itself, beside the config in the container.
    let rules = strings(&config["rule_files"]);
    assert_eq!(rules.len(), 1);
    let in_container = Path::new(&config_path).parent().unwrap().join(&rules[0]);
    assert_eq!(
        mounted_at(prom, in_container.to_str().unwrap()),
        canonical("deploy/gatehouse.rules.yml")
    );

    // Everything else as deploy/prometheus.yml (which tests/deploy.rs checks) has it.
    let reference = yaml(&root().join("deploy/prometheus.yml"));
    assert_eq!(config["global"], reference["global"]);
    assert_eq!(config["rule_files"], reference["rule_files"]);
    let reference_job = &reference["scrape_configs"][0];
    assert_eq!(job["job_name"], reference_job["job_name"]);
    assert_eq!(job["metrics_path"], reference_job["metrics_path"]);
}

#[test]
fn grafana_shows_the_dashboard_deploy_tests_from_the_stacks_prometheus() {
    let c = compose();
    let grafana = service(&c, "grafana");
    let entrypoint_script = std::fs::read_to_string(compose_dir().join("grafana/entrypoint.sh")).unwrap();
    let default = |var: &str| -> String {
        let start = entrypoint_script
            .find(&format!("${{{var}:-"))
            .unwrap_or_else(|| panic!("no {var} in entrypoint.sh"));
        let rest = &entrypoint_script[start + var.len() + 4..];
        rest[..rest.find('}').unwrap()].to_string()
    };
    // The dashboard mounted where entrypoint.sh reads it is deploy/grafana's, and the
    // script mounted is entrypoint.sh, run by the entrypoint.
    assert_eq!(
        mounted_at(grafana, &default("GATEHOUSE_DASHBOARD")),
        canonical("deploy/grafana/gatehouse-dashboard.json")
    );
    let entrypoint = strings(&grafana["entrypoint"]);
    assert_eq!(entrypoint[0], "/bin/sh");
    assert_eq!(
        mounted_at(grafana, &entrypoint[1]),
        compose_dir().join("grafana/entrypoint.sh").canonicalize().unwrap()
    );
    // Where it writes the copy is where the provider reads and the home dashboard is.
    let provider = yaml(&compose_dir().join("grafana/provisioning/dashboards/gatehouse.yml"));
    let dir = default("DASHBOARD_DIR");
    assert_eq!(provider["providers"][0]["options"]["path"].as_str(), Some(dir.as_str()));
    assert_eq!(
        grafana["environment"]["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"].as_str(),
        Some(format!("{dir}/gatehouse-dashboard.json").as_str())
    );
    // The data source: the uid the copy gets, the stack's Prometheus on its port.
    let datasource = &yaml(&compose_dir().join("grafana/provisioning/datasources/prometheus.yml"))["datasources"][0];
    assert_eq!(datasource["uid"].as_str(), Some(default("DATASOURCE_UID").as_str()));
    assert_eq!(datasource["type"].as_str(), Some("prometheus"));
    let (host, port, _) = url_parts(datasource["url"].as_str().unwrap());
    assert_eq!(
        published(service(&c, &host)),
        [port],
        "Grafana's data source is {host}:{port}"
    );
    // The provisioning directories mounted are these.
    for kind in ["datasources", "dashboards"] {
        assert_eq!(
            mounted_at(grafana, &format!("/etc/grafana/provisioning/{kind}")),
            compose_dir()
                .join(format!("grafana/provisioning/{kind}"))
                .canonicalize()
                .unwrap()
        );
    }
}

#[test]
fn the_fleet_node_reads_the_config_fleet_push_writes() {
    let c = compose();
    let etcd = service(&c, "etcd");
    let etcd_cmd = strings(&etcd["command"]);
    let advertised = etcd_cmd
        .iter()
        .find_map(|a| a.strip_prefix("--advertise-client-urls="))
        .unwrap()
        .to_string();
    let (etcd_host, etcd_port, _) = url_parts(&advertised);
    assert_eq!(etcd_host, "etcd");
    assert_eq!(strings(&etcd["expose"]), [etcd_port.to_string()]);

    let push = service(&c, "fleet-push");
    let push_cmd = command_line(push);
    assert_eq!(&push_cmd[1..3], ["config", "push"]);
    assert_eq!(arg(&push_cmd, "--etcd"), advertised);
    // It pushes the same file the single node serves.
    assert_eq!(
        mounted_at(push, &push_cmd[3]),
        compose_dir().join("gatehouse.yaml").canonicalize().unwrap()
    );

    let bootstrap = yaml(&compose_dir().join("bootstrap.yaml"));
    let etcd_source = &bootstrap["config_source"]["etcd"];
    assert_eq!(strings(&etcd_source["endpoints"]), [advertised]);
    assert_eq!(
        etcd_source["prefix"].as_str(),
        Some("/gatehouse/"),
        "config push's default prefix"
    );
    // state_dir is on the tmpfs the service mounts.
    let node = service(&c, "gatehouse-fleet");
    assert_eq!(strings(&node["tmpfs"]), [bootstrap["state_dir"].as_str().unwrap()]);
}
