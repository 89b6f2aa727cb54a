"""The auditor's view of one member, now, at a ledger version or as of a time.

Read straight from the ledger (never from a read model): the account at the
version (``find_account``) or as of the event time (``account_as_of``: the
state after the last fact whose clock is at or before it), and its facts up
to that version (``history``). Shows the balance and counters, the open lots
with their expiry, the open holds (section 7), the tier with the fact that set it, the annual progress,
and every fact with its source ``event_id``, Kafka topic/partition/offset
and ledger version.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

import orjson
from rich.console import Console
from rich.table import Table

from ledger.application import HistoryEntry, LoyaltyLedger
from ledger.domain import LoyaltyAccount
from ledger.holds import open_holds
from ledger.program import Program
from ledger.wire import json_ready
from projections.figures import annual_figures, balance_figures, tier_figures

HIDDEN_DETAILS = {"member_id", "source_event_id", "source_position", "fingerprint"}


@dataclass(frozen=True)
class MemberView:
    member_id: str
    version: int
    clock: datetime
    balance: dict[str, Any]
    lots: list[dict[str, Any]]
    tier: dict[str, Any]
    annual: list[dict[str, Any]]
    history: list[dict[str, Any]]
    holds: list[dict[str, Any]] = field(default_factory=list)
    profile_asked: bool = False  # section 13: shown only when asked (``--profile``)
    profile: dict[str, Any] | None = None  # decrypted now; None once erased or never given
    campaigns: list[dict[str, Any]] = field(default_factory=list)  # section 12's lines


def member_view(ledger: LoyaltyLedger, member_id: str, *, as_of: datetime | None = None,
                version: int | None = None, with_profile: bool = False) -> MemberView | None:
    """The member as of ``as_of`` or at ``version`` (now if neither); None before any fact.

    ``with_profile`` adds the member's profile as it is now, decrypted (section 13)."""
    if as_of is not None and version is not None:
        raise ValueError("give as_of or version, not both")
    account = (ledger.account_as_of(member_id, as_of) if as_of is not None
               else ledger.find_account(member_id, version))
    if account is None:
        return None
    entries = [entry for entry in ledger.history(member_id) if entry.version <= account.version]
    return MemberView(
        member_id=member_id, version=account.version, clock=account.clock,
        balance=balance_figures(account), lots=_open_lots(account),
        tier=tier_figures(account, _deciding_program(ledger, entries)) | {
            "reason": _tier_reason(entries)},
        annual=_annual(account, entries, ledger),
        history=_history(entries),
        holds=open_holds(account.holds),
        profile_asked=with_profile,
        profile=ledger.member_profile(member_id) if with_profile else None,
        campaigns=_campaign_lines(entries),
    )


def member_view_document(view: MemberView) -> dict[str, Any]:
    """The view as JSON-ready data (RFC 3339 UTC times); the profile only when asked."""
    document = json_ready(asdict(view))
    del document["profile_asked"]
    if not view.profile_asked:
        del document["profile"]
    return document


def _deciding_program(ledger: LoyaltyLedger, entries: list[HistoryEntry]) -> Program:
    """The program version of the last outcome (as recorded), else the ledger's own."""
    versions = [entry.data["program_version"] for entry in entries if "program_version" in entry.data]
    return ledger.program_for(versions[-1]) if versions else ledger.program


def _open_lots(account: LoyaltyAccount) -> list[dict[str, Any]]:
    return [{"lot_id": lot.lot_id, "occurred_at": lot.occurred_at, "expires_at": lot.expires_at,
             "points": lot.points, "remaining": lot.remaining, "active_from": lot.active_from,
             "source_event_id": lot.source_event_id} for lot in account.lots]


def _tier_reason(entries: list[HistoryEntry]) -> dict[str, Any]:
    """The ``tier_changed`` fact that set the tier, or the account's opening."""
    changes = [entry for entry in entries if entry.type == "tier_changed"]
    if not changes:
        return {"reason": "base tier since account_opened", "version": entries[0].version,
                "source_event_id": entries[0].source_event_id}
    last = changes[-1]
    return {"reason": last.data["reason"], "from_tier": last.data["from_tier"],
            "qualifying_spend_minor": last.data["qualifying_spend_minor"],
            "version": last.version, "source_event_id": last.source_event_id}


