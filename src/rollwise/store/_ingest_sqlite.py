"""The aggregate and ledger statements of the ingest path on SQLite, as the driver's own SQL.

On SQLite the server's writer holds the database's write lock for a group's statements, and the
aggregates are most of them (84 rows per SDK batch in the load test, 42 of them latency
histograms). Through SQLAlchemy's expression language each group's upsert and write-back paid
for building the statement's cache key, and each row for having its parameters processed one by
one in Python; here the text is fixed (one per number of rows) and the rows go to ``sqlite3``
as plain tuples. The statements are those SQLAlchemy wrote, so what is stored is the same: the
counts added by the database, each histogram read through the upsert's ``RETURNING`` and
written back (JSON text, ``_merging.sparse_histogram``). PostgreSQL has its own
(``_ingest_pg.py``).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa

from rollwise.store._merging import SIGHTING_COLUMNS, AggregateKey, StoredHistogram
from rollwise.store._schema import ledger

_KEY = 'rollout_id, stage, "window", exposed, segment, metric'
#: Rows per upsert: 8 parameters each, well within SQLite's 32,766 (3.32 and later).
ROWS_PER_STATEMENT = 1000
_UPSERT_HEAD = f"INSERT INTO aggregates ({_KEY}, requests, events, histogram) VALUES "
_UPSERT_ROW = "(?, ?, ?, ?, ?, ?, ?, ?, NULL)"
_UPSERT_TAIL = (
    f" ON CONFLICT ({_KEY}) DO UPDATE"
    " SET requests = aggregates.requests + excluded.requests,"
    " events = aggregates.events + excluded.events"
    f" RETURNING {_KEY}, histogram"
)
_HISTOGRAM = (
    "UPDATE aggregates SET histogram = ? WHERE rollout_id = ? AND stage = ?"
    ' AND "window" = ? AND exposed = ? AND segment = ? AND metric = ?'
)


def upsert_counts(
    connection: sa.Connection, keys: Sequence[AggregateKey], counts: Sequence[tuple[int, int]]
) -> dict[AggregateKey, StoredHistogram | None]:
    """Add (requests, events) to each key's row, inserting it (histogram empty) when new; each
    row's histogram as it was, decoded (None for a new row)."""
    stored: dict[AggregateKey, StoredHistogram | None] = {}
    rows = [(*key, *count) for key, count in zip(keys, counts, strict=True)]
    for start in range(0, len(rows), ROWS_PER_STATEMENT):
        chunk = rows[start : start + ROWS_PER_STATEMENT]
        statement = _UPSERT_HEAD + ", ".join([_UPSERT_ROW] * len(chunk)) + _UPSERT_TAIL
        parameters = tuple(value for row in chunk for value in row)
        for found in connection.exec_driver_sql(statement, parameters):
            rollout, stage, window, exposed, segment, metric, histogram = found
            stored[(rollout, stage, window, bool(exposed), segment, metric)] = (
                None if histogram is None else json.loads(histogram)
            )
    return stored


def write_histograms(
    connection: sa.Connection, keys: Sequence[AggregateKey], histograms: Sequence[dict[str, Any]]
) -> None:
    """Each key's histogram replaced, as JSON text (one ``executemany``)."""
    connection.exec_driver_sql(
        _HISTOGRAM,
        [
            (json.dumps(histogram, separators=(",", ":")), *key)
            for key, histogram in zip(keys, histograms, strict=True)
        ],
    )


#: Rows per ledger upsert: 8 parameters each, 32,000 in all (SQLite's limit: 32,766).
SIGHTINGS_PER_STATEMENT = 4000
_SIGHTINGS_HEAD = f"INSERT INTO ledger ({', '.join(SIGHTING_COLUMNS)}) VALUES "
_SIGHTING_ROW = "(?, ?, ?, ?, ?, ?, ?, ?)"
_SIGHTINGS_TAIL = (
    " ON CONFLICT (rollout_id, unit) DO UPDATE"
    " SET exposed = 1, exposed_stage = excluded.exposed_stage, exposed_at = excluded.exposed_at"
    " WHERE ledger.exposed = 0 AND excluded.exposed = 1"
)


def add_sightings(connection: sa.Connection, sightings: Sequence[dict[str, Any]]) -> None:
    """``IngestStore._add_exposures``' upsert (a unit's first sighting kept; a unit seen
    unexposed and now exposed gets its first exposure), the rows in the order given (sorted),
    ``SIGHTINGS_PER_STATEMENT`` to a statement. Times are written by the column type's own
    conversion, so they are stored as SQLAlchemy stores them (and read back the same)."""
    dialect = connection.dialect
    time = ledger.c.first_seen.type.dialect_impl(dialect).bind_processor(dialect)
    rows = [
        (
            row["rollout_id"],
            row["unit"],
            row["stage"],
            int(row["exposed"]),
            time(row["first_seen"]) if time is not None else row["first_seen"],
            int(row["first_exposed"]),
            row["exposed_stage"],
            row["exposed_at"]
            if time is None or row["exposed_at"] is None
            else time(row["exposed_at"]),
        )
        for row in sightings
    ]
    for start in range(0, len(rows), SIGHTINGS_PER_STATEMENT):
        chunk = rows[start : start + SIGHTINGS_PER_STATEMENT]
        statement = _SIGHTINGS_HEAD + ", ".join([_SIGHTING_ROW] * len(chunk)) + _SIGHTINGS_TAIL
        connection.exec_driver_sql(statement, tuple(value for row in chunk for value in row))
