"""The demo's live terminal dashboard (rich), read from the event store.

``PipelineProbe`` reads what a loyalty manager wants to see from PostgreSQL
only (tracking rows, read-model tables, recent facts), never from the broker,
so what it shows is what is committed. ``render`` turns one ``Snapshot`` of
those figures into rich panels. Read-only; no business rule lives here.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import psycopg
from eventsourcing.persistence import StoredEvent
from eventsourcing.utils import get_topic
from rich.console import Group
from rich.panel import Panel
from rich.table import Table

from ledger.application import LoyaltyLedger
from ledger.dead_letters import DeadLetter
from ledger.domain import LoyaltyAccount
from streams.outbox import OUTBOX_TRACKING_NAME
from streams.settings import Settings

RECENT_TIER_CHANGES_MAX = 6

TRACKING_SQL = "SELECT application_name, notification_id FROM loyalty_tracking"
COUNT_TOPIC_SQL = "SELECT count(*) FROM loyalty_events WHERE topic = %s"
MAX_NOTIFICATION_SQL = "SELECT coalesce(max(notification_id), 0) FROM loyalty_events"
TIERS_SQL = "SELECT tier, count(*) FROM tiers GROUP BY tier"
POINTS_SQL = """SELECT coalesce(sum(lifetime_earned), 0), coalesce(sum(lifetime_redeemed), 0),
                       coalesce(sum(lifetime_expired), 0), coalesce(sum(lifetime_reversed), 0),
                       coalesce(sum(greatest(balance, 0)), 0), count(*), max(last_event_at)
                FROM balances"""
RECENT_SQL = """SELECT originator_id, originator_version, topic, state FROM loyalty_events
                WHERE topic = %s ORDER BY notification_id DESC LIMIT %s"""


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

    @property
    def consumer_lag(self) -> int:
        return max(self.produced - self.applied, 0)


class PipelineProbe:
    """Reads the dashboard's figures; ``produced`` comes from the demo's producer."""

    def __init__(self, ledger: LoyaltyLedger, settings: Settings) -> None:
        self.ledger = ledger
        self.settings = settings
        self._last: tuple[float, int] | None = None

    def snapshot(self, produced: int) -> Snapshot:
        shot = Snapshot(produced=produced)
        with psycopg.connect(self.settings.database_url, autocommit=True) as connection:
            self._pipeline(connection, shot)
            self._read_models(connection, shot)
            shot.recent_tier_changes = self._recent(connection)
        shot.events_per_s = self._rate(shot.applied)
        return shot

    def _pipeline(self, connection, shot: Snapshot) -> None:
        tracked = dict(connection.execute(TRACKING_SQL).fetchall())
        prefix = f"{self.settings.events_topic}:"
        shot.applied = sum(offset + 1 for name, offset in tracked.items() if name.startswith(prefix))
        shot.dead_letters = connection.execute(COUNT_TOPIC_SQL, (get_topic(DeadLetter.Recorded),)
                                               ).fetchone()[0]
        newest = connection.execute(MAX_NOTIFICATION_SQL).fetchone()[0]
        shot.outbox_lag = max(newest - tracked.get(OUTBOX_TRACKING_NAME, 0), 0)

    @staticmethod
    def _read_models(connection, shot: Snapshot) -> None:
        if not _table_exists(connection, "balances") or not _table_exists(connection, "tiers"):
            return
        shot.tiers = dict(connection.execute(TIERS_SQL).fetchall())
        row = connection.execute(POINTS_SQL).fetchone()
        (shot.issued, shot.redeemed, shot.expired, shot.reversed, shot.liability,
         shot.members) = row[:6]
        shot.event_time = row[6].strftime("%Y-%m-%d %H:%M") if row[6] else "-"

    def _recent(self, connection) -> list[tuple[str, str, str, str, str]]:
        rows = connection.execute(RECENT_SQL, (get_topic(LoyaltyAccount.TierChanged),
                                               RECENT_TIER_CHANGES_MAX)).fetchall()
        changes = []
        for originator_id, version, topic, state in rows:
            fact = self.ledger.mapper.to_domain_event(
                StoredEvent(originator_id, version, topic, bytes(state)))
            changes.append((fact.timestamp.strftime("%Y-%m-%d"), fact.member_id, fact.from_tier,
                            fact.to_tier, fact.reason))
        return changes

    def _rate(self, applied: int) -> int:
        now = time.monotonic()
        previous, self._last = self._last, (now, applied)
        if previous is None or now <= previous[0]:
            return 0
        return int((applied - previous[1]) / (now - previous[0]))


def _table_exists(connection, name: str) -> bool:
    return connection.execute("SELECT to_regclass(%s) IS NOT NULL", (name,)).fetchone()[0]


def render(shot: Snapshot, program_tiers: list[str], title: str) -> Group:
    return Group(
        Panel(_pipeline_table(shot), title=title, subtitle=f"event time {shot.event_time}"),
        Panel(Group(_tiers_table(shot, program_tiers), _points_table(shot)), title="Members"),
        Panel(_recent_table(shot), title="Recent tier changes"),
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
