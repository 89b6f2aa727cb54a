"""What the console's forms do: re-drive dead letters and submit an adjustment.

Both go the way of ``POST /v1/events``: the payload is decoded and checked
(``decode_inbound``: the same schemas and reasons), the key must be allowed
to submit its type (and store), and ``EventWriter.submit`` produces it to
``loyalty.events`` keyed by ``member_id`` and waits for its outcome; so the
ledger's idempotency applies (an event already applied with the same
payload answers its recorded outcome and nothing is produced, another
payload under its id is a conflict). Nothing here decides a ledger rule.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone

import orjson
from aiokafka.errors import KafkaError

from ledger.calendar import format_timestamp
from streams.api.console.dead_letters import DeadLetterIndex, DeadLetterRow, Redrive
from streams.api.keys import ApiKey
from streams.api.writes import EventIdConflict, EventWriter
from streams.validation import InvalidInput, decode_inbound

ACCEPTED, REFUSED, CONFLICT = "accepted", "refused", "conflict"
OPERATOR_PREFIX = "console:"  # an adjustment's operator_id: the console and the key id


@dataclass(frozen=True)
class Submitted:
    """What became of one submitted payload: ``result`` is the outcome fact's type, or
    ``accepted`` (produced, outcome not yet in the ledger), ``refused`` or ``conflict``."""

    result: str
    message: str
    event: dict | None = None
    outcome: dict | None = None


async def submit(writer: EventWriter, key: ApiKey, raw: bytes) -> Submitted:
    try:
        event = decode_inbound(raw)
    except InvalidInput as invalid:
        return Submitted(REFUSED, f"{invalid.reason_code}: {invalid.message}")
    refusal = _refusal(key, event)
    if refusal:
        return Submitted(REFUSED, refusal, event)
    try:
        reply = await writer.submit(event, raw)
    except EventIdConflict as conflict:
        return Submitted(CONFLICT, str(conflict), event)
    except KafkaError as error:
        return Submitted(REFUSED, f"broker_unavailable: the event was not produced ({type(error).__name__})",
                         event)
    if reply.timed_out:
        return Submitted(ACCEPTED, "produced; its outcome is not in the ledger yet", event)
    outcome = reply.outcome
    return Submitted(outcome["outcome"], outcome.get("reason") or "applied", event, outcome)


def _refusal(key: ApiKey, event: dict) -> str | None:
    if not key.may_submit(event["type"]):
        return f"this key may not submit {event['type']} events"
    if not key.may_submit_for_store(event.get("store_id")):
        return "this key is bound to stores: the event needs one of its store_id"
    return None


async def redrive(writer: EventWriter, index: DeadLetterIndex, run, key: ApiKey, letter: DeadLetterRow,
                  edited: bytes | None) -> Submitted:
    """Re-drive ``letter`` as it was (``edited`` None) or edited; the re-drive is recorded either way."""
    payload = edited if edited is not None else letter.original
    if payload is None:
        submitted = Submitted(REFUSED, "the dead letter has no original bytes: edit its payload")
    else:
        submitted = await submit(writer, key, payload)
    event_id = submitted.event.get("event_id") if submitted.event else None
    await run(index.record, Redrive(letter.dead_letter_id, key.key_id, letter.original, payload or b"",
                                    event_id, submitted.result, submitted.message))
    return submitted


def adjustment_event(form: dict[str, str], key: ApiKey) -> bytes:
    """The adjustment the form describes, as the bytes to submit (``decode_inbound`` checks it)."""
    event = {
        "type": "adjustment", "schema_version": 1, "event_id": form["event_id"],
        "member_id": form["member_id"], "occurred_at": form["occurred_at"],
        "points": _integer(form["points"]), "reason_code": form["reason_code"],
        "operator_id": f"{OPERATOR_PREFIX}{key.key_id}",
    }
    if form.get("note"):
        event["note"] = form["note"]
    if form.get("allow_debt"):
        event["allow_debt"] = True
    return orjson.dumps(event)


def _integer(text: str) -> int | str:
    """The form's points as an integer, or as typed (the schema then refuses it, naming /points)."""
    try:
        return int(text.strip())
    except ValueError:
        return text


def now_text() -> str:
    """An adjustment form's default ``occurred_at``: now, to the second, UTC (an entry point's
    wall clock, as ``loyalty adjust --at`` defaults; the ledger only ever sees the event's time)."""
    return format_timestamp(datetime.now(timezone.utc).replace(microsecond=0))
