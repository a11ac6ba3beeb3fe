#!/usr/bin/env python3
"""The floor under ``kill_switch_sdk.py`` on this machine, and the server's share of it: the same
shape of fan-out with no rollwise in it (``--target raw``), and with a real rollwise server but
bare clients (``--target rollwise``), to tell what the p99 < 100 ms target (issue 12) asks of
the hardware, of rollwise's server and of its SDK.

``raw``: one asyncio process holds ``--processes`` × ``--clients`` loopback TCP connections;
each client is a thread blocked in ``recv`` on its own connection, ``--clients`` of them per
process, as an application's ``rollwise.Client`` reads its stream. The parent tells the server
to send one server-sent-events frame (a kill event's) on every connection, a plain
``transport.write`` each; each client thread parses it (``json.loads``) and stamps
``time.monotonic()`` (one clock for every process on Linux). Latency is from the moment the
parent asked to each client's stamp. No HTTP, no middleware, no snapshot, no evaluation: what
Python servers and clients in threads cannot beat here with these many connections and
processes. With ``--reader shared``, one thread in each process reads all of its connections
as they become readable (``selectors``), as the SDK's ``_hub.py`` does since 2026-12-03; with
``--reader threads`` (the default), a thread per connection, as the SDK did before. The
server's CPU per round (user and system: the kernel's share of each send
counts) is printed too.

``rollwise``: the same clients open ``GET /sdk/v1/stream?kills=true`` on a real ``rollwise
server`` (``_local_server``, SQLite) over their raw sockets, and a round is the kill switch
flipped through the API (kill, unkill, …), timed from the request. Against ``raw``: what the
server adds. Against ``kill_switch_sdk.py``: what the SDK adds (reading the stream, applying
the event to its snapshot, evaluating).

Prints a table and writes benchmarks/results/kill_switch_floor_TARGET_READER.json.

    python benchmarks/kill_switch_floor.py [--target raw|rollwise] [--reader threads|shared]
        [--processes 10] [--clients 100] [--rounds 10]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import multiprocessing
import multiprocessing.connection
import resource
import selectors
import socket
import threading
import time
from pathlib import Path
from typing import Any

import httpx

from _local_server import local_server, sdk_key
from _stats import percentile

HERE = Path(__file__).resolve().parent
ADMIN = "rw_admin_benchmark-kill-switch-floor"
#: A kill event as the server sends it (``event: kill``, the version, the flag, the switch).
FRAME = b'event: kill\ndata: {"version":1234,"flag":"new-checkout","killed":true}\n\n'


def _server(port_pipe: multiprocessing.connection.Connection, expected: int) -> None:
    """Accept ``expected`` connections, then on each "send" from the pipe write ``FRAME`` on
    every one, and answer with the CPU time spent so far."""

    async def main() -> None:
        writers: list[asyncio.StreamWriter] = []
        everyone = asyncio.Event()

        async def accepted(_reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            writers.append(writer)
            if len(writers) == expected:
                everyone.set()

        server = await asyncio.start_server(accepted, "127.0.0.1", 0, backlog=4096)
        port_pipe.send(server.sockets[0].getsockname()[1])
        await everyone.wait()
        port_pipe.send("connected")
        loop = asyncio.get_running_loop()
        while True:
            message = await loop.run_in_executor(None, port_pipe.recv)
            if message == "stop":
                break
            for writer in writers:
                writer.write(FRAME)
            port_pipe.send(time.process_time())
        server.close()

    asyncio.run(main())


def _clients(
    port: int,
    count: int,
    request: bytes,
    pipe: multiprocessing.connection.Connection,
    shared: bool,
) -> None:
    """``count`` threads, each on its own connection (sending ``request`` first, if any, and
    waiting for the first ``event: snapshot`` frame), stamping when a kill frame arrives; with
    ``shared``, one thread reading all of them as they become readable (the SDK's
    ``_hub.py``)."""
    stamps = [0.0] * count
    arrived = threading.Semaphore(0)
    opened = threading.Semaphore(0)

    def start(connection: socket.socket) -> None:
        """Send the request, if any, and read up to the end of the first snapshot event."""
        buffered = b""
        if request:
            connection.sendall(request)
            while b"event: snapshot\n" not in buffered or not buffered.endswith(b"\n\n\r\n"):
                data = connection.recv(65536)
                if not data:
                    raise ConnectionError(
                        f"the stream ended before its snapshot: {buffered[:200]!r}"
                    )
                buffered += data

    def kills(index: int, buffered: bytes) -> bytes:
        """Stamp each whole kill frame in ``buffered``; what is left of it."""
        while True:
            begin = buffered.find(b"event: kill\n")
            end = buffered.find(b"\n\n", begin)
            if begin < 0 or end < 0:
                return buffered
            data_line = buffered[begin:end].split(b"\n")[1]
            json.loads(data_line[len(b"data: ") :])
            buffered = buffered[end + 2 :]
            stamps[index] = time.monotonic()
            arrived.release()

    def read(index: int, connection: socket.socket) -> None:
        start(connection)
        opened.release()
        buffered = b""
        while True:
            data = connection.recv(65536)
            if not data:
                return
            buffered = kills(index, buffered + data)

    def read_all() -> None:
        selector = selectors.DefaultSelector()
        for index, connection in enumerate(connections):
            start(connection)
            opened.release()
            connection.setblocking(False)
            selector.register(connection, selectors.EVENT_READ, [index, b""])
        while True:
            for key, _ in selector.select():
                state = key.data
                data = key.fileobj.recv(65536)  # type: ignore[union-attr]
                if not data:
                    selector.unregister(key.fileobj)
                    continue
                state[1] = kills(state[0], state[1] + data)

    connections = [socket.create_connection(("127.0.0.1", port)) for _ in range(count)]
    if shared:
        threading.Thread(target=read_all, daemon=True).start()
    else:
        for index, connection in enumerate(connections):
            threading.Thread(target=read, args=(index, connection), daemon=True).start()
    for _ in range(count):
        opened.acquire()
    pipe.send("ready")
    while pipe.recv() == "round":
        for _ in range(count):
            arrived.acquire()
        pipe.send(list(stamps))
    for connection in connections:
        connection.close()


class _Raw:
    """The floor's server: ``_server`` in a process of its own."""

    def __init__(self, total: int, context: Any) -> None:
        self.pipe, child = context.Pipe()
        self.process = context.Process(target=_server, args=(child, total), daemon=True)
        self.process.start()
        self.port = self.pipe.recv()
        self.request = b""
        self._cpu: float | None = None

    def connected(self) -> None:
        assert self.pipe.recv() == "connected"

    def send(self, number: int) -> float | None:
        """Send a frame to everyone; the server's CPU time since the last round, in ms."""
        self.pipe.send("send")
        cpu, before = self.pipe.recv(), self._cpu
        self._cpu = cpu
        return None if before is None else (cpu - before) * 1000

    def stop(self) -> None:
        self.pipe.send("stop")
        self.process.join(timeout=10)


