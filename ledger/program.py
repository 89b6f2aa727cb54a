"""The loyalty program: every number of the rules, loaded from a TOML file.

The file format is documented in the README and by ``programs/default.toml``,
which equals CONTRACT section 3. A bad file raises ``ProgramError`` naming the
field (``tiers[1].threshold_minor: ...``). Loading happens once at start-up,
so it uses a JSON Schema validator for the shape and plain checks for the
cross-field rules (ascending thresholds, a zero first threshold).

Contract 2 (sections 8 to 11) adds optional fields, each with a default that
keeps section 3's results: ``program.version`` (1), ``program.pending_days``
(0), ``program.tier_basis`` (``annual``), a tier's ``discount_pct`` (0),
``[adjustments]`` ``points_max`` and ``reason_codes`` and ``[transfers]``
``points_per_year_max``; section 12's ``[[campaigns]]`` (none by default),
whose terms and checks live in ``ledger.campaign_terms``; section 7 adds ``[holds]`` ``duration_minutes_max``
(30); section 13 adds ``[privacy]`` ``dead_letter_days_max`` (30).

``program.point_value_minor`` (default 1) is what one point costs the
programme when redeemed, in minor units: the KPIs' money figures (programme
cost, liability) use it; no rule does.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import jsonschema_rs

from ledger.campaign_plan import CampaignPlan
from ledger.campaign_terms import (CAMPAIGNS_SCHEMA, Campaign, CampaignTermsError,
                                   parse_campaigns, with_texts)

DEFAULT_PROGRAM_PATH = Path(__file__).parent / "programs" / "default.toml"
RETAIL_EXAMPLE_PROGRAM_PATH = DEFAULT_PROGRAM_PATH.with_name("retail-example.toml")
PERCENT = 100
TIERS_MAX = 16
NUMBER_MAX = 10**9
PENDING_DAYS_MAX = 90
REASON_CODES_MAX = 64
ANNUAL_TIERS, LIFETIME_TIERS = "annual", "lifetime"
TIER_BASES = (ANNUAL_TIERS, LIFETIME_TIERS)
ADJUSTMENT_POINTS_MAX_DEFAULT = 1_000_000
ADJUSTMENT_REASON_CODES_DEFAULT = ("goodwill", "correction", "migration", "fraud")
TRANSFER_POINTS_PER_YEAR_MAX_DEFAULT = 10_000
POINT_VALUE_MINOR_DEFAULT = 1
HOLD_DURATION_MINUTES_MAX_DEFAULT = 30
HOLD_DURATION_MINUTES_LIMIT = 7 * 24 * 60  # the largest a program may set: a week
DEAD_LETTER_DAYS_MAX_DEFAULT = 30  # section 13: dead-letter keys older than this are deleted


class ProgramError(ValueError):
    """A program file that cannot be used; the message names the field."""

    def __init__(self, source: str, field: str, problem: str) -> None:
        super().__init__(f"{source}: {field}: {problem}")
        self.field = field


@dataclass(frozen=True)
class Tier:
    name: str
    threshold_minor: int
    multiplier_pct: int
    discount_pct: int = 0  # what a till gives this tier; the ledger does not apply it


@dataclass(frozen=True)
class Program:
    name: str
    currency: str
    minor_units_per_unit: int
    points_per_unit: int
    expiry_months: int
    birthday_points: int
    tiers: tuple[Tier, ...]
    referral_qualifying_purchase_minor: int
    referee_points: int
    referrer_points: int
    referrer_bonuses_per_year_max: int
    annual_purchases_min: int
    annual_bonus_pct: int
    version: int = 1
    pending_days: int = 0
    tier_basis: str = ANNUAL_TIERS
    adjustment_points_max: int = ADJUSTMENT_POINTS_MAX_DEFAULT
    adjustment_reason_codes: tuple[str, ...] = ADJUSTMENT_REASON_CODES_DEFAULT
    transfer_points_per_year_max: int = TRANSFER_POINTS_PER_YEAR_MAX_DEFAULT
    point_value_minor: int = POINT_VALUE_MINOR_DEFAULT  # a redeemed point's cost, minor units (KPIs)
    hold_duration_minutes_max: int = HOLD_DURATION_MINUTES_MAX_DEFAULT
    dead_letter_days_max: int = DEAD_LETTER_DAYS_MAX_DEFAULT
    campaigns: tuple[Campaign, ...] = ()  # section 12, in file order
    source_text: str = field(default="", repr=False, compare=False)  # the file read (recorded per version)
    campaign_index: bool = field(default=True, repr=False, compare=False)  # how, not what: see CampaignPlan

    @cached_property
    def campaign_plan(self) -> CampaignPlan:
        """The campaigns compiled for matching, built once per program (``ledger.campaign_plan``)."""
        return CampaignPlan(self.campaigns, indexed=self.campaign_index)

    @property
    def base_tier(self) -> Tier:
        return self.tiers[0]

    def tier(self, name: str) -> Tier:
        for tier in self.tiers:
            if tier.name == name:
                return tier
        raise KeyError(f"no tier named {name!r} in program {self.name!r}")

    def tier_for_spend(self, spend_minor: int) -> Tier:
        """The highest tier whose threshold is at most ``spend_minor``."""
        reached = [tier for tier in self.tiers if tier.threshold_minor <= spend_minor]
        return reached[-1]

    def tier_rank(self, name: str) -> int:
        return [tier.name for tier in self.tiers].index(name)

    @property
    def lifetime_tiers(self) -> bool:
        """Tiers on lifetime spend that never drop (section 11's accumulating tiers)."""
        return self.tier_basis == LIFETIME_TIERS

    def next_tier(self, name: str) -> Tier | None:
        names = [tier.name for tier in self.tiers]
        position = names.index(name) + 1
        return self.tiers[position] if position < len(self.tiers) else None

    def purchase_points(self, amount_minor: int, multiplier_pct: int) -> int:
        """floor(amount * points_per_unit * multiplier_pct / (minor per unit * 100))."""
        numerator = amount_minor * self.points_per_unit * multiplier_pct
        return numerator // (self.minor_units_per_unit * PERCENT)


def _count(minimum: int = 0) -> dict:
    return {"type": "integer", "minimum": minimum, "maximum": NUMBER_MAX}


PROGRAM_FILE_SCHEMA = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "type": "object",
    "additionalProperties": False,
    "required": ["program", "tiers", "referral", "annual_incentive"],
    "properties": {
        "program": {
            "type": "object",
            "additionalProperties": False,
            "required": [
                "name", "currency", "minor_units_per_unit", "points_per_unit",
                "expiry_months", "birthday_points",
            ],
            "properties": {
                "version": _count(1),
                "pending_days": {"type": "integer", "minimum": 0, "maximum": PENDING_DAYS_MAX},
                "tier_basis": {"enum": list(TIER_BASES)},
                "name": {"type": "string", "minLength": 1, "maxLength": 64},
                "currency": {"type": "string", "pattern": "^[A-Z]{3}$"},
                "minor_units_per_unit": _count(1),
                "points_per_unit": _count(0),
                "expiry_months": _count(1),
                "birthday_points": _count(0),
                "point_value_minor": _count(0),
            },
        },
        "tiers": {
            "type": "array",
            "minItems": 1,
            "maxItems": TIERS_MAX,
            "items": {
                "type": "object",
                "additionalProperties": False,
                "required": ["name", "threshold_minor", "multiplier_pct"],
                "properties": {
                    "name": {"type": "string", "pattern": "^[a-z][a-z0-9_]{0,31}$"},
                    "threshold_minor": _count(0),
                    "multiplier_pct": _count(0),
                    "discount_pct": {"type": "integer", "minimum": 0, "maximum": PERCENT},
                },
            },
        },
        "referral": {
            "type": "object",
            "additionalProperties": False,
            "required": [
                "qualifying_purchase_minor", "referee_points", "referrer_points",
                "referrer_bonuses_per_year_max",
            ],
            "properties": {
                "qualifying_purchase_minor": _count(1),
                "referee_points": _count(0),
                "referrer_points": _count(0),
                "referrer_bonuses_per_year_max": _count(0),
            },
        },
        "annual_incentive": {
            "type": "object",
            "additionalProperties": False,
            "required": ["purchases_min", "bonus_pct"],
            "properties": {"purchases_min": _count(1), "bonus_pct": _count(0)},
        },
        "adjustments": {
            "type": "object",
            "additionalProperties": False,
            "properties": {
                "points_max": _count(1),
                "reason_codes": {
                    "type": "array", "uniqueItems": True, "maxItems": REASON_CODES_MAX,
                    "items": {"type": "string", "pattern": "^[a-z][a-z0-9_]{0,31}$"},
                },
            },
        },
        "transfers": {
            "type": "object",
            "additionalProperties": False,
            "properties": {"points_per_year_max": _count(0)},
        },
        "holds": {
            "type": "object",
            "additionalProperties": False,
            "properties": {"duration_minutes_max": {
                "type": "integer", "minimum": 1, "maximum": HOLD_DURATION_MINUTES_LIMIT}},
        },
        "privacy": {
            "type": "object",
            "additionalProperties": False,
            "properties": {"dead_letter_days_max": _count(1)},
        },
        "campaigns": CAMPAIGNS_SCHEMA,
    },
}

