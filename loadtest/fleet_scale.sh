#!/usr/bin/env bash
# Fleet mode at scale (#16): N routes and N upstreams in etcd. Reports the time from
# start to serving, the node's RSS, and the time from one put's answer to the new route
# serving (a single-route change on the large config), over CHANGES changes.
#   N=1000 CHANGES=20 bash loadtest/fleet_scale.sh      (BUILD=0 to use the existing binary)
set -euo pipefail
cd "$(dirname "$0")/.."
N=${N:-1000} CHANGES=${CHANGES:-20}
BIN=target/release/gatehouse
[[ "${BUILD:-1}" == 1 ]] && cargo build --release --locked >&2
work=$(mktemp -d)
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
client=$(port) peer=$(port) listen=$(port) admin=$(port)
cleanup() { kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT
etcd --name n1 --data-dir "$work/etcd" --listen-client-urls "http://127.0.0.1:$client" \
  --advertise-client-urls "http://127.0.0.1:$client" --listen-peer-urls "http://127.0.0.1:$peer" \
  --initial-advertise-peer-urls "http://127.0.0.1:$peer" --initial-cluster "n1=http://127.0.0.1:$peer" \
  --max-txn-ops $((2 * N + 10)) > "$work/etcd.log" 2>&1 &
ctl() { ETCDCTL_API=3 etcdctl --endpoints="http://127.0.0.1:$client" "$@"; }
until ctl endpoint health >/dev/null 2>&1; do sleep 0.1; done
python3 - "$N" > "$work/fleet.yaml" <<'PY'
import sys
n = int(sys.argv[1])
print("upstreams:")
for i in range(n):
    print(f"  u{i}: {{ targets: [\"127.0.0.1:{10000 + i}\"] }}")
print("routes:")
for i in range(n):
    print(f"  - {{ name: r{i}, prefix: /svc{i}/, upstream: u{i} }}")
PY
$BIN config push "$work/fleet.yaml" --etcd "http://127.0.0.1:$client" >/dev/null
cat > "$work/node.yaml" <<YAML
listen: ["127.0.0.1:$listen"]
admin: { listen: "127.0.0.1:$admin" }
pid_file: $work/g.pid
upgrade_sock: $work/g.sock
YAML
ms() { echo $(( $(date +%s%N) / 1000000 )); }
t0=$(ms)
$BIN run --etcd "http://127.0.0.1:$client" -c "$work/node.yaml" > "$work/gw.log" 2>&1 &
gw=$!
until curl -s -o /dev/null "127.0.0.1:$listen/health"; do sleep 0.01; done
start=$(( $(ms) - t0 ))
rss_start=$(awk '/VmRSS/ {print $2}' /proc/$gw/status)
# Each change: one route moved to a new path (the config keeps its size), put through
# etcd's JSON gateway, then the new path polled on one kept-alive connection, so that no
# process start (etcdctl, curl) is in the figure.
sorted=$(python3 - "$client" "$listen" "$CHANGES" <<'PY'
import base64, http.client, json, sys, time
etcd, gw, changes = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
b64 = lambda s: base64.b64encode(s.encode()).decode()
kv, web = http.client.HTTPConnection("127.0.0.1", etcd), http.client.HTTPConnection("127.0.0.1", gw)
delays = []
for i in range(1, changes + 1):
    body = json.dumps({"key": b64("/gatehouse/routes/changed"), "value": b64(f"{{ prefix: /new{i}/, upstream: u1 }}")})
    kv.request("POST", "/v3/kv/put", body)
    reply = kv.getresponse(); reply.read()
    assert reply.status == 200, reply.status
    sent = time.monotonic()
    while True:
        web.request("GET", f"/new{i}/x")
        r = web.getresponse(); r.read()
        if r.status == 502:  # routed (the upstream does not exist), no longer 404
            break
        if r.getheader("connection", "").lower() == "close":
            web.close()
    delays.append(round((time.monotonic() - sent) * 1000, 1))
print("\n".join(str(d) for d in sorted(delays)))
PY
)
rss_end=$(awk '/VmRSS/ {print $2}' /proc/$gw/status)
p50=$(echo "$sorted" | sed -n "$(( (CHANGES + 1) / 2 ))p")
p99=$(echo "$sorted" | sed -n "$(( (CHANGES * 99 + 99) / 100 ))p")
max=$(echo "$sorted" | tail -1)
echo "| routes + upstreams | start → serving | RSS at start | RSS after $CHANGES changes | put → serving p50 | p99 | max |"
echo "|---|---:|---:|---:|---:|---:|---:|"
echo "| $N + $N | ${start} ms | $((rss_start / 1024)) MiB | $((rss_end / 1024)) MiB | ${p50} ms | ${p99} ms | ${max} ms |"
