#!/usr/bin/env python3
"""TLS handshake rate and HTTP/2 throughput: gatehouse vs nginx, same certificate, same run.

    python3 loadtest/tls_h2.py                 # ≈ 4 min: 3 reps, interleaved
    REPS=1 DURATION=3 python3 loadtest/tls_h2.py   # smoke run

Set-up (in a temp dir, everything on loopback, nothing of the system nginx touched):
  * one self-signed RSA-2048 certificate for localhost, used by both proxies;
  * origin: nginx, 1 worker, `return 200 "ok"` on / and a 64 KiB static file on /64k;
  * gatehouse: threads 1, a `tls:` listener with that certificate (h2 + http/1.1 by ALPN),
    access log and metrics off, no admin listener, one route to the origin;
  * nginx proxy: 1 worker, `listen ... ssl http2` with the same certificate, TLS 1.2-1.3,
    `proxy_pass` to the origin with upstream keepalive;
  * pinning on 2+ cores: the proxy alone on core 0, origin + client on core 1.

Measurements, per rep, gatehouse and nginx back to back (each after a quiet-machine wait
and a warm-up):
  * handshakes: `wrk -H "Connection: close"` over https: every request is a new TCP
    connection and a full TLS handshake (wrk does not resume sessions);
  * h2: `h2load` (ALPN h2) with C connections × M concurrent streams, on / (2 B) and /64k.
CPU per operation = the proxy's CPU time (/proc, master + workers) / operations.
The report (Markdown) goes to stdout and loadtest/results/<timestamp>-tls-h2.md.

Knobs: DURATION (s, 10), WARMUP (s, 2), REPS (3), HS_CONNS (16), H2_CONNS (16),
H2_STREAMS (10), PIN (1), BUILD (1), GATEHOUSE_BIN.
"""

import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)
import helper  # noqa: E402  (the /proc readers and the wrk parser of run.sh)

DURATION = int(os.environ.get("DURATION", "10"))
WARMUP = int(os.environ.get("WARMUP", "2"))
REPS = int(os.environ.get("REPS", "3"))
HS_CONNS = int(os.environ.get("HS_CONNS", "16"))
H2_CONNS = int(os.environ.get("H2_CONNS", "16"))
H2_STREAMS = int(os.environ.get("H2_STREAMS", "10"))
PIN = os.environ.get("PIN", "1") == "1" and (os.cpu_count() or 1) >= 2
BIN = os.environ.get("GATEHOUSE_BIN", os.path.join(ROOT, "target/release/gatehouse"))
PROXY_CORE = ["taskset", "-c", "0"] if PIN else []
LOAD_CORE = ["taskset", "-c", "1"] if PIN else []

procs = []


def die(msg):
    print(f"error: {msg}", file=sys.stderr)
    sys.exit(1)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(name, cmd, tmp):
    log = open(os.path.join(tmp, f"{name}.log"), "w")
    p = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    procs.append(p)
    return p


def stop_all():
    for p in procs:
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGINT)
    for p in procs:
        try:
            p.wait(timeout=5)
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, signal.SIGKILL)


def wait_ready(name, proc, url):
    """Until `url` answers 200 (TLS without verification: the cert is self-signed)."""
    import ssl
    ctx = ssl.create_default_context()
    ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
    for _ in range(300):
        if proc.poll() is not None:
            die(f"{name} exited during startup (see its log)")
        try:
            with urllib.request.urlopen(url, context=ctx, timeout=1) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.1)
    die(f"{name} not ready at {url}")


def nginx_conf(tmp, name, server):
    d = os.path.join(tmp, name)
    os.makedirs(os.path.join(d, "logs"), exist_ok=True)
    # Temp paths of the modules this nginx has (Debian's defaults are under /var/lib/nginx).
    built = subprocess.run(["nginx", "-V"], capture_output=True, text=True).stderr
    temp = "".join(f"    {m}_temp_path {d}/{m};\n" for m in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
                   if f"--without-http_{m}_module" not in built)
    conf = f"""worker_processes 1;
daemon off;
pid {d}/nginx.pid;
error_log {d}/logs/error.log warn;
events {{ worker_connections 8192; }}
http {{
    access_log off;
    default_type application/octet-stream;
    keepalive_timeout 75s;
    keepalive_requests 1000000;
{temp}{server}
}}
"""
    path = os.path.join(tmp, f"{name}.conf")
    with open(path, "w") as f:
        f.write(conf)
    return ["nginx", "-p", d, "-c", path, "-e", f"{d}/logs/error.log"]


