"""The member page's figures: the API's member document and history, shaped for a person.

Reads are ``streams.api.reads.LedgerReads`` (``member`` and ``history``,
the same as ``GET /v1/members/{id}``); only the progress to the next tier
and the campaign lines of a fact are worked out here, for display.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from ledger.program import Program
from streams.api.console.web import ConsoleError

HISTORY_FACTS_PER_PAGE = 500  # facts of one member page; "later facts" shows the next ones
PERCENT = 100
VERSION_MAX = 2**63 - 1  # the event store's versions are bigints


async def member_figures(parts, member_id: str, moment: datetime | None, after_version: int,
                         with_profile: bool = False) -> dict | None:
    """The member page's document (the decrypted profile too ``with_profile``: a ``crm``
    key), history page and tier progress; None for an unknown member."""
    document = await _document(parts, member_id, moment, with_profile)
    if document is None:
        return None
    facts = await parts.reads.run(parts.reads.history, member_id, after_version, HISTORY_FACTS_PER_PAGE) or []
    rows = history_rows(facts, document["version"])
    more = len(facts) == HISTORY_FACTS_PER_PAGE and rows and rows[-1]["version"] < document["version"]
    return {"document": document, "history": rows, "after_version": after_version,
            "next_after": rows[-1]["version"] if more else None,
            "progress_pct": tier_progress_pct(document, parts.reads.ledger.program)}


async def _document(parts, member_id: str, moment: datetime | None,
                    with_profile: bool) -> dict | None:
    try:
        return await parts.reads.run(parts.reads.member, member_id, moment, with_profile)
    except OverflowError:  # a time at the edge of datetime's range, moved to UTC
        raise ConsoleError(422, "as of: a time the ledger can hold") from None


def tier_progress_pct(document: dict, program: Program) -> int | None:
    """How far the member is from the current tier's threshold to the next one, in whole percent
    (None at the top tier)."""
    if document["next_tier"] is None:
        return None
    start = program.tier(document["tier"]).threshold_minor
    end = program.tier(document["next_tier"]).threshold_minor
    judged = end - document["spend_to_next_tier"]
    return max(0, min(PERCENT, (judged - start) * PERCENT // (end - start)))


def campaign_lines(fact: dict) -> list[dict]:
    """The fact's campaign lines (CONTRACT section 12: a list of ``campaign_id`` and ``points``),
    under whatever field name the campaigns branch gives them; [] when there are none."""
    return next((value for value in fact["data"].values() if _is_campaign_lines(value)), [])


def shown_data(fact: dict) -> dict[str, Any]:
    """The fact's fields other than its cause and campaign lines (shown in their own columns)."""
    return {name: value for name, value in fact["data"].items()
            if name not in ("program_version", "member_id") and not _is_campaign_lines(value)}


def _is_campaign_lines(value: Any) -> bool:
    return isinstance(value, list) and bool(value) and all(isinstance(line, dict) and "campaign_id" in line
                                                          for line in value)


def history_rows(facts: list[dict], as_of_version: int) -> list[dict]:
    """The facts up to ``as_of_version`` with their cause and campaign lines apart.

    Only an event's outcome fact records its Kafka position (``topic/partition/offset``);
    the other facts of the same event show it through their ``source_event_id``, as
    ``loyalty member`` does.
    """
    positions = {fact["source_event_id"]: fact["source_position"] for fact in facts if fact["source_position"]}
    return [{**fact, "program_version": fact["data"].get("program_version"),
             "source_position": positions.get(fact["source_event_id"]),
             "campaign_lines": campaign_lines(fact), "shown": shown_data(fact)}
            for fact in facts if fact["version"] <= as_of_version]
