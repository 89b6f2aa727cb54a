"""A deterministic POS/CRM traffic simulator of a retail chain (``loyalty simulate``, the demo).

It produces what the chain's tills, web shop and CRM would write to
``loyalty.events``: inbound events of CONTRACT section 2, plus the faults real
feeds have. It holds no business rule: it never decides points, tiers or
rejections; the ledger does. Every number is a named constant below or a
``SimulationConfig`` field, rates in parts per million (``_ppm``), money in
minor units, times in integer seconds since the epoch (UTC).

The model:

- Members: ``members`` exist at ``start``; ``new_members_pct`` more join during
  the period, spread evenly over the days. A new member joins at a till and
  buys at once; ``referral_rate_ppm`` of them were referred by an existing
  member (the CRM sends the ``referral`` just before that first purchase).
  Among referrals, ``self_referral_ppm`` name the referee itself and
  ``second_referral_ppm`` are followed days later by another referral of the
  same referee (both are rejected by the ledger, on purpose).
- Frequency: each member's yearly purchase rate is drawn once from a gamma
  distribution (shape ``MEMBER_RATE_GAMMA_SHAPE`` < 1: many occasional
  shoppers, a few regulars; mean ``purchases_per_member_year``). Each day the
  number of purchases is Poisson with mean (sum of rates) x day factor, and
  each purchase picks its member in proportion to the member's rate.
- Day factor: weekday (Saturday peak, busy Sunday), month (December peak,
  January dip), a ``SUMMER_SALE_DAYS`` summer sale from ``SUMMER_SALE_START``,
  and ``CLOSED_DAYS`` when stores are shut and only the web shop sells.
- Baskets: lognormal around the member's own typical basket (itself lognormal
  around ``basket_median_minor``): skewed, mean above median; larger online
  and in December; whole minor units clamped to ``BASKET_MINOR_MIN..MAX``.
- Channels: each member has an online share (beta distribution); POS
  purchases happen in the member's home store (stores are Zipf-popular) or
  sometimes another one, during opening hours in the chain's local time
  (Central European, with summer time); online ones at any hour, in UTC.
- Refunds: ``refund_rate_ppm`` of POS purchases (``ONLINE_REFUND_FACTOR``
  times more online), 1 to ``REFUND_DELAY_DAYS_MAX`` days later, full or
  partial; some partial refunds are followed by a refund of the rest.
- Redemptions: at a visit, a member whose points (a rough estimate of the
  simulator's own: one point per currency unit, no tiers, no expiry) cover a
  reward may redeem one; ``OVERREACH_PPM`` of attempts ask for more than the
  estimate. Expiry, late events and the rough estimate make a few fail.
- Holds (CONTRACT section 7): at ``hold_rate_ppm`` of the POS visits whose
  estimate covers a reward and that redeem nothing else, the till holds a
  reward's points (``redemption_hold``, running out ``HOLD_DURATION_SECONDS``
  later) ``HOLD_LEAD_SECONDS`` before the purchase and settles it a few
  seconds later, before the purchase: ``hold_void_ppm`` of holds are voided
  (``redemption_void``), the rest captured (``redemption_capture``),
  ``partial_capture_ppm`` of those for part of the hold. The capture or void
  names the hold's ``event_id`` and is delivered after it. Holds and their
  settlements are never late (a till waits for their answer; only the
  purchase's upload may be). ``hold_rate_ppm=0`` gives the previous stream,
  byte for byte (no draw is made).
- Birthdays: each member has a birth date; the CRM batch sends one
  ``birthday`` per year on that day (29 February is celebrated on 28 February
  in common years) to members who joined before that day.
- Members (section 13, ``streams/devkit/member_traffic.py``): most members
  enroll with a profile and a marketing consent, some purchases are followed
  by an NPS answer whose spread differs by the simulator's tier estimate, and
  a few enrolled members ask to be erased. ``crm_birthdays`` off leaves the
  birthdays to ``loyalty birthdays`` (the demo does so).
- Year end: when the period contains 31 December of year Y, the year-end job
  sends ``year_closed`` for Y to every member known by then, at
  Y+1-01-01T00:05:00Z, id ``year-closed:{Y}:{member_id}``.
- Late events: ``late_rate_ppm`` of till and CRM uploads reach the stream
  hours or days after they happened; the rest is in ``occurred_at`` order.
  A refund is never delivered before its purchase, nor a redemption after the
  purchase of the same visit.
- Faults (``simulate`` only, not ``simulate_events``): exact redeliveries of a
  line up to ``DUPLICATE_DELAY_LINES_MAX`` lines later, and malformed lines
  (``MalformedKind``) taking turns.

Determinism: one ``random.Random(seed)`` draws the traffic in a fixed order,
and a second one seeded ``f"{seed}/faults"`` draws the faults, so that the
valid lines of ``simulate`` are exactly ``simulate_events``. Nothing reads the
clock, iterates a set or uses ``hash()``: the same seed gives the same bytes
in every process (on the same Python version: ``random``'s distributions are
not promised to be stable across versions).

Memory is bounded in members, not in events: per-member profiles, plus the
events waiting in a heap for their delivery time (the day being generated,
scheduled refunds and late uploads of the next few days, and the year-end
batch).
"""

from __future__ import annotations

import enum
import heapq
import math
import random
from bisect import bisect_right
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from functools import lru_cache
from itertools import accumulate
from pathlib import Path
from typing import Iterable, Iterator, NamedTuple

import orjson

from streams.devkit import member_traffic
from streams.devkit.member_traffic import ENROLLMENT_LEAD_SECONDS
from streams.devkit.baskets import basket_items

