"""rollwise as the judge of Argo Rollouts and Flagger: is the canary ``safe``, ``harm`` or
``pending``, with the evidence (docs/argo-flagger.md).

- ``POST /judge/v1/judgements/{name}``: a named judgement (guards over Prometheus, from the
  server's ``--judgements`` file) for an analysis, the canary's and the stable version's
  selectors in the body — what an Argo ``AnalysisTemplate`` ``web`` metric sends
  (``successCondition: result.verdict == "safe"``, ``failureCondition: result.verdict ==
  "harm"``; pending is neither: Inconclusive).
- ``POST /judge/v1/flagger/{hook}``: Flagger's webhook payload (``name``, ``namespace``,
  ``phase``, ``checksum``, ``metadata``); ``confirm-promotion`` answers 200 only when safe,
  ``rollback`` 200 only on harm, ``rollout`` 200 unless harm.
- ``GET /judge/v1/flags/{flag}``: the same verdict for a flag's rollout, judged by rollwise.

Each analysis is one anytime-valid sequence however often it is asked (``sources/_analysis.py``).
"""

from __future__ import annotations

import asyncio
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from rollwise.core.judgement import Decision, Move, Verdict
from rollwise.server._auth import admitted, authenticated, bearer, requires
from rollwise.sources import Analyses, Judged, SelectorsChanged, UnknownJudgement
from rollwise.store import Role, TokenRecord
from rollwise.store._evidence import decision_evidence

router = APIRouter(prefix="/judge/v1", tags=["judge"])
Viewer = Annotated[TokenRecord, Depends(requires(Role.VIEWER))]

_Text = Annotated[str, Field(min_length=1, max_length=500, pattern=r"^[^\x00-\x1f\x7f]*$")]
#: A selector is pasted into the judgement's PromQL (``{variant}``), inside a string literal: no
#: quote or backslash can end it early, so a caller cannot write PromQL of its own.
_Selector = Annotated[str, Field(min_length=1, max_length=500, pattern=r"^[^\x00-\x1f\x7f\"\\`]*$")]


class Question(BaseModel):
    """What an Argo web metric sends: the analysis, and the two sides' selectors."""

    analysis: Annotated[str, Field(min_length=1, max_length=200, pattern=r"^[^\x00-\x1f\x7f]*$")]
    canary: _Selector
    stable: _Selector


class FlaggerPayload(BaseModel):
    """Flagger's webhook payload (docs/gitbook/usage/webhooks.md in fluxcd/flagger)."""

    name: _Text
    namespace: _Text
    phase: Annotated[str, Field(max_length=100)] = ""
    checksum: Annotated[str, Field(max_length=200)] = ""
    metadata: dict[str, Annotated[str, Field(max_length=500)]] = Field(
        default_factory=dict, max_length=50
    )


def _analyses(request: Request) -> Analyses:
    return request.app.state.analyses  # type: ignore[no-any-return]


async def _judged(request: Request, name: str, analysis: str, canary: str, stable: str) -> Judged:
    # On the judge's own few threads: a slow Prometheus holds them, never the threads the
    # controller's tick and the other routes run on.
    pool = request.app.state.judge_pool
    now = request.app.state.clock.now()
    try:
        return await asyncio.get_running_loop().run_in_executor(
            pool, _analyses(request).judge, name, analysis, canary, stable, now
        )
    except UnknownJudgement:
        known = ", ".join(sorted(_analyses(request).judgements)) or "none (see --judgements)"
        raise HTTPException(404, f"no judgement {name!r}; judgements: {known}") from None
    except SelectorsChanged as exc:
        raise HTTPException(409, str(exc)) from None


def _answer(judged: Judged, **names: str) -> dict[str, Any]:
    return {
        "verdict": judged.verdict.value,
        **names,
        "windows": judged.windows,
        "reasons": list(judged.decision.reasons),
        "evidence": decision_evidence(judged.decision)["verdicts"],
        **({"error": judged.error} if judged.error else {}),
    }


def _failing(judged: Judged, request: Request, name: str) -> bool:
    """Whether the judgement's queries failed as often in a row as its guards allow."""
    plan = _analyses(request).judgements[name]
    allowed = min(g.source.failures for g in plan.guards if g.source is not None)
    return bool(judged.error) and judged.failures >= allowed


