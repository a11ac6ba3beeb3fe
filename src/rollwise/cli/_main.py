"""Argument parsing and the outer loop: no traceback reaches the user."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from rollwise.cli import _control_commands, _demo, _evaluate, _lint, _server, _simulate
from rollwise.core import RollwiseError

#: Exit codes shared by every command.
EXIT_OK = 0
EXIT_FINDINGS = 1
EXIT_UNREADABLE = 2


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="rollwise", description="Gradual rollouts with control.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _lint.add_parser(commands)
    _evaluate.add_parser(commands)
    _simulate.add_parser(commands)
    _server.add_parser(commands)
    _demo.add_parser(commands)
    _control_commands.add_parsers(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit code."""
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        code: int = args.run(args)
    except RollwiseError as exc:
        print(f"rollwise: {exc}", file=sys.stderr)
        return EXIT_UNREADABLE
    except OSError as exc:
        name = exc.filename or ""
        print(f"rollwise: cannot read {name}: {exc.strerror or exc}", file=sys.stderr)
        return EXIT_UNREADABLE
    return code
