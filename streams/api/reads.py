"""The till API's reads of the ledger: members, history, outcomes and quotes.

Every read goes to the event store through ``LoyaltyLedger`` (an account is
its latest snapshot plus the facts after it, never a read model that may
lag). eventsourcing's PostgreSQL recorder is synchronous, so ``LedgerReads``
runs each read in its own ``ThreadPoolExecutor`` of ``api_read_threads``
threads: the event loop never blocks on the database, and the aggregate
fold, snapshots and transcoding stay the library's (an async re-implementation
of them would be a second copy of the ledger's read path). The ledger is
opened without its account cache (another process writes the accounts):
current accounts are kept by ``streams.api.fresh_accounts``, which catches
each one up with the facts after its version on every read.

A lot's ``active_from`` is its activation time while pending, else its
``occurred_at`` (the domain forgets when a pending lot activated: an
activated lot shows its ``occurred_at`` too). ``held`` and ``holds`` (the
open holds, ``ledger.holds.open_holds``) are the account's own (section 7).
"""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from functools import partial
from typing import Any, Callable, TypeVar

from ledger.application import LoyaltyLedger
from ledger.basket import basket_lines
from ledger.campaign_budgets import BudgetBook
from ledger.domain import LoyaltyAccount, account_id, fact_type, is_outcome
from ledger.holds import open_holds
from ledger.quote import quote_purchase
from ledger.calendar import parse_timestamp
from ledger.wire import fact_fields, json_ready
from projections.figures import tier_figures
from streams.api.fresh_accounts import FreshAccounts, Kept, NewerFacts

T = TypeVar("T")
REJECTED_SUFFIX = "_rejected"
ABSENT, APPLIED, CONFLICT = "absent", "applied", "conflict"


@dataclass(frozen=True)
class Recorded:
    """Where an ``event_id`` stands for its member: ``absent`` (at ``version``), ``applied``, ``conflict``."""

    status: str
    version: int = 0
    outcome: dict | None = None


class LedgerReads:
    """Blocking ledger reads, each run on the read thread pool."""

    def __init__(self, ledger: LoyaltyLedger, threads: int, accounts_max: int,
                 newer_facts: NewerFacts | None = None) -> None:
        self.ledger = ledger
        self.accounts = FreshAccounts(ledger, accounts_max)
        self.newer_facts = newer_facts  # None: every read on the threads
        self.executor = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="api-read")

    async def run(self, function: Callable[..., T], *args, **kwargs) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self.executor, partial(function, *args, **kwargs))

    def close(self) -> None:
        self.executor.shutdown(wait=True)
        self.ledger.close()

    async def current_member(self, member_id: str, with_profile: bool) -> dict | None:
        """The member document now: the kept one when no fact came after it (checked on the
        event loop), else read on the threads."""
        kept = self.accounts.peek_document(member_id)
        if kept is not None and not with_profile and self.newer_facts is not None \
                and not await self.newer_facts.after(member_id, kept["version"]):
            return kept
        return await self.run(self.member, member_id, None, with_profile)

    # ------------------------------------------------------------ blocking

    def member(self, member_id: str, as_of: datetime | None = None,
               with_profile: bool = False) -> dict | None:
        """The member document; ``with_profile`` (a ``crm`` key) adds the decrypted profile
        (section 13: null once erased or never given) and the consents."""
        ledger = self.ledger
        if as_of is not None:
            account = ledger.account_as_of(member_id, as_of)
            return None if account is None else self._with_profile(
                member_document(account, ledger), account, with_profile)
        return self.accounts.read(member_id, lambda kept: self._with_profile(
            kept_document(kept, ledger), kept.account, with_profile))

    def _with_profile(self, document: dict, account: LoyaltyAccount, with_profile: bool) -> dict:
        if not with_profile:
            return document
        return document | {"profile": self.ledger.member_profile(account.member_id),
                           "consents": dict(account.consents)}

    def history(self, member_id: str, after_version: int, limit: int) -> list[dict] | None:
        facts = list(self.ledger.events.get(account_id(member_id), gt=after_version, limit=limit))
        if not facts and self.accounts.read(member_id, lambda kept: True) is None:  # no such member
            return None
        return [history_document(fact) for fact in facts]

    def recorded(self, event: dict) -> Recorded:
        """Has the member's ledger applied ``event`` (by id), with this payload or another?"""
        recorded = self.accounts.read(event["member_id"], lambda kept: self._recorded(kept.account, event))
        return recorded or Recorded(ABSENT)

    def _recorded(self, account: LoyaltyAccount, event: dict) -> Recorded:
        fingerprint = account.applied.get(event["event_id"])
        if fingerprint is None:
            return Recorded(ABSENT, account.version)
        if fingerprint != self.ledger.member_keys.event_fingerprint(event) \
                and account.erased_at is None:  # a closed account: a duplicate (ledger.domain)
            return Recorded(CONFLICT, account.version)
        return Recorded(APPLIED, account.version, self.outcome_after(account.member_id, event["event_id"], 0))

    def outcome_of(self, member_id: str, event_id: str) -> dict | None:
        """The recorded outcome of ``event_id`` for the member, or None while there is none."""
        if not self.accounts.read(member_id, lambda kept: event_id in kept.account.applied):
            return None
        return self.outcome_after(member_id, event_id, 0)

    def outcome_after(self, member_id: str, event_id: str, version: int) -> dict | None:
        """The outcome of ``event_id`` among the member's facts after ``version``, or None.
        The figures after it come from the kept account when it stands at the event's last
        fact (the usual case at a till), else from the account rebuilt at that version."""
        facts = list(self.ledger.events.get(account_id(member_id), gt=version))
        caused = [fact for fact in facts if fact.source_event_id == event_id]
        outcome = next((fact for fact in caused if is_outcome(fact)), None)
        if outcome is None:
            return None
        at = caused[-1].originator_version
        document = self.accounts.read(member_id, lambda kept: outcome_document(outcome, kept.account)
                                      if kept.account.version == at else None)
        return document or outcome_document(outcome, self.ledger.find_account(member_id, at))

    def quote(self, purchase: dict) -> dict:
        account = self.ledger.find_account(purchase["member_id"])
        program = self.ledger.program
        budgets_left = (BudgetBook(self.ledger.budgets.awarded()).lefts(program)
                        if program.campaigns else {})
        quote = quote_purchase(account, program, amount_minor=purchase["amount_minor"],
                               currency=purchase["currency"],
                               occurred_at=parse_timestamp(purchase["occurred_at"]),
                               store_id=purchase["store_id"], channel=purchase.get("channel"),
                               items=basket_lines(purchase.get("items")),
                               budgets_left=budgets_left)
        return {"member_id": purchase["member_id"], "tier": quote.tier, "base_points": quote.base_points,
                "multiplier_pct": quote.multiplier_pct, "points": quote.points,
                "debt_paid": quote.debt_paid, "rejected_reason": quote.rejected_reason,
                "campaigns": quote.campaigns}


