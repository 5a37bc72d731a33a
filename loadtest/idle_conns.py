#!/usr/bin/env python3
"""Holds N idle keep-alive client connections to a proxy (issue #21, item 5).

Each connection sends one GET, reads its whole answer (Content-Length framed) and then
stays open and idle, as a browser's keep-alive connection does between requests. Prints
`held N` once every connection has had its answer, then waits until stdin closes (or
SIGTERM) and exits, closing them all. Exits 1 when a connection fails or is closed by the
proxy before then: a held count that is not true would make the memory figure wrong.

    python3 loadtest/idle_conns.py 127.0.0.1 8080 10000 /
"""
import asyncio
import sys


async def one(host, port, path, sem):
    async with sem:
        reader, writer = await asyncio.open_connection(host, port)
        writer.write(f"GET {path} HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())
        await writer.drain()
        head = await reader.readuntil(b"\r\n\r\n")
        status = head.split(b" ", 2)[1]
        if status != b"200":
            raise RuntimeError(f"status {status.decode()}")
        length = 0
        for line in head.split(b"\r\n"):
            if line.lower().startswith(b"content-length:"):
                length = int(line.split(b":", 1)[1])
        await reader.readexactly(length)
        return reader, writer


async def main():
    host, port, count, path = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
    # Opened 256 at a time: a burst of 10,000 SYNs overflows the listen backlog.
    sem = asyncio.Semaphore(256)
    conns = await asyncio.gather(*(one(host, port, path, sem) for _ in range(count)))
    print(f"held {len(conns)}", flush=True)
    loop = asyncio.get_running_loop()
    stdin_closed = loop.run_in_executor(None, sys.stdin.read)
    # A connection the proxy closes reads EOF: that ends the run with an error.
    closed = [asyncio.ensure_future(r.read(1)) for r, _ in conns]
    done, _ = await asyncio.wait([stdin_closed, *closed], return_when=asyncio.FIRST_COMPLETED)
    if stdin_closed not in done:
        print("error: the proxy closed an idle connection while it was held", file=sys.stderr)
        sys.exit(1)
    for _, w in conns:
        w.close()


try:
    asyncio.run(main())
except (OSError, RuntimeError, asyncio.IncompleteReadError) as e:
    print(f"error: {e}", file=sys.stderr)
    sys.exit(1)
