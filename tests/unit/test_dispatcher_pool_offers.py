"""The pools' heartbeats decide whether a dispatch nobody took may have been dropped by
LiveKit (offer it again) or is only late in LiveKit's launch queue (offering it again
would give the room a second job)."""

import pytest

from core_voice_contracts.events import WorkerStatus
from core_voice_dispatcher.pool_offers import MARGIN_S, PoolOffers
from tests.fakes.clock import Clock

pytestmark = pytest.mark.unit

NAME = "core-voice"


def status(worker_id: str, **fields: object) -> WorkerStatus:
    values: dict[str, object] = {
        "capacity": 4,
        "active_calls": 0,
        "interval_s": 5.0,
        "agent_name": NAME,
    } | fields
    return WorkerStatus(worker_id=worker_id, **values)  # type: ignore[arg-type]


def heard_long_ago(*worker_ids: str) -> tuple[PoolOffers, Clock]:
    clock = Clock()
    pools = PoolOffers(clock)
    for worker_id in worker_ids:
        pools.note_status(status(worker_id))
    clock.now += 4.0
    for worker_id in worker_ids:  # heard again: known well before the offer below
        pools.note_status(status(worker_id))
    clock.now += 1.0
    return pools, clock


def test_with_no_pool_heard_any_launch_may_have_been_dropped() -> None:
    pools = PoolOffers(Clock())
    assert pools.may_have_dropped(NAME, 999.0)


def test_a_pool_with_room_that_turned_nothing_away_dropped_nothing() -> None:
    """The burst case: the launch is only late in LiveKit's queue."""
    pools, clock = heard_long_ago("a", "b")
    offered = clock.now
    clock.now += 6.0
    pools.note_status(status("a", active_calls=3))
    assert not pools.may_have_dropped(NAME, offered)


def test_every_pool_full_or_turning_offers_away_since_the_offer_may_have_dropped_it() -> None:
    pools, clock = heard_long_ago("a", "b")
    offered = clock.now
    clock.now += 1.0
    pools.note_status(status("a", full=True, active_calls=4))
    assert not pools.may_have_dropped(NAME, offered), "b could still take it"
    clock.now += 1.0
    pools.note_status(status("b", turned_away=1))
    assert pools.may_have_dropped(NAME, offered)
    # A later offer: a is still full, but b turned nothing away since it.
    clock.now += 2.0
    later = clock.now
    clock.now += 6.0
    assert not pools.may_have_dropped(NAME, later)
    pools.note_status(status("b", turned_away=2))
    assert pools.may_have_dropped(NAME, later)


def test_a_pool_full_at_some_moment_since_the_offer_counts_after_it_frees() -> None:
    pools, clock = heard_long_ago("a")
    pools.note_status(status("a", full=True))
    clock.now += 3.0
    offered = clock.now
    clock.now += 2.0
    pools.note_status(status("a", full=False))  # freed after the offer was made
    clock.now += 4.0
    assert pools.may_have_dropped(NAME, offered)
    clock.now += 1.0
    assert not pools.may_have_dropped(NAME, clock.now - 0.5)


def test_draining_counts_as_full() -> None:
    pools, clock = heard_long_ago("a")
    pools.note_status(status("a", draining=True))
    assert pools.may_have_dropped(NAME, clock.now)


def test_a_change_heard_just_before_the_offer_counts_as_since() -> None:
    """Receipt times are the dispatcher's: LiveKit may have learnt a change later."""
    pools, clock = heard_long_ago("a")
    pools.note_status(status("a", turned_away=1))
    clock.now += MARGIN_S / 2
    assert pools.may_have_dropped(NAME, clock.now)
    clock.now += MARGIN_S
    assert not pools.may_have_dropped(NAME, clock.now)


def test_a_pool_first_heard_since_the_offer_counts_as_unable_then() -> None:
    """What it did before it was heard is unknown (this dispatcher restarted, the pool is
    new): with every other pool full, the launch may have been dropped."""
    pools, clock = heard_long_ago("a", "b")
    pools.note_status(status("a", full=True))
    clock.now += 2.0
    offered = clock.now
    clock.now += 6.0
    assert not pools.may_have_dropped(NAME, offered), "b could take it"

    restarted = PoolOffers(clock)
    restarted.note_status(status("a", full=True))
    restarted.note_status(status("b"))
    assert restarted.may_have_dropped(NAME, offered)
    clock.now += 10.0
    restarted.note_status(status("b"))
    assert not restarted.may_have_dropped(NAME, clock.now - 5)


def test_pools_of_another_agent_name_do_not_count_and_unnamed_ones_count_for_all() -> None:
    pools, clock = heard_long_ago()
    pools.note_status(status("other", agent_name="legacy"))
    clock.now += 10.0
    pools.note_status(status("other", agent_name="legacy"))
    assert pools.may_have_dropped(NAME, clock.now), "no pool of this name"
    assert not pools.may_have_dropped("legacy", clock.now)
    pools.note_status(status("unnamed", agent_name=""))
    clock.now += 10.0
    pools.note_status(status("unnamed", agent_name=""))
    assert not pools.may_have_dropped(NAME, clock.now)


def test_a_pool_gone_silent_after_the_offer_may_have_dropped_it_and_is_forgotten() -> None:
    pools, clock = heard_long_ago("a", "b")
    offered = clock.now
    clock.now += 2.0
    pools.note_status(status("a"))
    pools.note_status(status("b"))  # b's last heartbeat: after the offer
    for _ in range(4):
        clock.now += 5.0
        pools.note_status(status("a"))
    assert pools.may_have_dropped(NAME, offered), "b went silent after it"
    later = clock.now
    clock.now += 6.0
    pools.note_status(status("a"))
    assert not pools.may_have_dropped(NAME, later), "b forgotten, a able"


def test_past_the_bound_the_pool_heard_longest_ago_is_forgotten_as_gone() -> None:
    clock = Clock()
    pools = PoolOffers(clock, max_pools=2)
    pools.note_status(status("a"))
    clock.now += 1.0
    pools.note_status(status("b"))
    clock.now += 10.0
    offered = clock.now
    clock.now += 1.0
    pools.note_status(status("a"))
    pools.note_status(status("b"))
    clock.now += 6.0
    assert not pools.may_have_dropped(NAME, offered)
    pools.note_status(status("spam", agent_name="other"))  # "a" (heard first) forgotten
    assert pools.may_have_dropped(NAME, offered), "a pool heard since the offer is gone"
    clock.now += 10.0
    pools.note_status(status("b"))
    assert not pools.may_have_dropped(NAME, clock.now - 5), "b alone, able"
