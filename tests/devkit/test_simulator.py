"""The POS/CRM traffic simulator (``streams/devkit/simulator.py``, ``loyalty simulate``).

The story: a chain of stores runs two calendar years; every line the
simulator writes is what a till, the web shop or the CRM would send. The
stream must be reproducible to the byte, valid where it claims to be,
broken exactly where it means to be, realistic in shape (weekends, December,
skewed baskets, regulars and occasional shoppers), and, applied to the
ledger, exercise its rules: tiers, redemptions accepted and rejected,
referrals, year ends.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import re
import statistics
import subprocess
import sys
import time
import uuid
from collections import Counter, defaultdict
from datetime import date, timedelta
from pathlib import Path

import orjson
import pytest

from ledger.application import LoyaltyLedger
from ledger.calendar import parse_timestamp
from ledger.commands import command_from_event
from ledger.domain import fact_type
from streams.cli.simulate import add_subcommand
from streams.devkit.simulator import (
    LABEL_DUPLICATE, LABEL_EVENT, LATE_DAYS_MAX, MALFORMED_REASONS, PPM, MalformedKind, Simulation,
    SimulationConfig, SimulationSummary, simulate, simulate_events, simulate_labelled, write_jsonl,
)
from streams.validation import InvalidInput, decode_inbound

ROOT = Path(__file__).resolve().parents[2]
# Two calendar years (2024 is a leap year): two year ends, two birthdays each.
TWO_YEARS = SimulationConfig(seed=11, members=800, stores=12, start=date(2024, 1, 1), days=731,
                             new_members_pct=20, self_referral_ppm=50_000,
                             second_referral_ppm=150_000, duplicate_rate_ppm=5_000,
                             malformed_rate_ppm=2_000)
SMALL = SimulationConfig(seed=5, members=200, start=date(2025, 11, 1), days=90)
# Small enough for the in-memory ledger (a few hundred events/s), rich enough
# for tiers, redemptions, referrals and a year end.
LEDGER_RUN = SimulationConfig(seed=3, members=60, start=date(2024, 9, 1), days=400,
                              new_members_pct=40, purchases_per_member_year=36)
LEDGER_SNAPSHOT_INTERVAL_EVENTS = "10"
SECONDS_PER_DAY = 86_400
CONSUME_TIMEOUT_S = 30
CONSUME_POLL_MS = 500
SHARE_TOLERANCE = 0.05  # a drawn share against the config's (hundreds of holds)


@pytest.fixture(scope="module")
def run() -> dict:
    """One two-year run, labelled, with its profiles and summary."""
    summary = SimulationSummary()
    labelled = list(simulate_labelled(TWO_YEARS, summary))
    simulation = Simulation(TWO_YEARS)
    events = list(simulation.events())
    profiles = {profile.member_id: profile for profile in simulation.profiles()}
    return {"labelled": labelled, "events": events, "profiles": profiles, "summary": summary}


def digest(lines) -> str:
    hasher = hashlib.sha256()
    for line in lines:
        hasher.update(line + b"\n")
    return hasher.hexdigest()


def purchases(events: list[dict]) -> list[dict]:
    return [event for event in events if event["type"] == "purchase"]


def local_date(event: dict) -> date:
    """The calendar day at the source (the till's local time, or UTC online)."""
    return date.fromisoformat(event["occurred_at"][:10])


# ------------------------------------------------------------ determinism


def test_a_seed_gives_the_same_bytes_every_time_and_another_seed_does_not():
    # Two runs in this process are identical to the byte.
    first = list(simulate(SMALL))
    assert first == list(simulate(SMALL))
    # Another seed gives another stream.
    other = list(simulate(SimulationConfig(**{**vars(SMALL), "seed": SMALL.seed + 1})))
    assert other != first


def test_another_process_writes_the_same_bytes():
    # A fresh interpreter (another hash seed, nothing cached) hashes the same lines.
    script = (
        "import hashlib, sys\n"
        "from datetime import date\n"
        "from streams.devkit.simulator import SimulationConfig, simulate\n"
        f"config = SimulationConfig(seed={SMALL.seed}, members={SMALL.members}, "
        f"start=date.fromisoformat('{SMALL.start}'), days={SMALL.days})\n"
        "h = hashlib.sha256()\n"
        "for line in simulate(config): h.update(line + b'\\n')\n"
        "print(h.hexdigest())\n"
    )
    child = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True,
                           text=True, check=True, env={"PYTHONHASHSEED": "12345"})
    assert child.stdout.strip() == digest(simulate(SMALL))


