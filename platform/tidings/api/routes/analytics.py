"""/analytics: daily aggregates for operators (served by the analytics process).

Aggregates hold counts, sizes and latencies only, like ``/metrics``; put this port
behind the same network policy as metrics, not on the public ingress.
"""

from __future__ import annotations

import re

from fastapi import APIRouter

from tidings.api.deps import Svc
from tidings.core.analytics import summary
from tidings.errors import InvalidInput
from tidings.services.analytics import region_day

router = APIRouter(prefix="/analytics", tags=["ops"])

DAY = re.compile(r"^\d{4}-\d{2}-\d{2}$")


@router.get("/daily/{day}")
async def daily(day: str, svc: Svc) -> dict[str, dict[str, float]]:
    """This region's counters of one UTC day (``YYYY-MM-DD``) by ``<event>.<kind>``."""
    if not DAY.match(day):
        raise InvalidInput("day must be YYYY-MM-DD (UTC)")
    return summary(await svc.ctx.aggregates.day(region_day(svc.ctx.region, day)))
