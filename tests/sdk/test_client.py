"""The offline client: the same evaluation as the core, and it never raises."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from rollwise import Client, Context, InputError, Reason
from rollwise.core import evaluate


def test_from_file_evaluates_like_the_core(flags_path: Path) -> None:
    """enabled / variant / value / resolve agree with core.evaluate for many contexts."""
    client = Client.from_file(flags_path)
    flag = client.flags.flags["new-checkout"]
    for index in range(500):
        context = {"key": f"u-{index}", "tenant": f"tenant-{index}", "app_version": "2.5.0"}
        expected = evaluate(flag, context)
        assert client.resolve("new-checkout", context) == expected
        assert client.enabled("new-checkout", context) is expected.enabled
        assert client.enabled("new-checkout", Context.of(context)) is expected.enabled
        assert client.variant("new-checkout", context, "off") == expected.variant
        assert client.value("new-checkout", context, None) is expected.value


def test_pilot_tenant_is_on_and_old_app_is_off(flags_path: Path) -> None:
    """The example flag: acme (pilot) on; acme on an old app version off."""
    client = Client.from_file(flags_path)
    assert client.enabled("new-checkout", {"key": "u", "tenant": "acme", "app_version": "2.4.1"})
    old = client.resolve("new-checkout", {"key": "u", "tenant": "acme", "app_version": "2.3.0"})
    assert (old.variant, old.reason) == ("off", Reason.VERSION_BELOW_MINIMUM)


def test_unknown_flag_gives_the_callers_default_with_a_reason(flags_path: Path) -> None:
    """Unknown flags never raise: each method returns the caller's default."""
    client = Client.from_file(flags_path)
    context = {"key": "u"}
    assert client.enabled("nope", context) is False
    assert client.enabled("nope", context, default=True) is True
    assert client.variant("nope", context, default="control") == "control"
    assert client.value("nope", context, 42) == 42
    resolution = client.resolve("nope", context, default=42)
    assert (resolution.reason, resolution.value) == (Reason.FLAG_NOT_FOUND, 42)


def test_bad_context_serves_the_safe_default_and_logs(
    flags_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A context the SDK cannot read is logged, never raised, and gets the safe default."""
    client = Client.from_file(flags_path)
    with caplog.at_level(logging.WARNING, logger="rollwise.sdk"):
        assert client.enabled("new-checkout", {"key": "u", "tenant": {"no": "dicts"}}) is False  # type: ignore[dict-item]
        assert client.variant("new-checkout", ["not", "a", "mapping"], "x") == "off"  # type: ignore[arg-type]
    assert any("new-checkout" in record.getMessage() for record in caplog.records)


def test_from_file_with_a_broken_file_raises_at_startup(tmp_path: Path) -> None:
    """Loading a broken flags file fails loudly, naming the file and line."""
    broken = tmp_path / "flags.yaml"
    broken.write_text("flags:\n  f:\n    variants: [only]\n")
    with pytest.raises(InputError, match=r"flags\.yaml:3: flags\.f\.variants"):
        Client.from_file(broken)
