"""``rollwise server``: the HTTP service, with the controller inside by default."""

from __future__ import annotations

import argparse
import logging
import os
import re
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rollwise.cli._listen import address, bind, port
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
    parser.set_defaults(run=run)


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
    # The port first: a busy one is said before a database file is created.
    listener = bind(args.host, args.port)
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
            logging.basicConfig(
                level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
            )
            logger.info("rollwise server on %s (Ctrl-C to stop)", address(listener))
            logger.info("dashboard: %s/", address(listener))
            if not store.has_admin_token(app.state.clock.now()):
                logger.warning(
                    "no admin token exists: restart with ROLLWISE_ADMIN_TOKEN set to a secret "
                    "(e.g. ROLLWISE_ADMIN_TOKEN=$(openssl rand -hex 24)), then create stored "
                    "tokens with 'rollwise token create' (docs/operations.md#tokens)"
                )
            server = uvicorn.Server(
                uvicorn.Config(app, host=args.host, port=args.port, log_level="info")
            )
            # uvicorn re-raises the SIGINT it caught after a graceful shutdown: the outer loop
            # turns it into exit 130.
            server.run(sockets=[listener])
        finally:
            store.close()
    finally:
        listener.close()
    return 0
