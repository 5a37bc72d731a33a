#!/usr/bin/env bash
# Checks deploy/compose/ without a container runtime (CI has none):
#   1. docker-compose.yml against the Compose Specification's JSON schema
#      (check-jsonschema's builtin vendor.compose-spec), with no obsolete `version:`;
#   2. every host file or directory it mounts or builds from exists;
#   3. podman-compose (Debian's) reads it and makes a `podman create` for every service
#      (a dry run against /bin/true: nothing is created);
#   4. `gatehouse check` on every gatehouse config it mounts: gatehouse.yaml, and the
#      fleet node's bootstrap.yaml against a local etcd into which gatehouse.yaml was
#      pushed with `gatehouse config push`, as the fleet-push service does;
#   5. promtool on the Prometheus config, with the rules file beside it as in the
#      container and the token file it names;
#   6. Grafana's entrypoint turns the dashboard into one whose every data source is the
#      provisioned one.
# Exit 0 when all pass; else 1, each failure said on stderr.
#
#   bash deploy/compose/validate.sh [GATEHOUSE_BINARY]    (default target/release/gatehouse)
#
# Needs: python3 (venv), check-jsonschema (PyPI, through scripts/venv.sh), podman-compose,
# promtool (prometheus), etcd (etcd-server); `make test-deps` installs the Debian ones.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
bin=${1:-${GATEHOUSE_BIN:-$root/target/release/gatehouse}}
compose=$here/docker-compose.yml
failed=0
fail() { echo "FAIL: $*" >&2; failed=1; }
ok() { echo "ok    $*"; }
need() { command -v "$1" >/dev/null || { echo "FAIL: \`$1\` is not installed (Debian package $2)" >&2; exit 1; }; }

need podman-compose podman-compose
need promtool prometheus
need etcd etcd-server
[[ -x $bin ]] || { echo "FAIL: no gatehouse binary at $bin (make build)" >&2; exit 1; }
venv_bin=$(bash "$root/scripts/venv.sh" check-jsonschema)
py=$venv_bin/python3

tmp=$(mktemp -d)
etcd_pid=
cleanup() {
  if [[ -n $etcd_pid ]]; then
    kill "$etcd_pid" 2>/dev/null || true
    wait "$etcd_pid" 2>/dev/null || true
  fi
  rm -rf "$tmp"
}
trap cleanup EXIT
# The compose file requires it (${ADMIN_TOKEN:?...}), and so do the gatehouse configs.
export ADMIN_TOKEN=validate-only-token

# 1. The schema.
if out=$("$venv_bin/check-jsonschema" --builtin-schema vendor.compose-spec "$compose" 2>&1); then
  ok "compose spec schema ($("$venv_bin/check-jsonschema" --version | tail -1))"
else
  fail "docker-compose.yml does not follow the compose spec schema:"$'\n'"$out"
fi

# 2. The files it mounts (./ and ../ sources of volumes) and builds from exist; no version:.
# Prints one line per mount, "mount<TAB>service<TAB>host path<TAB>container path", and
# "warning<TAB>text" lines.
if out=$("$py" - "$compose" <<'EOF' 2>&1
import os, sys
from ruamel.yaml import YAML
path = sys.argv[1]
base = os.path.dirname(path)
doc = YAML(typ="safe").load(open(path))
bad = []
if "version" in doc:
    bad.append("the obsolete top-level `version:` key is there")
for name, svc in doc["services"].items():
    build = svc.get("build")
    if build is not None:
        ctx = build if isinstance(build, str) else build.get("context", ".")
        ctx = os.path.normpath(os.path.join(base, ctx))
        if not os.path.isdir(ctx):
            bad.append(f"{name}: build context {ctx} is not a directory")
        dockerfile = os.path.join(ctx, "Dockerfile" if isinstance(build, str) else build.get("dockerfile", "Dockerfile"))
        if not os.path.isfile(dockerfile):
            bad.append(f"{name}: builds from {dockerfile}, which does not exist")
    for v in svc.get("volumes", []):
        source, target = (v["source"], v["target"]) if isinstance(v, dict) else v.split(":")[:2]
        if source.startswith((".", "/")):
            host = os.path.normpath(os.path.join(base, source))
            if not os.path.exists(host):
                bad.append(f"{name}: mounts {source} ({host}), which does not exist")
            else:
                print(f"mount\t{name}\t{host}\t{target}")
        elif source not in (doc.get("volumes") or {}):
            bad.append(f"{name}: named volume {source} is not declared under volumes:")
if bad:
    print("\n".join(bad), file=sys.stderr)
    sys.exit(1)
EOF
); then
  ok "every mounted host file exists: $(grep '^mount' <<<"$out" | cut -f3 | sed "s|^$root/||" | sort -u | tr '\n' ' ')"
  grep '^warning' <<<"$out" | cut -f2- | sed 's/^/WARN  /' || true
else
  fail "$(grep -v -e '^mount' -e '^warning' <<<"$out")"
fi

