"""The demo's live terminal dashboard (rich), read from PostgreSQL.

``PipelineProbe`` reads what a loyalty manager wants to see from what is
committed, never from the broker: the ledger's tracking positions and log
(``LoyaltyLedger.all_tracked_positions``, ``fact_log``) and the balance and
tier read models and the campaigns (``DASHBOARD_READ_MODELS``). ``render`` turns one
``Snapshot`` of those figures into rich panels. Read-only; no business rule
lives here.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from eventsourcing.utils import get_topic
from rich.console import Group
from rich.panel import Panel
from rich.table import Table

from ledger.application import LoyaltyLedger
from ledger.dead_letters import DeadLetter
from ledger.domain import LoyaltyAccount
from projections.runner import ReadModels
from streams.devkit.campaign_panel import CampaignLine, campaign_lines, campaigns_table
from streams.outbox import OUTBOX_TRACKING_NAME
from streams.settings import Settings

RECENT_TIER_CHANGES_MAX = 6
DASHBOARD_READ_MODELS = ("balances", "tiers", "campaigns")


@dataclass
class Snapshot:
    produced: int = 0
    applied: int = 0
    events_per_s: int = 0
    dead_letters: int = 0
    outbox_lag: int = 0
    tiers: dict[str, int] = field(default_factory=dict)
    issued: int = 0
    redeemed: int = 0
    expired: int = 0
    reversed: int = 0
    liability: int = 0
    members: int = 0
    event_time: str = "-"
    recent_tier_changes: list[tuple[str, str, str, str, str]] = field(default_factory=list)
    campaigns: list[CampaignLine] = field(default_factory=list)  # section 12 (campaign_panel)

    @property
    def consumer_lag(self) -> int:
        return max(self.produced - self.applied, 0)


class PipelineProbe:
    """Reads the dashboard's figures; ``produced`` comes from the demo's producer.

    ``models`` holds at least ``DASHBOARD_READ_MODELS``.
    """

    def __init__(self, ledger: LoyaltyLedger, settings: Settings, models: ReadModels) -> None:
        self.ledger = ledger
        self.settings = settings
        self.models = models
        self._last: tuple[float, int] | None = None

    def snapshot(self, produced: int) -> Snapshot:
        shot = Snapshot(produced=produced)
        self._pipeline(shot)
        self._read_models(shot)
        shot.recent_tier_changes = self._recent()
        shot.campaigns = campaign_lines(self.ledger.program, self.models)
        shot.events_per_s = self._rate(shot.applied)
        return shot

    def _pipeline(self, shot: Snapshot) -> None:
        tracked = self.ledger.all_tracked_positions()
        prefix = f"{self.settings.events_topic}:"
        shot.applied = sum(offset + 1 for name, offset in tracked.items() if name.startswith(prefix))
        dead_letter_topic = get_topic(DeadLetter.Recorded)
        shot.dead_letters = self.ledger.fact_log.count([dead_letter_topic])[dead_letter_topic]
        shot.outbox_lag = max(self.ledger.fact_log.head() - tracked.get(OUTBOX_TRACKING_NAME, 0), 0)

    def _read_models(self, shot: Snapshot) -> None:
        shot.tiers = self.models.view("tiers").members_by_tier()
        totals = self.models.view("balances").totals()
        (shot.issued, shot.redeemed, shot.expired, shot.reversed, shot.liability,
         shot.members) = (totals["earned"], totals["redeemed"], totals["expired"],
                          totals["reversed"], totals["liability"], totals["members"])
        last = totals["last_event_at"]
        shot.event_time = last.strftime("%Y-%m-%d %H:%M") if last else "-"

    def _recent(self) -> list[tuple[str, str, str, str, str]]:
        facts = self.ledger.fact_log.latest([get_topic(LoyaltyAccount.TierChanged)],
                                            RECENT_TIER_CHANGES_MAX)
        return [(fact.timestamp.strftime("%Y-%m-%d"), fact.member_id, fact.from_tier,
                 fact.to_tier, fact.reason) for fact in facts]

    def _rate(self, applied: int) -> int:
        now = time.monotonic()
        previous, self._last = self._last, (now, applied)
        if previous is None or now <= previous[0]:
            return 0
        return int((applied - previous[1]) / (now - previous[0]))


def render(shot: Snapshot, program_tiers: list[str], title: str) -> Group:
    return Group(
        Panel(_pipeline_table(shot), title=title, subtitle=f"event time {shot.event_time}"),
        Panel(Group(_tiers_table(shot, program_tiers), _points_table(shot)), title="Members"),
        Panel(_recent_table(shot), title="Recent tier changes"),
        *([Panel(campaigns_table(shot.campaigns), title="Campaigns")] if shot.campaigns else []),
    )


def _pipeline_table(shot: Snapshot) -> Table:
    table = Table.grid(padding=(0, 3))
    for _ in range(6):
        table.add_column(justify="right")
    table.add_row("produced", f"{shot.produced:,}", "applied", f"{shot.applied:,}",
                  "events/s", f"{shot.events_per_s:,}")
    table.add_row("consumer lag", f"{shot.consumer_lag:,}", "dead letters", f"{shot.dead_letters:,}",
                  "outbox lag", f"{shot.outbox_lag:,}")
    return table


def _tiers_table(shot: Snapshot, program_tiers: list[str]) -> Table:
    table = Table(title=f"{shot.members:,} members by tier", expand=True)
    for tier in program_tiers:
        table.add_column(tier, justify="right")
    table.add_row(*(f"{shot.tiers.get(tier, 0):,}" for tier in program_tiers))
    return table


def _points_table(shot: Snapshot) -> Table:
    table = Table(title="points", expand=True)
    for name in ("issued", "redeemed", "expired", "reversed", "liability (open)"):
        table.add_column(name, justify="right")
    table.add_row(*(f"{value:,}" for value in (shot.issued, shot.redeemed, shot.expired,
                                                shot.reversed, shot.liability)))
    return table


def _recent_table(shot: Snapshot) -> Table:
    table = Table(expand=True)
    for name in ("effective", "member", "from", "to", "reason"):
        table.add_column(name)
    for change in shot.recent_tier_changes:
        table.add_row(*change)
    return table
