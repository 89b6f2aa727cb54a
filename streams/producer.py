"""``loyalty produce``: send each line of a JSONL file as-is to ``loyalty.events``.

The key is the line's ``member_id`` when the line is a JSON object with a
string ``member_id``, otherwise null (the broker then picks a partition; the
worker dead-letters the line). Lines are sent byte for byte: bad lines are
part of the stream on purpose. The offsets the broker acknowledged are
returned, so a caller knows what "everything processed" means without the
broker's ``end_offsets`` (which the embedded broker under-reports).
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterable, Iterator

import orjson
from kafka import KafkaProducer

SEND_TIMEOUT_MS = 60_000
PRODUCER_LINGER_MS = 10
SEND_CHUNK_LINES_MAX = 10_000


def read_lines(path: str | Path) -> Iterator[bytes]:
    """Every line of the file without its line break; a final empty line is not a line."""
    with open(path, "rb") as stream:
        for line in stream:
            yield line.rstrip(b"\r\n") if line.endswith(b"\n") else line


def member_key(line: bytes) -> bytes | None:
    try:
        event = orjson.loads(line)
    except orjson.JSONDecodeError:
        return None
    member = event.get("member_id") if isinstance(event, dict) else None
    return member.encode("utf-8") if isinstance(member, str) else None


def produce_lines(bootstrap_servers: str, topic: str, lines: Iterable[bytes],
                  client_options: dict | None = None) -> dict[int, int]:
    """Send every line; return {partition: highest acknowledged offset}.

    ``client_options`` are extra kafka-python settings (TLS / SASL).
    """
    producer = KafkaProducer(bootstrap_servers=bootstrap_servers, acks="all",
                             linger_ms=PRODUCER_LINGER_MS, client_id="loyalty-produce",
                             **(client_options or {}))
    last: dict[int, int] = {}
    try:
        for chunk in _chunks(lines, SEND_CHUNK_LINES_MAX):
            futures = [producer.send(topic, key=member_key(line), value=line) for line in chunk]
            producer.flush(timeout=SEND_TIMEOUT_MS / 1000)
            for future in futures:
                sent = future.get(timeout=SEND_TIMEOUT_MS / 1000)
                last[sent.partition] = max(last.get(sent.partition, -1), sent.offset)
        return last
    finally:
        producer.close()


def _chunks(lines: Iterable[bytes], size: int) -> Iterator[list[bytes]]:
    """Bounded lists of lines, so memory does not grow with the file."""
    chunk: list[bytes] = []
    for line in lines:
        chunk.append(line)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk
