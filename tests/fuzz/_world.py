"""What the cases act on: the seeded server (tokens, a plan, a live rollout, ids to aim at),
and mutated copies of the example YAML files."""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from hypothesis import strategies as st

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "checkout"


@dataclass
class World:
    """The seeded state: tokens, and the ids that exist (kept live between operations)."""

    url: str
    admin: dict[str, str]
    sdk: dict[str, str] = field(default_factory=dict)
    viewer: dict[str, str] = field(default_factory=dict)
    plan_id: int = 0
    rollout_id: int = 0
    decoy_token: str = ""
    flag: str = "new-checkout"

    def call(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        kwargs.setdefault("headers", self.admin)
        return httpx.request(method, f"{self.url}{path}", timeout=30, **kwargs)

    def token(self, role: str) -> tuple[str, dict[str, str]]:
        created = self.call("POST", "/api/v1/tokens", json={"name": f"fuzz-{role}", "role": role})
        created.raise_for_status()
        body = created.json()
        return str(body["id"]), {"Authorization": f"Bearer {body['secret']}"}

    def seed(self) -> None:
        self.call("PUT", "/api/v1/flags", content=(EXAMPLES / "flags.yaml").read_bytes())
        plan = self.call("POST", "/api/v1/plans", content=(EXAMPLES / "plan.yaml").read_bytes())
        plan.raise_for_status()
        self.plan_id = int(plan.json()["id"])
        _, self.sdk = self.token("sdk")
        _, self.viewer = self.token("viewer")
        self.keep_live()
        now = int(time.time() // 60)
        batch = {
            "batch": str(uuid.uuid4()),
            "aggregates": [
                {
                    "rollout": self.rollout_id,
                    "stage": 0,
                    "window": now - now % 15,
                    "exposed": exposed,
                    "metric": "checkout.error",
                    "requests": 1000,
                    "events": 10,
                }
                for exposed in (True, False)
            ],
        }
        self.call("POST", "/sdk/v1/events", json=batch, headers=self.sdk).raise_for_status()

    def restore_flags(self) -> None:
        self.call(
            "PUT",
            "/api/v1/flags",
            params={"prune": "true"},
            content=(EXAMPLES / "flags.yaml").read_bytes(),
        )

    def keep_live(self) -> None:
        """A live rollout, a flags file that defines it, a decoy token the cases may revoke."""
        flags = self.call("GET", "/api/v1/flags")
        rollout = None
        if flags.status_code == 200:
            for entry in flags.json()["flags"]:
                if entry["key"] == self.flag:
                    rollout = entry["rollout"]
        if rollout is None or rollout["status"] not in ("running", "paused"):
            self.restore_flags()
            self.call("POST", f"/api/v1/flags/{self.flag}/unkill")
            started = self.call("POST", "/api/v1/rollouts", json={"plan_id": self.plan_id})
            if started.status_code == 201:
                self.rollout_id = int(started.json()["id"])
        else:
            self.rollout_id = int(rollout["id"])
        self.decoy_token, _ = self.token("viewer")

    def real(self, name: str) -> Any:
        """The existing id or key a path parameter of this name can name, if any."""
        return {
            "rollout_id": self.rollout_id,
            "plan_id": self.plan_id,
            "key": self.flag,
            "token_id": self.decoy_token,
        }.get(name)


# --- mutated example YAML ------------------------------------------------------------------

ODD_VALUES = [
    "",
    "~",
    "[]",
    "{}",
    "-1",
    "0",
    "1e999",
    "-.inf",
    ".nan",
    "9" * 30,
    "9" * 5000,
    "99999999999d",
    "366d",
    "0s",
    "1ms",
    "2026-13-45",
    "2026-02-30T25:61:00",
    "on",
    "yes",
    "0x7fffffffffffffff",
    "0b1",
    "'quoted'",
    '"\\u0000"',
    '"\\x1b[31m"',
    "&anchor value",
    "*anchor",
    "*missing",
    "!!binary aGVsbG8=",
    "!!python/object/apply:os.system ['true']",
    "!!set {a, b}",
    "!!omap [a: 1]",
    "[" * 70 + "]" * 70,
    "x" * 5000,
    "ü ☃ 𝄞",
    "-",
    ":",
    "? key",
    "|\n  block text",
    ">-",
    "<<: {a: 1}",
    "[a, [b, [c, {d: e}]]]",
    "1h30m",
    "101%",
    "-5%",
    "5.5",
    "50ms",
    "1000000/s",
    "0.999999999",
    "1.0",
]


@st.composite
def mutated_yaml(draw: st.DrawFn, original: str) -> str:
    """The example with 1–3 lines changed: a value replaced by an odd one, a line dropped,
    doubled, moved, or indented differently."""
    lines = original.splitlines()
    for _ in range(draw(st.integers(1, 3))):
        if not lines:
            break
        index = draw(st.integers(0, len(lines) - 1))
        how = draw(st.sampled_from(["value", "value", "value", "drop", "double", "indent"]))
        line = lines[index]
        if how == "value":
            head, colon, _ = line.partition(": ")
            odd = draw(st.sampled_from(ODD_VALUES))
            if colon:
                lines[index] = f"{head}: {odd}"
            elif line.lstrip().startswith("- "):
                lines[index] = line[: len(line) - len(line.lstrip())] + f"- {odd}"
            else:
                lines[index] = odd
        elif how == "drop":
            del lines[index]
        elif how == "double":
            lines.insert(draw(st.integers(0, len(lines))), line)
        else:
            lines[index] = " " * draw(st.integers(0, 8)) + line.lstrip()
    return "\n".join(lines) + "\n"