def test_the_valid_lines_are_exactly_the_simulated_events(run):
    lines = [line for label, line in run["labelled"] if label == LABEL_EVENT]
    assert lines == [orjson.dumps(event) for event in run["events"]]


# ----------------------------------------------------------------- validity


def test_every_event_passes_validation_and_every_malformed_line_fails_as_expected(run):
    reasons = Counter()
    for label, line in run["labelled"]:
        if label in (LABEL_EVENT, LABEL_DUPLICATE):
            decode_inbound(line)
            continue
        with pytest.raises(InvalidInput) as refused:
            decode_inbound(line)
        assert refused.value.reason_code == MALFORMED_REASONS[MalformedKind(label)], line
        reasons[label] += 1
    # Every kind of fault shows up.
    assert set(reasons) == set(MalformedKind)


def test_redeliveries_are_exact_copies_of_earlier_lines(run):
    seen = set()
    duplicates = 0
    for label, line in run["labelled"]:
        if label == LABEL_EVENT:
            seen.add(line)
        elif label == LABEL_DUPLICATE:
            assert line in seen
            duplicates += 1
    assert duplicates == run["summary"].duplicates > 0


def test_ids_are_unique_and_shaped_like_the_chains(run):
    events = run["events"]
    ids = [event["event_id"] for event in events]
    assert len(ids) == len(set(ids))
    assert all(re.fullmatch(r"M-\d{6}", event["member_id"]) for event in events)
    stores = {event["store_id"] for event in events if "store_id" in event}
    assert all(re.fullmatch(r"S-\d{3}|WEB-EU", store) for store in stores)
    assert {event.get("channel") for event in purchases(events)} == {"pos", "online"}


def test_no_float_anywhere(run):
    def walk(value):
        assert type(value) is not float
        if isinstance(value, dict):
            for item in value.values():
                walk(item)
        elif isinstance(value, list):
            for item in value:
                walk(item)

    for label, line in run["labelled"]:
        if label != MalformedKind.NOT_JSON:
            walk(orjson.loads(line))


def test_the_summary_counts_what_was_written(run):
    summary, labelled = run["summary"], run["labelled"]
    labels = Counter(label for label, _ in labelled)
    assert summary.lines == len(labelled)
    assert summary.events == labels[LABEL_EVENT]
    assert summary.malformed == sum(labels[kind] for kind in MalformedKind)
    types = Counter(event["type"] for event in run["events"])
    assert summary.events_by_type == dict(types)
    assert summary.members == len(run["profiles"])
    assert "lines" in summary.describe()


def test_events_arrive_in_time_order_except_a_few_late_uploads(run):
    newest = None
    late, lag_max = 0, 0
    for event in run["events"]:
        moment = parse_timestamp(event["occurred_at"])
        if newest is not None and moment < newest:
            late += 1
            lag_max = max(lag_max, (newest - moment).total_seconds())
        newest = moment if newest is None else max(newest, moment)
    assert 0 < late <= run["summary"].late_events
    assert late < len(run["events"]) // 50
    assert lag_max <= (LATE_DAYS_MAX + 1) * SECONDS_PER_DAY


def test_a_refund_follows_its_purchase_and_never_exceeds_it(run):
    position, amounts, refunded = {}, {}, Counter()
    for number, event in enumerate(run["events"]):
        if event["type"] == "purchase":
            position[event["event_id"]] = number
            amounts[event["event_id"]] = event["amount_minor"]
        if event["type"] == "refund":
            purchase = event["purchase_event_id"]
            assert position[purchase] < number
            refunded[purchase] += event["amount_minor"]
    assert refunded and all(refunded[p] <= amounts[p] for p in refunded)
    full = sum(refunded[p] == amounts[p] for p in refunded)
    assert 0 < full < len(refunded)


