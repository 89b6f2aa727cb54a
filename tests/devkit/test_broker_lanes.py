"""The test suite's two broker lanes: how ``LOYALTY_TEST_BROKER`` is read and
what a command that would start its own broker is given in each."""

from __future__ import annotations

import pytest

from streams.settings import Settings
from tests.support.services import EMBEDDED_LANE, KAFKA_LANE, TEST_BROKER_ENV, broker_lane, own_topics_env


def test_the_embedded_broker_is_the_default_lane(monkeypatch):
    monkeypatch.delenv(TEST_BROKER_ENV, raising=False)
    assert broker_lane() == EMBEDDED_LANE
    monkeypatch.setenv(TEST_BROKER_ENV, "kafka")
    assert broker_lane() == KAFKA_LANE


def test_an_unknown_lane_is_a_usage_error_naming_the_lanes(monkeypatch):
    monkeypatch.setenv(TEST_BROKER_ENV, "redpanda")
    with pytest.raises(pytest.UsageError, match="'redpanda': expected one of embedded, kafka"):
        broker_lane()


def test_each_command_pointed_at_the_shared_broker_gets_topics_and_a_group_of_its_own():
    first = Settings.from_env(own_topics_env("127.0.0.1:9092", "demo"))
    second = Settings.from_env(own_topics_env("127.0.0.1:9092", "demo"))
    assert first.bootstrap_servers == second.bootstrap_servers == "127.0.0.1:9092"
    names = ("events_topic", "ledger_topic", "tier_changes_topic", "dead_letter_topic", "credits_topic",
             "consumer_group")
    for name in names:
        assert getattr(first, name) != getattr(second, name) and "demo" in getattr(first, name)
        assert getattr(first, name) != getattr(Settings(), name)
