"""Topic set-up with kafka-python's admin client.

Every topic is created with the configured partition count and replication
factor if it is missing; existing topics are left as they are (the embedded
broker cannot add partitions later, so topics are created at their final
size). The credits topic has the events topic's partition count, so faust
assigns partition N of both to the same worker and a referrer's account is
written by the worker that owns the referrer's partition. The dead-letter
topic accepts records of up to ``DEAD_LETTER_RECORD_BYTES_MAX`` (a dead
letter carries its message's bytes in base64, a third larger than the
message itself).
"""

from __future__ import annotations

from kafka import KafkaAdminClient
from kafka.admin import NewTopic
from kafka.errors import TopicAlreadyExistsError

from streams.kafka_security import kafka_client_options
from streams.settings import Settings
from streams.validation import DEAD_LETTER_RECORD_BYTES_MAX

ADMIN_REQUEST_TIMEOUT_MS = 15_000


def topic_names(settings: Settings) -> list[str]:
    return [settings.events_topic, settings.credits_topic, settings.ledger_topic,
            settings.tier_changes_topic, settings.dead_letter_topic, settings.notifications_topic]


def topic_configs(name: str, settings: Settings) -> dict[str, str]:
    """The dead-letter topic takes a dead letter of any message the inbound topic took."""
    if name == settings.dead_letter_topic:
        return {"max.message.bytes": str(DEAD_LETTER_RECORD_BYTES_MAX)}
    return {}


def ensure_topics(settings: Settings) -> list[str]:
    """Create the missing topics; return the names created."""
    admin = KafkaAdminClient(bootstrap_servers=settings.bootstrap_servers,
                             request_timeout_ms=ADMIN_REQUEST_TIMEOUT_MS,
                             client_id="loyalty-admin", **kafka_client_options(settings))
    try:
        existing = set(admin.list_topics())
        missing = [name for name in topic_names(settings) if name not in existing]
        if missing:
            _create(admin, missing, settings)
        return missing
    finally:
        admin.close()


def _create(admin: KafkaAdminClient, names: list[str], settings: Settings) -> None:
    topics = [NewTopic(name=name, num_partitions=settings.partitions,
                       replication_factor=settings.replication_factor,
                       topic_configs=topic_configs(name, settings)) for name in names]
    try:
        admin.create_topics(new_topics=topics, validate_only=False)
    except TopicAlreadyExistsError:
        pass  # another process created them first
