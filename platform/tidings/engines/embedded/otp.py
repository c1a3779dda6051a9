"""Development OTP sender: logs the code and appends it to an outbox file.

Only for ``dev_mode``; production wires an SMS gateway behind the same port.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

log = logging.getLogger("tidings.otp")


class LoggingOtpSender:
    def __init__(self, outbox: Path) -> None:
        self.outbox = outbox

    async def send(self, phone: str, code: str) -> None:
        log.warning("dev mode: one-time code for %s is %s", phone, code)
        self.outbox.parent.mkdir(parents=True, exist_ok=True)
        with self.outbox.open("a") as out:
            out.write(json.dumps({"phone": phone, "code": code, "at": time.time()}) + "\n")


def latest_code(outbox: Path, phone: str) -> str | None:
    """The newest code logged for ``phone`` (used by the CLI and tests in dev mode)."""
    if not outbox.exists():
        return None
    code = None
    for line in outbox.read_text().splitlines():
        entry = json.loads(line)
        if entry["phone"] == phone:
            code = str(entry["code"])
    return code
