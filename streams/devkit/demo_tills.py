"""The demo's simulated tills: redemptions through the till API while the chain's stream flows.

``SimulatedTills`` (a thread) plays till sessions against ``loyalty api`` over
HTTP, one after another, at most ``till_sessions_per_s``: a till scans a card
(``GET /v1/members/{id}``), holds points for a reward (``redemption_hold``;
now and then more than the balance, so the dashboard shows a rejection), then
captures them (mostly all, sometimes part), voids the hold, or leaves it to
run out by event time; a few captures are cancelled afterwards (the goods came
back); until one capture was approved, every approved hold is captured (a
short demo shows one). Event times follow the member's clock as the API shows
it (a hold at the clock plus a second), so a hold is not late when it is sent; the chain's
own stream may still move the clock past it before the capture (the capture is
then ``unknown_hold``: the hold ran out). No rule lives here: the ledger
decides, the tills count its answers (``TillCounts``), which the dashboard and
the summary show.
"""

from __future__ import annotations

import random
import threading
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import timedelta

import httpx
from rich.panel import Panel
from rich.table import Table

from ledger.calendar import format_timestamp, parse_timestamp

TILL_SESSIONS_PER_S_DEFAULT = 5
TILL_HTTP_TIMEOUT_S = 10
HOLD_MINUTES = 10
CAPTURE_AFTER_S = 60
CANCEL_AFTER_S = 120
OVER_ASK_SHARE_PCT = 10      # holds asking more than the balance
CAPTURE_SHARE_PCT = 70       # of approved holds; then voids up to VOID_UNTIL_PCT, the rest run out
VOID_UNTIL_PCT = 90
PARTIAL_CAPTURE_SHARE_PCT = 25
CANCEL_SHARE_PCT = 10        # of captures
OVER_ASK_POINTS_MAX = 500
SHOWN_OUTCOMES = ("points_held", "redemption_hold_rejected", "points_redeemed",
                  "redemption_capture_rejected", "hold_released", "redemption_void_rejected",
                  "redemption_cancelled", "redemption_cancel_rejected")


@dataclass
class TillCounts:
    """What the tills were answered: outcomes by (request type, outcome, reason)."""

    sessions: int = 0
    unknown_members: int = 0
    timed_out: int = 0
    outcomes: Counter = field(default_factory=Counter)
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def count(self, kind: str, answer: dict) -> None:
        with self.lock:
            self.outcomes[kind, answer["outcome"], answer["reason"]] += 1

    def snapshot(self) -> "TillCounts":
        """A copy to read while the tills go on counting."""
        with self.lock:
            return TillCounts(self.sessions, self.unknown_members, self.timed_out,
                              Counter(self.outcomes))

    def total(self, kind: str, outcome: str | None = None) -> int:
        return sum(n for (k, o, _), n in self.outcomes.items()
                   if k == kind and (outcome is None or o == outcome))

    def describe(self) -> str:
        """One line for the demo's summary."""
        rejected = self.total("redemption_hold") - self.total("redemption_hold", "points_held")
        return (f"tills through the API: {self.sessions} sessions, "
                f"{self.total('redemption_hold', 'points_held')} holds approved, {rejected} rejected, "
                f"{self.total('redemption_capture', 'points_redeemed')} captured, "
                f"{self.total('redemption_void', 'hold_released')} voided, "
                f"{self.total('redemption_cancel', 'redemption_cancelled')} cancelled")


