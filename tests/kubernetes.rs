//! deploy/kubernetes/ agrees with the binary. `deploy/kubernetes/validate.sh` renders the
//! base and the fleet overlay with kustomize, validates every object against the
//! Kubernetes schemas and runs `gatehouse check` (it must pass); these tests then read
//! what it rendered and hold the manifests to what gatehouse does:
//! - the container ports are the config's listen and admin ports, and every Service,
//!   NetworkPolicy, probe and ServiceMonitor port names one of them;
//! - `-c` names a file of the ConfigMap mounted at that directory;
//! - every `${VAR}` the config needs is in the pod's environment;
//! - the grace period covers the preStop sleep and the stop gatehouse itself reports;
//! - the pod, run as its securityContext says (uid 65532, no capabilities, no new
//!   privileges, a read-only root with the emptyDir the only writable directory),
//!   answers its probe paths, serves /metrics to the ServiceMonitor's token, and stops
//!   on SIGTERM within that grace period; a fleet node does the same from its bootstrap
//!   file with the base's config in a real etcd;
//! - the pod runs the image as the Dockerfile builds it (user, entrypoint, ports, config);
//! - a ConfigMap edited in place (the kubelet's `..data` swap) reaches the running pod
//!   through `watch: true`, and a bad version is refused while it keeps serving.
//!
//! Needs what validate.sh needs (python3, etcd-server, etcd-client, PyPI), and
//! util-linux's `unshare` and `setpriv` and root, to run the pod's sandbox.

mod common;

use common::etcd::EtcdServer;
use common::*;
use serde::Deserialize;
use serde_yaml::Value;
use std::collections::BTreeSet;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

// === what validate.sh rendered ===

/// validate.sh's output directory: base.yaml, fleet.yaml and the files of their
/// ConfigMaps (gatehouse.yaml, bootstrap.yaml).
struct Rendered {
    dir: tempfile::TempDir,
    base: Vec<Value>,
    fleet: Vec<Value>,
}

