"""The one error body of the HTTP API, and what turns every refusal into it.

Every error answer is ``{"error": "<code>", "message": "<one human line>", "details": {…}}``:
a client switches on ``error``, shows ``message``, and finds the rest (the field path and
line of a bad input, the validation errors, the limit that was exceeded) in ``details``.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Mapping, Sequence
from http import HTTPStatus
from typing import Any
from urllib.parse import parse_qsl

from fastapi import FastAPI, Request
from fastapi import HTTPException as FastAPIHTTPException
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from rollwise.core import InputError
from rollwise.store import ConflictError, NotFoundError, StoreError

logger = logging.getLogger("rollwise.server")

#: A management request body (a flags file, a plan, a small JSON object) larger than this is
#: refused whole, before anything reads it.
MAX_MANAGEMENT_BYTES = 1024 * 1024
#: At most this many validation errors are listed in ``details.errors``.
MAX_LISTED_ERRORS = 20
_MAX_TEXT = 300
_UNPARSABLE_BODY = "There was an error parsing the body"

#: The ``error`` code of each status the API answers with.
CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    406: "not_acceptable",
    409: "conflict",
    413: "too_large",
    415: "unsupported_media_type",
    422: "invalid",
    429: "too_many_requests",
    500: "internal",
    503: "unavailable",
}


class Error(BaseModel):
    """The body of every error answer of the HTTP API."""

    model_config = ConfigDict(title="Error")

    error: str = Field(description="a short machine-readable code: invalid, not_found, …")
    message: str = Field(description="one line for a person")
    details: dict[str, Any] = Field(description="what the code needs: field path, line, limits, …")


def error_response(
    status: int,
    error: str,
    message: str,
    details: Mapping[str, Any] | None = None,
    headers: Mapping[str, str] | None = None,
) -> JSONResponse:
    """The one error body, with ``status``."""
    body = Error(error=error, message=_one_line(message), details=dict(details or {}))
    return JSONResponse(
        _encodable(jsonable_encoder(body)),
        status_code=status,
        headers=dict(headers) if headers else None,
    )


def _encodable(value: Any) -> Any:
    """The body with every lone surrogate (an input may carry one into a message) replaced,
    so that it can be sent as UTF-8."""
    if isinstance(value, str):
        return _SURROGATE.sub("\ufffd", value)
    if isinstance(value, dict):
        return {_encodable(k): _encodable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_encodable(item) for item in value]
    return value


def code_of(status: int) -> str:
    """The ``error`` code for an HTTP status: ``404`` → ``not_found``."""
    if status in CODES:
        return CODES[status]
    try:
        return HTTPStatus(status).phrase.lower().replace(" ", "_").replace("-", "_")
    except ValueError:
        return "error"


def _one_line(text: str) -> str:
    line = " ".join(str(text).split())
    return line if len(line) <= 2 * _MAX_TEXT else line[: 2 * _MAX_TEXT - 1] + "…"


def _short(text: object) -> str:
    line = str(text)
    return line if len(line) <= _MAX_TEXT else line[: _MAX_TEXT - 1] + "…"


def field_path(loc: Sequence[Any]) -> str:
    """``("body", "aggregates", 0, "histogram")`` → ``body.aggregates[0].histogram``."""
    path = ""
    for part in loc:
        if isinstance(part, int) and not isinstance(part, bool):
            path += f"[{part}]"
        else:
            name = _short(part)[:100]
            path = f"{path}.{name}" if path else name
    return path


def validation_errors(errors: Sequence[Any]) -> list[dict[str, Any]]:
    """pydantic's errors without the inputs they were given (which may be huge or secret)."""
    listed = []
    for error in errors[:MAX_LISTED_ERRORS]:
        loc = [
            part if isinstance(part, int) and not isinstance(part, bool) else _short(part)[:100]
            for part in error.get("loc", ())
        ]
        listed.append(
            {"loc": loc, "msg": _short(error.get("msg", "")), "type": str(error.get("type", ""))}
        )
    return listed


