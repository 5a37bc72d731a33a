#!/usr/bin/env python3
"""Helpers of loadtest/compression.sh, aggregate.sh and grpc.sh (python3 stdlib only).

CPU accounting is helper.py's (/proc/<pid>/stat utime+stime over the process tree, the
machine's busy time from /proc/stat for the noise check); see its docstring.

  json-file OUT BYTES          a deterministic JSON document of about BYTES bytes (records
                               with ids, names, addresses, prose: compresses like real API
                               JSON, ≈ 4-6×, not like a run of one byte)
  check-body --encoding E GOT WANT
                               GOT decoded as E (gzip or identity) is WANT byte for byte
  compression-report CSV MD    medians of helper.py run-one rows: req/s, proxy CPU µs per
                               response, and what compressing costs each proxy
  agg-upstreams --ports --delays
                               HTTP/1.1 keep-alive JSON servers, one per port, each
                               answering after its delay (ms); runs until killed
  agg-run ...                  closed-loop client of one aggregate.sh mode for DURATION,
                               gatehouse's CPU bracketed; latencies appended to --raw
  agg-report CSV RAW MD        p50/p99 per mode over every sample
  grpc-run ...                 one grpc_bench client run, the proxy's and the server's CPU
                               bracketed
  grpc-report CSV MD           medians: req/s, CPU µs per call, gatehouse / direct
"""

import argparse
import asyncio
import csv
import gzip
import json
import os
import random
import shlex
import statistics
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
# helper.py, in the same directory: its /proc readers and quiet wait.
from helper import CLK_TCK, alive, children_cpu_s, machine_busy_ticks, self_ticks, tree_ticks, wait_quiet  # noqa: E402


def _med(vals):
    return statistics.median(vals) if vals else None


