"""The stream pipeline against the real (embedded) broker and PostgreSQL.

A stream with exact redeliveries, many members over 8 partitions, refunds,
referrals whose referrer lives on another partition, and bad lines goes
through ``loyalty worker`` processes; every member's values must equal the
ledger core's when the same valid events are applied directly in order.
"""

from __future__ import annotations

import base64
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from ledger.domain import LoyaltyAccount
from streams.process import run_pipeline
from streams.producer import produce_lines
from streams.settings import CONSUMER_PATHS, Settings
from streams.topics import ensure_topics
from streams.validation import validate_outbound
from streams.worker import open_ledger
from tests.support.pipeline import (CONSUME_TIMEOUT_S, assert_same_as_direct, consume_all,
                                    run_with_a_worker_killed)
from tests.support.services import lane_settings, own_topics
from tests.support.streamgen import generate_events, with_faults

PARTITIONS = 8
EVENTS = 3000
SIGKILL_EVENTS = 8000


def unique_settings(kafka_bootstrap: str, embedded_pg, label: str, **overrides) -> Settings:
    suffix = uuid.uuid4().hex[:8]
    database = embedded_pg.create_database(f"{label}_{suffix}")
    return Settings(
        bootstrap_servers=kafka_bootstrap, database_url=database.url, partitions=PARTITIONS,
        **own_topics(label), **lane_settings(), batch_events_max=200, batch_wait_ms=100, **overrides,
    )


def write_input(tmp_path: Path, lines: list[str]) -> Path:
    path = tmp_path / "input.jsonl"
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture(scope="module")
def pipeline_run(kafka_bootstrap, embedded_pg, tmp_path_factory):
    """One run of the whole stream through two workers, shared by the checks below."""
    events = generate_events(seed=7, count=EVENTS)
    lines, bad = with_faults(events, seed=7, bad_every=400)
    settings = unique_settings(kafka_bootstrap, embedded_pg, "pipeline")
    logs = tmp_path_factory.mktemp("logs")
    ledger, _ = run_pipeline(write_input(logs, lines), settings, 2, logs)
    yield settings, ledger, events, bad
    ledger.close()


def test_stream_results_equal_direct_application(pipeline_run):
    settings, ledger, events, _ = pipeline_run
    assert_same_as_direct(ledger, events)
    cross = [e for e in events if e["type"] == "referral" and "-a" in e["referrer_member_id"]]
    assert cross, "the stream has referrals to ambassadors on other partitions"
    kinds = {type(fact).__name__ for fact in ledger.fact_log.facts()}
    assert "ReferrerCredited" in kinds
    assert "ReferrerCapped" not in kinds, "the cap's outcome depends on arrival order (README)"


def test_dead_letters_equal_the_bad_lines(pipeline_run):
    settings, ledger, _, bad = pipeline_run
    letters = [fact.envelope for fact in ledger.fact_log.facts() if hasattr(fact, "envelope")]
    assert sorted(base64.b64decode(l["value_base64"]).decode() for l in letters) == sorted(bad)
    assert all(l["source_topic"] == settings.events_topic for l in letters)


def test_a_subscriber_receives_every_tier_change_valid_and_deduplicable(pipeline_run):
    settings, ledger, _, _ = pipeline_run
    expected = {(f.member_id, f.originator_version) for f in ledger.fact_log.facts()
                if isinstance(f, LoyaltyAccount.TierChanged)}
    assert expected, "the stream changes some tiers"
    received = consume_all(settings.bootstrap_servers, settings.tier_changes_topic, len(expected))
    by_id = {}
    for change in received:
        validate_outbound("tier_changed", change)
        by_id[change["event_id"]] = change
    assert {(c["member_id"], c["ledger_position"]) for c in by_id.values()} == expected


@pytest.mark.parametrize("consumer_path", CONSUMER_PATHS)
def test_sigkill_of_a_worker_mid_stream_changes_nothing(kafka_bootstrap, embedded_pg, tmp_path, consumer_path):
    events = generate_events(seed=11, count=SIGKILL_EVENTS)
    lines, _ = with_faults(events, seed=11, bad_every=700)
    settings = unique_settings(kafka_bootstrap, embedded_pg, "sigkill", consumer_path=consumer_path)
    ensure_topics(settings)
    ledger = open_ledger(settings)
    produced = produce_lines(settings.bootstrap_servers, settings.events_topic,
                             [line.encode() for line in lines])
    run_with_a_worker_killed(ledger, settings, produced, tmp_path)
    assert_same_as_direct(ledger, events)
    ledger.close()


README = Path(__file__).resolve().parents[2] / "README.md"
EXAMPLE_MARKER = "<!-- tier-subscriber-example -->"
EXAMPLE_IDLE_STOP_MS = 8000


def readme_example() -> str:
    after = README.read_text().split(EXAMPLE_MARKER, 1)[1]
    return after.split("```python\n", 1)[1].split("```", 1)[0]


def test_the_readme_tier_subscriber_example_prints_every_tier_change_once(pipeline_run, tmp_path):
    settings, ledger, _, _ = pipeline_run
    expected = sorted(f"{f.member_id} {f.from_tier} -> {f.to_tier} {f.reason}"
                      for f in ledger.fact_log.facts() if isinstance(f, LoyaltyAccount.TierChanged))
    script = tmp_path / "subscriber.py"
    script.write_text(readme_example())
    env = {**os.environ, "LOYALTY_BOOTSTRAP_SERVERS": settings.bootstrap_servers,
           "LOYALTY_TIER_CHANGES_TOPIC": settings.tier_changes_topic,
           "CONSUMER_GROUP": f"readme-{uuid.uuid4().hex[:8]}",
           "STOP_WHEN_IDLE_MS": str(EXAMPLE_IDLE_STOP_MS)}
    run = subprocess.run([sys.executable, str(script)], env=env, capture_output=True, text=True,
                         timeout=CONSUME_TIMEOUT_S * 2)
    assert run.returncode == 0, run.stderr[-2000:]
    assert sorted(run.stdout.splitlines()) == expected
