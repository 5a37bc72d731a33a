#!/usr/bin/env python3
"""TLS handshakes (full and resumed) and HTTP/2 throughput: gatehouse vs nginx, same certificate, same run.

    python3 loadtest/tls_h2.py                 # ≈ 12 min: 3 reps, interleaved
    REPS=1 DURATION=3 python3 loadtest/tls_h2.py   # smoke run
    RESUME=0 python3 loadtest/tls_h2.py        # without the s_time part (≈ 5 min)

Set-up (in a temp dir, everything on loopback, nothing of the system nginx touched):
  * one self-signed RSA-2048 certificate for localhost, used by both proxies;
  * origin: nginx, 1 worker, `return 200 "ok"` on / and 4 KiB and 64 KiB static files on
    /4k and /64k;
  * gatehouse: threads 1, a `tls:` listener with that certificate (h2 + http/1.1 by ALPN)
    and session tickets with a fixed secret (`tls.session_tickets: { secret, rotate: 12h }`),
    access log and metrics off, no admin listener, routes / and /hs to the origin;
  * nginx proxy: 1 worker, `listen ... ssl http2` with the same certificate, TLS 1.2-1.3,
    `ssl_session_tickets on` + `ssl_session_cache shared:SSL:10m`, `proxy_pass` to the
    origin with upstream keepalive;
  * bare Pingora (PINGORA=1, the default; h2 rows only): examples/bare_pingora.rs with
    gatehouse's allocator, `--tls` with the same certificate (Pingora's intermediate
    settings, h2 + http/1.1 by ALPN), 1 thread, upstream keepalive: the framework alone,
    the floor under gatehouse's h2 cost;
  * pinning on 2+ cores: the proxy alone on core 0, origin + client on core 1.

Measurements, per rep, gatehouse and nginx back to back (each after a quiet-machine wait
and a warm-up):
  * handshakes: `wrk -H "Connection: close"` over https: every request is a new TCP
    connection and a TLS handshake, full or resumed: wrk keeps the last session of each
    connection slot (SSL_shutdown + SSL_clear) and offers it on the next connection, so it
    resumes when the server gave it a usable ticket. Before measuring, a 2 s wrk run
    through a relay that reads each connection's ServerHello (TLS 1.3: a pre_shared_key
    extension; TLS 1.2: no Certificate after it) gives the share that resumed, reported
    with the row;
  * h2: `h2load` (ALPN h2) with C connections × M concurrent streams, on / (2 B), /4k and /64k;
  * full vs resumed handshakes (RESUME=1), TLS 1.3 and TLS 1.2: ST_CLIENTS `openssl s_time
    -new` (a full handshake per connection) or `-reuse` (every connection resumes the
    previous one's session, i.e. its ticket) processes in parallel on the load core, each
    connection a handshake + `GET /hs HTTP/1.0` (2 B, proxied to the origin) + close
    (s_time sends no Host: gatehouse's /hs route has `upstream_host: target`, nginx sends
    `Host: origin` as always). s_time does not read TLS 1.3 tickets without a request.
    Resumption is verified, or the script stops: before measuring, per proxy and version,
    `openssl s_client -sess_out` then `-sess_in` must print "Reused" (and the session must
    carry a ticket); while measuring, s_time marks every connection ('r' = resumed): all
    `-new` connections must be full and at least 99 % of the `-reuse` ones resumed.
CPU per operation = the proxy's CPU time (/proc, master + workers) / operations.
The report (Markdown) goes to stdout and loadtest/results/<timestamp>-tls-h2.md.

Knobs: DURATION (s, 10), WARMUP (s, 2), REPS (3), HS_CONNS (16), H2_CONNS (16),
H2_STREAMS (10), RESUME (1: the s_time full vs resumed part), ST_CLIENTS (8: parallel
s_time processes), PIN (1), BUILD (1), GATEHOUSE_BIN, PINGORA (1), PINGORA_BIN,
QUIET_TIMEOUT (s, 30: how long each measurement waits for a quiet machine), RESULTS
(loadtest/results).
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
import threading
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
# The h2 bodies: the origin's `return 200 "ok"` and two static files.
BODY_LABELS = {"/": "2 B", "/4k": "4 KiB", "/64k": "64 KiB"}
RESUME = os.environ.get("RESUME", "1") == "1"
ST_CLIENTS = int(os.environ.get("ST_CLIENTS", "8"))
PIN = os.environ.get("PIN", "1") == "1" and (os.cpu_count() or 1) >= 2
QUIET_TIMEOUT = float(os.environ.get("QUIET_TIMEOUT", "30"))
RESULTS = os.environ.get("RESULTS", os.path.join(HERE, "results"))
BIN = os.environ.get("GATEHOUSE_BIN", os.path.join(ROOT, "target/release/gatehouse"))
PINGORA = os.environ.get("PINGORA", "1") == "1"
PINGORA_BIN = os.environ.get("PINGORA_BIN", os.path.join(ROOT, "target/release/examples/bare_pingora_mimalloc"))
PROXY_CORE = ["taskset", "-c", "0"] if PIN else []
LOAD_CORE = ["taskset", "-c", "1"] if PIN else []

# gatehouse's tls.session_tickets.secret (at least 32 bytes); nginx keeps its own keys.
TICKET_SECRET = "tls-h2-bench-session-ticket-secret-0123456789abcdef"
# The request of every s_time connection (`s_time -www /hs` sends this: no Host, so
# gatehouse's route for /hs sets one upstream, as nginx's proxy_pass does) and of the check.
ST_PATH = "/hs"
ST_REQUEST = f"GET {ST_PATH} HTTP/1.0\r\n\r\n".encode()

procs = []


def die(msg):
    print(f"error: {msg}", file=sys.stderr)
    sys.exit(1)


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


def check_resumption(peer, port, version, tmp):
    """Stop unless `peer` resumes a TLS `version` session: one connection saves its session
    (which must carry a ticket), the next offers it and must be "Reused"; both answer 200."""
    sess = os.path.join(tmp, f"{peer}-tls{version}.sess")
    base = ["openssl", "s_client", "-connect", f"127.0.0.1:{port}", f"-tls1_{version[-1]}", "-ign_eof"]
    outs = []
    for extra in (["-sess_out", sess], ["-sess_in", sess]):
        r = subprocess.run(base + extra, input=ST_REQUEST, capture_output=True, timeout=15)
        out = r.stdout.decode(errors="replace") + r.stderr.decode(errors="replace")
        if r.returncode != 0 or not re.search(r"^HTTP/1\.[01] 200", out, re.M):
            die(f"{peer}: openssl s_client -tls1_{version[-1]} {' '.join(extra)} failed or not 200:\n{out}")
        outs.append(out)
    text = subprocess.run(["openssl", "sess_id", "-in", sess, "-noout", "-text"],
                          capture_output=True, text=True).stdout
    first = re.search(r"^(New|Reused), (TLSv[\d.]+)", outs[0], re.M)
    second = re.search(r"^(New|Reused), (TLSv[\d.]+)", outs[1], re.M)
    if not (first and first.groups() == ("New", f"TLSv{version}")):
        die(f"{peer}: the first TLS {version} handshake was not a new TLSv{version} one:\n{outs[0]}")
    if "TLS session ticket:" not in text:
        die(f"{peer} issued no session ticket over TLS {version}:\n{text}")
    if not (second and second.groups() == ("Reused", f"TLSv{version}")):
        die(f"{peer} did NOT resume a TLS {version} session (s_client -sess_in says "
            f"{second.group(0) if second else 'nothing'}):\n{outs[1]}")
    print(f"  resumption {peer:<9} TLS {version}: ticket issued, second connection Reused", file=sys.stderr)


def server_hello_resumed(data):
    """Whether the server's first bytes of a TLS connection show a resumed session: its
    ServerHello carries pre_shared_key (TLS 1.3) or is not followed by a Certificate
    (TLS 1.2). None when they cannot be parsed."""
    hs = b""
    while len(data) >= 5 and data[0] == 22:              # handshake records, in the clear
        n = int.from_bytes(data[3:5], "big")
        hs, data = hs + data[5:5 + n], data[5 + n:]
    if len(hs) < 39 or hs[0] != 2:
        return None
    end = 4 + int.from_bytes(hs[1:4], "big")
    i = 4 + 2 + 32
    i += 1 + hs[i]                                        # session id
    i += 2 + 1                                            # cipher suite, compression
    exts, tls13 = set(), False
    if i + 2 <= end:
        stop = i + 2 + int.from_bytes(hs[i:i + 2], "big")
        i += 2
        while i + 4 <= stop:
            t, n = int.from_bytes(hs[i:i + 2], "big"), int.from_bytes(hs[i + 2:i + 4], "big")
            exts.add(t)
            i += 4 + n
    tls13 = 0x002B in exts                                # supported_versions: TLS 1.3
    if tls13:
        return 0x0029 in exts                             # pre_shared_key accepted
    return not (len(hs) > end and hs[end] == 11)          # no Certificate: resumed


def wrk_resumption(peer, port):
    """Share of wrk's `Connection: close` connections that resumed a TLS session: 2 s of
    wrk through a loopback relay that keeps the first 4 KiB the server sends on each."""
    lsock = socket.socket()
    lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    lsock.bind(("127.0.0.1", 0))
    lsock.listen(512)
    firsts, stop = [], threading.Event()

    def pump(src, dst, keep):
        try:
            while data := src.recv(65536):
                if keep is not None and len(keep) < 4096:
                    keep += data
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (src, dst):
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def serve():
        while not stop.is_set():
            try:
                client, _ = lsock.accept()
            except OSError:
                return
            server = socket.create_connection(("127.0.0.1", port))
            keep = bytearray()
            firsts.append(keep)
            threading.Thread(target=pump, args=(client, server, None), daemon=True).start()
            threading.Thread(target=pump, args=(server, client, keep), daemon=True).start()

    threading.Thread(target=serve, daemon=True).start()
    url = f"https://127.0.0.1:{lsock.getsockname()[1]}/"
    subprocess.run(LOAD_CORE + ["wrk", "-t1", "-c4", "-d2s", "-H", "Connection: close", url], capture_output=True)
    stop.set()
    lsock.close()
    time.sleep(0.2)
    seen = [server_hello_resumed(bytes(b)) for b in firsts]
    known = [x for x in seen if x is not None]
    if len(known) < max(10, len(seen) // 2):
        die(f"wrk through the relay to {peer}: {len(seen)} connections, only {len(known)} ServerHellos parsed")
    share = sum(known) / len(known)
    print(f"  wrk resumption {peer:<9}: {sum(known)} of {len(known)} connections resumed ({share:.0%})", file=sys.stderr)
    return share


def s_time(peer, port, mode, version, seconds):
    """ST_CLIENTS `openssl s_time` in parallel, all started just after a second boundary
    (s_time stops when time(NULL) passes start + seconds, so they end together).
    Returns (connections, reused connections, wall seconds)."""
    cmd = LOAD_CORE + ["openssl", "s_time", "-connect", f"127.0.0.1:{port}", f"-{mode}",
                       f"-tls1_{version[-1]}", "-www", ST_PATH, "-time", str(seconds)]
    time.sleep(1.02 - time.time() % 1)
    t0 = time.monotonic()
    ps = [subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
          for _ in range(ST_CLIENTS)]
    outs = [p.communicate()[0] for p in ps]
    wall = time.monotonic() - t0
    conns = reused = 0
    for p, out in zip(ps, outs):
        marks = "".join(re.findall(r"^[r*]+$", out, re.M))
        m = re.search(r"^(\d+) connections in [\d.]+s;", out, re.M)
        if p.returncode != 0 or not m or not marks:
            die(f"openssl s_time -{mode} -tls1_{version[-1]} against {peer} failed (exit {p.returncode}):\n{out[-3000:]}")
        conns += len(marks)
        reused += marks.count("r")
    return conns, reused, wall


def measure(kind, peer, pid, url):
    """One data point: (operations per second, proxy CPU µs per operation, errors,
    fraction of resumed handshakes (s_time kinds; None otherwise), proxy core busy)."""
    helper.wait_quiet(0.15, QUIET_TIMEOUT)
    resumed = None
    if kind in ("full", "resumed"):
        version, port = url.split("@")       # "1.3@PORT"
        mode = "new" if kind == "full" else "reuse"
        s_time(peer, port, mode, version, WARMUP)
        c0 = proxy_cpu(pid)
        ops, reused, wall = s_time(peer, port, mode, version, DURATION)
        cpu = proxy_cpu(pid) - c0
        rate, errors, resumed = ops / wall, 0, reused / max(ops, 1)
        if kind == "full" and reused:
            die(f"{peer}: {reused} of {ops} s_time -new connections were resumed (should be 0)")
        if kind == "resumed" and resumed < 0.99:
            die(f"{peer} resumed only {reused} of {ops} TLS {version} connections of s_time -reuse "
                f"({resumed:.1%}): session resumption is not working")
        us = cpu * 1e6 / max(ops, 1)
        print(f"  {kind:<9} {peer:<9} TLS {version}: {rate:>9.0f}/s  {us:>7.1f} µs CPU/op  "
              f"resumed {resumed:.1%}  proxy busy {cpu / wall:.0%}", file=sys.stderr)
        return rate, us, errors, resumed, cpu / wall
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
    return rate, us, errors, resumed, None


def main():
    for tool in ("nginx", "wrk", "h2load", "openssl"):
        if not shutil.which(tool):
            die(f"{tool} is missing (apt-get install nginx-light wrk nghttp2-client openssl)")
    if os.environ.get("BUILD", "1") == "1":
        subprocess.run(["cargo", "build", "--release", "--quiet"], cwd=ROOT, check=True)
        if PINGORA:
            subprocess.run(["cargo", "build", "--release", "--quiet", "--example", "bare_pingora_mimalloc"],
                           cwd=ROOT, check=True)
    if PINGORA and not os.access(PINGORA_BIN, os.X_OK):
        die(f"{PINGORA_BIN} is missing: cargo build --release --example bare_pingora_mimalloc (or PINGORA=0)")
    tmp = tempfile.mkdtemp(prefix="gatehouse-tls-")
    cert, key = os.path.join(tmp, "cert.pem"), os.path.join(tmp, "key.pem")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                    "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1",
                    "-keyout", key, "-out", cert], check=True, capture_output=True)
    # nginx workers run unprivileged when the master is root: they must reach the files.
    os.chmod(tmp, 0o755)
    www = os.path.join(tmp, "www")
    os.makedirs(www)
    for name, size in (("4k", 4096), ("64k", 65536)):
        with open(os.path.join(www, name), "wb") as f:
            f.write(b"x" * size)
        os.chmod(os.path.join(www, name), 0o644)
    # Below the ephemeral range: the smoke test runs this beside other harnesses.
    origin_port, gh_plain, gh_tls, ngx_tls, bare_tls = helper.free_ports(5)

    origin = start("origin", LOAD_CORE + nginx_conf(tmp, "origin", f"""    sendfile on;
    server {{
        listen 127.0.0.1:{origin_port};
        root {www};
        location = / {{ return 200 "ok"; }}
        location = {ST_PATH} {{ return 200 "ok"; }}
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
        ssl_session_tickets on;
        ssl_session_cache shared:SSL:10m;
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
tls:
  listen: ["127.0.0.1:{gh_tls}"]
  certs: [{{ cert: {cert}, key: {key} }}]
  session_tickets: {{ secret: "{TICKET_SECRET}", rotate: 12h }}
upstreams: {{ origin: {{ targets: ["127.0.0.1:{origin_port}"] }} }}
routes:
  - {{ prefix: /, upstream: origin }}
  - {{ prefix: {ST_PATH}, upstream: origin, upstream_host: target }}
""")
    gatehouse = start("gatehouse", PROXY_CORE + [BIN, "run", "-c", config], tmp)
    peers = {"gatehouse": (gatehouse, gh_tls), "nginx": (nginx, ngx_tls)}
    # Only in the h2 rows: bare Pingora has no /hs route and no session-ticket settings.
    h2_peers = dict(peers)
    if PINGORA:
        bare = start("pingora", PROXY_CORE + [PINGORA_BIN, "--listen", f"127.0.0.1:{bare_tls}",
                                              "--upstream", f"127.0.0.1:{origin_port}", "--threads", "1",
                                              "--dir", tmp, "--tls", f"{cert},{key}"], tmp)
        h2_peers["pingora"] = (bare, bare_tls)
    wait_ready("origin", origin, f"http://127.0.0.1:{origin_port}/")
    for name, (p, port) in h2_peers.items():
        wait_ready(name, p, f"https://127.0.0.1:{port}/64k")

    tests = [("handshake", "/"), ("h2", "/"), ("h2", "/4k"), ("h2", "/64k")]
    hs_tests = [(k, v) for v in ("1.3", "1.2") for k in ("full", "resumed")] if RESUME else []
    if RESUME:
        for name, (p, port) in peers.items():
            for version in ("1.3", "1.2"):
                check_resumption(name, port, version, tmp)
    wrk_resumed = {name: wrk_resumption(name, port) for name, (p, port) in peers.items()}
    results = {}
    for rep in range(1, REPS + 1):
        print(f"rep {rep}/{REPS}", file=sys.stderr)
        for kind, path in tests + hs_tests:
            for name, (p, port) in (h2_peers if kind == "h2" else peers).items():
                target = f"{path}@{port}" if kind in ("full", "resumed") else f"https://127.0.0.1:{port}{path}"
                r = measure(kind, name, p.pid, target)
                results.setdefault((kind, path, name), []).append(r)
    stop_all()

    nginx_v = subprocess.run(["nginx", "-v"], capture_output=True, text=True).stderr.strip()
    rev = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    lines = [
        f"# TLS handshakes and HTTP/2: gatehouse {rev} vs {nginx_v}",
        "",
        f"{time.strftime('%F %H:%M')}, {os.cpu_count()} cores, {'proxy on core 0, origin + client on core 1' if PIN else 'no pinning'}; "
        f"{REPS} reps × {DURATION}s, medians (range). Same RSA-2048 certificate; both 1 worker/thread. "
        f"Handshakes: wrk -t1 -c{HS_CONNS} with `Connection: close` (a TLS handshake per request; wrk resumes "
        f"the session when it can: gatehouse {wrk_resumed['gatehouse']:.0%}, nginx {wrk_resumed['nginx']:.0%} "
        f"of its connections resumed, see the full vs resumed section). "
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
        label = (f"TLS handshakes (new connection per request; resumed {wrk_resumed['gatehouse']:.0%} / "
                 f"{wrk_resumed['nginx']:.0%})") if kind == "handshake" else f"h2 GET {path} ({BODY_LABELS[path]})"
        lines.append(f"| {label} | {gr:.0f} ({span(g)}) | {nr:.0f} ({span(n)}) | {gr / nr:.2f}× | {gu:.1f} | {nu:.1f} | {errs} |")
    if PINGORA:
        lines += [
            "",
            "## HTTP/2: the framework's own floor",
            "",
            "Bare Pingora (examples/bare_pingora.rs with gatehouse's allocator, `--tls`: the same certificate, "
            "h2 by ALPN, 1 thread, no routing, filters, headers or logging) in the same reps. If bare Pingora is "
            "under a target ratio to nginx, no work in gatehouse's own code reaches it.",
            "",
            "| test | bare Pingora /s | bare Pingora/nginx | gatehouse/bare Pingora | bare Pingora CPU µs/op | errors |",
            "|---|---|---|---|---|---|",
        ]
        for kind, path in tests:
            if kind != "h2":
                continue
            b, g, n = (results[(kind, path, peer)] for peer in ("pingora", "gatehouse", "nginx"))
            br, gr, nr = (statistics.median(x[0] for x in rs) for rs in (b, g, n))
            bu = statistics.median(x[1] for x in b)
            lines.append(f"| h2 GET {path} ({BODY_LABELS[path]}) | {br:.0f} ({span(b)}) | {br / nr:.2f}× | "
                         f"{gr / br:.2f}× | {bu:.1f} | {sum(x[2] for x in b)} |")
    if RESUME:
        med = lambda rs, i: statistics.median(x[i] for x in rs)  # noqa: E731
        lines += [
            "",
            "## TLS handshakes: full vs resumed (session tickets)",
            "",
            f"`openssl s_time -new` (full handshake) or `-reuse` (resumes the previous connection's session), "
            f"{ST_CLIENTS} processes in parallel on the load core, {DURATION}s; every connection is a handshake, "
            "`GET /hs HTTP/1.0` (2 B, proxied to the origin) and a close. gatehouse: `tls.session_tickets` with a "
            "secret; nginx: `ssl_session_tickets on` + `ssl_session_cache shared:SSL:10m`. Resumption was checked "
            "before measuring (`s_client -sess_out` / `-sess_in`: a ticket issued, then \"Reused\", for both proxies "
            "and both versions) and per connection (s_time's marks): *resumed* = the share of connections that "
            "resumed, gatehouse / nginx. *busy* = the proxy's core, gatehouse / nginx (under 100 %: the load core "
            "was the limit, compare the CPU per handshake).",
            "",
            "| TLS | handshake | gatehouse /s | nginx /s | gatehouse/nginx | gatehouse CPU µs/hs | nginx CPU µs/hs | CPU gatehouse/nginx | resumed | busy |",
            "|---|---|---|---|---|---|---|---|---|---|",
        ]
        for kind, v in hs_tests:
            g, n = results[(kind, v, "gatehouse")], results[(kind, v, "nginx")]
            gr, nr, gu, nu = med(g, 0), med(n, 0), med(g, 1), med(n, 1)
            lines.append(f"| {v} | {kind} | {gr:.0f} ({span(g)}) | {nr:.0f} ({span(n)}) | {gr / nr:.2f}× | {gu:.1f} | {nu:.1f} "
                         f"| {gu / nu:.2f}× | {min(x[3] for x in g):.1%} / {min(x[3] for x in n):.1%} "
                         f"| {med(g, 4):.0%} / {med(n, 4):.0%} |")
        lines += ["", "Resumed vs full, medians:", ""]
        for name in ("gatehouse", "nginx"):
            parts = []
            for v in ("1.3", "1.2"):
                f, r = results[("full", v, name)], results[("resumed", v, name)]
                parts.append(f"TLS {v}: {med(r, 0) / med(f, 0):.2f}× the handshakes/s, "
                             f"{med(r, 1) / med(f, 1):.2f}× the CPU per handshake")
            lines.append(f"- {name}: " + "; ".join(parts))
    report = "\n".join(lines) + "\n"
    print(report)
    os.makedirs(RESULTS, exist_ok=True)
    with open(os.path.join(RESULTS, time.strftime("%Y%m%d-%H%M%S") + "-tls-h2.md"), "w") as f:
        f.write(report)
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    try:
        main()
    finally:
        stop_all()
