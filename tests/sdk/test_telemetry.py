"""OpenTelemetry: ``feature_flag.evaluation`` span events, from the SDK itself when asked
(``telemetry=True``) and from the OpenFeature community's hook around the rollwise provider."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from openfeature import api
from openfeature.contrib.hook.opentelemetry import TracingHook
from openfeature.evaluation_context import EvaluationContext
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from rollwise import Client, Context
from rollwise.sdk.openfeature import RollwiseProvider

FLAGS = Path(__file__).resolve().parents[2] / "examples" / "checkout" / "flags.yaml"
ACME = {"key": "u-1", "tenant": "acme", "app_version": "2.5.0"}


@pytest.fixture(scope="module")
def tracing() -> Iterator[tuple[TracerProvider, InMemorySpanExporter]]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    yield provider, exporter
    provider.shutdown()


def _events(
    tracing: tuple[TracerProvider, InMemorySpanExporter], work: object
) -> list[dict[str, object]]:
    """The ``feature_flag.evaluation`` events ``work()`` wrote inside one span."""
    provider, exporter = tracing
    exporter.clear()
    with provider.get_tracer("test").start_as_current_span("request"):
        work()  # type: ignore[operator]
    (span,) = exporter.get_finished_spans()
    assert isinstance(span, ReadableSpan)
    return [
        dict(event.attributes or {})
        for event in span.events
        if event.name == "feature_flag.evaluation"
    ]


def test_the_sdk_writes_an_evaluation_event_per_evaluation_when_asked(
    tracing: tuple[TracerProvider, InMemorySpanExporter],
) -> None:
    client = Client.from_file(FLAGS, telemetry=True)

    def work() -> None:
        client.enabled("new-checkout", ACME)
        client.resolve("new-checkout", Context("u-2", {"tenant": "globex", "app_version": "2.0"}))
        client.variant("nope", {"key": "u-3"}, "fallback")

    on, old_app, missing = _events(tracing, work)
    assert on == {
        "feature_flag.key": "new-checkout",
        "feature_flag.provider.name": "rollwise",
        "feature_flag.version": "0",
        "feature_flag.result.reason": "targeting_match",
        "feature_flag.result.variant": "on",
        "feature_flag.context.id": "u-1",
    }
    assert old_app["feature_flag.result.variant"] == "off"
    assert old_app["feature_flag.context.id"] == "u-2"
    assert missing["feature_flag.result.reason"] == "error"
    assert missing["error.type"] == "flag_not_found"
    assert "feature_flag.result.variant" not in missing


def test_telemetry_is_off_by_default_and_quiet_outside_a_span(
    tracing: tuple[TracerProvider, InMemorySpanExporter],
) -> None:
    plain = Client.from_file(FLAGS)
    assert _events(tracing, lambda: plain.enabled("new-checkout", ACME)) == []
    # No span is current: nothing to write to, and nothing raised.
    assert Client.from_file(FLAGS, telemetry=True).enabled("new-checkout", ACME) is True


def test_the_openfeature_hook_traces_the_rollwise_provider(
    tracing: tuple[TracerProvider, InMemorySpanExporter],
) -> None:
    api.set_provider(RollwiseProvider(Client.from_file(FLAGS)), domain="rollwise-otel-hook")
    client = api.get_client("rollwise-otel-hook")
    client.add_hooks([TracingHook()])
    context = EvaluationContext("u-1", {"tenant": "acme", "app_version": "2.5.0"})
    (event,) = _events(tracing, lambda: client.get_boolean_value("new-checkout", False, context))
    assert event["feature_flag.key"] == "new-checkout"
    assert event["feature_flag.provider.name"] == "rollwise"
    assert event["feature_flag.result.variant"] == "on"
    assert event["feature_flag.result.reason"] == "targeting_match"
    assert event["feature_flag.context.id"] == "u-1"


def test_telemetry_without_the_opentelemetry_api_is_a_clear_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "opentelemetry", None)  # as if it were not installed
    with pytest.raises(ValueError, match="pip install opentelemetry-api"):
        Client.from_file(FLAGS, telemetry=True)
