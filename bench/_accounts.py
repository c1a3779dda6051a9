"""Fresh accounts for the benchmark: a one-time code asked over HTTP, read back from the
dev-mode outbox, then ``/v1/auth/register``."""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import httpx
from _client import RETRY_STATUSES, Account, BenchError, bounded, loads

REGISTER_ATTEMPTS = 8
CODE_ATTEMPTS = 3
"""Codes requested per number at most (the per-number burst of code requests is 3)."""


class CodeRefused(Exception):
    """``/v1/auth/register`` refused the one-time code just read from the outbox."""

    def __init__(self, text: str) -> None:
        super().__init__(text)
        self.text = text


class Outbox:
    """Dev-mode one-time codes from the server's ``otp-outbox.jsonl`` (one JSON object a
    line: ``{"phone", "code", "at"}``), read incrementally: only whole lines are taken, a
    line still being written waits for the next read. Reads are synchronous and short
    (no ``await`` inside), so concurrent registrations never race on the offset."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._offset = 0
        self._codes: dict[str, str] = {}

    def _scan(self) -> None:
        try:
            with self.path.open("rb") as f:
                f.seek(self._offset)
                chunk = f.read()
        except FileNotFoundError:
            return
        end = chunk.rfind(b"\n") + 1
        for line in chunk[:end].splitlines():
            with contextlib.suppress(ValueError, KeyError, TypeError):
                entry = loads(line)
                self._codes[str(entry["phone"])] = str(entry["code"])
        self._offset += end

    async def code(self, phone: str, timeout: float = 15.0) -> str:
        deadline = time.monotonic() + timeout
        while True:
            found = self._codes.pop(phone, None)
            if found is not None:
                return found
            self._scan()
            found = self._codes.pop(phone, None)
            if found is not None:
                return found
            if time.monotonic() > deadline:
                raise BenchError(f"no one-time code for {phone} in {self.path} (dev mode?)")
            await asyncio.sleep(0.02)


async def _post(http: httpx.AsyncClient, path: str, body: dict[str, Any]) -> dict[str, Any]:
    """POST with retries on 429/503 and transport errors; raises ``CodeRefused`` when
    ``/v1/auth/register`` answers 401, ``BenchError`` when it gives up."""
    for attempt in range(REGISTER_ATTEMPTS):
        try:
            r = await http.post(path, json=body)
        except httpx.HTTPError as exc:
            if attempt + 1 == REGISTER_ATTEMPTS:
                raise BenchError(f"POST {path}: {exc!r}") from exc
        else:
            if r.status_code < 300:
                answer: dict[str, Any] = r.json()
                return answer
            if r.status_code == 401 and path == "/v1/auth/register":
                raise CodeRefused(f"{r.status_code} {r.text}")
            if r.status_code not in RETRY_STATUSES or attempt + 1 == REGISTER_ATTEMPTS:
                raise BenchError(f"POST {path} {body.get('phone')}: {r.status_code} {r.text}")
        await asyncio.sleep(min(5.0, 0.25 * 2**attempt))
    raise AssertionError("unreachable")


async def register(
    http: httpx.AsyncClient,
    outbox: Outbox,
    phones: Sequence[str],
    concurrency: int,
    timeout: float,
    refusals: Counter[str],
) -> list[Account]:
    """An account per phone, ``concurrency`` registrations at a time, all within
    ``timeout``. A code the server refuses is counted in ``refusals`` and a new one asked."""
    accounts: dict[str, Account] = {}

    async def one(phone: str) -> None:
        for attempt in range(CODE_ATTEMPTS):
            await _post(http, "/v1/auth/code", {"phone": phone})
            code = await outbox.code(phone)
            body = {
                "phone": phone,
                "code": code,
                "registration_id": secrets.randbelow(16380) + 1,
            }
            try:
                tokens = await _post(http, "/v1/auth/register", body)
            except CodeRefused as exc:  # a fresh code, within the per-number burst of 3
                refusals[exc.text] += 1
                if attempt + 1 == CODE_ATTEMPTS:
                    raise BenchError(
                        f"POST /v1/auth/register {phone}: {exc.text} ({CODE_ATTEMPTS} codes)"
                    ) from None
                continue
            accounts[phone] = Account(phone, str(tokens["user_id"]), str(tokens["access_token"]))
            return

    try:
        await asyncio.wait_for(bounded(phones, concurrency, one), timeout)
    except TimeoutError:
        raise BenchError(
            f"registered only {len(accounts)} of {len(phones)} accounts in {timeout:.0f}s"
        ) from None
    return [accounts[p] for p in phones]