# ------------------------------------------------------------------ limits

PPM = 1_000_000
MEMBERS_MAX = 10_000_000
STORES_MAX = 999
DAYS_MAX = 3_660
YEAR_MIN = 1970
YEAR_MAX = 2998                      # year_closed of the last year lands in YEAR_MAX + 1
SECONDS_PER_DAY = 86_400
SECONDS_PER_HOUR = 3_600
DAYS_PER_YEAR = 365

# ---------------------------------------------------------------- behaviour

MEMBER_RATE_GAMMA_SHAPE = 0.6        # < 1: most members shop rarely, a few very often
MEMBER_BASKET_SIGMA = 0.35           # spread of members' typical baskets (lognormal sigma)
BASKET_SIGMA = 0.8                   # spread of one member's baskets (lognormal sigma)
BASKET_MINOR_MIN = 99
BASKET_MINOR_MAX = 2_000_000
ONLINE_BASKET_PCT = 130
DECEMBER_BASKET_PCT = 115
ONLINE_SHARE_BETA = (1.0, 4.0)       # members' online share: mean 20 %
HOME_STORE_PPM = 850_000             # POS visits in the member's home store
STORE_ZIPF_EXPONENT = 0.8
ONLINE_STORE_ID = "WEB-EU"

WEEKDAY_PCT = (80, 80, 85, 90, 110, 150, 105)      # Monday .. Sunday; mean 100
MONTH_PCT = (80, 85, 95, 100, 100, 100, 105, 100, 95, 100, 110, 130)  # mean 100
SUMMER_SALE_START = (7, 1)           # month, day
SUMMER_SALE_DAYS = 14
SUMMER_SALE_PCT = 160
CLOSED_DAYS = ((1, 1), (12, 25))     # stores shut: only the web shop sells
CLOSED_DAY_PCT = 25

STORE_OPEN_HOUR = 8                  # local time
STORE_CLOSE_HOUR = 21
STORE_PEAK_HOUR = 17
ONLINE_PEAK_HOUR_UTC = 19
CRM_BATCH_HOUR = 6                   # local time of the birthday batch
YEAR_END_JOB_SECONDS = 5 * 60        # the year-end job runs at 00:05:00Z
REFERRAL_LEAD_SECONDS = 120          # the referral is registered before the first purchase
REDEMPTION_LEAD_SECONDS = 20         # redeem at the till, then pay
HOLD_LEAD_SECONDS = 90               # a hold is placed this long before the purchase
HOLD_SETTLE_SECONDS_MAX = 60         # captured or voided 1 .. this many seconds after the hold
HOLD_DURATION_SECONDS = 15 * 60      # expires_at - occurred_at (the program allows 30 minutes)
PARTIAL_CAPTURE_PCT = 50             # a partial capture takes this share of the hold

ONLINE_REFUND_FACTOR = 3
FULL_REFUND_PPM = 600_000
REST_REFUND_PPM = 250_000            # partial refunds followed by a refund of the rest
REFUND_DELAY_DAYS_MEAN = 6
REFUND_DELAY_DAYS_MAX = 30
REST_REFUND_DELAY_DAYS_MAX = 7
SECOND_REFERRAL_DELAY_DAYS_MAX = 20

MINOR_PER_ESTIMATED_POINT = 100      # the simulator's rough estimate: 1 point per unit
BIRTHDAY_POINTS_ESTIMATE = 200
OVERREACH_PPM = 30_000
REWARDS = (                          # reward_id, points, cash top-up (minor units) or None
    ("RW-COFFEE", 250, None),
    ("RW-VOUCHER-5", 500, None),
    ("RW-TOTE-BAG", 800, None),
    ("RW-VOUCHER-10", 1_000, None),
    ("RW-VOUCHER-25", 2_500, None),
    ("RW-HEADPHONES", 3_000, 4_990),
    ("RW-BLENDER", 5_000, 2_990),
)
FOREIGN_CURRENCIES = ("USD", "GBP", "CHF")

LATE_DAYS_PPM = 300_000              # late uploads that are days (not hours) late
LATE_HOURS_MAX = 12
LATE_DAYS_MAX = 3
BIRTH_AGE_YEARS = (18, 85)
POISSON_NORMAL_ABOVE = 50.0          # above this mean, a rounded normal draw
DUPLICATE_DELAY_LINES_MAX = 200
DAY_CACHE_SIZE = 64

LABEL_EVENT = "event"
LABEL_DUPLICATE = "duplicate"
_EPOCH = datetime(1970, 1, 1)
_NEVER_DROPPED = ("type", "schema_version", "channel", "cash_top_up_minor",  # or optional
                  "consents", "profile", "touchpoint", "items")


class MalformedKind(enum.StrEnum):
    """The bad lines ``simulate`` mixes in, taking turns; the value is the line's label."""

    NOT_JSON = "not_json"                # an upload cut in the middle
    MISSING_FIELD = "missing_field"      # a required field dropped
    NEGATIVE_AMOUNT = "negative_amount"  # amount_minor below zero
    NO_OFFSET = "no_offset"              # occurred_at without its UTC offset


MALFORMED_REASONS = {                    # streams.validation.ReasonCode each kind must get
    MalformedKind.NOT_JSON: "not_json",
    MalformedKind.MISSING_FIELD: "schema",
    MalformedKind.NEGATIVE_AMOUNT: "schema",
    MalformedKind.NO_OFFSET: "schema",
}
_MALFORMED_ORDER = tuple(MalformedKind)


# ------------------------------------------------------------ configuration


