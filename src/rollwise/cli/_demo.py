"""``rollwise demo``: the checkout rollout, played on a fast simulated clock against a real
server, with a live view and a report at the end."""

from __future__ import annotations

import argparse
import contextlib
import json
import signal
import sys
import threading
from pathlib import Path
from typing import Any

from rollwise.cli._listen import bind, port
from rollwise.core import InputError

EXIT_OK = 0
#: The demo did not reach the end it was asked to show.
EXIT_UNEXPECTED = 1


def add_parser(commands: Any) -> None:
    parser = commands.add_parser(
        "demo",
        help="play the checkout rollout against a real server on a simulated clock",
        description=(
            "Starts a server on loopback (SQLite in a temporary directory), a simulated "
            "checkout service using the SDK, and the rollout of examples/checkout/plan.yaml. "
            "The new checkout fails for one tenant's invoice payments; rollwise should catch "
            "it and roll back. With --healthy it has no defect and should complete."
        ),
    )
    parser.add_argument(
        "--healthy", action="store_true", help="no defect: the rollout should complete"
    )
    parser.add_argument(
        "--keep-open",
        action="store_true",
        help="leave the server and dashboard up after the report, until Ctrl-C",
    )
    parser.add_argument("--json", metavar="FILE", help="also write the report as JSON")
    parser.add_argument(
        "--pace",
        type=float,
        default=1.0,
        help="wall-clock time per stage, as a multiple of the default (0.5: twice as fast)",
    )
    parser.add_argument("--seed", type=int, default=7, help="seed of the simulated traffic")
    parser.add_argument(
        "--port", type=port, default=0, help="server port, 0 to 65535 (default 0: a free one)"
    )
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from rollwise.demo import Demo, DemoOptions, render
    from rollwise.demo._view import LiveView

    if not 0.05 <= args.pace <= 20:
        raise InputError(f"--pace must be between 0.05 and 20, got {args.pace}", path="--pace")
    if args.json:
        parent = Path(args.json).resolve().parent
        if not parent.is_dir():
            raise InputError(f"cannot write the report: no directory {parent}", path="--json")
    if args.port:
        bind("127.0.0.1", args.port).close()  # a busy port is one line, before anything starts
    options = DemoOptions(healthy=args.healthy, pace=args.pace, seed=args.seed, port=args.port)
    # Not ``with Demo(...)``: Ctrl-C while it starts must stop what has started too.
    demo = Demo(options)
    try:
        demo.start()
        print(f"rollwise demo: server on {demo.url}, the rollout of new-checkout starts now")
        print(f"dashboard (operator token included): {demo.dashboard_url}\n")
        with LiveView(demo.dashboard_url) as view:
            report = demo.run(view)
        print()
        print(render(report))
        if args.json:
            _write(Path(args.json), json.dumps(report, indent=2) + "\n")
            print(f"report written to {args.json}")
        if args.keep_open:
            print(f"\nserver and dashboard still up at {demo.dashboard_url}; Ctrl-C to stop")
            _wait_for_interrupt()
    finally:
        demo.close()
    expected = "completed" if args.healthy else "rolled_back"
    if report["outcome"] != expected:
        print(
            f"rollwise demo: expected the rollout to end {expected}, it ended {report['outcome']}",
            file=sys.stderr,
        )
        return EXIT_UNEXPECTED
    return EXIT_OK


def _write(path: Path, text: str) -> None:
    try:
        path.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise InputError(
            f"cannot write the report to {path}: {exc.strerror or exc}", path="--json"
        ) from None


def _wait_for_interrupt() -> None:
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    with contextlib.suppress(KeyboardInterrupt):
        stop.wait()
