"""Argument parsing and the outer loop: no traceback reaches the user.

Anything a person can do wrong — a missing or unreadable file, a bad option, a server that is
not there, a refused token, Ctrl-C — ends in at most one line on stderr (plus the server's
conflicts or findings, one per line) and a documented exit code."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from typing import NoReturn

from rollwise import __version__
from rollwise.cli import (
    _apply,
    _audit,
    _demo,
    _evaluate,
    _flags_commands,
    _lint,
    _rollouts,
    _server,
    _simulate,
    _tokens,
)
from rollwise.core import RollwiseError

#: Exit codes shared by every command (``rollout status --watch`` adds its own: see its help).
EXIT_OK = 0
EXIT_FINDINGS = 1
EXIT_UNREADABLE = 2
#: Something rollwise did not expect: a bug, said in one line (ROLLWISE_DEBUG=1 shows more).
EXIT_BUG = 70
#: Ctrl-C, as shells report a process ended by SIGINT (128 + 2).
EXIT_INTERRUPTED = 130
#: The reader of our output went away (``rollwise audit | head``): 128 + SIGPIPE.
EXIT_BROKEN_PIPE = 141


class _Parser(argparse.ArgumentParser):
    """argparse, with its errors in one line instead of the usage block and the error."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_UNREADABLE, f"{self.prog}: {message} (see {self.prog} --help)\n")


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="rollwise", description="Gradual rollouts with control.")
    parser.add_argument("--version", action="version", version=f"rollwise {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _lint.add_parser(commands)
    _evaluate.add_parser(commands)
    _simulate.add_parser(commands)
    _server.add_parser(commands)
    _demo.add_parser(commands)
    _apply.add_parser(commands)
    _rollouts.add_parser(commands)
    _flags_commands.add_parsers(commands)
    _audit.add_parser(commands)
    _tokens.add_parser(commands)
    return parser


#: The optional dependencies a command may need, and the extra that brings each.
_EXTRAS = {
    "numpy": "cli",
    "sqlalchemy": "server",
    "alembic": "server",
    "fastapi": "server",
    "starlette": "server",
    "uvicorn": "server",
    "prometheus_client": "server",
    "psycopg": "server",
    "rich": "demo",
}


def _say(message: str) -> None:
    print(f"rollwise: {message}", file=sys.stderr)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit code."""
    try:
        code = _run(argv)
        sys.stdout.flush()  # here, where a closed pipe can still be handled
        return code
    except KeyboardInterrupt:
        # After the terminal's "^C", on a line of its own.
        print("\n" * sys.stderr.isatty() + "rollwise: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        _silence_stdout()
        return EXIT_BROKEN_PIPE


def _run(argv: Sequence[str] | None) -> int:
    try:
        args = _parser().parse_args(argv)
    except SystemExit as exc:  # --help, --version, or a refused option (already said)
        return exc.code if isinstance(exc.code, int) else EXIT_OK
    try:
        return int(args.run(args))
    except RollwiseError as exc:
        _say(str(exc))
        return EXIT_UNREADABLE
    except ModuleNotFoundError as exc:
        extra = _EXTRAS.get((exc.name or "").partition(".")[0])
        if extra is None:
            raise
        _say(
            f"'rollwise {args.command}' needs {exc.name}, which the SDK's install leaves out: "
            f"pip install 'rollwise[{extra}]'"
        )
        return EXIT_UNREADABLE
    except BrokenPipeError:
        raise
    except OSError as exc:
        where = f"{exc.filename}: " if exc.filename else ""
        _say(f"{where}{exc.strerror or exc}")
        return EXIT_UNREADABLE
    except Exception as exc:
        if os.environ.get("ROLLWISE_DEBUG"):
            raise
        first = (str(exc).strip().splitlines() or [""])[0]
        _say(
            f"unexpected error, a bug in rollwise: {type(exc).__name__}: {first} "
            "(ROLLWISE_DEBUG=1 shows the traceback)"
        )
        return EXIT_BUG


def _silence_stdout() -> None:
    """Point stdout at /dev/null, so that flushing it at exit does not fail again."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass
