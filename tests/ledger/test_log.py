"""The ledger's log (``LoyaltyLedger.fact_log``), the same on both stores: every
committed fact once, in commit order, by position, topic, page and window."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from eventsourcing.persistence import Tracking
from eventsourcing.utils import get_topic

from ledger.domain import FACT_TYPES, LoyaltyAccount, account_id
from ledger.postgres import log_reader
from tests.support import builders as b

TIER_CHANGED = get_topic(LoyaltyAccount.TierChanged)
OPENED = get_topic(LoyaltyAccount.Opened)
ACCOUNT_TOPICS = [get_topic(fact_class) for fact_class in FACT_TYPES.values()]


def two_members(ledger) -> list:
    """m1: opened, earned, tier changed, birthday; then m2: opened, earned. Six facts."""
    ledger.apply(*b.commands(b.purchase("m1", "2025-01-01T10:00:00Z", 60000),
                             b.birthday("m1", "2025-01-02T00:00:00Z")))
    ledger.apply(*b.commands(b.purchase("m2", "2025-01-03T10:00:00Z", 1000)))
    return [(fact.member_id, fact.originator_version)
            for member in ("m1", "m2") for fact in ledger.events.get(account_id(member))]


def keys(facts) -> list[tuple[str, int]]:
    return [(fact.member_id, fact.originator_version) for fact in facts]


def test_facts_are_every_committed_fact_once_in_commit_order(ledger):
    stored = two_members(ledger)
    assert ledger.fact_log.head() == 6
    assert keys(ledger.fact_log.facts()) == stored
    assert keys(ledger.fact_log.facts(page_notifications_max=4)) == stored  # pages joined
    assert keys(ledger.fact_log.facts(page_notifications_max=1)) == stored


def test_facts_from_a_position_up_to_a_stop_of_some_topics(ledger):
    stored = two_members(ledger)
    assert keys(ledger.fact_log.facts(2)) == stored[2:]
    assert keys(ledger.fact_log.facts(stop=3)) == stored[:3]
    assert keys(ledger.fact_log.facts(1, stop=1)) == []
    opened = ledger.fact_log.facts(topics=[OPENED], page_notifications_max=2)
    assert [fact.member_id for fact in opened] == ["m1", "m2"]
    (change,) = ledger.fact_log.facts(topics=[TIER_CHANGED])
    assert (change.member_id, change.to_tier) == ("m1", "silver")


def test_next_facts_come_with_their_positions_at_most_limit_at_a_time(ledger):
    stored = two_members(ledger)
    first = ledger.fact_log.next_facts(0, 4)
    assert [position for position, _ in first] == [1, 2, 3, 4]
    rest = ledger.fact_log.next_facts(4, 100)
    assert [position for position, _ in rest] == [5, 6]
    assert keys(fact for _, fact in first + rest) == stored
    assert ledger.fact_log.next_facts(6, 100) == []


def test_chunks_cover_the_range_in_windows_of_at_most_the_limit(ledger):
    stored = two_members(ledger)
    chunks = list(ledger.fact_log.chunks(0, 6, None, window_notifications_max=3,
                                         chunk_notifications_max=2))
    assert [position for chunk in chunks for position in chunk.ids] == [1, 2, 3, 4, 5, 6]
    assert keys(fact for chunk in chunks for fact in chunk.facts) == stored
    assert [chunk.last for chunk in chunks] == [2, 3, 5, 6]
    assert [chunk.ends_window for chunk in chunks] == [False, True, False, True]


def test_counts_newest_facts_and_versions_at_a_position(ledger):
    two_members(ledger)
    assert ledger.fact_log.count([OPENED, TIER_CHANGED]) == {OPENED: 2, TIER_CHANGED: 1}
    newest = ledger.fact_log.latest([OPENED], 5)
    assert [fact.member_id for fact in newest] == ["m2", "m1"]
    assert [fact.member_id for fact in ledger.fact_log.latest([OPENED], 1)] == ["m2"]
    assert ledger.fact_log.versions_at(3, ACCOUNT_TOPICS) == {str(account_id("m1")): 3}
    assert ledger.fact_log.versions_at(6, ACCOUNT_TOPICS) == {str(account_id("m1")): 4,
                                                              str(account_id("m2")): 2}


def test_every_tracked_position_in_one_read(ledger):
    assert ledger.all_tracked_positions() == {}
    ledger.apply(*b.commands(b.purchase("m1", "2025-01-01T10:00:00Z", 1000)),
                 tracking=Tracking("loyalty.events:0", 7))
    ledger.apply(*b.commands(b.purchase("m2", "2025-01-01T10:00:00Z", 1000)),
                 tracking=Tracking("loyalty.events:1", 3))
    ledger.apply(*b.commands(b.purchase("m1", "2025-01-02T10:00:00Z", 1000)),
                 tracking=Tracking("loyalty.events:0", 9))
    assert ledger.all_tracked_positions() == {"loyalty.events:0": 9, "loyalty.events:1": 3}


def test_a_range_of_one_chunk_is_read_without_a_helper_thread(ledger, monkeypatch):
    """The next chunk is read ahead in a helper thread; a range of one chunk (a live
    follower's usual cycle) starts none, and a longer one still reads ahead."""
    stored = two_members(ledger)
    started = []
    monkeypatch.setattr(log_reader, "ThreadPoolExecutor",
                        lambda **kwargs: started.append(kwargs) or ThreadPoolExecutor(**kwargs))
    one = list(ledger.fact_log.chunks(2, 6, None, window_notifications_max=10,
                                      chunk_notifications_max=10))
    assert [chunk.last for chunk in one] == [6] and keys(one[0].facts) == stored[2:]
    assert started == []
    three = list(ledger.fact_log.chunks(0, 6, None, window_notifications_max=10,
                                        chunk_notifications_max=2))
    assert [chunk.last for chunk in three] == [2, 4, 6]
    assert keys(fact for chunk in three for fact in chunk.facts) == stored
    assert len(started) == 1