_VALIDATOR = jsonschema_rs.Draft202012Validator(PROGRAM_FILE_SCHEMA)


def _field_name(path: list) -> str:
    name = ""
    for part in path:
        name += f"[{part}]" if isinstance(part, int) else f".{part}"
    return name.lstrip(".") or "(file)"


def _check_shape(document: dict, source: str) -> None:
    for error in _VALIDATOR.iter_errors(document):
        raise ProgramError(source, _named_field(document, list(error.instance_path)), error.message)


def _named_field(document: dict, path: list) -> str:
    """The field's path; a campaign's also names its id when it has one."""
    name = _field_name(path)
    if len(path) >= 2 and path[0] == "campaigns" and isinstance(path[1], int):
        campaign = document["campaigns"][path[1]]
        if isinstance(campaign, dict) and isinstance(campaign.get("id"), str):
            name = name.replace(f"campaigns[{path[1]}]", f"campaigns[{path[1]}] ({campaign['id']})", 1)
    return name


def _check_tiers(tiers: list[dict], source: str) -> None:
    if tiers[0]["threshold_minor"] != 0:
        raise ProgramError(source, "tiers[0].threshold_minor", "the first tier must start at 0")
    for index in range(1, len(tiers)):
        if tiers[index]["threshold_minor"] <= tiers[index - 1]["threshold_minor"]:
            raise ProgramError(
                source, f"tiers[{index}].threshold_minor", "thresholds must ascend strictly"
            )
    names = [tier["name"] for tier in tiers]
    for index, name in enumerate(names):
        if names.index(name) != index:
            raise ProgramError(source, f"tiers[{index}].name", f"duplicate tier {name!r}")


