#!/usr/bin/env bash
# Rehearses deploy/compose/docker-compose.yml without a container runtime: each service's
# own command line, environment, mounts, tmpfs, user and healthcheck, taken from the
# compose file, run with this machine's binaries in a private network and mount namespace
# (unshare; a PID namespace, so nothing outlives it) where the service names resolve, and started in the order and on the
# conditions of its depends_on. Then it sends traffic through the stack and asserts what
# the stack is for:
#   gatehouse routes /api/users and /api/orders to the demo services; the users route's
#   global limit is counted in Redis (429 past it); the admin listener wants the token;
#   Prometheus, with the rules of deploy/, scrapes gatehouse:9901 with the token and has
#   its requests; then the fleet profile: etcd, fleet-push, and a fleet node serving the
#   config fleet-push wrote.
# What differs from containers: one network namespace for all (every name resolves to
# 127.0.0.1, so the fleet node runs after gatehouse stops, both listening on 8080);
# named volumes are temporary directories; the images' binaries are this machine's
# (gatehouse: the binary given; redis-server, prometheus, etcd: Debian's); Grafana is
# not run (no Debian package): validate.sh and tests/compose.rs check its part.
#
#   bash deploy/compose/rehearse.sh [GATEHOUSE_BINARY]    (root; default target/release/gatehouse)
#
# Needs: unshare, setpriv (util-linux), redis-server + redis-cli (redis-server),
# prometheus, etcd (etcd-server), etcdctl (etcd-client), curl, wget, python3.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)

if [[ "${1:-}" != --inside ]]; then
  bin=$(realpath "${1:-${GATEHOUSE_BIN:-$root/target/release/gatehouse}}")
  [[ -x $bin ]] || { echo "rehearse: no gatehouse binary at $bin" >&2; exit 1; }
  [[ $(id -u) == 0 ]] || { echo "rehearse: needs root (unshare, mounts)" >&2; exit 1; }
  for tool in unshare:util-linux setpriv:util-linux redis-server:redis-server redis-cli:redis-server \
    prometheus:prometheus etcd:etcd-server etcdctl:etcd-client curl:curl wget:wget python3:python3; do
    command -v "${tool%%:*}" >/dev/null || { echo "rehearse: \`${tool%%:*}\` is not installed (Debian package ${tool#*:})" >&2; exit 1; }
  done
  venv_bin=$(bash "$root/scripts/venv.sh" check-jsonschema)   # its python has ruamel.yaml
  # A PID namespace too: when the script ends, the kernel ends every process it started.
  exec unshare --net --mount --pid --fork --mount-proc --kill-child -- bash "$0" --inside "$bin" "$venv_bin/python3"
fi

