"""One message, one trace: every hop of the message path under the span of its accept.

In one process on each engine set (the SDK's in-memory exporter), and across real
``tidings serve`` processes on the distributed engines (two gateways and a delivery
worker, Kafka between them), exporting over OTLP/HTTP to a receiver in the test.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import procs
from harness import Device, ciphertexts, online, register, run_gateway, settle
from servers import as_settings, unique_region
from trace_support import HOPS, check_parents, from_sdk, otlp_receiver, trace_of

FAST_BATCHES = {"OTEL_BSP_SCHEDULE_DELAY": "50"}
"""Spans leave each process within 50 ms (the SDK's default waits 5 s)."""


async def send_and_ack(sender: Device, recipient: Device) -> str:
    """``sender`` sends one message, ``recipient`` (online) receives and acks it; the
    server id, once the ack is recorded."""
    receiving = await online(recipient)
    sending = await sender.connect()
    reply = await sending.request(
        "send",
        {
            "id": "traced-1",
            "to": {"user": recipient.user_id},
            "ciphertexts": ciphertexts({recipient.user_id: [1]}, "hello"),
        },
    )
    assert reply["status"] == 200, reply
    server_id: str = reply["body"]["server_id"]
    (delivery,) = await receiving.deliveries(1)
    assert delivery["server_id"] == server_id
    assert "trace" not in delivery  # the context never reaches the recipient
    await settle(receiving)  # the ack is recorded before the ping is answered
    await sending.close()
    await receiving.close()
    return server_id


@pytest.mark.parametrize("engine", ["embedded", "distributed"])
async def test_one_trace_holds_every_hop_of_a_message_in_one_process(
    engine: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest
) -> None:
    for name, value in FAST_BATCHES.items():
        monkeypatch.setenv(name, value)
    overrides: dict[str, str] = {}
    if engine == "distributed":
        overrides = as_settings(request.getfixturevalue("distributed_env"))
        overrides["region"] = unique_region()
    exporter = InMemorySpanExporter()
    async with run_gateway(
        tmp_path / "data", span_exporter=exporter, trace_sample_ratio=1.0, **overrides
    ) as gateway:
        alice, bob = await register(gateway), await register(gateway)
        server_id = await send_and_ack(alice, bob)
        spans = await trace_of(
            lambda: [from_sdk(s) for s in exporter.get_finished_spans()], server_id
        )
    hops = check_parents(spans)
    assert hops["tidings.gateway.deliver"].attributes["tidings.server_id"] == server_id


async def test_with_sampling_off_a_message_makes_no_span(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in FAST_BATCHES.items():
        monkeypatch.setenv(name, value)
    exporter = InMemorySpanExporter()
    async with run_gateway(
        tmp_path / "data", span_exporter=exporter, trace_sample_ratio=0.0
    ) as gateway:
        alice, bob = await register(gateway), await register(gateway)
        await send_and_ack(alice, bob)
    assert exporter.get_finished_spans() == ()


@pytest.mark.slow
async def test_one_trace_crosses_gateway_kafka_and_delivery_worker_processes(
    tmp_path: Path, distributed_env: dict[str, str]
) -> None:
    with otlp_receiver() as receiver:
        env = {
            **distributed_env,
            **FAST_BATCHES,
            "TIDINGS_REGION": unique_region(),
            "TIDINGS_OTLP_ENDPOINT": receiver.url,
            "TIDINGS_TRACE_SAMPLE_RATIO": "1",
        }
        data, log = tmp_path / "data", tmp_path / "tidings.log"
        running: list[procs.Proc] = []
        try:
            for service in ("gateway", "gateway", "delivery"):
                running.append(await procs.start(["serve", service], data, log, env))
            sender_gw, recipient_gw = (p.gateway(data) for p in running[:2])
            alice, bob = await register(sender_gw), await register(recipient_gw)
            server_id = await send_and_ack(alice, bob)
            spans = await trace_of(receiver.snapshot, server_id)
        finally:
            for proc in running:
                proc.kill()
                await proc.wait()
    hops = check_parents(spans)
    gw1, gw2, delivery = (p.process.pid for p in running)
    where = {name: (span.service, span.pid) for name, span in hops.items()}
    print("\n" + "\n".join(f"{name:28} {svc} pid {pid}" for name, (svc, pid) in where.items()))
    assert where["tidings.gateway.accept"] == ("tidings-gateway", gw1)
    assert where["tidings.router.produce"] == ("tidings-gateway", gw1)
    for hop in ("tidings.delivery.consume", "tidings.delivery.store", "tidings.delivery.wakeup"):
        assert where[hop] == ("tidings-delivery", delivery)
    assert where["tidings.gateway.deliver"] == ("tidings-gateway", gw2)
    assert where["tidings.gateway.ack"] == ("tidings-gateway", gw2)
    assert [h for h in HOPS if h not in hops] == []
