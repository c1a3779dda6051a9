"""The one error the operator's Kafka and Cassandra shells raise.

``ExternalUnavailable(reason, detail)``: the external state could not be read or brought
in line this time. ``reason`` is CamelCase, for a condition (``KafkaUnavailable``,
``CassandraRejected``, ...); ``str(exc)`` is ``detail``: what failed, at which address,
and what to check. The driver's exception stays the ``__cause__``.

Every case is retried by the next reconcile; the reason tells a person whether waiting
helps (``*Unavailable``: the servers did not answer in time) or the spec or the cluster
needs a change first (``*Rejected``: the servers answered no).
"""

from __future__ import annotations

KAFKA_UNAVAILABLE = "KafkaUnavailable"
"""Kafka did not answer (connection refused, timeout, broker error)."""
KAFKA_REJECTED = "KafkaRejected"
"""Kafka answered no: a replication factor above the broker count, an invalid config."""
CASSANDRA_UNAVAILABLE = "CassandraUnavailable"
"""No Cassandra node answered, a request timed out, or the schema did not settle."""
CASSANDRA_REJECTED = "CassandraRejected"
"""Cassandra answered no: bad credentials, an unknown datacenter, missing permissions."""


class ExternalUnavailable(Exception):
    """Kafka or Cassandra could not be read or changed; ``reason`` says which and how."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail

    def __str__(self) -> str:
        return self.detail


__all__ = [
    "CASSANDRA_REJECTED",
    "CASSANDRA_UNAVAILABLE",
    "KAFKA_REJECTED",
    "KAFKA_UNAVAILABLE",
    "ExternalUnavailable",
]
