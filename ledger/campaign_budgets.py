"""Campaign budgets: what each budgeted campaign may still award (CONTRACT section 12).

A campaign's budget is a record of its own (points awarded so far per
campaign id), not part of any member's account: many workers' batches
share it. ``BudgetBook`` is what one decision round sees and spends: the
points awarded before it (read under the budgets' row locks in PostgreSQL,
``ledger/postgres/campaign_budgets.py``) plus what this round spent; the
domain asks it what is left and tells it what a purchase took.
``InMemoryBudgets`` is the in-memory store's budget record (domain unit
tests), behind the same ``reserve`` interface as ``PostgresBudgets``: a
round's spending counts only once its facts are saved.

A round decides with the budgets as they stood when it began, without
holding them; ``confirm`` (after deciding, before saving) takes them under
lock in PostgreSQL and says whether the decisions stand
(``BudgetBook.stands_with``: they do unless another batch spent meanwhile
from a budget this round emptied or overdrew); if not, the book holds what
the budgets hold now and the round decides again, under the locks.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any, Protocol

from ledger.program import Program


class BudgetBook:
    """One decision round's view of the budgets: awarded before it, spent in it."""

    def __init__(self, awarded: Mapping[str, int] | None = None) -> None:
        self.awarded = dict(awarded or {})
        self.spent: dict[str, int] = {}

    def lefts(self, program: Program) -> "BudgetLefts":
        """What each budgeted campaign of ``program`` has left (never below 0), worked out
        when asked: a purchase asks only about the campaigns it matches."""
        return BudgetLefts(self, program.campaign_plan.budgets)

    def left(self, campaign_id: str, budget_points: int) -> int:
        return max(budget_points - self.awarded.get(campaign_id, 0) - self.spent.get(campaign_id, 0), 0)

    def spend(self, campaign_id: str, points: int) -> None:
        self.spent[campaign_id] = self.spent.get(campaign_id, 0) + points

    def stands_with(self, awarded_now: Mapping[str, int], budget_points: Mapping[str, int]) -> bool:
        """True when decisions taken with ``awarded`` are the same with ``awarded_now`` (what
        the budgets hold under lock, after other batches committed; never less).

        A purchase's award is min(effect, what is left). A campaign whose spending here
        stayed below what it had left never cut an award (a cut empties the budget), so
        any budget that still covers the spending gives the same awards; a campaign this
        round emptied stands only if nobody else spent from it meanwhile.
        """
        for campaign_id, before in self.awarded.items():
            now = awarded_now.get(campaign_id, 0)
            if now == before:
                continue
            spent = self.spent.get(campaign_id, 0)
            budget = budget_points.get(campaign_id)
            if budget is None or not spent < budget - before or spent > budget - now:
                return False
        return True

    def confirm(self, budget_points: Mapping[str, int]) -> bool:
        """Nothing to confirm for a book nobody else spends from: its decisions stand."""
        return True

    def save_kwargs(self) -> dict[str, Any]:
        """Keywords for the recorder's insert (the PostgreSQL book writes its spending there)."""
        return {}


class BudgetLefts(Mapping[str, int]):
    """A ``BudgetBook``'s budgets left, by campaign id, as a read-only mapping over it."""

    def __init__(self, book: BudgetBook, budgets: Mapping[str, int]) -> None:
        self.book, self.budgets = book, budgets

    def __getitem__(self, campaign_id: str) -> int:
        return self.book.left(campaign_id, self.budgets[campaign_id])

    def get(self, campaign_id: str, default: Any = None) -> Any:  # Mapping's, one call shorter
        budget = self.budgets.get(campaign_id)
        return default if budget is None else self.book.left(campaign_id, budget)

    def __iter__(self) -> Iterator[str]:
        return iter(self.budgets)

    def __len__(self) -> int:
        return len(self.budgets)


class Budgets(Protocol):
    """Where budgets are kept: ``reserve`` the ones a round touches, decide, save."""

    def reserve(self, campaign_ids: Sequence[str]) -> Any:
        """A context manager yielding a ``BudgetBook``; spending counts when it exits cleanly."""

    def awarded(self) -> dict[str, int]:
        """Points awarded so far, by campaign id."""


class InMemoryBudgets:
    """The in-memory store's budget record: one process, so reserving needs no lock."""

    def __init__(self) -> None:
        self._awarded: dict[str, int] = {}

    @contextmanager
    def reserve(self, campaign_ids: Sequence[str]) -> Iterator[BudgetBook]:
        book = BudgetBook({campaign_id: self._awarded.get(campaign_id, 0)
                           for campaign_id in campaign_ids})
        yield book  # an exception (nothing saved) leaves the record as it was
        for campaign_id, points in book.spent.items():
            self._awarded[campaign_id] = self._awarded.get(campaign_id, 0) + points

    def awarded(self) -> dict[str, int]:
        return dict(self._awarded)
