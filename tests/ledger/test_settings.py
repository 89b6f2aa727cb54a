"""``LedgerSettings``: one configuration surface, the program file resolved in one place."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from ledger.application import LoyaltyLedger
from ledger.program import DEFAULT_PROGRAM_PATH
from ledger.settings import LedgerSettings
from streams.settings import Settings

OTHER_NAME = "other-program"


@pytest.fixture
def other_program(tmp_path: Path) -> str:
    path = tmp_path / "other.toml"
    text = DEFAULT_PROGRAM_PATH.read_text(encoding="utf-8")
    path.write_text(text.replace('name = "', f'name = "{OTHER_NAME}" #', 1), encoding="utf-8")
    return str(path)


def test_variables_then_flags_override_the_defaults():
    environ = {"LOYALTY_METRICS_PORT": "9100", "LOYALTY_FOLLOW_POLL_INTERVAL_MS": "5",
               "LOYALTY_DATABASE_URL": ""}
    settings = LedgerSettings.from_env(environ, follow_poll_interval_ms=7, database_url=None)
    assert (settings.metrics_port, settings.follow_poll_interval_ms) == (9100, 7)
    assert settings.database_url is None  # an empty variable is unset
    assert settings.snapshot_interval_events == 100


def test_the_stream_settings_are_the_ledger_settings_plus_kafka():
    settings = Settings.from_env({"LOYALTY_SNAPSHOT_INTERVAL_EVENTS": "7", "LOYALTY_PARTITIONS": "3"})
    assert isinstance(settings, LedgerSettings)
    assert (settings.snapshot_interval_events, settings.partitions) == (7, 3)
    assert settings.to_env()["LOYALTY_SNAPSHOT_INTERVAL_EVENTS"] == "7"


def test_secrets_never_show():
    settings = Settings(database_url="postgresql://loyalty:hunter2@db/loyalty", sasl_password="s3")
    for shown in (repr(settings), repr(LedgerSettings(database_url=settings.database_url))):
        assert "hunter2" not in shown and "s3" not in shown and "loyalty:***@db" in shown


def test_the_program_is_the_file_named_else_the_default(other_program, monkeypatch):
    assert LedgerSettings(program_file=other_program).program().name == OTHER_NAME
    assert LedgerSettings().program().name != OTHER_NAME
    monkeypatch.setenv("LOYALTY_PROGRAM_FILE", other_program)
    assert LedgerSettings.from_env().program().name == OTHER_NAME
    assert LoyaltyLedger().program.name == OTHER_NAME  # the process's variable
    default = LedgerSettings.over_process_env({"LOYALTY_PROGRAM_FILE": str(DEFAULT_PROGRAM_PATH)})
    assert default.program().name != OTHER_NAME       # an application's env wins


def test_the_store_env_carries_the_ledger_settings_and_exports_libpq_variables(monkeypatch):
    monkeypatch.setenv("PGSSLMODE", "prefer")  # restored after the test, whatever is exported
    settings = LedgerSettings(database_url="postgresql://u@db.internal/loyalty?sslmode=verify-full",
                              program_file="p.toml", snapshot_interval_events=9)
    env = settings.store_env()
    assert (env["POSTGRES_HOST"], env["POSTGRES_DBNAME"]) == ("db.internal", "loyalty")
    assert env["LOYALTY_PROGRAM_FILE"] == "p.toml"
    assert env["LOYALTY_SNAPSHOT_INTERVAL_EVENTS"] == "9"
    assert os.environ["PGSSLMODE"] == "verify-full"
    with pytest.raises(ValueError, match="LOYALTY_DATABASE_URL"):
        LedgerSettings().store_env()
