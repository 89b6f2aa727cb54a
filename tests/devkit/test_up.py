"""``loyalty up``: a local stack other commands find through ``DIR/env``.

Started as a real process: it prints the ``export`` lines and ``ready``;
``loyalty produce`` and ``loyalty member`` run from the same directory use
it without flags; SIGTERM and SIGHUP stop everything it started. A second
start on the same store (the in-memory broker's topics are new) refuses
unless told ``--fresh`` or ``--keep-ledger``; and a topic recreated under
running workers stops them with the reason instead of skipping its events.
"""

from __future__ import annotations

import contextlib
import json
import re
import signal
import stat
import time

import httpx
import psutil
import pytest
from kafka import KafkaAdminClient
from kafka.admin import NewTopic

from ledger.application import LoyaltyLedger
from ledger.commands import command_from_event
from ledger.settings import read_env_file
from streams.devkit.services import stack_store_dir
from tests.support import builders as b
from tests.support.processes import assert_all_gone, loyalty, spawned
from tests.support.streamgen import generate_events

APPLIED_WAIT_S = 90
HTTP_TIMEOUT_S = 30
EVENTS = 300


def write_events(path, events) -> None:
    path.write_text("\n".join(json.dumps(event) for event in events) + "\n")


def direct_version(events, member: str) -> int:
    ledger = LoyaltyLedger()
    ledger.apply_in_order([command_from_event(event) for event in events])
    return ledger.find_account(member).version


def wait_for_member(cwd, member: str, version: int) -> dict:
    """``loyalty member MEMBER --json`` once it shows ``version`` (the workers applied everything)."""
    deadline = time.monotonic() + APPLIED_WAIT_S
    while True:
        shown = loyalty("member", member, "--json", cwd=cwd)
        view = json.loads(shown.stdout) if shown.returncode == 0 else {}
        if view.get("version") == version:
            return view
        assert time.monotonic() < deadline, (shown.returncode, shown.stderr[-2000:], view.get("version"))
        time.sleep(1)


@pytest.fixture
def stack_dir(tmp_path):
    yield tmp_path / ".loyalty"
    import shutil

    shutil.rmtree(stack_store_dir(tmp_path / ".loyalty").parent, ignore_errors=True)


def loyalty_children(up) -> list[tuple[str, ...]]:
    """The ``loyalty worker`` and ``loyalty relay`` processes under ``up``, by their arguments."""
    up.remember_descendants()
    found = []
    for process in up.seen:
        with contextlib.suppress(psutil.Error):
            command = process.cmdline()
            if "streams.cli" in command and command[command.index("streams.cli") + 1] in ("worker", "relay"):
                found.append(tuple(command[command.index("streams.cli") + 1:]))
    return found


def test_up_serves_produce_and_member_then_stops_on_sigterm_and_sighup(tmp_path, stack_dir):
    events = generate_events(seed=17, count=EVENTS)
    write_events(tmp_path / "in.jsonl", events)
    direct = LoyaltyLedger()
    direct.apply_in_order([command_from_event(event) for event in events])
    member = events[0]["member_id"]
    with spawned("up", cwd=tmp_path) as up:
        up.wait_for_line("ready")
        # the relay runs as its own process, beside workers that do not run it
        assert sorted(loyalty_children(up)) == [("relay",), ("worker",), ("worker",)]
        assert (stack_dir / "logs" / "relay.log").exists()
        exported = read_env_file(stack_dir / "env")
        assert {"LOYALTY_BOOTSTRAP_SERVERS", "LOYALTY_DATABASE_URL", "LOYALTY_API_URL",
                "LOYALTY_API_KEY"} <= set(exported)
        for name, value in exported.items():
            assert f"export {name}=" in up.output()
        produced = loyalty("produce", "in.jsonl", cwd=tmp_path)
        assert produced.returncode == 0, produced.stderr
        view = wait_for_member(tmp_path, member, direct.find_account(member).version)
        assert view["balance"]["balance"] == direct.find_account(member).balance
        # the stack's till API answers with the stack's key, and only with it
        assert stat.S_IMODE((stack_dir / "env").stat().st_mode) == 0o600  # the key is in it
        api_url, api_key = exported["LOYALTY_API_URL"], exported["LOYALTY_API_KEY"]
        answer = httpx.get(f"{api_url}/v1/members/{member}", timeout=HTTP_TIMEOUT_S,
                           headers={"Authorization": f"Bearer {api_key}"})
        assert answer.status_code == 200, answer.text
        assert answer.json()["balance"] == direct.find_account(member).balance
        assert httpx.get(f"{api_url}/v1/members/{member}", timeout=HTTP_TIMEOUT_S).status_code == 401
        # the operator console is announced with its key and answers at that address
        assert f"# console: {api_url}/console  (sign in with the key {api_key})" in up.output()
        assert "Sign in" in httpx.get(f"{api_url}/console/sign-in", timeout=HTTP_TIMEOUT_S).text
        assert up.stop(signal.SIGTERM) == 0, up.output()[-2000:]
        assert_all_gone(up.seen)
    assert not (stack_dir / "env").exists()
    # the store is kept: a second start keeps the ledger when told so, and stops on SIGHUP;
    # --relay-in-worker: the previous design, the relay in the first worker
    with spawned("up", "--keep-ledger", "--relay-in-worker", cwd=tmp_path) as up:
        up.wait_for_line("ready")
        assert sorted(loyalty_children(up)) == [("worker",), ("worker", "--relay")]
        assert loyalty("member", member, "--json", cwd=tmp_path).returncode == 0
        assert up.stop(signal.SIGHUP) == 0, up.output()[-2000:]
        assert_all_gone(up.seen)
    assert not (stack_dir / "env").exists()


