"""docs/api.md lists every path the server serves, with its method."""

from __future__ import annotations

from pathlib import Path

from rollwise.server import create_app
from rollwise.store import Store

DOCS = Path(__file__).resolve().parents[2] / "docs" / "api.md"


def test_every_path_is_documented(tmp_path: Path) -> None:
    """Each (method, path) of the OpenAPI document appears in a table row of docs/api.md."""
    store = Store.open(f"sqlite:///{tmp_path / 'docs.db'}")
    try:
        spec = create_app(store, controller=False).openapi()
    finally:
        store.close()
    text = DOCS.read_text()
    missing = [
        f"{method.upper()} {path}"
        for path, operations in spec["paths"].items()
        for method in operations
        if f"| {method.upper()} | `{path}` |" not in text
    ]
    assert not missing, f"docs/api.md does not document: {missing}"