def proxy_cpu(pid):
    return helper.tree_ticks([pid]) / helper.CLK_TCK


def measure(kind, peer, pid, url):
    """One data point: (operations per second, proxy CPU µs per operation, errors)."""
    helper.wait_quiet(0.15, 30)
    if kind == "handshake":
        cmd = LOAD_CORE + ["wrk", "-t1", f"-c{HS_CONNS}", "-H", "Connection: close"]
        subprocess.run(cmd + [f"-d{WARMUP}s", url], capture_output=True)
        c0 = proxy_cpu(pid)
        out = subprocess.run(cmd + [f"-d{DURATION}s", url], capture_output=True, text=True).stdout
        cpu = proxy_cpu(pid) - c0
        w = helper.parse_wrk(out)
        ops, rate, errors = w["requests"], w["rps"], w["non2xx"] + w["sock_errors"]
    else:
        cmd = LOAD_CORE + ["h2load", "-t1", f"-c{H2_CONNS}", f"-m{H2_STREAMS}"]
        subprocess.run(cmd + ["-D", str(WARMUP), url], capture_output=True)
        c0 = proxy_cpu(pid)
        out = subprocess.run(cmd + ["-D", str(DURATION), url], capture_output=True, text=True).stdout
        cpu = proxy_cpu(pid) - c0
        m = re.search(r"finished in ([\d.]+)s, ([\d.]+) req/s", out)
        r = re.search(r"requests: \d+ total, \d+ started, (\d+) done, (\d+) succeeded, (\d+) failed, (\d+) errored", out)
        proto = re.search(r"Application protocol: (\S+)", out)
        if not (m and r):
            die(f"cannot parse h2load output:\n{out}")
        if not proto or proto.group(1) != "h2":
            die(f"{peer} did not negotiate h2:\n{out}")
        ops, rate = int(r.group(2)), float(m.group(2))
        errors = int(r.group(3)) + int(r.group(4))
    us = cpu * 1e6 / max(ops, 1)
    print(f"  {kind:<9} {peer:<9} {url.rsplit('/', 1)[-1] or '2B':>4}: {rate:>9.0f}/s  {us:>7.1f} µs CPU/op"
          + (f"  ERRORS {errors}" if errors else ""), file=sys.stderr)
    return rate, us, errors


