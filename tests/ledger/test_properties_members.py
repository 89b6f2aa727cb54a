"""Property tests of section 13 (hypothesis) on both stores: random streams of
contract 2's events mixed with enrollments (twice, with and without profiles),
profile updates (before enrollment too), NPS answers and erasures (with
pending points, debt and events after them, transfers to and from erased
members included).

- balance + held + pending = in - out after every event, for every account;
- applying any event twice equals applying it once;
- rebuilding an account from its facts, with and without snapshots, is equal;
- after erasure an account is frozen: every later event of the member leaves
  one rejection ``account_closed`` (a transfer return: taken in and forfeited)
  at the unmoved clock, and its balance, pending and key stay gone.
"""

from __future__ import annotations

import itertools

from hypothesis import given
from hypothesis import strategies as st

from ledger.application import LoyaltyLedger
from ledger.commands import command_from_event
from ledger.membership import ACCOUNT_CLOSED
from tests.ledger.test_properties_contract2 import (START, _event_body, _members,
                                                    contract_2_program)
from tests.support.properties import (TwiceLedger, account_state, check_invariant_after_every_event,
                                      check_rebuild_equal, check_twice_equals_once,
                                      property_settings, timed_stream)

EXAMPLES_MAX = 25
EVENTS_MAX = 40
_example_ids = itertools.count()

SETTINGS = property_settings(EXAMPLES_MAX)
PROFILE_FIELDS = st.fixed_dictionaries({}, optional={
    "name": st.sampled_from(["Ana", "Bo Li"]), "email": st.just("a@example.com"),
    "phone": st.none() | st.just("+1 555 0100"), "birth_date": st.just("1990-02-28")})


@st.composite
def member_streams(draw) -> list[dict]:
    prefix = f"m{next(_example_ids)}-"
    members = [prefix + name for name in ("a", "b", "c")]
    return timed_stream(
        draw, prefix, members, START, EVENTS_MAX, 24 * 7, [0, 0, 0, 24 * 10],
        lambda base, purchases, moment: _body(base, members, purchases, moment, prefix))


@st.composite
def _body(draw, base, members, purchases, moment, prefix) -> dict:
    kind = draw(st.sampled_from(["other"] * 8 + ["member_enrolled"] * 2 + [
        "profile_updated", "nps_response", "member_erased"]))
    if kind == "other":
        return draw(_event_body(base, members, purchases, moment, prefix))
    if kind == "member_enrolled":
        profile = draw(st.none() | PROFILE_FIELDS)
        return {**base, "type": kind, "consents": {"marketing": draw(st.booleans())},
                **({"profile": profile} if profile is not None else {})}
    if kind == "profile_updated":
        return {**base, "type": kind, "profile": draw(PROFILE_FIELDS)}
    if kind == "nps_response":
        return {**base, "type": kind, "score": draw(st.integers(0, 10))}
    return {**base, "type": kind}


@SETTINGS
@given(events=member_streams(), lifetime=st.booleans())
def test_invariant_holds_after_every_event_for_every_account(ledger_env, events, lifetime):
    ledger = LoyaltyLedger(env=ledger_env, program=contract_2_program(lifetime))
    check_invariant_after_every_event(ledger, events)


@SETTINGS
@given(events=member_streams(), lifetime=st.booleans())
def test_applying_any_event_twice_equals_applying_it_once(ledger_env, events, lifetime):
    program = contract_2_program(lifetime)
    once = LoyaltyLedger(env=ledger_env, program=program)
    twice = TwiceLedger(env=ledger_env, program=program)
    # (a keyed fingerprint differs: each ledger has its own keys)
    check_twice_equals_once(once, twice, events, _members(events), without_fingerprints)
    for member in _members(events):
        assert (once.member_profile(member) is None) == (twice.member_profile(member) is None)


def without_fingerprints(ledger: LoyaltyLedger, member: str) -> dict | None:
    state = account_state(ledger, member)
    if state is not None:
        state["applied"] = sorted(state["applied"])
    return state


@SETTINGS
@given(events=member_streams(), lifetime=st.booleans())
def test_rebuild_from_facts_with_and_without_snapshots_is_equal(ledger_env, events, lifetime):
    ledger = LoyaltyLedger(env={**ledger_env, "LOYALTY_SNAPSHOT_INTERVAL_EVENTS": "3"},
                           program=contract_2_program(lifetime))
    check_rebuild_equal(ledger, events, _members(events))


@SETTINGS
@given(events=member_streams())
def test_an_erased_account_is_frozen(ledger_env, events):
    ledger = LoyaltyLedger(env=ledger_env, program=contract_2_program(lifetime=False))
    for event in events:
        before = ledger.find_account(event["member_id"])
        results = ledger.apply_in_order([command_from_event(event)])
        if before is None or before.erased_at is None or results[0].status != "applied":
            continue
        after = ledger.find_account(event["member_id"])
        assert (after.clock, after.tier, after.balance, after.pending, after.debt) == (
            before.clock, before.tier, -before.debt, 0, before.debt)  # no lot left, debt stays
        own = results[0].facts
        if results[0].event_id.startswith("transfer-return:"):
            assert [type(f).__name__ for f in own] == ["PointsTransferredIn", "PointsForfeited"]
        else:
            assert [f.reason for f in own] == [ACCOUNT_CLOSED]
        assert ledger.member_keys.key_of(event["member_id"]) is None
