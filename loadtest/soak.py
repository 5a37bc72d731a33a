#!/usr/bin/env python3
"""Helpers of loadtest/soak.sh (python3 stdlib only).

  ws-echo PORT             a WebSocket echo server (RFC 6455, text and binary frames)
  ws-load URL CONNS SECS OUT
                           CONNS WebSocket clients sending a message and waiting for its echo,
                           in a loop, for SECS; writes {"messages", "errors", "first_error"}
                           as JSON to OUT
  sample PID SECS EVERY OUT
                           every EVERY seconds for SECS, a CSV row: t, rss_kib, fds, threads
  report ...               the Markdown report (see `report --help`)
"""

import argparse
import asyncio
import base64
import csv
import hashlib
import json
import os
import struct
import sys
import time
import urllib.parse

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


# === WebSocket echo server ===

async def read_frame(reader):
    """One frame: (opcode, payload). Unmasks client frames."""
    b0, b1 = await reader.readexactly(2)
    opcode, masked, length = b0 & 0x0F, b1 & 0x80, b1 & 0x7F
    if length == 126:
        (length,) = struct.unpack("!H", await reader.readexactly(2))
    elif length == 127:
        (length,) = struct.unpack("!Q", await reader.readexactly(8))
    mask = await reader.readexactly(4) if masked else None
    payload = await reader.readexactly(length)
    if mask:
        payload = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    return opcode, payload


def frame(opcode, payload, mask=False):
    head = bytes([0x80 | opcode])
    n = len(payload)
    m = 0x80 if mask else 0
    if n < 126:
        head += bytes([m | n])
    elif n < 65536:
        head += bytes([m | 126]) + struct.pack("!H", n)
    else:
        head += bytes([m | 127]) + struct.pack("!Q", n)
    if not mask:
        return head + payload
    key = os.urandom(4)
    return head + key + bytes(b ^ key[i % 4] for i, b in enumerate(payload))


async def read_head(reader):
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in lines[1:]:
        if ":" in line:
            k, v = line.split(":", 1)
            headers[k.strip().lower()] = v.strip()
    return lines[0], headers


async def echo_conn(reader, writer):
    try:
        _, headers = await read_head(reader)
        key = headers.get("sec-websocket-key", "").encode()
        accept = base64.b64encode(hashlib.sha1(key + GUID).digest()).decode()
        writer.write(
            ("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
             f"Sec-WebSocket-Accept: {accept}\r\n\r\n").encode())
        await writer.drain()
        while True:
            opcode, payload = await read_frame(reader)
            if opcode == 8:  # close
                writer.write(frame(8, payload[:2]))
                await writer.drain()
                break
            if opcode == 9:  # ping
                writer.write(frame(10, payload))
            elif opcode in (1, 2):
                writer.write(frame(opcode, payload))
            await writer.drain()
    except (asyncio.IncompleteReadError, ConnectionError, asyncio.LimitOverrunError):
        pass
    finally:
        writer.close()


async def ws_echo(port):
    server = await asyncio.start_server(echo_conn, "127.0.0.1", port)
    async with server:
        await server.serve_forever()


# === WebSocket load ===

