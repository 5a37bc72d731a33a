#!/usr/bin/env python3
"""Measurement and reporting helper for loadtest/run.sh (python3 stdlib only).

run.sh sets up the processes (origin, proxies) and loops over the matrix; this file does
the parts that are awkward in bash:

  ports N             print N free loopback TCP ports
  run-one ...         one data point: wait until the machine is quiet, warm up, run the
                      client (wrk or hey), read CPU times from /proc, check for noise (redo
                      if noisy), append a CSV row and print a one-line summary
  report CSV MD ...   medians / ranges / ratios as a Markdown table (stdout and MD file),
                      plus gatehouse vs bare Pingora when the pingora peer ran, the full chain
                      vs minimal when gatehouse-full ran, the JWT verification cost when the
                      gatehouse-hs256/-rs256 peers ran, the rate limit cost when
                      gatehouse-rl-local/-global ran, the observability cost when
                      gatehouse-observed ran and the cache section when gatehouse-cache ran;
                      with --png, a bar chart of the median req/s drawn by gnuplot
  logsummary NAME F   one line summarising the warnings/errors of a gatehouse, nginx or
                      redis-server log

CPU accounting (see /work/shared/benchmarking.md):
  * a process's CPU is utime+stime from /proc/<pid>/stat, summed over the process and all
    its descendants (nginx: master + worker), in clock ticks (CLK_TCK, from run.sh's
    `getconf CLK_TCK`);
  * CPU µs per request = CPU seconds during the client's run × 10⁶ / requests completed
    (the same as CPU% × 10⁴ / req/s); the same for the origin and, behind the
    gatehouse-rl-global peer, for its redis-server;
  * "other" CPU = busy time of the whole machine (/proc/stat) minus our processes
    (proxies, origin, the client, this helper), in cores; a run where it exceeds
    --noise-max is redone.

Clients (--client): wrk (`wrk -t1 -cN -dD --latency`, the default) or hey
(`hey -z D -c N`, Go, one process; much slower per request than wrk, so it caps req/s
sooner on the shared load core). Both go into the same CSV columns (wrk_cpu_s is the
client's CPU, whichever it is).
"""

import argparse
import csv
import json
import os
import random
import re
import resource
import shlex
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time

CLK_TCK = int(os.environ.get("CLK_TCK") or os.sysconf("SC_CLK_TCK"))

# Optional peers: gatehouse with `auth: jwt` on its route (see run.sh), compared with the
# plain `gatehouse` peer in the report's "JWT verification cost" section.
JWT_PEERS = ("gatehouse-hs256", "gatehouse-rs256")
# Optional peers: gatehouse with a never-triggering `rate_limit` on its route, counted in
# the process or in Redis; compared with `gatehouse` in the "Rate limit cost" section.
RL_PEERS = ("gatehouse-rl-local", "gatehouse-rl-global")
# Optional peer: gatehouse with the access log and metrics on, its /metrics scraped once a
# second; compared with `gatehouse` in the "Observability cost" section.
OBS_PEERS = ("gatehouse-observed",)
# Optional peer: gatehouse with `cache: true` on its route, so every measured request is a
# cache HIT; compared with `gatehouse` (proxied) in the "Cache HIT vs proxied" section.
CACHE_PEERS = ("gatehouse-cache",)
# The baseline of issue #8: bare Pingora (examples/bare_pingora.rs), compared with the
# plain `gatehouse` peer in the "gatehouse vs bare Pingora" section; the target is that
# minimal gatehouse serves at least PINGORA_TARGET × bare Pingora's req/s.
PINGORA_PEER = "pingora"
PINGORA_TARGET = 0.95
# gatehouse with the full chain on its route (JWT HS256, a local rate limit, access log,
# metrics), compared with `gatehouse` in the "Full chain vs minimal" section; target: at
# least FULL_TARGET × minimal gatehouse's req/s.
FULL_PEER = "gatehouse-full"
ALT_PEER = "gatehouse-alt"
FULL_TARGET = 0.85

CSV_FIELDS = [
    "started", "rep", "attempt", "kept", "peer", "size", "conns", "duration_s",
    "requests", "rps", "p50_ms", "p99_ms", "non2xx", "sock_errors",
    "proxy_cpu_s", "proxy_us_per_req", "origin_cpu_s", "origin_us_per_req",
    "wrk_cpu_s", "other_cores", "quiet_wait_s", "redis_cpu_s", "redis_us_per_req",
]


# ---------------------------------------------------------------------------------------
# /proc readers
# ---------------------------------------------------------------------------------------

def _stat_fields(pid):
    """Fields of /proc/<pid>/stat after the `(comm)` part (index 0 = state)."""
    with open(f"/proc/{pid}/stat") as f:
        data = f.read()
    return data[data.rindex(")") + 2:].split()


def _children_map():
    """ppid -> [pid] for every process currently visible in /proc."""
    kids = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            ppid = int(_stat_fields(name)[1])
        except (OSError, ValueError, IndexError):
            continue  # the process went away meanwhile
        kids.setdefault(ppid, []).append(int(name))
    return kids


def tree_ticks(pids):
    """utime+stime (ticks) of the given pids and all their descendants; dead pids count 0."""
    kids = _children_map()
    seen, todo, total = set(), [p for p in pids if p], 0
    while todo:
        pid = todo.pop()
        if pid in seen:
            continue
        seen.add(pid)
        try:
            f = _stat_fields(pid)
            total += int(f[11]) + int(f[12])  # utime, stime (fields 14, 15 of stat)
        except (OSError, ValueError, IndexError):
            pass
        todo.extend(kids.get(pid, []))
    return total


def alive(pid):
    """True while the process exists and is not a zombie."""
    try:
        return _stat_fields(pid)[0] != "Z"
    except OSError:
        return False


