"""A flag's program is checked when the flag is made and compiled at its first evaluation: a
snapshot of a thousand flags is read without compiling them, and what an evaluation returns is
the same whichever thread compiles first."""

from __future__ import annotations

import threading

import pytest

from rollwise.core import Flag, Rule, Split, Variant, evaluate, load_flags

FLAGS = """
flags:
  checkout:
    variants: [off, on]
    unit: tenant
    min_app_version: 2.4.0
    rules:
      - {when: {tenant: [acme]}, serve: on}
      - {percent: 25, serve: on}
  search:
    variants: [control, a, b]
    rules:
      - when: {region: {starts_with: eu-}}
        serve: {split: {control: 50, a: 25, b: 25}}
"""
CONTEXTS = [
    {
        "key": f"u{index}",
        "tenant": f"t{index % 40}",
        "region": ("eu-west", "us")[index % 2],
        "app_version": ("2.3.0", "2.5.1")[index % 3 == 0],
    }
    for index in range(400)
]


def test_a_flag_is_compiled_at_its_first_evaluation_only() -> None:
    flags = load_flags(FLAGS)
    programs = [flag.program for flag in flags.flags.values()]
    assert all(program.run == program._first_run for program in programs)
    evaluate(flags.flags["checkout"], CONTEXTS[0])
    assert flags.flags["checkout"].program.run == flags.flags["checkout"].program._run
    assert flags.flags["search"].program.run == flags.flags["search"].program._first_run


def test_threads_compiling_at_once_answer_as_one_thread_does() -> None:
    expected = {
        key: [evaluate(flag, context) for context in CONTEXTS]
        for key, flag in load_flags(FLAGS).flags.items()
    }
    for _ in range(20):  # fresh, uncompiled flags each round
        flags = load_flags(FLAGS)
        start = threading.Barrier(8)
        answers: list[dict[str, list[object]]] = []

        def work(flags=flags, start=start, answers=answers) -> None:
            start.wait()
            answers.append({k: [evaluate(f, c) for c in CONTEXTS] for k, f in flags.flags.items()})

        threads = [threading.Thread(target=work) for _ in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert answers == [expected] * 8


def test_a_rule_naming_a_missing_variant_is_still_refused_when_the_flag_is_made() -> None:
    variants = (Variant("off", False), Variant("on", True))
    with pytest.raises(ValueError, match="has no variant 'blue'"):
        Flag("f", variants, rules=(Rule(serve="blue"),))
    with pytest.raises(ValueError, match="has no variant 'green'"):
        Flag("f", variants, rules=(Rule(serve=Split((("on", 50.0), ("green", 50.0))), percent=10),))
    with pytest.raises(ValueError, match="has no variant 'gone'"):
        Flag("f", variants, default="gone")