impl Rendered {
    fn file(&self, name: &str) -> String {
        std::fs::read_to_string(self.dir.path().join(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
    }
}

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

/// Runs validate.sh once for all the tests of this file (with this build's binary) and
/// fails every one of them when it fails.
fn rendered() -> &'static Rendered {
    static RENDERED: OnceLock<Result<Rendered, String>> = OnceLock::new();
    let result = RENDERED.get_or_init(|| {
        require_tool("python3", "python3");
        require_tool("etcd", "etcd-server");
        require_tool("etcdctl", "etcd-client");
        let dir = tempfile::tempdir().expect("tempdir");
        let out = Command::new("bash")
            .arg(repo("deploy/kubernetes/validate.sh"))
            .arg(dir.path())
            .env("GATEHOUSE", BIN)
            .output()
            .expect("run validate.sh");
        let log = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        if !out.status.success() {
            return Err(format!("deploy/kubernetes/validate.sh failed ({}):\n{log}", out.status));
        }
        eprintln!("{log}");
        let load = |name: &str| -> Vec<Value> {
            let text = std::fs::read_to_string(dir.path().join(name)).expect("rendered file");
            serde_yaml::Deserializer::from_str(&text)
                .map(|doc| Value::deserialize(doc).expect("rendered YAML"))
                .filter(|v| !v.is_null())
                .collect()
        };
        let (base, fleet) = (load("base.yaml"), load("fleet.yaml"));
        Ok(Rendered { dir, base, fleet })
    });
    match result {
        Ok(r) => r,
        Err(e) => panic!("{e}"),
    }
}

fn object<'a>(objects: &'a [Value], kind: &str, name: &str) -> &'a Value {
    objects
        .iter()
        .find(|o| o["kind"] == kind && o["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("no {kind}/{name} rendered"))
}

/// The ConfigMap gatehouse-config-<hash>.
fn config_map(objects: &[Value]) -> &Value {
    objects
        .iter()
        .find(|o| o["kind"] == "ConfigMap" && str_of(&o["metadata"]["name"]).starts_with("gatehouse-config-"))
        .expect("no ConfigMap gatehouse-config-<hash>")
}

fn str_of(v: &Value) -> &str {
    v.as_str().unwrap_or_else(|| panic!("not a string: {v:?}"))
}

fn list(v: &Value) -> &Vec<Value> {
    v.as_sequence().unwrap_or_else(|| panic!("not a list: {v:?}"))
}

fn pod_spec(objects: &[Value]) -> &Value {
    &object(objects, "Deployment", "gatehouse")["spec"]["template"]["spec"]
}

fn container(objects: &[Value]) -> &Value {
    let containers = list(&pod_spec(objects)["containers"]);
    assert_eq!(containers.len(), 1, "one container in the gateway pod");
    &containers[0]
}

/// The container port of this name.
fn container_port(container: &Value, name: &str) -> u16 {
    list(&container["ports"])
        .iter()
        .find(|p| p["name"] == name)
        .and_then(|p| p["containerPort"].as_u64())
        .unwrap_or_else(|| panic!("no container port named {name}")) as u16
}

/// The file `-c` names in the container's args.
fn config_arg(container: &Value) -> String {
    let args: Vec<&str> = list(&container["args"]).iter().map(str_of).collect();
    let at = args.iter().position(|a| *a == "-c").expect("args have -c");
    assert_eq!(args[0], "run", "the container runs `gatehouse run`");
    args[at + 1].to_string()
}

/// The port of an `ip:port` listen address, checking it is every address of the pod.
fn pod_wide_port(addr: &str, key: &str) -> u16 {
    let (ip, port) = addr.rsplit_once(':').unwrap_or_else(|| panic!("{key}: {addr}"));
    assert_eq!(
        ip, "0.0.0.0",
        "{key} must listen on the pod's address: the Service, the probes and Prometheus come from outside the pod"
    );
    port.parse().unwrap_or_else(|_| panic!("{key}: {addr}"))
}

/// (listen port, admin port) of a config file's text.
fn config_ports(text: &str) -> (u16, u16) {
    let config: Value = serde_yaml::from_str(text).expect("config YAML");
    let listen = list(&config["listen"]);
    assert_eq!(listen.len(), 1, "one plain listener");
    (
        pod_wide_port(str_of(&listen[0]), "listen"),
        pod_wide_port(str_of(&config["admin"]["listen"]), "admin.listen"),
    )
}

// === the manifests against the config ===

#[test]
fn validate_sh_renders_and_validates_the_base_and_the_fleet_overlay() {
    let r = rendered();
    let kinds =
        |objects: &[Value]| -> BTreeSet<String> { objects.iter().map(|o| str_of(&o["kind"]).to_string()).collect() };
    let base = kinds(&r.base);
    for kind in [
        "ConfigMap",
        "Deployment",
        "Service",
        "HorizontalPodAutoscaler",
        "PodDisruptionBudget",
        "NetworkPolicy",
        "ServiceMonitor",
    ] {
        assert!(base.contains(kind), "the base has no {kind}: {base:?}");
    }
    assert!(
        kinds(&r.fleet).contains("StatefulSet"),
        "the fleet overlay brings its etcd"
    );
    assert!(config_map(&r.base)["data"]["gatehouse.yaml"].is_string());
    let fleet_data = config_map(&r.fleet)["data"].as_mapping().expect("data");
    assert_eq!(
        fleet_data.keys().map(str_of).collect::<Vec<_>>(),
        ["bootstrap.yaml"],
        "the fleet's ConfigMap holds the bootstrap file only"
    );
}

#[test]
fn container_ports_are_the_config_s_listen_and_admin_ports_and_everything_names_them() {
    let r = rendered();
    for (objects, file) in [(&r.base, "gatehouse.yaml"), (&r.fleet, "bootstrap.yaml")] {
        let c = container(objects);
        let (listen, admin) = config_ports(&r.file(file));
        assert_eq!(
            container_port(c, "http"),
            listen,
            "{file}: listen vs containerPort http"
        );
        assert_eq!(
            container_port(c, "admin"),
            admin,
            "{file}: admin.listen vs containerPort admin"
        );

        let names: BTreeSet<&str> = list(&c["ports"]).iter().map(|p| str_of(&p["name"])).collect();
        let service = object(objects, "Service", "gatehouse");
        for port in list(&service["spec"]["ports"]) {
            let target = str_of(&port["targetPort"]);
            assert!(
                names.contains(target),
                "Service port {:?} targets {target}",
                port["name"]
            );
            assert_eq!(
                port["name"], port["targetPort"],
                "Service ports are named as the container's"
            );
        }
        for probe in ["readinessProbe", "livenessProbe"] {
            let port = str_of(&c[probe]["httpGet"]["port"]);
            assert_eq!(port, "admin", "{probe}: /health and /ready are the admin listener's");
        }
        let policy = object(objects, "NetworkPolicy", "gatehouse");
        let mut policed = BTreeSet::new();
        for rule in list(&policy["spec"]["ingress"]) {
            for port in list(&rule["ports"]) {
                let name = str_of(&port["port"]);
                assert!(names.contains(name), "NetworkPolicy names port {name}");
                policed.insert(name);
                if name == "admin" {
                    assert!(rule["from"].is_sequence(), "the admin port is open only to some peers");
                } else {
                    assert!(rule["from"].is_null(), "the proxy port is open to all");
                }
            }
        }
        assert_eq!(policed, names, "the NetworkPolicy rules every port");

        let monitor = object(objects, "ServiceMonitor", "gatehouse");
        let endpoint = &list(&monitor["spec"]["endpoints"])[0];
        assert_eq!(endpoint["port"], "admin", "Prometheus scrapes the admin port");
        assert_eq!(endpoint["path"], "/metrics");
    }
}

#[test]
fn the_config_file_is_a_file_of_the_config_map_mounted_as_a_directory() {
    let r = rendered();
    for (objects, file) in [(&r.base, "gatehouse.yaml"), (&r.fleet, "bootstrap.yaml")] {
        let c = container(objects);
        let path = config_arg(c);
        let (dir, name) = path.rsplit_once('/').expect("an absolute path");
        assert_eq!(name, file, "-c names the ConfigMap's file");
        let mount = list(&c["volumeMounts"])
            .iter()
            .find(|m| m["mountPath"] == dir)
            .unwrap_or_else(|| panic!("nothing is mounted at {dir}"));
        assert!(
            mount["subPath"].is_null(),
            "a subPath mount never sees ConfigMap updates (watch: true would not work)"
        );
        let volume = list(&pod_spec(objects)["volumes"])
            .iter()
            .find(|v| v["name"] == mount["name"])
            .expect("the mounted volume");
        let config_map = config_map(objects);
        assert_eq!(
            volume["configMap"]["name"], config_map["metadata"]["name"],
            "the volume is the generated ConfigMap (hash suffix included)"
        );
        assert!(config_map["data"][name].is_string(), "the ConfigMap has {name}");
    }
}

/// `${NAME}` without a default in `text`.
fn required_variables(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for line in text.lines().filter(|l| !l.trim_start().starts_with('#')) {
        let mut rest = line;
        while let Some(at) = rest.find("${") {
            let end = rest[at..].find('}').expect("closed ${") + at;
            let inner = &rest[at + 2..end];
            if !inner.contains(":-") {
                names.insert(inner.to_string());
            }
            rest = &rest[end..];
        }
    }
    names
}

#[test]
fn every_variable_the_config_needs_is_in_the_pod_s_environment_and_the_token_is_the_monitor_s() {
    let r = rendered();
    for (objects, file) in [(&r.base, "gatehouse.yaml"), (&r.fleet, "bootstrap.yaml")] {
        let c = container(objects);
        let env: BTreeSet<&str> = list(&c["env"]).iter().map(|e| str_of(&e["name"])).collect();
        let needed = required_variables(&r.file(file));
        assert!(
            needed.contains("ADMIN_TOKEN"),
            "{file}: the admin token comes from the environment"
        );
        for name in &needed {
            assert!(
                env.contains(name.as_str()),
                "{file} needs ${{{name}}}: not in the container's env"
            );
        }
    }
    // The ServiceMonitor presents the token the pods get.
    let c = container(&r.base);
    let token = list(&c["env"]).iter().find(|e| e["name"] == "ADMIN_TOKEN").unwrap();
    let from = &token["valueFrom"]["secretKeyRef"];
    let monitor = object(&r.base, "ServiceMonitor", "gatehouse");
    let credentials = &list(&monitor["spec"]["endpoints"])[0]["authorization"]["credentials"];
    assert_eq!(credentials["name"], from["name"]);
    assert_eq!(credentials["key"], from["key"]);
}

/// What `gatehouse doctor` says stopping takes at most, in seconds.
fn stop_bound(config: &Path, env: &[(String, String)]) -> f64 {
    let out = Command::new(BIN)
        .args(["doctor", "--json", "-c"])
        .arg(config)
        .envs(env.iter().map(|(k, v)| (k, v)))
        .output()
        .expect("gatehouse doctor");
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("doctor --json");
    let detail = report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["check"] == "shutdown")
        .and_then(|c| c["detail"].as_str())
        .expect("doctor's shutdown check")
        .to_string();
    let at_most = regex::Regex::new(r"at most ([0-9.]+)s\b").unwrap();
    at_most
        .captures(&detail)
        .and_then(|c| c[1].parse().ok())
        .unwrap_or_else(|| panic!("no bound in {detail:?}"))
}

