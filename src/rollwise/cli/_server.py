"""``rollwise server``: the HTTP service, with the controller inside by default."""

from __future__ import annotations

import argparse
import gc
import logging
import os
import re
import shutil
import signal
import socket
import tempfile
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rollwise.cli._listen import address, bind, port
from rollwise.cli._workers import Workers, die_with_parent
from rollwise.core import InputError, parse_duration
from rollwise.core._judgements import load_judgements

if TYPE_CHECKING:
    from rollwise.store import Store

logger = logging.getLogger("rollwise.server")


def add_parser(commands: Any) -> None:
    parser = commands.add_parser(
        "server", help="run the rollwise server (API, SDK API, controller)"
    )
    parser.add_argument(
        "--db",
        default=os.environ.get("ROLLWISE_DB", "sqlite:///rollwise.db"),
        help="database URL: sqlite:///FILE (default rollwise.db) or postgresql://… (ROLLWISE_DB)",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument(
        "--port", type=port, default=8000, help="0 to 65535 (0: any free port); default 8000"
    )
    parser.add_argument("--no-controller", action="store_true", help="judge rollouts elsewhere")
    parser.add_argument("--tick", default="1s", help="time between controller ticks")
    parser.add_argument(
        "--prometheus-url",
        default=os.environ.get("ROLLWISE_PROMETHEUS_URL") or None,
        metavar="URL",
        help="the Prometheus that guards with a Prometheus source read when their plan names "
        "none (ROLLWISE_PROMETHEUS_URL)",
    )
    parser.add_argument(
        "--judgements",
        default=os.environ.get("ROLLWISE_JUDGEMENTS") or None,
        metavar="FILE",
        help="named judgements (guards over Prometheus) for Argo Rollouts and Flagger "
        "(ROLLWISE_JUDGEMENTS; docs/argo-flagger.md)",
    )
    parser.add_argument(
        "--ofrep-rate",
        type=_rate,
        default=None,
        metavar="N",
        help="OFREP evaluations a second per SDK key before 429 (0: no limit; default: "
        "docs/ofrep.md)",
    )
    parser.add_argument(
        "--webhook",
        action="append",
        default=[u for u in os.environ.get("ROLLWISE_WEBHOOKS", "").split(",") if u],
        metavar="URL",
        help="POST every applied decision here as JSON (repeatable; ROLLWISE_WEBHOOKS)",
    )
    parser.add_argument(
        "--workers",
        type=_workers,
        default=os.environ.get("ROLLWISE_WORKERS", "1"),
        metavar="N",
        help="processes serving the port (1 to 64, default 1; ROLLWISE_WORKERS): one serves "
        "on one core at most; the controller runs in the first",
    )
    # A worker of --workers: the socket it serves, its number, the process it dies with.
    parser.add_argument("--listen-fd", type=int, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--worker", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--parent", type=int, default=0, help=argparse.SUPPRESS)
    parser.set_defaults(run=run)


def _workers(text: str) -> int:
    try:
        value = int(text, 10)
    except ValueError:
        raise argparse.ArgumentTypeError(f"a number of processes, got {text!r}") from None
    if not 1 <= value <= 64:
        raise argparse.ArgumentTypeError(f"must be between 1 and 64, got {value}")
    return value


def _rate(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        message = f"a number of evaluations a second, got {text!r}"
        raise argparse.ArgumentTypeError(message) from None
    if not 0 <= value <= 1e9 or value != value:
        raise argparse.ArgumentTypeError(f"must be between 0 and 1e9, got {text}")
    return value


_PASSWORD = re.compile(r"(?<=://)([^:/@]*):([^@]*)@")


def redact(url: str) -> str:
    """The database URL without its password: ``postgresql://bob:***@db/rollwise``."""
    return _PASSWORD.sub(lambda m: f"{m.group(1)}:***@", url)


def _hide_password(text: str, url: str) -> str:
    match = _PASSWORD.search(url)
    secret = match.group(2) if match else ""
    text = redact(text)  # the URL as given, or as the store rewrote it
    # A very short password would also match ordinary words of the message.
    return text.replace(secret, "***") if len(secret) >= 4 else text


def _open_store(url: str) -> Store:
    """The store at ``url``, migrated; any failure is one line naming the URL, never its
    password."""
    import sqlalchemy.exc

    from rollwise.store import Store

    try:
        return Store.open(url)
    except InputError as exc:
        raise InputError(_hide_password(str(exc), url)) from None
    except (sqlalchemy.exc.SQLAlchemyError, OSError) as exc:
        cause = getattr(exc, "orig", None) or exc
        reason = " ".join(str(cause).split("\n")[0].split()) or type(cause).__name__
        hint = (
            " (does its directory exist, and may this user write there?)"
            if url.startswith("sqlite") and "unable to open" in reason
            else ""
        )
        raise InputError(
            f"cannot open the database {redact(url)}: {_hide_password(reason, url)}{hint}"
        ) from None


def run(args: argparse.Namespace) -> int:
    metrics = None
    if args.workers > 1 and not args.worker and not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        # /metrics answers from whichever process took the connection: every process keeps
        # its counts in files here, and each answer adds them up (set before prometheus_client
        # is imported; the workers inherit it).
        metrics = tempfile.mkdtemp(prefix="rollwise-metrics-")
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = metrics
    try:
        return _run(args)
    finally:
        if metrics is not None:
            shutil.rmtree(metrics, ignore_errors=True)


def _run(args: argparse.Namespace) -> int:
    import uvicorn

    from rollwise.server import create_app
    from rollwise.server._ofrep import DEFAULT_RATE

    try:
        tick: timedelta = parse_duration(args.tick)
    except ValueError as exc:
        raise InputError(str(exc), path="--tick") from None
    judgements = None
    if args.judgements:  # a bad file is said (with its line) before anything starts
        path = Path(args.judgements)
        judgements = load_judgements(path.read_text(encoding="utf-8"), str(path))
    if args.listen_fd is not None:  # a worker of --workers: its first process bound the port
        die_with_parent(args.parent)
        listener = socket.socket(fileno=args.listen_fd)
    else:
        # The port first: a busy one is said before a database file is created.
        listener = bind(args.host, args.port)
    workers: Workers | None = None
    try:
        store = _open_store(args.db)
        try:
            secret_key = os.environ.get("ROLLWISE_SECRET_KEY")
            if secret_key:  # the HMAC key of stored token secrets (docs/operations.md)
                store.token_key = secret_key.encode()
            app = create_app(
                store,
                controller=not args.no_controller,
                tick=tick,
                admin_token=os.environ.get("ROLLWISE_ADMIN_TOKEN"),
                webhooks=args.webhook,
                # Not given: the server's default; 0: no limit.
                ofrep_rate=DEFAULT_RATE if args.ofrep_rate is None else args.ofrep_rate or None,
                prometheus_url=args.prometheus_url,
                judgements=judgements,
            )
            who = f" (worker {args.worker})" if args.worker else ""
            logging.basicConfig(
                level=logging.INFO,
                format=f"%(asctime)s %(levelname)s %(name)s{who}: %(message)s",
            )
            if args.worker:
                logger.info("serving %s too", address(listener))
            else:
                logger.info("rollwise server on %s (Ctrl-C to stop)", address(listener))
                logger.info("dashboard: %s/", address(listener))
            if args.workers > 1 and not args.worker:
                workers = Workers(args.workers, listener, _worker_options(args), db=args.db)
                workers.start()
                # uvicorn raises the SIGTERM it caught again once it has stopped: exit through
                # the ``finally`` below, so that the workers are stopped cleanly too.
                signal.signal(signal.SIGTERM, _exit_on_sigterm)
            if not args.worker and not store.has_admin_token(app.state.clock.now()):
                logger.warning(
                    "no admin token exists: restart with ROLLWISE_ADMIN_TOKEN set to a secret "
                    "(e.g. ROLLWISE_ADMIN_TOKEN=$(openssl rand -hex 24)), then create stored "
                    "tokens with 'rollwise token create' (docs/operations.md#tokens)"
                )
            _collect_less()
            server = uvicorn.Server(
                uvicorn.Config(app, host=args.host, port=args.port, log_level="info")
            )
            # uvicorn re-raises the SIGINT it caught after a graceful shutdown: the outer loop
            # turns it into exit 130.
            server.run(sockets=[listener])
        finally:
            if workers is not None:
                workers.stop()
            store.close()
    finally:
        listener.close()
    return 0


#: Allocations between two collections of the youngest generation (CPython's default: 700).
GC_THRESHOLDS = (50_000, 20, 10)


def _collect_less() -> None:
    """Garbage-collect a serving process less often, and never walk what startup built.

    Measured with 1,000 SDKs posting 200 batches a second to two processes: under CPython's
    default thresholds (a young collection every 700 allocations) each process ran 124 young
    collections and one full one a second, the full ones walking every object of the process
    (the app's, the store's, the controller's state): 3.7 s of every 30 s went to collecting,
    and the 99th-percentile acknowledgement took 310 ms. With these thresholds and
    ``gc.freeze()`` after startup: 0.2 s and 217 ms (``benchmarks/server_ingestion.py``).
    Cycles are still collected, after 50,000 allocations instead of 700."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)


def _exit_on_sigterm(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)


def _worker_options(args: argparse.Namespace) -> list[str]:
    """What a worker of ``--workers`` is told besides its socket (the database URL goes in its
    environment, where other users cannot read a password)."""
    options = []
    if args.ofrep_rate is not None:
        options += ["--ofrep-rate", repr(args.ofrep_rate)]
    if args.prometheus_url:
        options += ["--prometheus-url", args.prometheus_url]
    if args.judgements:
        options += ["--judgements", args.judgements]
    return options