async def ws_client(url, until, stats):
    u = urllib.parse.urlparse(url)
    reader, writer = await asyncio.open_connection(u.hostname, u.port)
    key = base64.b64encode(os.urandom(16)).decode()
    writer.write(
        (f"GET {u.path or '/'} HTTP/1.1\r\nHost: {u.netloc}\r\nUpgrade: websocket\r\n"
         f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n").encode())
    await writer.drain()
    status, _ = await read_head(reader)
    if " 101 " not in status + " ":
        raise RuntimeError(f"handshake answered {status!r}")
    n = 0
    while time.monotonic() < until:
        message = f"soak {n} {os.urandom(8).hex()}".encode()
        writer.write(frame(1, message, mask=True))
        await writer.drain()
        opcode, payload = await asyncio.wait_for(read_frame(reader), 10)
        if opcode != 1 or payload != message:
            raise RuntimeError(f"echo mismatch: {payload[:40]!r}")
        stats["messages"] += 1
        n += 1
    writer.write(frame(8, struct.pack("!H", 1000), mask=True))
    await writer.drain()
    writer.close()


async def ws_load(url, conns, secs, out):
    stats = {"messages": 0, "errors": 0, "first_error": None, "connections": 0}
    until = time.monotonic() + secs

    async def one():
        # A client whose connection failed reconnects: every failure is counted.
        while time.monotonic() < until:
            try:
                stats["connections"] += 1
                await ws_client(url, until, stats)
            except Exception as e:  # noqa: BLE001 - every failure is a finding
                stats["errors"] += 1
                stats["first_error"] = stats["first_error"] or repr(e)
                await asyncio.sleep(0.1)

    await asyncio.gather(*(one() for _ in range(conns)))
    with open(out, "w") as f:
        json.dump(stats, f)


# === Sampler ===

def proc_sample(pid):
    rss = threads = 0
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                rss = int(line.split()[1])
            elif line.startswith("Threads:"):
                threads = int(line.split()[1])
    fds = len(os.listdir(f"/proc/{pid}/fd"))
    return rss, fds, threads


def sample(pid, secs, every, out):
    start = time.monotonic()
    with open(out, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["t", "rss_kib", "fds", "threads"])
        while True:
            t = time.monotonic() - start
            try:
                rss, fds, threads = proc_sample(pid)
            except FileNotFoundError:
                print(f"sample: process {pid} is gone at t={t:.0f}s", file=sys.stderr)
                sys.exit(1)
            w.writerow([round(t), rss, fds, threads])
            f.flush()
            if t >= secs:
                return
            time.sleep(every)


# === Report ===

def growth(rows, column, warmup):
    after = [r for r in rows if r["t"] >= warmup]
    base = after[0][column]
    peak = max(r[column] for r in after)
    end = after[-1][column]
    return base, peak, end, (peak - base) * 100.0 / base if base else 0.0


def report(args):
    with open(args.samples) as f:
        rows = [{k: int(v) for k, v in r.items()} for r in csv.DictReader(f)]
    with open(args.wrk) as f:
        wrk = json.load(f)
    with open(args.ws) as f:
        ws = json.load(f)
    rss = growth(rows, "rss_kib", args.warmup)
    fds = growth(rows, "fds", args.warmup)
    statuses = {int(k): v for k, v in wrk["statuses"].items()}
    unexpected = {s: n for s, n in statuses.items() if s not in (200, 429)}
    errors = wrk["socket_errors"]
    checks = [
        (f"RSS growth after warm-up < {args.max_growth} %", rss[3] < args.max_growth, f"{rss[3]:.2f} %"),
        (f"open fds growth after warm-up < {args.max_growth} %", fds[3] < args.max_growth, f"{fds[3]:.2f} %"),
        ("no HTTP status but 200 and the expected 429", not unexpected, str(unexpected or "none")),
        ("no socket error (connect, read, write, timeout)", sum(errors.values()) == 0, str(errors)),
        ("429s only where the limit is", wrk["unexpected_429"] == 0, f"{wrk['unexpected_429']} elsewhere"),
        ("no WebSocket error", ws["errors"] == 0, f"{ws['errors']} ({ws['first_error']})"),
        ("the limited route did limit", statuses.get(429, 0) > 0 or "/limited" not in args.paths,
         f"{statuses.get(429, 0)} × 429"),
    ]
    ok = all(c[1] for c in checks)
    lines = [
        f"# Soak: {args.stamp}",
        "",
        f"{args.version}, `threads: {args.threads}`, {args.duration} s at saturation "
        f"(wrk -t1 -c{args.conns} over {args.paths.replace(',', ', ')}; {args.ws_conns} WebSocket "
        f"echo clients), sampled every {args.every} s; warm-up {args.warmup} s.",
        "",
        "| check | result | value |",
        "|---|---|---|",
    ] + [f"| {name} | {'pass' if passed else '**FAIL**'} | {value} |" for name, passed, value in checks] + [
        "",
        "| figure | value |",
        "|---|---|",
        f"| HTTP requests | {wrk['requests']:,} ({wrk['requests'] / args.duration:,.0f}/s) |",
        f"| by status | {', '.join(f'{s}: {n:,}' for s, n in sorted(statuses.items()))} |",
        f"| WebSocket messages echoed | {ws['messages']:,} over {ws['connections']} connections |",
        f"| RSS after warm-up → peak → end | {rss[0]:,} → {rss[1]:,} → {rss[2]:,} KiB |",
        f"| open fds after warm-up → peak → end | {fds[0]} → {fds[1]} → {fds[2]} |",
        f"| latency p50 / p99 (wrk) | {wrk['p50_ms']:.2f} / {wrk['p99_ms']:.2f} ms |",
        "",
        "Samples (t s, RSS KiB, fds, threads):",
        "",
        "```",
    ] + [f"{r['t']:>5} {r['rss_kib']:>9} {r['fds']:>5} {r['threads']:>3}" for r in rows] + ["```", ""]
    text = "\n".join(lines)
    with open(args.out, "w") as f:
        f.write(text)
    print(text)
    print("SOAK " + ("PASSED" if ok else "FAILED"))
    sys.exit(0 if ok else 1)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    e = sub.add_parser("ws-echo")
    e.add_argument("port", type=int)
    l = sub.add_parser("ws-load")
    l.add_argument("url")
    l.add_argument("conns", type=int)
    l.add_argument("secs", type=float)
    l.add_argument("out")
    s = sub.add_parser("sample")
    s.add_argument("pid", type=int)
    s.add_argument("secs", type=float)
    s.add_argument("every", type=float)
    s.add_argument("out")
    r = sub.add_parser("report")
    for name in ("samples", "wrk", "ws", "out", "stamp", "version", "paths"):
        r.add_argument(f"--{name}", required=True)
    for name in ("duration", "warmup", "every", "conns", "ws_conns", "threads"):
        r.add_argument(f"--{name.replace('_', '-')}", dest=name, type=int, required=True)
    r.add_argument("--max-growth", dest="max_growth", type=float, default=5.0)
    a = p.parse_args()
    if a.cmd == "ws-echo":
        asyncio.run(ws_echo(a.port))
    elif a.cmd == "ws-load":
        asyncio.run(ws_load(a.url, a.conns, a.secs, a.out))
    elif a.cmd == "sample":
        sample(a.pid, a.secs, a.every, a.out)
    else:
        report(a)


if __name__ == "__main__":
    main()