/// terminationGracePeriodSeconds and the preStop sleep, in seconds.
fn pod_stop_times(objects: &[Value]) -> (f64, f64) {
    let grace = pod_spec(objects)["terminationGracePeriodSeconds"]
        .as_f64()
        .expect("grace period");
    let sleep = container(objects)["lifecycle"]["preStop"]["sleep"]["seconds"]
        .as_f64()
        .expect("preStop sleep (the image has no shell for an exec hook)");
    (grace, sleep)
}

#[test]
fn the_grace_period_covers_the_pre_stop_sleep_and_gatehouse_s_own_stop() {
    let r = rendered();
    let env = pod_env(container(&r.base));
    let stop = stop_bound(&r.dir.path().join("gatehouse.yaml"), &env);
    let (grace, sleep) = pod_stop_times(&r.base);
    assert!(sleep >= 1.0, "the preStop sleep lets the endpoints update first");
    assert!(
        grace > sleep + stop,
        "terminationGracePeriodSeconds {grace} must exceed the preStop sleep {sleep}s + gatehouse's {stop}s"
    );
    // The fleet's pods stop with the bootstrap file's timings: the same ones.
    let timings = |text: &str| -> Vec<Value> {
        let v: Value = serde_yaml::from_str(text).unwrap();
        ["drain_period", "grace_period", "shutdown_timeout"]
            .iter()
            .map(|k| v[*k].clone())
            .collect()
    };
    assert_eq!(timings(&r.file("bootstrap.yaml")), timings(&r.file("gatehouse.yaml")));
    assert_eq!(pod_stop_times(&r.fleet), (grace, sleep));
}

