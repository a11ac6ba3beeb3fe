"""Fuzz the HTTP API of a real rollwise server: ``make fuzz``.

For each database — SQLite in a temporary file, PostgreSQL in a fresh schema of a database of
its own (``rollwise_fuzz``, created if absent; the ``test`` database is never touched) — this
starts ``rollwise server`` on loopback, seeds it with the example flags and plan, a started
rollout and an SDK key, then sends requests that schemathesis generates from the served
``/openapi.json`` to every operation: valid ones and invalid ones, with the right token, none,
a wrong one, or one of the wrong role; half of them aimed at the ids that exist. Mutated copies
of the example flags file and plan go to the YAML endpoints too.

The number of cases is fixed (``--cases``, 10,000 per database by default), so the run stops
by itself. It prints a table per database and writes JSON (``tests/fuzz/results-<db>.json``):
the cases and statuses per operation, every 5xx with its request, response-conformance
findings, and the exceptions in the server's log. It exits 1 if any request got a 5xx or no
answer at all.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import hypothesis
import requests
import schemathesis

# Run as a script: its siblings are importable from its own folder.
from _servers import ADMIN, DEFAULT_POSTGRES, Server, postgres_database, sqlite_database
from _world import EXAMPLES, World, mutated_yaml
from hypothesis import HealthCheck, Phase, Verbosity
from schemathesis import GenerationMode
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

HERE = Path(__file__).resolve().parent
#: Of each database's cases, this share goes to mutated example YAML files.
YAML_SHARE = 0.1
REQUEST_TIMEOUT = 15.0
#: A request slower than this is listed (the server may be doing too much for one request).
SLOW_SECONDS = 5.0
MAX_RECORDED = 200


class OutOfTime(Exception):
    """The database's time budget is spent: stop generating cases."""


@dataclass
class Results:
    database: str
    cases: int = 0
    statuses: Counter[int] = field(default_factory=Counter)
    per_operation: dict[str, Counter[int]] = field(default_factory=dict)
    server_errors: list[dict[str, Any]] = field(default_factory=list)
    server_error_count: int = 0
    no_answer: list[dict[str, Any]] = field(default_factory=list)
    conformance: Counter[str] = field(default_factory=Counter)
    conformance_examples: list[dict[str, Any]] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    slow: list[dict[str, Any]] = field(default_factory=list)
    stopped_early: str = ""
    seconds: float = 0.0

    def count(self, label: str, status: int) -> None:
        self.cases += 1
        self.statuses[status] += 1
        self.per_operation.setdefault(label, Counter())[status] += 1


def _describe(request: requests.PreparedRequest | httpx.Request, auth: str) -> dict[str, Any]:
    """The request, without its token (the role it carried instead)."""
    headers = {
        k: v for k, v in request.headers.items() if k.lower() not in ("authorization", "cookie")
    }
    body: Any = request.body if isinstance(request, requests.PreparedRequest) else request.content
    if isinstance(body, bytes):
        body = body.decode("utf-8", "backslashreplace")
    if isinstance(body, str) and len(body) > 4000:
        body = body[:4000] + f"… ({len(body)} characters)"
    split = urlsplit(str(request.url))
    return {
        "method": request.method,
        "path": split.path,
        "query": split.query,
        "auth": auth,
        "headers": headers,
        "body": body,
    }


