"""``tidings.tracing``: sampling before anything is made, the context in the envelope's
metadata (never its body), and the spans of each hop, on the SDK's in-memory exporter."""

from __future__ import annotations

import itertools
from dataclasses import replace

import pytest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode
from pydantic import ValidationError

from tidings.config import DEFAULT_SAMPLE_RATIO, Settings
from tidings.core import jsoncodec
from tidings.core.envelopes import Envelope, EnvelopeKind
from tidings.errors import MismatchedDevices, Unavailable
from tidings.services.router import Accepted, Outgoing
from tidings.tracing import Tracing, otlp_exporter, parent_of

BODY = "Y2lwaGVydGV4dA=="


def envelope(client_id: str, device: int = 1) -> Envelope:
    return Envelope(
        server_id=f"s-{client_id}",
        kind=EnvelopeKind.MESSAGE,
        timestamp=1,
        sender_user="alice",
        sender_device=1,
        recipient_user="bob",
        recipient_device=device,
        client_id=client_id,
        body=BODY,
    )


def sends(*client_ids: str) -> list[Outgoing]:
    return [Outgoing(c, "bob", None, {"bob": {1: (None, BODY)}}) for c in client_ids]


def tracing(ratio: float, draws: list[float] | None = None) -> tuple[Tracing, InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    chance = itertools.cycle(draws or [0.5]).__next__
    return (
        Tracing.exporting(exporter, ratio, service="test", batch=False, chance=chance),
        exporter,
    )


def by_name(spans: tuple[ReadableSpan, ...]) -> dict[str, list[ReadableSpan]]:
    named: dict[str, list[ReadableSpan]] = {}
    for span in spans:
        named.setdefault(span.name, []).append(span)
    return named


def test_an_untraced_envelope_encodes_exactly_as_before_with_no_trace_key() -> None:
    data = jsoncodec.loads(envelope("m1").encode())
    assert "trace" not in data
    assert Envelope.decode(envelope("m1").encode()).trace is None


def test_the_trace_travels_beside_the_body_and_never_reaches_the_recipient() -> None:
    stamped = Envelope.decode(
        replace(envelope("m1"), trace="00-" + "1" * 32 + "-" + "2" * 16 + "-01").encode()
    )
    assert stamped.trace is not None
    assert stamped.body == BODY
    assert "trace" not in stamped.to_client()
    assert stamped.trace not in str(stamped.to_client())


def test_unsampled_sends_make_no_span_and_leave_envelopes_untouched() -> None:
    tracer, exporter = tracing(0.01, draws=[0.5, 0.9, 0.02])
    assert tracer.sends(sends("m1", "m2", "m3")) is None
    assert Tracing.off().sends(sends("m1")) is None
    assert tracing(0.0)[0].sends(sends("m1")) is None
    assert tracer.delivering([envelope("m1")]) is None
    assert tracer.deliver_span(envelope("m1")) is None
    tracer.acked([envelope("m1")], 0)
    assert exporter.get_finished_spans() == ()


def test_only_the_sampled_send_of_a_batch_is_stamped_and_traced() -> None:
    tracer, exporter = tracing(0.5, draws=[0.9, 0.1])  # m1 not sampled, m2 sampled
    trace = tracer.sends(sends("m1", "m2"))
    assert trace is not None
    assert list(trace.accepts) == ["m2"]
    stamped = trace.stamp([envelope("m1"), envelope("m2", 1), envelope("m2", 2)])
    assert [e.trace is not None for e in stamped] == [False, True, True]
    assert stamped[1].trace == stamped[2].trace  # one produce span for the send's copies
    trace.produced()
    trace.answered(sends("m1", "m2"), [Accepted("s-m1", 1, False), Accepted("s-m2", 1, False)])
    spans = by_name(exporter.get_finished_spans())
    (accept,) = spans["tidings.gateway.accept"]
    (produce,) = spans["tidings.router.produce"]
    assert produce.parent is not None
    assert produce.parent.span_id == accept.context.span_id
    assert produce.attributes is not None
    assert produce.attributes["tidings.envelopes"] == 2
    assert accept.attributes is not None
    assert accept.attributes["tidings.server_id"] == "s-m2"
    assert accept.status.status_code is StatusCode.UNSET


def test_a_send_whose_region_could_not_take_it_ends_its_produce_span_failed() -> None:
    tracer, exporter = tracing(1.0)
    trace = tracer.sends(sends("m1", "m2"))
    assert trace is not None
    trace.stamp([envelope("m1"), envelope("m2")])
    trace.produced(["m1"])  # m2's copies went to a region that cannot be reached
    lost = Unavailable("region eu-west cannot be reached now")
    trace.answered(sends("m1", "m2"), [Accepted("s-m1", 1, False), lost])
    spans = by_name(exporter.get_finished_spans())
    accepts = {a.context.span_id: a for a in spans["tidings.gateway.accept"]}
    outcome = {}
    for produce in spans["tidings.router.produce"]:
        assert produce.parent is not None
        accept = accepts[produce.parent.span_id]
        assert accept.attributes is not None
        send = "m1" if accept.attributes.get("tidings.server_id") == "s-m1" else "m2"
        outcome[send] = produce.status.status_code
    assert outcome == {"m1": StatusCode.UNSET, "m2": StatusCode.ERROR}


def test_a_refused_send_ends_its_span_with_the_error_and_makes_no_produce_span() -> None:
    tracer, exporter = tracing(1.0)
    trace = tracer.sends(sends("m1"))
    assert trace is not None
    trace.answered(sends("m1"), [MismatchedDevices("the device list is out of date")])
    (accept,) = exporter.get_finished_spans()
    assert accept.status.status_code is StatusCode.ERROR
    assert accept.attributes is not None
    assert accept.attributes["tidings.error"] == "mismatched_devices"


def test_every_later_hop_joins_the_trace_the_envelope_carries() -> None:
    tracer, exporter = tracing(1.0)
    trace = tracer.sends(sends("m1"))
    assert trace is not None
    (sent,) = trace.stamp([envelope("m1")])
    trace.produced()
    trace.answered(sends("m1"), [Accepted("s-m1", 1, False)])
    # A process that starts no trace (ratio 0) still records the hops of this one.
    later, later_spans = tracing(0.0)
    batch = later.delivering([envelope("other"), sent])
    assert batch is not None
    assert batch.envelopes == [sent]
    batch.stored()
    batch.woken()
    span = later.deliver_span(sent)
    assert span is not None
    span.end()
    later.acked([envelope("other"), sent], 0)
    spans = by_name(exporter.get_finished_spans() + later_spans.get_finished_spans())
    (produce,) = spans["tidings.router.produce"]
    trace_id = produce.context.trace_id
    assert {s.context.trace_id for ss in spans.values() for s in ss} == {trace_id}
    (consume,) = spans["tidings.delivery.consume"]
    assert consume.parent is not None
    assert consume.parent.span_id == produce.context.span_id
    for name in ("tidings.delivery.store", "tidings.delivery.wakeup"):
        (span_of,) = spans[name]
        assert span_of.parent is not None
        assert span_of.parent.span_id == consume.context.span_id
    for name in ("tidings.gateway.deliver", "tidings.gateway.ack"):
        (span_of,) = spans[name]
        assert span_of.parent is not None
        assert span_of.parent.span_id == produce.context.span_id


def test_a_malformed_trace_context_starts_a_fresh_trace_instead_of_failing() -> None:
    broken = replace(envelope("m1"), trace="not-a-traceparent")
    assert parent_of(broken) == {}  # no parent: the hop's span is a root
    tracer, exporter = tracing(1.0)
    span = tracer.deliver_span(broken)
    assert span is not None
    span.end()
    (finished,) = exporter.get_finished_spans()
    assert finished.parent is None


def test_tracing_settings_refuse_what_they_cannot_use() -> None:
    assert Settings().otlp_endpoint == ""  # no tracing unless asked for
    assert Settings().trace_sample_ratio == DEFAULT_SAMPLE_RATIO
    with pytest.raises(ValidationError, match="otlp_endpoint"):
        Settings(otlp_endpoint="otel-collector:4318")  # no scheme
    with pytest.raises(ValidationError, match="trace_sample_ratio"):
        Settings(trace_sample_ratio=1.5)
    assert Settings(otlp_endpoint="https://collector.example:4318").otlp_endpoint


def test_the_exporter_posts_to_the_traces_path_of_the_endpoint() -> None:
    for given in (
        "http://collector:4318",
        "http://collector:4318/",
        "http://collector:4318/v1/traces",
    ):
        exporter = otlp_exporter(given)
        assert getattr(exporter, "_endpoint", None) == "http://collector:4318/v1/traces"
        exporter.shutdown()
