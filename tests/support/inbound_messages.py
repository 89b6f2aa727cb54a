"""Inbound Kafka messages built in memory, for the batch applier's tests (no broker)."""

from __future__ import annotations

import json

from streams.batches import InboundMessage
from streams.settings import Settings

TOPIC = Settings().events_topic


def messages(*events, start: int = 0, partition: int = 0) -> list[InboundMessage]:
    out = []
    for offset, event in enumerate(events, start=start):
        value = event if isinstance(event, bytes) else json.dumps(event).encode()
        key = event["member_id"].encode() if isinstance(event, dict) and "member_id" in event else None
        out.append(InboundMessage(TOPIC, partition, offset, key, value))
    return out