class _Rollwise:
    """A real ``rollwise server`` (``_local_server``): clients read its stream of kill events
    (``GET /sdk/v1/stream?kills=true`` over raw sockets), and a round is the kill switch
    flipped through the API."""

    def __init__(self, stack: contextlib.ExitStack) -> None:
        url = stack.enter_context(local_server(ADMIN, controller=False))
        self.port = int(url.rsplit(":", 1)[1])
        key = sdk_key(url, ADMIN)
        self.request = (
            f"GET /sdk/v1/stream?kills=true HTTP/1.1\r\nHost: 127.0.0.1:{self.port}\r\n"
            f"Authorization: Bearer {key}\r\nAccept: text/event-stream\r\n\r\n"
        ).encode()
        self.admin = stack.enter_context(
            httpx.Client(base_url=url, headers={"Authorization": f"Bearer {ADMIN}"}, timeout=60)
        )

    def connected(self) -> None:
        pass

    def send(self, number: int) -> float | None:
        action = "kill" if number % 2 == 0 else "unkill"
        self.admin.post(f"/api/v1/flags/new-checkout/{action}").raise_for_status()
        return None

    def stop(self) -> None:
        pass


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--processes", type=int, default=10)
    parser.add_argument("--clients", type=int, default=100, help="client threads per process")
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument(
        "--target",
        choices=("raw", "rollwise"),
        default="raw",
        help="raw: the floor's own asyncio server; rollwise: a real server's stream, flipped "
        "through its API",
    )
    parser.add_argument(
        "--reader",
        choices=("threads", "shared"),
        default="threads",
        help="threads: a thread per client blocked in recv (the SDK before 2026-12-03); "
        "shared: one thread per process reading every connection as it becomes readable "
        "(the SDK since)",
    )
    args = parser.parse_args()
    total = args.processes * args.clients
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, max(soft, 4 * total + 256)), hard))
    context = multiprocessing.get_context("spawn")
    with contextlib.ExitStack() as stack:
        server = _Raw(total, context) if args.target == "raw" else _Rollwise(stack)
        pipes, workers = [], []
        for _ in range(args.processes):
            parent, child = context.Pipe()
            worker = context.Process(
                target=_clients,
                args=(server.port, args.clients, server.request, child, args.reader == "shared"),
            )
            worker.daemon = True
            worker.start()
            pipes.append(parent)
            workers.append(worker)
        for pipe in pipes:
            assert pipe.recv() == "ready"
        server.connected()
        time.sleep(1.0)
        rounds: list[dict[str, Any]] = []
        for number in range(args.rounds):
            for pipe in pipes:
                pipe.send("round")
            time.sleep(0.2)  # every client thread back in recv
            asked = time.monotonic()
            cpu = server.send(number)
            stamps = [stamp for pipe in pipes for stamp in pipe.recv()]
            latencies = [(stamp - asked) * 1000 for stamp in stamps]
            rounds.append(
                {
                    "round": number,
                    "first_ms": round(min(latencies), 1),
                    "p50_ms": round(percentile(latencies, 0.50), 1),
                    "p99_ms": round(percentile(latencies, 0.99), 1),
                    "max_ms": round(max(latencies), 1),
                    "server_cpu_ms": None if cpu is None else round(cpu, 1),
                }
            )
            time.sleep(0.5)
        for pipe in pipes:
            pipe.send("stop")
        server.stop()
        for process in workers:
            process.join(timeout=10)
    what = (
        f"one asyncio process writing one {len(FRAME)}-byte frame to each of {total:,} loopback "
        "connections"
        if args.target == "raw"
        else f"a rollwise server's kill events on {total:,} streams, from the API request"
    )
    readers = (
        f"{args.clients} threads" if args.reader == "threads" else f"one thread of {args.clients}"
    )
    print(
        f"Kill switch floor ({args.target}): {what}; {args.processes} processes x "
        f"{readers} reading them (recv, json.loads, stamp)"
    )
    print(
        f"  {'round':<6} {'first ms':>9} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8}"
        f" {'server CPU ms':>14}"
    )
    for row in rounds:
        cpu_text = "" if row["server_cpu_ms"] is None else f"{row['server_cpu_ms']:.1f}"
        print(
            f"  {row['round']:<6} {row['first_ms']:>9.1f} {row['p50_ms']:>8.1f}"
            f" {row['p99_ms']:>8.1f} {row['max_ms']:>8.1f} {cpu_text:>14}"
        )
    p99s = sorted(row["p99_ms"] for row in rounds)
    print(
        f"  p99 over the rounds: min {p99s[0]:.1f}, median {p99s[len(p99s) // 2]:.1f}, "
        f"max {p99s[-1]:.1f} ms"
    )
    result = {
        "target": args.target,
        "reader": args.reader,
        "processes": args.processes,
        "clients_per_process": args.clients,
        "rounds": rounds,
        "p99_median_ms": p99s[len(p99s) // 2],
    }
    out = HERE / "results" / f"kill_switch_floor_{args.target}_{args.reader}.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