# ---------------------------------------------------------------- realism


def test_weekends_are_busier_than_weekdays(run):
    per_day = Counter(local_date(event) for event in purchases(run["events"]))
    weekend = [count for day, count in per_day.items() if day.weekday() >= 5]
    weekday = [count for day, count in per_day.items() if day.weekday() < 5]
    assert statistics.mean(weekend) > 1.2 * statistics.mean(weekday)


def test_december_is_busier_than_a_typical_month(run):
    per_month = Counter(local_date(event).replace(day=1) for event in purchases(run["events"]))
    per_day = {month: count / _days_in(month) for month, count in per_month.items()}
    typical = statistics.median(per_day.values())
    for month, rate in per_day.items():
        if month.month == 12:
            assert rate > 1.15 * typical


def _days_in(month: date) -> int:
    following = (month.replace(day=28) + timedelta(days=4)).replace(day=1)
    return (following - month).days


def test_baskets_are_skewed(run):
    amounts = [event["amount_minor"] for event in purchases(run["events"])]
    assert statistics.mean(amounts) > 1.2 * statistics.median(amounts)
    assert max(amounts) > 10 * statistics.median(amounts)


def test_some_members_shop_much_more_than_others(run):
    counts = Counter(event["member_id"] for event in purchases(run["events"]))
    shoppers = [counts.get(member, 0) for member in run["profiles"]]
    assert statistics.pstdev(shoppers) > 0.8 * statistics.mean(shoppers)
    assert max(shoppers) > 5 * statistics.median(shoppers)


def test_birthdays_fall_on_the_birth_date_at_most_once_a_year(run):
    per_member_year = Counter()
    for event in run["events"]:
        if event["type"] != "birthday":
            continue
        birth = run["profiles"][event["member_id"]].birth_date
        day = local_date(event)
        assert (day.month, day.day) == _celebrated(birth, day.year)
        assert day >= run["profiles"][event["member_id"]].joined_on
        per_member_year[(event["member_id"], day.year)] += 1
    assert per_member_year and max(per_member_year.values()) == 1
    # Members there from the start celebrate in both years.
    founders = [m for m, p in run["profiles"].items() if p.joined_on == TWO_YEARS.start]
    assert all(per_member_year[(member, 2025)] == 1 for member in founders)


def _celebrated(birth: date, year: int) -> tuple[int, int]:
    leap = year % 4 == 0 and (year % 100 != 0 or year % 400 == 0)
    if (birth.month, birth.day) == (2, 29) and not leap:
        return (2, 28)
    return (birth.month, birth.day)


def test_year_end_closes_every_known_member_once(run):
    closed = defaultdict(list)
    for event in run["events"]:
        if event["type"] == "year_closed":
            year = event["year"]
            assert event["occurred_at"] == f"{year + 1}-01-01T00:05:00Z"
            assert event["event_id"] == f"year-closed:{year}:{event['member_id']}"
            closed[year].append(event["member_id"])
    assert sorted(closed) == [2024, 2025]
    for year, members in closed.items():
        known = [m for m, p in run["profiles"].items() if p.joined_on <= date(year, 12, 31)]
        assert sorted(members) == sorted(known)


