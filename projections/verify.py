"""``verify``: recompute every member's figures from the raw ledger facts and
compare them with the balance, tier and annual read models.

Independence: the expected figures come from the ``LoyaltyAccount`` aggregate
folded from the member's stored facts (the domain's own ``apply`` methods,
no projection code) and, for awarded bonuses, from the ``year_closed`` facts
(``projections.figures``, which the auditor's member view shares).

Decisions:

- Each read model is checked against the ledger as it stood at that read
  model's tracking position: a member's expected state is the account at its
  last fact with a notification id at or below the position. So a read
  model that merely lags behind the live ledger does not show up as wrong;
  the positions and the ledger's head are reported alongside.
- Reported, one ``Mismatch`` per wrong field: a missing or unexpected row
  (``field`` = ``row``), a field whose value differs, and a balance row that
  breaks balance + held + pending = in - out (contract 2; with the default
  program, balance = earned - reversed - redeemed - expired)
  (``field`` = ``balance_invariant``; the same check runs on the ledger's own
  account, reported under read model ``ledger``).
- Program versions (contract 2, section 11): a tier row is checked with the
  program of the member's last outcome fact, an annual row with the program
  of the last fact of its year, each as recorded in the event store.
- Members are checked ``verify_accounts_per_chunk`` at a time: that many
  accounts' facts and rows are in memory at once.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from eventsourcing.utils import get_topic

from ledger.application import LoyaltyLedger
from ledger.domain import FACT_TYPES, LoyaltyAccount, account_id
from projections.annual import ANNUAL
from projections.balances import BALANCES
from projections.figures import (annual_figures, awarded_bonuses, balance_figures, fold,
                                 program_versions, tier_figures)
from projections.runner import ReadModels
from projections.tiers import TIERS
from projections.year_end import known_members

VERIFY_ACCOUNTS_PER_CHUNK = 500
VERIFIED_TABLES = {"balances": BALANCES, "tiers": TIERS, "annual": ANNUAL}
POINTS_IN = ("lifetime_earned", "lifetime_adjusted_in", "lifetime_transferred_in",
             "lifetime_cancelled")
POINTS_OUT = ("lifetime_reversed", "lifetime_redeemed", "lifetime_expired", "lifetime_adjusted_out",
              "lifetime_transferred_out", "lifetime_forfeited")


@dataclass(frozen=True)
class Mismatch:
    """One field of one row that disagrees with the ledger (``ledger``: the expected value)."""

    read_model: str
    member_id: str
    year: int | None
    field: str
    ledger: Any
    read_model_value: Any


@dataclass
class VerifyReport:
    head: int                              # the ledger's last notification id
    positions: dict[str, int]              # each read model's tracking position
    members: int                           # accounts checked
    mismatches: list[Mismatch] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.mismatches


def verify(ledger: LoyaltyLedger, models: ReadModels,
           verify_accounts_per_chunk: int = VERIFY_ACCOUNTS_PER_CHUNK) -> VerifyReport:
    """Compare the balance, tier and annual read models in ``models`` with the ledger."""
    names = [name for name in VERIFIED_TABLES if name in models.projections]
    positions = {name: models.view(name).position() for name in names}
    versions = {position: account_versions_at(ledger, position)
                for position in set(positions.values())}
    members = known_members(ledger)
    report = VerifyReport(ledger.fact_log.head(), positions, len(members))
    for chunk in _chunks(members, verify_accounts_per_chunk):
        checker = _ChunkCheck(ledger, models, chunk, positions, versions)
        report.mismatches.extend(checker.mismatches())
    for name in names:
        report.mismatches.extend(_unexpected_rows(models, name, versions[positions[name]]))
    if "campaigns" in models.projections:  # section 12: checked from the facts alone
        from projections.campaign_figures import campaign_mismatches
        report.positions["campaigns"] = models.view("campaigns").position()
        report.mismatches.extend(campaign_mismatches(ledger, models))
    return report


def account_versions_at(ledger: LoyaltyLedger, position: int) -> dict[str, int]:
    """Each account's version at notification ``position``, keyed by account id (str)."""
    topics = [get_topic(fact_class) for fact_class in FACT_TYPES.values()]
    return ledger.fact_log.versions_at(position, topics)


