"""What a reconcile that raised writes into the status, so that ``kubectl get`` never
shows an older success while the operator backs off.

A failed reconcile observed nothing it can vouch for: ``Ready`` turns False and
``Degraded`` True with the error's reason and message, both stamped with the generation
that was tried; every other condition and field stays as the last completed reconcile
left it, ``observedGeneration`` included (it means "status describes this generation",
which a failure cannot claim).

An unexpected exception (a bug) still gets a readable reason, ``ReconcileError``, and
names its type: users see what failed and that it is retried, not a bare
``AttributeError``.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from pydantic import ValidationError

from tidings_operator.external import ExternalUnavailable
from tidings_operator.kube import ApiError
from tidings_operator.models import Condition
from tidings_operator.resources.refusal import Refusal
from tidings_operator.status import DEGRADED, READY, merge_conditions
from tidings_operator.workqueue import PermanentError

RECONCILE_ERROR = "ReconcileError"
"""A bug or an error of a kind the operator does not know: retried with back-off."""
API_ERROR = "KubernetesApiError"
INVALID_OBJECT = "InvalidObject"


class InvalidSpec(PermanentError):
    """The stored object is refused by the models (an older CRD, or a rule the CRD
    cannot express): retrying cannot help, only an edit can. Its status says what to
    fix; the work queue does not retry it (the next edit or resync looks again)."""

    def __init__(self, kind: str, name: str, exc: ValidationError) -> None:
        super().__init__(invalid_spec_message(kind, name, exc))


def invalid_spec_message(kind: str, name: str, exc: ValidationError) -> str:
    """What is wrong and how to fix it, for the ``InvalidSpec`` condition."""
    problems = "; ".join(
        f"{'.'.join(str(p) for p in e['loc']) or 'spec'}: {e['msg']}" for e in exc.errors()[:5]
    )
    return (
        f"the spec is not valid: {problems}; fix it with kubectl edit {kind.lower()} {name} "
        "(nothing is reconciled until then; deleting it still works)"
    )


def describe_failure(exc: BaseException) -> Refusal:
    """The condition reason and message for an exception that ended a reconcile."""
    if isinstance(exc, ExternalUnavailable):
        return Refusal(exc.reason, str(exc))
    if isinstance(exc, ApiError):
        return Refusal(
            API_ERROR, f"the API server refused a request ({exc.status} {exc.reason}): {exc}"
        )
    if isinstance(exc, ValidationError):
        first = exc.errors()[0] if exc.errors() else {"loc": (), "msg": str(exc)}
        where = ".".join(str(p) for p in first["loc"])
        return Refusal(INVALID_OBJECT, f"an object could not be parsed: {where}: {first['msg']}")
    return Refusal(
        RECONCILE_ERROR,
        f"the operator failed ({type(exc).__name__}: {exc}); it retries with back-off, "
        "its log has the traceback",
    )


def failed_status(
    previous: Mapping[str, Any], generation: int, failure: Refusal, now: datetime
) -> dict[str, Any]:
    """The status to write after a failed reconcile of ``generation``: the previous
    one with ``Ready=False`` and ``Degraded=True`` saying why, and phase ``Degraded``."""
    message = f"reconcile of generation {generation} failed: {failure.message}"
    return not_ready_status(previous, generation, Refusal(failure.reason, message), now)


def not_ready_status(
    previous: Mapping[str, Any], generation: int, problem: Refusal, now: datetime
) -> dict[str, Any]:
    """The previous status with ``Ready=False`` and ``Degraded=True`` saying ``problem``
    (stamped with ``generation``), phase ``Degraded``; everything else kept as the last
    completed reconcile left it."""
    message = problem.message
    old = [Condition.model_validate(c) for c in previous.get("conditions") or []]
    computed = [
        Condition(
            type=kind,
            status=status,
            reason=problem.reason,
            message=message,
            last_transition_time=now,
            observed_generation=generation,
        )
        for kind, status in ((READY, "False"), (DEGRADED, "True"))
    ]
    merged = {c.type: c for c in merge_conditions(old, computed)}
    conditions = [merged.pop(c.type, c) for c in old] + list(merged.values())
    status = dict(previous)
    status["phase"] = "Degraded"
    status["conditions"] = [
        c.model_dump(mode="json", by_alias=True, exclude_none=True) for c in conditions
    ]
    return status
