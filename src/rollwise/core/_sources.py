"""Where a guard's counts come from, when not from the SDKs: a guard's ``source`` in a plan.

Only the description lives here (pure data, validated when the plan is read); the fetching is
``rollwise.sources`` (I/O), run by the controller. A source yields counts per stratum — requests
and events, or histogram bucket counts, per side and window — never ratios, so a guard fed by
Prometheus is judged by the same anytime-valid tests as one fed by SDKs.

::

    - metric: checkout.error
      kind: rate
      tolerance: 50%
      source:
        prometheus:
          url: http://127.0.0.1:9090          # optional: the server's --prometheus-url
          events:   sum(increase(http_requests_total{code=~"5..",variant="{variant}"}[{window}]))
          requests: sum(increase(http_requests_total{variant="{variant}"}[{window}]))

``{variant}`` is replaced by the variant a side is served (the plan's ``variant`` for the exposed
side; ``baseline_variant``, else the plan's ``rollback.to``, else the flag's safe default, for the
baseline); ``{window}`` by the length of the range asked for, in seconds (``900s``); the query is
evaluated at the end of the range. No other text in the query is touched (PromQL's own braces
stay as they are).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from types import MappingProxyType
from urllib.parse import urlsplit

from rollwise.core._document import Fields, Located
from rollwise.core._quantities import parse_duration

VARIANT, WINDOW = "{variant}", "{window}"
#: The longest query text taken.
MAX_QUERY_LENGTH = 4_000


@dataclass(frozen=True, slots=True)
class PrometheusSource:
    """Queries that give a guard's counts per side and range (see the module's docstring)."""

    #: Rate guards: the requests and the events (failures, conversions) in the range.
    requests: str | None = None
    events: str | None = None
    #: Latency guards: cumulative bucket counts in the range, one series per ``le``.
    buckets: str | None = None
    #: The unit of ``le``: seconds (Prometheus' convention) or milliseconds.
    le_unit: str = "s"
    #: Gauge guards: an instant query for the system-wide value.
    query: str | None = None
    #: None: the server's (``rollwise server --prometheus-url``).
    url: str | None = None
    headers: Mapping[str, str] = field(default_factory=dict)
    timeout: timedelta = timedelta(seconds=5)
    #: How long after a window ends it is read: scrapes and rules land meanwhile.
    lag: timedelta = timedelta(seconds=30)
    #: Queries failing this many times in a row pause the rollout, with the error.
    failures: int = 3
    baseline_variant: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "headers", MappingProxyType(dict(self.headers)))


def parse_source(node: Located, kind: str) -> PrometheusSource:
    """A guard's ``source`` (``{prometheus: {...}}``) for a guard of ``kind``.

    Raises:
        InputError: an unknown source, a missing or extra query for the kind, a query without
            ``{variant}`` or ``{window}`` where it needs them, a bad URL, header or duration.
    """
    outer = Fields(node, "a guard's source")
    inner = outer.get("prometheus")
    outer.done()  # an unknown source is named here
    if inner is None:
        raise node.error("expected {prometheus: {...}}, the one source there is")
    fields = Fields(inner, "a Prometheus source")
    queries = {name: fields.get(name) for name in ("requests", "events", "buckets", "query")}
    url = fields.get("url")
    headers = fields.get("headers")
    timeout = fields.get("timeout")
    lag = fields.get("lag")
    failures = fields.get("failures")
    le_unit = fields.get("le_unit")
    baseline = fields.get("baseline_variant")
    fields.done()
    needed = {"rate": ("requests", "events"), "latency": ("buckets",), "gauge": ("query",)}[kind]
    for name, query in queries.items():
        if query is not None and name not in needed:
            raise query.error(
                f"a {kind} guard's Prometheus source takes {' and '.join(needed)}, not {name}"
            )
    texts: dict[str, str] = {}
    for name in needed:
        query = queries[name]
        if query is None:
            raise inner.error(f"a {kind} guard's Prometheus source needs {' and '.join(needed)}")
        text = query.text("a PromQL query").strip()
        if not text or len(text) > MAX_QUERY_LENGTH:
            raise query.error(f"a PromQL query of 1 to {MAX_QUERY_LENGTH} characters")
        if kind != "gauge":
            for placeholder, why in ((VARIANT, "each side's series"), (WINDOW, "the range")):
                if placeholder not in text:
                    raise query.error(f"the query must contain {placeholder}: it selects {why}")
        texts[name] = text
    return PrometheusSource(
        requests=texts.get("requests"),
        events=texts.get("events"),
        buckets=texts.get("buckets"),
        query=texts.get("query"),
        url=_url(url) if url is not None else None,
        headers=_headers(headers) if headers is not None else {},
        timeout=_duration(timeout, "timeout", timedelta(minutes=1)) or timedelta(seconds=5),
        lag=_duration(lag, "lag", timedelta(hours=1)) or timedelta(seconds=30),
        failures=_failures(failures) if failures is not None else 3,
        le_unit=_le_unit(le_unit) if le_unit is not None else "s",
        baseline_variant=baseline.text("a variant name") if baseline is not None else None,
    )


def _url(node: Located) -> str:
    text = node.text("an http(s) URL").strip()
    parts = urlsplit(text)
    try:
        parts.port  # noqa: B018 (reading it checks it: a port that is not a number raises)
    except ValueError:
        raise node.error(f"{text!r}: the port must be a number from 0 to 65535") from None
    if parts.scheme not in ("http", "https") or not parts.hostname or not text.isascii():
        raise node.error(f"expected an http(s) URL like http://127.0.0.1:9090, got {text!r}")
    return text.rstrip("/")


def _headers(node: Located) -> dict[str, str]:
    fields = node.mapping("headers: a mapping of header names to values")
    headers = {}
    for name, value in fields.items():
        text = value.text("a header value")
        printable = name.isascii() and text.isascii() and name.isprintable() and text.isprintable()
        if not name or not printable or any(c in name for c in " :"):
            raise value.error(f"header {name!r}: not a valid header name and value")
        headers[name] = text
    return headers


def _duration(node: Located | None, name: str, most: timedelta) -> timedelta | None:
    if node is None:
        return None
    text = node.text(f"a duration like 5s for {name}")
    try:
        value = parse_duration(text)
    except ValueError as exc:
        raise node.error(f"{name}: {exc}") from None
    if not timedelta(0) < value <= most:
        raise node.error(f"{name} must be more than 0 and at most {most}, got {text}")
    return value


def _failures(node: Located) -> int:
    value = node.value()
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 100:
        raise node.error(f"failures: a whole number from 1 to 100, got {node.describe()}")
    return value


def _le_unit(node: Located) -> str:
    text = node.text("s or ms")
    if text not in ("s", "ms"):
        raise node.error(f"le_unit is s (seconds, Prometheus' convention) or ms, got {text!r}")
    return text
