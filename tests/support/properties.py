"""What the property tests share: timed random streams, account state, the twice-ledger."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Callable

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

from ledger.application import LoyaltyLedger
from ledger.calendar import format_timestamp
from ledger.commands import command_from_event
from ledger.credits import credit_commands
from ledger.domain import account_id


def property_settings(examples_max: int) -> settings:
    """hypothesis settings of the ledger's property tests: ``examples_max`` streams, no
    deadline (a PostgreSQL example is slow), the ``ledger`` fixture shared by examples."""
    return settings(max_examples=examples_max, deadline=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


def timed_stream(draw, prefix: str, members: list[str], start: datetime, events_max: int,
                 step_hours_max: int, late_hours: list[int], body: Callable) -> list[dict]:
    """Events at moments that move on by up to ``step_hours_max``, some of them late;
    ``body(base, purchases, moment)`` draws each event's type and fields."""
    moment = start
    purchases: list[tuple[str, str, int]] = []
    events = []
    for number in range(draw(st.integers(1, events_max))):
        moment += timedelta(hours=draw(st.integers(0, step_hours_max)))
        late = timedelta(hours=draw(st.sampled_from(late_hours)))
        member = draw(st.sampled_from(members))
        base = {"schema_version": 1, "event_id": f"{prefix}{number}", "member_id": member,
                "occurred_at": format_timestamp(moment - late)}
        events.append(draw(body(base, purchases, moment)))
        if events[-1]["type"] == "purchase":
            purchases.append((member, base["event_id"], events[-1]["amount_minor"]))
    return events


def refund_body(draw, base: dict, purchases: list[tuple[str, str, int]]) -> dict:
    """A refund of one of the member's drawn purchases (or of an unknown one), up to its amount."""
    own = [p for p in purchases if p[0] == base["member_id"]]
    target = draw(st.sampled_from(own)) if own else (None, "unknown", 1000)
    return {**base, "type": "refund", "purchase_event_id": target[1],
            "amount_minor": draw(st.integers(1, target[2])), "currency": "EUR", "store_id": "s"}


def account_state(ledger: LoyaltyLedger, member: str) -> dict | None:
    """The account's state as the repository gives it (snapshots included), or None."""
    account = ledger.find_account(member)
    if account is None:
        return None
    state = dict(vars(account))
    state.pop("_pending_events")
    return state


def replayed_state(ledger: LoyaltyLedger, member: str) -> dict:
    """The account's state folded from every stored fact, no snapshot."""
    account = None
    for fact in ledger.events.get(account_id(member)):
        account = fact.mutate(account)
    state = dict(vars(account))
    state.pop("_pending_events")
    return state


class TwiceLedger(LoyaltyLedger):
    """The same ledger under other table names, so both share one database."""

    name = "twice"


def check_invariant_after_every_event(ledger: LoyaltyLedger, events: list[dict]) -> None:
    """Apply ``events`` one by one (credits at once); contract 2's identity after each."""
    for event in events:
        for result in ledger.apply_in_order([command_from_event(event)]):
            ledger.find_account(result.member_id).check_invariant()


def check_twice_equals_once(once: LoyaltyLedger, twice: LoyaltyLedger, events: list[dict],
                            members: set[str], state: Callable = account_state) -> None:
    """``once`` applies each event once, ``twice`` each event (and each credit) twice:
    every second application is a duplicate and every member's ``state`` is equal."""
    for event in events:
        once.apply_in_order([command_from_event(event)])
    for event in events:
        results = twice.apply_in_order([command_from_event(event), command_from_event(dict(event))])
        assert results[-1].status == "duplicate"
        for credit in credit_commands(results[0].facts):  # a credit redelivered: a duplicate
            assert twice.apply(credit)[0].status == "duplicate"
    for member in members:
        assert state(twice, member) == state(once, member)


def check_rebuild_equal(ledger: LoyaltyLedger, events: list[dict], members: set[str]) -> None:
    """Apply ``events``; every account (snapshots included) equals its fold of every fact."""
    ledger.apply_in_order([command_from_event(event) for event in events])
    for member in members:
        if ledger.find_account(member) is not None:
            assert account_state(ledger, member) == replayed_state(ledger, member)