class Fuzzer:
    def __init__(self, world: World, results: Results, seed: int, deadline: float) -> None:
        self.world = world
        self.results = results
        self.seed = seed
        self.deadline = deadline
        self.sent = 0
        self.session = requests.Session()
        self.http = httpx.Client(base_url=world.url, timeout=REQUEST_TIMEOUT)

    def close(self) -> None:
        self.session.close()
        self.http.close()

    def _auth(self, path: str, choice: int) -> tuple[str, dict[str, str]]:
        """The right token 17 times in 20; else none, a bogus one, or one of the wrong role."""
        sdk = path.startswith("/sdk/")
        if choice == 0:
            return "none", {}
        if choice == 1:
            return "bogus", {"Authorization": "Bearer rw_nope"}
        if choice == 2:
            return ("viewer", self.world.viewer) if sdk else ("sdk", self.world.sdk)
        return ("sdk", self.world.sdk) if sdk else ("admin", self.world.admin)

    def _record(
        self, label: str, status: int, request: Any, auth: str, text: str, elapsed: float
    ) -> None:
        self.results.count(label, status)
        if elapsed > SLOW_SECONDS and len(self.results.slow) < MAX_RECORDED:
            self.results.slow.append(
                {
                    "operation": label,
                    "status": status,
                    "seconds": round(elapsed, 1),
                    "request": _describe(request, auth),
                }
            )
        if status >= 500:
            self.results.server_error_count += 1
            if len(self.results.server_errors) < MAX_RECORDED:
                self.results.server_errors.append(
                    {
                        "operation": label,
                        "status": status,
                        "request": _describe(request, auth),
                        "response": text[:2000],
                        "seconds": round(elapsed, 3),
                    }
                )

    def _no_answer(self, label: str, request: Any, auth: str, exc: BaseException) -> None:
        self.results.count(label, 0)
        if len(self.results.no_answer) < MAX_RECORDED:
            described = _describe(request, auth) if request is not None else {}
            self.results.no_answer.append(
                {"operation": label, "error": repr(exc)[:500], "request": described}
            )

    def _check_time(self) -> None:
        if time.monotonic() > self.deadline:
            raise OutOfTime

    def send(self, operation: Any, label: str, case: Any, real: bool, choice: int) -> None:
        self._check_time()
        if real and case.path_parameters:
            for name in list(case.path_parameters):
                value = self.world.real(name)
                if value is not None:
                    case.path_parameters[name] = value
        auth, headers = self._auth(operation.path, choice)
        # Schemathesis makes up an Authorization header for the bearer scheme: the token
        # chosen here replaces it (or, for "none", no header is sent).
        generated = {k: v for k, v in (case.headers or {}).items() if k.lower() != "authorization"}
        case.headers = {**generated, **headers}
        started = time.monotonic()
        try:
            response = case.call(
                base_url=self.world.url,
                session=self.session,
                headers=headers,
                timeout=REQUEST_TIMEOUT,
            )
        except Exception as exc:  # no answer at all: a crash or a hang
            self._no_answer(label, getattr(exc, "request", None), auth, exc)
            return
        text = response.content.decode("utf-8", "replace")
        self._record(
            label, response.status_code, response.request, auth, text, time.monotonic() - started
        )
        if response.status_code >= 500:
            return
        try:
            case.validate_response(
                response,
                checks=[
                    response_schema_conformance,
                    status_code_conformance,
                    content_type_conformance,
                ],
                headers=headers,
            )
        except BaseException as exc:
            failures = list(getattr(exc, "exceptions", [exc]))
            for failure in failures:
                title = str(getattr(failure, "title", type(failure).__name__))
                key = f"{label}: {title}"
                self.results.conformance[key] += 1
                if (
                    self.results.conformance[key] == 1
                    and len(self.results.conformance_examples) < MAX_RECORDED
                ):
                    self.results.conformance_examples.append(
                        {
                            "operation": label,
                            "check": title,
                            "message": str(getattr(failure, "message", failure))[:1000],
                            "status": response.status_code,
                            "request": _describe(response.request, auth),
                            "response": text[:1000],
                        }
                    )

    def run_operation(self, operation: Any, mode: GenerationMode, budget: int, seed: int) -> int:
        """Up to ``budget`` cases of one operation in one mode; how many were sent."""
        label = f"{operation.method.upper()} {operation.path}"
        before = self.results.cases
        try:
            strategy = operation.as_strategy(generation_mode=mode)
        except Exception as exc:
            self.results.skipped.append(f"{label} ({mode.value}): {exc!r}"[:300])
            return 0

        @hypothesis.settings(
            max_examples=budget,
            deadline=None,
            database=None,
            phases=[Phase.generate],
            suppress_health_check=list(HealthCheck),
            verbosity=Verbosity.quiet,
            print_blob=False,
        )
        @hypothesis.seed(seed)
        @hypothesis.given(case=strategy)
        def cases(case: Any) -> None:
            # Not drawn by Hypothesis, which favours small values: a fixed mix instead.
            self.sent += 1
            self.send(operation, label, case, (self.sent // 3) % 2 == 0, self.sent % 20)

        try:
            cases()
        except OutOfTime:
            raise
        except Exception as exc:  # generation gave up (nothing negative to make, …)
            self.results.skipped.append(f"{label} ({mode.value}): {exc!r}"[:300])
        return self.results.cases - before

    def run_yaml(self, method: str, path: str, original: str, budget: int, seed: int) -> int:
        label = f"{method} {path} (mutated example)"
        before = self.results.cases

        @hypothesis.settings(
            max_examples=budget,
            deadline=None,
            database=None,
            phases=[Phase.generate],
            suppress_health_check=list(HealthCheck),
            verbosity=Verbosity.quiet,
            print_blob=False,
        )
        @hypothesis.seed(seed)
        @hypothesis.given(text=mutated_yaml(original))
        def cases(text: str) -> None:
            self._check_time()
            request = self.http.build_request(
                method,
                path,
                content=text.encode("utf-8", "surrogatepass"),
                headers={**self.world.admin, "Content-Type": "application/yaml"},
            )
            started = time.monotonic()
            try:
                response = self.http.send(request)
            except httpx.HTTPError as exc:
                self._no_answer(label, request, "admin", exc)
                return
            self._record(
                label,
                response.status_code,
                request,
                "admin",
                response.text,
                time.monotonic() - started,
            )

        cases()
        return self.results.cases - before


def fuzz(database: str, url: str, target: int, seed: int, log: Path, minutes: float) -> Results:
    results = Results(database)
    started = time.monotonic()
    with Server(url, log) as server:
        world = World(server.url, {"Authorization": f"Bearer {ADMIN}"})
        world.seed()
        config = schemathesis.Config.from_dict({"max-stream-events": 1})
        schema = schemathesis.openapi.from_url(
            f"{server.url}/openapi.json", config=config, timeout=30
        )
        operations = [result.ok() for result in schema.get_all_operations()]
        fuzzer = Fuzzer(world, results, seed, started + 60 * minutes)
        try:
            # Plans first, linted against the example flags: against some flags files the
            # server accepts (a segment no one matches), linting a plan simulates for minutes,
            # which would spend the run's time on one request. After the mutated flags, the
            # example flags are put back.
            yaml_budget = int(target * YAML_SHARE)
            for method, path, name, share in (
                ("POST", "/api/v1/plans", "plan.yaml", 0.2),
                ("PUT", "/api/v1/flags", "flags.yaml", 0.8),
            ):
                original = (EXAMPLES / name).read_text()
                fuzzer.run_yaml(method, path, original, int(yaml_budget * share), seed)
                world.restore_flags()
                world.keep_live()
            slots = [(op, mode) for op in operations for mode in GenerationMode]
            round_ = 0
            while results.cases < target and slots and round_ < 8:
                budget = math.ceil((target - results.cases) / len(slots))
                exhausted = []
                for operation, mode in slots:
                    if results.cases >= target:
                        break
                    sent = fuzzer.run_operation(
                        operation, mode, min(budget, target - results.cases), seed + round_
                    )
                    if sent < budget // 2:
                        exhausted.append((operation, mode))
                    world.keep_live()
                    if not server.alive:
                        raise RuntimeError(f"the server died: see {log}")
                slots = [slot for slot in slots if slot not in exhausted]
                round_ += 1
        except OutOfTime:
            results.stopped_early = f"the time budget ({minutes:g} min) ran out"
        finally:
            fuzzer.close()
    results.seconds = time.monotonic() - started
    return results


def server_exceptions(log: Path) -> dict[str, int]:
    """The exception that ended each traceback in the server's log (the last of a chain),
    counted."""
    counts: Counter[str] = Counter()
    lines = log.read_text(errors="replace").splitlines()
    in_traceback = False
    for index, line in enumerate(lines):
        if line.startswith("Traceback (most recent call last):"):
            in_traceback = True
            continue
        if not in_traceback or not line or line.startswith((" ", "\t", "^", "~")):
            continue
        in_traceback = False
        following = next((later for later in lines[index + 1 :] if later.strip()), "")
        if following.startswith(("During handling", "The above exception")):
            continue
        counts[re.sub(r"0x[0-9a-f]+", "0x…", line)[:300]] += 1
    return dict(counts.most_common())


def report(results: Results) -> None:
    statuses = sorted(results.statuses)
    width = max((len(label) for label in results.per_operation), default=20)
    header = f"{'operation':<{width}}  {'cases':>6}  " + "  ".join(f"{s:>5}" for s in statuses)
    print(f"\n== {results.database}: {results.cases} cases in {results.seconds:.0f} s ==")
    print(header)
    print("-" * len(header))
    for label in sorted(results.per_operation):
        counts = results.per_operation[label]
        cells = "  ".join(f"{counts.get(s, 0) or '':>5}" for s in statuses)
        print(f"{label:<{width}}  {sum(counts.values()):>6}  {cells}")
    print("-" * len(header))
    total = "  ".join(f"{results.statuses[s]:>5}" for s in statuses)
    print(f"{'total':<{width}}  {results.cases:>6}  {total}")
    if results.stopped_early:
        print(f"stopped early: {results.stopped_early}")
    print(
        f"5xx: {results.server_error_count}; no answer: {results.statuses.get(0, 0)}; "
        f"slower than {SLOW_SECONDS:g} s: {len(results.slow)}; "
        f"conformance findings: {sum(results.conformance.values())} "
        f"({len(results.conformance)} kinds)"
    )
    for failure in results.server_errors[:10]:
        request = failure["request"]
        print(
            f"  {failure['status']} {request['method']} {request['path']}"
            f"{'?' + request['query'] if request['query'] else ''} body={str(request['body'])[:120]!r}"
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--db", choices=["sqlite", "postgresql", "both"], default="both", help="which store(s)"
    )
    parser.add_argument("--cases", type=int, default=10_000, help="cases per database")
    parser.add_argument("--seed", type=int, default=20_260_105)
    parser.add_argument(
        "--minutes",
        type=float,
        default=20.0,
        help="stop a database's run after this long even if cases remain (default 20)",
    )
    parser.add_argument(
        "--out",
        help="where to write the JSON (a '{db}' in it is replaced by the database; "
        "default tests/fuzz/results-{db}.json)",
    )
    parser.add_argument(
        "--postgres-url",
        default=os.environ.get("ROLLWISE_TEST_POSTGRES_URL") or DEFAULT_POSTGRES,
        help="a PostgreSQL server to reach (its database is not used: rollwise_fuzz is)",
    )
    args = parser.parse_args(argv)
    databases = ["sqlite", "postgresql"] if args.db == "both" else [args.db]
    failed = False
    with tempfile.TemporaryDirectory(prefix="rollwise-fuzz-") as scratch:
        directory = Path(scratch)
        for database in databases:
            out = Path(args.out or str(HERE / "results-{db}.json"))
            if "{db}" in str(out):
                out = Path(str(out).replace("{db}", database))
            elif len(databases) > 1:
                out = out.with_name(f"{out.stem}-{database}{out.suffix}")
            log = directory / f"server-{database}.log"
            opened = (
                sqlite_database(directory)
                if database == "sqlite"
                else postgres_database(args.postgres_url)
            )
            with opened as url:
                results = fuzz(database, url, args.cases, args.seed, log, args.minutes)
            report(results)
            document = {
                "database": database,
                "cases": results.cases,
                "seconds": round(results.seconds, 1),
                "statuses": {str(k): v for k, v in sorted(results.statuses.items())},
                "per_operation": {
                    label: {str(k): v for k, v in sorted(counts.items())}
                    for label, counts in sorted(results.per_operation.items())
                },
                "server_errors_total": results.server_error_count,
                "server_errors": results.server_errors,
                "no_answer": results.no_answer,
                "conformance": dict(results.conformance.most_common()),
                "conformance_examples": results.conformance_examples,
                "stopped_early": results.stopped_early,
                "slow": results.slow,
                "skipped": results.skipped,
                "server_exceptions": server_exceptions(log),
            }
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_text(json.dumps(document, indent=2, default=str) + "\n")
            print(f"wrote {out}")
            failed |= results.server_error_count > 0 or results.statuses.get(0, 0) > 0
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
