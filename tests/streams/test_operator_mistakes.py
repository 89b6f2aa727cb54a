"""An operator's mistake ends a command with one line on standard error and a non-zero
status: never a traceback, never a process left behind.

Each case runs the real ``loyalty`` command in its own process.
"""

from __future__ import annotations

import json
import signal
import time

import pytest

from ledger.application import LoyaltyLedger
from ledger.commands import command_from_event
from tests.support import builders as b
from tests.support.processes import assert_all_gone, descendants, has_descendant, loyalty, spawned
from tests.support.services import unique_database_name
from tests.support.streamgen import generate_events

UNREACHABLE_DATABASE = "postgresql://loyalty:secret@127.0.0.1:9/loyalty"
UNREACHABLE_KAFKA = "127.0.0.1:9"
FAST_FAILURE = {"LOYALTY_DATABASE_CONNECT_TIMEOUT_S": "2", "LOYALTY_KAFKA_CONNECT_TIMEOUT_MS": "2000"}
UNREACHABLE_WITHIN_S = 15  # the connect timeouts above plus the interpreter's start


def assert_one_line_error(result, status: int | None = None) -> str:
    assert result.returncode != 0 and (status is None or result.returncode == status), result
    assert "Traceback" not in result.stderr, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    return lines[0]


def test_an_unknown_consumer_path_is_one_line_naming_the_choices(tmp_path):
    result = loyalty("worker", "--bootstrap-servers", UNREACHABLE_KAFKA, "--database-url",
                     UNREACHABLE_DATABASE, cwd=tmp_path, env={"LOYALTY_CONSUMER_PATH": "kafka-streams"},
                     timeout_s=30)
    line = assert_one_line_error(result, 2)
    assert "LOYALTY_CONSUMER_PATH must be one of direct, faust, not 'kafka-streams'" in line


@pytest.fixture
def input_file(tmp_path):
    path = tmp_path / "in.jsonl"
    path.write_text(json.dumps(b.birthday("M-1", "2025-01-01T10:00:00Z")) + "\n")
    return path


@pytest.mark.parametrize("args, phrase", [
    (["process", "nope.jsonl", "--out", "out"], "No such file or directory: nope.jsonl"),
    (["process", "{input}", "--out", "/proc/nope"], "/proc/nope"),
    (["process", "{input}", "--out", "out", "--workers", "0"], "--workers: 0 is not allowed"),
    (["check-program", "nope.toml"], "nope.toml"),
    (["check-program", "{latin1}"], "not UTF-8"),
    (["member"], "required: MEMBER"),
    (["verify", "--no-such-flag"], "unrecognized arguments: --no-such-flag"),
    (["replay", "--batch-notifications-max", "many"], "'many' is not a whole number"),
    (["frobnicate"], "invalid choice: 'frobnicate'"),
])
def test_a_mistake_is_one_line_and_a_non_zero_status(tmp_path, input_file, args, phrase):
    latin1 = tmp_path / "latin1.toml"
    latin1.write_bytes('[program]\nname = "caf\xe9"\n'.encode("latin-1"))
    args = [arg.format(input=input_file, latin1=latin1) for arg in args]
    line = assert_one_line_error(loyalty(*args, cwd=tmp_path, timeout_s=30))
    assert phrase in line


@pytest.mark.parametrize("args", [["member", "M-1"], ["verify"], ["replay", "--no-progress"],
                                  ["export", "balances"], ["close-year", "2025"], ["setup", "--no-topics"]])
def test_an_unreachable_database_fails_within_the_connect_timeout(tmp_path, args):
    started = time.monotonic()
    result = loyalty(*args, "--database-url", UNREACHABLE_DATABASE, cwd=tmp_path, env=FAST_FAILURE)
    line = assert_one_line_error(result, status=1)
    assert time.monotonic() - started < UNREACHABLE_WITHIN_S
    assert "the database cannot be reached" in line and "secret" not in line


@pytest.mark.parametrize("args", [["produce", "{input}"], ["setup", "--database-url", UNREACHABLE_DATABASE]])
def test_an_unreachable_kafka_fails_within_the_connect_timeout(tmp_path, input_file, args):
    started = time.monotonic()
    args = [arg.format(input=input_file) for arg in args]
    result = loyalty(*args, "--bootstrap-servers", UNREACHABLE_KAFKA, cwd=tmp_path, env=FAST_FAILURE)
    assert "Kafka cannot be reached" in assert_one_line_error(result, status=1)
    assert time.monotonic() - started < UNREACHABLE_WITHIN_S


