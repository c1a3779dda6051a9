"""/v1/ws: the device WebSocket. Frames are documented in the README."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Any

from fastapi import APIRouter, FastAPI, WebSocket, WebSocketDisconnect
from pydantic import ValidationError
from starlette.types import Receive, Scope, Send

from tidings.api.deps import bearer_token
from tidings.api.errors import INVALID_UNICODE, validation_error_frame_parts
from tidings.api.routes.messages import outgoing
from tidings.api.schemas import PresenceBody, ReceiptBody, SendBody, TypingBody
from tidings.core import wsproto
from tidings.core.envelopes import ReceiptKind
from tidings.errors import RateLimited, TidingsError
from tidings.services.frame_limits import FrameBudgets
from tidings.services.gateway import Disconnected, SocketSession, Transport
from tidings.services.registry import Services
from tidings.services.router import Accepted, Outgoing

log = logging.getLogger("tidings.ws")
router = APIRouter()
WS_PATH = "/v1/ws"


class StarletteTransport:
    def __init__(self, websocket: WebSocket) -> None:
        self.ws = websocket

    async def receive_text(self) -> str:
        try:
            message = await self.ws.receive()
        except (WebSocketDisconnect, RuntimeError) as exc:
            raise Disconnected() from exc
        if message["type"] == "websocket.disconnect":
            code = message.get("code")
            if code == 1011:  # uvicorn's keepalive: no pong within ws_ping_timeout
                log.warning(
                    "socket closed by the keepalive (1011, %s): the client stopped answering "
                    "pings, or this gateway was too busy to read them; its messages stay "
                    "queued for its next connection",
                    message.get("reason") or "ping timeout",
                )
            raise Disconnected()
        if message.get("text") is not None:
            return str(message["text"])
        # Binary frames are not part of the protocol: answer like any malformed frame.
        return "\x00binary"

    async def send_text(self, text: str) -> None:
        try:
            await self.ws.send_text(text)
        except (WebSocketDisconnect, RuntimeError) as exc:
            raise Disconnected() from exc

    async def close(self, code: int, reason: str) -> None:
        await self.ws.close(code=code, reason=reason)


class FrameHandler:
    """Answers client requests on one socket by calling the services; the sends among a
    batch of requests go to the router together."""

    def __init__(self, svc: Services, budgets: FrameBudgets) -> None:
        self.svc, self.budgets = svc, budgets

    async def __call__(self, requests: list[wsproto.Request], session: SocketSession) -> list[str]:
        answers: list[str | None] = [None] * len(requests)
        sends: list[tuple[int, Outgoing]] = []
        # Budgets first: a frame past its socket's budget costs no validation or store work.
        refused = await self.budgets.over_budget(requests)
        sends_refused = self.budgets.empty("send", sum(r.type == "send" for r in requests))
        for index, request in enumerate(requests):
            if index in refused:
                answers[index] = self._refused(request, session, refused[index])
            elif request.type == "send" and sends_refused is not None:
                answers[index] = self._refused(request, session, sends_refused)
            elif request.type == "send":
                try:
                    sends.append((index, outgoing(SendBody.model_validate(request.body))))
                except (ValidationError, TidingsError, UnicodeError) as exc:
                    answers[index] = self._refused(request, session, exc)
            else:
                answers[index] = await self._answer(request, session)
        if sends:
            try:
                results: list[Accepted | TidingsError] = await self.svc.router.send_many(
                    session.principal, [out for _, out in sends]
                )
            except TidingsError as exc:
                results = [exc] * len(sends)
            for result in results:
                if isinstance(result, RateLimited):
                    self.budgets.note("send", result)
                    break
            for (index, _), result in zip(sends, results, strict=True):
                request = requests[index]
                if isinstance(result, TidingsError):
                    answers[index] = self._refused(request, session, result)
                else:
                    answers[index] = wsproto.response(
                        request.id,
                        200,
                        {
                            "server_id": result.server_id,
                            "timestamp": result.timestamp,
                            "duplicate": result.duplicate,
                        },
                    )
        return [a for a in answers if a is not None]

    async def _answer(self, request: wsproto.Request, session: SocketSession) -> str:
        try:
            body = await self._dispatch(request, session)
        except (ValidationError, TidingsError, UnicodeError) as exc:
            return self._refused(request, session, exc)
        return wsproto.response(request.id, 200, body)

    @staticmethod
    def _refused(request: wsproto.Request, session: SocketSession, exc: Exception) -> str:
        metrics = session.ctx.metrics
        if isinstance(exc, RateLimited):
            session.pacer.refused(asyncio.get_running_loop().time())
        if isinstance(exc, ValidationError):
            status, message, fields = validation_error_frame_parts(exc)
            metrics.ws_frames_rejected.labels(str(status)).inc()
            return wsproto.error(request.id, status, "invalid_input", message, errors=fields)
        if isinstance(exc, TidingsError):
            metrics.ws_frames_rejected.labels(str(exc.status)).inc()
            return wsproto.error(request.id, exc.status, exc.code, exc.message, **exc.details)
        metrics.ws_frames_rejected.labels("400").inc()
        return wsproto.error(request.id, 400, *INVALID_UNICODE)

    async def _dispatch(self, request: wsproto.Request, session: SocketSession) -> dict[str, Any]:
        me, svc = session.principal, self.svc
        if request.type == "ping":
            await session.heartbeat()
            return {"time": session.ctx.now_ms()}
        if request.type == "typing":
            typing = TypingBody.model_validate(request.body)
            await svc.router.typing(me, typing.to.user, typing.to.group, typing.state)
            return {}
        if request.type == "receipt":
            receipt = ReceiptBody.model_validate(request.body)
            server_id, dropped = await svc.router.receipt(
                me, ReceiptKind(receipt.kind), receipt.to, receipt.message_ids
            )
            return {"server_id": server_id, "dropped": dropped}
        if request.type == "presence.subscribe":
            users = PresenceBody.model_validate(request.body).users
            return {"presence": await session.following.subscribe(users)}
        if request.type == "presence.unsubscribe":
            session.following.unsubscribe(PresenceBody.model_validate(request.body).users)
            return {}
        raise AssertionError(f"unhandled request type {request.type}")  # wsproto allows no other


class SocketFirstApp(FastAPI):
    """The client app, handing ``/v1/ws`` straight to the endpoint.

    A socket lives for hours; every layer between uvicorn and the endpoint (FastAPI's
    and Starlette's middleware, the router, the dependency scopes) keeps its coroutine
    frame alive that long, about 2 KiB per idle socket, for nothing a WebSocket uses.
    So the socket path is taken before any of them. The route stays declared on
    ``router`` (the OpenAPI document and apps without this class use it).
    """

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "websocket" and scope["path"] == WS_PATH:
            scope["app"] = self  # what Starlette sets; the endpoint reads app.state
            await websocket(WebSocket(scope, receive, send))
            return
        await super().__call__(scope, receive, send)


@router.websocket(WS_PATH)
async def websocket(ws: WebSocket) -> None:
    """The ASGI form of the socket (uvicorn runs ``ws_protocol.DirectWebSocket``)."""
    await ws.accept()
    token = ws.query_params.get("token")
    header = ws.headers.get("authorization")
    await serve_socket(ws.app.state, StarletteTransport(ws), lambda: token or bearer_token(header))


async def serve_socket(state: Any, transport: Transport, credentials: Callable[[], str]) -> None:
    """Authenticate the accepted socket's device, then serve it until it ends.
    ``state`` is the app's (services, connect gate, poll interval)."""
    svc: Services = state.services
    gate: asyncio.Semaphore = state.connect_gate
    try:
        async with gate:
            me = await svc.auth.authenticate(credentials())
    except TidingsError as exc:
        code = wsproto.CLOSE_TRY_AGAIN_LATER if exc.retryable else wsproto.CLOSE_UNAUTHORIZED
        await transport.close(code, exc.message[:120])
        return
    session = SocketSession(
        svc.ctx,
        svc.router,
        svc.users,
        me,
        transport,
        FrameHandler(svc, FrameBudgets(svc.ctx, me)),
        poll_interval=state.inbox_poll_interval,
    )
    try:
        await session.run(gate)
    except TidingsError as exc:
        if not exc.retryable:
            raise
        log.warning("socket of %s/%s refused: %s", me.user_id, me.device_id, exc.message)
        with contextlib.suppress(Exception):
            await transport.close(wsproto.CLOSE_TRY_AGAIN_LATER, exc.message[:120])