def _campaigns(document: dict, source: str) -> tuple[Campaign, ...]:
    """The ``[[campaigns]]`` (section 12); a mistake names the campaign and its field."""
    tier_names = tuple(tier["name"] for tier in document["tiers"])
    try:
        return parse_campaigns(document.get("campaigns", []), tier_names)
    except CampaignTermsError as error:
        raise ProgramError(source, error.field, error.problem) from None


def parse_program(text: str, source: str = "<program>") -> Program:
    """Parse and check a program file's text; raise ProgramError naming the field."""
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise ProgramError(source, "(file)", f"not valid TOML: {error}") from None
    if isinstance(document.get("campaigns"), list):
        document["campaigns"] = with_texts(document["campaigns"])
    _check_shape(document, source)
    _check_tiers(document["tiers"], source)
    campaigns = _campaigns(document, source)
    head, referral, annual = document["program"], document["referral"], document["annual_incentive"]
    adjustments, transfers = document.get("adjustments", {}), document.get("transfers", {})
    return Program(
        name=head["name"],
        currency=head["currency"],
        minor_units_per_unit=head["minor_units_per_unit"],
        points_per_unit=head["points_per_unit"],
        expiry_months=head["expiry_months"],
        birthday_points=head["birthday_points"],
        tiers=tuple(Tier(**tier) for tier in document["tiers"]),
        referral_qualifying_purchase_minor=referral["qualifying_purchase_minor"],
        referee_points=referral["referee_points"],
        referrer_points=referral["referrer_points"],
        referrer_bonuses_per_year_max=referral["referrer_bonuses_per_year_max"],
        annual_purchases_min=annual["purchases_min"],
        annual_bonus_pct=annual["bonus_pct"],
        version=head.get("version", 1),
        pending_days=head.get("pending_days", 0),
        tier_basis=head.get("tier_basis", ANNUAL_TIERS),
        adjustment_points_max=adjustments.get("points_max", ADJUSTMENT_POINTS_MAX_DEFAULT),
        adjustment_reason_codes=tuple(
            adjustments.get("reason_codes", ADJUSTMENT_REASON_CODES_DEFAULT)),
        transfer_points_per_year_max=transfers.get(
            "points_per_year_max", TRANSFER_POINTS_PER_YEAR_MAX_DEFAULT),
        point_value_minor=head.get("point_value_minor", POINT_VALUE_MINOR_DEFAULT),
        hold_duration_minutes_max=document.get("holds", {}).get(
            "duration_minutes_max", HOLD_DURATION_MINUTES_MAX_DEFAULT),
        dead_letter_days_max=document.get("privacy", {}).get(
            "dead_letter_days_max", DEAD_LETTER_DAYS_MAX_DEFAULT),
        campaigns=campaigns,
        source_text=text,
    )


def load_program(path: str | Path | None = None) -> Program:
    """Load the program file at ``path`` (the default program when None)."""
    program_path = Path(path) if path else DEFAULT_PROGRAM_PATH
    try:
        text = program_path.read_text(encoding="utf-8")
    except OSError as error:
        raise ProgramError(str(program_path), "(file)", f"cannot read: {error}") from None
    except UnicodeDecodeError as error:
        raise ProgramError(str(program_path), "(file)", f"not UTF-8 text: {error.reason} at byte "
                                                        f"{error.start}") from None
    return parse_program(text, str(program_path))
