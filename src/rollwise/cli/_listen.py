"""Where a server listens: the --port option, and binding the socket before anything starts,
so that a busy or forbidden port is one line, not a server log and a traceback."""

from __future__ import annotations

import argparse
import errno
import socket

from rollwise.core import InputError


def port(text: str) -> int:
    """argparse type of --port: a whole number from 0 (any free port) to 65535."""
    try:
        value = int(text, 10)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a port number, got {text!r}") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"a port is between 0 and 65535, got {value}")
    return value


def bind(host: str, number: int) -> socket.socket:
    """A listening socket on host:port (port 0: a free one), ready to hand to uvicorn.

    Raises:
        InputError: the port is in use or not allowed, or the host is not one to listen on.
    """
    try:
        family, kind, proto, _, address = socket.getaddrinfo(
            host, number, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
    except (socket.gaierror, UnicodeError) as exc:
        raise InputError(f"cannot listen on host {host!r}: {exc}", path="--host") from None
    listener = socket.socket(family, kind, proto)
    try:
        # As uvicorn does: a port left in TIME_WAIT by a previous run can be taken again.
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(address)
        listener.listen(2048)
    except OSError as exc:
        listener.close()
        where = f"{host}:{number}"
        if exc.errno == errno.EADDRINUSE:
            message = f"port {number} is in use on {host} (another server?); choose another --port"
        elif exc.errno == errno.EACCES:
            message = f"no permission to listen on {where} (ports below 1024 need privileges)"
        elif exc.errno == errno.EADDRNOTAVAIL:
            message = f"cannot listen on {where}: {host} is not an address of this machine"
        else:
            message = f"cannot listen on {where}: {exc.strerror or exc}"
        raise InputError(message) from None
    return listener


def address(listener: socket.socket) -> str:
    """``http://host:port`` of a bound socket (the real port when 0 was asked)."""
    host, number = listener.getsockname()[:2]
    return f"http://[{host}]:{number}" if ":" in host else f"http://{host}:{number}"