@pytest.fixture
def store_with_a_member(embedded_pg):
    name = unique_database_name("operator_mistakes")
    settings = embedded_pg.create_database(name)
    ledger = LoyaltyLedger(env=settings.env)
    ledger.apply_in_order([command_from_event(b.purchase("M-1", "2025-03-01T10:00:00Z", 5000)),
                           command_from_event(b.birthday("M-1", "2025-06-01T10:00:00Z"))])
    version = ledger.find_account("M-1").version
    ledger.close()
    yield settings.url, version
    embedded_pg.drop_database(name)


def test_a_version_that_does_not_exist_is_refused(tmp_path, store_with_a_member):
    url, version = store_with_a_member
    line = assert_one_line_error(loyalty("member", "M-1", "--version", "999", "--database-url", url,
                                         cwd=tmp_path), status=2)
    assert f"has versions 1 to {version}; there is no version 999" in line
    shown = loyalty("member", "M-1", "--version", str(version), "--database-url", url, cwd=tmp_path)
    assert shown.returncode == 0, shown.stderr


def test_a_year_without_facts_is_not_closed(tmp_path, store_with_a_member):
    url, _ = store_with_a_member
    result = loyalty("close-year", "1999", "--database-url", url, cwd=tmp_path)
    assert "the ledger has no facts in 1999 (its facts' years: from 2025 to 2025)" in \
        assert_one_line_error(result, status=2)
    assert result.stdout == ""
    closed = loyalty("close-year", "2025", "--database-url", url, cwd=tmp_path)
    assert closed.returncode == 0 and '"year-closed:2025:M-1"' in closed.stdout


def test_an_unwritable_export_file_is_one_line(tmp_path, store_with_a_member):
    url, _ = store_with_a_member
    result = loyalty("export", "ledger", "--out", "/proc/nope/ledger.jsonl", "--database-url", url,
                     cwd=tmp_path)
    assert "/proc/nope/ledger.jsonl" in assert_one_line_error(result, status=2)


def test_version_flag_prints_the_version(tmp_path):
    result = loyalty("--version", cwd=tmp_path)
    assert result.returncode == 0 and result.stdout.startswith("loyalty ")


@pytest.mark.parametrize("sig", [signal.SIGHUP, signal.SIGTERM])
def test_a_closed_terminal_stops_process_like_sigterm_leaving_nothing_behind(tmp_path, sig):
    path = tmp_path / "in.jsonl"
    path.write_text("\n".join(json.dumps(event) for event in generate_events(seed=5, count=20_000)))
    with spawned("process", str(path), "--out", str(tmp_path / "out"), cwd=tmp_path) as command:
        deadline = time.monotonic() + 120
        while not has_descendant(command.process.pid, "worker"):
            assert time.monotonic() < deadline and command.process.poll() is None, command.output()
            time.sleep(0.2)
        started = descendants(command.process.pid)
        assert command.stop(sig) == 130, command.output()[-2000:]
        assert_all_gone(started)
        assert "Traceback" not in command.output()


def test_output_without_a_terminal_is_plain_and_uncut(tmp_path, store_with_a_member):
    url, _ = store_with_a_member
    shown = loyalty("member", "M-1", "--database-url", url, cwd=tmp_path)  # stdout is a pipe
    assert shown.returncode == 0, shown.stderr
    assert "…" not in shown.stdout and "\x1b[" not in shown.stdout
    assert max(len(line) for line in shown.stdout.splitlines()) > 80  # wide rows stay whole


def test_every_command_and_argument_has_a_one_line_help():
    import argparse

    from streams.cli import build_parser

    parser = build_parser()
    assert "streams/" not in parser.description  # written for operators, not developers
    [commands] = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    helps = {action.dest: action.help for action in commands._choices_actions}
    for name, command in commands.choices.items():
        assert helps.get(name) and command.description == helps[name], name
        for action in command._actions:
            if not isinstance(action, argparse._HelpAction):
                assert action.help and "\n" not in action.help, (name, action.dest)
