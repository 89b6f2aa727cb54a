"""Crypto-shredding of member profiles (CONTRACT section 13): keys, sealing, keyed fingerprints.

Every member who enrolls gets a key of their own (256 bits, AES-GCM from the
``cryptography`` library), kept in a key table beside the event store
(``ledger.postgres.member_keys`` on PostgreSQL, a dict of the in-memory
recorder otherwise). Profile fields are encrypted under it *before* the
account decides: ``KeyRing.seal`` replaces a profile-bearing command's
plaintext ``profile`` with ``sealed_profile`` (ciphertext) and its payload
fingerprint with a keyed hash (HMAC-SHA256 under a key derived from the
member's), so neither a fact nor a snapshot ever holds the profile or a hash
that could be recomputed from guessed values. Erasing the member deletes the
key in the transaction that saves ``member_erased``: every copy of the
ciphertext (event store, snapshots, topics, backups) becomes unreadable.

The domain stays free of I/O and randomness: the application (``LoyaltyLedger``)
holds the ``KeyRing`` (the port) and seals; key creations and deletions
travel with the batch's facts to the recorder (``KEY_CHANGES``), so they
commit or fail together. Decryption (``open_profile``) happens only where a
profile is used: the auditor's view with a flag, the till API's member
endpoint for the ``crm`` scope, ``loyalty birthdays``. Nothing here logs,
and no exception message carries a key or a profile.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import hmac
import os
from dataclasses import dataclass, field
from datetime import date
from typing import Any, Iterable, Protocol

import orjson
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from ledger import commands as cmd

KEY_BYTES = 32  # AES-256
NONCE_BYTES = 12  # AES-GCM's standard nonce, random per message
SEALED_PREFIX = "v1."
FINGERPRINT_KEY_LABEL = b"loyalty-ledger payload fingerprint v1"
KEY_CHANGES = "member_key_changes"  # insert_events keyword: the batch's key creations/deletions


class ProfileUnreadable(Exception):
    """A sealed profile whose key is gone (erased) or that does not decrypt. Carries no data."""


@dataclass
class KeyChanges:
    """Keys to create and members whose key to delete, committed with a batch's facts."""

    created: dict[str, bytes] = field(default_factory=dict)
    deleted: list[str] = field(default_factory=list)

    def __repr__(self) -> str:  # never a key in a log line or a traceback
        return f"KeyChanges(created={sorted(self.created)}, deleted={self.deleted})"


class KeyStore(Protocol):
    """The key tables beside the event store: members' keys, and dead letters' daily keys."""

    def read_keys(self, member_ids: Iterable[str]) -> dict[str, bytes]: ...

    def dead_letter_key(self, day: date, new_key: bytes) -> bytes: ...

    def dead_letter_keys(self, days: Iterable[date]) -> dict[date, bytes]: ...

    def delete_dead_letter_keys_before(self, day: date) -> int: ...


def seal(key: bytes, member_id: str, value: Any) -> str:
    """``value`` (JSON) encrypted under ``key``; the member id is authenticated data."""
    nonce = os.urandom(NONCE_BYTES)
    sealed = AESGCM(key).encrypt(nonce, orjson.dumps(value, option=orjson.OPT_SORT_KEYS),
                                 member_id.encode("utf-8"))
    return SEALED_PREFIX + base64.urlsafe_b64encode(nonce + sealed).rstrip(b"=").decode("ascii")


def unseal(key: bytes, member_id: str, token: str) -> Any:
    """The JSON value sealed in ``token``; ``ProfileUnreadable`` if it does not decrypt."""
    if not token.startswith(SEALED_PREFIX):
        raise ProfileUnreadable("not a sealed value")
    body = token[len(SEALED_PREFIX):]
    raw = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))
    try:
        plain = AESGCM(key).decrypt(raw[:NONCE_BYTES], raw[NONCE_BYTES:], member_id.encode("utf-8"))
    except InvalidTag:
        raise ProfileUnreadable("the sealed value does not decrypt under this key") from None
    return orjson.loads(plain)


def keyed_fingerprint(key: bytes, unkeyed: str, profile: dict | None) -> str:
    """HMAC-SHA256 of a profile-bearing event's payload under a key derived from the member's."""
    fingerprint_key = hmac.new(key, FINGERPRINT_KEY_LABEL, hashlib.sha256).digest()
    message = unkeyed.encode("ascii") + orjson.dumps(profile, option=orjson.OPT_SORT_KEYS)
    return hmac.new(fingerprint_key, message, hashlib.sha256).hexdigest()[:cmd.FINGERPRINT_HEX_CHARS]