#[test]
fn selectors_select_the_gateway_pods_and_the_image_is_this_version() {
    let r = rendered();
    for objects in [&r.base, &r.fleet] {
        let deployment = object(objects, "Deployment", "gatehouse");
        let labels = deployment["spec"]["template"]["metadata"]["labels"]
            .as_mapping()
            .unwrap();
        let selects = |selector: &Value, what: &str| {
            let wanted = selector.as_mapping().unwrap_or_else(|| panic!("{what}: no selector"));
            for (k, v) in wanted {
                assert_eq!(labels.get(k), Some(v), "{what} selects {k:?}={v:?}, the pods lack it");
            }
        };
        selects(&deployment["spec"]["selector"]["matchLabels"], "Deployment");
        selects(&object(objects, "Service", "gatehouse")["spec"]["selector"], "Service");
        selects(
            &object(objects, "PodDisruptionBudget", "gatehouse")["spec"]["selector"]["matchLabels"],
            "PodDisruptionBudget",
        );
        selects(
            &object(objects, "NetworkPolicy", "gatehouse")["spec"]["podSelector"]["matchLabels"],
            "NetworkPolicy",
        );
        let affinity = &pod_spec(objects)["affinity"]["podAntiAffinity"]
            ["preferredDuringSchedulingIgnoredDuringExecution"][0]["podAffinityTerm"];
        assert_eq!(affinity["topologyKey"], "kubernetes.io/hostname");
        selects(&affinity["labelSelector"]["matchLabels"], "pod anti-affinity");
        // The ServiceMonitor selects the Service.
        let service_labels = object(objects, "Service", "gatehouse")["metadata"]["labels"]
            .as_mapping()
            .unwrap();
        for (k, v) in object(objects, "ServiceMonitor", "gatehouse")["spec"]["selector"]["matchLabels"]
            .as_mapping()
            .unwrap()
        {
            assert_eq!(service_labels.get(k), Some(v), "ServiceMonitor selects {k:?}={v:?}");
        }
        let hpa = object(objects, "HorizontalPodAutoscaler", "gatehouse");
        assert_eq!(hpa["spec"]["scaleTargetRef"]["kind"], "Deployment");
        assert_eq!(hpa["spec"]["scaleTargetRef"]["name"], "gatehouse");
        assert!(hpa["spec"]["minReplicas"].as_u64().unwrap() >= 2, "two pods at least");
        assert!(
            deployment["spec"]["replicas"].is_null(),
            "the HPA owns the replica count: `kubectl apply` would reset it"
        );
        assert_eq!(
            object(objects, "PodDisruptionBudget", "gatehouse")["spec"]["minAvailable"],
            1
        );
        assert_eq!(
            container(objects)["image"],
            format!("gatehouse:{}", env!("CARGO_PKG_VERSION")).as_str()
        );
    }
}

