"""``loyalty birthdays`` and ``loyalty expiry-notices`` (section 13), on both stores.

Birthdays: only enrolled, not erased members whose (latest) birth date falls
on the day; 29 February on 28 February in other years; a second run's
events are all duplicates. Expiry notices: one per member and expiry day,
the same ids on a second run, none for erased members; both commands'
``--dry-run`` through the CLI.
"""

from __future__ import annotations

from datetime import date, datetime, timezone

import orjson
import pytest

from ledger.member_jobs import birthday_events, daily_birthdays, expiry_notices, falls_on
from streams.cli import main
from streams.validation import validate_outbound
from tests.projections.steps import database_url
from tests.support import builders as b
from tests.support import member_builders as mb
from tests.support.ledger_steps import apply, facts

AT = "2025-01-05T10:00:00Z"


def born(day: str, **extra) -> dict:
    return {"name": "N", "birth_date": day, **extra}


def a_membership(ledger) -> None:
    apply(ledger,
          mb.enrolled("A", AT, profile=born("1990-06-02")),
          mb.enrolled("B", AT, profile=born("1992-02-29")),
          b.purchase("C", AT, 5000),                                       # never enrolled
          mb.enrolled("D", AT, profile=born("1985-06-02")),
          mb.erased("D", "2025-01-06T10:00:00Z"),                          # erased
          mb.enrolled("E", AT, profile={"name": "no birth date"}),
          mb.enrolled("F", AT, profile=born("1970-06-02")),
          mb.profile_updated("F", "2025-01-07T10:00:00Z", {"birth_date": "1970-07-01"}),
          mb.enrolled("G", AT, profile=born("1999-06-02")),
          mb.profile_updated("G", "2025-01-07T10:00:00Z", {"birth_date": None}),
          mb.enrolled("H", AT))                                             # no profile


def test_leap_day_birthdays_fall_on_28_february_in_other_years():
    assert falls_on("1992-02-29", date(2025, 2, 28))
    assert not falls_on("1992-02-29", date(2024, 2, 28))
    assert falls_on("1992-02-29", date(2024, 2, 29))
    assert not falls_on("1990-02-28", date(2024, 2, 29))
    assert falls_on("1990-02-28", date(2025, 2, 28))


def test_birthdays_only_for_enrolled_not_erased_members_born_that_day(ledger):
    a_membership(ledger)
    assert [e["member_id"] for e in birthday_events(ledger, date(2025, 6, 2))] == ["A"]
    assert [e["member_id"] for e in birthday_events(ledger, date(2025, 7, 1))] == ["F"]
    assert [e["member_id"] for e in birthday_events(ledger, date(2025, 2, 28))] == ["B"]
    assert birthday_events(ledger, date(2024, 2, 28)) == []
    assert [e["member_id"] for e in birthday_events(ledger, date(2024, 2, 29))] == ["B"]
    assert birthday_events(ledger, date(2025, 6, 2))[0]["event_id"] == "birthday:2025:A"


def test_a_second_run_of_birthdays_is_all_duplicates(ledger):
    a_membership(ledger)
    first = daily_birthdays(ledger, date(2025, 6, 2))
    applied = apply(ledger, *first)
    assert [f.member_id for f in facts(applied, "birthday_rewarded")] == ["A"]
    again = daily_birthdays(ledger, date(2025, 6, 2))
    assert again == first
    assert {result.status for result in apply(ledger, *again)} == {"duplicate"}


def test_expiry_notices_one_per_member_and_day_the_same_ids_twice(ledger):
    apply(ledger,
          mb.enrolled("X", "2025-01-01T08:00:00Z", marketing=True),
          b.purchase("X", "2025-01-10T09:00:00Z", 10_000),                 # 100, expires 2026-01-10
          b.purchase("X", "2025-01-10T18:00:00Z", 5_000),                  # 50, the same day
          b.birthday("X", "2025-01-20T10:00:00Z"),                         # 200, expires 2026-01-20
          b.purchase("Y", "2025-01-12T10:00:00Z", 7_000),                  # never enrolled
          b.purchase("Z", "2025-01-12T10:00:00Z", 7_000),
          mb.erased("Z", "2025-01-13T10:00:00Z"))
    as_of = datetime(2026, 1, 1, tzinfo=timezone.utc)
    notices = expiry_notices(ledger, as_of, 15)
    for notice in notices:
        validate_outbound("points_expiring", notice)
    assert [(n["event_id"], n["points"], n["expires_at"], n["marketing_consent"]) for n in notices] == [
        ("expiring:X:2026-01-10", 150, "2026-01-10T09:00:00Z", True),
        ("expiring:Y:2026-01-12", 70, "2026-01-12T10:00:00Z", False)]
    assert [n["event_id"] for n in expiry_notices(ledger, as_of, 30)] == [
        "expiring:X:2026-01-10", "expiring:X:2026-01-20", "expiring:Y:2026-01-12"]
    assert expiry_notices(ledger, as_of, 15) == notices
    with pytest.raises(ValueError):
        expiry_notices(ledger, as_of, 0)


def test_both_commands_dry_run_through_the_cli(pg_env, capsys):
    from ledger.application import LoyaltyLedger
    ledger = LoyaltyLedger(env=pg_env)
    a_membership(ledger)
    ledger.close()
    url = database_url(pg_env)
    assert main(["birthdays", "--date", "2025-02-28", "--dry-run", "--database-url", url]) == 0
    out = capsys.readouterr()
    assert [orjson.loads(line)["event_id"] for line in out.out.splitlines()] == ["birthday:2025:B"]
    assert "1992" not in out.out + out.err
    assert main(["expiry-notices", "--as-of", "2026-01-01T00:00:00Z", "--within-days", "10",
                 "--dry-run", "--database-url", url]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [orjson.loads(line)["event_id"] for line in lines] == ["expiring:C:2026-01-05"]
    with pytest.raises(SystemExit):
        main(["expiry-notices", "--as-of", "2026-01-01T00:00:00", "--within-days", "3"])
