"""``python -m tidings.probe PATH``: a pod's probe of its own process, on the operations
port that process wrote to its data directory (``TIDINGS_REUSE_PORT``; see
``tidings.server``). Exits 0 on a 200 answer to ``GET PATH``, 1 otherwise.

An HTTP probe of the kubelet cannot do this: pods sharing a node's network and a client
port differ only in their operations port, which the pod template cannot name. The
standard library only, so that the probe starts in a few tens of milliseconds."""

from __future__ import annotations

import http.client
import os
import sys
from pathlib import Path

OPS_PORT_FILE = "ops-port"
"""In the data directory: the operations port of a ``reuse_port`` process (written by
``tidings.server``)."""
TIMEOUT_S = 3.0
LOOPBACK = {"": "127.0.0.1", "0.0.0.0": "127.0.0.1", "::": "::1"}
"""The address to reach a process listening on every address at."""


def target(environ: dict[str, str]) -> tuple[str, int]:
    """Host and operations port of the process, as its settings and its file say."""
    data_dir = Path(environ.get("TIDINGS_DATA_DIR", ".tidings-data"))
    port = int((data_dir / OPS_PORT_FILE).read_text().strip())
    host = environ.get("TIDINGS_HOST", "127.0.0.1")
    return LOOPBACK.get(host, host), port


def probe(path: str, environ: dict[str, str]) -> str | None:
    """None when the process answered 200; what went wrong otherwise."""
    try:
        host, port = target(environ)
    except (OSError, ValueError) as exc:
        return f"no operations port written yet: {exc}"
    connection = http.client.HTTPConnection(host, port, timeout=TIMEOUT_S)
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        body = response.read(512).decode(errors="replace")
    except OSError as exc:
        return f"{host}:{port}{path}: {exc}"
    finally:
        connection.close()
    return None if response.status == 200 else f"{path}: {response.status} {body}"


def main(argv: list[str]) -> int:
    if len(argv) != 1 or not argv[0].startswith("/"):
        print("usage: python -m tidings.probe /healthz|/readyz", file=sys.stderr)
        return 2
    problem = probe(argv[0], dict(os.environ))
    if problem is None:
        return 0
    print(problem, file=sys.stderr)  # the kubelet shows it in the pod's events
    return 1


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
