"""Campaign terms: the ``[[campaigns]]`` of a program file (CONTRACT contract 2, section 12).

``Campaign`` is one campaign as the program file states it (window,
filters, one effect, limits); ``CAMPAIGNS_SCHEMA`` is the JSON Schema of the
``campaigns`` array (the shape) and ``parse_campaigns`` adds the cross-field
checks and builds the campaigns. A mistake raises ``CampaignTermsError``
naming the campaign and the field (``campaigns[2] (weekend-x2).ends_at``);
``ledger.program`` turns it into its ``ProgramError``. No I/O, no clock:
the window is compared with event time only.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timezone

CAMPAIGNS_MAX = 256
CAMPAIGN_LIST_ITEMS_MAX = 1000
CAMPAIGN_NUMBER_MAX = 10**9
CHANNELS = ("pos", "online")

# Effect kinds (what a matching purchase earns).
EXTRA_MULTIPLIER = "extra_multiplier_pct"
BONUS = "bonus_points"
PER_ITEM = "points_per_item"
ITEMS_BONUS = "items_min_bonus_points"
ITEMS_REWARD = "items_min_reward_id"
PLAIN_EFFECTS = ("extra_multiplier_pct", "bonus_points", "points_per_item")


class CampaignTermsError(ValueError):
    """A campaign the program cannot run; ``field`` names the campaign and its field."""

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"{field}: {problem}")
        self.field = field
        self.problem = problem


@dataclass(frozen=True)
class Campaign:
    """One campaign: counts for a purchase with ``starts_at <= occurred_at < ends_at``."""

    id: str
    name: str
    starts_at: datetime
    ends_at: datetime
    effect: str  # one of EXTRA_MULTIPLIER, BONUS, PER_ITEM, ITEMS_BONUS, ITEMS_REWARD
    extra_multiplier_pct: int = 0
    bonus_points: int = 0
    points_per_item: int = 0
    items_min: int = 0
    reward_id: str | None = None
    stores: tuple[str, ...] | None = None
    channels: tuple[str, ...] | None = None
    tiers: tuple[str, ...] | None = None
    min_amount_minor: int | None = None
    skus: tuple[str, ...] | None = None
    sku_prefixes: tuple[str, ...] | None = None
    per_member_max: int | None = None  # None: unlimited
    budget_points: int | None = None  # None: unlimited

    @property
    def has_item_filter(self) -> bool:
        return self.skus is not None or self.sku_prefixes is not None

    def runs_at(self, moment: datetime) -> bool:
        return self.starts_at <= moment < self.ends_at


def _count(minimum: int = 0) -> dict:
    return {"type": "integer", "minimum": minimum, "maximum": CAMPAIGN_NUMBER_MAX}


def _texts(pattern: str | None = None) -> dict:
    item: dict = {"type": "string", "minLength": 1, "maxLength": 64}
    if pattern is not None:
        item["pattern"] = pattern
    return {"type": "array", "minItems": 1, "maxItems": CAMPAIGN_LIST_ITEMS_MAX,
            "uniqueItems": True, "items": item}


CAMPAIGNS_SCHEMA = {
    "type": "array",
    "maxItems": CAMPAIGNS_MAX,
    "items": {
        "type": "object",
        "additionalProperties": False,
        "required": ["id", "name", "starts_at", "ends_at"],
        "properties": {
            "id": {"type": "string", "pattern": "^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$"},
            "name": {"type": "string", "minLength": 1, "maxLength": 128},
            "starts_at": {"type": "string"},
            "ends_at": {"type": "string"},
            "stores": _texts(),
            "channels": _texts(),
            "tiers": _texts(),
            "min_amount_minor": _count(0),
            "skus": _texts(),
            "sku_prefixes": _texts(),
            "extra_multiplier_pct": _count(1),
            "bonus_points": _count(1),
            "points_per_item": _count(1),
            "items_min": _count(1),
            "reward_id": {"type": "string", "minLength": 1, "maxLength": 128},
            "per_member_max": _count(1),
            "budget_points": _count(0),
        },
    },
}


def rfc3339_text(value: object) -> object:
    """TOML's native date-times as RFC 3339 text (the schema then checks one shape)."""
    if isinstance(value, datetime):
        return value.isoformat() if value.tzinfo is not None else f"{value.isoformat()} (no offset)"
    if isinstance(value, date):
        return f"{value.isoformat()} (a date, not a date-time)"
    return value


