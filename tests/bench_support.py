"""Running a ``bench/`` script from a test: once, small, its JSON result back."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parents[1] / "bench"


async def run_bench(script: str, *args: str, timeout: float = 100.0) -> dict[str, Any]:
    """Run ``bench/<script>`` with ``args`` (``--json`` among them) and return its JSON
    object; fails with the script's own output when it exits non-zero."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        str(BENCH / script),
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(), timeout)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise
    assert proc.returncode == 0, (
        f"{script}: exit {proc.returncode}\n{out.decode()[-3000:]}{err.decode()[-3000:]}"
    )
    result: dict[str, Any] = json.loads(out)
    return result