def test_every_hold_is_settled_once_after_it_by_the_same_member(run):
    holds, settled, settlements = {}, Counter(), Counter()
    for event in run["events"]:
        if event["type"] == "redemption_hold":
            holds[event["event_id"]] = event
            assert parse_timestamp(event["expires_at"]) > parse_timestamp(event["occurred_at"])
        elif event["type"] in ("redemption_capture", "redemption_void"):
            hold = holds[event["hold_event_id"]]  # delivered before its settlement
            assert hold["member_id"] == event["member_id"] and hold["store_id"] == event["store_id"]
            assert parse_timestamp(hold["occurred_at"]) < parse_timestamp(event["occurred_at"]) \
                < parse_timestamp(hold["expires_at"])
            assert event.get("points", hold["points"]) <= hold["points"]
            settled[event["hold_event_id"]] += 1
            settlements[event["type"], "points" in event] += 1
    assert holds and set(settled) == set(holds) and set(settled.values()) == {1}
    # The shares are the config's, within sampling noise.
    voids = settlements["redemption_void", False]
    assert abs(voids / len(holds) - TWO_YEARS.hold_void_ppm / PPM) < SHARE_TOLERANCE
    captures = len(holds) - voids
    assert abs(settlements["redemption_capture", True] / captures
               - TWO_YEARS.partial_capture_ppm / PPM) < SHARE_TOLERANCE
    pos_visits = sum(1 for event in run["events"] if event["type"] == "purchase" and event["channel"] == "pos")
    assert 0 < len(holds) / pos_visits <= TWO_YEARS.hold_rate_ppm / PPM


def test_hold_rates_are_configurable_and_zero_means_none():
    def types(config: SimulationConfig) -> Counter:
        return Counter(event["type"] for event in simulate_events(config))

    none = types(dataclasses.replace(SMALL, hold_rate_ppm=0))
    assert not {"redemption_hold", "redemption_capture", "redemption_void"} & set(none)
    all_voided = types(dataclasses.replace(SMALL, hold_rate_ppm=PPM, hold_void_ppm=PPM))
    assert all_voided["redemption_hold"] == all_voided["redemption_void"] > types(SMALL)["redemption_hold"]
    assert all_voided["redemption_capture"] == 0


def test_new_members_are_referred_sometimes_wrongly(run):
    summary = run["summary"]
    referrals = [event for event in run["events"] if event["type"] == "referral"]
    assert len(run["profiles"]) == TWO_YEARS.members + TWO_YEARS.new_members
    assert referrals
    assert any(event["referrer_member_id"] == event["member_id"] for event in referrals)
    referees = Counter(event["member_id"] for event in referrals)
    assert max(referees.values()) >= 2
    assert summary.injected["self_referral"] and summary.injected["second_referral"]


def test_a_config_out_of_bounds_is_refused():
    with pytest.raises(ValueError, match="members"):
        SimulationConfig(members=0)
    with pytest.raises(ValueError, match="duplicate_rate_ppm"):
        SimulationConfig(duplicate_rate_ppm=1_000_001)
    with pytest.raises(ValueError, match="period"):
        SimulationConfig(start=date(1969, 12, 1))


# ------------------------------------------------------------------ ledger


def test_the_ledger_applies_the_stream_and_keeps_its_invariant():
    # Every line the ledger would accept, redeliveries included, in stream order.
    events = []
    for line in simulate(LEDGER_RUN):
        try:
            events.append(decode_inbound(line))
        except InvalidInput:
            continue
    ledger = LoyaltyLedger(env={"LOYALTY_SNAPSHOT_INTERVAL_EVENTS": LEDGER_SNAPSHOT_INTERVAL_EVENTS})
    results = ledger.apply_in_order([command_from_event(event) for event in events])
    statuses = Counter(result.status for result in results)
    facts = Counter(fact_type(fact) for result in results for fact in result.facts)
    # Redeliveries are no-ops, nothing conflicts.
    assert set(statuses) == {"applied", "duplicate"}
    # Every account balances.
    for member in {event["member_id"] for event in events}:
        ledger.find_account(member).check_invariant()
    # The rules are exercised: tiers, redemptions both ways, referrals, the year end.
    assert facts["tier_changed"] > 0
    assert facts["points_redeemed"] > 0 and facts["redemption_rejected"] > 0
    assert facts["referral_qualified"] > 0 and facts["referrer_credited"] > 0
    assert facts["points_reversed"] > 0 and facts["birthday_rewarded"] > 0
    assert facts["year_closed"] > 0 and facts["annual_incentive_awarded"] > 0
    # Holds (section 7) are held, captured and voided, and none is rejected.
    assert facts["points_held"] > 0 and facts["hold_released"] > 0
    assert not {"redemption_hold_rejected", "redemption_capture_rejected", "redemption_void_rejected"} & set(facts)


