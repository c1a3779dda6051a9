"""The sans-I/O WebSocket session: frame parsing and the in-flight window."""

from __future__ import annotations

import json

import pytest

from tidings.core import wsproto
from tidings.core.wsproto import Acked, FrameRejected, Nacked, Request, Session


@pytest.fixture
def session() -> Session:
    return Session(max_in_flight=2, max_frame_chars=200)


def test_valid_request(session: Session) -> None:
    event = session.receive('{"id":"r1","type":"send","body":{"to":"bob"}}')
    assert event == Request("r1", "send", {"to": "bob"})


def test_request_without_body_gets_empty_body(session: Session) -> None:
    assert session.receive('{"id":"r2","type":"ping"}') == Request("r2", "ping", {})


@pytest.mark.parametrize("kind", sorted(wsproto.CLIENT_REQUEST_TYPES))
def test_every_client_request_type_is_accepted(session: Session, kind: str) -> None:
    assert session.receive(json.dumps({"id": "x", "type": kind})) == Request("x", kind, {})


@pytest.mark.parametrize(
    ("text", "status", "request_id", "needle"),
    [
        ("not json", 400, None, "not valid JSON"),
        ("", 400, None, "not valid JSON"),
        ('["id", "r1"]', 400, None, "JSON object"),
        ('"r1"', 400, None, "JSON object"),
        ("null", 400, None, "JSON object"),
        ('{"type":"ping"}', 400, None, "'id' string"),
        ('{"id":"","type":"ping"}', 400, None, "'id' string"),
        ('{"id":7,"type":"ping"}', 400, None, "'id' string"),
        (json.dumps({"id": "x" * 65, "type": "ping"}), 400, None, "'id' string"),
        (
            '{"id":"r1","type":"ping","extra":1,"more":2}',
            400,
            "r1",
            "unknown frame fields: extra, more",
        ),
        ('{"id":"r1","type":"explode"}', 400, "r1", "unknown frame type 'explode'"),
        ('{"id":"r1"}', 400, "r1", "unknown frame type None"),
        ('{"id":"r1","type":"deliver"}', 400, "r1", "unknown frame type"),
        ('{"id":"r1","type":"send","body":[1]}', 400, "r1", "'body' must be a JSON object"),
        ('{"id":"r1","type":"send","body":null}', 400, "r1", "'body' must be a JSON object"),
        ('{"id":"r1","type":"response"}', 400, "r1", "integer 'status'"),
        ('{"id":"r1","type":"response","status":true}', 400, "r1", "integer 'status'"),
        ('{"id":"r1","type":"response","status":"200"}', 400, "r1", "integer 'status'"),
    ],
)
def test_malformed_frames_are_rejected(
    session: Session, text: str, status: int, request_id: str | None, needle: str
) -> None:
    event = session.receive(text)
    assert isinstance(event, FrameRejected)
    assert event.status == status
    assert event.id == request_id
    assert needle in event.message


def test_max_length_id_is_accepted(session: Session) -> None:
    rid = "x" * wsproto.MAX_REQUEST_ID_CHARS
    assert session.receive(json.dumps({"id": rid, "type": "ping"})) == Request(rid, "ping", {})


def test_oversized_frame_is_rejected_with_413(session: Session) -> None:
    text = json.dumps({"id": "r1", "type": "send", "body": {"pad": "x" * 300}})
    event = session.receive(text)
    assert event == FrameRejected(None, 413, f"frame is {len(text)} characters; at most 200")


def test_frame_of_exactly_max_chars_is_parsed() -> None:
    session = Session(max_in_flight=1, max_frame_chars=40)
    text = '{"id":"r1","type":"ping"}'
    text = text[:-1] + " " * (40 - len(text)) + "}"
    assert len(text) == 40
    assert session.receive(text) == Request("r1", "ping", {})


def test_deliver_frames_and_window_accounting(session: Session) -> None:
    assert session.room == 2
    first = json.loads(session.deliver("sid-a", {"server_id": "sid-a"}))
    assert first == {"id": "s1", "type": "deliver", "body": {"server_id": "sid-a"}}
    assert session.room == 1
    second = json.loads(session.deliver("sid-b", {}))
    assert second["id"] == "s2"
    assert session.room == 0
    assert session.in_flight == {"s1": "sid-a", "s2": "sid-b"}

    assert session.receive('{"id":"s1","type":"response","status":200}') == Acked("sid-a")
    assert session.room == 1
    assert session.in_flight == {"s2": "sid-b"}


def test_ack_of_unknown_or_repeated_id_is_404(session: Session) -> None:
    session.deliver("sid-a", {})
    event = session.receive('{"id":"s9","type":"response","status":200}')
    assert isinstance(event, FrameRejected)
    assert (event.id, event.status) == ("s9", 404)
    assert session.room == 1
    assert session.receive('{"id":"s1","type":"response","status":200}') == Acked("sid-a")
    again = session.receive('{"id":"s1","type":"response","status":200}')
    assert isinstance(again, FrameRejected)
    assert again.status == 404


@pytest.mark.parametrize(
    ("status", "acked"), [(200, True), (299, True), (300, False), (500, False)]
)
def test_status_at_or_above_300_is_a_nack(session: Session, status: int, acked: bool) -> None:
    session.deliver("sid-a", {})
    event = session.receive(json.dumps({"id": "s1", "type": "response", "status": status}))
    assert event == (Acked("sid-a") if acked else Nacked("sid-a"))
    assert session.room == 2  # a nack frees the slot too


def test_response_encoder() -> None:
    assert json.loads(wsproto.response("r1", 200)) == {
        "id": "r1",
        "type": "response",
        "status": 200,
    }
    assert json.loads(wsproto.response(None, 201, {"ok": True})) == {
        "id": None,
        "type": "response",
        "status": 201,
        "body": {"ok": True},
    }


def test_error_encoder() -> None:
    frame = json.loads(wsproto.error("r1", 409, "conflict", "nope"))
    assert frame == {
        "id": "r1",
        "type": "response",
        "status": 409,
        "body": {"error": {"code": "conflict", "message": "nope", "details": {}}},
    }
    detailed = json.loads(wsproto.error("r2", 429, "rate_limited", "slow", retry_after=1.5))
    assert detailed["body"]["error"]["details"] == {"retry_after": 1.5}


def test_event_encoder() -> None:
    assert json.loads(wsproto.event("queue-empty")) == {"type": "queue-empty"}
    assert json.loads(wsproto.event("typing", {"user": "bob"})) == {
        "type": "typing",
        "body": {"user": "bob"},
    }
