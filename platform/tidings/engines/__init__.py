"""Implementations of the ports: ``embedded`` (one process) and real servers."""
