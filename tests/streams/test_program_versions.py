"""A worker records its program version in the event store and refuses an older one."""

from __future__ import annotations

import uuid

import pytest

from ledger.program import DEFAULT_PROGRAM_PATH
from streams.settings import Settings
from streams.worker import EXIT_PROGRAM_REFUSED, open_ledger, record_program_version


def test_a_worker_refuses_a_program_older_than_the_stores_newest(embedded_pg, tmp_path, capsys):
    database = embedded_pg.create_database(f"versions_{uuid.uuid4().hex[:8]}")
    newer = tmp_path / "v2.toml"
    newer.write_text(DEFAULT_PROGRAM_PATH.read_text().replace(
        'name = "default"', 'name = "default"\nversion = 2'))
    # The first worker on version 2 records it
    record_program_version(Settings(database_url=database.url, program_file=str(newer)))
    ledger = open_ledger(Settings(database_url=database.url))
    assert ledger.program_for(2).version == 2
    ledger.close()
    # A worker started with the default program (version 1) says why and exits
    with pytest.raises(SystemExit) as stopped:
        record_program_version(Settings(database_url=database.url))
    assert stopped.value.code == EXIT_PROGRAM_REFUSED
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "refusing to start" in err and "lower than version 2" in err
