"""A group's histograms merged in Python before they are written (``store/_merging.py``): the
sparse-only sum adds into the stored histogram only the buckets it touched, and the result is
the bucket-by-bucket sum either way."""

from __future__ import annotations

import random
from datetime import UTC, datetime

import pytest

from rollwise.core.judgement import LATENCY_BUCKETS
from rollwise.store import AggregateRow, EventBatch
from rollwise.store._errors import RefusedError
from rollwise.store._merging import Merged, add_histogram, histogram_counts

NOW = datetime(2026, 12, 2, tzinfo=UTC)


def _sparse(rng: random.Random) -> tuple[int, ...]:
    buckets = sorted(rng.sample(range(LATENCY_BUCKETS), rng.randint(1, 40)))
    return tuple(x for index in buckets for x in (index, rng.randint(1, 1000)))


def _dense(pairs: tuple[int, ...]) -> list[int]:
    counts = [0] * LATENCY_BUCKETS
    for position in range(0, len(pairs), 2):
        counts[pairs[position]] += pairs[position + 1]
    return counts


def test_merged_histograms_add_to_the_stored_ones_bucket_by_bucket() -> None:
    """200 random groups of 1–5 batches, sparse only or with a dense histogram among them,
    added to a random stored histogram or to none: always the plain bucket-by-bucket sum, and
    only sparse-only groups say which buckets they touched."""
    rng = random.Random(20261202)
    for _ in range(200):
        with_dense = rng.random() < 0.3
        rows: list[AggregateRow] = []
        expected = [0] * LATENCY_BUCKETS
        for index in range(rng.randint(1, 5)):
            pairs = _sparse(rng)
            dense = with_dense and index == 0
            rows.append(
                AggregateRow(
                    1, 0, 100, True, "", "checkout.latency", 10, 0,
                    histogram=tuple(_dense(pairs)) if dense else None,
                    buckets=None if dense else pairs,
                )
            )  # fmt: skip
            expected = [a + b for a, b in zip(expected, _dense(pairs), strict=True)]
        batches = [EventBatch(f"b{i:07d}", "sdk", NOW, (row,)) for i, row in enumerate(rows)]
        (total,) = Merged.of(batches).aggregates.values()
        assert total.histogram == expected
        assert (total.touched is None) == with_dense
        if total.touched is not None:
            assert set(total.touched) >= {i for i, count in enumerate(expected) if count}
        # What the column holds: a dense list (rows written before 2026-12-02) or the sparse
        # form this writes; either way the sum is read back bucket by bucket.
        stored = [rng.choice([0, 0, 0, rng.randint(1, 50)]) for _ in range(LATENCY_BUCKETS)]
        summed = [a + b for a, b in zip(stored, expected, strict=True)]
        as_written = add_histogram(None, stored, "key")
        for before in (list(stored), as_written):
            merged = add_histogram(before, total.histogram, "key", total.touched)
            assert histogram_counts(merged) == tuple(summed)
            assert merged == {
                "length": LATENCY_BUCKETS,
                "buckets": [x for i, count in enumerate(summed) if count for x in (i, count)],
            }
        assert histogram_counts(add_histogram(None, total.histogram, "key", total.touched)) == (
            tuple(expected)
        )


def test_a_stored_histogram_of_another_length_is_refused_in_either_form() -> None:
    """A group's histogram that does not fit the stored one is refused, whether the stored
    one is dense or sparse, naming both lengths."""
    for stored in ([1, 0, 2], {"length": 3, "buckets": [0, 1, 2, 2]}):
        with pytest.raises(
            RefusedError, match="a histogram of 4 buckets cannot be added to one of 3"
        ):
            add_histogram(stored, [0, 1, 0, 0], "key", [1])
    assert histogram_counts({"length": 3, "buckets": [0, 1, 2, 2]}) == (1, 0, 2)
    assert histogram_counts([1, 0, 2]) == (1, 0, 2)
    assert histogram_counts(None) is None