class SimulatedTills(threading.Thread):
    """Till sessions against the API at ``url`` with ``key``, for members ``M-000001``... ."""

    def __init__(self, url: str, key: str, members: int, seed: int,
                 till_sessions_per_s: int = TILL_SESSIONS_PER_S_DEFAULT) -> None:
        super().__init__(name="demo-tills", daemon=True)
        self.url, self.key, self.members = url, key, members
        self.random = random.Random(seed)
        self.pause_s = 1 / till_sessions_per_s
        self.counts = TillCounts()
        self.stop = threading.Event()
        self.error: BaseException | None = None

    def run(self) -> None:
        headers = {"Authorization": f"Bearer {self.key}"}
        try:
            with httpx.Client(base_url=self.url, headers=headers, timeout=TILL_HTTP_TIMEOUT_S) as till:
                while not self.stop.wait(self.pause_s):
                    self._session(till)
        except BaseException as error:  # noqa: BLE001 - reported by the demo loop
            self.error = error

    def _session(self, till: httpx.Client) -> None:
        member_id = f"M-{self.random.randint(1, self.members):06d}"
        scanned = till.get(f"/v1/members/{member_id}")
        self.counts.sessions += 1
        if scanned.status_code == 404:
            self.counts.unknown_members += 1
            return
        scanned.raise_for_status()
        member = scanned.json()
        at = parse_timestamp(member["clock"]) + timedelta(seconds=1)
        hold = self._post(till, self._event("redemption_hold", member_id, at, {
            "points": self._points_asked(member["balance"]), "reward_id": "RW-DEMO",
            "expires_at": format_timestamp(at + timedelta(minutes=HOLD_MINUTES))}))
        if hold is not None and hold["outcome"] == "points_held":
            self._settle(till, member_id, at, hold)

    def _settle(self, till: httpx.Client, member_id: str, at, hold: dict) -> None:
        """Capture (all or part), void, or leave the hold to run out; cancel a few captures.
        Until one capture was approved, every approved hold is captured: a short demo shows it."""
        choice = self.random.randrange(100)
        then = at + timedelta(seconds=CAPTURE_AFTER_S)
        if choice < CAPTURE_SHARE_PCT or not self.counts.total("redemption_capture", "points_redeemed"):
            part = {}
            if self.random.randrange(100) < PARTIAL_CAPTURE_SHARE_PCT and hold["points"] > 1:
                part = {"points": self.random.randint(1, hold["points"] - 1)}
            captured = self._post(till, self._event("redemption_capture", member_id, then,
                                                    {"hold_event_id": hold["event_id"], **part}))
            if (captured is not None and captured["outcome"] == "points_redeemed"
                    and self.random.randrange(100) < CANCEL_SHARE_PCT):
                self._post(till, self._event("redemption_cancel", member_id,
                                             at + timedelta(seconds=CANCEL_AFTER_S),
                                             {"redemption_event_id": captured["event_id"]}))
        elif choice < VOID_UNTIL_PCT:
            self._post(till, self._event("redemption_void", member_id, then,
                                         {"hold_event_id": hold["event_id"]}))

    def _points_asked(self, balance: int) -> int:
        if balance <= 0 or self.random.randrange(100) < OVER_ASK_SHARE_PCT:
            return max(balance, 0) + self.random.randint(1, OVER_ASK_POINTS_MAX)
        return self.random.randint(1, balance)

    def _event(self, kind: str, member_id: str, at, fields: dict) -> dict:
        store = f"S-{self.random.randint(1, 20):03d}"
        return {"type": kind, "schema_version": 1, "event_id": f"till-{uuid.uuid4().hex}",
                "member_id": member_id, "occurred_at": format_timestamp(at), "store_id": store,
                **fields}

    def _post(self, till: httpx.Client, event: dict) -> dict | None:
        """The outcome the ledger answered, or None when it did not come in time (202)."""
        answer = till.post("/v1/events", json=event)
        if answer.status_code == 202:
            self.counts.timed_out += 1
            return None
        answer.raise_for_status()
        outcome = answer.json()
        self.counts.count(event["type"], outcome)
        return outcome


def till_panel(live: TillCounts) -> Panel:
    """The dashboard's panel: every answer the tills got, approvals and rejections by reason."""
    counts = live.snapshot()
    table = Table()
    for header in ("request", "outcome", "reason", "count"):
        table.add_column(header, justify="right" if header == "count" else "left")
    for (kind, outcome, reason), number in sorted(counts.outcomes.items(),
                                                  key=lambda item: SHOWN_OUTCOMES.index(item[0][1])
                                                  if item[0][1] in SHOWN_OUTCOMES else 99):
        table.add_row(kind, outcome, reason or "", f"{number:,}")
    if counts.timed_out:
        table.add_row("any", "answered 202", "", f"{counts.timed_out:,}")
    return Panel(table, title=f"Tills through the API ({counts.sessions} sessions)")
