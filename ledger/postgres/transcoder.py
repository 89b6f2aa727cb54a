"""eventsourcing's JSON transcoding, done by orjson.

The stored bytes keep the library's ``JSONTranscoder`` format exactly:
compact UTF-8 JSON in which every value of a registered type is an object
``{"_type_": name, "_data_": ...}`` (datetimes, ``Lot``, ``PurchaseRecord``,
decimals). Facts written by either transcoder read back the same through
either (``tests/ledger/test_transcoder.py``), so switching needs no migration.

Why: in a worker's profile the standard library's encoder was a tenth of
the ledger thread, and decoding dominates the relay's and the bulk loader's
reads. orjson encodes registered types through ``default`` (datetimes and
dataclasses are passed through to it, not serialised natively) and decodes
to plain values that one bottom-up walk turns back into registered types,
as ``json``'s ``object_hook`` does; the walk visits containers only, in
place, and turns the commonest type (``datetime_iso``) back inline, where
the parent finds it, without a call of its own (decoding is most of a
replay's time per fact: a ``points_earned`` holds four datetimes; measured
on 100,000 simulator facts, the mapper's decode went from about 21 to 18.5
us per fact, same run, shared box).

``plain_json`` is the outbox relay's fast path (``ledger/stored_wire.py``):
the stored JSON with each datetime as the RFC 3339 UTC text the outputs
use, no objects revived, or None when the state holds any other registered
type or a datetime not in UTC (the caller then decodes it the library's way).

One difference from ``json`` to keep in mind: orjson writes a ``UUID`` as a
plain string (it has no pass-through option for UUIDs), which would read
back as a string. Ledger facts and snapshots hold no UUID values (the
account id travels in the library's own originator columns); the
transcoder test checks every fact type and snapshot of a generated stream.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import orjson
from eventsourcing.persistence import DatetimeAsISO, JSONTranscoder

TOPIC = "ledger.postgres.transcoder:OrjsonTranscoder"
ENCODE_OPTIONS = orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_PASSTHROUGH_DATACLASS
TYPED = b'"_type_"'
TYPE_KEY, DATA_KEY = "_type_", "_data_"
DATETIME_NAME = DatetimeAsISO.name  # "datetime_iso"
UTC_SUFFIX, UTC_Z = "+00:00", "Z"


class OrjsonTranscoder(JSONTranscoder):
    """``JSONTranscoder``'s format and transcodings, with orjson doing the JSON."""

    def encode(self, obj: Any) -> bytes:
        return orjson.dumps(obj, default=self._encode_obj, option=ENCODE_OPTIONS)

    def decode(self, data: bytes) -> Any:
        value = orjson.loads(data)
        return self._revive(value) if TYPED in data else value

    def _revive(self, value: Any) -> Any:
        """Bottom-up, like ``object_hook``: children first, then the object itself.

        orjson's output is fresh, so containers are revived in place, and
        only containers are visited (scalars are returned as they are); a
        datetime (most typed values) is turned back where its parent finds
        it, without a call of its own.
        """
        items = value.items() if type(value) is dict else enumerate(value)
        for key, item in items:
            kind = type(item)
            if kind is dict:
                if len(item) == 2 and item.get(TYPE_KEY) == DATETIME_NAME and DATA_KEY in item:
                    value[key] = datetime.fromisoformat(item[DATA_KEY])
                else:
                    value[key] = self._revive(item)
            elif kind is list:
                value[key] = self._revive(item)
        if type(value) is dict and len(value) == 2 and TYPE_KEY in value:
            return self._typed(value)
        return value

    def _typed(self, value: dict[str, Any]) -> Any:
        transcoding = self.names.get(value["_type_"])
        if type(transcoding) is DatetimeAsISO and "_data_" in value:  # the commonest, inline
            return datetime.fromisoformat(value["_data_"])
        return self._decode_obj(value)  # the library's own checks and errors


class _NotPlain(Exception):
    """A typed value other than a UTC datetime: ``plain_json`` gives up."""


def plain_json(data: bytes) -> dict[str, Any] | None:
    """The stored state with every datetime as RFC 3339 UTC text (``...Z``, what
    ``ledger.calendar.format_timestamp`` and orjson's ``OPT_UTC_Z`` write); None if it holds
    any other registered type or a datetime with another offset."""
    value = orjson.loads(data)
    if TYPED not in data:
        return value
    try:
        return _plain(value)
    except _NotPlain:
        return None


def _plain(value: Any) -> Any:
    """Like ``_revive``, in place: a datetime object becomes its UTC text."""
    items = value.items() if type(value) is dict else enumerate(value)
    for key, item in items:
        kind = type(item)
        if kind is dict:
            value[key] = _utc_text(item) if TYPE_KEY in item else _plain(item)
        elif kind is list:
            _plain(item)
    return value


def _utc_text(typed: dict[str, Any]) -> str:
    text = typed.get(DATA_KEY)
    if len(typed) != 2 or typed[TYPE_KEY] != DATETIME_NAME or not isinstance(text, str) \
            or not text.endswith(UTC_SUFFIX):
        raise _NotPlain(typed[TYPE_KEY])
    return text[:-len(UTC_SUFFIX)] + UTC_Z
