"""The aggregate and ledger statements of the ingest path on PostgreSQL: every row of a group
passed as arrays and unnested, in one statement whose text never changes.

SQLAlchemy writes a multi-row ``INSERT … VALUES`` with a placeholder per value (``insertmany
values``): its text differs with the number of rows, so psycopg parses the placeholders of
a statement of some thousand of them again for every group, in Python. The server's writer
spent most of its time there with 1,000 SDKs posting (``benchmarks/server_ingestion.py``).
Here the statement takes one array per column (``unnest … WITH ORDINALITY``), and the rows are
inserted, so locked, in the order given: keys sorted, as ``_ingest.py``'s deadlock argument
needs.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa

from rollwise.store import _schema as t
from rollwise.store._merging import SIGHTING_COLUMNS, AggregateKey, StoredHistogram

_KEY_ARRAYS = """
    CAST(:rollouts AS integer[]), CAST(:stages AS integer[]), CAST(:windows AS bigint[]),
    CAST(:exposed AS boolean[]), CAST(:segments AS varchar[]), CAST(:metrics AS varchar[])"""

_UPSERT = sa.text(
    f"""
    INSERT INTO aggregates (rollout_id, stage, "window", exposed, segment, metric, requests, events)
    SELECT r, s, w, e, g, m, q, v
    FROM unnest({_KEY_ARRAYS},
        CAST(:requests AS bigint[]), CAST(:events AS bigint[])
    ) WITH ORDINALITY AS given(r, s, w, e, g, m, q, v, o)
    ORDER BY o
    ON CONFLICT (rollout_id, stage, "window", exposed, segment, metric) DO UPDATE
    SET requests = aggregates.requests + excluded.requests,
        events = aggregates.events + excluded.events
    RETURNING rollout_id, stage, "window", exposed, segment, metric, histogram
    """
).columns(
    *(t.aggregates.c[name] for name in ("rollout_id", "stage", "window", "exposed")),
    *(t.aggregates.c[name] for name in ("segment", "metric", "histogram")),
)

# The histograms come as one JSON array, paired with the keys by position: psycopg dumps an
# array of text element by element in Python, escaping each (42 strings of some 1,500
# characters for the load test's batch); one JSON document is one string, parsed by the server.
_HISTOGRAMS = sa.text(
    f"""
    UPDATE aggregates AS a SET histogram = given.h
    FROM unnest({_KEY_ARRAYS}) WITH ORDINALITY AS k(r, s, w, e, g, m, o)
    JOIN json_array_elements(CAST(:histograms AS json)) WITH ORDINALITY AS given(h, o)
      ON given.o = k.o
    WHERE a.rollout_id = k.r AND a.stage = k.s AND a."window" = k.w
      AND a.exposed = k.e AND a.segment = k.g AND a.metric = k.m
    """
)


def _arrays(keys: Sequence[AggregateKey]) -> dict[str, object]:
    columns = list(zip(*keys, strict=True)) if keys else [()] * 6
    names = ("rollouts", "stages", "windows", "exposed", "segments", "metrics")
    return {name: list(column) for name, column in zip(names, columns, strict=True)}


def upsert_counts(
    connection: sa.Connection, keys: Sequence[AggregateKey], counts: Sequence[tuple[int, int]]
) -> dict[AggregateKey, StoredHistogram | None]:
    """Add (requests, events) to each key's row, inserting it when new, in the order of
    ``keys``; each row's histogram as it was, read under the row's lock."""
    arrays = _arrays(keys)
    arrays["requests"] = [requests for requests, _ in counts]
    arrays["events"] = [events for _, events in counts]
    stored: dict[AggregateKey, StoredHistogram | None] = {}
    for rollout, stage, window, exposed, segment, metric, histogram in connection.execute(
        _UPSERT, arrays
    ):
        stored[(rollout, stage, window, bool(exposed), segment, metric)] = histogram
    return stored


def write_histograms(
    connection: sa.Connection, keys: Sequence[AggregateKey], histograms: Sequence[dict[str, Any]]
) -> None:
    """Each key's histogram replaced (rows already locked by ``upsert_counts``)."""
    arrays = _arrays(keys)
    arrays["histograms"] = json.dumps(histograms, separators=(",", ":"))
    connection.execute(_HISTOGRAMS, arrays)


_SIGHTINGS = sa.text(
    """
    INSERT INTO ledger (rollout_id, unit, stage, exposed, first_seen, first_exposed,
                        exposed_stage, exposed_at)
    SELECT r, u, s, e, f, fe, es, ea
    FROM unnest(
        CAST(:rollout_id AS integer[]), CAST(:unit AS varchar[]), CAST(:stage AS integer[]),
        CAST(:exposed AS boolean[]), CAST(:first_seen AS timestamptz[]),
        CAST(:first_exposed AS boolean[]), CAST(:exposed_stage AS integer[]),
        CAST(:exposed_at AS timestamptz[])
    ) WITH ORDINALITY AS given(r, u, s, e, f, fe, es, ea, o)
    ORDER BY o
    ON CONFLICT (rollout_id, unit) DO UPDATE
    SET exposed = true, exposed_stage = excluded.exposed_stage, exposed_at = excluded.exposed_at
    WHERE ledger.exposed = false AND excluded.exposed = true
    """
)


def add_sightings(connection: sa.Connection, sightings: Sequence[dict[str, Any]]) -> None:
    """``IngestStore._add_exposures``' upsert (the rows in the order given: sorted)."""
    connection.execute(
        _SIGHTINGS, {name: [row[name] for row in sightings] for name in SIGHTING_COLUMNS}
    )