def machine_busy_ticks():
    """Busy ticks of all CPUs: user+nice+system+irq+softirq+steal (guest is inside user)."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    user, nice, system, _idle, _iowait, irq, softirq = v[:7]
    steal = v[7] if len(v) > 7 else 0
    return user + nice + system + irq + softirq + steal


def self_ticks():
    r = resource.getrusage(resource.RUSAGE_SELF)
    return (r.ru_utime + r.ru_stime) * CLK_TCK


def children_cpu_s():
    """CPU seconds of this helper's reaped children (i.e. the wrk runs)."""
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


# ---------------------------------------------------------------------------------------
# wrk and hey
# ---------------------------------------------------------------------------------------

_UNIT_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0, "h": 3600000.0}


def _ms(text):
    m = re.fullmatch(r"([\d.]+)(us|ms|s|m|h)", text)
    if not m:
        raise ValueError(f"unparsable wrk duration {text!r}")
    return float(m.group(1)) * _UNIT_MS[m.group(2)]


def parse_wrk(out):
    """requests, rps, p50/p99 latency (ms), non-2xx/3xx count, socket errors from wrk output."""
    res = {"non2xx": 0, "sock_errors": 0}
    m = re.search(r"^\s*(\d+) requests in ([\d.]+)(\w+),", out, re.M)
    if not m:
        raise ValueError("no 'N requests in' line in wrk output")
    res["requests"] = int(m.group(1))
    m = re.search(r"^Requests/sec:\s+([\d.]+)", out, re.M)
    res["rps"] = float(m.group(1))
    for pct, key in (("50", "p50_ms"), ("99", "p99_ms")):
        m = re.search(rf"^\s+{pct}(?:\.000)?%\s+(\S+)", out, re.M)
        res[key] = _ms(m.group(1)) if m else float("nan")
    m = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    if m:
        res["non2xx"] = int(m.group(1))
    m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    if m:
        res["sock_errors"] = sum(int(x) for x in m.groups())
    return res


def parse_hey(out):
    """The same fields as parse_wrk, from hey's output (`hey -z D -c N URL`, Debian 0.1.4):
    rps from "Requests/sec:" (hey counts failed requests in it too), p50/p99 from the
    "Latency distribution" lines (in seconds, 4 decimals: 0.1 ms resolution), requests =
    the sum of the "Status code distribution" counts (responses received), non2xx = those
    with a status outside 2xx/3xx, sock_errors = the sum of the "Error distribution" counts
    (connection and timeout errors: requests without a response)."""
    res = {"non2xx": 0, "sock_errors": 0, "requests": 0}
    m = re.search(r"^\s*Requests/sec:\s+([\d.]+)", out, re.M)
    if not m:
        raise ValueError("no 'Requests/sec:' line in hey output")
    res["rps"] = float(m.group(1))
    for pct, key in (("50", "p50_ms"), ("99", "p99_ms")):
        m = re.search(rf"^\s+{pct}% in ([\d.]+) secs", out, re.M)
        res[key] = float(m.group(1)) * 1000.0 if m else float("nan")
    # "Status code distribution:" then "  [200]\t1234 responses" lines, up to the next
    # section ("Error distribution:", lines "  [12]\tGet ...: connection refused").
    m = re.search(r"^Status code distribution:\n(.*?)(?=^\S|\Z)", out, re.M | re.S)
    if m:
        for code, n in re.findall(r"^\s+\[(\d+)\]\s+(\d+) responses", m.group(1), re.M):
            res["requests"] += int(n)
            if not 200 <= int(code) < 400:
                res["non2xx"] += int(n)
    m = re.search(r"^Error distribution:\n(.*?)(?=^\S|\Z)", out, re.M | re.S)
    if m:
        res["sock_errors"] = sum(int(n) for n in re.findall(r"^\s+\[(\d+)\]", m.group(1), re.M))
    if res["requests"] == 0 and res["sock_errors"] == 0:
        raise ValueError("no status code or error counts in hey output")
    return res


def client_args(client, conns, duration, header, url, latency=True):
    """The client's arguments for one run: `wrk -t1 -cN -dD [--latency] [-H h] URL` or
    `hey -z D -c N [-H h] URL` (hey always prints its latency distribution)."""
    if client == "hey":
        if re.fullmatch(r"\d+", duration):   # wrk takes bare seconds, Go durations need a unit
            duration += "s"
        return ["-z", duration, "-c", str(conns)] + header + [url]
    return ["-t1", f"-c{conns}", f"-d{duration}"] + (["--latency"] if latency else []) + header + [url]


def wait_quiet(max_cores, timeout, sample=1.0):
    """Wait until the whole machine uses < max_cores over a `sample`-second window.
    Returns (seconds waited, was quiet)."""
    t0 = time.monotonic()
    while True:
        b0, s0 = machine_busy_ticks(), time.monotonic()
        time.sleep(sample)
        busy = (machine_busy_ticks() - b0) / CLK_TCK / (time.monotonic() - s0)
        waited = time.monotonic() - t0
        if busy < max_cores:
            return waited, True
        if waited >= timeout:
            return waited, False


