"""Erasure tested as an attacker would (section 13), on the embedded PostgreSQL.

A member enrolls with a profile, updates it, earns (pending points
included), takes on debt elsewhere in the story, receives a transfer after
erasure (it bounces back), and is erased. Then, after ``VACUUM FULL``:

- no key left in the key tables decrypts any of the member's ciphertexts;
- the member's name, e-mail, phone and birth date are found in no row of any
  table of the database (every column read as raw text or bytes);
- no stored fingerprint of the member can be recomputed from guessed values,
  trying every birth date of a century, unkeyed and under every remaining key;
- the points history is intact, ``verify`` passes, and a replay gives the same
  read models.
"""

from __future__ import annotations

from datetime import date, timedelta

import psycopg
import pytest

from ledger.application import LoyaltyLedger
from ledger.commands import fingerprint_of
from ledger.domain import account_id
from ledger.postgres.member_keys import DEAD_LETTER_KEYS_TABLE, MEMBER_KEYS_TABLE
from ledger.privacy import ProfileUnreadable, keyed_fingerprint, unseal
from ledger.program import RETAIL_EXAMPLE_PROGRAM_PATH, load_program
from projections.balances import BALANCES
from tests.projections.steps import check_verify_and_replay, database_url, projected
from tests.support import builders as b
from tests.support import member_builders as mb
from tests.support.ledger_steps import apply

VICTIM = "M-victim"
SECRET = {"name": "Zebulon Quartermaine", "email": "zebulon.q@example.org",
          "phone": "+44 7700 900123", "birth_date": "1987-02-28"}
UPDATED_PHONE = "+44 7700 900999"
CENTURY_DAYS = 36_525


def secrets() -> list[bytes]:
    return [value.encode() for value in [*SECRET.values(), UPDATED_PHONE]]


@pytest.fixture
def erased_story(pg_env):
    ledger = LoyaltyLedger(env=pg_env, program=load_program(RETAIL_EXAMPLE_PROGRAM_PATH))
    enrollment = mb.enrolled(VICTIM, "2025-03-01T10:00:00Z", profile=SECRET, marketing=True,
                             event_id="crm-enroll-victim")
    apply(ledger,
          enrollment,
          mb.enrolled("M-bystander", "2025-03-01T10:00:00Z", profile={"name": "Bystander"}),
          b.purchase(VICTIM, "2025-03-02T10:00:00Z", 40_000),                  # pending
          b.birthday(VICTIM, "2025-03-03T10:00:00Z"),                           # active
          b.redemption(VICTIM, "2025-03-04T10:00:00Z", 150),
          mb.profile_updated(VICTIM, "2025-03-05T10:00:00Z", {"phone": UPDATED_PHONE}),
          mb.nps(VICTIM, "2025-03-06T10:00:00Z", 4),
          b.birthday("M-bystander", "2025-03-01T11:00:00Z"),
          mb.erased(VICTIM, "2025-03-07T10:00:00Z"),
          b.transfer("M-bystander", "2025-03-08T10:00:00Z", VICTIM, 100),      # bounces back
          b.purchase(VICTIM, "2025-03-09T10:00:00Z", 5000))                    # account_closed
    yield ledger, pg_env, enrollment
    ledger.close()


def vacuum_full(env: dict) -> None:
    with psycopg.connect(database_url(env), autocommit=True) as conn:
        conn.execute("VACUUM FULL")
        conn.execute("CHECKPOINT")


def every_value(env: dict):
    """Every value of every row of every user table, as bytes (a pg_dump-like scan)."""
    with psycopg.connect(database_url(env)) as conn:
        tables = conn.execute(
            "SELECT table_schema, table_name FROM information_schema.tables "
            "WHERE table_type = 'BASE TABLE' "
            "AND table_schema NOT IN ('pg_catalog', 'information_schema')").fetchall()
        assert {"balances", "tiers", MEMBER_KEYS_TABLE} <= {table for _, table in tables}
        for schema, table in tables:
            for row in conn.execute(psycopg.sql.SQL("SELECT * FROM {}.{}").format(
                    psycopg.sql.Identifier(schema), psycopg.sql.Identifier(table))):
                for value in row:
                    yield (bytes(value) if isinstance(value, (bytes, memoryview))
                           else str(value).encode())


