"""Embedded engines: everything in one process, durable where it matters (SQLite WAL)."""
