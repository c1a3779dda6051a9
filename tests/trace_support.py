"""Collecting spans in tests: an OTLP/HTTP receiver on loopback for platform processes,
and waiting for a message's trace to be complete."""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.sdk.trace import ReadableSpan

HOPS = (
    "tidings.gateway.accept",
    "tidings.router.produce",
    "tidings.delivery.consume",
    "tidings.delivery.store",
    "tidings.delivery.wakeup",
    "tidings.gateway.deliver",
    "tidings.gateway.ack",
)
"""Every span a delivered and acked message's trace holds, in path order."""


@dataclass(frozen=True)
class Received:
    """One span as a process exported it over OTLP."""

    name: str
    trace_id: str
    span_id: str
    parent_id: str
    service: str
    pid: int
    attributes: dict[str, str]


class OtlpReceiver:
    """Spans the platform's OTLP/HTTP exporter posts to ``url`` (``/v1/traces``)."""

    def __init__(self) -> None:
        self.spans: list[Received] = []
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                if self.path != "/v1/traces":
                    self.send_response(404)
                    self.end_headers()
                    return
                request = ExportTraceServiceRequest()
                request.ParseFromString(body)
                receiver._take(request)
                reply = ExportTraceServiceResponse().SerializeToString()
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def _take(self, request: ExportTraceServiceRequest) -> None:
        found: list[Received] = []
        for resource_spans in request.resource_spans:
            resource = {a.key: a.value for a in resource_spans.resource.attributes}
            service = resource["service.name"].string_value
            pid = resource["process.pid"].int_value
            for scope in resource_spans.scope_spans:
                for span in scope.spans:
                    found.append(
                        Received(
                            span.name,
                            span.trace_id.hex(),
                            span.span_id.hex(),
                            span.parent_span_id.hex(),
                            service,
                            pid,
                            {
                                a.key: a.value.string_value or str(a.value.int_value)
                                for a in span.attributes
                            },
                        )
                    )
        with self._lock:
            self.spans += found

    def snapshot(self) -> list[Received]:
        with self._lock:
            return list(self.spans)


@contextlib.contextmanager
def otlp_receiver() -> Iterator[OtlpReceiver]:
    receiver = OtlpReceiver()
    thread = threading.Thread(target=receiver.server.serve_forever, daemon=True)
    thread.start()
    try:
        yield receiver
    finally:
        receiver.server.shutdown()
        receiver.server.server_close()
        thread.join(5)


def from_sdk(span: ReadableSpan) -> Received:
    """A span of the SDK's in-memory exporter, as the receiver would have it."""
    resource = span.resource.attributes
    return Received(
        span.name,
        f"{span.context.trace_id:032x}",
        f"{span.context.span_id:016x}",
        "" if span.parent is None else f"{span.parent.span_id:016x}",
        str(resource["service.name"]),
        int(str(resource["process.pid"])),
        {k: str(v) for k, v in (span.attributes or {}).items()},
    )


async def trace_of(
    spans: Callable[[], list[Received]], server_id: str, timeout: float = 15.0
) -> list[Received]:
    """The spans of the trace whose accept span names ``server_id``, once it holds every
    hop in ``HOPS`` (spans arrive in batches, from several processes)."""
    deadline = time.monotonic() + timeout
    while True:
        seen = spans()
        roots = [
            s
            for s in seen
            if s.name == HOPS[0] and s.attributes.get("tidings.server_id") == server_id
        ]
        if roots:
            in_trace = [s for s in seen if s.trace_id == roots[0].trace_id]
            if {s.name for s in in_trace} >= set(HOPS):
                return in_trace
        if time.monotonic() > deadline:
            got = sorted({s.name for s in seen})
            raise AssertionError(f"no complete trace of {server_id} in {timeout:.0f}s; {got}")
        await asyncio.sleep(0.1)


def check_parents(spans: list[Received]) -> dict[str, Received]:
    """The trace's spans by hop, each under the hop it follows (one span per hop: one
    recipient device); fails on a hop with the wrong parent."""
    by_name = {s.name: s for s in spans}
    assert len(by_name) == len(spans), [s.name for s in spans]
    parent_of = {
        "tidings.gateway.accept": None,
        "tidings.router.produce": "tidings.gateway.accept",
        "tidings.delivery.consume": "tidings.router.produce",
        "tidings.delivery.store": "tidings.delivery.consume",
        "tidings.delivery.wakeup": "tidings.delivery.consume",
        "tidings.gateway.deliver": "tidings.router.produce",
        "tidings.gateway.ack": "tidings.router.produce",
    }
    for name, parent in parent_of.items():
        expected = "" if parent is None else by_name[parent].span_id
        assert by_name[name].parent_id == expected, f"{name} is not under {parent}"
    return by_name
