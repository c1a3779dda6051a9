"""The Tidings Kubernetes operator (kopf).

Three layers, as in Strimzi and controller-runtime operators:

- ``models`` — the pydantic models of the custom resources (``ChatRegion``,
  ``MessageShard``, ``PushPool``); ``crdgen`` turns them into the CRDs in ``crds/``.
- ``resources`` — pure builders: a resource's spec in, desired Kubernetes manifests,
  topic specs and keyspace DDL out, plus the decisions a reconcile takes (grow a topic,
  refuse a shrink). No API calls; unit-tested.
- ``status`` — conditions and phase computed from what the children report.

The kopf handlers and the appliers that talk to the cluster, Kafka and Cassandra build
on these.
"""
