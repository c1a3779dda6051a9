"""A throwaway OTLP/HTTP sink for benchmarks: answers every ``POST /v1/traces`` with 200
and counts requests and bytes, so the platform's span export costs what it would with a
collector (serialising, the HTTP round trip) while nothing is stored.

    .venv/bin/python bench/otlp_sink.py          # prints "otlp sink http://127.0.0.1:PORT"

On SIGTERM or SIGINT it prints ``requests N bytes M`` and exits. Run by
``message_path.py --trace-ratio``; usable on its own with ``TIDINGS_OTLP_ENDPOINT``.
"""

from __future__ import annotations

import signal
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import FrameType

EMPTY_EXPORT_RESPONSE = b""
"""An ``ExportTraceServiceResponse`` with no partial failure encodes to no bytes."""


class Counts:
    requests = 0
    bytes = 0
    lock = threading.Lock()


class Sink(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length", "0"))
        self.rfile.read(length)
        with Counts.lock:
            Counts.requests += 1
            Counts.bytes += length
        self.send_response(200 if self.path == "/v1/traces" else 404)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", str(len(EMPTY_EXPORT_RESPONSE)))
        self.end_headers()
        self.wfile.write(EMPTY_EXPORT_RESPONSE)

    def log_message(self, format: str, *args: object) -> None:
        pass


def main() -> int:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Sink)

    def stop(_signal: int, _frame: FrameType | None) -> None:
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    print(f"otlp sink http://127.0.0.1:{server.server_address[1]}", flush=True)
    server.serve_forever()
    print(f"requests {Counts.requests} bytes {Counts.bytes}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
