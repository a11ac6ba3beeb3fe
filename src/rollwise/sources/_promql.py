"""Prometheus' HTTP API, as the Prometheus source reads it: instant queries, one value or one
value per segment, cumulative ``le`` buckets mapped onto the judge's latency buckets. Anything
but a usable answer is a ``QueryError``."""

from __future__ import annotations

import math
from collections.abc import Mapping
from datetime import datetime
from typing import Any

import httpx

from rollwise.core._sources import PrometheusSource
from rollwise.core.judgement import LATENCY_BUCKETS, latency_bucket


class QueryError(Exception):
    """A Prometheus query that did not give an answer to use."""


class PrometheusApi:
    """Instant queries over one HTTP client. A Prometheus that did not answer is not asked
    again until ``reset`` (the feed resets at each tick: one timeout per tick at most)."""

    def __init__(self, client: httpx.Client | None = None) -> None:
        self._client = client or httpx.Client()
        self._down: set[str] = set()
        #: Queries made, over the client's life.
        self.queries = 0

    def reset(self) -> None:
        self._down = set()

    def close(self) -> None:
        self._client.close()

    def query(self, url: str, source: PrometheusSource, query: str, at: datetime) -> list[Any]:
        """An instant query's result vector. Raises QueryError for anything but an answer."""
        if url in self._down:
            raise QueryError(f"{url}: unreachable earlier in this tick")
        self.queries += 1
        try:
            answer = self._client.get(
                f"{url}/api/v1/query",
                params={"query": query, "time": f"{at.timestamp():.3f}"},
                headers=dict(source.headers),
                timeout=source.timeout.total_seconds(),
            )
        except (httpx.HTTPError, httpx.InvalidURL) as exc:
            # One timeout per Prometheus per tick, however many rollouts it feeds.
            self._down.add(url)
            raise QueryError(f"{url}: {type(exc).__name__}: {exc}") from None
        try:
            body = answer.json()
        except ValueError:
            raise QueryError(f"{url}: HTTP {answer.status_code}, not JSON") from None
        if not isinstance(body, dict) or body.get("status") != "success":
            error = body.get("error") if isinstance(body, dict) else None
            raise QueryError(f"{url}: HTTP {answer.status_code}: {error or 'not a success'}")
        data = body.get("data")
        if not isinstance(data, dict) or data.get("resultType") not in ("vector", "scalar"):
            raise QueryError(f"{url}: expected an instant vector, got {data!r:.200}")
        result = data.get("result")
        if data["resultType"] == "scalar":
            return [{"metric": {}, "value": result}]
        if not isinstance(result, list):
            raise QueryError(f"{url}: the result is not a list")
        return result

    def scalar(self, url: str, source: PrometheusSource, query: str, at: datetime) -> float | None:
        """The query's one value; None for no data (an empty vector, NaN or infinity)."""
        result = self.query(url, source, query, at)
        if not result:
            return None
        if len(result) > 1:
            raise QueryError(
                f"{len(result)} series: the query must give one value (wrap it in sum(...))"
            )
        value = _value(result[0])
        return value if math.isfinite(value) else None

    def values(
        self, url: str, source: PrometheusSource, query: str, at: datetime, by: str | None
    ) -> dict[str, float]:
        """The query's values by segment (``""`` without ``by``); no data (an empty vector,
        NaN or infinity) is left out."""
        if by is None:
            value = self.scalar(url, source, query, at)
            return {} if value is None else {"": value}
        values: dict[str, float] = {}
        for series in self.query(url, source, query, at):
            segment = _segment(series, by)
            value = _value(series)
            if math.isfinite(value):
                values[segment] = values.get(segment, 0.0) + value
        return values

    def histograms(
        self,
        url: str,
        source: PrometheusSource,
        query: str,
        at: datetime,
        metric: str,
        by: str | None,
    ) -> dict[str, tuple[int, ...]]:
        """Cumulative ``le`` buckets → counts in the judge's buckets, by segment: each
        Prometheus bucket (le_prev, le] goes to the judge's bucket holding ``le`` (quantiles
        read up to the Prometheus bucket's edge, on both sides alike)."""
        scale = 1000.0 if source.le_unit == "s" else 1.0
        cumulative: dict[str, list[tuple[float, float]]] = {}
        for series in self.query(url, source, query, at):
            labels = series.get("metric", {}) if isinstance(series, dict) else {}
            le = labels.get("le") if isinstance(labels, dict) else None
            if le is None:
                raise QueryError(f"{metric}: a series without an 'le' label: use sum by (le)")
            try:
                bound = float(le)
            except ValueError:
                raise QueryError(f"{metric}: le={le!r} is not a number") from None
            segment = "" if by is None else _segment(series, by)
            cumulative.setdefault(segment, []).append((bound, _value(series)))
        histograms: dict[str, tuple[int, ...]] = {}
        for segment, buckets in cumulative.items():
            buckets.sort()
            counts = [0] * LATENCY_BUCKETS
            below = 0.0
            finite = True
            for bound, total in buckets:
                if not math.isfinite(total):
                    finite = False
                    break
                count = max(0.0, total - below)
                below = max(below, total)
                target = LATENCY_BUCKETS - 1 if math.isinf(bound) else latency_bucket(bound * scale)
                counts[target] += round(count)
            if finite:
                histograms[segment] = tuple(counts)
        return histograms


def _segment(series: Mapping[str, Any], by: str) -> str:
    """``attribute=value`` of a series answered to a query split ``by`` an attribute."""
    labels = series.get("metric", {}) if isinstance(series, dict) else None
    value = labels.get(by) if isinstance(labels, dict) else None
    if not isinstance(value, str) or not value:
        raise QueryError(f"a series without a {by!r} label: group the query by ({by})")
    return f"{by}={value}"


def _value(series: Mapping[str, Any]) -> float:
    try:
        return float(series["value"][1])
    except (KeyError, IndexError, TypeError, ValueError):
        raise QueryError(f"not a sample: {series!r:.200}") from None
