"""The CRM's member traffic in the simulator (CONTRACT section 13): what it sends, not rules.

- Enrollment: ``enrollment_ppm`` of members enroll with a profile (a name
  drawn from ``FIRST_NAMES`` / ``LAST_NAMES``, an ``@example.com`` e-mail, a
  phone number and the simulator's own birth date) and a marketing consent
  (``MARKETING_CONSENT_PPM``): members there from the start in a CRM
  migration batch on the first day, new members just before their first
  purchase.
- NPS: ``nps_rate_ppm`` of enrolled members' purchases are followed by a
  survey answer ``NPS_DELAY_SECONDS`` later; the scores' spread depends on
  the member's tier as the simulator estimates it (its own rough estimate of
  the year's spend against ``TIER_ESTIMATE_THRESHOLDS_MINOR``, like its
  points estimate: the ledger's tiers are never read): higher tiers answer
  higher (``NPS_WEIGHTS_BY_TIER_ESTIMATE``).
- Erasure: each day, Poisson with mean ``erasure_rate_ppm`` per enrolled
  member-year, an enrolled member asks to be forgotten (the CRM's batch
  hour); the tills do not know, so later events of that member still arrive
  and the ledger rejects them ``account_closed``.

Every draw comes from the simulation's own ``random.Random``, so the stream
stays deterministic.
"""

from __future__ import annotations

from typing import Any

FIRST_NAMES = ("Anna", "Ben", "Clara", "David", "Elif", "Finn", "Greta", "Hugo", "Ines", "Jonas",
               "Katarzyna", "Luca", "Mia", "Noah", "Olga", "Paul", "Rosa", "Samir", "Tess", "Yusuf")
LAST_NAMES = ("Berger", "Costa", "Dubois", "Eriksen", "Fischer", "Garcia", "Horvat", "Jansen",
              "Kowalski", "Lange", "Moreau", "Novak", "Okafor", "Peters", "Rossi", "Schmidt")
MARKETING_CONSENT_PPM = 600_000
ENROLLMENT_LEAD_SECONDS = 300        # the CRM enrolls a new member just before the first purchase
NPS_DELAY_SECONDS = 1_800
TIER_ESTIMATE_THRESHOLDS_MINOR = (50_000, 200_000, 500_000)  # the simulator's guess, not the ledger's
NPS_SCORES = tuple(range(11))
NPS_WEIGHTS_BY_TIER_ESTIMATE = (     # relative weights of the scores 0..10
    (3, 2, 3, 4, 5, 9, 11, 15, 18, 15, 15),   # lowest tier: the most detractors
    (2, 1, 2, 3, 4, 7, 9, 14, 20, 18, 20),
    (1, 1, 1, 2, 3, 5, 7, 12, 20, 22, 26),
    (1, 0, 1, 1, 2, 3, 5, 10, 20, 25, 32),    # highest tier: the most promoters
)
PHONE_DIGITS = 8


def profile_of(member: Any, rng: Any) -> dict:
    first, last = rng.choice(FIRST_NAMES), rng.choice(LAST_NAMES)
    number = rng.randrange(10 ** (PHONE_DIGITS - 1), 10 ** PHONE_DIGITS)
    return {"name": f"{first} {last}",
            "email": f"{first}.{last}.{member.index + 1}@example.com".lower(),
            "phone": f"+49 15{number}", "birth_date": member.birth.isoformat()}


def enrollment_fields(member: Any, rng: Any) -> dict:
    return {"channel": "pos", "profile": profile_of(member, rng),
            "consents": {"marketing": rng.randrange(1_000_000) < MARKETING_CONSENT_PPM}}


def tier_estimate(spend_minor: int) -> int:
    return sum(spend_minor >= threshold for threshold in TIER_ESTIMATE_THRESHOLDS_MINOR)


def nps_fields(spend_minor: int, online: bool, rng: Any) -> dict:
    weights = NPS_WEIGHTS_BY_TIER_ESTIMATE[tier_estimate(spend_minor)]
    return {"score": rng.choices(NPS_SCORES, weights=weights)[0],
            "touchpoint": "web_checkout" if online else "till_receipt"}
