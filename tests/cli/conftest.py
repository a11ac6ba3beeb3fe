"""A stand-in server for CLI tests: answers from a table, records what it was asked."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest

from rollwise.cli import _remote, main

Answer = httpx.Response | Callable[[httpx.Request], httpx.Response]


def reply(status: int, body: Any = None) -> httpx.Response:
    return httpx.Response(status, json=body) if body is not None else httpx.Response(status)


@dataclass
class Stub:
    """Routes ``(method, path)`` to an answer; a list of answers is served in turn (the last
    one repeats). Anything not routed answers 404 the way FastAPI does for an unknown path."""

    routes: dict[tuple[str, str], Answer | list[Answer]] = field(default_factory=dict)
    requests: list[httpx.Request] = field(default_factory=list)

    def on(self, method: str, path: str, *answers: Answer) -> None:
        self.routes[(method, path)] = list(answers) if len(answers) > 1 else answers[0]

    def handle(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        route = self.routes.get((request.method, request.url.path))
        if route is None:
            return reply(404, {"detail": "Not Found"})
        if isinstance(route, list):
            answer = route.pop(0) if len(route) > 1 else route[0]
        else:
            answer = route
        return answer(request) if callable(answer) else answer

    def asked(self, method: str, path: str) -> list[httpx.Request]:
        return [r for r in self.requests if r.method == method and r.url.path == path]

    def body(self, request: httpx.Request) -> Any:
        return json.loads(request.content)


@pytest.fixture
def stub(monkeypatch: pytest.MonkeyPatch) -> Stub:
    server = Stub()
    monkeypatch.setattr(_remote, "make_transport", lambda: httpx.MockTransport(server.handle))
    return server


@dataclass
class Ran:
    code: int
    out: str
    err: str


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str]) -> Callable[..., Ran]:
    """Run ``rollwise ARGS`` in-process against the stub (URL and token added)."""

    def run(*argv: str, remote: bool = True) -> Ran:
        extra = ["--url", "http://rollwise.test", "--token", "rw_test"] if remote else []
        code = main([*argv, *extra])
        captured = capsys.readouterr()
        assert "Traceback" not in captured.err
        return Ran(code, captured.out, captured.err)

    return run
