"""rollwise: gradual rollouts with control."""

from __future__ import annotations

from rollwise.core import (
    Context,
    InputError,
    Reason,
    Resolution,
    RollwiseError,
    UnreadableInputError,
    evaluate,
)
from rollwise.sdk import Client

__version__ = "0.1.0"

__all__ = [
    "Client",
    "Context",
    "InputError",
    "Reason",
    "Resolution",
    "RollwiseError",
    "UnreadableInputError",
    "__version__",
    "evaluate",
]
