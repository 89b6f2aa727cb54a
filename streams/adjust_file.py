"""``loyalty adjust``: a CSV file of bulk adjustments as ``adjustment`` events.

One ``adjustment`` event (CONTRACT section 9) per data row. Columns:
``member_id`` and ``points`` (required), ``note``, ``occurred_at`` and
``allow_debt`` (optional; a row without ``occurred_at`` takes the command's
``--at``). The operator and the reason code apply to the whole file.

Event ids are ``adjust:<file digest>:<row>`` (the SHA-256 of the file's
bytes, the data row's number from 1), and every other field comes from the
file and the flags, so running the same file again produces the same events:
all duplicates in the ledger. Every event is checked against its JSON
Schema before anything is sent; the ledger's own rules (reason codes,
``points_max``, the balance) still decide each one.
"""

from __future__ import annotations

import csv
import hashlib
import io
from dataclasses import dataclass

import orjson

from streams.validation import InvalidInput, decode_inbound

FILE_DIGEST_HEX_CHARS = 16
ROWS_MAX = 1_000_000
TRUE_WORDS = ("true", "yes", "1")
FALSE_WORDS = ("false", "no", "0", "")


class AdjustFileError(ValueError):
    """A file that cannot become adjustment events; the message names the row."""


@dataclass(frozen=True)
class AdjustmentTotals:
    events: int
    members: int
    points_in: int
    points_out: int

    def line(self) -> str:
        return (f"{self.events} adjustments for {self.members} members: +{self.points_in} "
                f"-{self.points_out} points (net {self.points_in - self.points_out:+d})")


def adjustment_events(data: bytes, operator_id: str, reason_code: str,
                      default_occurred_at: str | None) -> list[dict]:
    """The file's rows as schema-valid ``adjustment`` events, in file order."""
    digest = hashlib.sha256(data).hexdigest()[:FILE_DIGEST_HEX_CHARS]
    try:
        rows = list(csv.DictReader(io.StringIO(data.decode("utf-8-sig"))))
    except (UnicodeDecodeError, csv.Error) as error:
        raise AdjustFileError(f"not a UTF-8 CSV file: {error}") from None
    if len(rows) > ROWS_MAX:
        raise AdjustFileError(f"{len(rows)} rows; at most {ROWS_MAX} per file")
    return [_event(row, number, digest, operator_id, reason_code, default_occurred_at)
            for number, row in enumerate(rows, start=1)]


def totals(events: list[dict]) -> AdjustmentTotals:
    return AdjustmentTotals(
        events=len(events),
        members=len({event["member_id"] for event in events}),
        points_in=sum(event["points"] for event in events if event["points"] > 0),
        points_out=-sum(event["points"] for event in events if event["points"] < 0),
    )


def _event(row: dict, number: int, digest: str, operator_id: str, reason_code: str,
           default_occurred_at: str | None) -> dict:
    occurred_at = (row.get("occurred_at") or "").strip() or default_occurred_at
    if not occurred_at:
        raise AdjustFileError(f"row {number}: no occurred_at column and no --at given")
    event = {"type": "adjustment", "schema_version": 1, "event_id": f"adjust:{digest}:{number}",
             "member_id": (row.get("member_id") or "").strip(), "occurred_at": occurred_at,
             "points": _points(row, number), "reason_code": reason_code,
             "operator_id": operator_id}
    if (row.get("note") or "").strip():
        event["note"] = row["note"].strip()
    if _allow_debt(row, number):
        event["allow_debt"] = True
    try:
        return decode_inbound(orjson.dumps(event))
    except InvalidInput as invalid:
        raise AdjustFileError(f"row {number}: {invalid.message}") from None


def _points(row: dict, number: int) -> int:
    text = (row.get("points") or "").strip()
    try:
        return int(text)
    except ValueError:
        raise AdjustFileError(f"row {number}: points {text!r} is not a whole number") from None


def _allow_debt(row: dict, number: int) -> bool:
    word = (row.get("allow_debt") or "").strip().lower()
    if word not in TRUE_WORDS + FALSE_WORDS:
        raise AdjustFileError(f"row {number}: allow_debt {word!r} is not true or false")
    return word in TRUE_WORDS