@dataclass(frozen=True)
class SimulationConfig:
    """What to simulate. Rates are parts per million; money is minor units."""

    seed: int = 1
    members: int = 1_000                  # members at ``start``
    stores: int = 20
    start: date = date(2025, 1, 1)
    days: int = 365
    new_members_pct: int = 10             # members joining during the period, % of ``members``
    purchases_per_member_year: int = 24   # mean over members
    basket_median_minor: int = 3_500
    currency: str = "EUR"
    refund_rate_ppm: int = 50_000         # of POS purchases
    redemption_rate_ppm: int = 120_000    # of visits where the estimate covers a reward
    hold_rate_ppm: int = 40_000           # of POS visits covering a reward, redeeming nothing: a hold
    hold_void_ppm: int = 150_000          # of holds: voided (the rest are captured)
    partial_capture_ppm: int = 100_000    # of captures: part of the hold
    referral_rate_ppm: int = 400_000      # of new members
    self_referral_ppm: int = 30_000       # of referrals
    second_referral_ppm: int = 60_000     # of referrals
    foreign_currency_ppm: int = 500       # of purchases
    late_rate_ppm: int = 10_000           # of till and CRM uploads
    enrollment_ppm: int = 900_000         # of members: enroll with a profile (section 13)
    nps_rate_ppm: int = 30_000            # of enrolled members' purchases: an NPS answer follows
    erasure_rate_ppm: int = 2_000         # per enrolled member-year: asks to be erased
    crm_birthdays: bool = True            # the CRM's birthday batch (off: ``loyalty birthdays``)
    duplicate_rate_ppm: int = 2_000       # of lines (simulate only)
    malformed_rate_ppm: int = 500         # of lines (simulate only)

    def __post_init__(self) -> None:
        _require(1 <= self.members <= MEMBERS_MAX, f"members must be 1..{MEMBERS_MAX}")
        _require(1 <= self.stores <= STORES_MAX, f"stores must be 1..{STORES_MAX}")
        _require(1 <= self.days <= DAYS_MAX, f"days must be 1..{DAYS_MAX}")
        _require(YEAR_MIN <= self.start.year and self.end.year <= YEAR_MAX,
                 f"the period must lie within {YEAR_MIN}..{YEAR_MAX}")
        _require(self.new_members_pct >= 0, "new_members_pct must be >= 0")
        _require(self.purchases_per_member_year >= 0, "purchases_per_member_year must be >= 0")
        _require(self.basket_median_minor >= BASKET_MINOR_MIN,
                 f"basket_median_minor must be >= {BASKET_MINOR_MIN}")
        for name in _RATE_FIELDS:
            _require(0 <= getattr(self, name) <= PPM, f"{name} must be 0..{PPM}")

    @property
    def end(self) -> date:
        """The first day after the period."""
        return self.start + timedelta(days=self.days)

    @property
    def new_members(self) -> int:
        return self.members * self.new_members_pct // 100


_RATE_FIELDS = tuple(name for name in SimulationConfig.__dataclass_fields__ if name.endswith("_ppm"))


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise ValueError(message)


@dataclass
class SimulationSummary:
    """Counts of what was emitted so far; filled while the stream is consumed."""

    events_by_type: dict[str, int] = field(default_factory=dict)
    late_events: int = 0
    duplicates: int = 0
    malformed_by_kind: dict[str, int] = field(default_factory=dict)
    injected: dict[str, int] = field(default_factory=dict)   # faults meant for the ledger to reject
    lines: int = 0
    members: int = 0
    first_occurred_at: str | None = None
    last_occurred_at: str | None = None

    @property
    def events(self) -> int:
        return sum(self.events_by_type.values())

    @property
    def malformed(self) -> int:
        return sum(self.malformed_by_kind.values())

    def describe(self) -> str:
        """A few lines for a terminal."""
        return "\n".join([
            f"{self.lines:,} lines: {self.events:,} events, {self.duplicates:,} redeliveries, "
            f"{self.malformed:,} malformed",
            f"events: {_counts(self.events_by_type)}",
            f"malformed: {_counts(self.malformed_by_kind) or 'none'}",
            f"late events: {self.late_events:,}; members: {self.members:,}; "
            f"occurred {self.first_occurred_at} .. {self.last_occurred_at}",
            f"meant to be rejected: {_counts(self.injected) or 'none'}",
        ])


def _counts(counts: dict[str, int]) -> str:
    return ", ".join(f"{name} {count:,}" for name, count in sorted(counts.items()))


def _bump(counts: dict[str, int], name: str) -> None:
    counts[name] = counts.get(name, 0) + 1


# ----------------------------------------------------------------- calendar


class _Day(NamedTuple):
    date: date
    start: int        # epoch seconds of 00:00:00Z
    offset_s: int     # the chain's local UTC offset that day
    factor_pct: int   # purchase intensity against an average day
    closed: bool      # stores shut: web shop only


class _At(NamedTuple):
    """A moment and the UTC offset it is written with."""

    epoch: int
    offset_s: int

    def stamp(self) -> str:
        local = (_EPOCH + timedelta(seconds=self.epoch + self.offset_s)).isoformat()
        return local + _offset_text(self.offset_s)


def _offset_text(offset_s: int) -> str:
    if offset_s == 0:
        return "Z"
    sign = "+" if offset_s > 0 else "-"
    hours, seconds = divmod(abs(offset_s), SECONDS_PER_HOUR)
    return f"{sign}{hours:02d}:{seconds // 60:02d}"


def _epoch(day: date) -> int:
    return (day - _EPOCH.date()).days * SECONDS_PER_DAY


