"""``loyalty produce``: send each line of a JSONL file as-is to ``loyalty.events``.

The key is the line's ``member_id`` when the line is a JSON object with a
string ``member_id``, otherwise null (the broker then picks a partition; the
worker dead-letters the line). Lines are sent byte for byte: bad lines are
part of the stream on purpose. The offsets the broker acknowledged are
returned, so a caller knows what "everything processed" means without the
broker's ``end_offsets`` (which the embedded broker under-reports).

A line longer than ``message_bytes_max`` (the limit the workers enforce,
``LOYALTY_MESSAGE_BYTES_MAX``) is not sent: the broker or the producer would
refuse it with an exception, and the worker would only dead-letter it. It
is returned as a ``RefusedLine`` for the caller to dead-letter by file and
line. The producer's own ``max_request_size`` comes from the same setting
(``producer_request_bytes_max``), so every line that is sent fits.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Iterable, Iterator

import orjson
from kafka import KafkaProducer

from streams.kafka_security import kafka_client_options
from streams.settings import Settings
from ledger.sealed_dead_letters import may_carry_profile
from streams.validation import MESSAGE_BYTES_MAX, refused_line_document

SEND_TIMEOUT_MS = 60_000
PRODUCER_LINGER_MS = 10
SEND_CHUNK_LINES_MAX = 10_000
REFUSED_PREVIEW_BYTES_MAX = 4096        # what a refused line keeps of itself (for its dead letter)
READ_CHUNK_BYTES = 1024 * 1024          # how much of an oversized line is read at a time
RECORD_OVERHEAD_BYTES_MAX = 1024        # a record batch's headers around one key and value


def producer_request_bytes_max(message_bytes_max: int) -> int:
    """The producer's ``max_request_size`` for values of at most ``message_bytes_max`` bytes.

    The key is the line's ``member_id``, so it is never longer than the value.
    """
    return 2 * message_bytes_max + RECORD_OVERHEAD_BYTES_MAX


@dataclass(frozen=True)
class RefusedLine:
    """An input line too large to send: where it is, its size and its start."""

    line_number: int
    size_bytes: int
    preview: bytes


@dataclass
class ProduceReport:
    """What a file's lines became: the last offset per partition, each sent line's
    position (for line numbers in dead letters) and the lines refused before Kafka."""

    last_offsets: dict[int, int] = field(default_factory=dict)
    line_numbers: dict[tuple[int, int], int] = field(default_factory=dict)  # (partition, offset)
    refused: list[RefusedLine] = field(default_factory=list)


class OversizedLine(bytes):
    """The first ``REFUSED_PREVIEW_BYTES_MAX`` bytes of a line over the limit; ``size_bytes`` is
    its whole length (the rest is never held in memory, whatever its size)."""

    size_bytes: int


def read_lines(path: str | Path, line_bytes_max: int | None = None) -> Iterator[bytes]:
    """Every line of the file without its line break; a final empty line is not a line.

    With ``line_bytes_max`` a longer line comes as an ``OversizedLine``.
    """
    with open(path, "rb") as stream:
        while line := stream.readline(line_bytes_max + 2 if line_bytes_max else -1):
            content = line.rstrip(b"\r\n") if line.endswith(b"\n") else line
            if line_bytes_max is None or len(content) <= line_bytes_max:
                yield content
            else:
                yield _oversized(content, line.endswith(b"\n"), stream)


def _oversized(start: bytes, ended: bool, stream) -> OversizedLine:
    """Skip the rest of a long line, counting it; keep only its start."""
    size = len(start)
    while not ended and (chunk := stream.readline(READ_CHUNK_BYTES)):
        ended = chunk.endswith(b"\n")
        size += len(chunk.rstrip(b"\r\n") if ended else chunk)
    line = OversizedLine(start[:REFUSED_PREVIEW_BYTES_MAX])
    line.size_bytes = size
    return line


def member_key(line: bytes) -> bytes | None:
    try:
        event = orjson.loads(line)
    except orjson.JSONDecodeError:
        return None
    member = event.get("member_id") if isinstance(event, dict) else None
    return member.encode("utf-8") if isinstance(member, str) else None


def produce_lines(bootstrap_servers: str, topic: str, lines: Iterable[bytes],
                  client_options: dict | None = None, *,
                  message_bytes_max: int = MESSAGE_BYTES_MAX) -> dict[int, int]:
    """Send every line that fits; return {partition: highest acknowledged offset}.

    ``client_options`` are extra kafka-python settings (TLS / SASL).
    """
    return send_lines(bootstrap_servers, topic, lines, client_options,
                      message_bytes_max=message_bytes_max).last_offsets


def send_lines(bootstrap_servers: str, topic: str, lines: Iterable[bytes],
               client_options: dict | None = None, *, message_bytes_max: int = MESSAGE_BYTES_MAX,
               on_chunk: Callable[[int], None] | None = None) -> ProduceReport:
    """Send every line of at most ``message_bytes_max`` bytes; report offsets, positions and refusals.

    ``on_chunk(lines_done)`` is called after each acknowledged chunk (progress).
    """
    producer = KafkaProducer(bootstrap_servers=bootstrap_servers, acks="all",
                             linger_ms=PRODUCER_LINGER_MS, client_id="loyalty-produce",
                             max_request_size=producer_request_bytes_max(message_bytes_max),
                             **(client_options or {}))
    report = ProduceReport()
    try:
        for chunk in _chunks(enumerate(lines, start=1), SEND_CHUNK_LINES_MAX):
            _send_chunk(producer, topic, chunk, message_bytes_max, report)
            if on_chunk is not None:
                on_chunk(chunk[-1][0])
        return report
    finally:
        producer.close()


def _send_chunk(producer: KafkaProducer, topic: str, chunk: list[tuple[int, bytes]],
                message_bytes_max: int, report: ProduceReport) -> None:
    futures = []
    for number, line in chunk:
        if isinstance(line, OversizedLine) or len(line) > message_bytes_max:
            size = getattr(line, "size_bytes", len(line))
            report.refused.append(RefusedLine(number, size, line[:REFUSED_PREVIEW_BYTES_MAX]))
            continue
        futures.append((number, producer.send(topic, key=member_key(line), value=line)))
    producer.flush(timeout=SEND_TIMEOUT_MS / 1000)
    for number, future in futures:
        sent = future.get(timeout=SEND_TIMEOUT_MS / 1000)
        report.last_offsets[sent.partition] = max(report.last_offsets.get(sent.partition, -1), sent.offset)
        report.line_numbers[(sent.partition, sent.offset)] = number


def _chunks(items: Iterable, size: int) -> Iterator[list]:
    """Bounded lists of items, so memory does not grow with the file."""
    chunk: list = []
    for item in items:
        chunk.append(item)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def refused_dead_letters(refused: list[RefusedLine], *, source_topic: str, source_file: str,
                         message_bytes_max: int) -> list[dict]:
    """The ``dead_letter.v1`` envelopes of lines refused before Kafka, by file and line.

    A line that may carry a profile (section 13) gets no preview: its bytes stay in the file.
    """
    now = datetime.now(timezone.utc)
    return [refused_line_document(preview=b"" if may_carry_profile(line.preview) else line.preview,
                                  size_bytes=line.size_bytes,
                                  message_bytes_max=message_bytes_max, source_topic=source_topic,
                                  source_file=source_file, source_line=line.line_number,
                                  dead_lettered_at=now)
            for line in refused]


def produce_file(settings: Settings, path: str | Path) -> ProduceReport:
    """``loyalty produce``: send the file's lines; publish the refused ones' dead letters directly.

    ``produce`` has no event store, so a line refused before Kafka goes
    straight to the dead-letter topic (the workers never see it).
    """
    options = kafka_client_options(settings)
    report = send_lines(settings.bootstrap_servers, settings.events_topic,
                        read_lines(path, settings.message_bytes_max), options,
                        message_bytes_max=settings.message_bytes_max)
    letters = refused_dead_letters(report.refused, source_topic=settings.events_topic,
                                   source_file=str(path), message_bytes_max=settings.message_bytes_max)
    if letters:
        producer = KafkaProducer(bootstrap_servers=settings.bootstrap_servers, acks="all",
                                 client_id="loyalty-produce", **options)
        try:
            for letter in letters:
                producer.send(settings.dead_letter_topic, key=None, value=orjson.dumps(letter))
            producer.flush(timeout=SEND_TIMEOUT_MS / 1000)
        finally:
            producer.close()
    return report