bin=$2 py=$3
tmp=$(mktemp -d)
pids=()
cleanup() {
  local status=$?
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  if [[ $status -ne 0 ]]; then
    for log in "$tmp"/logs/*.log; do
      [[ -s $log ]] && { echo "--- $(basename "$log" .log) (last lines)"; tail -15 "$log"; }
    done >&2
  fi
  # The namespace's mounts go with it; the overlays' upper directories are in $tmp.
  umount -R /etc /run /var/lib /usr/local/bin 2>/dev/null || true
  rm -rf "$tmp"
}
trap cleanup EXIT
die() { echo "FAIL: $*" >&2; exit 1; }
ok() { echo "ok    $*"; }

# --- the namespace: loopback, writable /etc /run /var/lib /usr/local/bin over the host's
ip link set lo up
for dir in /etc /run /var/lib /usr/local/bin; do
  mkdir -p "$tmp/overlay$dir/up" "$tmp/overlay$dir/work"
  mount -t overlay overlay -o "lowerdir=$dir,upperdir=$tmp/overlay$dir/up,workdir=$tmp/overlay$dir/work" "$dir"
done
mkdir -p "$tmp/logs" "$tmp/volumes"
chmod 755 "$tmp"
# The images' binaries, where the compose file names them.
touch /usr/local/bin/gatehouse
mount --bind "$bin" /usr/local/bin/gatehouse
ln -sf "$(command -v etcd)" /usr/local/bin/etcd
ln -sf "$(command -v etcdctl)" /usr/local/bin/etcdctl
has_health=1
/usr/local/bin/gatehouse health --help >/dev/null 2>&1 || has_health=0
[[ $has_health == 1 ]] || echo "NOTE: this gatehouse has no \`health\` subcommand: its healthchecks fetch the same URL with curl"

export ADMIN_TOKEN=rehearsal-$RANDOM$RANDOM$RANDOM
# The plan: bash lines from the compose file (interpolated as compose does).
"$py" - "$here/docker-compose.yml" "$tmp/volumes" >"$tmp/plan.sh" <<'EOF'
import os, re, shlex, sys
from ruamel.yaml import YAML
path, volumes = sys.argv[1], sys.argv[2]
base = os.path.dirname(path)
doc = YAML(typ="safe").load(open(path))

def interpolate(v):
    if isinstance(v, str):
        def one(m):
            if m.group(0) == "$$":
                return "$"
            name, op, arg = m.group(1), m.group(2), m.group(3)
            val = os.environ.get(name, "")
            if op == ":?" and not val:
                sys.exit(f"compose would refuse: {name}: {arg}")
            if op == ":-" and not val:
                return arg
            return val
        return re.sub(r"\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:\?|:-)([^}]*))?\}", one, v)
    if isinstance(v, list):
        return [interpolate(x) for x in v]
    if isinstance(v, dict):
        return {k: interpolate(x) for k, x in v.items()}
    return v

doc = interpolate(doc)
# The user each image runs as (Dockerfile: USER 65532; prom/prometheus: nobody).
users = {"gatehouse:latest": "65532", "prom/prometheus": "65534"}
q = shlex.quote
for name, svc in doc["services"].items():
    image = svc["image"]
    user = next((u for prefix, u in users.items() if image.startswith(prefix)), "0")
    named = {}
    print(f"service {q(name)} {user} {q(','.join(svc.get('profiles', [])))}")
    for v in svc.get("volumes", []):
        source, target = v.split(":")[:2]
        if source.startswith((".", "/")):
            print(f"  bind {q(os.path.normpath(os.path.join(base, source)))} {q(target)}")
        else:
            named[target] = os.path.join(volumes, name + target.replace("/", "_"))
            print(f"  volume {q(named[target])} {user}")
    for t in svc.get("tmpfs", []):
        print(f"  tmpfs {q(t)}")
    for dep, how in (svc.get("depends_on") or {}).items():
        print(f"  after {q(dep)} {q(how['condition'])}")
    # The image's own entrypoint where the compose file keeps it (redis: none needed).
    argv = svc.get("entrypoint", []) + svc.get("command", [])
    def sub(a):
        for target, host in named.items():
            if a == target or a.endswith("=" + target):
                return a[: len(a) - len(target)] + host
        return a
    argv = [sub(a) for a in argv]
    env = [f"{k}={v}" for k, v in (svc.get("environment") or {}).items()]
    print(f"  env {' '.join(q(e) for e in env)}")
    print(f"  run {' '.join(q(a) for a in argv)}")
    test = (svc.get("healthcheck") or {}).get("test")
    if test:
        assert test[0] == "CMD", test
        print(f"  health {' '.join(q(a) for a in test[1:])}")
    print("  end")
EOF

# --- the plan's words
declare -A user_of env_of run_of health_of after_of profile_of
order=()
cur=
service() { cur=$1; user_of[$1]=$2; profile_of[$1]=$3; after_of[$1]=""; env_of[$1]=""; health_of[$1]=""; order+=("$1"); }
bind() { # bind HOST TARGET: read-only; services that mount one file at one path share it
  if mountpoint -q "$2"; then
    diff -r "$1" "$2" >/dev/null || die "two services mount different files at $2"
    return
  fi
  mkdir -p "$(dirname "$2")"
  if [[ -d $1 ]]; then mkdir -p "$2"; else touch "$2"; fi
  mount --bind "$1" "$2"
  mount -o remount,ro,bind "$2"
}
volume() { mkdir -p "$1"; chown "$2:$2" "$1"; }
tmpfs() { mkdir -p "$1"; mount -t tmpfs -o mode=1777 tmpfs "$1"; }
after() { after_of[$cur]+="$1:$2 "; }
env() { env_of[$cur]=$( (($#)) && printf '%q ' "$@" || true); }
run() { run_of[$cur]=$(printf '%q ' "$@"); }
health() { health_of[$cur]=$(printf '%q ' "$@"); }
end() { :; }
# shellcheck disable=SC1091
source "$tmp/plan.sh"
unset -f env

# Every service name resolves here (compose's network DNS).
{ echo "127.0.0.1 localhost"; for s in "${order[@]}"; do echo "127.0.0.1 $s"; done; } >/etc/hosts

declare -A pid_of
as() { # as SERVICE CMD...: in the service's user and environment
  local s=$1; shift
  eval "local -a envs=(${env_of[$s]})"
  command env -i PATH=/usr/local/bin:/usr/bin:/bin HOME=/tmp "${envs[@]}" \
    setpriv --reuid="${user_of[$s]}" --regid="${user_of[$s]}" --clear-groups -- "$@"
}
as_exec() { # the same, replacing this (sub)shell, so that its pid is the service's
  local s=$1; shift
  eval "local -a envs=(${env_of[$s]})"
  exec env -i PATH=/usr/local/bin:/usr/bin:/bin HOME=/tmp "${envs[@]}" \
    setpriv --reuid="${user_of[$s]}" --regid="${user_of[$s]}" --clear-groups -- "$@"
}
start() {
  local s=$1
  for dep in ${after_of[$s]}; do
    wait_for "${dep%%:*}" "${dep#*:}" "$s"
  done
  (cd "$tmp/volumes" && eval "as_exec $s ${run_of[$s]}") >"$tmp/logs/$s.log" 2>&1 &
  pid_of[$s]=$!
  pids+=("$!")
  echo "      started $s (pid $!): $(eval "printf '%s ' ${run_of[$s]}")"
}
healthy() {
  local s=$1
  eval "local -a test=(${health_of[$s]})"
  set -- "${test[@]}"
  if [[ $1 == /usr/local/bin/gatehouse && $2 == health && $has_health == 0 ]]; then
    curl -fsS -o /dev/null --max-time 2 "$4"
  else
    as "$s" "$@" >/dev/null 2>&1
  fi
}
wait_for() { # wait_for SERVICE CONDITION [FOR]
  local s=$1 condition=$2 deadline=$((SECONDS + 60))
  [[ -n ${pid_of[$s]:-} ]] || start "$s"
  case $condition in
    service_healthy)
      until healthy "$s"; do
        kill -0 "${pid_of[$s]}" 2>/dev/null || die "$s exited before it was healthy"
        ((SECONDS < deadline)) || die "$s not healthy after 60 s"
        sleep 0.5
      done
      ok "$s healthy: $(eval "printf '%s ' ${health_of[$s]}")${3:+(${3} waits for it)}" ;;
    service_completed_successfully)
      wait "${pid_of[$s]}" || die "$s exited $?"
      ok "$s completed successfully${3:+ (${3} waits for it)}" ;;
    *) die "condition $condition" ;;
  esac
}
stop() { kill -TERM "${pid_of[$1]}"; wait "${pid_of[$1]}" || true; echo "      stopped $1 (SIGTERM)"; }

token=(-H "Authorization: Bearer $ADMIN_TOKEN")
get() { curl -sS --max-time 5 "$@"; }

# --- the default profile (Grafana excepted), as `docker compose up` starts it
for s in "${order[@]}"; do
  [[ -z ${profile_of[$s]} && $s != grafana && -z ${pid_of[$s]:-} ]] && start "$s"
done
for s in "${order[@]}"; do
  [[ -z ${profile_of[$s]} && $s != grafana && -n ${health_of[$s]} ]] && wait_for "$s" service_healthy
done

body=$(get http://gatehouse:8080/api/users/42)
grep -q '"service": *"users"' <<<"$body" && grep -q '"path": *"/42"' <<<"$body" ||
  die "/api/users/42 did not reach users as /42: $body"
ok "gatehouse:8080/api/users/42 → users /42"
body=$(get http://gatehouse:8080/api/orders/7)
grep -q '"service": *"orders"' <<<"$body" || die "/api/orders/7 did not reach orders: $body"
[[ $(get -o /dev/null -D - http://gatehouse:8080/api/orders/7 | tr -d '\r' | sed -n 's/^x-cache: //Ip') == HIT ]] ||
  die "/api/orders/7 a second time was not a cache hit"
ok "gatehouse:8080/api/orders/7 → orders, then from the cache"
# 40 requests on one keep-alive connection, well within a second.
urls=(); for i in $(seq 40); do urls+=(-o /dev/null "http://gatehouse:8080/api/users/$i"); done
codes=$(curl -sS --max-time 20 -w '%{http_code}\n' "${urls[@]}" | sort | uniq -c | tr -s ' \n' ' ')
grep -q ' 429' <<<"$codes" || die "40 requests on the users route (20/s, global) got no 429: $codes"
keys=$(redis-cli -h redis --scan --pattern 'gatehouse*' | wc -l)
((keys > 0)) || die "no gatehouse* key in Redis: the global limit did not count there"
ok "global limit (20/s): 40 requests →$codes; counted in Redis ($keys keys)"
[[ $(get -o /dev/null -w '%{http_code}' http://gatehouse:9901/metrics) == 401 ]] || die "/metrics without the token was not 401"
[[ $(get -o /dev/null -w '%{http_code}' "${token[@]}" http://gatehouse:9901/metrics) == 200 ]] || die "/metrics with the token was not 200"
ok "admin gatehouse:9901: /metrics 401 without the token, 200 with it"

deadline=$((SECONDS + 45))
until get http://prometheus:9090/api/v1/targets | grep -q '"health":"up"'; do
  ((SECONDS < deadline)) || die "Prometheus never scraped gatehouse: $(get http://prometheus:9090/api/v1/targets)"
  sleep 1
done
targets=$(get http://prometheus:9090/api/v1/targets)
grep -q '"scrapeUrl":"http://gatehouse:9901/metrics"' <<<"$targets" || die "scrape URL: $targets"
ok "Prometheus scrapes http://gatehouse:9901/metrics with the token: up"
rules=$(get http://prometheus:9090/api/v1/rules)
for alert in $(sed -n 's/^ *- alert: *//p' "$root/deploy/gatehouse.rules.yml"); do
  grep -q "\"name\":\"$alert\"" <<<"$rules" || die "Prometheus has no rule $alert: $rules"
done
ok "Prometheus has loaded deploy/gatehouse.rules.yml's alerts: $(sed -n 's/^ *- alert: *//p' "$root/deploy/gatehouse.rules.yml" | tr '\n' ' ')"
n=$(get http://prometheus:9090/api/v1/query --data-urlencode 'query=sum(gateway_requests_total{route="users"})' | grep -o '"value":\[[^]]*\]' || true)
[[ -n $n ]] || die "Prometheus has no gateway_requests_total{route=\"users\"}"
ok "Prometheus: sum(gateway_requests_total{route=\"users\"}) $n"

# --- the fleet profile: gatehouse stops (the fleet node takes its ports here)
stop prometheus
stop gatehouse
for s in "${order[@]}"; do
  [[ ${profile_of[$s]} == fleet && -n ${health_of[$s]} && -z ${pid_of[$s]:-} ]] && start "$s"
done
for s in "${order[@]}"; do
  [[ ${profile_of[$s]} == fleet && -n ${health_of[$s]} ]] && wait_for "$s" service_healthy
done
grep -q 'written at revision' "$tmp/logs/fleet-push.log" || die "fleet-push wrote nothing"
ok "fleet-push: $(grep -o 'written at revision [0-9]*' "$tmp/logs/fleet-push.log")"
body=$(get http://gatehouse-fleet:8080/api/users/1)
grep -q '"service": *"users"' <<<"$body" || die "the fleet node did not route /api/users/1 to users: $body"
kill -0 "${pid_of[gatehouse-fleet]}" || die "gatehouse-fleet is not running"
config=$(get "${token[@]}" http://gatehouse-fleet:9901/admin/config)
grep -q '"source": *"etcd' <<<"$config" || die "the fleet node's config is not from etcd: ${config:0:300}"
state=$(find /var/lib/gatehouse -name '*state*.json' -user 65532 | head -1)
[[ -n $state ]] || die "no state file of the image's user (65532) in the tmpfs /var/lib/gatehouse (state_dir)"
ok "gatehouse-fleet serves the config from etcd: /api/users/1 → users; last good config in $state"
echo "deploy/compose: rehearsal passed"
