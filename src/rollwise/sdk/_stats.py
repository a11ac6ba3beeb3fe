"""What a client can tell about its own health: the snapshot it serves and what it dropped."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class ClientStats:
    """A client's counters since it started. An offline client reports its flags' version and
    zeros."""

    #: The version of the snapshot being served (0: none yet, or an offline flag set).
    snapshot_version: int = 0
    #: Whether the event stream is connected (else the client polls).
    stream_connected: bool = False
    #: Batches cut and waiting for the server.
    pending_batches: int = 0
    #: Batches the server took (including duplicates of a batch it already had).
    batches_sent: int = 0
    #: Batches dropped because more than ``max_pending_batches`` were waiting.
    batches_dropped: int = 0
    #: Batches the server rejected for good (a 4xx other than 408 and 429).
    batches_rejected: int = 0
    #: Outcome additions dropped because ``max_keys`` keys were already in use.
    outcomes_dropped: int = 0
    #: Exposures that will not reach the ledger: new ones while ``MAX_EXPOSURES`` were all
    #: waiting for the server, and those in a batch dropped or rejected.
    exposures_dropped: int = 0
