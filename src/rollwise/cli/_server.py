"""``rollwise server``: the HTTP service, with the controller inside by default."""

from __future__ import annotations

import argparse
import logging
import os
from datetime import timedelta
from typing import Any

from rollwise.core import InputError, parse_duration


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
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--no-controller", action="store_true", help="judge rollouts elsewhere")
    parser.add_argument("--tick", default="1s", help="time between controller ticks")
    parser.add_argument(
        "--webhook",
        action="append",
        default=[u for u in os.environ.get("ROLLWISE_WEBHOOKS", "").split(",") if u],
        metavar="URL",
        help="POST every applied decision here as JSON (repeatable; ROLLWISE_WEBHOOKS)",
    )
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    import uvicorn

    from rollwise.server import create_app
    from rollwise.store import Store

    try:
        tick: timedelta = parse_duration(args.tick)
    except ValueError as exc:
        raise InputError(str(exc), path="--tick") from None
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    store = Store.open(args.db)
    app = create_app(
        store,
        controller=not args.no_controller,
        tick=tick,
        admin_token=os.environ.get("ROLLWISE_ADMIN_TOKEN"),
        webhooks=args.webhook,
    )
    uvicorn.run(app, host=args.host, port=args.port, log_level="info")
    store.close()
    return 0
