"""The OpenFeature provider, exercised through the OpenFeature API as an application would."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from openfeature import api
from openfeature.client import OpenFeatureClient
from openfeature.evaluation_context import EvaluationContext
from openfeature.exception import ErrorCode as OpenFeatureErrorCode
from openfeature.flag_evaluation import Reason as OpenFeatureReason
from openfeature.track import TrackingEventDetails

from rollwise import Client, Context, Reason, Resolution
from rollwise.core import ErrorCode
from rollwise.sdk.openfeature import Resolver, RollwiseProvider, to_context

MORE_FLAGS = """\
flags:
  old-checkout-banner:
    variants: [off, on]
    killed: true
    rules:
      - serve: on
  page-size:
    variants: {small: 10, large: 100}
    rules:
      - when: {tier: pro}
        serve: large
  sample-rate:
    variants: {low: 0.5, high: 1.5}
  winter-sale:
    variants: [off, on]
    rules:
      - when: {signed_up: {after: '2026-01-01T00:00:00Z'}}
        serve: on
"""

PILOT = EvaluationContext("u-1", {"tenant": "acme", "app_version": "2.5.0"})


class FakeClient:
    """A rollwise client that answers every flag with one resolution and records tracking."""

    def __init__(self, resolution: Resolution | None = None, fail: Exception | None = None) -> None:
        self.resolution = resolution or Resolution("f", "off", False, Reason.FALLTHROUGH)
        self.fail = fail
        self.tracked: list[tuple[str, Context, bool]] = []

    def resolve(self, flag: str, context: Context, default: object = None) -> Resolution:
        if self.fail is not None:
            raise self.fail
        return self.resolution

    def track(self, event: str, context: Context, happened: bool = True) -> None:
        if self.fail is not None:
            raise self.fail
        self.tracked.append((event, context, happened))


@pytest.fixture(autouse=True)
def _reset_openfeature() -> Iterator[None]:
    """Each test starts from, and leaves behind, a clean OpenFeature global state."""
    api.shutdown()  # providers, hooks, API evaluation context, transaction propagator
    yield
    api.shutdown()


def use(client: Resolver) -> OpenFeatureClient:
    """Register a provider for ``client`` and return an OpenFeature client.

    ``set_provider_and_wait``: with openfeature-sdk 0.10, ``set_provider`` initialises on a
    thread, and an evaluation that wins the race gets PROVIDER_NOT_READY.
    """
    api.set_provider_and_wait(RollwiseProvider(client))
    return api.get_client()


@pytest.fixture
def openfeature(flags_path: Path) -> OpenFeatureClient:
    return use(Client.from_file(flags_path))


@pytest.fixture
def more_flags(tmp_path: Path) -> OpenFeatureClient:
    path = tmp_path / "flags.yaml"
    path.write_text(MORE_FLAGS)
    return use(Client.from_file(path))


def test_the_provider_is_named_rollwise(openfeature: OpenFeatureClient) -> None:
    """Requirement 2.1.1: the registered provider's metadata names it "rollwise"."""
    assert api.get_provider_metadata().name == "rollwise"
    assert openfeature.provider.get_metadata().name == "rollwise"


def test_pilot_tenant_gets_on_by_targeting_match(openfeature: OpenFeatureClient) -> None:
    """The pilot tenant gets True, variant "on", TARGETING_MATCH, and the rule in the metadata."""
    assert openfeature.get_boolean_value("new-checkout", False, PILOT) is True
    details = openfeature.get_boolean_details("new-checkout", False, PILOT)
    assert (details.value, details.variant, details.reason) == (
        True,
        "on",
        OpenFeatureReason.TARGETING_MATCH,
    )
    assert details.error_code is None
    assert details.flag_metadata == {"rollwise.reason": "rule_match", "rollwise.rule": 0}


def test_unknown_flag_serves_the_callers_default(openfeature: OpenFeatureClient) -> None:
    """An unknown flag gives the caller's default, reason ERROR, FLAG_NOT_FOUND, no variant."""
    details = openfeature.get_boolean_details("no-such-flag", True, PILOT)
    assert (details.value, details.variant, details.reason, details.error_code) == (
        True,
        None,
        OpenFeatureReason.ERROR,
        OpenFeatureErrorCode.FLAG_NOT_FOUND,
    )
    assert openfeature.get_string_value("no-such-flag", "fallback", PILOT) == "fallback"


