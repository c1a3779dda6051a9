"""/analytics: daily aggregates for operators (served by the analytics process).

Aggregates hold counts, sizes and latencies only, like ``/metrics``; put this port
behind the same network policy as metrics, not on the public ingress.
"""

from __future__ import annotations

from datetime import date
from typing import Annotated

from fastapi import APIRouter, Path

from tidings.api.contract import errors
from tidings.api.deps import Svc
from tidings.core.analytics import summary
from tidings.errors import InvalidInput
from tidings.services.analytics import region_day

router = APIRouter(prefix="/analytics", tags=["ops"])


Day = Annotated[str, Path(pattern=r"^\d{4}-\d{2}-\d{2}$", json_schema_extra={"format": "date"})]


@router.get("/daily/{day}", responses=errors(400))
async def daily(day: Day, svc: Svc) -> dict[str, dict[str, float]]:
    """This region's counters of one UTC day (``YYYY-MM-DD``) by ``<event>.<kind>``."""
    try:
        date.fromisoformat(day)
    except ValueError as exc:
        raise InvalidInput(f"{day} is not a day of the calendar (YYYY-MM-DD, UTC)") from exc
    return summary(await svc.ctx.aggregates.day(region_day(svc.ctx.region, day)))
