"""Quorum failure detection: a peer is Failed only when a majority of the regions have
seen its data plane unreachable for the whole window; an expired Lease alone never
fails it; with two regions nothing is ever agreed."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from tidings_operator.failover import Health, Heartbeat, PeerVerdict
from tidings_operator.quorum import (
    Action,
    Sighting,
    Vantage,
    decide,
    judge_peer,
    majority,
    observe,
    publish,
    read_sightings,
)

T0 = datetime(2026, 12, 6, 12, 0, 0, tzinfo=UTC)
WINDOW = 30


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def alive(now: datetime) -> Heartbeat:
    return Heartbeat(now - timedelta(seconds=1), 15)


def dead_since(renewed: datetime) -> Heartbeat:
    return Heartbeat(renewed, 15)


def down(
    observer: str, since: datetime, now: datetime, *, beat: Heartbeat | None = None
) -> Vantage:
    return Vantage(observer, Sighting("eu", now, since, "connection refused"), beat or alive(now))


def up(observer: str, now: datetime) -> Vantage:
    return Vantage(observer, Sighting("eu", now, None), alive(now))


def judge(
    vantages: list[Vantage],
    regions: int,
    now: datetime,
    heartbeat: Heartbeat | None = None,
    previous: PeerVerdict | None = None,
) -> PeerVerdict:
    return judge_peer(
        "eu",
        heartbeat if heartbeat is not None else dead_since(T0),
        vantages,
        regions,
        previous,
        now,
        WINDOW,
    )


def test_majority_of_the_regions() -> None:
    assert [majority(n) for n in (1, 2, 3, 4, 5)] == [1, 2, 2, 3, 3]


def test_an_expired_lease_with_a_reachable_data_plane_is_operator_down() -> None:
    now = at(120)
    verdict = judge([up("us", now), up("ap", now)], 3, now)
    assert verdict.health is Health.OPERATOR_DOWN
    assert "data plane reachable from ap, us" in verdict.message
    assert "moves no shards" in verdict.message


def test_an_expired_lease_with_nothing_probed_is_operator_down_not_failed() -> None:
    now = at(600)
    no_view = [Vantage("us", None, alive(now)), Vantage("ap", None, alive(now))]
    verdict = judge(no_view, 3, now)
    assert verdict.health is Health.OPERATOR_DOWN
    assert "data plane not observed" in verdict.message


def test_a_peer_never_seen_is_unknown() -> None:
    now = at(600)
    verdict = judge_peer("eu", None, [down("us", T0, now), down("ap", T0, now)], 3, None, now, 30)
    assert verdict.health is Health.UNKNOWN


def test_one_observer_alone_makes_a_peer_suspect_never_failed() -> None:
    now = at(300)
    verdict = judge([down("us", T0, now), up("ap", now)], 3, now)
    assert (verdict.health, verdict.votes, verdict.needed) == (Health.SUSPECT, 1, 2)
    assert "1 of the 2 needed" in verdict.message


def test_a_majority_for_the_whole_window_fails_a_peer() -> None:
    early = judge([down("us", T0, at(20)), down("ap", at(5), at(20))], 3, at(20))
    assert early.health is Health.SUSPECT  # not for the whole window yet
    late = judge([down("us", T0, at(36)), down("ap", at(5), at(36))], 3, at(36), previous=early)
    assert (late.health, late.votes) == (Health.FAILED, 2)
    assert late.since == early.since  # one run of failed checks
    assert "as seen by ap, us (2 of 3 regions, majority 2)" in late.message


def test_an_observer_whose_operator_is_down_has_no_vote() -> None:
    now = at(100)
    stale = down("ap", T0, now, beat=dead_since(at(10)))
    verdict = judge([down("us", T0, now), stale], 3, now)
    assert verdict.health is Health.SUSPECT
    old_check = Vantage("ap", Sighting("eu", at(10), T0, "refused"), alive(now))
    assert judge([down("us", T0, now), old_check], 3, now).health is Health.SUSPECT


def test_the_failed_region_never_votes_on_itself() -> None:
    now = at(100)
    itself = Vantage("eu", Sighting("eu", now, T0, "x"), alive(now))
    assert judge([down("us", T0, now), itself], 3, now).health is Health.SUSPECT


def test_with_two_regions_a_peer_is_never_failed_and_the_status_says_why() -> None:
    now = at(3600)
    verdict = judge([down("us", T0, now)], 2, now)
    assert verdict.health is Health.SUSPECT
    assert "only 1 can observe it: never Failed automatically" in verdict.message
    decision = decide("Automatic", 2, [verdict])
    assert decision.action is Action.NO_QUORUM
    assert decision.reason == "FailoverNoQuorum"
    assert "kubectl tidings failover" in decision.message


def test_decisions() -> None:
    now = at(100)
    failed = PeerVerdict("eu", Health.FAILED, T0, "DataPlaneUnreachable", "gone", 2, 2)
    operator_down = PeerVerdict("ap", Health.OPERATOR_DOWN, T0, "OperatorDown", "down")
    assert decide("Automatic", 3, [failed]).failed == ("eu",)
    assert decide("Automatic", 3, [failed]).action is Action.TAKE_OVER
    assert decide("Manual", 3, [failed]).action is Action.MANUAL
    nothing = decide("Automatic", 3, [operator_down])
    assert (nothing.action, nothing.reason) == (Action.NONE, "OperatorDown")
    assert decide("Automatic", 3, [judge([up("us", now)], 3, now, alive(now))]).reason == (
        "NoFailure"
    )


def test_a_run_of_failed_checks_keeps_its_start_and_a_success_ends_it() -> None:
    first = observe("eu", 2, ["gw refused", "kafka refused"], None, at(0))
    assert first is not None
    assert first.down_since == at(0)
    second = observe("eu", 2, ["gw refused", "kafka refused"], first, at(5))
    assert second is not None
    assert second.down_since == at(0)
    half = observe("eu", 2, ["gw refused"], second, at(10))  # Kafka answered
    assert half is not None
    assert half.reachable
    assert observe("eu", 0, [], half, at(15)) is None  # nothing to probe: no vote


def test_sightings_survive_the_lease_annotation_and_garbage_votes_nobody_down() -> None:
    seen = {
        "eu": Sighting("eu", at(10), at(0), "refused"),
        "ap": Sighting("ap", at(10), None),
    }
    lease = {"metadata": {"annotations": {"tidings.dev/observations": publish(seen)}}}
    assert read_sightings(lease) == seen
    for garbage in ("not json", "[1,2]", '{"eu": {"checked": "yesterday"}}', '{"eu": 3}'):
        bad = {"metadata": {"annotations": {"tidings.dev/observations": garbage}}}
        assert read_sightings(bad) == {}
    assert read_sightings(None) == {}


OBSERVERS = ["us", "ap", "sa", "af", "au", "me"]


@given(
    regions=st.integers(min_value=2, max_value=7),
    views=st.lists(
        st.tuples(
            st.sampled_from(OBSERVERS),
            st.integers(min_value=0, max_value=200),  # down since (s), or up when > 100
            st.booleans(),  # observer's heartbeat current
        ),
        max_size=8,
    ),
    lease_expired=st.booleans(),
)
def test_never_failed_without_a_majority_of_current_down_votes(
    regions: int, views: list[tuple[str, int, bool]], lease_expired: bool
) -> None:
    now = at(200)
    vantages = [
        Vantage(
            name,
            Sighting("eu", now, None if since > 100 else at(since)),
            alive(now) if current else dead_since(T0),
        )
        for name, since, current in views
    ]
    heartbeat = dead_since(T0) if lease_expired else alive(now)
    verdict = judge(vantages, regions, now, heartbeat)
    voters = {
        name
        for name, since, current in views
        if current and since <= 100 and (now - at(since)).total_seconds() >= WINDOW
    }
    if verdict.health is Health.FAILED:
        assert len(voters) >= majority(regions)
        assert regions >= 3
    if not voters:
        assert verdict.health is not Health.FAILED
    if regions == 2:
        assert decide("Automatic", regions, [verdict]).action is Action.NO_QUORUM
