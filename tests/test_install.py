"""What `pip install rollwise` brings into an application: the SDK and its two dependencies,
nothing of the control plane, the simulator or the demo. Installs the package from this checkout
into a fresh venv (about 20 s: pip fetches the build backend and httpx's dependencies)."""

from __future__ import annotations

import json
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
#: Only extras may bring these.
HEAVY = {
    "numpy", "scipy", "matplotlib", "sqlalchemy", "alembic", "psycopg", "psycopg-binary",
    "fastapi", "starlette", "uvicorn", "prometheus-client", "rich", "pydantic",
}  # fmt: skip


def _run(*command: str | Path, check: bool = True) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        [str(part) for part in command], capture_output=True, text=True, timeout=600
    )
    if check and done.returncode != 0:
        raise AssertionError(f"{command} failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
    return done


def test_the_base_install_is_the_sdk_and_nothing_heavy(tmp_path: Path) -> None:
    home = tmp_path / "venv"
    venv.create(home, with_pip=True)
    python, bin_dir = home / "bin" / "python", home / "bin"
    _run(python, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", ROOT)
    listed = json.loads(_run(python, "-m", "pip", "list", "--format", "json").stdout)
    names = {entry["name"].lower().replace("_", "-") for entry in listed}
    assert {"rollwise", "pyyaml", "httpx"} <= names
    assert not names & HEAVY, f"the base install brought {sorted(names & HEAVY)}"
    # The SDK evaluates a flags file, and importing it loads none of the heavy modules.
    flags = ROOT / "examples" / "checkout" / "flags.yaml"
    script = (
        "import sys, json\n"
        "from rollwise import Client\n"
        f"client = Client.from_file({str(flags)!r})\n"
        "r = client.resolve('new-checkout', {'tenant': 'acme', 'app_version': '2.5.0'})\n"
        "heavy = sorted(m for m in ('numpy', 'sqlalchemy', 'fastapi') if m in sys.modules)\n"
        "print(json.dumps([r.variant, r.reason.value, heavy]))\n"
    )
    variant, reason, loaded = json.loads(_run(python, "-c", script).stdout)
    assert (variant, reason, loaded) == ("on", "rule_match", [])
    # The command line is there; a command that needs an extra says which, in one line.
    assert _run(bin_dir / "rollwise", "--version").stdout.startswith("rollwise ")
    plan = ROOT / "examples" / "checkout" / "plan.yaml"
    lint = _run(bin_dir / "rollwise", "lint", plan, "--flags", flags, check=False)
    assert lint.returncode == 2
    assert lint.stderr.strip() == (
        "rollwise: 'rollwise lint' needs numpy, which the SDK's install leaves out: "
        "pip install 'rollwise[cli]'"
    )
    assert sys.prefix != str(home)  # the suite's own venv was left alone
