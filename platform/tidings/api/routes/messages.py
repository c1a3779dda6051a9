"""/v1/messages: the REST send."""

from __future__ import annotations

from fastapi import APIRouter

from tidings.api.contract import errors
from tidings.api.deps import Me, Svc
from tidings.api.schemas import AcceptedOut, SendBody
from tidings.core import validation
from tidings.services.router import Outgoing

router = APIRouter(prefix="/v1", tags=["messages"])


def outgoing(body: SendBody) -> Outgoing:
    """The validated edge model as the router's input (ciphertexts must be base64)."""
    ciphertexts: dict[str, dict[int, tuple[int | None, str]]] = {}
    for user, entries in body.ciphertexts.items():
        for e in entries:
            validation.b64decode(e.body, what=f"ciphertext for {user}/{e.device}")
            ciphertexts.setdefault(user, {})[e.device] = (e.registration_id, e.body)
    if body.group_body is not None:
        validation.b64decode(body.group_body, what="group_body")
    return Outgoing(body.id, body.to.user, body.to.group, ciphertexts, body.group_body)


@router.post("/messages", responses=errors(403, 404, 409, 410, 429))
async def send(body: SendBody, me: Me, svc: Svc) -> AcceptedOut:
    """Accepted means durable: the envelope is on the bus and will be delivered."""
    accepted = await svc.router.send(me, outgoing(body))
    return AcceptedOut(
        server_id=accepted.server_id, timestamp=accepted.timestamp, duplicate=accepted.duplicate
    )
