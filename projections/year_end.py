"""The year-end job's producer: one ``year_closed`` event per member the ledger knows.

Decisions:

- "Known to the ledger" = every account with an ``account_opened`` fact in the
  event store (read from the ledger's log up to its head when the job starts,
  ``member_scan_batch_notifications_max`` ids at a time), referrers opened by
  a credit included; members in ascending ``member_id`` order.
- Each event is fully determined by (year, member): ``event_id``
  ``year-closed:{YEAR}:{member_id}``, ``occurred_at`` ``{YEAR+1}-01-01T00:00:00Z``.
  Running the job twice produces the same events with the same payloads, so
  the ledger treats the second run as duplicates and nothing changes.
- This module only builds the events; sending them to ``loyalty.events`` is the
  stream pipeline's job.
"""

from __future__ import annotations

from eventsourcing.utils import get_topic

from ledger.application import LoyaltyLedger
from ledger.domain import LoyaltyAccount

SCHEMA_VERSION = 1
MEMBER_SCAN_BATCH_NOTIFICATIONS_MAX = 5_000
YEAR_MIN, YEAR_MAX = 1970, 2998  # the contract's timestamps run 1970..2999; Y + 1 must fit


def known_members(ledger: LoyaltyLedger,
                  batch_notifications_max: int = MEMBER_SCAN_BATCH_NOTIFICATIONS_MAX) -> list[str]:
    """Every member with an account, sorted."""
    opened = ledger.fact_log.facts(topics=[get_topic(LoyaltyAccount.Opened)],
                                   page_notifications_max=batch_notifications_max)
    return sorted(fact.member_id for fact in opened)


def year_closed_event(member_id: str, year: int) -> dict:
    """The inbound ``year_closed`` event of ``member_id`` for ``year``."""
    if not YEAR_MIN <= year <= YEAR_MAX:
        raise ValueError(f"year must be {YEAR_MIN}..{YEAR_MAX}: {year}")
    return {
        "type": "year_closed",
        "schema_version": SCHEMA_VERSION,
        "event_id": f"year-closed:{year}:{member_id}",
        "member_id": member_id,
        "occurred_at": f"{year + 1:04d}-01-01T00:00:00Z",
        "year": year,
    }


def year_closed_events(ledger: LoyaltyLedger, year: int) -> list[dict]:
    """One ``year_closed`` event per known member, in member order."""
    return [year_closed_event(member_id, year) for member_id in known_members(ledger)]
