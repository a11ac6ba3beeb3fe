"""Named judgements: guards over Prometheus that judge a canary against its stable version for
a deployment tool (Argo Rollouts, Flagger) rather than a flag's rollout. docs/argo-flagger.md.

::

    judgements:
      podinfo:
        stratum: 1m
        guards:
          - metric: podinfo.error
            kind: rate
            tolerance: 50%
            source:
              prometheus:
                requests: sum(increase(http_requests_total{pod=~"{variant}"}[{window}]))
                events: sum(increase(http_requests_total{pod=~"{variant}",code=~"5.."}[{window}]))

Each judgement becomes a one-stage ``Plan`` (its flag is the judgement's name), so it is judged
by exactly the code that judges rollouts; ``{variant}`` is replaced by the canary's selector on
the exposed side and the stable one's on the baseline, as the caller passes them.
"""

from __future__ import annotations

from rollwise.core._document import Fields, load_document
from rollwise.core._flagfile import check_name
from rollwise.core._plan import DEFAULT_STRATUM, Audience, GuardKind, Plan, Stage
from rollwise.core._planfile import _parse_guard, _stratum, parse_false_rollback_rate

#: The one stage of a judgement's plan.
ANALYSIS = Stage("analysis", Audience(percent=100.0))


def load_judgements(text: str, source: str | None = None) -> dict[str, Plan]:
    """A judgements file: ``{judgements: {name: {guards, stratum?, false_rollback_rate?}}}``.

    Raises:
        UnreadableInputError: the YAML is malformed.
        InputError: a field is invalid (with file, line and field path), a guard has no
            Prometheus source, or is a gauge (a judgement compares canary with stable).
    """
    root = load_document(text, source)
    fields = Fields(root, "a judgements file")
    entries = fields.require("judgements", "a mapping of judgement names to their guards")
    fields.done()
    judgements: dict[str, Plan] = {}
    for name, node in entries.mapping("judgements: a mapping of names").items():
        check_name(node, "judgement name", name)
        entry = Fields(node, "a judgement")
        guards_node = entry.require("guards", "a list of guards over Prometheus")
        stratum = entry.get("stratum")
        rate = entry.get("false_rollback_rate")
        entry.done()
        guards = []
        for item in guards_node.sequence("a list of guards"):
            guard = _parse_guard(item)
            if guard.source is None:
                raise item.error("a judgement's guard needs a Prometheus source: it has no SDK")
            if guard.kind is GuardKind.GAUGE:
                raise item.error("a judgement compares canary with stable: no gauges")
            guards.append(guard)
        if not guards:
            raise guards_node.error("a judgement needs at least one guard")
        judgements[name] = Plan(
            flag=name,
            unit="request",
            stages=(ANALYSIS,),
            guards=tuple(guards),
            variant="canary",
            rollback_to="stable",
            false_rollback_rate=0.01 if rate is None else parse_false_rollback_rate(rate),
            stratum=DEFAULT_STRATUM if stratum is None else _stratum(stratum),
            source=source,
        )
    return judgements