@pytest.mark.parametrize(
    ("flag_type", "flag", "default"),
    [
        ("string", "new-checkout", "x"),  # a boolean flag asked for text
        ("boolean", "search-v2", True),  # control/treatment asked for a boolean
        ("integer", "new-checkout", 7),  # bool is an int in Python, not in OpenFeature
        ("float", "search-v2", 0.5),
        ("object", "new-checkout", {"fallback": True}),
    ],
)
def test_type_mismatch_serves_the_default(
    openfeature: OpenFeatureClient, flag_type: str, flag: str, default: object
) -> None:
    """A variant value of another type than asked gives the default with TYPE_MISMATCH."""
    context = EvaluationContext("u-1", {"tenant": "acme", "app_version": "2.5.0", "region": "eu-1"})
    details = getattr(openfeature, f"get_{flag_type}_details")(flag, default, context)
    assert (details.value, details.variant, details.reason, details.error_code) == (
        default,
        None,
        OpenFeatureReason.ERROR,
        OpenFeatureErrorCode.TYPE_MISMATCH,
    )
    assert "which is not a" in details.error_message


def test_missing_tenant_serves_the_safe_default_without_error(
    openfeature: OpenFeatureClient,
) -> None:
    """No tenant for a tenant-bucketed flag: the safe default "off", DEFAULT, no error code."""
    context = EvaluationContext("u-1", {"app_version": "2.5.0"})
    details = openfeature.get_boolean_details("new-checkout", True, context)
    assert (details.value, details.variant, details.reason, details.error_code) == (
        False,
        "off",
        OpenFeatureReason.DEFAULT,
        None,
    )
    assert details.flag_metadata == {"rollwise.reason": "unit_missing"}


def test_missing_targeting_key_is_targeting_key_missing(openfeature: OpenFeatureClient) -> None:
    """No targeting key for a user-bucketed flag: the caller's default, TARGETING_KEY_MISSING."""
    context = EvaluationContext(None, {"region": "eu-west-1", "tier": "pro"})
    details = openfeature.get_string_details("search-v2", "fallback", context)
    assert (details.value, details.variant, details.reason, details.error_code) == (
        "fallback",
        None,
        OpenFeatureReason.ERROR,
        OpenFeatureErrorCode.TARGETING_KEY_MISSING,
    )
    assert details.flag_metadata == {"rollwise.reason": "unit_missing"}
    empty_key = EvaluationContext("", {"region": "eu-west-1", "tier": "pro"})
    assert openfeature.get_string_details("search-v2", "x", empty_key).error_code == (
        OpenFeatureErrorCode.TARGETING_KEY_MISSING
    )


def test_keyless_context_missing_another_unit_is_no_key_error(
    openfeature: OpenFeatureClient,
) -> None:
    """Without a key, a missing tenant is still a missing tenant: DEFAULT, not a key error."""
    details = openfeature.get_boolean_details(
        "new-checkout", True, EvaluationContext(None, {"app_version": "2.5.0"})
    )
    assert (details.value, details.reason, details.error_code) == (
        False,
        OpenFeatureReason.DEFAULT,
        None,
    )


def test_unit_missing_from_a_client_without_its_flags() -> None:
    """A client that does not expose its flags: a keyless unit_missing is TARGETING_KEY_MISSING."""
    missing = Resolution("f", "off", False, Reason.UNIT_MISSING, error=ErrorCode.UNIT_MISSING)
    openfeature = use(FakeClient(missing))
    keyless = openfeature.get_boolean_details("f", True, EvaluationContext(None, {}))
    keyed = openfeature.get_boolean_details("f", True, EvaluationContext("u-1", {}))
    assert (keyless.value, keyless.error_code) == (True, OpenFeatureErrorCode.TARGETING_KEY_MISSING)
    assert (keyed.value, keyed.reason, keyed.error_code) == (False, OpenFeatureReason.DEFAULT, None)


