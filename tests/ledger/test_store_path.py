"""The ledger thread's store path (issue 21): a decide round reads its members' keys in
one query (``member_keys_prefetch``), and the previous design (one query per
profile-bearing command, ``LOYALTY_MEMBER_KEYS_PREFETCH=off``) stores the same facts."""

from __future__ import annotations

from ledger.application import LoyaltyLedger
from tests.support import builders as b
from tests.support import member_builders as mb
from tests.support.crypto import deterministic_crypto

PREVIOUS_DESIGN = {"LOYALTY_MEMBER_KEYS_PREFETCH": "off"}
FIRST_ROUND = [mb.enrolled("A", "2025-01-01T10:00:00Z", profile=mb.PROFILE),
               mb.enrolled("B", "2025-01-01T11:00:00Z", profile={"name": "Bea"}),
               b.purchase("A", "2025-01-01T12:00:00Z", 5000)]
SECOND_ROUND = [mb.profile_updated("A", "2025-01-02T10:00:00Z", {"phone": None}),
                mb.profile_updated("B", "2025-01-02T10:00:00Z", {"name": "Bea B"}),
                mb.erased("B", "2025-01-02T11:00:00Z"),
                mb.profile_updated("B", "2025-01-02T12:00:00Z", {"name": "late"}),
                mb.enrolled("C", "2025-01-02T13:00:00Z", profile={"name": "Cy"}),
                mb.profile_updated("C", "2025-01-02T14:00:00Z", {"email": "c@example.com"}),
                mb.profile_updated("D", "2025-01-02T15:00:00Z", {"name": "never enrolled"})]


class CountingReads:
    """A key store wrapper counting ``read_keys`` queries."""

    def __init__(self, store) -> None:
        self.store, self.reads = store, 0

    def read_keys(self, member_ids):
        self.reads += 1
        return self.store.read_keys(member_ids)

    def __getattr__(self, name):
        return getattr(self.store, name)


def _counted(ledger: LoyaltyLedger) -> CountingReads:
    counting = CountingReads(ledger.member_keys.store)
    ledger.member_keys.store = counting
    return counting


def _rounds(ledger: LoyaltyLedger) -> list[int]:
    """Both rounds applied; the key queries each took."""
    counting, reads = _counted(ledger), []
    for events in (FIRST_ROUND, SECOND_ROUND):
        before = counting.reads
        ledger.apply(*b.commands(*events))
        reads.append(counting.reads - before)
    return reads


def _stored(ledger: LoyaltyLedger) -> list[tuple]:
    return [(n.originator_id, n.originator_version, n.topic, n.state)
            for n in ledger.recorder.select_notifications(start=1, limit=1_000)]


def test_a_round_reads_its_members_keys_in_one_query_and_seals_the_same(ledger):
    assert ledger.member_keys_prefetch
    assert _rounds(ledger) == [1, 1]
    assert ledger.member_profile("A") == {k: v for k, v in mb.PROFILE.items() if k != "phone"}
    assert ledger.member_profile("B") is None        # erased in the round: key deleted
    assert ledger.member_profile("C") == {"name": "Cy", "email": "c@example.com"}
    assert ledger.member_keys.key_of("D") is None


def test_the_previous_design_reads_a_key_per_profile_bearing_command(ledger_env):
    ledger = LoyaltyLedger(env=ledger_env | PREVIOUS_DESIGN)
    try:
        assert not ledger.member_keys_prefetch
        # round 1: A and B before their keys are created; round 2: A, B, C's enrollment, D
        # (B after its erasure reads none, C's update finds its pending key)
        assert _rounds(ledger) == [2, 4]
        assert ledger.member_profile("C") == {"name": "Cy", "email": "c@example.com"}
    finally:
        ledger.close()


def test_both_designs_store_the_same_bytes(monkeypatch):
    stored = []
    for env in ({}, PREVIOUS_DESIGN):
        deterministic_crypto(monkeypatch)
        ledger = LoyaltyLedger(env=env)
        _rounds(ledger)
        stored.append(_stored(ledger))
        ledger.close()
    assert len(stored[0]) > len(FIRST_ROUND) + len(SECOND_ROUND) - 2
    assert stored[0] == stored[1]


def test_keys_read_for_a_round_are_forgotten_after_it(ledger):
    ledger.apply(*b.commands(*FIRST_ROUND))
    ledger.member_keys.prefetch({"A"})
    ledger.member_keys.end_round()
    counting = _counted(ledger)
    assert ledger.member_keys.key_of("A") is not None
    assert counting.reads == 1