#[test]
fn the_fleet_s_etcd_members_are_the_bootstrap_s_endpoints_and_their_flags_are_etcd_s() {
    require_tool("etcd", "etcd-server");
    let r = rendered();
    let sts = object(&r.fleet, "StatefulSet", "gatehouse-etcd");
    let (name, service) = (str_of(&sts["metadata"]["name"]), str_of(&sts["spec"]["serviceName"]));
    let replicas = sts["spec"]["replicas"].as_u64().unwrap();
    assert!(
        replicas >= 3 && replicas % 2 == 1,
        "an odd number of members, three at least"
    );
    let etcd = &list(&sts["spec"]["template"]["spec"]["containers"])[0];
    let client = container_port(etcd, "client");
    let peer = container_port(etcd, "peer");
    let members: Vec<String> = (0..replicas).map(|i| format!("{name}-{i}.{service}")).collect();

    let bootstrap: Value = serde_yaml::from_str(&r.file("bootstrap.yaml")).unwrap();
    let endpoints: Vec<&str> = list(&bootstrap["config_source"]["etcd"]["endpoints"])
        .iter()
        .map(str_of)
        .collect();
    let expected: Vec<String> = members.iter().map(|m| format!("http://{m}:{client}")).collect();
    assert_eq!(endpoints, expected, "gatehouse knows every member");

    let args: Vec<&str> = list(&etcd["args"]).iter().map(str_of).collect();
    let initial = args
        .iter()
        .find_map(|a| a.strip_prefix("--initial-cluster="))
        .expect("--initial-cluster");
    let expected: Vec<String> = (0..replicas)
        .map(|i| format!("{name}-{i}=http://{}:{peer}", members[i as usize]))
        .collect();
    assert_eq!(initial, expected.join(","));
    assert!(
        object(&r.fleet, "Service", service)["spec"]["clusterIP"] == "None",
        "the members' names come from a headless Service"
    );
    // Debian's etcd (3.4, what the fleet tests run) knows every flag the members get.
    let help = Command::new("etcd").arg("--help").output().expect("etcd --help");
    let help = format!(
        "{}{}",
        String::from_utf8_lossy(&help.stdout),
        String::from_utf8_lossy(&help.stderr)
    );
    for arg in args {
        let flag = arg.split('=').next().unwrap();
        assert!(
            help.lines()
                .any(|l| l.trim_start().split([' ', '\t']).next() == Some(flag)),
            "etcd has no flag {flag}"
        );
    }
}

// === the pod, run as it would run ===

/// The container's environment with made-up Secret values, and resourceFieldRefs
/// resolved as the kubelet does (limits.cpu with divisor 1: CPUs rounded up).
fn pod_env(container: &Value) -> Vec<(String, String)> {
    let mut env = Vec::new();
    for e in list(&container["env"]) {
        let name = str_of(&e["name"]).to_string();
        let value = if let Some(v) = e["value"].as_str() {
            v.to_string()
        } else if let Some(key) = e["valueFrom"]["secretKeyRef"]["key"].as_str() {
            format!("test-{key}-0123456789abcdef0123456789abcdef")
        } else if let Some(resource) = e["valueFrom"]["resourceFieldRef"]["resource"].as_str() {
            let (section, what) = resource.split_once('.').unwrap();
            assert_eq!(e["valueFrom"]["resourceFieldRef"]["divisor"], "1");
            let quantity = str_of(&container["resources"][section][what]);
            let cpus = match quantity.strip_suffix('m') {
                Some(milli) => milli.parse::<u64>().unwrap().div_ceil(1000),
                None => quantity.parse::<u64>().unwrap(),
            };
            cpus.to_string()
        } else {
            panic!("unsupported env source: {e:?}");
        };
        env.push((name, value));
    }
    env
}

/// A ConfigMap volume as the kubelet lays it out: FILE -> ..data/FILE, and ..data a link
/// to the current version's directory, swapped atomically for a new one on an update.
struct ConfigVolume {
    dir: tempfile::TempDir,
    file: String,
    versions: u32,
    /// What differs between the pod and this machine: the listen and admin addresses
    /// (free ports here) and the emptyDir's path.
    rewrites: Vec<(String, String)>,
}

impl ConfigVolume {
    fn new(file: &str, rewrites: Vec<(String, String)>, text: &str) -> ConfigVolume {
        let dir = tempfile::tempdir().unwrap();
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let mut volume = ConfigVolume {
            dir,
            file: file.to_string(),
            versions: 0,
            rewrites,
        };
        volume.publish(text);
        std::os::unix::fs::symlink(format!("..data/{file}"), volume.dir.path().join(file)).unwrap();
        volume
    }

    /// What the kubelet does when the ConfigMap changes: the new text in a new directory,
    /// then `..data` renamed over to point at it.
    fn publish(&mut self, text: &str) {
        let mut text = text.to_string();
        for (from, to) in &self.rewrites {
            assert!(text.contains(from.as_str()), "the config names {from}");
            text = text.replace(from.as_str(), to);
        }
        self.versions += 1;
        let version = format!("..v{}", self.versions);
        let dir = self.dir.path().join(&version);
        std::fs::create_dir(&dir).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        let path = dir.join(&self.file);
        std::fs::write(&path, text).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let tmp = self.dir.path().join("..data_tmp");
        std::os::unix::fs::symlink(&version, &tmp).unwrap();
        std::fs::rename(&tmp, self.dir.path().join("..data")).unwrap();
    }
}

