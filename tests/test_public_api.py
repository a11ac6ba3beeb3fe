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


def test_the_sdk_imports_no_heavy_dependencies() -> None:
    """Importing rollwise (the SDK) in a fresh interpreter loads no numpy, SQLAlchemy, server,
    store, simulator or CLI: applications that embed it stay light."""
    import subprocess
    import sys

    probe = (
        "import sys, rollwise, rollwise.sdk; "
        "print(','.join(sorted(m for m in sys.modules if m.split('.')[0] in "
        "('numpy', 'sqlalchemy', 'fastapi') or m.startswith(('rollwise.cli', 'rollwise.store', "
        "'rollwise.server', 'rollwise.control', 'rollwise.core.simulation')))))"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == ""
