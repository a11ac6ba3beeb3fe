"""Bucketing: reproducible from the spec, sticky, monotonic, uniform and independent per flag."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from rollwise.core import BUCKETS, Context, Flag, Rule, Variant, bucket, evaluate, unit_text
from rollwise.core._bucketing import SHA256

VECTORS = Path(__file__).resolve().parents[2] / "docs" / "bucketing-vectors.json"
ON_OFF = (Variant("off", False), Variant("on", True))


def _from_spec(salt: str, unit: str) -> int:
    """The documented algorithm, written out independently of rollwise.core."""
    digest = hashlib.sha256(salt.encode("utf-8") + b"\x00" + unit.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") % 100_000


def _percent_flag(percent: float, key: str = "f") -> Flag:
    return Flag(key, ON_OFF, rules=(Rule(serve="on", percent=percent),))


def test_vectors_match_the_implementation_and_the_spec() -> None:
    """Every documented test vector is what bucket() and the written-out spec compute."""
    document = json.loads(VECTORS.read_text(encoding="utf-8"))
    assert document["buckets"] == BUCKETS == 100_000
    assert len(document["vectors"]) >= 10
    for vector in document["vectors"]:
        salt, unit = vector["salt"], vector["unit"]
        assert bytes.fromhex(vector["input_hex"]) == salt.encode() + b"\x00" + unit.encode()
        assert hashlib.sha256(bytes.fromhex(vector["input_hex"])).hexdigest() == vector["sha256"]
        assert int(vector["uint64"]) == int(vector["sha256"][:16], 16)
        assert bucket(salt, unit) == vector["bucket"] == _from_spec(salt, unit)


@given(st.text(min_size=1), st.text(min_size=1))
def test_bucket_is_in_range_and_matches_spec(salt: str, unit: str) -> None:
    """Any salt and unit text land in [0, BUCKETS) exactly where the spec says."""
    value = bucket(salt, unit)
    assert 0 <= value < BUCKETS
    assert value == _from_spec(salt, unit)


@given(st.text(min_size=1, max_size=40), st.floats(min_value=0, max_value=100))
def test_same_unit_always_gets_the_same_variant(unit: str, percent: float) -> None:
    """Stickiness: evaluating twice, or with other attributes, never changes the variant."""
    flag = _percent_flag(round(percent, 3))
    first = evaluate(flag, Context(unit))
    again = evaluate(flag, Context(unit, {"country": "US", "tier": "gold"}))
    assert first.variant == again.variant == evaluate(flag, Context(unit)).variant


@given(
    st.text(min_size=1, max_size=40),
    st.floats(min_value=0, max_value=100),
    st.floats(min_value=0, max_value=100),
)
def test_raising_the_percentage_never_removes_a_unit(unit: str, low: float, high: float) -> None:
    """Monotonic expansion: a unit on at p stays on at any q >= p."""
    low, high = sorted((round(low, 3), round(high, 3)))
    if evaluate(_percent_flag(low), Context(unit)).enabled:
        assert evaluate(_percent_flag(high), Context(unit)).enabled


def test_missing_or_unusable_unit_gets_the_safe_default_not_a_bucket() -> None:
    """No unit → safe default with reason unit_missing, for every kind of unusable value."""
    flag = Flag("f", ON_OFF, rules=(Rule(serve="on", percent=100),), unit="tenant")
    for attributes in ({}, {"tenant": ""}, {"tenant": None}, {"tenant": 1.5}, {"tenant": True}):
        resolution = evaluate(flag, Context("u-1", attributes))  # type: ignore[arg-type]
        assert resolution.variant == "off"
        assert resolution.reason == "unit_missing"
    assert evaluate(flag, Context("u-1", {"tenant": 7})).variant == "on"
    assert unit_text(7) == "7"


def test_100k_units_split_uniformly_within_chi_square_bounds() -> None:
    """100,000 units over 100 equal ranges of buckets: chi-square p-value above 0.001."""
    counts = [0] * 100
    for index in range(100_000):
        counts[bucket("uniformity", f"user-{index}") * 100 // BUCKETS] += 1
    result = stats.chisquare(counts)
    assert result.pvalue > 0.001, result
    # And the share at 25 % is 25 % within 4 standard errors.
    share = sum(counts[:25]) / 100_000
    assert abs(share - 0.25) < 4 * (0.25 * 0.75 / 100_000) ** 0.5


def test_two_flags_buckets_are_independent() -> None:
    """Salted per flag: the 10x10 contingency table of two flags' buckets shows no dependence."""
    table = [[0] * 10 for _ in range(10)]
    for index in range(50_000):
        unit = f"user-{index}"
        table[bucket("flag-one", unit) * 10 // BUCKETS][
            bucket("flag-two", unit) * 10 // BUCKETS
        ] += 1
    result = stats.chi2_contingency(table)
    assert result.pvalue > 0.001, result
    # Sanity check that the test can fail: the same salt twice is perfectly dependent.
    same = [[0] * 10 for _ in range(10)]
    for index in range(5_000):
        value = bucket("flag-one", f"user-{index}") * 10 // BUCKETS
        same[value][value] += 1
    assert stats.chi2_contingency(same).pvalue < 1e-10


def test_exposure_at_25_percent_is_close_to_25_percent_of_units() -> None:
    """A 25 % rule exposes 25 % of 20,000 users within 4 standard errors."""
    flag = _percent_flag(25)
    exposed = sum(evaluate(flag, Context(f"user-{i}")).enabled for i in range(20_000))
    assert abs(exposed / 20_000 - 0.25) < 4 * (0.25 * 0.75 / 20_000) ** 0.5


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_the_hash_bucketing_uses_is_sha256(data: bytes) -> None:
    """Bucketing hashes with CPython's own SHA-256 where it has one (it is cheaper than
    OpenSSL's for short texts): its digests are hashlib's, for any input."""
    assert SHA256(data).digest() == hashlib.sha256(data).digest()
    assert SHA256(data).hexdigest() == hashlib.sha256(data).hexdigest()
