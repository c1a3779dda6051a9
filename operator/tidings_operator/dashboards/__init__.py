"""Grafana dashboards as code, built with the Grafana Foundation SDK
(``grafana-foundation-sdk``, a development dependency: nothing here runs in the operator).

``python -m tidings_operator.dashboards`` writes ``charts/tidings/files/dashboards/``;
``--check`` writes nothing and exits 1 when a committed file differs from what the code
builds (a unit test runs the same comparison). The chart ships each file as a ConfigMap
labelled for Grafana's dashboard sidecar (``monitoring.dashboards``).
"""