@pytest.mark.parametrize("app_version", ["2.3.0", None])
def test_old_app_gets_the_safe_default_by_targeting(
    openfeature: OpenFeatureClient, app_version: str | None
) -> None:
    """An app below min_app_version (or without one) gets False, TARGETING_MATCH, no error."""
    attributes = {"tenant": "acme"} | ({"app_version": app_version} if app_version else {})
    details = openfeature.get_boolean_details(
        "new-checkout", True, EvaluationContext("u-1", attributes)
    )
    assert (details.value, details.variant, details.reason, details.error_code) == (
        False,
        "off",
        OpenFeatureReason.TARGETING_MATCH,
        None,
    )
    assert details.flag_metadata == {"rollwise.reason": "version_below_minimum"}


def test_kill_switch_is_disabled(more_flags: OpenFeatureClient) -> None:
    """A killed flag serves its safe default with reason DISABLED."""
    details = more_flags.get_boolean_details("old-checkout-banner", True, PILOT)
    assert (details.value, details.variant, details.reason, details.error_code) == (
        False,
        "off",
        OpenFeatureReason.DISABLED,
        None,
    )


def test_search_v2_serves_what_rollwise_evaluates(flags_path: Path) -> None:
    """get_string_details agrees with Client.resolve: split/percent → SPLIT, fallthrough → DEFAULT."""
    rollwise = Client.from_file(flags_path)
    openfeature = use(rollwise)
    expected_reason = {
        Reason.SPLIT: OpenFeatureReason.SPLIT,
        Reason.FALLTHROUGH: OpenFeatureReason.DEFAULT,
    }
    seen = set()
    for index in range(300):
        attributes = {"region": "eu-west-1", "tier": "pro"}
        context = EvaluationContext(f"u-{index}", attributes)
        details = openfeature.get_string_details("search-v2", "x", context)
        resolution = rollwise.resolve("search-v2", {"key": f"u-{index}", **attributes})
        assert details.value in {"control", "treatment"}
        assert (details.value, details.variant) == (resolution.value, resolution.variant)
        assert details.reason == expected_reason[resolution.reason]
        assert details.error_code is None
        seen.add((details.value, details.reason))
    assert seen == {
        ("control", OpenFeatureReason.SPLIT),
        ("treatment", OpenFeatureReason.SPLIT),
        ("control", OpenFeatureReason.DEFAULT),
    }


def test_numbers(more_flags: OpenFeatureClient) -> None:
    """Integer variants serve integers (and floats, widened); a float variant is no integer."""
    pro = EvaluationContext("u-1", {"tier": "pro"})
    assert more_flags.get_integer_details("page-size", 1, pro).value == 100
    widened = more_flags.get_float_details("page-size", 1.0, pro)
    assert (widened.value, widened.variant) == (100.0, "large")
    assert isinstance(widened.value, float)
    sample = more_flags.get_float_details("sample-rate", 0.0, pro)
    assert (sample.value, sample.variant, sample.reason) == (0.5, "low", OpenFeatureReason.DEFAULT)
    assert more_flags.get_integer_details("sample-rate", 3, pro).error_code == (
        OpenFeatureErrorCode.TYPE_MISMATCH
    )


def test_datetime_attributes_are_read_by_time_conditions(more_flags: OpenFeatureClient) -> None:
    """A datetime attribute reaches the `after` operator, as ISO 8601 text."""
    signed_up = datetime(2026, 3, 1, tzinfo=UTC)
    assert more_flags.get_boolean_value(
        "winter-sale", False, EvaluationContext("u-1", {"signed_up": signed_up})
    )
    before = EvaluationContext("u-1", {"signed_up": datetime(2025, 12, 1, tzinfo=UTC)})
    assert more_flags.get_boolean_value("winter-sale", True, before) is False