# --------------------------------------------------------------------- CLI


def simulate_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="loyalty")
    add_subcommand(parser.add_subparsers(dest="command", required=True))
    return parser


def test_the_cli_writes_the_same_file_as_write_jsonl(tmp_path, capsys):
    out = tmp_path / "cli.jsonl"
    args = simulate_parser().parse_args(
        ["simulate", "--seed", "5", "--members", "200", "--start", "2025-11-01", "--days", "90",
         "--out", str(out)])
    assert args.run(args) == 0
    expected = tmp_path / "api.jsonl"
    summary = write_jsonl(SMALL, expected)
    assert out.read_bytes() == expected.read_bytes()
    assert out.read_bytes().count(b"\n") == summary.lines
    assert "malformed" in capsys.readouterr().out


def test_the_cli_sets_the_hold_rates(tmp_path):
    out = tmp_path / "voids.jsonl"
    args = simulate_parser().parse_args(
        ["simulate", "--seed", "5", "--members", "200", "--start", "2025-11-01", "--days", "90",
         "--hold-rate-ppm", str(PPM), "--hold-void-ppm", str(PPM), "--out", str(out)])
    assert args.run(args) == 0
    expected = tmp_path / "api.jsonl"
    write_jsonl(dataclasses.replace(SMALL, hold_rate_ppm=PPM, hold_void_ppm=PPM), expected)
    assert out.read_bytes() == expected.read_bytes() and b'"redemption_void"' in out.read_bytes()


def test_the_cli_refuses_a_bad_config_and_needs_a_target(tmp_path, capsys):
    args = simulate_parser().parse_args(["simulate", "--members", "0", "--out", str(tmp_path / "x")])
    assert args.run(args) == 2
    assert "members" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        simulate_parser().parse_args(["simulate"])


def test_the_cli_sends_to_kafka_keyed_by_member(kafka_bootstrap, monkeypatch, capsys):
    topic = f"simulated-{uuid.uuid4().hex[:8]}"
    monkeypatch.setenv("LOYALTY_EVENTS_TOPIC", topic)
    monkeypatch.setenv("LOYALTY_PARTITIONS", "4")
    config = SimulationConfig(seed=9, members=20, start=date(2025, 3, 1), days=20,
                              malformed_rate_ppm=20_000)
    args = simulate_parser().parse_args(
        ["simulate", "--seed", "9", "--members", "20", "--start", "2025-03-01", "--days", "20",
         "--malformed-rate-ppm", "20000", "--kafka", "--bootstrap-servers", kafka_bootstrap])
    assert args.run(args) == 0
    assert f"sent to {topic}" in capsys.readouterr().out
    expected = list(simulate(config))
    received = consume(kafka_bootstrap, topic, len(expected))
    assert sorted(value for _, value in received) == sorted(expected)
    for key, value in received:
        try:
            member = orjson.loads(value).get("member_id")
        except orjson.JSONDecodeError:
            member = None
        assert key == (member.encode() if isinstance(member, str) else None)


def consume(bootstrap: str, topic: str, count: int) -> list[tuple[bytes | None, bytes]]:
    """Up to ``count`` messages of ``topic`` from the start, or what came within the timeout."""
    from kafka import KafkaConsumer

    consumer = KafkaConsumer(topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest",
                             enable_auto_commit=False)
    received = []
    deadline = time.monotonic() + CONSUME_TIMEOUT_S
    try:
        while len(received) < count and time.monotonic() < deadline:
            for batch in consumer.poll(timeout_ms=CONSUME_POLL_MS).values():
                received.extend((message.key, message.value) for message in batch)
    finally:
        consumer.close()
    return received


def test_write_jsonl_and_simulate_events_agree_with_simulate(tmp_path):
    path = tmp_path / "run.jsonl"
    write_jsonl(SMALL, path)
    assert path.read_bytes() == b"".join(line + b"\n" for line in simulate(SMALL))
    events = list(simulate_events(SMALL))
    valid = [line for label, line in simulate_labelled(SMALL) if label == LABEL_EVENT]
    assert [orjson.dumps(event) for event in events] == valid
