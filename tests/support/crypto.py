"""Deterministic profile sealing for tests comparing two ledgers' stored bytes."""

from __future__ import annotations

import itertools
import types

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

import ledger.privacy as privacy


def deterministic_crypto(monkeypatch) -> None:
    """Keys and nonces from a counter, so two ledgers seal byte for byte alike (call it
    before each ledger)."""
    counter = itertools.count()

    class CountedAESGCM:
        def __new__(cls, key: bytes) -> AESGCM:
            return AESGCM(key)

        @staticmethod
        def generate_key(bit_length: int) -> bytes:
            return next(counter).to_bytes(bit_length // 8, "big")

    monkeypatch.setattr(privacy, "AESGCM", CountedAESGCM)
    monkeypatch.setattr(privacy, "os", types.SimpleNamespace(
        urandom=lambda size: next(counter).to_bytes(size, "big")))