def main():
    for tool in ("nginx", "wrk", "h2load", "openssl"):
        if not shutil.which(tool):
            die(f"{tool} is missing (apt-get install nginx-light wrk nghttp2-client openssl)")
    if os.environ.get("BUILD", "1") == "1":
        subprocess.run(["cargo", "build", "--release", "--quiet"], cwd=ROOT, check=True)
    tmp = tempfile.mkdtemp(prefix="gatehouse-tls-")
    cert, key = os.path.join(tmp, "cert.pem"), os.path.join(tmp, "key.pem")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                    "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1",
                    "-keyout", key, "-out", cert], check=True, capture_output=True)
    # nginx workers run unprivileged when the master is root: they must reach the files.
    os.chmod(tmp, 0o755)
    www = os.path.join(tmp, "www")
    os.makedirs(www)
    with open(os.path.join(www, "64k"), "wb") as f:
        f.write(b"x" * 65536)
    os.chmod(os.path.join(www, "64k"), 0o644)
    origin_port, gh_plain, gh_tls, ngx_tls = (free_port() for _ in range(4))

    origin = start("origin", LOAD_CORE + nginx_conf(tmp, "origin", f"""    sendfile on;
    server {{
        listen 127.0.0.1:{origin_port};
        root {www};
        location = / {{ return 200 "ok"; }}
        location / {{ }}
    }}"""), tmp)
    nginx = start("nginx", PROXY_CORE + nginx_conf(tmp, "nginx-proxy", f"""    upstream origin {{
        server 127.0.0.1:{origin_port};
        keepalive 512;
        keepalive_requests 1000000;
    }}
    server {{
        listen 127.0.0.1:{ngx_tls} ssl http2;
        ssl_certificate {cert};
        ssl_certificate_key {key};
        ssl_protocols TLSv1.2 TLSv1.3;
        location / {{
            proxy_pass http://origin;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }}
    }}"""), tmp)
    config = os.path.join(tmp, "gatehouse.yaml")
    with open(config, "w") as f:
        f.write(f"""listen: ["127.0.0.1:{gh_plain}"]
threads: 1
pid_file: {tmp}/gatehouse.pid
upgrade_sock: {tmp}/gatehouse.sock
access_log: false
metrics: false
admin: {{ listen: "" }}
tls: {{ listen: ["127.0.0.1:{gh_tls}"], certs: [{{ cert: {cert}, key: {key} }}] }}
upstreams: {{ origin: {{ targets: ["127.0.0.1:{origin_port}"] }} }}
routes: [{{ prefix: /, upstream: origin }}]
""")
    gatehouse = start("gatehouse", PROXY_CORE + [BIN, "run", "-c", config], tmp)
    peers = {"gatehouse": (gatehouse, gh_tls), "nginx": (nginx, ngx_tls)}
    wait_ready("origin", origin, f"http://127.0.0.1:{origin_port}/")
    for name, (p, port) in peers.items():
        wait_ready(name, p, f"https://127.0.0.1:{port}/64k")

    tests = [("handshake", "/"), ("h2", "/"), ("h2", "/64k")]
    results = {}
    for rep in range(1, REPS + 1):
        print(f"rep {rep}/{REPS}", file=sys.stderr)
        for kind, path in tests:
            for name, (p, port) in peers.items():
                r = measure(kind, name, p.pid, f"https://127.0.0.1:{port}{path}")
                results.setdefault((kind, path, name), []).append(r)
    stop_all()

    nginx_v = subprocess.run(["nginx", "-v"], capture_output=True, text=True).stderr.strip()
    rev = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    lines = [
        f"# TLS handshakes and HTTP/2: gatehouse {rev} vs {nginx_v}",
        "",
        f"{time.strftime('%F %H:%M')}, {os.cpu_count()} cores, {'proxy on core 0, origin + client on core 1' if PIN else 'no pinning'}; "
        f"{REPS} reps × {DURATION}s, medians (range). Same RSA-2048 certificate; both 1 worker/thread. "
        f"Handshakes: wrk -t1 -c{HS_CONNS} with `Connection: close` (one full TLS handshake per request). "
        f"h2: h2load -t1 -c{H2_CONNS} -m{H2_STREAMS}.",
        "",
        "| test | gatehouse /s | nginx /s | gatehouse/nginx | gatehouse CPU µs/op | nginx CPU µs/op | errors |",
        "|---|---|---|---|---|---|---|",
    ]
    for kind, path in tests:
        g, n = results[(kind, path, "gatehouse")], results[(kind, path, "nginx")]
        gr, nr = statistics.median(x[0] for x in g), statistics.median(x[0] for x in n)
        gu, nu = statistics.median(x[1] for x in g), statistics.median(x[1] for x in n)
        span = lambda rs: f"{min(x[0] for x in rs):.0f}–{max(x[0] for x in rs):.0f}"  # noqa: E731
        errs = sum(x[2] for x in g + n)
        label = "TLS handshakes (new connection per request)" if kind == "handshake" else f"h2 GET {path} ({'2 B' if path == '/' else '64 KiB'})"
        lines.append(f"| {label} | {gr:.0f} ({span(g)}) | {nr:.0f} ({span(n)}) | {gr / nr:.2f}× | {gu:.1f} | {nu:.1f} | {errs} |")
    report = "\n".join(lines) + "\n"
    print(report)
    os.makedirs(os.path.join(HERE, "results"), exist_ok=True)
    with open(os.path.join(HERE, "results", time.strftime("%Y%m%d-%H%M%S") + "-tls-h2.md"), "w") as f:
        f.write(report)
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    try:
        main()
    finally:
        stop_all()
