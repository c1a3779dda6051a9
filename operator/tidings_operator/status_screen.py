"""``kubectl tidings status``'s screen: one block per region, from the objects as the API
server returns them and, when a Prometheus is given, what it says about sockets and
alerts. Pure: the plugin fetches, this module only formats (the clock is passed in).

    us-east   Ready   components 7/7   gateway us-east-gateway.ns.svc:443
      peers     eu-west Healthy for 3h
      shards    owns 3 (2 home, 1 taken over); home shards elsewhere: us-east-1 on eu-west
      lag       delivery 12, push 0
      sockets   1204
      alerts    TidingsDeliveryLagGrowing critical firing for 4m: delivery lag ...
      SHARD       HOME      OWNER     EPOCH   PHASE     LAG
      ...
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

Manifest = Mapping[str, Any]

INDENT = "  "


@dataclass(frozen=True)
class Alert:
    """One alert Prometheus holds (pending or firing)."""

    name: str
    state: str
    severity: str = ""
    region: str = ""
    summary: str = ""
    active_at: datetime | None = None


@dataclass(frozen=True)
class PrometheusView:
    """What Prometheus said: open sockets per region and the active alerts; ``error``
    when it did not answer (the screen says so instead of showing nothing)."""

    url: str
    sockets: Mapping[str, float] = field(default_factory=dict)
    alerts: Sequence[Alert] = ()
    error: str = ""


def ago(since: datetime | None, now: datetime) -> str:
    """``for 4m``-style age of a state (``""`` when unknown)."""
    if since is None:
        return ""
    seconds = max(0, int((now - since).total_seconds()))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"for {seconds // size}{unit}"
    return f"for {seconds}s"


def parse_time(text: str | None) -> datetime | None:
    """An RFC 3339 time as Kubernetes and Prometheus write it (``Z`` or an offset,
    Prometheus with nanoseconds), or None."""
    if not text:
        return None
    text = text.replace("Z", "+00:00")
    if "." in text:  # Python reads at most microseconds
        head, _, rest = text.partition(".")
        digits = rest[: len(rest) - len(rest.lstrip("0123456789"))]
        text = f"{head}.{digits[:6]}{rest[len(digits) :]}"
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        return None


def table(rows: Sequence[Sequence[str]]) -> list[str]:
    """Left-aligned columns, three spaces apart, no trailing blanks."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return [
        "   ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in rows
    ]


def _name(obj: Manifest) -> str:
    return str(obj["metadata"]["name"])


def _ready_condition(region: Manifest) -> Mapping[str, Any]:
    for condition in (region.get("status") or {}).get("conditions") or []:
        if condition.get("type") == "Ready":
            return dict(condition)
    return {}


def health_line(region: Manifest) -> str:
    """Name, phase, components ready and where clients connect; the Ready condition's
    reason and message when the region is not Ready."""
    status = region.get("status") or {}
    phase = str(status.get("phase") or "Unknown")
    parts = [_name(region), phase]
    if status.get("componentsReady"):
        parts.append(f"components {status['componentsReady']}")
    if status.get("gatewayEndpoint"):
        parts.append(f"gateway {status['gatewayEndpoint']}")
    line = "   ".join(parts)
    ready = _ready_condition(region)
    if phase != "Ready" and ready.get("status") != "True" and ready.get("reason"):
        line += f"\n{INDENT}why       {ready['reason']}: {ready.get('message', '')}".rstrip(": ")
    return line


def peers_line(region: Manifest, now: datetime) -> str:
    peers = ((region.get("status") or {}).get("failover") or {}).get("peers") or []
    if not peers:
        named = [p.get("name", "") for p in (region.get("spec") or {}).get("peers") or []]
        return ", ".join(f"{name} not judged yet" for name in named) or "none"
    return ", ".join(
        " ".join(
            part
            for part in (
                str(peer.get("name", "")),
                str(peer.get("health", "Unknown")),
                ago(parse_time(peer.get("since")), now),
            )
            if part
        )
        for peer in sorted(peers, key=lambda p: str(p.get("name", "")))
    )


def _home(shard: Manifest) -> str:
    return str((shard.get("spec") or {}).get("region", ""))


def _owner(shard: Manifest) -> str:
    return str((shard.get("spec") or {}).get("owner", ""))


def _lag(obj: Manifest) -> int:
    return int((obj.get("status") or {}).get("consumerLag") or 0)