def cmd_run_one(a):
    client = shlex.split(a.client_cmd)               # e.g. taskset -c 1 wrk
    parse = parse_hey if a.client == "hey" else parse_wrk
    url = a.url
    header = ["-H", a.header] if a.header else []   # the JWT peers' bearer token
    proxy = [a.proxy_pid] if a.proxy_pid else []
    origin = [a.origin_pid]
    redis = [a.redis_pid] if a.redis_pid else []      # gatehouse-rl-global's redis-server
    ours = [int(p) for p in a.ours.split(",") if p and p != "0"]
    started = time.strftime("%Y-%m-%dT%H:%M:%S")
    row = None

    for attempt in range(1, a.redo + 2):
        waited, quiet = wait_quiet(a.quiet_max, a.quiet_timeout)
        if not quiet:
            print(f"    machine still busy after {waited:.0f}s; measuring anyway", file=sys.stderr)

        # Warm-up: same client, connections and URL, output discarded.
        if a.warmup != "0" and a.warmup != "0s":
            subprocess.run(client + client_args(a.client, a.conns, a.warmup, header, url, latency=False),
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)

        # Measured run, bracketed by CPU snapshots.
        p0, o0, r0, all0 = tree_ticks(proxy), tree_ticks(origin), tree_ticks(redis), tree_ticks(ours)
        m0, me0, w0, t0 = machine_busy_ticks(), self_ticks(), children_cpu_s(), time.monotonic()
        proc = subprocess.run(client + client_args(a.client, a.conns, a.duration, header, url),
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        elapsed = time.monotonic() - t0
        p1, o1, r1, all1 = tree_ticks(proxy), tree_ticks(origin), tree_ticks(redis), tree_ticks(ours)
        m1, me1, w1 = machine_busy_ticks(), self_ticks(), children_cpu_s()
        out = proc.stdout

        with open(a.raw, "a") as f:
            f.write(f"### {started} rep={a.rep} attempt={attempt} peer={a.peer} "
                    f"size={a.size} conns={a.conns} client={a.client} url={url}\n{out}\n")
        # All our long-lived processes must have survived (a vanished one would also
        # falsify the "other CPU" figure).
        dead = [pid for pid in ours + [a.origin_pid, a.proxy_pid] if pid and not alive(pid)]
        if dead:
            print(f"process(es) {', '.join(map(str, sorted(set(dead))))} exited during the "
                  f"{a.peer} {a.size} c={a.conns} run (see their logs); {a.client} said:\n{out}",
                  file=sys.stderr)
            sys.exit(3)
        if proc.returncode != 0:
            print(f"{a.client} failed (exit {proc.returncode}):\n{out}", file=sys.stderr)
            sys.exit(2)
        try:
            w = parse(out)
        except (ValueError, AttributeError) as e:
            print(f"cannot parse {a.client} output ({e}):\n{out}", file=sys.stderr)
            sys.exit(2)

        req = max(w["requests"], 1)
        proxy_s = (p1 - p0) / CLK_TCK
        origin_s = (o1 - o0) / CLK_TCK
        redis_s = (r1 - r0) / CLK_TCK
        wrk_s = w1 - w0
        other_ticks = (m1 - m0) - (all1 - all0) - wrk_s * CLK_TCK - (me1 - me0)
        other = max(other_ticks, 0) / CLK_TCK / elapsed
        row = {
            "started": started, "rep": a.rep, "attempt": attempt, "kept": 1,
            "peer": a.peer, "size": a.size, "conns": a.conns,
            "duration_s": f"{elapsed:.2f}", "requests": w["requests"],
            "rps": f"{w['rps']:.1f}", "p50_ms": f"{w['p50_ms']:.3f}", "p99_ms": f"{w['p99_ms']:.3f}",
            "non2xx": w["non2xx"], "sock_errors": w["sock_errors"],
            "proxy_cpu_s": f"{proxy_s:.2f}" if proxy else "",
            "proxy_us_per_req": f"{proxy_s * 1e6 / req:.2f}" if proxy else "",
            "origin_cpu_s": f"{origin_s:.2f}",
            "origin_us_per_req": f"{origin_s * 1e6 / req:.2f}",
            "wrk_cpu_s": f"{wrk_s:.2f}", "other_cores": f"{other:.2f}",
            "quiet_wait_s": f"{waited:.1f}",
            "redis_cpu_s": f"{redis_s:.2f}" if redis else "",
            "redis_us_per_req": f"{redis_s * 1e6 / req:.2f}" if redis else "",
        }
        noisy = other > a.noise_max
        last = attempt == a.redo + 1
        if noisy and not last:
            row["kept"] = 0
        write_row(a.csv, row)

        errs = w["non2xx"] + w["sock_errors"]
        cpu = f"{row['proxy_us_per_req']} µs/req" if proxy else "(no proxy)"
        if redis:
            cpu += f" + redis {row['redis_us_per_req']}"
        print(f"    {a.peer:<19} {a.size:>4} c={a.conns:<4} rep {a.rep}: {w['rps']:>9.0f} req/s  "
              f"p50 {_lat(w['p50_ms']):>6} p99 {_lat(w['p99_ms']):>6} ms  {cpu:<16} other {other:.2f} cores"
              + (f"  ERRORS {errs}" if errs else "")
              + ("  NOISY, redoing" if noisy and not last else "  NOISY (kept)" if noisy else ""))
        if not noisy:
            break


def write_row(path, row):
    new = not os.path.exists(path) or os.path.getsize(path) == 0
    with open(path, "a", newline="") as f:
        w = csv.DictWriter(f, fieldnames=CSV_FIELDS)
        if new:
            w.writeheader()
        w.writerow(row)


def cmd_ports(a):
    print(" ".join(str(port) for port in free_ports(a.n)))


def free_ports(n):
    """N distinct ports free now, for servers a harness starts later.

    Taken at random below the kernel's ephemeral range (as tests/common's free_port does):
    a port from bind(":0") is one the outgoing connections of a harness running in
    parallel (wrk's, the proxies') can take as their local port before the server binds
    it. Random, so that harnesses started at the same moment do not pick the same ones.
    """
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            ephemeral_start = int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        ephemeral_start = 32768
    low, high = 10_000, max(ephemeral_start, 20_000)
    rng = random.SystemRandom()
    socks = []
    for port in rng.sample(range(low, high), high - low):
        if len(socks) == n:
            break
        s = socket.socket()
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            s.close()
            continue
        socks.append(s)
    if len(socks) < n:
        sys.exit(f"helper.py ports: only {len(socks)} of {n} ports below {high} are free")
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


# ---------------------------------------------------------------------------------------
# log summary
# ---------------------------------------------------------------------------------------

# The client closing a connection with a request in flight: wrk does that to every busy
# connection when it stops, so a few per connection and wrk run are expected.
_CLIENT_GONE = re.compile(r"Downstream (ConnectionClosed|WriteError)|Broken pipe|Connection reset by peer")

# gatehouse's warning when a global rate-limit decision could not be made by Redis (logged
# at most once a second, with the running count of such policy decisions).
_REDIS_FALLBACK = re.compile(r"rate-limit decisions follow on_redis_error \((\d+) so far\)")


def _log_records(path):
    """(level, message) of every warning-or-worse line of a gatehouse JSON log, an nginx
    error log or a redis-server log."""
    # redis-server logs its startup banner at warning level, with warnings that do not
    # matter here (no config file: it gets arguments; memory overcommit: only for
    # background saves, which are off), so only what follows "Ready to accept" counts.
    redis_ready = False
    for line in open(path, errors="replace"):
        line = line.strip()
        if line.startswith("{"):
            if '"level"' not in line:
                continue  # an access-log line (gatehouse-observed writes one per request)
            try:
                j = json.loads(line)
            except ValueError:
                continue
            if j.get("level") in ("WARN", "ERROR"):
                yield j["level"], j.get("msg", "")
        elif re.match(r"\d+:[XCSM] ", line):
            # redis-server: "pid:role day month year time LEVEL message", # = warning.
            if "Ready to accept connections" in line:
                redis_ready = True
            m = re.match(r"\d+:[XCSM] .*? \d\d:\d\d:\d\d\.\d+ # (.*)", line)
            if m and redis_ready:
                yield "WARN", m.group(1)
        else:
            m = re.match(r"\S+ \S+ \[(\w+)\] \d+#\d+: (?:\*\d+ )?(.*)", line)
            if m and m.group(1) in ("warn", "error", "crit", "alert", "emerg"):
                yield m.group(1).upper(), m.group(2)


def cmd_logsummary(a):
    recs = list(_log_records(a.file))
    if not recs:
        return
    levels = {}
    gone, other, fallbacks = 0, {}, 0
    for level, msg in recs:
        levels[level] = levels.get(level, 0) + 1
        m = _REDIS_FALLBACK.search(msg)
        if m:
            fallbacks = max(fallbacks, int(m.group(1)))
        if _CLIENT_GONE.search(msg):
            gone += 1
        else:
            key = (level, re.sub(r"\d+", "N", re.split(r", client: | context: peer addr", msg)[0])[:150])
            other[key] = other.get(key, 0) + 1
    counts = ", ".join(f"{n} {lv}" for lv, n in sorted(levels.items()))
    text = f"Log of {a.name}: {counts} line(s)"
    if gone:
        text += (f"; {gone} of them are a client closing mid-request (wrk stops with requests "
                 f"in flight at the end of each run, warm-ups included: expected)")
    if other:
        top = sorted(other.items(), key=lambda kv: -kv[1])[:3]
        text += "; other: " + "; ".join(f"{n}× {lv} `{msg}`" for (lv, msg), n in top)
    if fallbacks:
        text += (f". **At least {fallbacks} rate-limit decision(s) were made by the "
                 f"on_redis_error policy, not by Redis** (the last count logged)")
    print(text)


# ---------------------------------------------------------------------------------------
# report
# ---------------------------------------------------------------------------------------

def _k(x):
    return f"{x / 1000:.1f}k" if x >= 1000 else f"{x:.0f}"


def _lat(ms):
    """A latency in ms: 3 decimals below 1 ms (one connection: tens of µs), else 2."""
    return f"{ms:.3f}" if ms < 1 else f"{ms:.2f}"


def _num(rows, key):
    return [float(r[key]) for r in rows if r[key] not in ("", "nan")]


def _med(vals):
    return statistics.median(vals) if vals else None


def _ratio_table(out, sizes, conns, med, peer, to, p99=False):
    """`peer` next to `to` in each body × conns cell: req/s and CPU µs/req of both and
    their ratios peer / to, and with `p99` both p99s."""
    a, b = peer.removeprefix("gatehouse-"), to
    head = (f"| body | conns | req/s {a} | req/s {b} | req/s ratio {a}/{b} "
            f"| µs/req {a} | µs/req {b} | CPU µs/req ratio {a}/{b} |")
    out.append(head + (f" p99 ms {a} | p99 ms {b} |" if p99 else ""))
    out.append("|---|---:" + "|---:" * (8 if p99 else 6) + "|")
    for s in sizes:
        for c in conns:
            x, y = med.get((s, c, peer)), med.get((s, c, to))
            if not x or not y:
                continue
            row = (f"| {s} | {c} | {_k(x['rps'])} | {_k(y['rps'])} | {x['rps'] / y['rps']:.2f} "
                   f"| {x['us']:.1f} | {y['us']:.1f} | {x['us'] / y['us']:.2f} |")
            out.append(row + (f" {_lat(x['p99'])} | {_lat(y['p99'])} |" if p99 else ""))


def cmd_report(a):
    with open(a.csv) as f:
        rows = [r for r in csv.DictReader(f) if r["kept"] == "1"]
    if not rows:
        sys.exit("no runs recorded")

    def order(seq):  # keep the order in which things first appear in the CSV
        return list(dict.fromkeys(seq))

    sizes = order(r["size"] for r in rows)
    conns = order(r["conns"] for r in rows)
    peers = order(r["peer"] for r in rows)
    groups = {}
    for r in rows:
        groups.setdefault((r["size"], r["conns"], r["peer"]), []).append(r)

    out = []
    out.append(f"# gatehouse load test {a.stamp}\n")
    for line in a.meta:
        out.append(f"- {line}")
    out.append("")
    out.append("Medians over the reps; req/s range is min–max. CPU µs/req is the CPU time of the "
               "proxy process tree (or the origin) divided by the requests the client completed — "
               "lower is better. errors = non-2xx/3xx responses + socket errors, summed over runs.\n")
    out.append("| body | conns | peer | req/s | req/s range | p50 ms | p99 ms | proxy CPU µs/req "
               "| origin CPU µs/req | errors | runs |")
    out.append("|---|---:|---|---:|---|---:|---:|---:|---:|---:|---:|")
    med = {}
    for s in sizes:
        for c in conns:
            for p in peers:
                g = groups.get((s, c, p))
                if not g:
                    continue
                rps = _num(g, "rps")
                pus = _num(g, "proxy_us_per_req")
                ous = _num(g, "origin_us_per_req")
                p50 = _num(g, "p50_ms")
                p99 = _num(g, "p99_ms")
                rus = [float(r["redis_us_per_req"]) for r in g if r.get("redis_us_per_req")]
                errs = sum(int(r["non2xx"]) + int(r["sock_errors"]) for r in g)
                noisy = sum(1 for r in g if float(r["other_cores"]) > a.noise_max)
                med[(s, c, p)] = {"rps": _med(rps), "us": _med(pus), "p50": _med(p50),
                                  "p99": _med(p99), "redis_us": _med(rus), "origin_us": _med(ous)}
                out.append(
                    f"| {s} | {c} | {p} | {_k(_med(rps))} | {_k(min(rps))}–{_k(max(rps))} "
                    f"| {_lat(_med(p50))} | {_lat(_med(p99))} | {f'{_med(pus):.1f}' if pus else '–'} "
                    f"| {_med(ous):.1f} | {errs} | {len(g)}{f' ({noisy} noisy)' if noisy else ''} |")

    if "gatehouse" in peers and "nginx" in peers:
        out.append("")
        out.append("gatehouse / nginx (from the medians above): req/s ratio > 1 means gatehouse "
                   "serves more; CPU ratio > 1 means gatehouse spends more CPU per request.\n")
        _ratio_table(out, sizes, conns, med, "gatehouse", "nginx")

    # gatehouse vs bare Pingora (issue #8): the same framework with nothing of gatehouse on
    # top, so gatehouse/pingora is what gatehouse's own code costs, and pingora/nginx what
    # the framework costs next to nginx.
    if PINGORA_PEER in peers and ("gatehouse" in peers or "nginx" in peers):
        out.append("")
        out.append("## gatehouse vs bare Pingora\n")
        out.append(f"pingora is bare Pingora (examples/bare_pingora.rs: one listener, round robin over "
                   f"the origin, no routing, filters, logging or metrics), built with the same profile "
                   f"and Pingora version as gatehouse. gatehouse / pingora: req/s ratio < 1 means "
                   f"gatehouse serves fewer requests per second, CPU ratio > 1 that it spends more CPU "
                   f"per request; target (issue #8): req/s ratio ≥ {PINGORA_TARGET:.2f}. "
                   f"pingora / nginx: the framework alone next to nginx.\n")
        out.append("| body | conns | req/s gatehouse | req/s pingora | req/s ratio gatehouse/pingora "
                   f"| ≥ {PINGORA_TARGET:.2f}× | µs/req gatehouse | µs/req pingora "
                   "| CPU µs/req ratio gatehouse/pingora | req/s ratio pingora/nginx "
                   "| CPU µs/req ratio pingora/nginx |")
        out.append("|---|---:|---:|---:|---:|---|---:|---:|---:|---:|---:|")
        met = cells = 0
        for s in sizes:
            for c in conns:
                b = med.get((s, c, PINGORA_PEER))
                if not b:
                    continue
                g, n = med.get((s, c, "gatehouse")), med.get((s, c, "nginx"))
                cols = [s, c, _k(g["rps"]) if g else "–", _k(b["rps"])]
                if g:
                    ok = g["rps"] / b["rps"] >= PINGORA_TARGET
                    met, cells = met + ok, cells + 1
                    cols += [f"{g['rps'] / b['rps']:.2f}", "met" if ok else "**missed**",
                             f"{g['us']:.1f}", f"{b['us']:.1f}", f"{g['us'] / b['us']:.2f}"]
                else:
                    cols += ["–", "–", "–", f"{b['us']:.1f}", "–"]
                cols += [f"{b['rps'] / n['rps']:.2f}" if n else "–", f"{b['us'] / n['us']:.2f}" if n else "–"]
                out.append("| " + " | ".join(str(x) for x in cols) + " |")
        if cells:
            out.append("")
            out.append(f"gatehouse ≥ {PINGORA_TARGET:.2f}× bare Pingora's req/s: met in {met} of {cells} "
                       f"body × conns cell(s).")

    # A/B of a setting: gatehouse-alt is gatehouse plus the top-level keys in ALT (run.sh
    # says which in the peers line), interleaved with it in the same run.
    if "gatehouse" in peers and ALT_PEER in peers:
        out.append("")
        out.append("## gatehouse-alt vs gatehouse\n")
        out.append("gatehouse-alt is the minimal gatehouse with the top-level keys given in ALT (see the "
                   "peers line above). req/s ratio > 1: the setting serves more; CPU ratio < 1: it "
                   "spends less CPU per request.\n")
        _ratio_table(out, sizes, conns, med, ALT_PEER, "gatehouse", p99=True)

    # Full chain vs minimal: gatehouse-full has on its route what a typical deployment turns
    # on (JWT HS256 with a valid token, a local rate limit that never triggers, the access
    # log and metrics, /metrics scraped once a second), gatehouse nothing but the proxying.
    if "gatehouse" in peers and FULL_PEER in peers:
        out.append("")
        out.append("## Full chain vs minimal\n")
        out.append(f"gatehouse-full runs the same route as gatehouse (minimal: proxy only) with `auth: jwt` "
                   f"(HS256, a valid bearer token in every request), a local `rate_limit` that never "
                   f"triggers, `access_log: true` (one JSON line per request, to a file) and `metrics: true` "
                   f"(admin listener's /metrics scraped once a second). req/s ratio < 1 means fewer "
                   f"requests per second than minimal; target (issue #8): ≥ {FULL_TARGET:.2f}. extra µs/req "
                   f"= difference of the CPU µs/req medians to minimal; p50 / p99 from the same runs.\n")
        out.append(f"| body | conns | peer | req/s | req/s ratio to minimal | ≥ {FULL_TARGET:.2f}× "
                   "| req/s ratio to nginx | CPU µs/req | extra µs/req | p50 ms | p99 ms |")
        out.append("|---|---:|---|---:|---:|---|---:|---:|---:|---:|---:|")
        met = cells = 0
        for s in sizes:
            for c in conns:
                base = med.get((s, c, "gatehouse"))
                f = med.get((s, c, FULL_PEER))
                if not base or not f:
                    continue
                n = med.get((s, c, "nginx"))
                ok = f["rps"] / base["rps"] >= FULL_TARGET
                met, cells = met + ok, cells + 1
                for label, j in (("gatehouse (minimal)", base), (FULL_PEER, f)):
                    full = j is f
                    target = ("met" if ok else "**missed**") if full else "–"
                    to_nginx = f"{j['rps'] / n['rps']:.2f}" if n else "–"
                    extra = f"{j['us'] - base['us']:+.1f}" if full else "–"
                    out.append(f"| {s} | {c} | {label} | {_k(j['rps'])} | {j['rps'] / base['rps']:.2f} "
                               f"| {target} | {to_nginx} | {j['us']:.1f} | {extra} "
                               f"| {_lat(j['p50'])} | {_lat(j['p99'])} |")
        if cells:
            out.append("")
            out.append(f"gatehouse-full ≥ {FULL_TARGET:.2f}× minimal gatehouse's req/s: met in {met} of "
                       f"{cells} body × conns cell(s).")

    # JWT verification cost: the JWT peers are gatehouse with `auth: jwt` on the same route,
    # so their difference to `gatehouse` (proxy only) is what verifying the token costs.
    jwt_peers = [p for p in JWT_PEERS if p in peers]
    if "gatehouse" in peers and jwt_peers:
        out.append("")
        out.append("## JWT verification cost\n")
        out.append("gatehouse-hs256 / gatehouse-rs256 run the same route as gatehouse (proxy only) "
                   "with `auth: jwt` (HS256 secret / RS256 public key) and get a valid bearer token "
                   "in every request. extra µs/req = difference of the CPU µs/req medians to proxy "
                   "only; req/s ratio < 1 means fewer requests per second than proxy only.\n")
        out.append("| body | conns | peer | req/s | req/s ratio to proxy only "
                   "| CPU µs/req | extra µs/req |")
        out.append("|---|---:|---|---:|---:|---:|---:|")
        for s in sizes:
            for c in conns:
                base = med.get((s, c, "gatehouse"))
                if not base:
                    continue
                out.append(f"| {s} | {c} | gatehouse (proxy only) | {_k(base['rps'])} | 1.00 "
                           f"| {base['us']:.1f} | – |")
                for p in jwt_peers:
                    j = med.get((s, c, p))
                    if not j:
                        continue
                    out.append(f"| {s} | {c} | {p} | {_k(j['rps'])} | {j['rps'] / base['rps']:.2f} "
                               f"| {j['us']:.1f} | {j['us'] - base['us']:+.1f} |")

    # Rate limit cost: the same route with a never-triggering `rate_limit`, counted in the
    # process (local) or by a Redis round trip per request (global). The proxy's CPU does
    # not include redis-server's, which gets its own column; latency from the same runs.
    rl_peers = [p for p in RL_PEERS if p in peers]
    if "gatehouse" in peers and rl_peers:
        out.append("")
        out.append("## Rate limit cost\n")
        out.append("gatehouse-rl-local / gatehouse-rl-global run the same route as gatehouse (proxy "
                   "only) with a `rate_limit` that never triggers, decided in the process / by one "
                   "Lua script round trip per request to Redis. extra µs/req = difference of the "
                   "proxy CPU µs/req medians to proxy only; it does **not** include the CPU of "
                   "redis-server, shown apart (Redis CPU µs/req: proxy extra + Redis is the whole "
                   "CPU price of a global decision). p50 / p99 are the medians of wrk's percentiles "
                   "in the same runs, added = difference to proxy only. With many connections "
                   "latency is mostly queueing (Little's law); with one connection (CONNS=1) it is "
                   "the latency of each request.\n")
        out.append("| body | conns | peer | req/s | req/s ratio to proxy only | CPU µs/req "
                   "| extra µs/req | Redis CPU µs/req | p50 ms | p99 ms | added p50 µs | added p99 µs |")
        out.append("|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
        for s in sizes:
            for c in conns:
                base = med.get((s, c, "gatehouse"))
                if not base:
                    continue
                out.append(f"| {s} | {c} | gatehouse (proxy only) | {_k(base['rps'])} | 1.00 "
                           f"| {base['us']:.1f} | – | – | {_lat(base['p50'])} | {_lat(base['p99'])} | – | – |")
                for p in rl_peers:
                    j = med.get((s, c, p))
                    if not j:
                        continue
                    rus = f"{j['redis_us']:.1f}" if j["redis_us"] is not None else "–"
                    out.append(f"| {s} | {c} | {p} | {_k(j['rps'])} | {j['rps'] / base['rps']:.2f} "
                               f"| {j['us']:.1f} | {j['us'] - base['us']:+.1f} | {rus} "
                               f"| {_lat(j['p50'])} | {_lat(j['p99'])} "
                               f"| {(j['p50'] - base['p50']) * 1000:+.0f} | {(j['p99'] - base['p99']) * 1000:+.0f} |")

    # Observability cost: the same route with the access log (one JSON line per request to
    # stderr, i.e. the peer's log file) and the Prometheus collectors on, plus the admin
    # listener answering a scrape of /metrics every second during the runs.
    obs_peers = [p for p in OBS_PEERS if p in peers]
    if "gatehouse" in peers and obs_peers:
        out.append("")
        out.append("## Observability cost\n")
        out.append("gatehouse-observed runs the same route as gatehouse (proxy only: `access_log: false`, "
                   "`metrics: false`, no admin listener) with `access_log: true` (one JSON line per "
                   "request through the `log` crate to stderr, redirected to a file) and `metrics: true` "
                   "(Prometheus collectors updated per request), its admin listener's /metrics scraped "
                   "once a second during the runs. extra µs/req = difference of the CPU µs/req medians "
                   "to proxy only; p50 / p99 are the medians of wrk's percentiles in the same runs.\n")
        out.append("| body | conns | peer | req/s | req/s ratio to proxy only | CPU µs/req "
                   "| extra µs/req | p50 ms | p99 ms |")
        out.append("|---|---:|---|---:|---:|---:|---:|---:|---:|")
        for s in sizes:
            for c in conns:
                base = med.get((s, c, "gatehouse"))
                if not base:
                    continue
                out.append(f"| {s} | {c} | gatehouse (proxy only) | {_k(base['rps'])} | 1.00 "
                           f"| {base['us']:.1f} | – | {_lat(base['p50'])} | {_lat(base['p99'])} |")
                for p in obs_peers:
                    j = med.get((s, c, p))
                    if not j:
                        continue
                    out.append(f"| {s} | {c} | {p} | {_k(j['rps'])} | {j['rps'] / base['rps']:.2f} "
                               f"| {j['us']:.1f} | {j['us'] - base['us']:+.1f} "
                               f"| {_lat(j['p50'])} | {_lat(j['p99'])} |")

    # Cache HIT vs proxied: the same route with `cache: true`; the origin is silent about
    # freshness, so after the check requests every measured request is answered from the
    # cache (the origin's CPU per request shows it: ~0 for the cache peer).
    cache_peers = [p for p in CACHE_PEERS if p in peers]
    if "gatehouse" in peers and cache_peers:
        out.append("")
        out.append("## Cache HIT vs proxied\n")
        out.append("gatehouse-cache runs the same route as gatehouse (proxy only) with `cache: true`: "
                   "every measured request is a HIT served from gatehouse's memory, the origin is not "
                   "asked (its CPU µs/req column shows it). req/s ratio > 1 means the cache serves "
                   "more requests per second than proxying them.\n")
        out.append("| body | conns | peer | req/s | req/s ratio to proxied | req/s ratio to nginx "
                   "| CPU µs/req | origin CPU µs/req | p50 ms | p99 ms |")
        out.append("|---|---:|---|---:|---:|---:|---:|---:|---:|---:|")
        for s in sizes:
            for c in conns:
                base = med.get((s, c, "gatehouse"))
                if not base:
                    continue
                n = med.get((s, c, "nginx"))
                for p in ["gatehouse"] + cache_peers:
                    j = med.get((s, c, p))
                    if not j:
                        continue
                    to_nginx = f"{j['rps'] / n['rps']:.2f}" if n else "–"
                    origin_us = f"{j['origin_us']:.1f}" if j.get("origin_us") is not None else "–"
                    label = "gatehouse (proxied)" if p == "gatehouse" else p
                    out.append(f"| {s} | {c} | {label} | {_k(j['rps'])} | {j['rps'] / base['rps']:.2f} "
                               f"| {to_nginx} | {j['us']:.1f} | {origin_us} "
                               f"| {_lat(j['p50'])} | {_lat(j['p99'])} |")

    all_rows = list(csv.DictReader(open(a.csv)))
    redone = sum(1 for r in all_rows if r["kept"] == "0")
    noisy_kept = sum(1 for r in rows if float(r["other_cores"]) > a.noise_max)
    max_other = max(float(r["other_cores"]) for r in rows)
    out.append("")
    out.append(f"Noise: CPU used by other processes during kept runs ≤ {max_other:.2f} cores "
               f"(threshold {a.noise_max}); {redone} run(s) redone, {noisy_kept} kept noisy.")
    for line in a.note:
        out.append(line)
    text = "\n".join(out) + "\n"
    sys.stdout.write(text)
    with open(a.md, "w") as f:
        f.write(text)
    if a.png:
        title = f"gatehouse load test {a.stamp}: median req/s" + (f" ({a.client})" if a.client else "")
        draw_chart(a.png, title, sizes, conns, peers, med)


# ---------------------------------------------------------------------------------------
# chart
# ---------------------------------------------------------------------------------------

# Fixed colours for the usual peers, so that charts of different runs read alike; any other
# peer gets one of the spare colours.
_PEER_COLOURS = {
    "pingora": "#7f7f7f", "gatehouse": "#1f77b4", "gatehouse-full": "#17becf",
    "gatehouse-cache": "#2ca02c", "gatehouse-alt": "#9467bd", "nginx": "#ff7f0e", "direct": "#c7c7c7",
}
_SPARE_COLOURS = ["#9467bd", "#8c564b", "#e377c2", "#bcbd22", "#d62728", "#aec7e8", "#98df8a"]


def _size_label(size):
    return f"{size[:-1]} KiB" if size.endswith("k") else f"{size} B"


def _warn(msg):
    print(f"\nWARNING: {msg}\n", file=sys.stderr)


def draw_chart(png, title, sizes, conns, peers, med):
    """Grouped bars of the median req/s: one group per (size, conns), one bar per peer,
    the value (k req/s) above each bar. Written by gnuplot (pngcairo if it has it, else
    png) from a small .dat in a temp dir. A missing or failing gnuplot is a warning, not
    an error: the Markdown report is already written."""
    gnuplot = shutil.which("gnuplot")
    if not gnuplot:
        _warn(f"gnuplot not found: no chart ({png}). Install it (apt-get install -y gnuplot-nox).")
        return
    groups = [(s, c) for s in sizes for c in conns if any((s, c, p) in med for p in peers)]
    if not groups:
        return
    terms = subprocess.run([gnuplot, "-e", "set terminal"], capture_output=True, text=True)
    term = "pngcairo" if re.search(r"^\s*pngcairo\s", terms.stdout + terms.stderr, re.M) else "png"
    npeers = len(peers)
    width = max(900, 160 + len(groups) * (npeers * 34 + 40))
    spare = iter(_SPARE_COLOURS * 3)
    colours = [_PEER_COLOURS.get(p) or next(spare) for p in peers]
    with tempfile.TemporaryDirectory(prefix="gatehouse-chart.") as d:
        dat = os.path.join(d, "chart.dat")
        with open(dat, "w") as f:
            f.write("group\t" + "\t".join(peers) + "\n")
            for s, c in groups:
                vals = [med.get((s, c, p)) for p in peers]
                f.write(f"{_size_label(s)}, {c} conns\t"
                        + "\t".join(f"{v['rps']:.1f}" if v else "-" for v in vals) + "\n")
        font = 'font "sans,10"' if term == "pngcairo" else ""
        small = 'font ",8"'
        script = [
            f'set terminal {term} size {width},600 {font}',
            f'set output "{png}"',
            f'set title "{title}"',
            'set datafile separator "\t"',
            'set datafile missing "-"',
            'set style data histogram',
            'set style histogram cluster gap 1',
            'set style fill solid 0.9 border rgb "#404040"',
            'set boxwidth 0.95',
            'set ylabel "median req/s (higher is better)"',
            'set yrange [0:*]',
            'set offsets 0, 0, graph 0.12, 0',   # room for the value labels
            'set format y "%.0s%c"',
            'set grid ytics',
            'set xtics nomirror',
            'set ytics nomirror',
            'set key outside bottom center horizontal autotitle columnheader',   # all plots skip the header row
            f'set xrange [-0.6:{len(groups) - 0.4}]',
            'set bmargin 5',                      # the key below the group labels
            f'n = {npeers}',
            f'array colour[{npeers}] = [' + ", ".join(f'"{x}"' for x in colours) + ']',
            # bar i (1-based) of the group in row $0 is centred at $0 + (i - (n+1)/2) / (n+1)
            'plot for [i=1:n] "' + dat + '" using (column(i+1)):xtic(1) title columnheader(i+1) '
            'lc rgb colour[i], \\',
            '     for [i=1:n] "' + dat + '" using ($0 + (i - (n+1)/2.0) / (n+1.0)):(column(i+1)):'
            '(sprintf("%.1fk", column(i+1) / 1000.0)) with labels rotate by 90 left offset 0,0.4 '
            f'{small} notitle',
        ]
        gp = os.path.join(d, "chart.gp")
        with open(gp, "w") as f:
            f.write("\n".join(script) + "\n")
        proc = subprocess.run([gnuplot, gp], capture_output=True, text=True)
        if proc.returncode != 0 or not os.path.exists(png) or os.path.getsize(png) == 0:
            _warn(f"gnuplot failed (exit {proc.returncode}), no chart ({png}):\n{proc.stderr.strip()}")
            return
    print(f"chart: {png} ({len(groups)} group(s) × {npeers} peer(s), gnuplot {term})", file=sys.stderr)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)

    p = sub.add_parser("ports")
    p.add_argument("n", type=int)
    p.set_defaults(fn=cmd_ports)

    p = sub.add_parser("run-one")
    p.add_argument("--peer", required=True)
    p.add_argument("--size", required=True)
    p.add_argument("--conns", required=True)
    p.add_argument("--rep", required=True)
    p.add_argument("--url", required=True)
    p.add_argument("--header", default="", help="a request header for the client's -H ('' = none)")
    p.add_argument("--client", choices=("wrk", "hey"), default="wrk", help="the load generator")
    p.add_argument("--client-cmd", "--wrk", dest="client_cmd", required=True,
                   help="client command prefix, e.g. 'taskset -c 1 wrk' or 'taskset -c 1 hey'")
    p.add_argument("--duration", required=True)
    p.add_argument("--warmup", required=True)
    p.add_argument("--proxy-pid", type=int, default=0, help="0 for the direct peer")
    p.add_argument("--origin-pid", type=int, required=True)
    p.add_argument("--redis-pid", type=int, default=0, help="a redis-server whose CPU to report (0 = none)")
    p.add_argument("--ours", default="", help="comma-separated pids of all our long-lived processes")
    p.add_argument("--quiet-max", type=float, default=0.15)
    p.add_argument("--quiet-timeout", type=float, default=30)
    p.add_argument("--noise-max", type=float, default=0.25)
    p.add_argument("--redo", type=int, default=2)
    p.add_argument("--csv", required=True)
    p.add_argument("--raw", required=True)
    p.set_defaults(fn=cmd_run_one)

    p = sub.add_parser("report")
    p.add_argument("csv")
    p.add_argument("md")
    p.add_argument("--stamp", default="")
    p.add_argument("--meta", action="append", default=[])
    p.add_argument("--note", action="append", default=[])
    p.add_argument("--noise-max", type=float, default=0.25)
    p.add_argument("--png", default="", help="also draw a bar chart of the median req/s here (gnuplot)")
    p.add_argument("--client", default="", help="the client that measured (chart title)")
    p.set_defaults(fn=cmd_report)

    p = sub.add_parser("logsummary")
    p.add_argument("name")
    p.add_argument("file")
    p.set_defaults(fn=cmd_logsummary)

    a = ap.parse_args()
    try:
        a.fn(a)
    except KeyboardInterrupt:
        sys.exit(130)


if __name__ == "__main__":
    main()
