"""The ledger's application service: load accounts, decide, save atomically.

``LoyaltyLedger.apply`` takes a batch of commands, applies them in order to
their members' accounts, and saves every resulting fact of every account plus
optional ``Tracking`` records in one database transaction;
``process_batch`` does the same for a worker's Kafka batch (one tracking
record per partition, the batch's dead letters, the account cache handled).
A redelivered ``event_id`` is reported as a duplicate and changes nothing;
the same ``event_id`` with another payload is reported as a conflict and
changes nothing either.

Auditor reads: an account at a version or as of an event time, and its full
history with each fact's cause. The log of every committed fact:
``fact_log`` (``ledger.log``).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any, Callable, Iterable, Sequence

from eventsourcing.application import AggregateNotFoundError, Application, ProcessingEvent
from eventsourcing.domain import Snapshot
from eventsourcing.persistence import (IntegrityError, InterfaceError, OperationalError, Tracking,
                                       Transcoder, Transcoding)
from eventsourcing.popo import POPOProcessRecorder
from eventsourcing.utils import EnvType

from ledger import commands as cmd
from ledger.campaign_budgets import BudgetBook, Budgets, InMemoryBudgets
from ledger.campaigns import budgeted_campaign_ids
from ledger.credits import credit_commands
from ledger.domain import (
    EventIdConflict,
    LoyaltyAccount,
    account_id,
    fact_type,
)
from ledger.log import FactLog
from ledger.postgres.campaign_budgets import budgets_of
from ledger.postgres.recorder import TOPIC as UNPIPELINED_RECORDER_TOPIC
from ledger.postgres.recorder import (MultiTrackingPOPORecorder, UnpipelinedProcessRecorder,
                                      bulk_stored_events, more_tracking)
from ledger.postgres.member_keys import key_store_for
from ledger.postgres.transcoder import TOPIC as ORJSON_TRANSCODER_TOPIC
from ledger.privacy import KeyRing, open_profile, sealed_profiles
from ledger.program import Program
from ledger.program_versions import PROGRAM_VERSIONS_ID, ProgramVersionRefused, ProgramVersions
from ledger.rules import Lot, PurchaseRecord
from ledger.settings import LedgerSettings
from ledger.wire import fact_fields

APPLIED = "applied"
DUPLICATE = "duplicate"
CONFLICT = "conflict"
# The event store's trouble, not a command's: a conflicting commit, a database out of reach.
STORE_ERRORS = (IntegrityError, OperationalError, InterfaceError)


class DecisionFailed(Exception):
    """A command made the ledger raise while deciding (a bug, or input no rule foresaw).

    Nothing was saved. The original error is ``__cause__``; the message names
    its type and text.
    """

    def __init__(self, error: Exception) -> None:
        super().__init__(f"{type(error).__name__}: {error}")


class LotAsDict(Transcoding):
    type = Lot
    name = "loyalty_lot"

    def encode(self, obj: Lot) -> dict:
        state = dict(vars(obj))
        if state["active_from"] is None:  # an active lot is stored as before pending points
            del state["active_from"]
        return state

    def decode(self, data: dict) -> Lot:
        return Lot(**data)


class PurchaseRecordAsDict(Transcoding):
    type = PurchaseRecord
    name = "loyalty_purchase"

    def encode(self, obj: PurchaseRecord) -> dict:
        return dict(vars(obj))

    def decode(self, data: dict) -> PurchaseRecord:
        return PurchaseRecord(**data)


@dataclass
class Result:
    """What applying one command did: ``applied``, ``duplicate`` or ``conflict``."""

    event_id: str
    member_id: str
    status: str
    facts: list[Any] = field(default_factory=list)
    error: str | None = None


@dataclass(frozen=True)
class HistoryEntry:
    """One stored fact, for auditors: its version, wire name, cause and data."""

    version: int
    type: str
    clock: datetime
    source_event_id: str
    source_position: str | None
    data: dict[str, Any]


def _matching(program: Program, campaign_index: bool) -> Program:
    """``program`` matching campaigns as ``LOYALTY_CAMPAIGN_INDEX`` says (False: the previous
    design's scan of every running campaign; the same lines either way)."""
    return program if program.campaign_index == campaign_index else replace(
        program, campaign_index=campaign_index)


class LoyaltyLedger(Application):
    """The event-sourced ledger of every member's ``LoyaltyAccount``."""

    name = "loyalty"

    def __init__(self, env: EnvType | None = None, program: Program | None = None) -> None:
        """A ledger on eventsourcing's ``env``; its ``LOYALTY_*`` settings (program file,
        snapshot interval) come from ``env`` over the process environment."""
        merged = dict(env or {})
        settings = LedgerSettings.over_process_env(merged)
        self.snapshotting_intervals = {LoyaltyAccount: settings.snapshot_interval_events}
        merged.setdefault("IS_SNAPSHOTTING_ENABLED", "y")
        merged.setdefault("PROCESS_RECORDER_TOPIC", UNPIPELINED_RECORDER_TOPIC)
        merged.setdefault("TRANSCODER_TOPIC", ORJSON_TRANSCODER_TOPIC)
        super().__init__(env=merged)
        self._known_absent: set[str] = set()
        self._round_budgets: BudgetBook | None = None
        self._recorded_programs: dict[int, Program] = {}
        self.program = _matching(program or settings.program(), settings.campaign_index)
        self.fact_log = FactLog(self.recorder, self.mapper)
        self.member_keys = KeyRing(key_store_for(self.recorder))  # section 13's key table
        self.member_keys_prefetch = settings.member_keys_prefetch  # one key query a round
        self.budgets: Budgets = budgets_of(self.recorder) or InMemoryBudgets()
        self.position_cache = settings.ledger_position_cache
        self._saved_positions: dict[str, int] = {}  # tracking name -> position this ledger saved
        if isinstance(self.recorder, UnpipelinedProcessRecorder):
            self.recorder.combine_statements = settings.ledger_combine_statements

    def construct_recorder(self):
        """A process recorder, so facts and their tracking records commit together."""
        recorder = self.factory.process_recorder()
        if type(recorder) is POPOProcessRecorder:  # the in-memory store: same multi-tracking API
            return MultiTrackingPOPORecorder()
        return recorder

    def evict_cached_accounts(self) -> None:
        """Forget every cached account (after a failed batch or a rebalance).

        With a cache (``AGGREGATE_CACHE_MAXSIZE``) the ledger decides on the
        cached object in place; if saving fails, that object holds facts that
        were never stored, so the cache must go. A stale cached account is
        never a correctness problem: its save would collide with the stored
        versions and fail. The positions this ledger saved go too
        (``tracked_positions``): after a rebalance another worker may move them.
        """
        self._saved_positions = {}
        cache = self.repository.cache
        if cache is not None:
            # Not cache.clear(): eventsourcing 9.5.6's LRUCache.clear() resets
            # only its LRU links, and get() still finds every entry.
            self.repository.cache = type(cache)(maxsize=cache.maxsize)

    def forget_accounts(self, accounts: Iterable[LoyaltyAccount]) -> None:
        """Drop ``accounts`` from the cache (a round decided on them and saves nothing; the
        next round loads them from the store). The other cached accounts and the saved
        positions stay: unlike a failed save, nothing else can hold unsaved facts."""
        cache = self.repository.cache
        if cache is None:
            return
        for account in accounts:
            with suppress(KeyError):
                cache.get(account.id, evict=True)

    def tracked_position(self, name: str) -> int | None:
        """The last position recorded under tracking ``name`` (a Kafka partition, the outbox)."""
        return self.recorder.max_tracking_id(name)

    def tracked_positions(self, names: Sequence[str]) -> dict[str, int | None]:
        """``tracked_position`` of each of ``names``, in one query; none when this ledger's own
        saves since its last ``evict_cached_accounts`` (a rebalance, a failed batch) recorded
        every one of them (``position_cache``, ``LOYALTY_LEDGER_POSITION_CACHE``).

        A position is only cached by the ledger that wrote it, for the partitions its worker
        owns; if another worker wrote one meanwhile (a zombie that has not heard of its
        rebalance yet), the facts of the messages both applied collide (account versions,
        ``event_id``) and the batch fails, which drops the cache, as a stale cached account
        does. A cached position only admits messages: the batch applier reads
        ``stored_positions`` before it skips any.
        """
        saved = self._saved_positions
        if self.position_cache and saved and all(name in saved for name in names):
            return {name: saved[name] for name in names}
        return self.stored_positions(names)

    def stored_positions(self, names: Sequence[str]) -> dict[str, int | None]:
        """The positions recorded under ``names`` as the store holds them now, in one query
        (never the cache: the batch applier skips messages only on these)."""
        return self.recorder.max_tracking_ids(names)

    def all_tracked_positions(self) -> dict[str, int]:
        """The last position recorded under every tracking name (partitions, the outbox)."""
        return self.recorder.tracked_positions()

    def register_transcodings(self, transcoder: Transcoder) -> None:
        super().register_transcodings(transcoder)
        transcoder.register(LotAsDict())
        transcoder.register(PurchaseRecordAsDict())

    # ---------------------------------------------------------------- writes

    def apply(self, *commands: cmd.Command, tracking: Tracking | None = None) -> list[Result]:
        """Apply ``commands`` in order; save every fact and ``tracking`` in one transaction."""
        with self._reserved_budgets(commands) as book:
            results, accounts = self._confirmed(book, commands, self.decide)
            self.save_batch(accounts, tracking)
        return results

    def _confirmed(self, book: BudgetBook, commands: Sequence[cmd.Command],
                   decide: Callable[[Sequence[cmd.Command]], tuple[list[Result], list[LoyaltyAccount]]]
                   ) -> tuple[list[Result], list[LoyaltyAccount]]:
        """``decide(commands)`` with the budgets as they stood, then again under their locks
        if another batch's spending meanwhile changes the decisions (``BudgetBook.confirm``)."""
        decided = decide(commands)
        if book.confirm(self.program.campaign_plan.budgets):
            return decided
        self.forget_accounts(decided[1])  # they hold the first decisions, never saved
        self.member_keys.discard()
        return decide(commands)

    @contextmanager
    def _reserved_budgets(self, commands: Sequence[cmd.Command]) -> Iterator[BudgetBook]:
        """The budgets ``commands`` may spend, reserved for this round (read as they stand;
        ``_confirmed`` locks and checks them on PostgreSQL after deciding); ``decide`` spends
        from it and ``_save`` writes it in the round's transaction
        (both find the book here, so their signatures stay as callers and tests know them)."""
        with self.budgets.reserve(self._budget_ids(commands)) as book:
            self._round_budgets = book
            try:
                yield book
            finally:
                self._round_budgets = None

    def _budget_ids(self, commands: Sequence[cmd.Command]) -> list[str]:
        """The budgeted campaigns the purchases among ``commands`` may spend from (section 12)."""
        if not self.program.campaigns:
            return []
        moments = [c.occurred_at for c in commands if isinstance(c, cmd.RecordPurchase)]
        return budgeted_campaign_ids(self.program, moments)

    def process_batch(self, commands: Sequence[cmd.Command],
                      tracking: Tracking | Sequence[Tracking] | None,
                      dead_letters: Sequence[Any] = (),
                      conflict_dead_letter: Callable[[int, Result], Any] | None = None,
                      ) -> list[Result]:
        """Decide ``commands`` in order and save, in one transaction, their facts, the
        ``dead_letters``, a dead letter per conflict and ``tracking``: the stream's one call.

        A command whose ``event_id`` was applied with another payload changes
        nothing; ``conflict_dead_letter(index, result)`` makes the record saved
        in its place. Whatever raises, the account cache is dropped first (a
        cached account may hold facts that were never stored). An error while
        deciding that is not the event store's (``STORE_ERRORS``) is raised as
        ``DecisionFailed``, so the caller can tell a poison command from a
        failed save; a conflicting commit raises IntegrityError and nothing is
        saved.
        """
        try:
            with self._reserved_budgets(commands) as book:
                results, accounts = self._confirmed(book, commands, self._decide_batch)
                conflicts = [conflict_dead_letter(index, result)
                             for index, result in enumerate(results)
                             if result.status == CONFLICT and conflict_dead_letter is not None]
                self.save_batch([*accounts, *dead_letters, *conflicts], tracking)
        except BaseException:
            self.evict_cached_accounts()
            raise
        return results

    def _decide_batch(self, commands: Sequence[cmd.Command]
                      ) -> tuple[list[Result], list[LoyaltyAccount]]:
        try:
            return self.decide(commands)
        except STORE_ERRORS:
            raise
        except Exception as error:  # noqa: BLE001 - a command's failure, told apart from the store's
            raise DecisionFailed(error) from error

    def decide(self, commands: Iterable[cmd.Command], budgets: BudgetBook | None = None
               ) -> tuple[list[Result], list[LoyaltyAccount]]:
        """Apply ``commands`` to their accounts in memory; nothing is saved yet.

        Purchases spend from ``budgets``, else from the budgets this round
        reserved (``apply``, ``process_batch``); outside a round every
        campaign budget is whole (only for a round that saves nothing).

        If anything raises, cached accounts may hold undecided changes: the
        cache is dropped before the error propagates.
        """
        commands = list(commands)
        try:
            accounts = self._preload({command.member_id for command in commands})
            self._prefetch_keys(commands)
            book = budgets if budgets is not None else self._round_budgets
            results = [self._apply_one(command, accounts, book) for command in commands]
        except BaseException:
            self.evict_cached_accounts()
            raise
        finally:
            self.member_keys.end_round()
        return results, list(accounts.values())

    def _prefetch_keys(self, commands: Sequence[cmd.Command]) -> None:
        """The keys ``seal`` needs this round, in one query (``member_keys_prefetch``; off:
        one query per profile-bearing command, the previous design)."""
        if self.member_keys_prefetch:
            self.member_keys.prefetch({command.member_id for command in commands
                                       if isinstance(command, cmd.PROFILE_BEARING)})

    def _preload(self, member_ids: set[str]) -> dict[str, LoyaltyAccount]:
        """Accounts of ``member_ids``: from the cache, else bulk-loaded (PostgreSQL with a cache).

        Returns the accounts found; new members are simply absent. Without a
        cache (or on the in-memory store) accounts load one by one in
        ``_apply_one`` as before.
        """
        self._known_absent: set[str] = set()
        cache = self.repository.cache
        if cache is None or not isinstance(self.recorder, UnpipelinedProcessRecorder):
            return {}
        found, missing = {}, []
        for member in member_ids:
            try:
                found[member] = cache.get(account_id(member))
            except KeyError:
                missing.append(member)
        for member, account in self._bulk_load(missing).items():
            cache.put(account_id(member), account)
            found[member] = account
        self._known_absent = set(missing) - set(found)
        return found

    def _bulk_load(self, member_ids: list[str]) -> dict[str, LoyaltyAccount]:
        if not member_ids:
            return {}
        ids = {account_id(m): m for m in member_ids}
        snapshots_table = self.snapshots.recorder.events_table_name if self.snapshots else None
        snapshots, events = bulk_stored_events(self.recorder, snapshots_table, list(ids))
        loaded = {}
        for originator_id, member in ids.items():
            account = None
            if originator_id in snapshots:
                account = self.mapper.to_domain_event(snapshots[originator_id]).mutate(None)
            for stored in events.get(originator_id, []):
                account = self.mapper.to_domain_event(stored).mutate(account)
            if account is not None:
                loaded[member] = account
        return loaded

    def apply_in_order(self, commands: Sequence[cmd.Command]) -> list[Result]:
        """Direct application: each command, then at once the credits it caused.

        This is the reference the stream pipeline is compared with; there the
        credit travels through Kafka to the referrer's partition instead.
        """
        results = []
        for command in commands:
            owed = [command]
            while owed:  # a credit may owe one in turn (a rejected transfer credit's return)
                result = self.apply(owed.pop(0))[0]
                results.append(result)
                owed.extend(credit_commands(result.facts))
        return results

    def save_batch(self, aggregates: Iterable[Any], tracking: Tracking | Sequence[Tracking] | None) -> None:
        """Save the pending facts of ``aggregates`` and ``tracking`` in one transaction.

        ``tracking`` may be several records (one per Kafka partition of a
        batch); all of them commit with the facts or none does. A tracking
        record for an offset already recorded (or lower) raises IntegrityError
        and nothing is saved: a batch is never committed twice.
        """
        trackings = [] if tracking is None else [tracking] if isinstance(tracking, Tracking) else list(tracking)
        try:
            self._save(aggregates, trackings)
        except BaseException:
            # A cached account counted facts that may not be stored: deciding on
            # it again would write versions after a gap. Reload from the store.
            self.evict_cached_accounts()
            self.member_keys.discard()
            raise
        if self.position_cache:
            self._saved_positions.update((t.application_name, t.notification_id) for t in trackings)

    def _save(self, aggregates: Iterable[Any], trackings: list[Tracking]) -> None:
        processing_event: ProcessingEvent = ProcessingEvent(tracking=trackings[0] if trackings else None)
        processing_event.saved_kwargs.update(more_tracking(trackings))
        if self._round_budgets is not None:  # the budgets' spending commits with the facts
            processing_event.saved_kwargs.update(self._round_budgets.save_kwargs())
        for aggregate in aggregates:  # what collect_events() does, minus its Protocol checks
            processing_event.events.extend(aggregate.collect_events())
            processing_event.aggregates[aggregate.id] = aggregate
        if not processing_event.events and not trackings:
            return
        key_changes = self.member_keys.changes_for(processing_event.events)
        processing_event.saved_kwargs.update(key_changes)
        recordings = self._record(processing_event)
        self.member_keys.committed(key_changes)
        self._take_snapshots(processing_event)
        self._notify(recordings)

    def _take_snapshots(self, processing_event: ProcessingEvent) -> None:
        """Snapshot, from memory, each saved account whose version crossed an interval.

        The library re-reads every such account from the database at the exact
        multiple; the saved in-memory account at its current version is the
        same state (the property tests rebuild with and without snapshots),
        and all of a batch's snapshots go in one insert.
        """
        new_facts = Counter(fact.originator_id for fact in processing_event.events)
        snapshots = []
        for aggregate in processing_event.aggregates.values():
            interval = self.snapshotting_intervals.get(type(aggregate))
            version = aggregate.version
            if interval and version // interval > (version - new_facts[aggregate.id]) // interval:
                snapshots.append(Snapshot.take(aggregate))
        if snapshots and self.snapshots is not None:
            self.snapshots.put(snapshots)

    def _apply_one(self, command: cmd.Command, accounts: dict[str, LoyaltyAccount],
                   budgets: BudgetBook | None = None) -> Result:
        account = accounts.get(command.member_id) or self._load_or_open(command)
        accounts[command.member_id] = account
        command = self.member_keys.seal(command, account)  # profile fields: ciphertext only
        opened_now = account.version == LoyaltyAccount.INITIAL_VERSION and account.pending_events
        try:
            if account.has_applied(command):
                return Result(command.event_id, command.member_id, DUPLICATE)
        except EventIdConflict as conflict:
            return Result(command.event_id, command.member_id, CONFLICT, error=str(conflict))
        first_new = 0 if opened_now else len(account.pending_events)
        account.decide(command, self.program, budgets)
        facts = list(account.pending_events[first_new:])
        return Result(command.event_id, command.member_id, APPLIED, facts)

    def _load_or_open(self, command: cmd.Command) -> LoyaltyAccount:
        if command.member_id in self._known_absent:
            return LoyaltyAccount.open(command, self.program)
        account = self.find_account(command.member_id)
        return account if account is not None else LoyaltyAccount.open(command, self.program)

    def record_program_version(self) -> None:
        """Record this ledger's program file in the event store the first time it runs.

        ``ProgramVersionRefused`` (nothing recorded) if its version is lower
        than the highest recorded, or if its version was recorded with
        another file.
        """
        registry = self._program_versions() or ProgramVersions.start()
        refusal = registry.refusal(self.program)
        if refusal is not None:
            raise ProgramVersionRefused(refusal)
        registry.record(self.program)
        self.save(registry)

    def program_for(self, version: int) -> Program:
        """The program of ``version`` as recorded (this ledger's own if it is that version)."""
        if version == self.program.version:
            return self.program
        found = self._recorded_programs.get(version)
        if found is None:
            registry = self._program_versions()
            found = registry.program(version) if registry is not None else None
            if found is None:
                raise KeyError(f"program version {version} is not recorded in the event store")
            self._recorded_programs[version] = found
        return found

    def _program_versions(self) -> ProgramVersions | None:
        try:
            return self.repository.get(PROGRAM_VERSIONS_ID)
        except AggregateNotFoundError:
            return None

    # ----------------------------------------------------------------- reads

    def find_account(self, member_id: str, version: int | None = None) -> LoyaltyAccount | None:
        """The member's account (at ``version`` if given), or None if it has no facts."""
        try:
            return self.repository.get(account_id(member_id), version=version)
        except AggregateNotFoundError:
            return None

    def account_as_of(self, member_id: str, moment: datetime) -> LoyaltyAccount | None:
        """The account after its last fact whose clock is at or before ``moment``.

        The clock never moves back, so this is the state an auditor would have
        seen had the ledger stopped at that event time. None before the first fact.
        """
        version = None
        for fact in self.events.get(account_id(member_id)):
            if fact.timestamp > moment:
                break
            version = fact.originator_version
        return None if version is None else self.find_account(member_id, version)

    def member_profile(self, member_id: str) -> dict | None:
        """The member's profile, decrypted (section 13): only for the places that use it
        (the auditor's flag, the API's ``crm`` scope, ``loyalty birthdays``). None once erased."""
        facts = self.events.get(account_id(member_id))
        return open_profile(self.member_keys.key_of(member_id), member_id, sealed_profiles(facts))

    def history(self, member_id: str) -> list[HistoryEntry]:
        """Every fact of the member's account in order, with its cause."""
        return [
            HistoryEntry(
                version=fact.originator_version,
                type=fact_type(fact),
                clock=fact.timestamp,
                source_event_id=fact.source_event_id,
                source_position=getattr(fact, "source_position", None),
                data=fact_fields(fact),
            )
            for fact in self.events.get(account_id(member_id))
        ]
