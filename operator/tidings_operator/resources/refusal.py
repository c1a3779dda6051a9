"""A change the operator will not make, and why: it surfaces as ``Ready=False`` with
``reason`` (as Strimzi's topic operator reports conflicts) until the spec or the world
changes."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Refusal:
    reason: str
    """CamelCase, for the Ready condition (``PartitionsCannotShrink``)."""
    message: str
    """For humans: what was asked, what is there, what to do."""
