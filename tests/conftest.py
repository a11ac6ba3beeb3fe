"""Shared fixtures: paths to the example files every layer is tested against."""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples" / "checkout"


@pytest.fixture
def plan_path() -> Path:
    return EXAMPLES / "plan.yaml"


@pytest.fixture
def flags_path() -> Path:
    return EXAMPLES / "flags.yaml"
