"""The member page's figures: the API's member document and history, shaped for a person.

Reads are ``streams.api.reads.LedgerReads`` (``member`` and ``history``,
the same as ``GET /v1/members/{id}``); only the progress to the next tier
and the campaign lines of a fact are worked out here, for display.
"""

from __future__ import annotations

from typing import Any

from ledger.program import Program

HISTORY_FACTS_PER_PAGE = 500
PERCENT = 100


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
