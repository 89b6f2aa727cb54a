"""Builders for section 13's inbound events (members, profiles, erasure, surveys)."""

from __future__ import annotations

from tests.support.builders import _event

PROFILE = {"name": "Ana Example", "email": "ana@example.com", "phone": "+34 600 000 001",
           "birth_date": "1990-06-02"}


def enrolled(member: str, at: str, *, profile: dict | None = None, marketing: bool = False,
             event_id: str | None = None, **optional) -> dict:
    fields = {"consents": {"marketing": marketing}, **optional}
    if profile is not None:
        fields["profile"] = profile
    return _event("member_enrolled", member, at, event_id, **fields)


def profile_updated(member: str, at: str, profile: dict, *, event_id: str | None = None,
                    **optional) -> dict:
    return _event("profile_updated", member, at, event_id, profile=profile, **optional)


def erased(member: str, at: str, *, event_id: str | None = None) -> dict:
    return _event("member_erased", member, at, event_id)


def nps(member: str, at: str, score: int, *, touchpoint: str | None = "checkout",
        event_id: str | None = None) -> dict:
    fields = {"score": score} | ({"touchpoint": touchpoint} if touchpoint else {})
    return _event("nps_response", member, at, event_id, **fields)
