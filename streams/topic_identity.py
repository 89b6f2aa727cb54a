"""Refuse to apply a topic that is not the one the tracking rows belong to.

Kafka gives every topic an id (``DescribeTopics`` / metadata v10+); a topic
deleted and created again gets a new one and restarts its offsets at 0. The
ledger records each tracked topic's id on first contact
(``ledger/postgres/topic_identities.py``). ``TopicIdentityGuard``:

- ``check()`` at a worker's start: records the ids on first contact, raises
  ``TopicRecreated`` when the broker's id differs from the recorded one;
- ``confirm(topic)`` before the batch applier skips a message as already
  applied: a recreated topic's first message (offset 0) is always at or
  below a tracked offset, so nothing of a new topic is ever skipped silently.

A broker that gives no topic id (an all-zero id) is checked by its offsets
instead: a partition whose end offset is at or below the tracked offset
cannot be the topic that was tracked. ``TopicRecreated``'s message names the
way out: ``loyalty setup --accept-new-topics``.
"""

from __future__ import annotations

import logging
import threading

import psycopg
from eventsourcing.persistence import OperationalError
from kafka import KafkaAdminClient, KafkaConsumer, TopicPartition
from kafka.errors import KafkaError

from ledger.postgres.topic_identities import accept_topic, record_first_contact, recorded_topic_ids
from streams.kafka_security import kafka_client_options
from streams.settings import Settings

log = logging.getLogger(__name__)

NO_TOPIC_ID = {None, "", "00000000-0000-0000-0000-000000000000", "AAAAAAAAAAAAAAAAAAAAAA"}
UNKNOWN_ID = "unknown"  # recorded when the broker gives no topic id
ADMIN_REQUEST_TIMEOUT_MS = 15_000
EXIT_TOPIC_RECREATED = 4
WAY_OUT = ("if the new topic is meant (a restarted embedded broker, a topic deleted on purpose), "
           "run `loyalty setup --accept-new-topics` to apply it from its start (events applied "
           "before are recognised by event_id), then start the workers again")


class TopicRecreated(RuntimeError):
    """A tracked topic is not the one its tracking rows belong to: the worker must not run."""


def tracked_topic_names(settings: Settings) -> list[str]:
    """The topics whose offsets the ledger tracks."""
    return [settings.events_topic, settings.credits_topic]


def broker_topic_ids(settings: Settings, topics: list[str]) -> dict[str, str]:
    """Each topic's id as the broker gives it (``UNKNOWN_ID`` when it gives none)."""
    admin = KafkaAdminClient(bootstrap_servers=settings.bootstrap_servers, client_id="loyalty-identity",
                             request_timeout_ms=ADMIN_REQUEST_TIMEOUT_MS, **kafka_client_options(settings))
    try:
        described = admin.describe_topics(topics)
    finally:
        admin.close()
    ids = {entry["name"]: entry.get("topic_id") for entry in described}
    return {topic: UNKNOWN_ID if ids.get(topic) in NO_TOPIC_ID else str(ids[topic]) for topic in topics}


def accept_new_topics(settings: Settings) -> dict[str, int]:
    """``setup --accept-new-topics``: track the broker's current topics from their start."""
    ids = broker_topic_ids(settings, tracked_topic_names(settings))
    return {topic: accept_topic(settings.database_url, topic, topic_id) for topic, topic_id in ids.items()}


class TopicIdentityGuard:
    """Compares the broker's topics with the ones the ledger tracked (thread-safe, blocking calls)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._lock = threading.Lock()

    def check(self) -> None:
        """At start: record ids on first contact; ``TopicRecreated`` if one changed."""
        topics = tracked_topic_names(self.settings)
        with self._lock:
            current = broker_topic_ids(self.settings, topics)
            recorded = record_first_contact(self.settings.database_url, current)
        for topic in topics:
            self._compare(topic, current[topic], recorded.get(topic), {})

    def confirm(self, topic: str, tracked: dict[int, int]) -> None:
        """Before skipping messages of ``topic`` as applied (``tracked``: partition -> tracked
        offset of the partitions skipped): ``TopicRecreated`` if it is another topic.

        The database or the broker out of reach is eventsourcing's ``OperationalError``,
        so the batch applier waits and retries the batch as for any outage.
        """
        try:
            with self._lock:
                current = broker_topic_ids(self.settings, [topic])[topic]
                recorded = recorded_topic_ids(self.settings.database_url, [topic]).get(topic)
            self._compare(topic, current, recorded, tracked)
        except (psycopg.OperationalError, KafkaError) as error:
            raise OperationalError(f"checking the identity of {topic}: {error}") from error

    def _compare(self, topic: str, current: str, recorded: str | None, tracked: dict[int, int]) -> None:
        if recorded is None or UNKNOWN_ID in (current, recorded):
            self._check_offsets(topic, tracked)
            return
        if current != recorded:
            raise TopicRecreated(f"the topic {topic} was recreated (its Kafka topic id is {current}; "
                                 f"the ledger's tracking rows belong to {recorded}), so its offsets "
                                 f"restarted and new events would be skipped as already applied; {WAY_OUT}")

    def _check_offsets(self, topic: str, tracked: dict[int, int]) -> None:
        """Without topic ids: a partition that ends at or below its tracked offset is another topic."""
        if not tracked:
            return
        ends = _end_offsets(self.settings, topic, list(tracked))
        behind = {p: (ends.get(p, 0), offset) for p, offset in tracked.items() if ends.get(p, 0) <= offset}
        if behind:
            partition, (end, offset) = sorted(behind.items())[0]
            raise TopicRecreated(f"the topic {topic} ends at offset {end} in partition {partition}, but "
                                 f"the ledger applied it up to offset {offset}: it is not the topic that "
                                 f"was tracked; {WAY_OUT}")


def _end_offsets(settings: Settings, topic: str, partitions: list[int]) -> dict[int, int]:
    consumer = KafkaConsumer(bootstrap_servers=settings.bootstrap_servers, enable_auto_commit=False,
                             client_id="loyalty-identity", **kafka_client_options(settings))
    try:
        ends = consumer.end_offsets([TopicPartition(topic, p) for p in partitions])
    finally:
        consumer.close()
    return {tp.partition: offset for tp, offset in ends.items()}
