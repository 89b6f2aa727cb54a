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
- A year the ledger has no facts for (before the first account opened, or
  after the last fact's year) is refused with ``YearOutOfLedger``: closing
  it would only add a ``year_closed`` to every account by mistake.
- This module only builds the events; sending them to ``loyalty.events`` is the
  stream pipeline's job.
"""

from __future__ import annotations

from collections.abc import Iterator

from eventsourcing.utils import get_topic

from ledger.application import LoyaltyLedger
from ledger.domain import LoyaltyAccount

SCHEMA_VERSION = 1
MEMBER_SCAN_BATCH_NOTIFICATIONS_MAX = 5_000
LAST_FACTS_SCANNED_MAX = 1_000  # where the ledger's latest event-time year is looked for
YEAR_MIN, YEAR_MAX = 1970, 2998  # the contract's timestamps run 1970..2999; Y + 1 must fit


class YearOutOfLedger(ValueError):
    """A year before the ledger's first fact or after its last: nothing to close."""


def known_members(ledger: LoyaltyLedger,
                  batch_notifications_max: int = MEMBER_SCAN_BATCH_NOTIFICATIONS_MAX) -> list[str]:
    """Every member with an account, sorted."""
    return sorted(opened.member_id for opened in _openings(ledger, batch_notifications_max))


def _openings(ledger: LoyaltyLedger, batch_notifications_max: int) -> Iterator[LoyaltyAccount.Opened]:
    return ledger.fact_log.facts(topics=[get_topic(LoyaltyAccount.Opened)],
                                 page_notifications_max=batch_notifications_max)


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
    """One ``year_closed`` event per known member, in member order; ``YearOutOfLedger`` if
    the ledger has no facts in or before ``year``, or none after its start."""
    openings = list(_openings(ledger, MEMBER_SCAN_BATCH_NOTIFICATIONS_MAX))
    first_year = min((opened.timestamp.year for opened in openings), default=None)
    last_year = _last_fact_year(ledger)
    if first_year is None or last_year is None or not first_year <= year <= last_year:
        span = f"from {first_year} to {last_year}" if first_year is not None else "none"
        raise YearOutOfLedger(f"the ledger has no facts in {year} (its facts' years: {span}); "
                              "nothing to close")
    return [year_closed_event(member_id, year) for member_id in sorted(o.member_id for o in openings)]


def _last_fact_year(ledger: LoyaltyLedger) -> int | None:
    """The latest event-time year among the last ``LAST_FACTS_SCANNED_MAX`` account facts
    (dead letters carry wall-clock times and are skipped)."""
    facts = ledger.fact_log.facts(max(ledger.fact_log.head() - LAST_FACTS_SCANNED_MAX, 0))
    account_facts = (LoyaltyAccount.Fact, LoyaltyAccount.Opened)
    return max((fact.timestamp.year for fact in facts if isinstance(fact, account_facts)), default=None)
