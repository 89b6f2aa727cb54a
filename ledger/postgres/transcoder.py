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
place, and turns the commonest type (``datetime_iso``) back inline (decoding
is most of a replay's time per fact).

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
        only containers are visited (scalars are returned as they are).
        orjson makes plain ``dict`` and ``list`` only, so ``type(...) is`` tells a
        container (cheaper than ``isinstance`` with a tuple: this walk visits
        every campaign line of a purchase).
        """
        if type(value) is dict:
            for key, item in value.items():
                kind = type(item)
                if kind is dict or kind is list:
                    value[key] = self._revive(item)
            return self._typed(value) if "_type_" in value and len(value) == 2 else value
        for index, item in enumerate(value):
            kind = type(item)
            if kind is dict or kind is list:
                value[index] = self._revive(item)
        return value

    def _typed(self, value: dict[str, Any]) -> Any:
        transcoding = self.names.get(value["_type_"])
        if type(transcoding) is DatetimeAsISO and "_data_" in value:  # the commonest, inline
            return datetime.fromisoformat(value["_data_"])
        return self._decode_obj(value)  # the library's own checks and errors
