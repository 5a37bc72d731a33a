#!/usr/bin/env bash
# Graceful binary upgrade of a running gatehouse daemon, with no failed request:
#   deploy/upgrade.sh [CONFIG] [BIN]
# `BIN run -d -u` forks a new daemon that waits for the listeners on the upgrade socket;
# once that socket is there, the old process gets SIGQUIT: it hands its listeners over,
# answers with `Connection: close` so keep-alive clients move, stops accepting, finishes
# what is in flight within grace_period and exits. The pid file then names the new process.
set -euo pipefail
CONFIG="${1:-conf/gatehouse.yaml}"
BIN="${2:-target/release/gatehouse}"

# A config that does not load would make the new process fail: refuse before touching the old.
"$BIN" check -c "$CONFIG" >/dev/null || { echo "$CONFIG does not load; nothing changed" >&2; exit 1; }
setting() { awk -v key="$1:" '$1 == key {gsub(/["\x27]/, "", $2); print $2}' "$CONFIG"; }
PID_FILE=$(setting pid_file)
PID_FILE="${PID_FILE:-/tmp/gatehouse.pid}"
SOCK=$(setting upgrade_sock)
SOCK="${SOCK:-/tmp/gatehouse_upgrade.sock}"
[[ -s "$PID_FILE" ]] || { echo "no running gatehouse: $PID_FILE is missing" >&2; exit 1; }
OLD_PID=$(cat "$PID_FILE")
kill -0 "$OLD_PID" 2>/dev/null || { echo "gatehouse $OLD_PID (from $PID_FILE) is not running" >&2; exit 1; }

rm -f "$SOCK"
"$BIN" run -d -u -c "$CONFIG"
for _ in $(seq 1 50); do [[ -S "$SOCK" ]] && break; sleep 0.1; done
[[ -S "$SOCK" ]] || { echo "the new gatehouse is not waiting on $SOCK; $OLD_PID keeps serving" >&2; exit 1; }
kill -QUIT "$OLD_PID"
for _ in $(seq 1 100); do
    NEW_PID=$(cat "$PID_FILE" 2>/dev/null || true)
    if [[ -n "$NEW_PID" && "$NEW_PID" != "$OLD_PID" ]] && kill -0 "$NEW_PID" 2>/dev/null; then
        echo "gatehouse upgraded: $OLD_PID -> $NEW_PID (the old process drains, then exits)"
        exit 0
    fi
    sleep 0.1
done
echo "the new gatehouse did not take over; the old one ($OLD_PID) may still be serving" >&2
exit 1