def shards_line(region: str, shards: Sequence[Manifest]) -> str:
    owned = [s for s in shards if _owner(s) == region]
    home = sum(1 for s in owned if _home(s) == region)
    line = f"owns {len(owned)} ({home} home, {len(owned) - home} taken over)"
    away = sorted((s for s in shards if _home(s) == region and _owner(s) != region), key=_name)
    if away:
        line += "; home shards elsewhere: " + ", ".join(f"{_name(s)} on {_owner(s)}" for s in away)
    return line


def lag_line(region: str, shards: Sequence[Manifest], pools: Sequence[Manifest]) -> str:
    """Delivery lag of the shards the region serves now, push lag of its pools."""
    delivery = sum(_lag(s) for s in shards if _owner(s) == region)
    mine = sorted((p for p in pools if (p.get("spec") or {}).get("region") == region), key=_name)
    line = f"delivery {delivery}, push {sum(_lag(p) for p in mine)}"
    if len(mine) > 1:
        line += " (" + ", ".join(f"{_name(p)} {_lag(p)}" for p in mine) + ")"
    return line


def _alert_text(alert: Alert, now: datetime) -> str:
    parts = [alert.name, alert.severity, alert.state, ago(alert.active_at, now)]
    text = " ".join(p for p in parts if p)
    return f"{text}: {alert.summary}" if alert.summary else text


def alert_lines(alerts: Sequence[Alert], now: datetime) -> list[str]:
    """Firing alerts first, then pending; by name."""
    order = sorted(alerts, key=lambda a: (a.state != "firing", a.name, a.region))
    return [_alert_text(alert, now) for alert in order]


def shard_rows(region: str, shards: Sequence[Manifest]) -> list[str]:
    """The shards the region is home to or serves: home, owner, epoch, phase, lag."""
    mine = sorted((s for s in shards if region in (_home(s), _owner(s))), key=_name)
    if not mine:
        return []
    rows = [("SHARD", "HOME", "OWNER", "EPOCH", "PHASE", "LAG")]
    for shard in mine:
        spec, status = shard.get("spec") or {}, shard.get("status") or {}
        rows.append(
            (
                _name(shard),
                _home(shard),
                _owner(shard),
                str(spec.get("epoch", "")),
                str(status.get("phase") or "-"),
                str(_lag(shard)),
            )
        )
    return table(rows)


def _labelled(key: str, values: Sequence[str]) -> list[str]:
    first, *rest = values or ["none"]
    return [f"{INDENT}{key:<9} {first}", *(f"{INDENT}{'':<9} {line}" for line in rest)]


def region_block(
    region: Manifest,
    shards: Sequence[Manifest],
    pools: Sequence[Manifest],
    prometheus: PrometheusView | None,
    now: datetime,
) -> list[str]:
    name = _name(region)
    lines = [health_line(region)]
    lines += _labelled("peers", [peers_line(region, now)])
    lines += _labelled("shards", [shards_line(name, shards)])
    lines += _labelled("lag", [lag_line(name, shards, pools)])
    if prometheus is None:
        lines += _labelled("sockets", ["- (give --prometheus URL)"])
    elif prometheus.error:
        lines += _labelled("sockets", ["- (Prometheus did not answer)"])
    else:
        sockets = prometheus.sockets.get(name)
        lines += _labelled("sockets", [f"{sockets:.0f}" if sockets is not None else "no data"])
        mine = [a for a in prometheus.alerts if a.region == name]
        lines += _labelled("alerts", alert_lines(mine, now))
    lines += [INDENT + row for row in shard_rows(name, shards)]
    return lines


def status_screen(
    namespace: str,
    regions: Sequence[Manifest],
    shards: Sequence[Manifest],
    pools: Sequence[Manifest],
    prometheus: PrometheusView | None,
    now: datetime,
) -> str:
    """The whole screen: a block per region (by name), then the namespace's alerts that
    name no region of it, then a line on Prometheus if it failed."""
    if not regions:
        return f"no ChatRegions in namespace {namespace}"
    blocks = [
        "\n".join(region_block(region, shards, pools, prometheus, now))
        for region in sorted(regions, key=_name)
    ]
    if prometheus is not None and not prometheus.error:
        names = {_name(r) for r in regions}
        others = [a for a in prometheus.alerts if a.region not in names]
        if others:
            blocks.append("\n".join(["namespace alerts", *_indented(alert_lines(others, now))]))
    if prometheus is not None and prometheus.error:
        blocks.append(f"Prometheus {prometheus.url}: {prometheus.error}")
    return "\n\n".join(blocks)


def _indented(lines: Sequence[str]) -> list[str]:
    return [INDENT + line for line in lines]
