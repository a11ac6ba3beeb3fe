"""No traceback for anything a user can do: each mistake is one line naming the file, port or
URL, with a non-zero exit code (2 for unusable input)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from rollwise import __version__
from rollwise.cli._remote import read_error
from tests.cli.conftest import Ran, Stub, reply


def _one_line(ran: Ran) -> str:
    lines = ran.err.strip().splitlines()
    assert len(lines) == 1, ran.err
    return lines[0]


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def busy_port() -> Iterator[int]:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        yield int(listener.getsockname()[1])


def test_version(cli: Callable[..., Ran]) -> None:
    """rollwise --version prints the package version."""
    ran = cli("--version", remote=False)
    assert ran.code == 0 and ran.out == f"rollwise {__version__}\n"


# --- files ---------------------------------------------------------------------------------


@pytest.fixture(params=["missing", "directory", "not-utf8"])
def bad_file(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[Path, str]:
    if request.param == "missing":
        return tmp_path / "missing.yaml", "No such file or directory"
    if request.param == "directory":
        folder = tmp_path / "folder.yaml"
        folder.mkdir()
        return folder, "it is a directory, not a file"
    latin = tmp_path / "latin1.yaml"
    latin.write_bytes("flag: caf\xe9\n".encode("latin-1"))
    return latin, "it is not UTF-8 text (byte 0xe9 at offset 9)"


@pytest.mark.parametrize(
    "command",
    [
        ["lint", "{file}"],
        ["lint", "{plan}", "--flags", "{file}"],
        ["evaluate", "{file}", "new-checkout"],
        ["simulate", "{file}"],
        ["apply", "{file}", "--url", "http://x.test", "--token", "t"],
        ["rollout", "start", "f", "--plan", "{file}", "--url", "http://x.test", "--token", "t"],
    ],
)
def test_a_file_that_cannot_be_read_is_one_line(
    cli: Callable[..., Ran], bad_file: tuple[Path, str], plan_path: Path, command: list[str]
) -> None:
    """Missing, a directory, or not UTF-8: exit 2 and one line with the file name and why."""
    path, reason = bad_file
    argv = [part.format(file=path, plan=plan_path) for part in command]
    ran = cli(*argv, remote=False)
    assert ran.code == 2
    assert _one_line(ran) == f"rollwise: cannot read {path}: {reason}"


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads any file")
def test_a_file_without_read_permission(cli: Callable[..., Ran], tmp_path: Path) -> None:
    """A file this user may not read: exit 2, one line."""
    secret = tmp_path / "plan.yaml"
    secret.write_text("flag: f\n")
    secret.chmod(0)
    ran = cli("lint", str(secret), remote=False)
    assert ran.code == 2
    assert _one_line(ran) == f"rollwise: cannot read {secret}: Permission denied"


# --- ports and databases -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("99999", "a port is between 0 and 65535, got 99999"),
        ("-1", "a port is between 0 and 65535, got -1"),
        ("http", "expected a port number, got 'http'"),
    ],
)
@pytest.mark.parametrize("command", ["server", "demo"])
def test_a_bad_port_is_refused_by_argparse(
    cli: Callable[..., Ran], command: str, value: str, message: str
) -> None:
    """--port outside 0..65535, or not a number: one line naming the option, exit 2."""
    ran = cli(command, "--port", value, remote=False)
    assert ran.code == 2
    assert _one_line(ran) == (
        f"rollwise {command}: argument --port: {message} (see rollwise {command} --help)"
    )


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("fast", "a number of evaluations a second, got 'fast'"),
        ("-5", "must be between 0 and 1e9, got -5"),
        ("nan", "must be between 0 and 1e9, got nan"),
    ],
)
def test_a_bad_ofrep_rate_is_refused_by_argparse(
    cli: Callable[..., Ran], value: str, message: str
) -> None:
    ran = cli("server", "--ofrep-rate", value, remote=False)
    assert ran.code == 2
    assert _one_line(ran) == (
        f"rollwise server: argument --ofrep-rate: {message} (see rollwise server --help)"
    )


def test_a_busy_port_is_said_before_anything_starts(
    cli: Callable[..., Ran], busy_port: int, tmp_path: Path
) -> None:
    """server on a port in use: one line naming it; no database file is created."""
    database = tmp_path / "rollwise.db"
    ran = cli("server", "--port", str(busy_port), "--db", f"sqlite:///{database}", remote=False)
    assert ran.code == 2
    assert _one_line(ran).startswith(f"rollwise: port {busy_port} is in use on 127.0.0.1")
    assert not database.exists()


def test_the_demo_on_a_busy_port(cli: Callable[..., Ran], busy_port: int) -> None:
    """demo --port on a port in use: one line, exit 2."""
    ran = cli("demo", "--port", str(busy_port), remote=False)
    assert ran.code == 2
    assert f"port {busy_port} is in use" in _one_line(ran)


def test_a_host_that_is_not_here(cli: Callable[..., Ran]) -> None:
    """--host naming no address of this machine: one line naming it."""
    ran = cli("server", "--host", "192.0.2.1", "--port", "0", remote=False)
    assert ran.code == 2
    assert "192.0.2.1" in _one_line(ran)


def test_an_unwritable_sqlite_path(cli: Callable[..., Ran], tmp_path: Path) -> None:
    """A SQLite file in a directory that does not exist: one line with the URL, exit 2."""
    url = f"sqlite:///{tmp_path}/no/such/dir/rollwise.db"
    ran = cli("server", "--port", "0", "--db", url, remote=False)
    assert ran.code == 2
    line = _one_line(ran)
    assert line.startswith(f"rollwise: cannot open the database {url}: unable to open")


def test_an_unreachable_postgres_never_shows_the_password(cli: Callable[..., Ran]) -> None:
    """PostgreSQL that refuses connections: one line with the URL, its password masked."""
    url = f"postgresql://rollwise:hunter2secret@127.0.0.1:{_free_port()}/rollwise"
    ran = cli("server", "--port", "0", "--db", url, remote=False)
    assert ran.code == 2
    line = _one_line(ran)
    assert "hunter2secret" not in line
    assert "cannot open the database postgresql://rollwise:***@127.0.0.1:" in line
    assert "Connection refused" in line


def test_a_database_url_the_store_cannot_use_hides_the_password(
    cli: Callable[..., Ran],
) -> None:
    """A URL with an unknown scheme is refused by the store; the password stays hidden."""
    ran = cli("server", "--port", "0", "--db", "postgres://bob:hunter2secret@db/x", remote=False)
    assert ran.code == 2
    assert "hunter2secret" not in ran.err and "bob:***@db" in _one_line(ran)


# --- servers that are not there, or refuse ------------------------------------------------


def test_an_unreachable_server(cli: Callable[..., Ran]) -> None:
    """Nothing listens at --url: one line naming the URL, exit 2."""
    url = f"http://127.0.0.1:{_free_port()}"
    ran = cli("flags", "list", "--url", url, "--token", "t", remote=False)
    assert ran.code == 2
    assert _one_line(ran).startswith(f"rollwise: cannot reach {url}: ")


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--url", "localhost:8000", "--token", "t"], "--url must look like http://HOST:PORT"),
        (["--url", "http://x.test"], "no token: pass --token or set ROLLWISE_TOKEN"),
        (["--url", "http://x.test", "--token", "tökén"], "the token has characters"),
    ],
)
def test_connection_options_that_cannot_work(
    cli: Callable[..., Ran], monkeypatch: pytest.MonkeyPatch, argv: list[str], message: str
) -> None:
    """A URL without a scheme, no token, a token no server could have: one line each."""
    monkeypatch.delenv("ROLLWISE_TOKEN", raising=False)
    ran = cli("audit", *argv, remote=False)
    assert ran.code == 2
    assert message in _one_line(ran)


def test_an_invalid_token(stub: Stub, cli: Callable[..., Ran]) -> None:
    """401: one line naming the server and saying to check the token."""
    stub.on("GET", "/api/v1/flags", reply(401, {"detail": "unknown, revoked or expired token"}))
    ran = cli("flags", "list")
    assert ran.code == 2
    assert _one_line(ran) == (
        "rollwise: http://rollwise.test refused the token (unknown, revoked or expired token): "
        "check --token or ROLLWISE_TOKEN"
    )


def test_a_server_that_does_not_answer_in_time(stub: Stub, cli: Callable[..., Ran]) -> None:
    """A timeout: one line saying how long it waited."""

    def slow(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("timed out", request=request)

    stub.on("GET", "/api/v1/audit", slow)
    ran = cli("audit")
    assert ran.code == 2
    assert _one_line(ran).startswith("rollwise: no answer from http://rollwise.test within 10s")


def test_something_that_is_not_a_rollwise_server(stub: Stub, cli: Callable[..., Ran]) -> None:
    """A web page instead of JSON: one line asking whether it is a rollwise server."""
    stub.on("GET", "/api/v1/flags", httpx.Response(200, text="<html>hello</html>"))
    ran = cli("flags", "list")
    assert ran.code == 2
    assert "is it a rollwise server?" in _one_line(ran)


def test_a_proxy_error_page_is_one_line(stub: Stub, cli: Callable[..., Ran]) -> None:
    """A 502 page from a proxy in front of the server: its text on one line, cut short."""
    page = "<html>\n<body>\n<h1>502 Bad Gateway</h1>\n" + "x" * 1000 + "\n</body></html>"
    stub.on("GET", "/api/v1/flags", httpx.Response(502, text=page))
    ran = cli("flags", "list")
    assert ran.code == 2
    line = _one_line(ran)
    assert line.startswith("rollwise: GET /api/v1/flags: 502 <html> <body> <h1>502 Bad Gateway")
    assert line.endswith("…") and len(line) < 300


def test_an_unexpected_answer_is_one_line_marked_as_a_bug(
    stub: Stub, cli: Callable[..., Ran], monkeypatch: pytest.MonkeyPatch
) -> None:
    """What rollwise did not foresee is still one line (exit 70); ROLLWISE_DEBUG=1 re-raises."""
    monkeypatch.delenv("ROLLWISE_DEBUG", raising=False)
    stub.on("GET", "/api/v1/flags", reply(200, {"flags": "not a list"}))
    ran = cli("flags", "list")
    assert ran.code == 70
    assert "a bug in rollwise" in _one_line(ran) and "ROLLWISE_DEBUG=1" in ran.err
    monkeypatch.setenv("ROLLWISE_DEBUG", "1")
    with pytest.raises(TypeError):
        cli("flags", "list")


# --- the error bodies ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (
            {"error": "not_found", "message": "no flag 'x'", "details": {}},
            ("no flag 'x'", "not_found", []),
        ),
        ({"detail": "the rollout is paused"}, ("the rollout is paused", None, [])),
        (
            {"detail": {"message": "expected a duration", "error": "plan.yaml:4: bake: expected"}},
            ("plan.yaml:4: bake: expected", None, []),
        ),
        (
            {"detail": [{"loc": ["body", "name"], "msg": "Field required"}]},
            ("body.name: Field required", None, []),
        ),
        (
            {
                "error": "lint_failed",
                "message": "the plan has errors",
                "details": {
                    "findings": [
                        {
                            "code": "RW001",
                            "severity": "error",
                            "path": "guards",
                            "message": "the plan has no guard",
                        },
                        {"code": "RW003", "severity": "error", "path": "", "message": "one stage"},
                    ]
                },
            },
            (
                "the plan has errors",
                "lint_failed",
                ["error RW001 guards: the plan has no guard", "error RW003: one stage"],
            ),
        ),
        ("not json", ("plain text", None, [])),
    ],
)
def test_error_bodies_old_and_new(body: object, expected: tuple[str, str, list[str]]) -> None:
    """The one error schema is read, and so are the bodies of servers before it."""
    assert read_error(body if body != "not json" else None, "plain text") == expected


def test_findings_are_printed_one_per_line(stub: Stub, cli: Callable[..., Ran]) -> None:
    """A 422 with details.findings: the message, then each finding on its own line."""
    stub.on(
        "POST",
        "/api/v1/rollouts/1/approve",
        reply(
            422,
            {
                "error": "invalid",
                "message": "cannot approve",
                "details": {
                    "findings": [
                        {"code": "RW9", "severity": "error", "path": "stages[1]", "message": "m"}
                    ]
                },
            },
        ),
    )
    stub.on(
        "GET",
        "/api/v1/flags",
        reply(200, {"flags": [{"key": "f", "rollout": {"id": 1}}]}),
    )
    stub.on("GET", "/api/v1/rollouts/1", reply(200, {"id": 1}))
    ran = cli("rollout", "approve", "f", "all")
    assert ran.code == 2
    assert ran.err.splitlines() == [
        "rollwise: POST /api/v1/rollouts/1/approve: 422 cannot approve",
        "  error RW9 stages[1]: m",
    ]


def test_a_closed_pipe_ends_quietly(plan_path: Path) -> None:
    """`rollwise lint … | head -0`: the reader is gone; no BrokenPipeError is printed."""
    read, write = os.pipe()
    os.close(read)
    done = subprocess.run(
        [sys.executable, "-m", "rollwise.cli", "lint", str(plan_path)],
        stdout=write,
        stderr=subprocess.PIPE,
        text=True,
        check=False,
    )
    os.close(write)
    assert done.returncode == 141
    assert done.stderr == ""
