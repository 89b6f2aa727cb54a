"""Deterministic ids of ledger facts.

A fact is identified by its account and version; the same fact always yields
the same id, so a republished fact (the outbox is at least once) carries the
same id and consumers dedupe on it (CONTRACT section 5).

The id is ``uuid5(FACT_NAMESPACE, "<member_id>/<ledger_version>")``, RFC 4122's
name-based UUID; ``fact_id`` computes those same bytes with ``hashlib``
directly, without building a ``uuid.UUID`` (the relay computes one per fact,
and ``uuid5`` plus ``str`` were about a tenth of its time: 3.8 against 1.4 µs
per id). ``tests/ledger/test_fact_ids.py`` checks both give the same text.
"""

from __future__ import annotations

from hashlib import sha1
from uuid import NAMESPACE_URL, uuid5

FACT_NAMESPACE = uuid5(NAMESPACE_URL, "urn:loyalty-ledger:fact")
_NAMESPACE_BYTES = FACT_NAMESPACE.bytes
_VERSION_BYTE, _VARIANT_BYTE = 6, 8   # RFC 4122 section 4.3: version 5, variant 10xx


def fact_id(member_id: str, ledger_version: int) -> str:
    """The id of the member's fact at ``ledger_version``: ``str(uuid5(FACT_NAMESPACE, name))``."""
    digest = bytearray(sha1(_NAMESPACE_BYTES + f"{member_id}/{ledger_version}".encode()).digest()[:16])
    digest[_VERSION_BYTE] = (digest[_VERSION_BYTE] & 0x0F) | 0x50
    digest[_VARIANT_BYTE] = (digest[_VARIANT_BYTE] & 0x3F) | 0x80
    text = digest.hex()
    return f"{text[:8]}-{text[8:12]}-{text[12:16]}-{text[16:20]}-{text[20:]}"