# ---------------------------------------------------------------- documents


def kept_document(kept: Kept, ledger: LoyaltyLedger) -> dict[str, Any]:
    """The member document of a kept account, shaped once per version (shared: not to be changed)."""
    if kept.document is None:
        kept.document = member_document(kept.account, ledger)
    return kept.document


def member_document(account: LoyaltyAccount, ledger: LoyaltyLedger) -> dict[str, Any]:
    tier = tier_figures(account, ledger.program)
    return json_ready({
        "member_id": account.member_id,
        "balance": account.balance,
        "held": account.held,
        "pending": account.pending,
        "debt": account.debt,
        "tier": account.tier,
        "discount_pct": getattr(ledger.program.tier(account.tier), "discount_pct", 0),
        "next_tier": tier["next_tier"],
        "spend_to_next_tier": tier["spend_to_next_tier"],
        "lots": [{"lot_id": lot.lot_id, "points": lot.remaining, "expires_at": lot.expires_at,
                  "active_from": lot.active_from or lot.occurred_at} for lot in account.lots],
        "holds": open_holds(account.holds),
        "version": account.version,
        "clock": account.clock,
        "erased": account.erased_at is not None,  # a closed account (section 13): no personal datum
    })


def history_document(fact: Any) -> dict[str, Any]:
    return json_ready({
        "version": fact.originator_version, "type": fact_type(fact), "clock": fact.timestamp,
        "source_event_id": fact.source_event_id,
        "source_position": getattr(fact, "source_position", None),
        "data": {name: value for name, value in fact_fields(fact).items()
                 if name not in ("fingerprint", "source_event_id", "source_position")},
    })


def outcome_document(outcome: Any, after: LoyaltyAccount) -> dict[str, Any]:
    """The 200 answer of a write: the outcome fact and the member's figures after its event."""
    kind = fact_type(outcome)
    rejected = kind.endswith(REJECTED_SUFFIX)
    return {
        "event_id": outcome.source_event_id,
        "member_id": outcome.member_id,
        "outcome": kind,
        "reason": getattr(outcome, "reason", None) if rejected else None,
        "points": 0 if rejected else getattr(outcome, "points", 0),
        "balance": after.balance,
        "held": after.held,
        "pending": after.pending,
        "version": after.version,
    }
