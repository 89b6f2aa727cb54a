"""Dead letters that may carry a profile, stored encrypted (CONTRACT section 13).

A dead letter keeps its message's original bytes, so a broken
``member_enrolled`` or ``profile_updated`` would keep a profile in the
clear. ``DeadLetterSealer.seal`` takes such an envelope (``dead_letter.v1``)
and moves its ``value_base64``, ``value_preview`` and ``reason_message``
(a schema error quotes the offending value) into ``sealed_value``,
encrypted with AES-256-GCM:

- under the member's own key when the message names a member (its JSON
  ``member_id``, else its Kafka key) whose account is not closed: the key is
  created if the member has none yet and saved with the batch, so erasing
  the member later makes the dead letter unreadable too;
- otherwise (no readable member, or an erased one: no key is ever created
  for an erased member) under the dead-letter key of the UTC day it was
  dead-lettered.

``sealed_under`` names the key: ``member:<member_id>`` or ``day:YYYY-MM-DD``.

"May carry a profile" is decided conservatively: any value whose bytes
contain ``"profile"`` or a profile-bearing type's name (a broken document
cannot be parsed), or a JSON object whose ``type`` is one (escaped letters).

Deleting old day keys, by what and when: every time a day key is taken
(the first profile-bearing dead letter of a day creates it), the keys of
days more than the program's ``privacy.dead_letter_days_max`` before that
day are deleted in the same call; ``purge_dead_letter_keys`` does the same
on demand (``loyalty birthdays`` runs it daily; see the README's privacy section).
"""

from __future__ import annotations

from datetime import date, datetime, timedelta
from typing import Any

import orjson
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from ledger.privacy import KEY_BYTES, seal, unseal

PROFILE_BEARING_TYPES = ("member_enrolled", "profile_updated")
PROFILE_MARKERS = (b'"profile"', *(kind.encode() for kind in PROFILE_BEARING_TYPES))
SEALED_REASON = "(sealed with the value: the message may carry profile fields)"
SEALED_FIELDS = ("value_base64", "value_preview", "reason_message")
MEMBER_PREFIX, DAY_PREFIX = "member:", "day:"
DAY_AAD_PREFIX = "dead-letter:"


def may_carry_profile(value: bytes | None) -> bool:
    if not value:
        return False
    if any(marker in value for marker in PROFILE_MARKERS):
        return True
    try:
        document = orjson.loads(value)
    except orjson.JSONDecodeError:
        return False
    return isinstance(document, dict) and document.get("type") in PROFILE_BEARING_TYPES


def readable_member(value: bytes | None, key: bytes | None) -> str | None:
    """The member a message names: its JSON ``member_id`` (a non-empty string), else its key."""
    try:
        document = orjson.loads(value or b"")
    except orjson.JSONDecodeError:
        document = None
    member = document.get("member_id") if isinstance(document, dict) else None
    if isinstance(member, str) and 0 < len(member) <= 64 and "\x00" not in member:
        return member
    try:
        named = (key or b"").decode("utf-8")
    except UnicodeDecodeError:
        return None
    return named if 0 < len(named) <= 64 and "\x00" not in named else None


class DeadLetterSealer:
    """Seals profile-bearing dead letters with the ledger's key tables."""

    def __init__(self, ledger: Any) -> None:
        self.ledger = ledger

    def seal(self, envelope: dict, value: bytes | None, key: bytes | None) -> dict:
        """``envelope`` with its value sealed if the message may carry a profile, else as is."""
        if not may_carry_profile(value):
            return envelope
        hidden = {name: envelope[name] for name in SEALED_FIELDS}
        member = readable_member(value, key)
        if member is not None and not self._closed(member):
            sealed = seal(self.ledger.member_keys.key_for_dead_letter(member), member, hidden)
            under = MEMBER_PREFIX + member
        else:
            day = _day_of(envelope["dead_lettered_at"])
            sealed = seal(self._day_key(day), DAY_AAD_PREFIX + day.isoformat(), hidden)
            under = DAY_PREFIX + day.isoformat()
        return {**envelope, "value_base64": None, "value_preview": None,
                "reason_message": SEALED_REASON, "sealed_value": sealed, "sealed_under": under}

    def _closed(self, member: str) -> bool:
        account = self.ledger.find_account(member)
        return account is not None and account.erased_at is not None

    def _day_key(self, day: date) -> bytes:
        store = self.ledger.member_keys.store
        purge_dead_letter_keys(self.ledger, day)
        return store.dead_letter_key(day, AESGCM.generate_key(bit_length=KEY_BYTES * 8))


def purge_dead_letter_keys(ledger: Any, today: date) -> int:
    """Delete the day keys older than ``privacy.dead_letter_days_max`` days before ``today``."""
    oldest_kept = today - timedelta(days=ledger.program.dead_letter_days_max)
    return ledger.member_keys.store.delete_dead_letter_keys_before(oldest_kept)


def open_dead_letter(ledger: Any, envelope: dict) -> dict | None:
    """The sealed fields of a dead letter (for an operator replaying it), or None once its
    key is gone (the member erased, or the day key deleted)."""
    under = envelope["sealed_under"]
    if under.startswith(MEMBER_PREFIX):
        member = under.removeprefix(MEMBER_PREFIX)
        key, aad = ledger.member_keys.key_of(member), member
    else:
        day = date.fromisoformat(under.removeprefix(DAY_PREFIX))
        key = ledger.member_keys.store.dead_letter_keys([day]).get(day)
        aad = DAY_AAD_PREFIX + day.isoformat()
    return None if key is None else unseal(key, aad, envelope["sealed_value"])


def _day_of(timestamp: str) -> date:
    return datetime.fromisoformat(timestamp.replace("Z", "+00:00")).date()
