"""The HTTP edge: FastAPI routes, the WebSocket endpoint and their schemas."""