def _annual(account: LoyaltyAccount, entries: list[HistoryEntry],
            ledger: LoyaltyLedger) -> list[dict[str, Any]]:
    awarded = {entry.data["year"]: entry.data["bonus_points"]
               for entry in entries if entry.type == "year_closed"}
    by_year = annual_figures(account, awarded, ledger.program)
    return [by_year[year] for year in sorted(by_year)]


def _history(entries: list[HistoryEntry]) -> list[dict[str, Any]]:
    """Every fact with the Kafka position of the event that caused it.

    Only a fact that marks its event applied (the outcome) records the
    position; the other facts of the same event (expiry, tier changes, a
    qualified referral, an annual award) get it through their event id.
    """
    positions = {entry.source_event_id: entry.source_position
                 for entry in entries if entry.source_position}
    return [_history_row(entry, positions.get(entry.source_event_id)) for entry in entries]


def _history_row(entry: HistoryEntry, source_position: str | None) -> dict[str, Any]:
    topic, partition, offset = _kafka_position(source_position)
    details = {name: value for name, value in entry.data.items() if name not in HIDDEN_DETAILS}
    return {"version": entry.version, "type": entry.type, "clock": entry.clock,
            "source_event_id": entry.source_event_id, "topic": topic, "partition": partition,
            "offset": offset, "details": details}


def _campaign_lines(entries: list[HistoryEntry]) -> list[dict[str, Any]]:
    """Each campaign line and reward of the member's purchases (section 12), in fact order."""
    lines = []
    for entry in entries:
        if entry.type == "points_earned":
            lines.extend({"version": entry.version, "source_event_id": entry.source_event_id,
                          "campaign_id": line["campaign_id"], "points": line["points"],
                          "reward_id": None} for line in entry.data.get("campaigns", ()))
        elif entry.type == "reward_granted":
            lines.append({"version": entry.version, "source_event_id": entry.source_event_id,
                          "campaign_id": entry.data["campaign_id"], "points": 0,
                          "reward_id": entry.data["reward_id"]})
    return lines


def _kafka_position(source_position: str | None) -> tuple[str | None, int | None, int | None]:
    """``topic/partition/offset`` split (topic names cannot contain ``/``)."""
    if not source_position:
        return None, None, None
    topic, partition, offset = source_position.rsplit("/", 2)
    return topic, int(partition), int(offset)


# ------------------------------------------------------------------ rendering


def render_member_view(view: MemberView, console: Console) -> None:
    """Print the view as rich tables."""
    console.print(f"[bold]{view.member_id}[/bold] at ledger version {view.version}, "
                  f"clock {json_ready(view.clock)}")
    if view.profile_asked:
        console.print(_pairs("profile", view.profile or {"(none)": "erased, or never given"}))
    console.print(_pairs("balance", view.balance))
    console.print(_pairs("tier", {**view.tier, "reason": _compact(view.tier["reason"])}))
    console.print(_rows("open lots", view.lots))
    console.print(_rows("open holds", view.holds))
    console.print(_rows("annual progress", view.annual))
    if view.campaigns:
        console.print(_rows("campaign lines", view.campaigns))
    history = [{**row, "details": _compact(row["details"])} for row in view.history]
    console.print(_rows("history", history))


def _pairs(title: str, values: dict[str, Any]) -> Table:
    table = Table(title=title, show_header=False)
    for name, value in values.items():
        table.add_row(name, _text(value))
    return table


def _rows(title: str, rows: list[dict[str, Any]]) -> Table:
    table = Table(title=title)
    for name in rows[0] if rows else ["(none)"]:
        table.add_column(name)
    for row in rows:
        table.add_row(*(_text(value) for value in row.values()))
    return table


def _compact(values: dict[str, Any]) -> str:
    return " ".join(f"{name}={_text(value)}" for name, value in values.items())


def _text(value: Any) -> str:
    ready = json_ready(value)
    if isinstance(ready, (dict, list)):
        return orjson.dumps(ready).decode()
    return "" if ready is None else str(ready)
