"""The simulator's member traffic (section 13): enrollments with profiles and consent,
NPS answers whose spread differs by the simulator's tier estimate, a few erasures,
all valid and applied by the ledger with its invariant kept."""

from __future__ import annotations

from collections import Counter
from datetime import date
from statistics import mean

import orjson

from ledger.application import LoyaltyLedger
from ledger.commands import command_from_event
from ledger.domain import fact_type
from streams.devkit.member_traffic import NPS_WEIGHTS_BY_TIER_ESTIMATE, tier_estimate
from streams.devkit.simulator import Simulation, SimulationConfig
from streams.validation import decode_inbound

CONFIG = SimulationConfig(seed=7, members=300, start=date(2025, 1, 1), days=365,
                          erasure_rate_ppm=20_000, nps_rate_ppm=200_000)


def test_members_enroll_answer_surveys_and_a_few_are_erased():
    simulation = Simulation(CONFIG)
    events = list(simulation.events())
    for event in events:
        assert decode_inbound(orjson.dumps(event)) == event
    types = Counter(event["type"] for event in events)
    births = {p.member_id: p.birth_date.isoformat() for p in simulation.profiles()}
    enrollments = [e for e in events if e["type"] == "member_enrolled"]
    assert len(enrollments) > 0.8 * len(births)
    assert all(e["profile"]["birth_date"] == births[e["member_id"]] for e in enrollments)
    consents = Counter(e["consents"]["marketing"] for e in enrollments)
    assert consents[True] and consents[False]
    assert 0 < types["member_erased"] < len(births) // 10
    assert types["nps_response"] > 100


def test_nps_answers_are_higher_in_higher_tiers():
    expected = [sum(s * w for s, w in enumerate(ws)) / sum(ws) for ws in NPS_WEIGHTS_BY_TIER_ESTIMATE]
    assert expected == sorted(expected) and expected[-1] - expected[0] > 1
    assert [tier_estimate(x) for x in (0, 50_000, 200_000, 500_000)] == [0, 1, 2, 3]
    scores = [e["score"] for e in Simulation(CONFIG).events() if e["type"] == "nps_response"]
    assert 6 < mean(scores) < 9 and min(scores) < 5 and max(scores) == 10


def test_the_ledger_applies_the_member_traffic_and_keeps_its_invariant():
    events = list(Simulation(SimulationConfig(seed=3, members=60, start=date(2024, 9, 1), days=200,
                                              erasure_rate_ppm=200_000, nps_rate_ppm=200_000)).events())
    ledger = LoyaltyLedger()
    results = ledger.apply_in_order([command_from_event(event) for event in events])
    facts = Counter(fact_type(fact) for result in results for fact in result.facts)
    for member in {event["member_id"] for event in events}:
        ledger.find_account(member).check_invariant()
    assert facts["member_enrolled"] > 0 and facts["nps_recorded"] > 0
    assert facts["member_erased"] > 0
    erased = [e["member_id"] for e in events if e["type"] == "member_erased"]
    assert all(ledger.member_profile(member) is None for member in erased)