def _first_problem(errors: Sequence[Any]) -> str:
    if not errors:
        return "the request is not valid"
    first = errors[0]
    loc = tuple(first.get("loc", ()))
    if first.get("type") == "json_invalid":
        reason = (first.get("ctx") or {}).get("error", "")
        return f"body: not valid JSON{': ' + _short(reason) if reason else ''}"
    where = field_path(loc)
    message = _short(first.get("msg", "invalid"))
    return f"{where}: {message}" if where else message


async def _http_error(request: Request, exc: HTTPException) -> JSONResponse:
    detail = exc.detail
    headers = getattr(exc, "headers", None)
    if exc.status_code == 400 and detail == _UNPARSABLE_BODY:
        # FastAPI's answer to a JSON body that is not even text (not UTF-8): a bad input like
        # any other, so the same 422 as JSON that does not parse.
        return error_response(
            422,
            "invalid",
            "body: not valid JSON (is it UTF-8?)",
            {"errors": [{"loc": ["body"], "msg": "not valid JSON", "type": "json_invalid"}]},
        )
    if isinstance(detail, Mapping) and {"error", "message"} <= detail.keys():
        details = detail.get("details")
        return error_response(
            exc.status_code,
            str(detail["error"]),
            str(detail["message"]),
            details if isinstance(details, Mapping) else {},
            headers,
        )
    if isinstance(detail, Mapping):
        message = str(detail.get("message") or detail)
        return error_response(
            exc.status_code, code_of(exc.status_code), message, dict(detail), headers
        )
    if detail is None or detail == "":
        detail = code_of(exc.status_code).replace("_", " ")
    return error_response(exc.status_code, code_of(exc.status_code), str(detail), None, headers)


async def _invalid_request(request: Request, exc: RequestValidationError) -> JSONResponse:
    errors = list(exc.errors())
    return error_response(
        422, "invalid", _first_problem(errors), {"errors": validation_errors(errors)}
    )


async def _invalid_input(request: Request, exc: InputError) -> JSONResponse:
    return error_response(
        422,
        "invalid",
        str(exc),
        {"path": exc.path, "line": exc.line, "source": exc.source},
    )


def _store_status(exc: StoreError) -> int:
    status = getattr(exc, "status", None)
    if isinstance(status, int) and 400 <= status <= 599:
        return status
    if isinstance(exc, NotFoundError):
        return 404
    if isinstance(exc, ConflictError):
        return 409
    return 500


async def _store_error(request: Request, exc: StoreError) -> JSONResponse:
    status = _store_status(exc)
    if status >= 500:
        logger.error("%s %s: %s", request.method, request.url.path, exc)
    code = getattr(exc, "code", None) or code_of(status)
    details = getattr(exc, "details", None)
    return error_response(
        status, str(code), str(exc), details if isinstance(details, Mapping) else {}
    )


async def _gone(request: Request, exc: ClientDisconnect) -> JSONResponse:
    # The client left before its body arrived: nobody will read the answer, nothing is wrong.
    logger.info("%s %s: the client disconnected", request.method, request.url.path)
    return error_response(400, "client_disconnected", "the client disconnected")


async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    # What went wrong stays in the server's log: the client learns only that it did.
    logger.error("%s %s failed", request.method, request.url.path, exc_info=exc)
    return error_response(500, "internal", "the server failed to answer; the error is logged")


def install_error_handlers(app: FastAPI) -> None:
    """Make every refusal of ``app`` answer with the one error body."""
    handlers: list[tuple[type[Exception], Callable[..., Any]]] = [
        (HTTPException, _http_error),
        (RequestValidationError, _invalid_request),
        (InputError, _invalid_input),
        (StoreError, _store_error),
        (ClientDisconnect, _gone),
        (Exception, _unexpected),
    ]
    for exception, handler in handlers:
        app.add_exception_handler(exception, handler)


