"""Tracking rows belong to one topic: a recreated topic is refused, never skipped silently.

Against the embedded broker (which gives topic ids) and PostgreSQL: the
first contact records each tracked topic's id; deleting and creating the
topic again makes the check and the batch applier refuse with the way out;
``accept_new_topics`` (``loyalty setup --accept-new-topics``) applies the
new topic from its start.
"""

from __future__ import annotations

import json
import time
import uuid

import pytest
from kafka import KafkaAdminClient
from kafka.admin import NewTopic

from ledger.application import LoyaltyLedger
from ledger.postgres.topic_identities import tracked_topics
from streams.batches import InboundMessage, PartitionBatchApplier
from streams.settings import Settings
from streams.topic_identity import (UNKNOWN_ID, TopicIdentityGuard, TopicRecreated, accept_new_topics,
                                    tracked_topic_names)
from streams.topics import ensure_topics
from tests.support import builders as b
from tests.support.services import unique_database_name

PARTITIONS = 2


@pytest.fixture
def settings(kafka_bootstrap, embedded_pg, request):
    suffix = uuid.uuid4().hex[:8]
    name = unique_database_name(request.node.name)
    database = embedded_pg.create_database(name)
    settings = Settings(bootstrap_servers=kafka_bootstrap, database_url=database.url,
                        events_topic=f"events-{suffix}", credits_topic=f"credits-{suffix}",
                        ledger_topic=f"ledger-{suffix}", tier_changes_topic=f"tiers-{suffix}",
                        dead_letter_topic=f"dead-{suffix}", partitions=PARTITIONS)
    ensure_topics(settings)
    yield settings
    embedded_pg.drop_database(name)


def recreate(settings: Settings, topic: str) -> None:
    admin = KafkaAdminClient(bootstrap_servers=settings.bootstrap_servers)
    admin.delete_topics([topic])
    time.sleep(0.5)
    admin.create_topics([NewTopic(topic, PARTITIONS, 1)])
    admin.close()


def message(settings: Settings, offset: int, member: str = "M-1") -> InboundMessage:
    event = b.birthday(member, "2025-01-01T10:00:00Z", event_id=f"e-{offset}")
    return InboundMessage(settings.events_topic, 0, offset, member.encode(), json.dumps(event).encode())


def open_applier(settings: Settings) -> PartitionBatchApplier:
    from streams.worker import open_ledger

    return PartitionBatchApplier(open_ledger(settings), settings,
                                 confirm_topic=TopicIdentityGuard(settings).confirm)


def test_the_first_contact_records_the_topics_and_a_recreated_one_is_refused(settings):
    guard = TopicIdentityGuard(settings)
    guard.check()
    guard.check()  # the same topics: nothing to say
    recreate(settings, settings.events_topic)
    with pytest.raises(TopicRecreated) as refused:
        guard.check()
    assert settings.events_topic in str(refused.value)
    assert "loyalty setup --accept-new-topics" in str(refused.value)


def test_the_applier_refuses_to_skip_messages_of_a_recreated_topic(settings):
    TopicIdentityGuard(settings).check()
    applier = open_applier(settings)
    applier.apply([message(settings, offset) for offset in range(3)])
    recreate(settings, settings.events_topic)
    ledger: LoyaltyLedger = applier.ledger
    version = ledger.find_account("M-1").version
    tracked = ledger.tracked_position(settings.tracking_name(settings.events_topic, 0))
    with pytest.raises(TopicRecreated):  # offset 0 of the new topic is at or below the tracked 2
        applier.apply([message(settings, 0, "M-2"), message(settings, 3, "M-2")])
    assert ledger.find_account("M-2") is None and ledger.find_account("M-1").version == version
    assert ledger.tracked_position(settings.tracking_name(settings.events_topic, 0)) == tracked
    ledger.close()


def test_accepting_the_new_topics_applies_them_from_their_start(settings):
    TopicIdentityGuard(settings).check()
    applier = open_applier(settings)
    applier.apply([message(settings, offset) for offset in range(3)])
    recreate(settings, settings.events_topic)
    assert tracked_topics(settings.database_url, tracked_topic_names(settings)) == [settings.events_topic]
    deleted = accept_new_topics(settings)
    assert deleted[settings.events_topic] == 1
    TopicIdentityGuard(settings).check()
    report = applier.apply([message(settings, 0, "M-2"), message(settings, 1)])  # e-1 again: a duplicate
    assert (report.applied, report.duplicates, report.skipped) == (1, 1, 0)
    applier.ledger.close()


def test_without_topic_ids_a_partition_ending_below_its_tracked_offset_is_another_topic(settings):
    guard = TopicIdentityGuard(settings)
    guard._compare(settings.events_topic, UNKNOWN_ID, UNKNOWN_ID, {})  # nothing tracked: nothing to say
    with pytest.raises(TopicRecreated) as refused:
        guard._compare(settings.events_topic, UNKNOWN_ID, UNKNOWN_ID, {0: 5})  # the topic is empty
    assert "ends at offset 0 in partition 0" in str(refused.value)
    with pytest.raises(TopicRecreated):
        guard._compare(settings.events_topic, "new-id", "old-id", {})
