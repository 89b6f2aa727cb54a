"""Section 13's daily jobs: the birthday events of a day, and the expiry notices.

``birthday_events(ledger, day)``: one ``birthday`` event (``event_id``
``birthday:<YYYY>:<member_id>``, ``occurred_at`` the day at 00:00 UTC) for
every enrolled, not erased member whose profile's birth date falls on
``day`` (29 February falls on 28 February in years without one). The
enrolled and erased members and their sealed profiles are read from the
ledger's log (``member_scan_batch_notifications_max`` ids a page), the
profiles decrypted here and nowhere else, keys read
``key_batch_members_max`` members at a time. Each event is fully determined
by (day, member), so a second run gives the same events: all duplicates.
``BirthdayBook`` keeps its place in the log, for a caller that asks day
after day (the demo).
``daily_birthdays`` is the job itself: it also deletes the dead-letter keys
older than ``privacy.dead_letter_days_max`` days.

``expiry_notices(ledger, as_of, within_days)``: one ``points_expiring``
notice per member and UTC expiry day for the member's open lots (pending
ones included) whose expiry time is in (``as_of``, ``as_of`` + N days], as
the ledger stands (every applied event); ``event_id``
``expiring:<member_id>:<expiry date>``, ``expires_at`` the earliest expiry
time of that day, ``points`` the unspent points expiring that day, and the
member's ``marketing_consent`` for the notification service. A transactional
notice about the member's own points needs no marketing consent (README,
privacy). A second run gives the same ids (consumers dedupe by id).

Neither job logs; the birth dates never leave this module.
"""

from __future__ import annotations

from calendar import isleap
from collections.abc import Iterator
from datetime import date, datetime, timedelta

from eventsourcing.utils import get_topic

from ledger.calendar import format_timestamp
from ledger.domain import LoyaltyAccount
from ledger.privacy import open_profile
from ledger.sealed_dead_letters import purge_dead_letter_keys

SCHEMA_VERSION = 1
MEMBER_SCAN_BATCH_NOTIFICATIONS_MAX = 5_000
KEY_BATCH_MEMBERS_MAX = 1_000
WITHIN_DAYS_MAX = 366
NOTICE_TYPE = "points_expiring"


def falls_on(birth_date: str, day: date) -> bool:
    """True if a birthday of ``birth_date`` (YYYY-MM-DD) is celebrated on ``day``."""
    month, month_day = int(birth_date[5:7]), int(birth_date[8:10])
    if (month, month_day) == (2, 29) and not isleap(day.year):
        return (day.month, day.day) == (2, 28)
    return (day.month, day.day) == (month, month_day)


def birthday_event(member_id: str, day: date) -> dict:
    return {"type": "birthday", "schema_version": SCHEMA_VERSION,
            "event_id": f"birthday:{day.year:04d}:{member_id}", "member_id": member_id,
            "occurred_at": f"{day.isoformat()}T00:00:00Z"}


def daily_birthdays(ledger, day: date) -> list[dict]:
    """The daily job (``loyalty birthdays``): the day's birthday events, after deleting the
    dead-letter keys past ``privacy.dead_letter_days_max`` (``ledger.sealed_dead_letters``)."""
    purge_dead_letter_keys(ledger, day)
    return birthday_events(ledger, day)


def birthday_events(ledger, day: date) -> list[dict]:
    """The day's birthday events, in member order."""
    return BirthdayBook(ledger).events_on(day)


class BirthdayBook:
    """Enrolled, not erased members' current birth dates, read from the log where the last
    read stopped: a caller asking day after day (the demo) reads each fact once."""

    def __init__(self, ledger) -> None:
        self.ledger = ledger
        self.position = 0
        self.sealed: dict[str, list[str | None]] = {}
        self.birth_dates: dict[str, str | None] = {}
        self.erased: set[str] = set()

    def events_on(self, day: date) -> list[dict]:
        self.refresh()
        return [birthday_event(member, day) for member, birth in sorted(self.birth_dates.items())
                if birth and falls_on(birth, day)]

    def refresh(self) -> None:
        head = self.ledger.fact_log.head()
        changed: set[str] = set()
        for fact in _facts(self.ledger, LoyaltyAccount.MemberEnrolled, LoyaltyAccount.ProfileUpdated,
                           LoyaltyAccount.MemberErased, position=self.position, stop=head):
            changed.add(fact.member_id)
            if isinstance(fact, LoyaltyAccount.MemberErased):
                self.erased.add(fact.member_id)
            elif isinstance(fact, LoyaltyAccount.MemberEnrolled) or fact.member_id in self.sealed:
                self.sealed.setdefault(fact.member_id, []).append(fact.profile)
        self.position = head
        self._open(sorted(changed))

    def _open(self, members: list[str]) -> None:
        for start in range(0, len(members), KEY_BATCH_MEMBERS_MAX):
            batch = members[start:start + KEY_BATCH_MEMBERS_MAX]
            keys = self.ledger.member_keys.store.read_keys(batch)
            for member in batch:
                self.birth_dates.pop(member, None)
                if member in self.sealed and member not in self.erased:
                    profile = open_profile(keys.get(member), member, self.sealed[member])
                    self.birth_dates[member] = (profile or {}).get("birth_date")


def expiry_notices(ledger, as_of: datetime, within_days: int) -> list[dict]:
    """The ``points_expiring`` notices of lots expiring within ``within_days`` of ``as_of``."""
    if not 1 <= within_days <= WITHIN_DAYS_MAX:
        raise ValueError(f"within_days must be 1..{WITHIN_DAYS_MAX}: {within_days}")
    horizon = as_of + timedelta(days=within_days)
    members = sorted({opened.member_id for opened in _facts(ledger, LoyaltyAccount.Opened)})
    notices = []
    for member in members:
        account = ledger.find_account(member)
        if account is not None and account.erased_at is None:
            notices.extend(_notices_of(account, as_of, horizon))
    return notices


def _notices_of(account: LoyaltyAccount, as_of: datetime, horizon: datetime) -> list[dict]:
    by_day: dict[date, list] = {}
    for lot in account.lots:
        if lot.remaining > 0 and as_of < lot.expires_at <= horizon:
            by_day.setdefault(lot.expires_at.date(), []).append(lot)
    return [{"type": NOTICE_TYPE, "schema_version": SCHEMA_VERSION,
             "event_id": f"expiring:{account.member_id}:{day.isoformat()}",
             "member_id": account.member_id, "points": sum(lot.remaining for lot in lots),
             "expires_at": format_timestamp(min(lot.expires_at for lot in lots)),
             "marketing_consent": bool(account.consents.get("marketing", False))}
            for day, lots in sorted(by_day.items())]


def _facts(ledger, *classes: type, position: int = 0, stop: int | None = None) -> Iterator:
    return ledger.fact_log.facts(position, topics=[get_topic(c) for c in classes], stop=stop,
                                 page_notifications_max=MEMBER_SCAN_BATCH_NOTIFICATIONS_MAX)
