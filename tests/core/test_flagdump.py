"""Writing a flag set back as a document: it reads back to the same evaluations."""

from __future__ import annotations

from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from rollwise.core import (
    Context,
    FlagSet,
    evaluate,
    flag_at_stage,
    load_flags,
    load_plan,
)
from rollwise.core._flagdump import dump_flags

ROOT = Path(__file__).resolve().parents[2]
FLAGS = load_flags((ROOT / "examples/checkout/flags.yaml").read_text())
PLAN = load_plan((ROOT / "examples/checkout/plan.yaml").read_text())
RICH = load_flags(
    """
segments:
  staff: {when: [{team: [checkout]}]}
  testers: {when: {any: [{segment: staff}, {email: {ends_with: ['@qa.io']}}]}}
flags:
  rich:
    variants: {classic: 1, dark: 2, neon: 3}
    salt: rich-v2
    unit: account
    min_app_version: 2.4.0-rc.1
    default: dark
    rules:
      - when: {segment: testers}
        serve: neon
      - when:
          - path: {matches: '^/v[23]/'}
          - signed_up: {after: 2026-01-01T00:00:00Z}
          - not: {ip: {cidr: [10.0.0.0/8]}}
          - seats: {gte: 5}
          - beta: true
        percent: 37.5
        serve: {split: {classic: 30, neon: 70}}
"""
)

contexts = st.builds(
    lambda key, team, email, path, seats, beta, ip, version: Context(
        key,
        {
            "account": f"acct-{key}",
            "team": team,
            "email": email,
            "path": path,
            "signed_up": "2026-03-01T00:00:00Z",
            "seats": seats,
            "beta": beta,
            "ip": ip,
            "app_version": version,
        },
    ),
    st.text(min_size=1, max_size=8),
    st.sampled_from(["checkout", "sales"]),
    st.sampled_from(["a@qa.io", "b@x.com"]),
    st.sampled_from(["/v2/x", "/v1/x", "/v3/y"]),
    st.integers(0, 10),
    st.booleans(),
    st.sampled_from(["10.1.2.3", "192.168.0.1"]),
    st.sampled_from(["2.4.0", "2.3.9", "2.4.0-rc.1"]),
)


def _same(original: FlagSet, context: Context) -> None:
    copy = load_flags(dump_flags(original), "snapshot")
    for key, flag in original.flags.items():
        assert evaluate(copy.flags[key], context) == evaluate(flag, context)


@settings(max_examples=200)
@given(contexts)
def test_round_trip_keeps_every_evaluation(context: Context) -> None:
    """Every operator, combinator, split, salt, unit and version survive the round trip."""
    _same(RICH, context)
    _same(FLAGS, context)


def test_stage_flags_round_trip() -> None:
    """The flags a rollout serves at each stage read back the same (what SDKs receive)."""
    for index in range(len(PLAN.stages)):
        staged = flag_at_stage(FLAGS.flags["new-checkout"], PLAN, index, FLAGS.segments)
        snapshot = FlagSet({"new-checkout": staged}, FLAGS.segments, FLAGS.metrics)
        for n in range(300):
            _same(
                snapshot,
                Context(
                    f"u{n}",
                    {
                        "tenant": f"t{n % 40}",
                        "team": "checkout" if n % 7 == 0 else "sales",
                        "app_version": "2.5.0",
                    },
                ),
            )
