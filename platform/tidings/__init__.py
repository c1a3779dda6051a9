"""Tidings: an end-to-end encrypted messaging platform.

The servers only ever handle ciphertext. Layers, innermost first:

- ``tidings.core``: pure domain logic (envelopes, fan-out, shard map, limits, the
  WebSocket session state machine). No I/O.
- ``tidings.ports``: the interfaces services depend on.
- ``tidings.engines``: implementations of the ports (embedded, and real servers).
- ``tidings.services``: small classes wiring core logic to ports.
- ``tidings.api``: the FastAPI app (REST + WebSocket).
- ``tidings.bootstrap``: the one place that builds engines and services.
"""

__version__ = "0.2.0"
