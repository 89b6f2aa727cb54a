"""The fault campaign: SIGKILL workers, the outbox relay and the projection follower at
random moments of a stream, restart each, and end exactly where a fault-free run ends.

Three ``loyalty worker`` processes (the first also runs the outbox relay) in
one consumer group on 12 partitions and one ``loyalty replay --resume
--follow`` process take a stream with exact redeliveries, bad lines and
referrals whose referrer lives on another partition. The stream is produced
in chunks, like a POS feed; between chunks a random victim (a worker, the
relay's worker, or the follower) gets SIGKILL at a random moment and is
restarted. At the end:

- every read model's digest (``projections.runner.read_model_digests``)
  equals the reference's: the same events applied directly, in order, on an
  in-memory ledger, with the read models caught up on a second database;
- the ``tier_changed`` messages consumed from the topic, deduplicated by
  ``event_id``, are exactly the reference's tier changes;
- no event lost, none applied twice, every bad line dead-lettered once;
- ``loyalty verify`` exits 0.

The short campaign runs in the normal suite. The long one (50,000 events,
24 kills) is marked ``slow`` and runs on demand: ``pytest -m slow
tests/reliability/test_campaign.py`` or ``LOYALTY_LONG_FAULTS=1 pytest``
(docs/RELIABILITY.md). Its figures are printed and written to
``$LOYALTY_CAMPAIGN_REPORT`` if set.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path

import pytest
from kafka.partitioner.default import murmur2

from ledger.application import LoyaltyLedger
from ledger.commands import command_from_event
from ledger.domain import LoyaltyAccount, fact_type
from ledger.postgres.urls import eventsourcing_env_from_url
from ledger.wire import tier_changed_document
from projections.runner import catch_up, open_read_models, read_model_digests
from streams.process import wait_until_processed
from streams.producer import produce_lines
from streams.topics import ensure_topics
from streams.worker import open_ledger
from tests.reliability.harness import Fleet, campaign_stream, long_faults_requested, pipeline_settings  # noqa: F401
from tests.support.streamgen import with_faults
from tests.support.pipeline import consume_all, progress, total_messages

pytestmark = pytest.mark.broker

PARTITIONS = 12
WORKERS = 3
READ_MODEL_BATCH_NOTIFICATIONS_MAX = 5000
PROCESSED_TIMEOUT_S = 1200
FOLLOWER_CATCH_UP_TIMEOUT_S = 300
VERIFY_TIMEOUT_S = 600
KILL_AT_FRACTION = (0.05, 0.9)  # a kill comes when a random fraction of the new chunk is applied
KILL_WAIT_S_MAX = 60.0          # or after this long, whatever was applied by then
RESTART_DELAY_S_MAX = 1.0     # and its victim is restarted up to this long after it died
REPORT_ENV = "LOYALTY_CAMPAIGN_REPORT"
OUTCOMES = {  # README "The ledger in one page", step 4: one outcome fact per applied event
    "points_earned", "purchase_rejected", "points_reversed", "refund_rejected", "points_redeemed",
    "redemption_rejected", "birthday_rewarded", "birthday_already_rewarded",
    "referral_registered", "referral_rejected", "referrer_credited", "referrer_capped",
    "year_closed", "year_already_closed",
}


@dataclass(frozen=True)
class Campaign:
    seed: int
    events: int
    members: int
    kills: int
    duplicate_rate: float = 0.03
    bad_every: int = 250


SHORT = Campaign(seed=41, events=8000, members=150, kills=6)
LONG = Campaign(seed=43, events=50_000, members=600, kills=24)


@dataclass
class Figures:
    """What a campaign did and found (docs/RELIABILITY.md quotes a long run's)."""

    events: int = 0
    lines_produced: int = 0
    duplicates_sent: int = 0
    bad_lines: int = 0
    kills: int = 0
    kills_by_role: dict[str, int] = field(default_factory=dict)
    kills_mid_stream: int = 0
    restarts: int = 0
    dead_letters: int = 0
    events_lost: int = 0
    events_doubled: int = 0
    tier_changes: int = 0
    tier_change_messages: int = 0      # consumed, before dedupe (at least once)
    cross_partition_credits: int = 0
    read_models_equal: bool = False
    verify_exit_status: int | None = None
    seconds: float = 0.0


# ------------------------------------------------------------------ reference


def reference_run(openings: list[dict], events: list[dict], database_url: str):
    """Direct application in order (in memory) + read models caught up on ``database_url``."""
    ledger = LoyaltyLedger()
    ledger.apply_in_order([command_from_event(e) for e in openings + events])
    with open_read_models(eventsourcing_env_from_url(database_url)) as models:
        catch_up(ledger, models, batch_notifications_max=READ_MODEL_BATCH_NOTIFICATIONS_MAX)
        digests = read_model_digests(models)
    facts = list(ledger.fact_log.facts())
    ledger.close()
    return digests, facts


def tier_changes(facts) -> dict[str, dict]:
    documents = [tier_changed_document(f) for f in facts if isinstance(f, LoyaltyAccount.TierChanged)]
    return {d["event_id"]: d for d in documents}


def outcomes(facts) -> Counter:
    """Outcome facts per (member, source event id): 1 for every applied event."""
    return Counter((f.member_id, f.source_event_id) for f in facts
                   if isinstance(f, LoyaltyAccount.Event) and fact_type(f) in OUTCOMES)


# ------------------------------------------------------------------ the campaign


def run_campaign(campaign: Campaign, kafka_bootstrap, embedded_pg, log_dir: Path) -> Figures:
    started = time.monotonic()
    rng = random.Random(campaign.seed)
    figures = Figures(events=campaign.events)
    openings, events = campaign_stream(campaign.seed, campaign.events, campaign.members)
    lines, bad = with_faults(events, seed=campaign.seed, duplicate_rate=campaign.duplicate_rate,
                             bad_every=campaign.bad_every)
    figures.lines_produced, figures.bad_lines = len(openings) + len(lines), len(bad)
    figures.duplicates_sent = len(lines) - len(events) - len(bad)

    label = f"campaign{campaign.seed}"
    database = embedded_pg.create_database(f"{label}_{os.getpid()}_{rng.randrange(10**6)}")
    reference_db = embedded_pg.create_database(f"{label}_ref_{os.getpid()}_{rng.randrange(10**6)}")
    settings = pipeline_settings(kafka_bootstrap, database.url, label, PARTITIONS)
    ensure_topics(settings)
    ledger = open_ledger(settings)
    fleet = Fleet(settings, log_dir)
    roles: dict[str, object] = {}
    try:
        for number in range(WORKERS):
            roles[f"worker-{number}" if number else "relay-worker"] = fleet.start_worker(relay=number == 0)
        roles["follower"] = fleet.start_follower()
        # Ambassadors open their accounts before the stream (campaign_stream explains why).
        produced = produce_lines(settings.bootstrap_servers, settings.events_topic,
                                 [json.dumps(e).encode() for e in openings])
        wait_until_processed(ledger, settings, produced, fleet.living_workers(), PROCESSED_TIMEOUT_S)
        # The stream, in chunks, with a kill at a random moment after each of the first ones.
        chunks = split(lines, campaign.kills + 2)
        victims = kill_plan(rng, campaign.kills)
        for number, chunk in enumerate(chunks):
            last = produce_lines(settings.bootstrap_servers, settings.events_topic,
                                 [line.encode() for line in chunk])
            produced.update({p: max(o, produced.get(p, -1)) for p, o in last.items()})
            if number >= len(victims):
                continue
            wait_for_progress(ledger, settings, produced, progress(ledger, settings, produced)
                              + int(len(chunk) * rng.uniform(*KILL_AT_FRACTION)))
            role = victims[number]
            if progress(ledger, settings, produced) < total_messages(produced):
                figures.kills_mid_stream += 1
            kill(roles[role])
            figures.kills += 1
            figures.kills_by_role[role] = figures.kills_by_role.get(role, 0) + 1
            time.sleep(rng.uniform(0, RESTART_DELAY_S_MAX))
            roles[role] = restart(fleet, role)
            figures.restarts += 1
        wait_until_processed(ledger, settings, produced, fleet.living_workers(), PROCESSED_TIMEOUT_S)
        wait_for_follower(ledger, settings)
        figures.verify_exit_status = run_verify(settings)
    finally:
        fleet.close()

    # What the pipeline committed, against the reference.
    facts = list(ledger.fact_log.facts())
    with open_read_models(eventsourcing_env_from_url(settings.database_url)) as models:
        digests = read_model_digests(models)
    ledger.close()
    reference_digests, reference_facts = reference_run(openings, events, reference_db.url)
    figures.read_models_equal = digests == reference_digests
    mine, theirs = outcomes(facts), outcomes(reference_facts)
    figures.events_lost = sum((theirs - mine).values())
    figures.events_doubled = sum((mine - theirs).values())
    figures.dead_letters = sum(1 for f in facts if hasattr(f, "envelope"))
    expected_changes = tier_changes(reference_facts)
    figures.tier_changes = len(expected_changes)
    received = consume_all(settings.bootstrap_servers, settings.tier_changes_topic, len(expected_changes))
    figures.tier_change_messages = len(received)
    figures.cross_partition_credits = sum(
        1 for f in facts if isinstance(f, LoyaltyAccount.ReferrerCredited)
        and partition_of(f.member_id) != partition_of(f.referee_member_id))
    figures.seconds = round(time.monotonic() - started, 1)
    report(figures, campaign)

    assert figures.kills == campaign.kills and figures.restarts == campaign.kills
    assert {"relay-worker", "follower"} <= set(figures.kills_by_role), figures.kills_by_role
    assert (figures.events_lost, figures.events_doubled) == (0, 0), figures
    assert figures.dead_letters == len(bad)
    assert figures.cross_partition_credits > 0, "the stream has cross-partition referrals"
    assert digests == reference_digests, {n: (digests[n], reference_digests[n]) for n in digests
                                          if digests[n] != reference_digests.get(n)}
    assert {r["event_id"]: r for r in received} == expected_changes
    assert figures.verify_exit_status == 0, fleet.logs()
    return figures


def split(lines: list[str], parts: int) -> list[list[str]]:
    size = -(-len(lines) // parts)
    return [lines[start:start + size] for start in range(0, len(lines), size)]


def kill_plan(rng: random.Random, kills: int) -> list[str]:
    """Random victims; the relay's worker and the follower at least once each."""
    roles = ["relay-worker", "follower"] + [f"worker-{n}" for n in range(1, WORKERS)]
    plan = ["relay-worker", "follower"] + [rng.choice(roles) for _ in range(kills - 2)]
    rng.shuffle(plan)
    return plan


def wait_for_progress(ledger, settings, produced: dict[int, int], target: int) -> None:
    deadline = time.monotonic() + KILL_WAIT_S_MAX
    while progress(ledger, settings, produced) < target and time.monotonic() < deadline:
        time.sleep(0.02)


def partition_of(member_id: str) -> int:
    """The partition Kafka's default partitioner gives a member's key (murmur2)."""
    return (murmur2(member_id.encode("utf-8")) & 0x7FFFFFFF) % PARTITIONS


def kill(victim) -> None:
    process = victim.process if hasattr(victim, "process") else victim
    process.send_signal(signal.SIGKILL)
    process.wait()


def restart(fleet: Fleet, role: str):
    if role == "follower":
        return fleet.start_follower()
    return fleet.start_worker(relay=role == "relay-worker")


def wait_for_follower(ledger: LoyaltyLedger, settings) -> None:
    """The (restarted) follower has every read model at the ledger's head."""
    head = ledger.recorder.max_notification_id() or 0
    deadline = time.monotonic() + FOLLOWER_CATCH_UP_TIMEOUT_S
    with open_read_models(eventsourcing_env_from_url(settings.database_url)) as models:
        while min(models.positions().values()) < head:
            assert time.monotonic() < deadline, f"follower at {models.positions()}, head {head}"
            time.sleep(0.2)


def run_verify(settings) -> int:
    env = {**os.environ, "LOYALTY_DATABASE_URL": settings.database_url}
    run = subprocess.run([sys.executable, "-m", "streams.cli", "verify"], env=env,
                         capture_output=True, text=True, timeout=VERIFY_TIMEOUT_S)
    if run.returncode != 0:
        print(run.stdout[-3000:], run.stderr[-3000:])
    return run.returncode


def report(figures: Figures, campaign: Campaign) -> None:
    document = {"campaign": asdict(campaign), "figures": asdict(figures)}
    print(json.dumps(document, indent=2))
    if os.environ.get(REPORT_ENV):
        Path(os.environ[REPORT_ENV]).write_text(json.dumps(document, indent=2) + "\n")


# ------------------------------------------------------------------ tests


def test_short_fault_campaign_ends_where_a_fault_free_run_ends(kafka_bootstrap, embedded_pg, tmp_path):
    figures = run_campaign(SHORT, kafka_bootstrap, embedded_pg, tmp_path)
    assert figures.kills_mid_stream >= 1


@pytest.mark.slow
def test_long_fault_campaign_ends_where_a_fault_free_run_ends(
        long_faults_requested, kafka_bootstrap, embedded_pg, tmp_path):
    figures = run_campaign(LONG, kafka_bootstrap, embedded_pg, tmp_path)
    assert figures.kills >= 20 and figures.kills_mid_stream >= 20