def _pct(sorted_vals, p):
    """Nearest-rank percentile of an ascending list."""
    if not sorted_vals:
        return float("nan")
    k = max(1, min(len(sorted_vals), int(-(-p * len(sorted_vals) // 100))))
    return sorted_vals[k - 1]


def _lat(ms):
    return f"{ms:.3f}" if ms < 1 else f"{ms:.2f}"


def _k(x):
    return f"{x / 1000:.1f}k" if x >= 1000 else f"{x:.0f}"


def _write_md(md, lines):
    text = "\n".join(lines) + "\n"
    with open(md, "w") as f:
        f.write(text)
    print(text)


def _head(title, stamp, meta, notes=()):
    out = [f"# {title} — {stamp}", ""]
    out += [f"- {m}" for m in meta]
    out.append("")
    return out


def _append_csv(path, fields, row):
    new = not os.path.exists(path) or os.path.getsize(path) == 0
    with open(path, "a", newline="") as f:
        w = csv.DictWriter(f, fieldnames=fields)
        if new:
            w.writeheader()
        w.writerow(row)


def _kept_rows(path):
    with open(path) as f:
        return [r for r in csv.DictReader(f) if r.get("kept", "1") == "1"]


# ---------------------------------------------------------------------------------------
# compression.sh
# ---------------------------------------------------------------------------------------

_FIRST = ["Ada", "Grace", "Alan", "Edsger", "Barbara", "Donald", "Ken", "Dennis", "Margaret",
          "Linus", "Guido", "Bjarne", "Frances", "John", "Radia", "Leslie", "Tony", "Niklaus"]
_LAST = ["Lovelace", "Hopper", "Turing", "Dijkstra", "Liskov", "Knuth", "Thompson", "Ritchie",
         "Hamilton", "Torvalds", "Rossum", "Stroustrup", "Allen", "McCarthy", "Perlman", "Lamport"]
_CITY = ["Lisbon", "Oslo", "Lyon", "Porto", "Gdansk", "Tartu", "Bergen", "Ghent", "Graz", "Turku"]
_WORDS = ("lorem ipsum dolor sit amet consectetur adipiscing elit sed do eiusmod tempor incididunt "
          "ut labore et dolore magna aliqua enim ad minim veniam quis nostrud exercitation ullamco "
          "laboris nisi aliquip ex ea commodo consequat duis aute irure in reprehenderit voluptate "
          "velit esse cillum fugiat nulla pariatur excepteur sint occaecat cupidatat non proident "
          "sunt culpa qui officia deserunt mollit anim id est laborum").split()


def cmd_json_file(a):
    rnd = random.Random(20261130)
    items, size, i = [], 2, 0
    while size < a.bytes:
        i += 1
        first, last = rnd.choice(_FIRST), rnd.choice(_LAST)
        item = {
            "id": 100000 + i,
            "uuid": "%08x-%04x-4%03x-%04x-%012x" % (rnd.getrandbits(32), rnd.getrandbits(16),
                                                   rnd.getrandbits(12), rnd.getrandbits(16) | 0x8000,
                                                   rnd.getrandbits(48)),
            "name": f"{first} {last}",
            "email": f"{first.lower()}.{last.lower()}{rnd.randint(1, 999)}@example.com",
            "active": rnd.random() < 0.8,
            "balance": round(rnd.uniform(-500, 25000), 2),
            "created_at": "2026-%02d-%02dT%02d:%02d:%02dZ" % (rnd.randint(1, 12), rnd.randint(1, 28),
                                                            rnd.randint(0, 23), rnd.randint(0, 59),
                                                            rnd.randint(0, 59)),
            "address": {"street": f"{rnd.randint(1, 300)} {rnd.choice(_WORDS).title()} Street",
                        "city": rnd.choice(_CITY), "zip": f"{rnd.randint(1000, 99999):05d}"},
            "tags": rnd.sample(_WORDS, rnd.randint(1, 4)),
            "scores": [rnd.randint(0, 100) for _ in range(rnd.randint(2, 6))],
            "bio": " ".join(rnd.choice(_WORDS) for _ in range(rnd.randint(8, 30))),
        }
        enc = json.dumps(item, separators=(",", ":"))
        items.append(enc)
        size += len(enc) + 1
    with open(a.out, "w") as f:
        f.write("[" + ",".join(items) + "]")


def cmd_check_body(a):
    with open(a.got, "rb") as f:
        got = f.read()
    with open(a.want, "rb") as f:
        want = f.read()
    if a.encoding == "gzip":
        if got[:2] != b"\x1f\x8b":
            sys.exit(f"{a.got}: not gzip (first bytes {got[:4]!r})")
        try:
            got = gzip.decompress(got)
        except (OSError, EOFError) as e:
            sys.exit(f"{a.got}: gzip stream does not decode: {e}")
    if got != want:
        sys.exit(f"{a.got}: decodes to {len(got)} bytes that differ from the origin's {len(want)}")


def cmd_compression_report(a):
    rows = _kept_rows(a.csv)
    with open(a.csv) as f:
        all_rows = list(csv.DictReader(f))
    wire = dict(kv.split("=", 1) for kv in a.bytes)      # peer -> bytes on the wire per response
    peers = []
    for r in rows:
        if r["peer"] not in peers:
            peers.append(r["peer"])
    med = {}
    out = _head("Response compression: gatehouse vs nginx", a.stamp, a.meta)
    out.append("| peer | coding | bytes/response | req/s | req/s range | proxy CPU µs/response "
               "| µs range | origin CPU µs/response | p50 ms | p99 ms | errors | runs |")
    out.append("|---|---|---:|---:|---|---:|---|---:|---:|---:|---:|---|")
    for p in peers:
        rs = [r for r in rows if r["peer"] == p]
        rps = [float(r["rps"]) for r in rs]
        us = [float(r["proxy_us_per_req"]) for r in rs if r["proxy_us_per_req"]]
        ous = [float(r["origin_us_per_req"]) for r in rs]
        p50 = [float(r["p50_ms"]) for r in rs]
        p99 = [float(r["p99_ms"]) for r in rs]
        errs = sum(int(r["non2xx"]) + int(r["sock_errors"]) for r in rs)
        noisy = sum(1 for r in rs if float(r["other_cores"]) > a.noise_max)
        redone = sum(1 for r in all_rows if r["peer"] == p and r.get("kept") == "0")
        med[p] = {"rps": _med(rps), "us": _med(us)}
        runs = f"{len(rs)}" + (f" ({noisy} noisy)" if noisy else "") + (f", {redone} redone" if redone else "")
        coding = p.split("-", 1)[1] if "-" in p else "identity"
        w = int(wire.get(p, 0))
        out.append(f"| {p} | {coding} | {w:,} | {_k(med[p]['rps'])} | {_k(min(rps))}–{_k(max(rps))} "
                   f"| {med[p]['us']:.0f} | {min(us):.0f}–{max(us):.0f} | {_med(ous):.0f} "
                   f"| {_lat(_med(p50))} | {_lat(_med(p99))} | {errs} | {runs} |")
    out.append("")
    # What compressing costs each proxy: its coded run minus its identity run.
    out.append("What compressing costs (medians; extra = coded − identity of the same proxy):")
    out.append("")
    out.append("| proxy | coding | µs/response identity | µs/response coded | extra µs/response "
               "| MB/s compressed per core | ratio |")
    out.append("|---|---|---:|---:|---:|---:|---:|")
    origin_bytes = int(a.origin_bytes)
    for p in peers:
        proxy, _, coding = p.partition("-")
        if coding in ("", "identity") or f"{proxy}-identity" not in med:
            continue
        ident, coded = med[f"{proxy}-identity"]["us"], med[p]["us"]
        extra = coded - ident
        mbps = origin_bytes / extra if extra > 0 else float("nan")   # bytes per µs = MB/s
        w = int(wire.get(p, 0))
        ratio = f"{origin_bytes / w:.2f}" if w else "–"
        out.append(f"| {proxy} | {coding} | {ident:.0f} | {coded:.0f} | {extra:.0f} | {mbps:.0f} | {ratio} |")
    out.append("")
    g, n = med.get("gatehouse-gzip"), med.get("nginx-gzip")
    gi, ni = med.get("gatehouse-identity"), med.get("nginx-identity")
    if g and n:
        line = (f"**gzip level {a.level}: gatehouse {g['us']:.0f} µs/response vs nginx {n['us']:.0f} "
                f"({g['us'] / n['us']:.2f}×), {_k(g['rps'])} vs {_k(n['rps'])} req/s "
                f"({g['rps'] / n['rps']:.2f}×)")
        if gi and ni:
            line += (f"; identity: gatehouse {gi['us']:.0f} vs nginx {ni['us']:.0f} µs/response "
                     f"({gi['us'] / ni['us']:.2f}×)")
        out.append(line + ".**")
        out.append("")
    out += [f"- {n}" for n in a.note if n.strip()]
    _write_md(a.md, out)


# ---------------------------------------------------------------------------------------
# aggregate.sh: the upstreams (asyncio HTTP/1.1 servers that answer after a delay)
# ---------------------------------------------------------------------------------------

async def _serve_part(port, delay_ms, name):
    body = json.dumps({"part": name, "delay_ms": delay_ms, "items": [1, 2, 3],
                       "label": f"upstream {name}"}).encode()
    head = (b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: "
            + str(len(body)).encode() + b"\r\n\r\n")
    health_body = b'{"status":"ok"}'
    health = (b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: "
              + str(len(health_body)).encode() + b"\r\n\r\n" + health_body)

    async def handle(reader, writer):
        try:
            while True:
                try:
                    raw = await reader.readuntil(b"\r\n\r\n")
                except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
                    return
                lines = raw.decode("latin-1").split("\r\n")
                length = 0
                for h in lines[1:]:
                    k, _, v = h.partition(":")
                    if k.strip().lower() == "content-length":
                        length = int(v.strip() or 0)
                if length:
                    await reader.readexactly(length)
                path = lines[0].split(" ")[1] if " " in lines[0] else "/"
                if path == "/health":
                    writer.write(health)
                else:
                    await asyncio.sleep(delay_ms / 1000.0)
                    writer.write(head + body)
                await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", port, backlog=1024)
    return server


async def _agg_upstreams(ports, delays, names):
    servers = [await _serve_part(p, d, n) for p, d, n in zip(ports, delays, names)]
    print("ready", flush=True)
    await asyncio.gather(*(s.serve_forever() for s in servers))


def cmd_agg_upstreams(a):
    ports = [int(p) for p in a.ports.split(",")]
    delays = [float(d) for d in a.delays.split(",")]
    names = a.names.split(",")
    if not len(ports) == len(delays) == len(names):
        sys.exit("--ports, --delays and --names must have as many entries")
    try:
        asyncio.run(_agg_upstreams(ports, delays, names))
    except KeyboardInterrupt:
        pass


# ---------------------------------------------------------------------------------------
# aggregate.sh: the client (one keep-alive HTTP/1.1 connection per concurrent call)
# ---------------------------------------------------------------------------------------

class _Conn:
    def __init__(self, port):
        self.port = port
        self.reader = self.writer = None

    async def open(self):
        self.reader, self.writer = await asyncio.open_connection("127.0.0.1", self.port)

    async def get(self, path):
        """(status, headers, body) of GET path on this connection."""
        self.writer.write(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{self.port}\r\n\r\n".encode())
        raw = await self.reader.readuntil(b"\r\n\r\n")
        lines = raw.decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ")[1])
        headers = {}
        for h in lines[1:]:
            if h:
                k, _, v = h.partition(":")
                headers[k.strip().lower()] = v.strip()
        if "content-length" in headers:
            body = await self.reader.readexactly(int(headers["content-length"]))
        elif headers.get("transfer-encoding", "").lower() == "chunked":
            body = b""
            while True:
                size = int((await self.reader.readuntil(b"\r\n")).split(b";")[0], 16)
                chunk = await self.reader.readexactly(size + 2)
                if size == 0:
                    # trailers end with an empty line
                    while chunk != b"\r\n":
                        chunk = await self.reader.readuntil(b"\r\n")
                    break
                body += chunk[:-2]
        else:
            body = b""
        if headers.get("connection", "").lower() == "close":
            await self.reopen()
        return status, headers, body

    async def reopen(self):
        self.close()
        await self.open()

    def close(self):
        if self.writer:
            self.writer.close()


MODES = {
    "aggregate": "1 GET on the aggregate route (gatehouse calls the 3 parts in parallel and merges)",
    "sequential": "3 GETs through gatehouse, one after the other (proxied routes, one connection)",
    "parallel": "3 GETs through gatehouse at once (3 connections), done when the last answers",
    "single": "1 GET through gatehouse to the slowest part (proxied route): the floor",
}


async def _agg_loop(port, mode, parts, single, seconds, lat, errors):
    conns = [_Conn(port) for _ in range(3 if mode == "parallel" else 1)]
    for c in conns:
        await c.open()

    async def one(c, path):
        st, _, _ = await c.get(path)
        return st

    end = time.monotonic() + seconds
    try:
        while time.monotonic() < end:
            t0 = time.perf_counter()
            if mode == "aggregate":
                sts = [await one(conns[0], "/agg")]
            elif mode == "single":
                sts = [await one(conns[0], single)]
            elif mode == "sequential":
                sts = [await one(conns[0], p) for p in parts]
            else:
                sts = await asyncio.gather(*(one(c, p) for c, p in zip(conns, parts)))
            ms = (time.perf_counter() - t0) * 1000.0
            if all(s == 200 for s in sts):
                lat.append(ms)
            else:
                errors.append(sts)
    finally:
        for c in conns:
            c.close()


AGG_FIELDS = ["started", "rep", "attempt", "kept", "mode", "ops", "errors", "duration_s", "ops_per_s",
              "p50_ms", "p99_ms", "mean_ms", "proxy_cpu_s", "proxy_us_per_op", "other_cores", "quiet_wait_s"]


def cmd_agg_run(a):
    parts = a.parts.split(",")
    ours = [int(p) for p in a.ours.split(",") if p and p != "0"]
    started = time.strftime("%Y-%m-%dT%H:%M:%S")
    for attempt in range(1, a.redo + 2):
        waited, quiet = wait_quiet(a.quiet_max, a.quiet_timeout)
        if not quiet:
            print(f"    machine still busy after {waited:.0f}s; measuring anyway", file=sys.stderr)
        if a.warmup > 0:
            asyncio.run(_agg_loop(a.port, a.mode, parts, a.single or parts[0], a.warmup, [], []))
        lat, errors = [], []
        p0, all0 = tree_ticks([a.proxy_pid]), tree_ticks(ours)
        m0, me0, t0 = machine_busy_ticks(), self_ticks(), time.monotonic()
        asyncio.run(_agg_loop(a.port, a.mode, parts, a.single or parts[0], a.duration, lat, errors))
        elapsed = time.monotonic() - t0
        p1, all1 = tree_ticks([a.proxy_pid]), tree_ticks(ours)
        m1, me1 = machine_busy_ticks(), self_ticks()
        dead = [p for p in ours if not alive(p)]
        if dead:
            sys.exit(f"process(es) {dead} exited during the {a.mode} run (see their logs)")
        other = max((m1 - m0) - (all1 - all0) - (me1 - me0), 0) / CLK_TCK / elapsed
        proxy_s = (p1 - p0) / CLK_TCK
        ops = len(lat)
        s = sorted(lat)
        row = {
            "started": started, "rep": a.rep, "attempt": attempt, "kept": 1, "mode": a.mode,
            "ops": ops, "errors": len(errors), "duration_s": f"{elapsed:.2f}",
            "ops_per_s": f"{ops / elapsed:.1f}", "p50_ms": f"{_pct(s, 50):.3f}",
            "p99_ms": f"{_pct(s, 99):.3f}", "mean_ms": f"{statistics.fmean(s) if s else float('nan'):.3f}",
            "proxy_cpu_s": f"{proxy_s:.3f}", "proxy_us_per_op": f"{proxy_s * 1e6 / max(ops, 1):.1f}",
            "other_cores": f"{other:.2f}", "quiet_wait_s": f"{waited:.1f}",
        }
        noisy = other > a.noise_max
        last = attempt == a.redo + 1
        if noisy and not last:
            row["kept"] = 0
        _append_csv(a.csv, AGG_FIELDS, row)
        if row["kept"] == 1:
            with open(a.raw, "a") as f:
                f.write("".join(f"{a.mode},{a.rep},{ms:.3f}\n" for ms in lat))
        print(f"    {a.mode:<10} rep {a.rep}: {ops:>5} ops  p50 {row['p50_ms']:>7} p99 {row['p99_ms']:>7} ms  "
              f"gatehouse {row['proxy_us_per_op']} µs/op  other {other:.2f} cores"
              + (f"  ERRORS {len(errors)} (e.g. {errors[0]})" if errors else "")
              + ("  NOISY, redoing" if noisy and not last else "  NOISY (kept)" if noisy else ""),
              file=sys.stderr)
        if ops == 0:
            sys.exit(f"no successful {a.mode} operation")
        if not noisy:
            break


def cmd_agg_check(a):
    """The aggregate route merges the 3 parts: 200, X-Aggregated: true, status success,
    and each part's answer under data.<name>, equal to what its proxied route answers."""
    parts = a.parts.split(",")
    names = a.names.split(",")

    async def run():
        c = _Conn(a.port)
        await c.open()
        st, h, body = await c.get("/agg")
        if st != 200 or h.get("x-aggregated") != "true":
            sys.exit(f"/agg: expected 200 with X-Aggregated: true, got {st} {h} {body[:300]!r}")
        doc = json.loads(body)
        if doc.get("status") != "success" or doc.get("meta", {}).get("services_succeeded") != len(parts):
            sys.exit(f"/agg: not a full success: {doc}")
        for name, path in zip(names, parts):
            st, _, pb = await c.get(path)
            if st != 200 or json.loads(pb) != doc["data"].get(name):
                sys.exit(f"/agg data.{name} is {doc['data'].get(name)}, {path} answers {st} {pb!r}")
        c.close()
        return doc

    doc = asyncio.run(run())
    print(json.dumps(doc["data"], sort_keys=True))


def cmd_agg_report(a):
    rows = _kept_rows(a.csv)
    with open(a.csv) as f:
        redone = sum(1 for r in csv.DictReader(f) if r.get("kept") == "0")
    samples = {}
    with open(a.raw) as f:
        for line in f:
            mode, _, ms = line.strip().split(",")
            samples.setdefault(mode, []).append(float(ms))
    delays = [float(d) for d in a.delays.split(",")]
    out = _head("Aggregate route vs client-side calls", a.stamp, a.meta)
    out.append("| mode | what | ops | p50 ms | p99 ms | mean ms | p50 / aggregate p50 "
               "| gatehouse CPU µs/op | errors | runs |")
    out.append("|---|---|---:|---:|---:|---:|---:|---:|---:|---|")
    modes = [m for m in MODES if m in samples]
    agg_p50 = _pct(sorted(samples.get("aggregate", [])), 50)
    res = {}
    for m in modes:
        s = sorted(samples[m])
        rs = [r for r in rows if r["mode"] == m]
        us = _med([float(r["proxy_us_per_op"]) for r in rs])
        errs = sum(int(r["errors"]) for r in rs)
        noisy = sum(1 for r in rs if float(r["other_cores"]) > a.noise_max)
        p50, p99 = _pct(s, 50), _pct(s, 99)
        res[m] = (p50, p99)
        ratio = f"{p50 / agg_p50:.2f}" if agg_p50 == agg_p50 and agg_p50 > 0 else "–"
        out.append(f"| {m} | {MODES[m]} | {len(s)} | {p50:.2f} | {p99:.2f} | {statistics.fmean(s):.2f} "
                   f"| {ratio} | {us:.0f} | {errs} | {len(rs)}" + (f" ({noisy} noisy)" if noisy else "") + " |")
    out.append("")
    out.append(f"Part delays: {', '.join(f'{d:g}' for d in delays)} ms, so the ideal is aggregate ≈ "
               f"max = {max(delays):g} ms, sequential ≈ sum = {sum(delays):g} ms, plus the "
               "per-hop cost of loopback, gatehouse and the Python upstreams.")
    out.append("")
    if "aggregate" in res and "sequential" in res:
        line = (f"**Aggregate route: p50 {res['aggregate'][0]:.2f} ms / p99 {res['aggregate'][1]:.2f} ms "
                f"vs 3 sequential calls: p50 {res['sequential'][0]:.2f} / p99 {res['sequential'][1]:.2f} ms "
                f"({res['sequential'][0] / res['aggregate'][0]:.2f}× the aggregate's p50)")
        if "parallel" in res:
            line += f"; 3 parallel client calls: p50 {res['parallel'][0]:.2f} / p99 {res['parallel'][1]:.2f} ms"
        if "single" in res:
            line += (f"; the aggregate route over one proxied call (single): "
                     f"{round(res['aggregate'][0] - res['single'][0], 2) + 0.0:+.2f} ms at p50")
        out.append(line + ".**")
        out.append("")
    if redone:
        out.append(f"- {redone} noisy run(s) redone (not counted above).")
    out += [f"- {n}" for n in a.note if n.strip()]
    _write_md(a.md, out)


# ---------------------------------------------------------------------------------------
# grpc.sh
# ---------------------------------------------------------------------------------------

GRPC_FIELDS = ["started", "rep", "attempt", "kept", "peer", "calls", "errors", "duration_s", "rps",
               "p50_ms", "p99_ms", "proxy_cpu_s", "proxy_us_per_call", "server_cpu_s",
               "server_us_per_call", "client_cpu_s", "other_cores", "quiet_wait_s"]


def cmd_grpc_run(a):
    client = shlex.split(a.client_cmd)
    ours = [int(p) for p in a.ours.split(",") if p and p != "0"]
    proxy = [a.proxy_pid] if a.proxy_pid else []
    started = time.strftime("%Y-%m-%dT%H:%M:%S")
    for attempt in range(1, a.redo + 2):
        waited, quiet = wait_quiet(a.quiet_max, a.quiet_timeout)
        if not quiet:
            print(f"    machine still busy after {waited:.0f}s; measuring anyway", file=sys.stderr)
        if a.warmup > 0:
            subprocess.run(client + [a.url, str(a.concurrency), str(a.warmup), str(a.channels)],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
        p0, s0, all0 = tree_ticks(proxy), tree_ticks([a.server_pid]), tree_ticks(ours)
        m0, me0, w0, t0 = machine_busy_ticks(), self_ticks(), children_cpu_s(), time.monotonic()
        proc = subprocess.run(client + [a.url, str(a.concurrency), str(a.duration), str(a.channels)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        elapsed = time.monotonic() - t0
        p1, s1, all1 = tree_ticks(proxy), tree_ticks([a.server_pid]), tree_ticks(ours)
        m1, me1, w1 = machine_busy_ticks(), self_ticks(), children_cpu_s()
        with open(a.raw, "a") as f:
            f.write(f"### {started} rep={a.rep} attempt={attempt} peer={a.peer} url={a.url}\n"
                    f"{proc.stdout}{proc.stderr}\n")
        dead = [p for p in ours if not alive(p)]
        if dead:
            sys.exit(f"process(es) {dead} exited during the {a.peer} run (see their logs); client said:\n"
                     f"{proc.stdout}{proc.stderr}")
        if proc.returncode != 0:
            sys.exit(f"grpc_bench client failed (exit {proc.returncode}):\n{proc.stdout}{proc.stderr}")
        try:
            res = json.loads(proc.stdout.strip().splitlines()[-1])
        except (ValueError, IndexError):
            sys.exit(f"cannot parse grpc_bench client output:\n{proc.stdout}{proc.stderr}")
        calls = max(res["calls"], 1)
        proxy_s, server_s, client_s = (p1 - p0) / CLK_TCK, (s1 - s0) / CLK_TCK, w1 - w0
        other = max((m1 - m0) - (all1 - all0) - client_s * CLK_TCK - (me1 - me0), 0) / CLK_TCK / elapsed
        row = {
            "started": started, "rep": a.rep, "attempt": attempt, "kept": 1, "peer": a.peer,
            "calls": res["calls"], "errors": res["errors"], "duration_s": f"{res['seconds']:.2f}",
            "rps": f"{res['rps']:.1f}", "p50_ms": f"{res['p50_ms']:.3f}", "p99_ms": f"{res['p99_ms']:.3f}",
            "proxy_cpu_s": f"{proxy_s:.2f}" if proxy else "",
            "proxy_us_per_call": f"{proxy_s * 1e6 / calls:.2f}" if proxy else "",
            "server_cpu_s": f"{server_s:.2f}", "server_us_per_call": f"{server_s * 1e6 / calls:.2f}",
            "client_cpu_s": f"{client_s:.2f}", "other_cores": f"{other:.2f}", "quiet_wait_s": f"{waited:.1f}",
        }
        noisy = other > a.noise_max
        last = attempt == a.redo + 1
        if noisy and not last:
            row["kept"] = 0
        _append_csv(a.csv, GRPC_FIELDS, row)
        cpu = f"{row['proxy_us_per_call']} µs/call" if proxy else "(no proxy)"
        print(f"    {a.peer:<10} rep {a.rep}: {res['rps']:>9.0f} calls/s  p50 {_lat(res['p50_ms']):>6} "
              f"p99 {_lat(res['p99_ms']):>6} ms  {cpu:<16} server {row['server_us_per_call']} µs/call  "
              f"other {other:.2f} cores" + (f"  ERRORS {res['errors']}" if res["errors"] else "")
              + ("  NOISY, redoing" if noisy and not last else "  NOISY (kept)" if noisy else ""),
              file=sys.stderr)
        if not noisy:
            break


def cmd_grpc_report(a):
    rows = _kept_rows(a.csv)
    with open(a.csv) as f:
        redone = sum(1 for r in csv.DictReader(f) if r.get("kept") == "0")
    out = _head("gRPC unary calls: gatehouse vs direct", a.stamp, a.meta)
    out.append("| peer | calls | req/s | req/s range | p50 ms | p99 ms | gatehouse CPU µs/call | µs range "
               "| server CPU µs/call | errors | runs |")
    out.append("|---|---:|---:|---|---:|---:|---:|---|---:|---:|---|")
    med = {}
    for p in ("gatehouse", "direct"):
        rs = [r for r in rows if r["peer"] == p]
        if not rs:
            continue
        rps = [float(r["rps"]) for r in rs]
        us = [float(r["proxy_us_per_call"]) for r in rs if r["proxy_us_per_call"]]
        sus = [float(r["server_us_per_call"]) for r in rs]
        p50 = _med([float(r["p50_ms"]) for r in rs])
        p99 = _med([float(r["p99_ms"]) for r in rs])
        errs = sum(int(r["errors"]) for r in rs)
        noisy = sum(1 for r in rs if float(r["other_cores"]) > a.noise_max)
        med[p] = {"rps": _med(rps), "us": _med(us), "p50": p50, "p99": p99}
        us_col = f"{_med(us):.1f} | {min(us):.1f}–{max(us):.1f}" if us else "– | –"
        out.append(f"| {p} | {sum(int(r['calls']) for r in rs):,} | {_k(_med(rps))} "
                   f"| {_k(min(rps))}–{_k(max(rps))} | {_lat(p50)} | {_lat(p99)} | {us_col} "
                   f"| {_med(sus):.1f} | {errs} | {len(rs)}" + (f" ({noisy} noisy)" if noisy else "") + " |")
    out.append("")
    g, d = med.get("gatehouse"), med.get("direct")
    if g and d:
        out.append("| req/s ratio gatehouse/direct | gatehouse CPU µs/call | added p50 ms | added p99 ms |")
        out.append("|---:|---:|---:|---:|")
        out.append(f"| {g['rps'] / d['rps']:.2f} | {g['us']:.1f} | {g['p50'] - d['p50']:+.3f} "
                   f"| {g['p99'] - d['p99']:+.3f} |")
        out.append("")
        out.append(f"**gRPC unary through gatehouse: {_k(g['rps'])} calls/s vs {_k(d['rps'])} direct "
                   f"({g['rps'] / d['rps']:.2f}×), {g['us']:.1f} µs of gatehouse CPU per call.**")
        out.append("")
    if redone:
        out.append(f"- {redone} noisy run(s) redone (not counted above).")
    out += [f"- {n}" for n in a.note if n.strip()]
    _write_md(a.md, out)


# ---------------------------------------------------------------------------------------

def _quiet_args(p):
    p.add_argument("--quiet-max", type=float, default=0.15)
    p.add_argument("--quiet-timeout", type=float, default=30)
    p.add_argument("--noise-max", type=float, default=0.25)
    p.add_argument("--redo", type=int, default=2)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)

    p = sub.add_parser("json-file")
    p.add_argument("out")
    p.add_argument("bytes", type=int)
    p.set_defaults(fn=cmd_json_file)

    p = sub.add_parser("check-body")
    p.add_argument("--encoding", choices=("gzip", "identity"), required=True)
    p.add_argument("got")
    p.add_argument("want")
    p.set_defaults(fn=cmd_check_body)

    p = sub.add_parser("compression-report")
    p.add_argument("csv")
    p.add_argument("md")
    p.add_argument("--stamp", default="")
    p.add_argument("--meta", action="append", default=[])
    p.add_argument("--note", action="append", default=[])
    p.add_argument("--bytes", action="append", default=[], help="PEER=bytes on the wire per response")
    p.add_argument("--origin-bytes", required=True)
    p.add_argument("--level", default="6")
    p.add_argument("--noise-max", type=float, default=0.25)
    p.set_defaults(fn=cmd_compression_report)

    p = sub.add_parser("agg-upstreams")
    p.add_argument("--ports", required=True)
    p.add_argument("--delays", required=True)
    p.add_argument("--names", required=True)
    p.set_defaults(fn=cmd_agg_upstreams)

    p = sub.add_parser("agg-check")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--parts", required=True, help="the parts' proxied paths, comma-separated")
    p.add_argument("--names", required=True)
    p.set_defaults(fn=cmd_agg_check)

    p = sub.add_parser("agg-run")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--mode", choices=list(MODES), required=True)
    p.add_argument("--parts", required=True)
    p.add_argument("--single", default="", help="the part of the single mode (default: the first)")
    p.add_argument("--rep", required=True)
    p.add_argument("--duration", type=float, required=True)
    p.add_argument("--warmup", type=float, default=1)
    p.add_argument("--proxy-pid", type=int, required=True)
    p.add_argument("--ours", default="")
    p.add_argument("--csv", required=True)
    p.add_argument("--raw", required=True)
    _quiet_args(p)
    p.set_defaults(fn=cmd_agg_run)

    p = sub.add_parser("agg-report")
    p.add_argument("csv")
    p.add_argument("raw")
    p.add_argument("md")
    p.add_argument("--stamp", default="")
    p.add_argument("--delays", required=True)
    p.add_argument("--meta", action="append", default=[])
    p.add_argument("--note", action="append", default=[])
    p.add_argument("--noise-max", type=float, default=0.25)
    p.set_defaults(fn=cmd_agg_report)

    p = sub.add_parser("grpc-run")
    p.add_argument("--peer", required=True)
    p.add_argument("--rep", required=True)
    p.add_argument("--url", required=True)
    p.add_argument("--client-cmd", required=True, help="e.g. 'taskset -c 1 grpc_bench client'")
    p.add_argument("--concurrency", type=int, required=True)
    p.add_argument("--channels", type=int, default=4)
    p.add_argument("--duration", type=float, required=True)
    p.add_argument("--warmup", type=float, default=1)
    p.add_argument("--proxy-pid", type=int, default=0)
    p.add_argument("--server-pid", type=int, required=True)
    p.add_argument("--ours", default="")
    p.add_argument("--csv", required=True)
    p.add_argument("--raw", required=True)
    _quiet_args(p)
    p.set_defaults(fn=cmd_grpc_run)

    p = sub.add_parser("grpc-report")
    p.add_argument("csv")
    p.add_argument("md")
    p.add_argument("--stamp", default="")
    p.add_argument("--meta", action="append", default=[])
    p.add_argument("--note", action="append", default=[])
    p.add_argument("--noise-max", type=float, default=0.25)
    p.set_defaults(fn=cmd_grpc_report)

    a = ap.parse_args()
    try:
        a.fn(a)
    except KeyboardInterrupt:
        sys.exit(130)


if __name__ == "__main__":
    main()
