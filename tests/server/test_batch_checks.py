"""The checks of an event batch made for the whole batch at once (``_batch_checks.py``): the
one-pass screen lets a batch through only when the field-by-field walk finds nothing, and the
walk names the field that is wrong, on random batches with random defects."""

from __future__ import annotations

import random
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from rollwise.core.judgement import LATENCY_BUCKETS, REPLICATES, replicate_segment
from rollwise.server._batch_checks import _clean, _problems, first_problem
from rollwise.server._batch_models import Aggregate, Batch, ExposureIn, GaugeIn

NOW = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)
MINUTE = int(NOW.timestamp() // 60)


def _rows(rng: random.Random) -> dict[str, Any]:
    """A good batch: traffic rows (some with sparse or dense histograms), replicate rows,
    exposures and gauges."""
    aggregates: list[dict[str, Any]] = []
    for _ in range(rng.randint(1, 12)):
        requests = rng.randint(0, 500)
        row: dict[str, Any] = {
            "rollout": 1,
            "stage": 0,
            "exposed": rng.random() < 0.5,
            "metric": rng.choice(["checkout.error", "checkout.latency"]),
            "requests": requests,
            "events": rng.randint(0, requests),
        }
        kind = rng.random()
        if kind < 0.25:
            row |= {"window": 0, "segment": replicate_segment(rng.randrange(REPLICATES))}
        else:
            row |= {"window": MINUTE + rng.randint(-2000, 2000)}
            row["segment"] = rng.choice(["", "tenant=acme", "tenant=globex~x"])
            if kind < 0.6:
                indices = sorted(rng.sample(range(LATENCY_BUCKETS), rng.randint(1, 30)))
                row["buckets"] = [x for index in indices for x in (index, rng.randint(1, 9))]
            elif kind < 0.7:
                row["histogram"] = [rng.randint(0, 3) for _ in range(LATENCY_BUCKETS)]
        aggregates.append(row)
    at = NOW + timedelta(hours=rng.uniform(-40, 40))
    exposures = [
        {"rollout": 1, "unit": f"u{i}", "stage": 0, "exposed": True, "at": at}
        for i in range(rng.randint(0, 3))
    ]
    gauges = [{"metric": "queue", "value": 1.0, "at": at} for _ in range(rng.randint(0, 2))]
    return {"batch": "batch-0001", "sdk": "python", "aggregates": aggregates} | {
        "exposures": exposures,
        "gauges": gauges,
    }


Defect = Callable[[dict[str, Any], random.Random], tuple[Any, ...] | None]


def _aggregate(
    change: Callable[[dict[str, Any], random.Random], str | None],
) -> Defect:
    def apply(rows: dict[str, Any], rng: random.Random) -> tuple[Any, ...] | None:
        index = rng.randrange(len(rows["aggregates"]))
        field = change(rows["aggregates"][index], rng)
        return None if field is None else ("aggregates", index, field)

    return apply


def _control(row: dict[str, Any], rng: random.Random) -> str:
    field = rng.choice(["segment", "metric"])
    row[field] += rng.choice(["\x00", "\x1f", "\x7f", "\n"])
    return field


def _events(row: dict[str, Any], rng: random.Random) -> str:
    row["events"] = row["requests"] + rng.randint(1, 5)
    return "events"


def _far(row: dict[str, Any], rng: random.Random) -> str | None:
    if row["segment"].startswith("~"):
        row["window"] = MINUTE  # a replicate in a window
    else:
        row["window"] = rng.choice([0, MINUTE + 2 * 1440 + 1, MINUTE - 2 * 1440 - 1])
    return "window"


def _replicate(row: dict[str, Any], rng: random.Random) -> str:
    row["segment"] = rng.choice(["~replicate=07", f"~replicate={REPLICATES}", "~x", "~"])
    row["window"] = 0
    row.pop("buckets", None)
    row.pop("histogram", None)
    return "segment"


def _replicate_histogram(row: dict[str, Any], rng: random.Random) -> str:
    row |= {"window": 0, "segment": replicate_segment(3)}
    row.pop("histogram", None)
    row["buckets"] = [5, 1]
    return "buckets"


def _buckets(row: dict[str, Any], rng: random.Random) -> str | None:
    if row["segment"].startswith("~"):
        return None
    row.pop("histogram", None)
    row["buckets"] = rng.choice(
        [[1, 2, 3], [LATENCY_BUCKETS, 1], [4, 1, 4, 1], [9, 1, 3, 1], [2, 1, 3, 1, 3, 1]]
    )
    return "buckets"


def _both(row: dict[str, Any], rng: random.Random) -> str | None:
    if row["segment"].startswith("~"):
        return None
    row["histogram"] = [0] * LATENCY_BUCKETS
    row["buckets"] = [1, 1]
    return "buckets"


def _late(rows: dict[str, Any], rng: random.Random) -> tuple[Any, ...] | None:
    where = rng.choice(["exposures", "gauges"])
    if not rows[where]:
        return None
    index = rng.randrange(len(rows[where]))
    rows[where][index]["at"] = NOW + rng.choice([-1, 1]) * timedelta(days=2, seconds=1)
    return (where, index, "at")


def _text(rows: dict[str, Any], rng: random.Random) -> tuple[Any, ...] | None:
    where = rng.choice(["batch", "sdk", "exposures", "gauges"])
    if where in ("batch", "sdk"):
        rows[where] += "\x01"
        return (where,)
    if not rows[where]:
        return None
    index = rng.randrange(len(rows[where]))
    field = "unit" if where == "exposures" else "metric"
    rows[where][index][field] += "\x1b"
    return (where, index, field)


DEFECTS: list[Defect] = [
    _aggregate(_control),
    _aggregate(_events),
    _aggregate(_far),
    _aggregate(_replicate),
    _aggregate(_replicate_histogram),
    _aggregate(_buckets),
    _aggregate(_both),
    _late,
    _text,
]


def _batch(rows: dict[str, Any]) -> Batch:
    """The batch as pydantic leaves it before the whole-batch checks: types and bounds only."""
    return Batch.model_construct(
        batch=rows["batch"],
        sdk=rows["sdk"],
        aggregates=[Aggregate.model_validate(row) for row in rows["aggregates"]],
        exposures=[ExposureIn.model_validate(row) for row in rows["exposures"]],
        gauges=[GaugeIn.model_validate(row) for row in rows["gauges"]],
    )


@pytest.mark.parametrize("seed", range(4))
def test_the_screen_passes_exactly_the_batches_the_walk_finds_nothing_in(seed: int) -> None:
    rng = random.Random(seed)
    refused = 0
    for _ in range(500):
        rows = _rows(rng)
        places = [rng.choice(DEFECTS)(rows, rng) for _ in range(rng.randint(0, 2))]
        batch = _batch(rows)
        found = list(_problems(batch, NOW))
        assert _clean(batch, NOW) is (not found), (rows, found)
        placed = [place for place in places if place is not None]
        if len(placed) == 1:
            assert found and found[0][0] == placed[0], (rows, found)
        refused += bool(found)
        assert (first_problem(batch, NOW) is None) is (not found)
    assert refused > 200  # the defects were made, and refused


def test_a_refused_field_is_named_through_validation() -> None:
    rows = _rows(random.Random(7))
    rows["aggregates"][0]["events"] = rows["aggregates"][0]["requests"] + 1
    rows["aggregates"][0]["segment"] = ""
    rows["aggregates"][0]["window"] = MINUTE
    from pydantic import ValidationError

    with pytest.raises(ValidationError) as raised:
        Batch.model_validate(rows, context={"now": NOW})
    (error,) = raised.value.errors()
    assert error["loc"] == ("aggregates", 0, "events")
    assert error["type"] == "events_over_requests"
    assert error["msg"].startswith("must not exceed requests")
