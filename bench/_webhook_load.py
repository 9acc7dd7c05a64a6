"""The webhook benchmark's load generator, run in a process of its own: distinct events, signed as
Stripe signs them, sent over keep-alive connections (asyncio, raw HTTP/1.1), each timed.

    python -m bench._webhook_load < spec.json   # prints one JSON object: statuses, latencies
    python -m bench._webhook_load --sink PORT   # a trivial server answering 200 (the client's
                                                # own ceiling is measured against it)

The spec: {"host", "port", "path", "template" (an event), "secret", "prefix", "count",
"connections"}; event i gets the id `<prefix><i>`. Requests are built and signed before the
clock starts, so the figures are the receiver's, not the signing's.
"""

from __future__ import annotations

import asyncio
import json
import resource
import sys
import time
from collections.abc import Iterator
from typing import Any

from emulator import signature_header


def build_requests(spec: dict[str, Any]) -> list[bytes]:
    """One raw HTTP request per event: the template with a fresh id, signed now."""
    host, path, secret = spec["host"], spec["path"], spec["secret"]
    event = dict(spec["template"])
    built = []
    for i in range(spec["count"]):
        event["id"] = f"{spec['prefix']}{i}"
        # Indented like the emulator's (and Stripe's) deliveries.
        body = json.dumps(event, indent=2).encode()
        head = (
            f"POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
            f"User-Agent: Stripe/1.0\r\nStripe-Signature: {signature_header(body, secret)}\r\n"
            f"Content-Length: {len(body)}\r\n\r\n"
        )
        built.append(head.encode() + body)
    return built


# (status, seconds, body) of one request.
Result = tuple[int, float, bytes]


async def _read_response(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ", 2)[1])
    length = 0
    for line in lines[1:]:
        name, _, value = line.partition(":")
        if name.strip().lower() == "content-length":
            length = int(value)
    return status, await reader.readexactly(length)


async def _connection(
    host: str,
    port: int,
    requests: list[bytes],
    order: Iterator[int],
    results: list[Result | None],
) -> None:
    reader, writer = await asyncio.open_connection(host, port)
    try:
        for i in order:
            started = time.perf_counter()
            writer.write(requests[i])
            status, body = await _read_response(reader)
            results[i] = (status, time.perf_counter() - started, body)
    finally:
        writer.close()


async def send_all(
    host: str, port: int, requests: list[bytes], connections: int
) -> tuple[float, list[Result | None]]:
    """Send every request once over `connections` keep-alive connections: the wall seconds and
    each request's (status, seconds, body), None where its connection failed first."""
    results: list[Result | None] = [None] * len(requests)
    order = iter(range(len(requests)))  # shared: each connection takes the next request
    started = time.perf_counter()
    # A connection the server dropped ends there; the others send the rest.
    await asyncio.gather(
        *(_connection(host, port, requests, order, results) for _ in range(connections)),
        return_exceptions=True,
    )
    return time.perf_counter() - started, results


def run(spec: dict[str, Any]) -> dict[str, Any]:
    requests = build_requests(spec)
    cpu_before = resource.getrusage(resource.RUSAGE_SELF)
    wall, results = asyncio.run(send_all(spec["host"], spec["port"], requests, spec["connections"]))
    cpu_after = resource.getrusage(resource.RUSAGE_SELF)
    cpu = (cpu_after.ru_utime - cpu_before.ru_utime) + (cpu_after.ru_stime - cpu_before.ru_stime)
    return {
        "wall_s": wall,
        "client_cpu_s": cpu,
        "statuses": [r[0] if r else 0 for r in results],
        "latencies_ms": [round(r[1] * 1000, 3) if r else None for r in results],
        "bodies": [r[2].decode() if r else "" for r in results],
    }


_SINK_BODY = b'{"received":true}'
_SINK_ANSWER = (
    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: "
    + str(len(_SINK_BODY)).encode()
    + b"\r\n\r\n"
    + _SINK_BODY
)


async def _sink_client(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            length = 0
            for line in head.decode("latin-1").split("\r\n")[1:]:
                name, _, value = line.partition(":")
                if name.strip().lower() == "content-length":
                    length = int(value)
            await reader.readexactly(length)
            writer.write(_SINK_ANSWER)
    except (asyncio.IncompleteReadError, ConnectionError):
        writer.close()


async def sink(port: int) -> None:
    server = await asyncio.start_server(_sink_client, "127.0.0.1", port)
    print("ready", flush=True)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--sink":
        asyncio.run(sink(int(sys.argv[2])))
    else:
        json.dump(run(json.load(sys.stdin)), sys.stdout)
