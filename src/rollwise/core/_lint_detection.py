"""The lint rules about what the judgement can see (``_lint.py`` registers them). RW019: whether
each stage, at the plan's declared traffic, lasts long enough to catch a doubled error rate —
found by simulating the plan (``rollwise.core.simulation``) with a fixed seed, so the finding is
the same on every run. RW020: a coarse unit (a tenant) compares few exposed units with others.
"""

from __future__ import annotations

from collections.abc import Iterator

from rollwise.core._flag import FlagSet
from rollwise.core._plan import GuardKind, Plan

#: Runs the linter simulates for RW019, and the share of them that must detect in time.
DETECTION_RUNS = 20
DETECTION_SHARE = 0.9


def detects_in_time(plan: Plan, flags: FlagSet | None) -> Iterator[tuple[str, str]]:
    guard = next(
        (g for g in plan.guards if g.kind is GuardKind.RATE and g.tolerance is not None),
        None,
    )
    needs_segments = any(stage.audience.segments for stage in plan.stages)
    if plan.traffic_per_second is None or guard is None or (needs_segments and flags is None):
        return
    # Imported here: the simulator needs numpy, which the SDK's import path does not.
    import numpy as np

    from rollwise.core.simulation import Regression, Scenario, Simulation

    scenario = Scenario(
        requests_per_second=plan.traffic_per_second,
        regression=Regression(guard.metric, factor=2.0 if guard.worse.value == "higher" else 0.5),
    )
    simulation = Simulation(plan, flags, scenario)
    missed: dict[int, int] = {}
    for stream in np.random.SeedSequence(0).spawn(DETECTION_RUNS):
        result, _ = simulation.run(np.random.default_rng(stream))
        if result.outcome != "rolled_back":
            missed[result.stage_reached] = missed.get(result.stage_reached, 0) + 1
        elif result.stage_reached > 0:
            # It left earlier stages without catching the regression.
            missed[0] = missed.get(0, 0) + 1
    for index, count in sorted(missed.items()):
        if count > DETECTION_RUNS * (1 - DETECTION_SHARE):
            stage = plan.stages[index]
            yield (
                f"stages[{index}]",
                f"at {plan.traffic_per_second:g} requests/s, stage {stage.name!r} ended without "
                f"catching a 2x regression of {guard.metric} in {count} of {DETECTION_RUNS} "
                f"simulated runs; it needs more traffic, a longer max_stage_duration or a wider "
                f"audience (see rollwise simulate)",
            )


#: Units that each send requests from many users: whole ones switch together, and few of them
#: are exposed in early stages.
COARSE_UNITS = frozenset({"tenant", "account", "organization", "org", "region", "instance"})


def coarse_unit(plan: Plan, flags: FlagSet | None) -> Iterator[tuple[str, str]]:
    if plan.unit not in COARSE_UNITS:
        return
    guards = [g for g in plan.guards if g.kind is not GuardKind.GAUGE]
    if not guards:
        return
    unsplit = [g.label for g in guards if plan.unit not in g.by]
    advice = (
        f"; split {', '.join(unsplit)} by [{plan.unit}] too, so that each exposed {plan.unit} "
        f"is also judged against its own history before exposure"
        if unsplit
        else ""
    )
    yield (
        "unit",
        f"a whole {plan.unit} is exposed or not, so the whole-traffic "
        f"comparison sets the few exposed {plan.unit}s against the others: rate and latency "
        f"guards discount it by how much {plan.unit}s differ, an estimate that is rough with "
        f"few of them; {plan.unit}s with rates or latencies of their own can then be rolled "
        f"back for what they are, not for the change "
        f"(docs/judgement.md#clustered-units){advice}",
    )
