"""The global gateway name: an ExternalDNS ``DNSEndpoint`` with a record per healthy
region (``spec.dns``), rebuilt by the failover loop from its verdicts each tick.

Each record carries its region as ``setIdentifier``, as ExternalDNS expects of records
that share a name under a routing policy (geolocation, latency, weight); the provider
then answers each client with the nearest region. A region is withdrawn while this
region judges it failed, and comes back once it is healthy again. An IP host gets an
``A`` (or ``AAAA``) record, a name a ``CNAME``.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Collection
from typing import Any
from urllib.parse import urlsplit

from tidings_operator.models import ChatRegion
from tidings_operator.resources.meta import labels, object_meta
from tidings_operator.resources.shards import region_gateways

DNS_ENDPOINT = "DNSEndpoint"
DNS_API_VERSION = "externaldns.k8s.io/v1alpha1"


def dns_endpoint_name(region: str) -> str:
    return f"{region}-gateway-dns"


def record_for(hostname: str, region: str, url: str, ttl: int) -> dict[str, Any] | None:
    """The record sending ``hostname`` to the gateway at ``url`` (None: no host)."""
    host = urlsplit(url).hostname
    if not host:
        return None
    try:
        kind = "A" if ipaddress.ip_address(host).version == 4 else "AAAA"
    except ValueError:
        kind = "CNAME"
    return {
        "dnsName": hostname,
        "recordType": kind,
        "targets": [host],
        "recordTTL": ttl,
        "setIdentifier": region,
        "labels": {"tidings.dev/region": region},
    }


def gateway_dns_endpoint(region: ChatRegion, healthy: Collection[str]) -> dict[str, Any] | None:
    """The DNSEndpoint for ``spec.dns`` with the records of the ``healthy`` regions that
    have a gateway URL, in name order (None when ``spec.dns`` is not set)."""
    dns = region.spec.dns
    if dns is None:
        return None
    gateways = region_gateways(region)
    records = [
        record
        for name in sorted(gateways)
        if name in healthy
        and (record := record_for(dns.hostname, name, gateways[name], dns.ttl_seconds))
    ]
    return {
        "apiVersion": DNS_API_VERSION,
        "kind": DNS_ENDPOINT,
        "metadata": object_meta(
            dns_endpoint_name(region.region), region, labels(region.region, "dns")
        ),
        "spec": {"endpoints": records},
    }