def with_texts(campaigns: list[dict]) -> list[dict]:
    """``campaigns`` with ``starts_at`` / ``ends_at`` as text, whatever TOML made of them."""
    return [{key: rfc3339_text(value) if key in ("starts_at", "ends_at") else value
             for key, value in campaign.items()} if isinstance(campaign, dict) else campaign
            for campaign in campaigns]


def _label(index: int, document: dict) -> str:
    return f"campaigns[{index}] ({document['id']})"


def _moment(text: str, field: str) -> datetime:
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise CampaignTermsError(field, f"{text!r} is not an RFC 3339 date-time") from None
    if moment.tzinfo is None:
        raise CampaignTermsError(field, f"{text!r} needs an offset (Z or +01:00)")
    return moment.astimezone(timezone.utc)


def _effect(document: dict, label: str) -> str:
    """The one effect a campaign has, or CampaignTermsError naming the field at fault."""
    if "items_min" in document:
        chosen = [key for key in ("bonus_points", "reward_id") if key in document]
        others = [key for key in ("extra_multiplier_pct", "points_per_item") if key in document]
        if len(chosen) != 1 or others:
            raise CampaignTermsError(f"{label}.items_min",
                                     "items_min takes exactly one of bonus_points and reward_id "
                                     "and no other effect")
        return ITEMS_BONUS if chosen == ["bonus_points"] else ITEMS_REWARD
    if "reward_id" in document:
        raise CampaignTermsError(f"{label}.reward_id", "reward_id needs items_min")
    chosen = [key for key in PLAIN_EFFECTS if key in document]
    if len(chosen) != 1:
        found = ", ".join(chosen) or "none"
        raise CampaignTermsError(f"{label}.effect",
                                 f"exactly one effect of extra_multiplier_pct, bonus_points, "
                                 f"points_per_item, items_min (found: {found})")
    return chosen[0]


def _check_names(document: dict, label: str, tier_names: tuple[str, ...]) -> None:
    for key, known in (("tiers", tier_names), ("channels", CHANNELS)):
        for value in document.get(key, ()):
            if value not in known:
                raise CampaignTermsError(f"{label}.{key}",
                                         f"unknown {key[:-1]} {value!r} (known: {', '.join(known)})")


def _tuple(document: dict, key: str) -> tuple[str, ...] | None:
    return tuple(document[key]) if key in document else None


def parse_campaign(index: int, document: dict, tier_names: tuple[str, ...]) -> Campaign:
    """One shape-checked ``[[campaigns]]`` table as a ``Campaign``."""
    label = _label(index, document)
    starts_at = _moment(document["starts_at"], f"{label}.starts_at")
    ends_at = _moment(document["ends_at"], f"{label}.ends_at")
    if ends_at <= starts_at:
        raise CampaignTermsError(f"{label}.ends_at", "ends_at must come after starts_at")
    effect = _effect(document, label)
    _check_names(document, label, tier_names)
    return Campaign(
        id=document["id"], name=document["name"], starts_at=starts_at, ends_at=ends_at,
        effect=effect,
        extra_multiplier_pct=document.get("extra_multiplier_pct", 0),
        bonus_points=document.get("bonus_points", 0),
        points_per_item=document.get("points_per_item", 0),
        items_min=document.get("items_min", 0), reward_id=document.get("reward_id"),
        stores=_tuple(document, "stores"), channels=_tuple(document, "channels"),
        tiers=_tuple(document, "tiers"), min_amount_minor=document.get("min_amount_minor"),
        skus=_tuple(document, "skus"), sku_prefixes=_tuple(document, "sku_prefixes"),
        per_member_max=document.get("per_member_max"),
        budget_points=document.get("budget_points"),
    )


def parse_campaigns(documents: list[dict], tier_names: tuple[str, ...]) -> tuple[Campaign, ...]:
    """Every campaign of a shape-checked list; ids must be unique (they name facts forever)."""
    seen: dict[str, int] = {}
    for index, document in enumerate(documents):
        if document["id"] in seen:
            raise CampaignTermsError(f"{_label(index, document)}.id",
                                     f"duplicate campaign id (also campaigns[{seen[document['id']]}])")
        seen[document["id"]] = index
    return tuple(parse_campaign(index, document, tier_names)
                 for index, document in enumerate(documents))
