"""The public namespaces: sorted __all__, every name importable."""

from __future__ import annotations

import importlib

import pytest


@pytest.mark.parametrize(
    "module",
    [
        "rollwise",
        "rollwise.core",
        "rollwise.core.judgement",
        "rollwise.core.simulation",
        "rollwise.sdk",
        "rollwise.store",
        "rollwise.cli",
    ],
)
def test_all_is_sorted_and_importable(module: str) -> None:
    """__all__ is sorted (constants, classes, then functions), unique, and each name exists."""
    namespace = importlib.import_module(module)
    names = namespace.__all__

    def isort_style(name: str) -> tuple[int, str]:
        return (0 if name.isupper() else 1 if name[:1].isupper() else 2, name)

    assert names == sorted(names, key=isort_style) and len(names) == len(set(names))
    for name in names:
        assert hasattr(namespace, name), f"{module}.{name}"


def test_sdk_does_not_import_the_cli() -> None:
    """The SDK depends on core only: importing it pulls in no cli module."""
    import sys

    for name in [m for m in sys.modules if m.startswith("rollwise")]:
        del sys.modules[name]
    importlib.import_module("rollwise.sdk")
    assert not [m for m in sys.modules if m.startswith("rollwise.cli")]
    # Nor the judgement or the simulator (numpy stays out of the application's import path).
    assert not [
        m
        for m in sys.modules
        if m.startswith(("rollwise.core.judgement", "rollwise.core.simulation"))
    ]
