"""``bench/fairness.py``, small, on the embedded engines: it runs and its counts add up.

Times depend on the machine and are never asserted: only that both windows measured the
probe, that every flood frame got an answer, and that the per-socket budgets refused
most of a 1,000 frames/s flood (receipts and typing past their burst, sends past
theirs) while storing none of the receipts' made-up ids.
"""

from __future__ import annotations

import pytest

from bench_support import run_bench

pytestmark = pytest.mark.slow


async def test_fairness_bench_measures_the_probe_under_a_flood() -> None:
    result = await run_bench("fairness.py", "--duration=1.5", "--timeout=60", "--json", "--quiet")
    assert result["failures"] == []
    figures = result["figures"]
    for window in ("idle", "flood"):
        for probe in ("rest", "websocket"):
            assert figures[window][probe]["n"] > 0, (window, probe, figures[window])
    assert figures["probe_errors"] == {}
    flood = figures["flood_frames"]
    sent = sum(flood["sent"].values())
    assert sent > 0
    assert flood["unanswered"] == 0
    assert flood["accepted"] + flood["refused"] == sent
    answered = flood["answered"]
    assert set(answered["receipt"]) <= {"404", "429"}, answered["receipt"]  # ids made up
    for kind in ("receipt", "typing", "send"):
        assert answered[kind].get("429", 0) > 0, (kind, answered[kind])
    assert figures["closes"] == {}