@router.post(
    "/judgements/{name}",
    responses={502: {"description": "the judgement's Prometheus queries keep failing"}},
)
async def judge(name: str, question: Question, request: Request, _token: Viewer) -> JSONResponse:
    """Judge an analysis of the canary against the stable version (Argo's ``web`` metric)."""
    judged = await _judged(request, name, question.analysis, question.canary, question.stable)
    body = _answer(judged, judgement=name, analysis=question.analysis)
    return JSONResponse(body, status_code=502 if _failing(judged, request, name) else 200)


#: Flagger's hooks: the verdicts each answers 200 to.
_PASSES: dict[str, frozenset[Verdict]] = {
    "confirm-promotion": frozenset({Verdict.SAFE}),
    "rollback": frozenset({Verdict.HARM}),
    "rollout": frozenset({Verdict.SAFE, Verdict.PENDING}),
}


@router.post(
    "/flagger/{hook}",
    responses={
        409: {"description": "not this hook's verdict: Flagger holds (or does not roll back)"}
    },
)
async def flagger(
    hook: Literal["confirm-promotion", "rollback", "rollout"],
    payload: FlaggerPayload,
    request: Request,
) -> JSONResponse:
    """A Flagger webhook. ``metadata`` names the ``judgement`` and the ``canary`` and ``stable``
    selectors; the token comes as ``Authorization: Bearer`` or as ``metadata.token`` (Flagger's
    webhooks send no headers). The analysis is the canary's name, namespace and checksum."""
    await asyncio.to_thread(_flagger_token, request, payload)  # reads the store
    missing = [key for key in ("judgement", "canary", "stable") if not payload.metadata.get(key)]
    if missing:
        raise HTTPException(422, f"metadata needs {', '.join(missing)}")
    for key in ("canary", "stable"):
        if any(c in payload.metadata[key] for c in '"\\`'):
            raise HTTPException(422, f"metadata.{key}: no quote, backquote or backslash")
    name = payload.metadata["judgement"]
    analysis = f"flagger:{payload.namespace}/{payload.name}:{payload.checksum}"
    judged = await _judged(
        request, name, analysis, payload.metadata["canary"], payload.metadata["stable"]
    )
    body = _answer(judged, judgement=name, analysis=analysis, hook=hook)
    if _failing(judged, request, name):
        return JSONResponse(body, status_code=502)
    return JSONResponse(body, status_code=200 if judged.verdict in _PASSES[hook] else 409)


def _flagger_token(request: Request, payload: FlaggerPayload) -> TokenRecord:
    secret = bearer(request) or payload.metadata.get("token")
    how = "a viewer token as 'Authorization: Bearer <token>' or as metadata.token"
    return admitted(authenticated(request, secret, how), Role.VIEWER)


@router.get("/flags/{flag}")
def flag_verdict(flag: str, request: Request, _token: Viewer) -> JSONResponse:
    """The verdict on a flag's latest rollout: ``harm`` once rolled back or when a guard is
    harmful now, ``safe`` once completed or when every guard is safe on its stage, else
    ``pending``."""
    store = request.app.state.store
    rollouts = [r for r in store.rollouts() if r.flag == flag]
    if not rollouts:
        raise HTTPException(404, f"flag {flag!r} has no rollout")
    rollout = max(rollouts, key=lambda r: r.id)
    now = request.app.state.clock.now()
    decision: Decision = request.app.state.controller.current(rollout, now)
    status_text = rollout.status.value
    if status_text == "rolled_back" or decision.move is Move.ROLLBACK:
        verdict = Verdict.HARM
    elif status_text == "completed" or (
        decision.verdicts and all(v.verdict is Verdict.SAFE for v in decision.verdicts)
    ):
        verdict = Verdict.SAFE
    else:
        verdict = Verdict.PENDING
    return JSONResponse(
        {
            "verdict": verdict.value,
            "flag": flag,
            "rollout": rollout.id,
            "status": status_text,
            "stage": rollout.stage,
            "reasons": list(decision.reasons),
            "evidence": decision_evidence(decision)["verdicts"],
        }
    )