def _chunks(items: Sequence[str], size: int) -> Iterator[Sequence[str]]:
    assert size > 0, size
    for start in range(0, len(items), size):
        yield items[start:start + size]


class _ChunkCheck:
    """The members of one chunk: their facts, expected rows and actual rows."""

    def __init__(self, ledger: LoyaltyLedger, models: ReadModels, members: Sequence[str],
                 positions: dict[str, int], versions: dict[int, dict[str, int]]) -> None:
        self.program = ledger.program
        self.program_for = ledger.program_for
        self.models = models
        self.members = members
        self.positions = positions
        self.versions = versions
        self.facts = {member: list(ledger.events.get(account_id(member))) for member in members}

    def mismatches(self) -> Iterator[Mismatch]:
        for name in self.positions:
            actual = self._actual_rows(name)
            for member in self.members:
                yield from self._check(name, member, actual)

    def _check(self, name: str, member: str, actual: dict) -> Iterator[Mismatch]:
        version = self.versions[self.positions[name]].get(str(account_id(member)))
        if version is None:
            return
        facts = self.facts[member][:version]
        account = fold(facts)
        awarded = awarded_bonuses(facts)
        if name == "balances":
            yield from _ledger_invariant(account)
            yield from _compare(name, member, None, balance_figures(account),
                                actual.get((member,)))
            yield from _balance_invariant(member, actual.get((member,)))
        elif name == "tiers":
            last_version, _ = program_versions(facts)
            program = self.program_for(last_version or self.program.version)
            yield from _compare(name, member, None, tier_figures(account, program),
                                actual.get((member,)))
        else:
            yield from self._check_years(member, account, awarded, facts, actual)

    def _check_years(self, member: str, account: LoyaltyAccount, awarded: dict[int, int],
                     facts: list, actual: dict) -> Iterator[Mismatch]:
        """Each year under the program version of its last fact, as the read model has it."""
        _, year_versions = program_versions(facts)
        year_programs = {year: self.program_for(version) for year, version in year_versions.items()}
        expected = annual_figures(account, awarded, self.program, year_programs)
        years = sorted(set(expected) | {year for m, year in actual if m == member})
        for year in years:
            yield from _compare("annual", member, year, expected.get(year),
                                actual.get((member, year)))

    def _actual_rows(self, name: str) -> dict[tuple, dict]:
        table = VERIFIED_TABLES[name]
        rows = self.models.view(name).rows_of_members(table, self.members)
        return {table.key_of(row): row for row in rows}


def _compare(read_model: str, member: str, year: int | None, expected: dict | None,
             actual: dict | None) -> Iterator[Mismatch]:
    if expected is None or actual is None:
        if expected is not actual:
            yield Mismatch(read_model, member, year, "row",
                           "present" if expected else None, "present" if actual else None)
        return
    for name, value in expected.items():
        if actual.get(name) != value:
            yield Mismatch(read_model, member, year, name, value, actual.get(name))


def _flows(row: Any, get: Any) -> tuple[int, int]:
    """(balance + held + pending, what came in - what left): contract 2's invariant."""
    parts = get(row, "balance") + get(row, "held") + get(row, "pending")
    flows = sum(get(row, name) for name in POINTS_IN) - sum(get(row, name) for name in POINTS_OUT)
    return parts, flows


def _balance_invariant(member: str, row: dict | None) -> Iterator[Mismatch]:
    if row is None:
        return
    balance, flows = _flows(row, dict.get)
    if balance != flows:
        yield Mismatch("balances", member, None, "balance_invariant", flows, balance)


def _ledger_invariant(account: LoyaltyAccount) -> Iterator[Mismatch]:
    balance, flows = _flows(account, getattr)
    if balance != flows:
        yield Mismatch("ledger", account.member_id, None, "balance_invariant", flows, balance)


def _unexpected_rows(models: ReadModels, name: str,
                     versions: dict[str, int]) -> Iterator[Mismatch]:
    """Rows of members the ledger did not know at the read model's position."""
    table = VERIFIED_TABLES[name]
    for row in models.view(name).rows(table):
        if str(account_id(row["member_id"])) not in versions:
            yield Mismatch(name, row["member_id"], row.get("year"), "row", None, "present")