def test_unreadable_attributes_are_left_out_and_named(openfeature: OpenFeatureClient) -> None:
    """Structures and non-text lists are dropped (not an error) and named in the metadata."""
    context = EvaluationContext(
        "u-1",
        {
            "tenant": "acme",
            "app_version": "2.5.0",
            "profile": {"plan": "pro"},
            "scores": [1, 2],
            "roles": ["admin"],
        },
    )
    details = openfeature.get_boolean_details("new-checkout", False, context)
    assert (details.value, details.error_code) == (True, None)
    assert details.flag_metadata["rollwise.ignored_attributes"] == "profile, scores"
    rollwise, ignored = to_context(context)
    assert rollwise.values["roles"] == ("admin",)
    assert (rollwise.key, ignored) == ("u-1", ("profile", "scores"))


def test_api_level_context_is_merged(openfeature: OpenFeatureClient) -> None:
    """The provider sees the OpenFeature-merged context: API-level attributes count."""
    api.set_evaluation_context(EvaluationContext(attributes={"app_version": "2.5.0"}))
    assert openfeature.get_boolean_value(
        "new-checkout", False, EvaluationContext("u-1", {"tenant": "acme"})
    )


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (ErrorCode.INVALID_CONTEXT, OpenFeatureErrorCode.INVALID_CONTEXT),
        (ErrorCode.GENERAL, OpenFeatureErrorCode.GENERAL),
        (None, OpenFeatureErrorCode.GENERAL),
    ],
)
def test_rollwise_errors_serve_the_callers_default(
    error: ErrorCode | None, expected: OpenFeatureErrorCode
) -> None:
    """Reason error from the client: the caller's default, ERROR, and the matching code."""
    failed = Resolution("f", "off", False, Reason.ERROR, error=error, message="context.x: bad")
    details = use(FakeClient(failed)).get_boolean_details("f", True, PILOT)
    assert (details.value, details.variant, details.reason, details.error_code) == (
        True,
        None,
        OpenFeatureReason.ERROR,
        expected,
    )
    assert details.error_message == "context.x: bad"


def test_a_client_that_raises_never_raises_into_the_app(caplog: pytest.LogCaptureFixture) -> None:
    """A client that raises: the caller's default with GENERAL, logged with the flag key."""
    openfeature = use(FakeClient(fail=RuntimeError("snapshot corrupt")))
    with caplog.at_level(logging.WARNING, logger="rollwise.sdk.openfeature"):
        details = openfeature.get_string_details("search-v2", "fallback", PILOT)
    assert (details.value, details.reason, details.error_code) == (
        "fallback",
        OpenFeatureReason.ERROR,
        OpenFeatureErrorCode.GENERAL,
    )
    assert details.error_message == "RuntimeError: snapshot corrupt"
    assert any("search-v2" in record.getMessage() for record in caplog.records)


def test_async_evaluation(openfeature: OpenFeatureClient) -> None:
    """The async API serves the same result as the sync one."""
    value = asyncio.run(openfeature.get_boolean_value_async("new-checkout", False, PILOT))
    assert value is True


def test_track_calls_the_clients_track() -> None:
    """Requirement 2.7.1: client.track reaches the rollwise client's track with the context."""
    fake = FakeClient()
    openfeature = use(fake)
    openfeature.track("checkout.completed", EvaluationContext("u-1", {"tenant": "acme"}))
    openfeature.track(
        "checkout.abandoned",
        EvaluationContext("u-2", {}),
        TrackingEventDetails().add("happened", False),
    )
    assert fake.tracked == [
        ("checkout.completed", Context("u-1", {"tenant": "acme"}), True),
        ("checkout.abandoned", Context("u-2", {}), False),
    ]


def test_track_without_a_client_track_is_a_no_op(openfeature: OpenFeatureClient) -> None:
    """The offline client cannot record events: tracking does nothing and raises nothing."""
    openfeature.track("checkout.completed", PILOT)


def test_track_failure_is_logged_not_raised(caplog: pytest.LogCaptureFixture) -> None:
    """A client whose track raises: the event is dropped and logged, the app carries on."""
    openfeature = use(FakeClient(fail=ConnectionError("down")))
    with caplog.at_level(logging.WARNING, logger="rollwise.sdk.openfeature"):
        openfeature.track("checkout.completed", PILOT)
    assert any("checkout.completed" in record.getMessage() for record in caplog.records)
