"""Traces of the message path (OpenTelemetry): one trace per sampled send, across processes.

A sampled send gets a span at each hop it takes::

    tidings.gateway.accept            the send frame (or REST send) being accepted
      tidings.router.produce          its envelopes going to the bus
        tidings.delivery.consume      one envelope in a delivery worker's batch
          tidings.delivery.store        appended to the recipient's inbox
          tidings.delivery.wakeup       the recipient's gateway woken (or a push job)
        tidings.gateway.deliver       the envelope written to the recipient's socket
        tidings.gateway.ack           the recipient's ack recorded

The trace context crosses processes inside the envelope (``Envelope.trace``, a W3C
``traceparent``), beside the ciphertext and never in it; the recipient never sees it.

Sampling is decided once, at accept, before anything is made: an unsampled send costs
one random number, makes no span object and adds nothing to its envelopes, and every
later hop only checks ``envelope.trace is not None``. Later hops follow the envelope
(parent-based): an envelope that carries a trace is traced all the way.

Spans of the later hops are made when the hop is over, with the times it recorded, so the
services' code holds no open span and has no ``with`` block to keep.
"""

from __future__ import annotations

import asyncio
import os
import random
import socket
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import replace
from typing import Protocol

from opentelemetry import trace
from opentelemetry.context import Context as TraceContext
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor, SpanExporter
from opentelemetry.sdk.trace.sampling import ALWAYS_ON, ParentBased
from opentelemetry.trace import Span, SpanKind, Status, StatusCode, Tracer
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from tidings.core.envelopes import Envelope

INSTRUMENTATION = "tidings.message_path"

_PROPAGATOR = TraceContextTextMapPropagator()
_TRACEPARENT = "traceparent"


def traceparent(span: Span) -> str:
    """The W3C ``traceparent`` of ``span`` (what an envelope carries)."""
    carrier: dict[str, str] = {}
    _PROPAGATOR.inject(carrier, context=trace.set_span_in_context(span))
    return carrier[_TRACEPARENT]


def parent_of(envelope: Envelope) -> TraceContext:
    """The trace context an envelope carries (an empty one if it is malformed: the span
    then starts a trace of its own rather than failing the hop)."""
    return _PROPAGATOR.extract({_TRACEPARENT: envelope.trace or ""})


def otlp_exporter(endpoint: str) -> SpanExporter:
    """OTLP over HTTP (protobuf) to ``endpoint`` (a collector's base URL, e.g.
    ``http://otel-collector:4318``; ``/v1/traces`` is added unless given). Headers,
    timeout and TLS come from the standard ``OTEL_EXPORTER_OTLP_*`` variables."""
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    url = endpoint.rstrip("/")
    if not url.endswith("/v1/traces"):
        url += "/v1/traces"
    return OTLPSpanExporter(endpoint=url)


class Send(Protocol):
    """What sampling needs of a send (``services.router.Outgoing``)."""

    @property
    def client_id(self) -> str: ...


class Tracing:
    """The process's tracer and sampling ratio; ``Tracing.off()`` traces nothing.

    Nothing global: the provider is this object's own (not the OpenTelemetry global),
    so two platforms in one process (tests) keep their spans apart."""

    def __init__(
        self,
        tracer: Tracer | None,
        ratio: float,
        *,
        provider: TracerProvider | None = None,
        chance: Callable[[], float] = random.random,
    ) -> None:
        self.tracer, self.ratio = tracer, ratio if tracer is not None else 0.0
        self._provider, self._chance = provider, chance

    @classmethod
    def off(cls) -> Tracing:
        return cls(None, 0.0)

    @classmethod
    def exporting(
        cls,
        exporter: SpanExporter,
        ratio: float,
        *,
        service: str,
        attributes: dict[str, str] | None = None,
        batch: bool = True,
        chance: Callable[[], float] = random.random,
    ) -> Tracing:
        """Spans of sends sampled at ``ratio`` go to ``exporter`` (batched in a background
        thread unless ``batch`` is False; the ``OTEL_BSP_*`` variables tune the batches)."""
        resource = Resource.create(
            {
                "service.name": service,
                "service.namespace": "tidings",
                "service.instance.id": f"{socket.gethostname()}-{os.getpid()}",
                "process.pid": os.getpid(),
                **(attributes or {}),
            }
        )
        # Roots are sampled here (``sends``); a span with a parent follows it.
        provider = TracerProvider(resource=resource, sampler=ParentBased(ALWAYS_ON))
        processor = BatchSpanProcessor(exporter) if batch else SimpleSpanProcessor(exporter)
        provider.add_span_processor(processor)
        return cls(provider.get_tracer(INSTRUMENTATION), ratio, provider=provider, chance=chance)

    async def close(self) -> None:
        """Export what is buffered and stop (the exporter's HTTP call off the loop)."""
        if self._provider is not None:
            await asyncio.to_thread(self._provider.shutdown)

    # --- hooks of the message path (each returns None when there is nothing to trace) ---

    def sends(self, outs: Sequence[Send]) -> SendTrace | None:
        """The sends of one router batch that are sampled (one draw each), or None."""
        if self.tracer is None or self.ratio <= 0.0:
            return None
        chance, ratio = self._chance, self.ratio
        picked = [out.client_id for out in outs if chance() < ratio]
        return SendTrace(self.tracer, picked) if picked else None

    def delivering(self, envelopes: Iterable[Envelope]) -> DeliveryTrace | None:
        """A delivery worker's batch: the envelopes that carry a trace, or None."""
        if self.tracer is None:
            return None
        traced = [e for e in envelopes if e.trace is not None]
        return DeliveryTrace(self.tracer, traced) if traced else None

    def deliver_span(self, envelope: Envelope) -> Span | None:
        """The socket write of a traced envelope (end it when written), else None."""
        if self.tracer is None or envelope.trace is None:
            return None
        return self.tracer.start_span(
            "tidings.gateway.deliver",
            context=parent_of(envelope),
            kind=SpanKind.SERVER,
            attributes=_attributes(envelope),
        )

    def acked(self, envelopes: Iterable[Envelope], started_ns: int) -> None:
        """The acks of traced envelopes, recorded from ``started_ns`` until now."""
        if self.tracer is None:
            return
        now = time.time_ns()
        for envelope in envelopes:
            if envelope.trace is not None:
                span = self.tracer.start_span(
                    "tidings.gateway.ack",
                    context=parent_of(envelope),
                    kind=SpanKind.SERVER,
                    attributes=_attributes(envelope),
                    start_time=started_ns,
                )
                span.end(end_time=now)