# 3. podman-compose reads it: a dry run whose podman is /bin/true creates nothing.
services=$("$py" -c 'import sys; from ruamel.yaml import YAML; print(" ".join(YAML(typ="safe").load(open(sys.argv[1]))["services"]))' "$compose")
if out=$(cd "$here" && podman-compose --podman-path /bin/true --dry-run -f docker-compose.yml up --no-build 2>&1); then
  missing=()
  for s in $services; do
    grep -q -- "create --name=[a-z0-9_-]*_${s}_1 " <<<"$out" || missing+=("$s")
  done
  if [[ ${#missing[@]} -eq 0 ]]; then
    ok "podman-compose $(podman-compose version 2>/dev/null | sed -n 's/^podman-composer* version *//p') makes a container for each of: $services"
  else
    fail "podman-compose made no container for: ${missing[*]}"$'\n'"$out"
  fi
else
  fail "podman-compose cannot read docker-compose.yml:"$'\n'"$out"
fi

# 4. gatehouse check on every gatehouse config the stack mounts.
if out=$("$bin" check -c "$here/gatehouse.yaml" 2>&1); then
  ok "gatehouse check gatehouse.yaml: $(grep -o 'OK.*' <<<"$out")"
else
  fail "gatehouse check -c deploy/compose/gatehouse.yaml:"$'\n'"$out"
fi
port=$("$py" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
peer=$("$py" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
etcd --data-dir "$tmp/etcd" --listen-client-urls "http://127.0.0.1:$port" \
  --advertise-client-urls "http://127.0.0.1:$port" --listen-peer-urls "http://127.0.0.1:$peer" \
  --initial-advertise-peer-urls "http://127.0.0.1:$peer" --initial-cluster "default=http://127.0.0.1:$peer" \
  >"$tmp/etcd.log" 2>&1 &
etcd_pid=$!
for _ in $(seq 100); do
  "$bin" config pull --etcd "http://127.0.0.1:$port" >/dev/null 2>&1 && break
  sleep 0.1
done
# What fleet-push runs, then the bootstrap file checked against what it pushed (--etcd
# replaces the file's endpoint, http://etcd:2379).
if out=$("$bin" config push "$here/gatehouse.yaml" --etcd "http://127.0.0.1:$port" 2>&1) &&
  out2=$("$bin" check -c "$here/bootstrap.yaml" --etcd "http://127.0.0.1:$port" 2>&1); then
  ok "gatehouse config push gatehouse.yaml, then check bootstrap.yaml: $(grep -o 'OK.*' <<<"$out2")"
else
  fail "the fleet's config push or its bootstrap file's check:"$'\n'"$out"$'\n'"${out2:-}"
fi

# 5. promtool, with the files where the container has them: the rules next to the config
# (/etc/prometheus/), the token file that the entrypoint writes.
mkdir -p "$tmp/prometheus"
printf %s "$ADMIN_TOKEN" >"$tmp/prometheus/admin_token"
sed "s|/run/secrets/admin_token|$tmp/prometheus/admin_token|" "$here/prometheus.yml" >"$tmp/prometheus/prometheus.yml"
cp "$root/deploy/gatehouse.rules.yml" "$tmp/prometheus/gatehouse.rules.yml"
if out=$(promtool check config "$tmp/prometheus/prometheus.yml" 2>&1); then
  ok "promtool check config prometheus.yml (and the rules it loads: deploy/gatehouse.rules.yml)"
else
  fail "promtool check config deploy/compose/prometheus.yml:"$'\n'"$out"
fi

# 6. Grafana's entrypoint on the real dashboard.
if GATEHOUSE_DASHBOARD="$root/deploy/grafana/gatehouse-dashboard.json" DASHBOARD_DIR="$tmp/dashboards" \
  sh "$here/grafana/entrypoint.sh" true &&
  out=$("$py" - "$tmp/dashboards/gatehouse-dashboard.json" "$here/grafana/provisioning/datasources/prometheus.yml" <<'EOF' 2>&1
import json, sys
from ruamel.yaml import YAML
dashboard = json.load(open(sys.argv[1]))
uid = YAML(typ="safe").load(open(sys.argv[2]))["datasources"][0]["uid"]
refs = []
def walk(v):
    if isinstance(v, dict):
        if isinstance(v.get("datasource"), dict):
            refs.append(v["datasource"].get("uid"))
        for x in v.values():
            walk(x)
    elif isinstance(v, list):
        for x in v:
            walk(x)
walk(dashboard["panels"])
wrong = [r for r in refs if r != uid]
if not refs or wrong:
    sys.exit(f"{len(refs)} data source references, not the provisioned uid {uid!r}: {wrong[:3]}")
print(f"{len(refs)} data source references, all uid {uid!r}")
EOF
); then
  ok "grafana/entrypoint.sh: the provisioned dashboard has $out"
else
  fail "grafana/entrypoint.sh on deploy/grafana/gatehouse-dashboard.json:"$'\n'"${out:-}"
fi

if [[ $failed -ne 0 ]]; then
  echo "deploy/compose: validation FAILED" >&2
  exit 1
fi
echo "deploy/compose: all checks passed"
