"""Campaign programs for the tests (contract 2, section 12): ``[[campaigns]]`` tables as
TOML text, and the default program with them."""

from __future__ import annotations

from ledger.program import DEFAULT_PROGRAM_PATH, Program, parse_program

JUNE_2025 = ("2025-06-01T00:00:00Z", "2025-07-01T00:00:00Z")


def campaign_toml(campaign_id: str, body: str, window: tuple[str, str] = JUNE_2025) -> str:
    """One ``[[campaigns]]`` table: its id (also its name), window and ``body`` (effect, filters)."""
    return (f'\n[[campaigns]]\nid = "{campaign_id}"\nname = "{campaign_id}"\n'
            f'starts_at = "{window[0]}"\nends_at = "{window[1]}"\n{body}\n')


def program_with(*campaigns: str) -> Program:
    """The default program with the given ``[[campaigns]]`` tables."""
    return parse_program(DEFAULT_PROGRAM_PATH.read_text() + "".join(campaigns), "campaigns.toml")