def _last_sunday(year: int, month: int) -> date:
    last = (date(year, month + 1, 1) if month < 12 else date(year + 1, 1, 1)) - timedelta(days=1)
    return last - timedelta(days=(last.weekday() - 6) % 7)


def _central_european_offset_s(day: date) -> int:
    """+02:00 from the last Sunday of March to the day before the last Sunday of
    October, +01:00 otherwise (the switch happens at 01:00Z, before opening)."""
    summer = _last_sunday(day.year, 3) <= day < _last_sunday(day.year, 10)
    return 2 * SECONDS_PER_HOUR if summer else SECONDS_PER_HOUR


def _factor_pct(day: date) -> int:
    """Weekday x month x summer sale, in percent of an average day."""
    pct = WEEKDAY_PCT[day.weekday()] * MONTH_PCT[day.month - 1] // 100
    sale_start = date(day.year, *SUMMER_SALE_START)
    if sale_start <= day < sale_start + timedelta(days=SUMMER_SALE_DAYS):
        pct = pct * SUMMER_SALE_PCT // 100
    if (day.month, day.day) in CLOSED_DAYS:
        pct = pct * CLOSED_DAY_PCT // 100
    return pct


@lru_cache(maxsize=DAY_CACHE_SIZE)
def _day_of(day: date) -> _Day:
    closed = (day.month, day.day) in CLOSED_DAYS
    return _Day(day, _epoch(day), _central_european_offset_s(day), _factor_pct(day), closed)


def _birthday_keys(day: date) -> tuple[tuple[int, int], ...]:
    """Birth dates celebrated on ``day``: 29 February counts on 28 February in common years."""
    leap = day.year % 4 == 0 and (day.year % 100 != 0 or day.year % 400 == 0)
    if (day.month, day.day) == (2, 28) and not leap:
        return ((2, 28), (2, 29))
    return ((day.month, day.day),)


def _poisson(rng: random.Random, mean: float) -> int:
    """Knuth's product method for small means, a rounded normal above
    ``POISSON_NORMAL_ABOVE`` (its error is far below the noise modelled)."""
    if mean <= 0:
        return 0
    if mean > POISSON_NORMAL_ABOVE:
        return max(0, round(rng.gauss(mean, math.sqrt(mean))))
    limit, count, product = math.exp(-mean), 0, rng.random()
    while product > limit:
        count += 1
        product *= rng.random()
    return count


# ------------------------------------------------------------------ members


class MemberProfile(NamedTuple):
    """What the CRM knows of a member (not emitted: the events carry only ids)."""

    member_id: str
    birth_date: date
    joined_on: date           # ``start`` for members who existed before the period
    home_store: str


@dataclass(slots=True)
class _Member:
    index: int
    member_id: str
    birth: date
    joined_on: date
    basket_minor: float        # typical basket
    online_share: float
    home_store: str
    points: int = 0            # the simulator's rough estimate, never the ledger's balance
    enrolled: bool = False     # section 13: sent a member_enrolled with a profile
    erased: bool = False
    spend_by_year: dict = field(default_factory=dict)  # the rough tier estimate's basis


class _Purchase(NamedTuple):
    event: dict
    at: _At
    emitted: int               # epoch seconds of its delivery
    online: bool


# --------------------------------------------------------------- simulation


