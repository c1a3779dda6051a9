"""``bench/fairness.py``, small, on the embedded engines: it runs and its counts add up.

Times depend on the machine and are never asserted: only that both windows measured the
probe, that every flood frame read got a right answer (a socket past its budget is read
slowly, so most of a 1,000 frames/s flood is still unread when the window closes), and
that the budgets refused it while storing none of the receipts' made-up ids.
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
    # A socket past its budget is read slowly: what it sent last may still be unread
    # when the window closes, never answered wrongly.
    assert 0 <= flood["unread"] < sent
    answered = flood["answered"]
    assert set(answered["receipt"]) <= {"404", "429"}, answered["receipt"]  # ids made up
    assert set(answered["send"]) <= {"200", "429"}, answered["send"]
    # Typing has the smallest budget (a burst of 20): the flood is past it early, and
    # from then on it is read slowly, so the other kinds may never reach their own.
    assert answered["typing"].get("429", 0) > 0, answered["typing"]
    assert figures["closes"] == {}