def test_up_on_a_store_that_applied_earlier_topics_says_how_to_go_on(tmp_path, stack_dir):
    write_events(tmp_path / "in.jsonl", [b.birthday("M-1", "2025-01-01T10:00:00Z")])
    with spawned("up", "--workers", "1", cwd=tmp_path) as up:
        up.wait_for_line("ready")
        assert loyalty("produce", "in.jsonl", cwd=tmp_path).returncode == 0
        wait_for_member(tmp_path, "M-1", direct_version([b.birthday("M-1", "2025-01-01T10:00:00Z")], "M-1"))
        assert up.stop() == 0
    with spawned("up", cwd=tmp_path) as again:
        assert again.process.wait(120) == 1
        errors = [line for line in again.output().splitlines() if line.strip()]
        assert len(errors) == 1 and "--fresh" in errors[0] and "--keep-ledger" in errors[0], errors
        assert_all_gone(again.seen)
    with spawned("up", "--fresh", "--workers", "1", cwd=tmp_path) as fresh:
        fresh.wait_for_line("ready")
        assert loyalty("member", "M-1", cwd=tmp_path).returncode == 2  # an empty ledger
        assert fresh.stop() == 0


def test_a_recreated_events_topic_stops_the_workers_with_the_reason(tmp_path, stack_dir):
    first = [b.birthday(f"M-{n}", "2025-01-01T10:00:00Z") for n in range(40)]
    write_events(tmp_path / "first.jsonl", first)
    with spawned("up", cwd=tmp_path) as up:
        up.wait_for_line("ready")
        assert loyalty("produce", "first.jsonl", cwd=tmp_path).returncode == 0
        wait_for_member(tmp_path, "M-39", direct_version(first, "M-39"))
        env = read_env_file(stack_dir / "env")
        admin = KafkaAdminClient(bootstrap_servers=env["LOYALTY_BOOTSTRAP_SERVERS"])
        admin.delete_topics(["loyalty.events"])
        time.sleep(1)
        admin.create_topics([NewTopic("loyalty.events", int(env["LOYALTY_PARTITIONS"]), 1)])
        admin.close()
        later = [b.purchase(f"M-{n}", "2025-02-01T10:00:00Z", 5000) for n in range(40)]
        write_events(tmp_path / "later.jsonl", later)
        # The workers may see the new topic and stop the stack before or after this produce
        # (then its broker is gone: status 1); either way nothing of it may be applied.
        produced = loyalty("produce", "later.jsonl", cwd=tmp_path, env=env)
        assert produced.returncode in (0, 1), produced.stderr[-2000:]
        assert up.process.wait(APPLIED_WAIT_S) == 1, up.output()[-2000:]
        assert re.search(r"worker-\d exited with status 4", up.output())
        logs = "".join(path.read_text() for path in (stack_dir / "logs").glob("worker-*.log"))
        assert "was recreated" in logs and "loyalty setup --accept-new-topics" in logs
        assert_all_gone(up.seen)
    with spawned("up", "--keep-ledger", "--workers", "1", cwd=tmp_path) as audit:
        audit.wait_for_line("ready")
        shown = json.loads(loyalty("member", "M-0", "--json", cwd=tmp_path).stdout)
        assert shown["version"] == direct_version(first, "M-0"), "nothing of the new topic applied"
        assert audit.stop() == 0