class SendTrace:
    """The sampled sends of one router batch: an accept span each (from now until they
    are answered) and, while their envelopes go to the bus, a produce span under it."""

    def __init__(self, tracer: Tracer, client_ids: Sequence[str]) -> None:
        self.tracer = tracer
        self.accepts: dict[str, Span] = {
            client_id: tracer.start_span("tidings.gateway.accept", kind=SpanKind.SERVER)
            for client_id in client_ids
        }
        self.produces: dict[str, Span] = {}
        self._traceparents: dict[str, str] = {}

    def stamp(self, envelopes: Sequence[Envelope]) -> list[Envelope]:
        """``envelopes`` with the sampled sends' copies carrying their produce span's
        context (a send's produce span starts when its first copy is stamped)."""
        stamped: list[Envelope] = []
        copies: dict[str, int] = {}
        for envelope in envelopes:
            client_id = envelope.client_id or ""
            parent = self._traceparents.get(client_id)
            if parent is None:
                accept = self.accepts.get(client_id)
                if accept is None:
                    stamped.append(envelope)
                    continue
                span = self.tracer.start_span(
                    "tidings.router.produce",
                    context=trace.set_span_in_context(accept),
                    kind=SpanKind.PRODUCER,
                )
                self.produces[client_id] = span
                parent = self._traceparents[client_id] = traceparent(span)
            stamped.append(replace(envelope, trace=parent))
            copies[client_id] = copies.get(client_id, 0) + 1
        for client_id, count in copies.items():
            self.produces[client_id].set_attribute("tidings.envelopes", count)
        return stamped

    def produced(self, client_ids: Iterable[str] | None = None) -> None:
        """The bus took the envelopes (of these sends only, when given: the produce spans
        of the others stay open, and ``answered`` ends them with their error)."""
        wanted = None if client_ids is None else set(client_ids)
        for client_id, span in self.produces.items():
            if (wanted is None or client_id in wanted) and span.is_recording():
                span.end()

    def answered(self, outs: Sequence[Send], results: Sequence[object]) -> None:
        """End every span with the answer its send got (``Accepted`` or an error)."""
        outcome = dict(zip((out.client_id for out in outs), results, strict=False))
        for client_id, accept in self.accepts.items():
            result = outcome.get(client_id)
            error = result if isinstance(result, Exception) else None
            produce = self.produces.get(client_id)
            if produce is not None and produce.is_recording():
                _fail(produce, error or "not produced")
            server_id = getattr(result, "server_id", None)
            if server_id is not None:
                accept.set_attribute("tidings.server_id", server_id)
                accept.set_attribute("tidings.duplicate", bool(getattr(result, "duplicate", False)))
            if error is not None:
                _fail(accept, error)
            accept.end()


class DeliveryTrace:
    """A delivery worker's batch, as the traced envelopes in it see it: consumed now,
    stored at ``stored()``, recipients woken at ``woken()`` (when the spans are made)."""

    def __init__(self, tracer: Tracer, envelopes: list[Envelope]) -> None:
        self.tracer, self.envelopes = tracer, envelopes
        self.started = time.time_ns()
        self.stored_at: int | None = None

    def stored(self) -> None:
        self.stored_at = time.time_ns()

    def woken(self) -> None:
        now = time.time_ns()
        for envelope in self.envelopes:
            attributes = _attributes(envelope)
            consume = self.tracer.start_span(
                "tidings.delivery.consume",
                context=parent_of(envelope),
                kind=SpanKind.CONSUMER,
                attributes=attributes,
                start_time=self.started,
            )
            under = trace.set_span_in_context(consume)
            woken_from = self.started
            if self.stored_at is not None and not envelope.ephemeral:
                store = self.tracer.start_span(
                    "tidings.delivery.store", context=under, start_time=self.started
                )
                store.end(end_time=self.stored_at)
                woken_from = self.stored_at
            wake = self.tracer.start_span(
                "tidings.delivery.wakeup", context=under, start_time=woken_from
            )
            wake.end(end_time=now)
            consume.end(end_time=now)


def _attributes(envelope: Envelope) -> dict[str, str | int]:
    """What a span says about an envelope: ids the server already routes by, never
    content (the body stays ciphertext, and is not even measured here)."""
    return {
        "tidings.server_id": envelope.server_id,
        "tidings.kind": envelope.kind.value,
        "tidings.recipient_device": envelope.recipient_device,
        "tidings.epoch": envelope.epoch,
    }


def _fail(span: Span, error: object) -> None:
    text = getattr(error, "message", None) or str(error)
    code = getattr(error, "code", None)
    if code is not None:
        span.set_attribute("tidings.error", str(code))
    span.set_status(Status(StatusCode.ERROR, text))
    span.end()