class BodyTooLarge(FastAPIHTTPException):
    """A request body over its limit; raised while it is read, so nothing parses the rest."""

    def __init__(self, limit: int) -> None:
        super().__init__(
            413,
            {
                "error": "too_large",
                "message": f"the request body is larger than {limit} bytes",
                "details": {"limit_bytes": limit},
            },
        )
        self.limit = limit


class BodyLimit:
    """ASGI middleware: a request body under a path prefix may hold at most its limit.

    A ``Content-Length`` over the limit is refused at once; a body sent without one (chunked)
    is counted as it arrives and refused at the first byte past the limit. Either way the
    answer is 413 with the one error body, and the route never sees the body.
    """

    def __init__(self, app: ASGIApp, limits: Mapping[str, int]) -> None:
        self.app = app
        # Longest prefix first, so that a narrower prefix wins.
        self.limits = sorted(limits.items(), key=lambda item: -len(item[0]))

    def limit_for(self, path: str) -> int | None:
        for prefix, limit in self.limits:
            if path == prefix or path.startswith(prefix.rstrip("/") + "/"):
                return limit
        return None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.limit_for(scope["path"])
        if limit is None:
            await self.app(scope, receive, send)
            return
        declared = _content_length(scope)
        if declared is not None and declared > limit:
            await _too_large(limit)(scope, receive, send)
            return
        if _bodiless(scope, declared):
            # Nothing to count, so nothing to wrap: an event stream's every write would go
            # through ``watched`` (a kill switch is written to a thousand streams at once).
            await self.app(scope, receive, send)
            return
        received = 0
        started = False

        async def counted() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise BodyTooLarge(limit)
            return message

        async def watched(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, counted, watched)
        except BodyTooLarge:
            if started:
                raise
            await _too_large(limit)(scope, receive, send)


def _bodiless(scope: Scope, declared: int | None) -> bool:
    """An HTTP/1.x request without a body: ``Content-Length: 0``, or neither that header nor
    ``Transfer-Encoding`` (RFC 9112 §6.3: then there is no body; the server's parser frames
    it so, and gives the application nothing more)."""
    if scope.get("http_version") not in ("1.0", "1.1"):
        return False
    if declared is not None:
        return declared == 0
    return all(name != b"transfer-encoding" for name, _ in scope.get("headers", ()))


def _content_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", ()):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


def _too_large(limit: int) -> JSONResponse:
    return error_response(
        413,
        "too_large",
        f"the request body is larger than {limit} bytes",
        {"limit_bytes": limit},
    )


class PrintableUrl:
    """ASGI middleware: a path or query parameter holding a control character (NUL and the
    like) is refused with 422. No name or id of the API holds one, and some databases refuse
    them outright, so they are stopped at the door rather than in every route."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            problem = _control_in_url(scope)
            if problem is not None:
                await problem(scope, receive, send)
                return
        await self.app(scope, receive, send)


def _control_in_url(scope: Scope) -> JSONResponse | None:
    if _CONTROL.search(scope.get("path", "")):
        return _control_refused(["path"], scope.get("path", ""))
    query = scope.get("query_string", b"")
    if not query:
        return None
    for name, value in parse_qsl(query.decode("latin-1"), keep_blank_values=True):
        if _CONTROL.search(name) or _CONTROL.search(value):
            return _control_refused(["query", _short(name)[:100]], name + value)
    return None


def _control_refused(loc: list[str], text: str) -> JSONResponse:
    match = _CONTROL.search(text)
    character = f"U+{ord(match.group()):04X}" if match else "a control character"
    message = f"control characters are not allowed (found {character})"
    return error_response(
        422,
        "invalid",
        f"{field_path(loc)}: {message}",
        {"errors": [{"loc": loc, "msg": message, "type": "control_character"}]},
    )


_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_SURROGATE = re.compile("[\ud800-\udfff]")