class Simulation:
    """One run: ``events()`` generates it day by day, in delivery order; ``profiles()``
    lists the members created so far."""

    def __init__(self, config: SimulationConfig, summary: SimulationSummary | None = None) -> None:
        self.config = config
        self.summary = summary if summary is not None else SimulationSummary()
        self.rng = random.Random(config.seed)
        self.members: list[_Member] = []
        self.cumulative_rates: list[float] = []          # per day, for weighted picks
        self.birthdays: dict[tuple[int, int], list[int]] = {}
        self.store_ids = [f"S-{number:03d}" for number in range(1, config.stores + 1)]
        ranks = range(1, config.stores + 1)
        self.store_weights = list(accumulate(rank ** -STORE_ZIPF_EXPONENT for rank in ranks))
        self.pending: list[tuple[int, int, int, dict]] = []  # emit, push no., occurred, event
        self.pushes = 0
        self.ids = 0
        self.end = _epoch(config.end)
        self.first_released: int | None = None
        self.last_released: int | None = None

    def profiles(self) -> list[MemberProfile]:
        return [MemberProfile(m.member_id, m.birth, m.joined_on, m.home_store) for m in self.members]

    def events(self) -> Iterator[dict]:
        for _ in range(self.config.members):
            self._add_member(self.config.start)
        for number in range(self.config.days):
            day = _day_of(self.config.start + timedelta(days=number))
            self._simulate_day(day, number)
            yield from self._release(day.start + SECONDS_PER_DAY)
        yield from self._release(None)
        self.summary.members = len(self.members)

    def _simulate_day(self, day: _Day, number: int) -> None:
        """Birthdays (the morning batch), enrollments and erasures, new members, purchases,
        then the year end."""
        if self.config.crm_birthdays:
            self._birthdays(day)
        if number == 0:
            self._migrate_members(day)
        self._erasures(day)
        self._joins(day, number)
        self._purchases(day)
        if (day.date.month, day.date.day) == (12, 31):
            self._close_year(day.date.year)

    # ---------------------------------------------------------- delivery

    def _schedule(self, event: dict, at: _At, delay: int = 0, not_before: int = 0) -> int:
        """Queue ``event`` for delivery ``delay`` seconds after it happened; returns that time."""
        emit = max(at.epoch + delay, not_before)
        self.pushes += 1
        heapq.heappush(self.pending, (emit, self.pushes, at.epoch, event))
        return emit

    def _release(self, until: int | None) -> Iterator[dict]:
        while self.pending and (until is None or self.pending[0][0] < until):
            emit, _, occurred, event = heapq.heappop(self.pending)
            self._count(event, late=emit > occurred, occurred=occurred)
            yield event

    def _count(self, event: dict, late: bool, occurred: int) -> None:
        _bump(self.summary.events_by_type, event["type"])
        self.summary.late_events += late
        if self.first_released is None or occurred < self.first_released:
            self.first_released = occurred
            self.summary.first_occurred_at = event["occurred_at"]
        if self.last_released is None or occurred > self.last_released:
            self.last_released = occurred
            self.summary.last_occurred_at = event["occurred_at"]

    def _late_delay(self) -> int:
        """0 for an upload on time; otherwise some hours or days, in seconds."""
        if self.rng.randrange(PPM) >= self.config.late_rate_ppm:
            return 0
        if self.rng.randrange(PPM) < LATE_DAYS_PPM:
            return self.rng.randint(1, LATE_DAYS_MAX) * SECONDS_PER_DAY
        return self.rng.randint(1, LATE_HOURS_MAX) * SECONDS_PER_HOUR

    def _event(self, kind: str, event_id: str, member: _Member, at: _At) -> dict:
        return {"type": kind, "schema_version": 1, "event_id": event_id,
                "member_id": member.member_id, "occurred_at": at.stamp()}

    def _next_id(self, prefix: str) -> str:
        self.ids += 1
        return f"{prefix}-{self.ids:09d}"

    def _source_id(self, store: str, online: bool) -> str:
        return self._next_id("web" if online else f"pos-{store}")

    # ----------------------------------------------------------- members

    def _add_member(self, joined_on: date) -> _Member:
        rng, index = self.rng, len(self.members)
        rate = self._purchase_rate_per_day()
        age_days = rng.randint(BIRTH_AGE_YEARS[0] * DAYS_PER_YEAR, BIRTH_AGE_YEARS[1] * DAYS_PER_YEAR)
        member = _Member(
            index=index, member_id=f"M-{index + 1:06d}",
            birth=self.config.start - timedelta(days=age_days), joined_on=joined_on,
            basket_minor=self.config.basket_median_minor * rng.lognormvariate(0, MEMBER_BASKET_SIGMA),
            online_share=rng.betavariate(*ONLINE_SHARE_BETA),
            home_store=self._popular_store(),
        )
        self.members.append(member)
        self.cumulative_rates.append((self.cumulative_rates[-1] if index else 0.0) + rate)
        self.birthdays.setdefault((member.birth.month, member.birth.day), []).append(index)
        return member

    def _purchase_rate_per_day(self) -> float:
        """The member's own purchase rate: gamma around the configured mean (0 stays 0)."""
        mean = self.config.purchases_per_member_year / DAYS_PER_YEAR
        if mean <= 0:
            return 0.0
        return self.rng.gammavariate(MEMBER_RATE_GAMMA_SHAPE, mean / MEMBER_RATE_GAMMA_SHAPE)

    def _popular_store(self) -> str:
        draw = self.rng.random() * self.store_weights[-1]
        return self.store_ids[min(bisect_right(self.store_weights, draw), len(self.store_ids) - 1)]

    def _pick_member(self) -> _Member:
        draw = self.rng.random() * self.cumulative_rates[-1]
        return self.members[min(bisect_right(self.cumulative_rates, draw), len(self.members) - 1)]

    def _joins(self, day: _Day, number: int) -> None:
        """New members, spread evenly: each joins at a till (online on closed days) and buys."""
        total, days = self.config.new_members, self.config.days
        for _ in range(total * (number + 1) // days - total * number // days):
            member = self._add_member(day.date)
            at = self._time(day, day.closed)
            if self.rng.randrange(PPM) < self.config.referral_rate_ppm:
                self._referral(member, _At(max(at.epoch - REFERRAL_LEAD_SECONDS, day.start), 0))
            self._enroll(member, _At(max(at.epoch - ENROLLMENT_LEAD_SECONDS, day.start), at.offset_s))
            self._visit(member, day, first=(at, day.closed))

    # --------------------------------------------------------- referrals

    def _referral(self, member: _Member, at: _At) -> None:
        """Referred by an earlier member, or (rarely) by itself; rarely referred twice."""
        referrer = self.members[self.rng.randrange(member.index)]
        if self.rng.randrange(PPM) < self.config.self_referral_ppm:
            referrer = member
            _bump(self.summary.injected, "self_referral")
        self._schedule(self._referral_event(member, referrer, at), at, self._late_delay())
        if self.rng.randrange(PPM) < self.config.second_referral_ppm:
            self._second_referral(member, at)

    def _second_referral(self, member: _Member, first: _At) -> None:
        delay_days = self.rng.randint(1, SECOND_REFERRAL_DELAY_DAYS_MAX)
        at = _At(first.epoch + delay_days * SECONDS_PER_DAY + self.rng.randrange(SECONDS_PER_HOUR), 0)
        if at.epoch >= self.end:
            return
        referrer = self.members[self.rng.randrange(member.index)]
        _bump(self.summary.injected, "second_referral")
        self._schedule(self._referral_event(member, referrer, at), at, self._late_delay())

    def _referral_event(self, member: _Member, referrer: _Member, at: _At) -> dict:
        event = self._event("referral", self._next_id("crm-ref"), member, at)
        return {**event, "referrer_member_id": referrer.member_id}

    # --------------------------------------------------------- birthdays

    def _birthdays(self, day: _Day) -> None:
        at = _At(day.start + CRM_BATCH_HOUR * SECONDS_PER_HOUR - day.offset_s, day.offset_s)
        for key in _birthday_keys(day.date):
            for index in self.birthdays.get(key, ()):
                member = self.members[index]
                event_id = f"crm-bday-{member.member_id}-{day.date.year}"
                self._schedule(self._event("birthday", event_id, member, at), at)
                member.points += BIRTHDAY_POINTS_ESTIMATE

    # -------------------------------------------------------- purchases

    def _purchases(self, day: _Day) -> None:
        if not self.members or self.cumulative_rates[-1] <= 0:
            return
        mean = self.cumulative_rates[-1] * day.factor_pct / 100
        for _ in range(_poisson(self.rng, mean)):
            self._visit(self._pick_member(), day)

    def _visit(self, member: _Member, day: _Day, first: tuple[_At, bool] | None = None) -> None:
        """One shopping trip: maybe a redemption at the till, the purchase, maybe refunds later.

        ``first`` (time, online) is given for a new member's first visit. Whatever
        happens before the purchase stays on its day: an event generated for day D
        is never due before D, so the ones on time are released in order.
        """
        if first is None:
            online = day.closed or self.rng.random() < member.online_share
            first = (self._time(day, online), online)
        at, online = first
        store = ONLINE_STORE_ID if online else self._visit_store(member)
        delay = self._late_delay()
        redeem_at = _At(max(at.epoch - REDEMPTION_LEAD_SECONDS, day.start), at.offset_s)
        redeemed = self._maybe_redeem(member, redeem_at, store, online, delay)
        if not online and not redeemed:
            redeemed = self._maybe_hold(member, at, store)
        event = self._purchase_event(member, day, at, store, online)
        emitted = self._schedule(event, at, delay, not_before=redeemed + 1)
        self._maybe_refund(member, _Purchase(event, at, emitted, online))
        self._maybe_nps(member, _Purchase(event, at, emitted, online))

    def _visit_store(self, member: _Member) -> str:
        if self.rng.randrange(PPM) < HOME_STORE_PPM:
            return member.home_store
        return self._popular_store()

    def _time(self, day: _Day, online: bool) -> _At:
        return self._online_time(day) if online else self._pos_time(day)

    def _pos_time(self, day: _Day) -> _At:
        local = int(self.rng.triangular(STORE_OPEN_HOUR, STORE_CLOSE_HOUR, STORE_PEAK_HOUR)
                    * SECONDS_PER_HOUR)
        return _At(day.start + local - day.offset_s, day.offset_s)

    def _online_time(self, day: _Day) -> _At:
        second = int(self.rng.triangular(0, 24, ONLINE_PEAK_HOUR_UTC) * SECONDS_PER_HOUR)
        return _At(day.start + min(second, SECONDS_PER_DAY - 1), 0)

    def _purchase_event(self, member: _Member, day: _Day, at: _At, store: str, online: bool) -> dict:
        amount = self._basket_minor(member, day, online)
        currency = self.config.currency
        if self.rng.randrange(PPM) < self.config.foreign_currency_ppm:
            currency = self.rng.choice(FOREIGN_CURRENCIES)
            _bump(self.summary.injected, "foreign_currency")
        else:
            member.points += amount // MINOR_PER_ESTIMATED_POINT
        event = self._event("purchase", self._source_id(store, online), member, at)
        return {**event, "amount_minor": amount, "currency": currency, "store_id": store,
                "channel": "online" if online else "pos",
                "items": basket_items(event["event_id"], amount)}  # own generator (baskets.py)

    def _basket_minor(self, member: _Member, day: _Day, online: bool) -> int:
        """Lognormal around the member's typical basket; whole minor units."""
        amount = member.basket_minor * self.rng.lognormvariate(0, BASKET_SIGMA)
        if online:
            amount = amount * ONLINE_BASKET_PCT / 100
        if day.date.month == 12:
            amount = amount * DECEMBER_BASKET_PCT / 100
        return min(BASKET_MINOR_MAX, max(BASKET_MINOR_MIN, int(amount)))

    # ---------------------------------------------------------- refunds

    def _maybe_refund(self, member: _Member, purchase: _Purchase) -> None:
        rate = self.config.refund_rate_ppm * (ONLINE_REFUND_FACTOR if purchase.online else 1)
        if self.rng.randrange(PPM) >= rate:
            return
        days = min(REFUND_DELAY_DAYS_MAX, 1 + int(self.rng.expovariate(1 / REFUND_DELAY_DAYS_MEAN)))
        amount = purchase.event["amount_minor"]
        if amount > 1 and self.rng.randrange(PPM) >= FULL_REFUND_PPM:
            amount = self.rng.randint(1, amount - 1)
        emitted = self._refund(member, purchase, amount, days, purchase.emitted)
        rest = purchase.event["amount_minor"] - amount
        if emitted is not None and rest and self.rng.randrange(PPM) < REST_REFUND_PPM:
            days += self.rng.randint(1, REST_REFUND_DELAY_DAYS_MAX)
            self._refund(member, purchase, rest, days, emitted)

    def _refund(self, member: _Member, purchase: _Purchase, amount: int, days: int,
                after: int) -> int | None:
        """Schedule a refund ``days`` after the purchase, delivered after ``after``;
        None when that day is past the period."""
        refund_day = _day_of(_utc_date(purchase.at.epoch) + timedelta(days=days))
        if refund_day.closed and not purchase.online:
            refund_day = _day_of(refund_day.date + timedelta(days=1))
        at = self._time(refund_day, purchase.online)
        if at.epoch >= self.end:
            return None
        store = purchase.event["store_id"]
        event = self._event("refund", self._source_id(store, purchase.online), member, at)
        event = {**event, "purchase_event_id": purchase.event["event_id"], "amount_minor": amount,
                 "currency": purchase.event["currency"], "store_id": store}
        member.points -= amount // MINOR_PER_ESTIMATED_POINT
        return self._schedule(event, at, self._late_delay(), not_before=after + 1)

    # ------------------------------------------------------- redemptions

    def _maybe_redeem(self, member: _Member, at: _At, store: str, online: bool, delay: int) -> int:
        """Redeem a reward the estimate covers; returns the delivery time (0 if none)."""
        if member.points < REWARDS[0][1] or self.rng.randrange(PPM) >= self.config.redemption_rate_ppm:
            return 0
        reward = self._choose_reward(member.points)
        if reward is None:
            return 0
        reward_id, points, cash_top_up = reward
        event = {**self._event("redemption", self._source_id(store, online), member, at),
                 "points": points, "reward_id": reward_id}
        if cash_top_up is not None:
            event["cash_top_up_minor"] = cash_top_up
        if points <= member.points:
            member.points -= points
        return self._schedule(event, at, delay)

    def _maybe_hold(self, member: _Member, at: _At, store: str) -> int:
        """Hold a reward the estimate covers, then capture or void it; returns the settlement's
        delivery time (0 if no hold)."""
        rate = self.config.hold_rate_ppm
        if not rate or member.points < REWARDS[0][1] or self.rng.randrange(PPM) >= rate:
            return 0
        reward_id, points, cash_top_up = self.rng.choice([r for r in REWARDS if r[1] <= member.points])
        hold_at = _At(at.epoch - HOLD_LEAD_SECONDS, at.offset_s)
        hold = {**self._event("redemption_hold", self._source_id(store, False), member, hold_at),
                "points": points, "reward_id": reward_id,
                "expires_at": _At(hold_at.epoch + HOLD_DURATION_SECONDS, at.offset_s).stamp(),
                "store_id": store}
        if cash_top_up is not None:
            hold["cash_top_up_minor"] = cash_top_up
        held = self._schedule(hold, hold_at)
        settle_at = _At(hold_at.epoch + self.rng.randint(1, HOLD_SETTLE_SECONDS_MAX), at.offset_s)
        settlement = self._settlement(member, hold, settle_at, store)
        return self._schedule(settlement, settle_at, not_before=held + 1)

    def _settlement(self, member: _Member, hold: dict, at: _At, store: str) -> dict:
        """The hold's ``redemption_void`` or ``redemption_capture`` (maybe of part of it)."""
        voided = self.rng.randrange(PPM) < self.config.hold_void_ppm
        kind = "redemption_void" if voided else "redemption_capture"
        event = {**self._event(kind, self._source_id(store, False), member, at),
                 "hold_event_id": hold["event_id"], "store_id": store}
        if voided:
            return event
        points = hold["points"]
        if self.rng.randrange(PPM) < self.config.partial_capture_ppm:
            points = points * PARTIAL_CAPTURE_PCT // 100
            event["points"] = points
        member.points -= points
        return event

    def _choose_reward(self, points: int) -> tuple | None:
        """Any reward the estimate covers, or (``OVERREACH_PPM``) the cheapest one it does not."""
        if self.rng.randrange(PPM) < OVERREACH_PPM:
            beyond = [reward for reward in REWARDS if reward[1] > points]
            if beyond:
                _bump(self.summary.injected, "overreach_redemption")
            return beyond[0] if beyond else None
        return self.rng.choice([reward for reward in REWARDS if reward[1] <= points])

    # ---------------------------------------------- members (section 13)

    def _crm_time(self, day: _Day) -> _At:
        return _At(day.start + CRM_BATCH_HOUR * SECONDS_PER_HOUR - day.offset_s, day.offset_s)

    def _migrate_members(self, day: _Day) -> None:
        """The members there from the start enroll in the CRM's first batch."""
        for member in list(self.members):
            self._enroll(member, self._crm_time(day))

    def _enroll(self, member: _Member, at: _At) -> None:
        if self.rng.randrange(PPM) >= self.config.enrollment_ppm:
            return
        member.enrolled = True
        event = self._event("member_enrolled", self._next_id("crm-enr"), member, at)
        self._schedule({**event, **member_traffic.enrollment_fields(member, self.rng)}, at)

    def _maybe_nps(self, member: _Member, purchase: _Purchase) -> None:
        year = _utc_date(purchase.at.epoch).year
        member.spend_by_year[year] = member.spend_by_year.get(year, 0) + purchase.event["amount_minor"]
        if not member.enrolled or self.rng.randrange(PPM) >= self.config.nps_rate_ppm:
            return
        at = _At(purchase.at.epoch + member_traffic.NPS_DELAY_SECONDS, purchase.at.offset_s)
        if at.epoch >= self.end:
            return
        fields = member_traffic.nps_fields(member.spend_by_year[year], purchase.online, self.rng)
        event = self._event("nps_response", self._next_id("survey"), member, at)
        self._schedule({**event, **fields}, at, not_before=purchase.emitted + 1)

    def _erasures(self, day: _Day) -> None:
        """A few enrolled members ask to be forgotten (the CRM's batch hour)."""
        mean = len(self.members) * self.config.erasure_rate_ppm / PPM / DAYS_PER_YEAR
        for _ in range(_poisson(self.rng, mean) if self.members else 0):
            member = self.members[self.rng.randrange(len(self.members))]
            if member.enrolled and not member.erased:
                member.erased = True
                at = self._crm_time(day)
                self._schedule(self._event("member_erased", self._next_id("crm-erase"), member, at), at)

    # ---------------------------------------------------------- year end

    def _close_year(self, year: int) -> None:
        """The year-end job: one ``year_closed`` per member known so far."""
        at = _At(_epoch(date(year + 1, 1, 1)) + YEAR_END_JOB_SECONDS, 0)
        for member in self.members:
            event = self._event("year_closed", f"year-closed:{year}:{member.member_id}", member, at)
            self._schedule({**event, "year": year}, at)


def _utc_date(epoch: int) -> date:
    return _EPOCH.date() + timedelta(days=epoch // SECONDS_PER_DAY)


# ------------------------------------------------------------------- faults


class _Faults:
    """Adds redeliveries and malformed lines around the valid lines."""

    def __init__(self, config: SimulationConfig, summary: SimulationSummary) -> None:
        self.config = config
        self.summary = summary
        self.rng = random.Random(f"{config.seed}/faults")
        self.position = 0
        self.redeliveries: list[tuple[int, int, bytes]] = []   # due position, seq, line
        self.malformed = 0

    def around(self, event: dict, line: bytes) -> Iterator[tuple[str, bytes]]:
        self.position += 1
        yield LABEL_EVENT, line
        if self.rng.randrange(PPM) < self.config.duplicate_rate_ppm:
            due = self.position + self.rng.randint(1, DUPLICATE_DELAY_LINES_MAX)
            heapq.heappush(self.redeliveries, (due, self.position, line))
        while self.redeliveries and self.redeliveries[0][0] <= self.position:
            yield self._redelivery()
        if self.rng.randrange(PPM) < self.config.malformed_rate_ppm:
            yield self._malformed(event, line)

    def flush(self) -> Iterator[tuple[str, bytes]]:
        while self.redeliveries:
            yield self._redelivery()

    def _redelivery(self) -> tuple[str, bytes]:
        self.summary.duplicates += 1
        return LABEL_DUPLICATE, heapq.heappop(self.redeliveries)[2]

    def _malformed(self, event: dict, line: bytes) -> tuple[str, bytes]:
        kind = _MALFORMED_ORDER[self.malformed % len(_MALFORMED_ORDER)]
        self.malformed += 1
        _bump(self.summary.malformed_by_kind, kind)
        if kind is MalformedKind.NOT_JSON:
            return kind, line[: len(line) // 2]
        bad = {**event, "event_id": f"bad-{self.malformed:09d}"}
        return kind, orjson.dumps(_BREAKERS[kind](self.rng, bad))


def _without_a_field(rng: random.Random, event: dict) -> dict:
    dropped = rng.choice([name for name in event if name not in _NEVER_DROPPED])
    return {name: value for name, value in event.items() if name != dropped}


def _negative_amount(rng: random.Random, event: dict) -> dict:
    """A purchase or refund with its amount negated; other types become such a purchase."""
    if "amount_minor" in event:
        return {**event, "amount_minor": -event["amount_minor"]}
    keep = ("type", "schema_version", "event_id", "member_id", "occurred_at")
    purchase = {name: event[name] for name in keep}
    return {**purchase, "type": "purchase", "amount_minor": -rng.randint(BASKET_MINOR_MIN, 10_000),
            "currency": "EUR", "store_id": ONLINE_STORE_ID}


def _without_offset(rng: random.Random, event: dict) -> dict:
    return {**event, "occurred_at": event["occurred_at"][: len("2025-01-01T00:00:00")]}


_BREAKERS = {
    MalformedKind.MISSING_FIELD: _without_a_field,
    MalformedKind.NEGATIVE_AMOUNT: _negative_amount,
    MalformedKind.NO_OFFSET: _without_offset,
}


# ---------------------------------------------------------------------- API


def simulate_events(config: SimulationConfig, summary: SimulationSummary | None = None) -> Iterator[dict]:
    """The valid events, in delivery order, before any fault is added."""
    return Simulation(config, summary).events()


def simulate_labelled(config: SimulationConfig,
                      summary: SimulationSummary | None = None) -> Iterator[tuple[str, bytes]]:
    """Every line with its label: ``event``, ``duplicate`` or a ``MalformedKind`` value."""
    summary = summary if summary is not None else SimulationSummary()
    faults = _Faults(config, summary)
    for label, line in _with_faults(faults, simulate_events(config, summary)):
        summary.lines += 1
        yield label, line


def _with_faults(faults: _Faults, events: Iterable[dict]) -> Iterator[tuple[str, bytes]]:
    for event in events:
        yield from faults.around(event, orjson.dumps(event))
    yield from faults.flush()


def simulate(config: SimulationConfig, summary: SimulationSummary | None = None) -> Iterator[bytes]:
    """Every line (JSON, no line break), bad lines and redeliveries included."""
    return (line for _, line in simulate_labelled(config, summary))


def write_jsonl(config: SimulationConfig, path: str | Path,
                summary: SimulationSummary | None = None) -> SimulationSummary:
    """Write every line of the run to ``path``, one per line; returns the summary."""
    summary = summary if summary is not None else SimulationSummary()
    with open(path, "wb") as out:
        for line in simulate(config, summary):
            out.write(line + b"\n")
    return summary


def send_to_kafka(config: SimulationConfig, bootstrap_servers: str, topic: str,
                  summary: SimulationSummary | None = None,
                  client_options: dict | None = None) -> dict[int, int]:
    """Produce every line to ``topic`` keyed by its ``member_id`` (null when it has none);
    returns {partition: highest acknowledged offset}. ``client_options``: TLS / SASL."""
    from streams.producer import produce_lines

    return produce_lines(bootstrap_servers, topic, simulate(config, summary), client_options)