/// `gatehouse run` as the kubelet would start the container, on this machine: the config
/// file in a ConfigMap volume laid out as the kubelet does, the emptyDir a world-writable
/// directory (as the kubelet makes it), the ports moved to free ones; in a mount
/// namespace whose root is read-only except for the emptyDir, as runAsUser and
/// runAsGroup, with no capability and no_new_privs (allowPrivilegeEscalation: false).
/// The seccomp profile is the one thing not reproduced.
struct Pod {
    child: Child,
    http: u16,
    admin: u16,
    empty_dir: tempfile::TempDir,
    volume: ConfigVolume,
    /// The binary and the pod's log.
    _aux: tempfile::TempDir,
    log: PathBuf,
}

impl Pod {
    fn start(objects: &[Value], config_text: &str, extra_args: &[&str]) -> Pod {
        require_tool("unshare", "util-linux");
        require_tool("setpriv", "util-linux");
        let c = container(objects);
        let spec = pod_spec(objects);
        let security = &spec["securityContext"];
        assert_eq!(security["runAsNonRoot"], true);
        let uid = security["runAsUser"].as_u64().expect("a numeric runAsUser");
        let gid = security["runAsGroup"].as_u64().expect("a numeric runAsGroup");
        assert_ne!(uid, 0);
        let cs = &c["securityContext"];
        assert_eq!(cs["readOnlyRootFilesystem"], true);
        assert_eq!(cs["allowPrivilegeEscalation"], false);
        assert_eq!(list(&cs["capabilities"]["drop"]), &[Value::from("ALL")]);
        assert_eq!(security["seccompProfile"]["type"], "RuntimeDefault");

        // The one writable directory of the pod: the emptyDir.
        let mounts = list(&c["volumeMounts"]);
        let volumes = list(&spec["volumes"]);
        let writable: Vec<&str> = mounts
            .iter()
            .filter(|m| {
                let volume = volumes.iter().find(|v| v["name"] == m["name"]).unwrap();
                !volume["emptyDir"].is_null()
            })
            .map(|m| str_of(&m["mountPath"]))
            .collect();
        assert_eq!(writable.len(), 1, "one emptyDir: {writable:?}");
        let empty_dir = tempfile::tempdir().unwrap();
        std::fs::set_permissions(empty_dir.path(), std::fs::Permissions::from_mode(0o777)).unwrap();

        let (http, admin) = (free_port(), free_port());
        let rewrites = vec![
            (
                format!("0.0.0.0:{}", container_port(c, "http")),
                format!("127.0.0.1:{http}"),
            ),
            (
                format!("0.0.0.0:{}", container_port(c, "admin")),
                format!("127.0.0.1:{admin}"),
            ),
            (writable[0].to_string(), empty_dir.path().display().to_string()),
        ];
        let config_path = config_arg(c);
        let (config_mount, file) = config_path.rsplit_once('/').unwrap();
        let volume = ConfigVolume::new(file, rewrites, config_text);
        let args: Vec<String> = list(&c["args"])
            .iter()
            .map(|a| str_of(a).replace(config_mount, &volume.dir.path().display().to_string()))
            .chain(extra_args.iter().map(|a| a.to_string()))
            .collect();

        let aux = tempfile::tempdir().unwrap();
        std::fs::set_permissions(aux.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        // The binary where uid 65532 can reach it, as /usr/local/bin in the image (the
        // checkout may be in a directory only root can enter).
        let bin = aux.path().join("gatehouse");
        std::fs::copy(BIN, &bin).expect("copy the binary");
        let log = aux.path().join("pod.log");
        let out = std::fs::File::create(&log).unwrap();
        let sandbox = format!(
            "mount --rbind / / && mount -o remount,bind,ro / \
             && mount --bind \"$1\" \"$1\" && mount -o remount,bind,rw \"$1\" && shift \
             && exec setpriv --reuid={uid} --regid={gid} --clear-groups --no-new-privs \
                --bounding-set=-all --inh-caps=-all \"$@\""
        );
        let child = Command::new("unshare")
            .args(["--mount", "--propagation", "private", "sh", "-c", &sandbox, "sh"])
            .arg(empty_dir.path())
            .arg(&bin)
            .args(&args)
            // A pod's environment: the container's, and nothing of this process.
            .env_clear()
            .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
            .envs(pod_env(c))
            .current_dir("/")
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .expect("spawn unshare");
        Pod {
            child,
            http,
            admin,
            empty_dir,
            volume,
            _aux: aux,
            log,
        }
    }

    fn logs(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The port a probe's named port stands for.
    fn port(&self, name: &str) -> u16 {
        match name {
            "http" => self.http,
            "admin" => self.admin,
            other => panic!("no port {other}"),
        }
    }

    async fn status(&self, port: &str, path: &str, token: Option<&str>) -> Option<u16> {
        let mut request = client().get(format!("http://127.0.0.1:{}{path}", self.port(port)));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        request.send().await.ok().map(|r| r.status().as_u16())
    }

    /// Polls the probe until it answers 200, as the kubelet would (panics with the log).
    async fn probe_ok(&mut self, probe: &Value, within: Duration) {
        let (port, path) = (str_of(&probe["httpGet"]["port"]), str_of(&probe["httpGet"]["path"]));
        let deadline = Instant::now() + within;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("the pod exited with {status}:\n{}", self.logs());
            }
            if self.status(port, path, None).await == Some(200) {
                return;
            }
            if Instant::now() > deadline {
                panic!(
                    "{path} on port {port} did not answer 200 within {within:?}:\n{}",
                    self.logs()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// SIGTERM, as the kubelet sends after the preStop hook; how long the exit took.
    async fn terminate(&mut self, within: Duration) -> Duration {
        let started = Instant::now();
        let ok = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill -TERM");
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                assert!(status.success(), "the pod exited with {status}:\n{}", self.logs());
                return started.elapsed();
            }
            if started.elapsed() > within {
                panic!("still running {within:?} after SIGTERM:\n{}", self.logs());
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for Pod {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!("--- pod log ---\n{}", self.logs());
        }
    }
}

/// Probes, /metrics with and without the ServiceMonitor's token, then SIGTERM.
async fn serve_probes_metrics_and_stop(pod: &mut Pod, objects: &[Value]) {
    let c = container(objects);
    // /ready may say 503 for ready_timeout (10s) while first checks run.
    pod.probe_ok(&c["livenessProbe"], Duration::from_secs(15)).await;
    pod.probe_ok(&c["readinessProbe"], Duration::from_secs(15)).await;
    assert_eq!(
        pod.status("http", "/health", None).await,
        Some(200),
        "the proxy port serves"
    );

    let monitor = object(objects, "ServiceMonitor", "gatehouse");
    let endpoint = &list(&monitor["spec"]["endpoints"])[0];
    let path = str_of(&endpoint["path"]);
    let token = pod_env(c)
        .into_iter()
        .find(|(k, _)| k == "ADMIN_TOKEN")
        .map(|(_, v)| v)
        .unwrap();
    assert_eq!(
        pod.status("admin", path, Some(&token)).await,
        Some(200),
        "Prometheus with the token"
    );
    assert_eq!(pod.status("admin", path, None).await, Some(401), "anyone else");

    let (grace, sleep) = pod_stop_times(objects);
    let took = pod.terminate(Duration::from_secs_f64(grace - sleep)).await;
    eprintln!(
        "stopped {took:?} after SIGTERM (grace period after the preStop sleep: {}s)",
        grace - sleep
    );
    // Nothing it wanted to write was refused by the read-only root (EROFS).
    let logs = pod.logs();
    assert!(!logs.contains("os error 30"), "a write outside the emptyDir:\n{logs}");
}

#[tokio::test]
async fn the_pod_runs_as_its_security_context_says_answers_its_probes_and_stops_in_time() {
    let r = rendered();
    let mut pod = Pod::start(&r.base, &r.file("gatehouse.yaml"), &[]);
    serve_probes_metrics_and_stop(&mut pod, &r.base).await;
}

#[tokio::test]
async fn a_fleet_pod_serves_the_base_config_from_etcd_and_keeps_it_in_the_empty_dir() {
    let r = rendered();
    let etcd = EtcdServer::start().await;
    let env = pod_env(container(&r.base));
    // The operator's step: the base's config, pushed to the prefix the bootstrap names.
    let bootstrap: Value = serde_yaml::from_str(&r.file("bootstrap.yaml")).unwrap();
    let prefix = str_of(&bootstrap["config_source"]["etcd"]["prefix"]);
    let push = Command::new(BIN)
        .args(["config", "push"])
        .arg(r.dir.path().join("gatehouse.yaml"))
        .args(["--etcd", &etcd.url(), "--etcd-prefix", prefix])
        .envs(env.iter().map(|(k, v)| (k, v)))
        .output()
        .unwrap();
    assert!(
        push.status.success(),
        "config push: {}",
        String::from_utf8_lossy(&push.stderr)
    );

    // The bootstrap's endpoints are the cluster's member names: --etcd replaces them.
    let mut pod = Pod::start(&r.fleet, &r.file("bootstrap.yaml"), &["--etcd", &etcd.url()]);
    let c = container(&r.fleet);
    pod.probe_ok(&c["readinessProbe"], Duration::from_secs(15)).await;
    let token = &env.iter().find(|(k, _)| k == "ADMIN_TOKEN").unwrap().1;
    let config: serde_json::Value = client()
        .get(format!("http://127.0.0.1:{}/admin/config", pod.admin))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(
        config["source"].as_str().unwrap_or("").contains("etcd"),
        "the config comes from etcd: {config}"
    );
    // A route of the base's config answers (it wants an API key).
    assert_eq!(pod.status("http", "/api/orders/1", None).await, Some(401));
    assert!(
        pod.empty_dir.path().join("gatehouse-fleet-state.json").exists(),
        "the last good config is kept in the emptyDir"
    );
    serve_probes_metrics_and_stop(&mut pod, &r.fleet).await;
}

/// The config generation the pod's /ready reports.
async fn generation(pod: &Pod) -> Option<u64> {
    let r = client()
        .get(format!("http://127.0.0.1:{}/ready", pod.admin))
        .send()
        .await
        .ok()?;
    let body: serde_json::Value = r.json().await.ok()?;
    body["config_generation"].as_u64()
}

#[tokio::test]
async fn a_config_map_edited_in_place_reaches_the_running_pod_through_watch() {
    let r = rendered();
    let text = r.file("gatehouse.yaml");
    let config: Value = serde_yaml::from_str(&text).unwrap();
    assert_eq!(config["watch"], true, "the pods reload a ConfigMap edited in place");
    let mut pod = Pod::start(&r.base, &text, &[]);
    let c = container(&r.base);
    pod.probe_ok(&c["readinessProbe"], Duration::from_secs(15)).await;
    assert_eq!(generation(&pod).await, Some(1));

    // `kubectl edit configmap`: the kubelet swaps the new version in, no signal is sent.
    let edited = text.replace("max_body: 10MiB", "max_body: 5MiB");
    assert_ne!(edited, text);
    pod.volume.publish(&edited);
    eventually(Duration::from_secs(10), "the pod applied the new version", || async {
        generation(&pod).await == Some(2)
    })
    .await;

    // A version that does not load is refused; the pod keeps serving the last good one.
    pod.volume.publish(&format!("{edited}\nroutes: [\n"));
    eventually(Duration::from_secs(10), "the bad version refused", || async {
        pod.logs().contains("config reload refused")
    })
    .await;
    assert_eq!(generation(&pod).await, Some(2));
    pod.probe_ok(&c["readinessProbe"], Duration::from_secs(1)).await;
}

#[test]
fn the_pod_runs_the_image_as_the_dockerfile_builds_it() {
    let r = rendered();
    let dockerfile = std::fs::read_to_string(repo("Dockerfile")).expect("the Dockerfile");
    // The runtime stage: the lines after the last FROM.
    let runtime = dockerfile.rsplit("\nFROM ").next().unwrap();
    let instruction = |name: &str| -> String {
        runtime
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{name} ")))
            .unwrap_or_else(|| panic!("the Dockerfile's runtime stage has no {name}"))
            .trim()
            .to_string()
    };
    let security = &pod_spec(&r.base)["securityContext"];
    let user = format!(
        "{}:{}",
        security["runAsUser"].as_u64().unwrap(),
        security["runAsGroup"].as_u64().unwrap()
    );
    assert_eq!(instruction("USER"), user, "the image's user is the pod's");
    let entrypoint: Vec<String> = serde_json::from_str(&instruction("ENTRYPOINT")).expect("exec-form ENTRYPOINT");
    assert!(
        entrypoint.len() == 1 && entrypoint[0].ends_with("/gatehouse"),
        "the container's args follow the gatehouse binary: {entrypoint:?}"
    );
    let exposed: BTreeSet<u16> = instruction("EXPOSE")
        .split_whitespace()
        .map(|p| p.parse().unwrap())
        .collect();
    let c = container(&r.base);
    for name in ["http", "admin"] {
        assert!(
            exposed.contains(&container_port(c, name)),
            "the image exposes the {name} port"
        );
    }
    // The image's default config file is where the base mounts its own.
    let default_config = runtime
        .lines()
        .find_map(|l| l.strip_prefix("ENV GATEHOUSE_CONFIG="))
        .expect("ENV GATEHOUSE_CONFIG=");
    assert_eq!(default_config.trim(), config_arg(c));
}