def remaining_keys(env: dict) -> list[bytes]:
    with psycopg.connect(database_url(env)) as conn:
        members = conn.execute(f"SELECT key FROM {MEMBER_KEYS_TABLE}").fetchall()
        days = conn.execute(f"SELECT key FROM {DEAD_LETTER_KEYS_TABLE}").fetchall()
    return [bytes(row[0]) for row in [*members, *days]]


def test_after_erasure_no_key_opens_the_ciphertexts_and_no_table_holds_the_profile(erased_story):
    ledger, env, _ = erased_story
    sealed = [fact.profile for fact in ledger.events.get(account_id(VICTIM))
              if getattr(fact, "profile", None)]
    assert len(sealed) == 2
    with projected(ledger, env):  # the read models are in the database too
        pass
    vacuum_full(env)
    keys = remaining_keys(env)
    assert len(keys) == 1  # the bystander's
    for key in keys:
        for token in sealed:
            with pytest.raises(ProfileUnreadable):
                unseal(key, VICTIM, token)
    values = list(every_value(env))
    assert any(VICTIM.encode() in value for value in values)  # the scan sees what is there
    assert any(b"LoyaltyAccount.PointsForfeited" in value for value in values)
    found = [value for value in values for secret in secrets() if secret in value]
    assert found == []
    assert ledger.member_profile(VICTIM) is None
    assert ledger.member_profile("M-bystander") == {"name": "Bystander"}


def test_no_stored_fingerprint_is_recomputable_from_a_century_of_birth_dates(erased_story):
    ledger, env, enrollment = erased_story
    stored = {fact.fingerprint for fact in ledger.events.get(account_id(VICTIM))
              if getattr(fact, "fingerprint", None)}
    keys = remaining_keys(env)
    rest = fingerprint_of({name: value for name, value in enrollment.items() if name != "profile"})
    first_day = date(1925, 1, 1)
    for offset in range(CENTURY_DAYS):
        guess = {**SECRET, "birth_date": (first_day + timedelta(days=offset)).isoformat()}
        candidates = {fingerprint_of({**enrollment, "profile": guess})}
        candidates |= {keyed_fingerprint(key, rest, guess) for key in keys}
        assert not candidates & stored, guess["birth_date"]


def test_the_points_history_stays_verify_passes_and_replay_gives_the_same_rows(erased_story):
    ledger, env, _ = erased_story
    closed = ledger.find_account(VICTIM)
    assert closed.lifetime_forfeited == closed.lifetime_earned - closed.lifetime_redeemed > 0
    kinds = [entry.type for entry in ledger.history(VICTIM)]
    assert {"points_earned", "birthday_rewarded", "points_redeemed", "member_erased",
            "points_forfeited", "transfer_credit_rejected", "purchase_rejected"} <= set(kinds)
    bystander = ledger.find_account("M-bystander")
    assert (bystander.balance, bystander.lifetime_transferred_in) == (200, 100)
    vacuum_full(env)
    with projected(ledger, env) as models:
        check_verify_and_replay(ledger, models)
        row = [r for r in models.view("balances").rows(BALANCES) if r["member_id"] == VICTIM][0]
    assert (row["balance"], row["pending"], row["lifetime_forfeited"]) == (
        0, 0, closed.lifetime_forfeited)


def test_the_auditors_view_shows_the_profile_only_with_the_flag(pg_env, capsys):
    import orjson

    from tests.projections.steps import run_cli
    ledger = LoyaltyLedger(env=pg_env)
    apply(ledger, mb.enrolled("M-audited", "2025-01-01T10:00:00Z", profile=SECRET))
    ledger.close()
    url = database_url(pg_env)
    assert run_cli("member", "M-audited", "--database-url", url, "--json") == 0
    plain = capsys.readouterr().out
    assert "profile" not in orjson.loads(plain) and SECRET["email"] not in plain
    assert run_cli("member", "M-audited", "--database-url", url, "--json", "--profile") == 0
    assert orjson.loads(capsys.readouterr().out)["profile"] == SECRET
    assert run_cli("member", "M-audited", "--database-url", url, "--profile") == 0
    assert SECRET["name"] in capsys.readouterr().out