class KeyRing:
    """The application's port to the member keys: seals commands, collects key changes."""

    def __init__(self, store: KeyStore) -> None:
        self.store = store
        self._pending = KeyChanges()
        self._round: dict[str, bytes | None] = {}  # member -> key (None: none), read by ``prefetch``

    def key_of(self, member_id: str) -> bytes | None:
        """The member's key (one created in an unsaved batch included), or None."""
        if member_id in self._pending.created:
            return self._pending.created[member_id]
        round_keys = self._round  # one read: another thread may end the round meanwhile
        if member_id in round_keys:
            return round_keys[member_id]
        return self.store.read_keys([member_id]).get(member_id)

    def prefetch(self, member_ids: set[str]) -> None:
        """Read the keys of ``member_ids`` in one query for a decide round, instead of one
        query per profile-bearing command; ``end_round`` forgets them. Within a round only
        this ring changes those members' keys (creations are pending, deletions are saved
        with the batch and only follow an erasure, after which ``seal`` reads no key)."""
        found = self.store.read_keys(member_ids) if member_ids else {}
        self._round = {member: found.get(member) for member in member_ids}

    def end_round(self) -> None:
        """Forget the keys ``prefetch`` read (a later round reads the table again)."""
        self._round = {}

    def seal(self, command: cmd.Command, account: Any) -> cmd.Command:
        """A profile-bearing command with its profile sealed and its fingerprint keyed.

        An enrollment of a member without a key creates one. A command the
        account will reject without recording a profile (a closed account, a
        profile update before enrollment) keeps no profile and its unkeyed
        fingerprint (a hash of the payload without the profile).
        """
        if not isinstance(command, cmd.PROFILE_BEARING):
            return command
        key = None if account.erased_at is not None else self.key_of(command.member_id)
        if key is None and isinstance(command, cmd.EnrollMember) and account.erased_at is None \
                and account.enrolled_at is None:
            key = self._create(command.member_id)
        if key is None:
            return dataclasses.replace(command, profile=None, sealed_profile=None)
        sealed = None if command.profile is None else seal(key, command.member_id, command.profile)
        return dataclasses.replace(command, profile=None, sealed_profile=sealed,
                                   fingerprint=keyed_fingerprint(key, command.fingerprint,
                                                                 command.profile))

    def event_fingerprint(self, event: dict) -> str:
        """The fingerprint the ledger records for a schema-valid inbound ``event`` (keyed for a
        profile-bearing type whose member has a key), to tell a re-submission from a conflict."""
        command = cmd.command_from_event(event)
        key = self.key_of(command.member_id) if isinstance(command, cmd.PROFILE_BEARING) else None
        if key is None:
            return command.fingerprint
        return keyed_fingerprint(key, command.fingerprint, command.profile)

    def changes_for(self, facts: Iterable[Any]) -> dict[str, KeyChanges]:
        """The ``insert_events`` keyword carrying the pending keys and the deletions the
        ``member_erased`` facts among ``facts`` require (empty when there are none)."""
        erased = [fact.member_id for fact in facts if type(fact).__name__ == "MemberErased"]
        changes = KeyChanges(dict(self._pending.created), erased)
        return {KEY_CHANGES: changes} if changes.created or changes.deleted else {}

    def committed(self, changes: dict[str, KeyChanges]) -> None:
        """The batch carrying ``changes`` was saved: its keys are in the table now."""
        for member in changes.get(KEY_CHANGES, KeyChanges()).created:
            self._pending.created.pop(member, None)

    def key_for_dead_letter(self, member_id: str) -> bytes:
        """The member's key, created (and saved with the batch) if the member has none yet."""
        return self.key_of(member_id) or self._create(member_id)

    def discard(self) -> None:
        """A save failed: forget unsaved keys (a retry reads the table, or creates anew)."""
        self._pending = KeyChanges()
        self.end_round()

    def _create(self, member_id: str) -> bytes:
        key = AESGCM.generate_key(bit_length=KEY_BYTES * 8)
        self._pending.created[member_id] = key
        return key


class MemoryKeyStore:
    """The in-memory store's key tables: dicts kept by its recorder (``MultiTrackingPOPORecorder``)."""

    def __init__(self, keys: dict[str, bytes], day_keys: dict[date, bytes]) -> None:
        self.keys = keys
        self.day_keys = day_keys

    def read_keys(self, member_ids: Iterable[str]) -> dict[str, bytes]:
        return {member: self.keys[member] for member in member_ids if member in self.keys}

    def dead_letter_key(self, day: date, new_key: bytes) -> bytes:
        return self.day_keys.setdefault(day, new_key)

    def dead_letter_keys(self, days: Iterable[date]) -> dict[date, bytes]:
        return {day: self.day_keys[day] for day in days if day in self.day_keys}

    def delete_dead_letter_keys_before(self, day: date) -> int:
        old = [kept for kept in self.day_keys if kept < day]
        for kept in old:
            del self.day_keys[kept]
        return len(old)


def apply_key_changes(keys: dict[str, bytes], changes: KeyChanges | None) -> None:
    """The in-memory table's share of a saved batch: creations, then deletions."""
    if changes is None:
        return
    for member, key in changes.created.items():
        keys.setdefault(member, key)
    for member in changes.deleted:
        keys.pop(member, None)


PROFILE_FACTS = ("MemberEnrolled", "ProfileUpdated")


def sealed_profiles(facts: Iterable[Any]) -> list[str | None]:
    """The sealed profiles among a member's facts, in order (enrollment, then updates)."""
    return [fact.profile for fact in facts if type(fact).__name__ in PROFILE_FACTS]


def open_profile(key: bytes | None, member_id: str, sealed: Iterable[str | None]) -> dict | None:
    """The member's profile now: the sealed profiles of enrollment and updates, in order,
    merged (``null`` clears a field). None when the key is gone (erased) or there was none."""
    if key is None:
        return None
    profile: dict = {}
    for token in sealed:
        if token is not None:
            profile.update(unseal(key, member_id, token))
    return {name: value for name, value in profile.items() if value is not None}
