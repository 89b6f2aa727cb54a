"""Catch up, replay and follow the read models.

- ``catch_up`` reads the ledger's log in chunks (``LoyaltyLedger.fact_log``:
  one query per ``read_notifications_max`` notifications, the next chunk read
  ahead in a helper thread), decodes each fact once, and applies it to every
  open read model; every ``batch_notifications_max`` notifications it commits
  ONE transaction that writes the rows and records each read model's
  tracking position: the speed of the log, not one transaction per event. It stops at the log's head as
  it was when it started and then records that head as every read model's
  position (the notifications after the last fact a read model needs are
  facts it ignores), so "caught up" means position = head.
- A read model at position 0 with empty tables (just reset) is rebuilt in
  memory: its ``RowBatch`` is complete (it never reads a row), stays in
  memory from one transaction to the next, and writes each transaction's
  new rows with binary COPY (``projections.rows``). Any other read model is
  read and upserted batch by batch, as the live follower needs. Either way a
  transaction's rows and its position commit together, so a crash resumes
  after the last commit.
- A transaction takes three round trips (``projections.combined``): one
  statement for its settings and every position lock, one pipeline of
  reads per chunk, one statement for every write and position;
  ``ReadModels.combines_statements`` (``read_models_combine_statements``,
  from the environment) False restores one statement each. ``catch_up``'s
  ``synchronous_commit=False`` (the live follower's default) commits
  without waiting for the WAL flush.
- ``replay`` drops the named read models (all by default) and catches them
  up from the first notification, with a rich progress bar; ``resume`` is
  the same without the drop (a restart picks up where the last run stopped).
  Both commit every ``REPLAY_BATCH_NOTIFICATIONS_MAX_DEFAULT`` notifications
  unless told otherwise: a row changed in many transactions is rewritten in
  each, so fewer, larger transactions rebuild faster (a crash loses at most
  one).
- ``live_runner`` follows the log live with eventsourcing's
  ``ProjectionRunner`` (LISTEN/NOTIFY, one transaction per event), from the
  position a catch-up or replay left.

A read model must have one writer at a time: stop its live runner before
replaying it.
"""

from __future__ import annotations

import gc
import hashlib
import os
from collections.abc import Callable, Iterable, Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass, field
from typing import Any

import orjson
from eventsourcing.persistence import InfrastructureFactory, Tracking
from eventsourcing.postgres import PostgresFactory
from eventsourcing.projection import ProjectionRunner
from eventsourcing.utils import Environment, EnvType
from rich.console import Console
from rich.progress import (BarColumn, MofNCompleteColumn, Progress, ProgressColumn, Task,
                           TextColumn, TimeElapsedColumn, TimeRemainingColumn)
from rich.text import Text

from ledger.application import LoyaltyLedger
from ledger.log import FactChunk, Shard
from ledger.program import Program
from ledger.settings import LedgerSettings
from ledger.wire import json_ready
from projections.annual import AnnualProjection
from projections.balances import BalancesProjection
from projections.campaigns import CampaignsProjection
from projections.base import APPLICATION_NAME, ReadModelProjection
from projections.kpis import KpisProjection
from projections import combined
from projections.rows import ReadQueue, RowBatch
from projections.tiers import TiersProjection

# notifications per transaction, live catch-up (``LOYALTY_FOLLOW_BATCH_NOTIFICATIONS_MAX``)
BATCH_NOTIFICATIONS_MAX_DEFAULT = LedgerSettings.follow_batch_notifications_max
# Replay: a row changed in two transactions is written twice (at 1M facts, 100k per transaction
# replayed 12,400 facts/s, 500k 18,600, one transaction 20,000); a crash loses at most one.
REPLAY_BATCH_NOTIFICATIONS_MAX_DEFAULT = 500_000
READ_NOTIFICATIONS_MAX = 5_000  # notifications per read of the log (and per decode and apply)
CACHE_ROWS_MAX = 2_000_000  # rows a rebuilt read model keeps in memory between transactions
# A window's transaction is idle while the facts are applied in memory (a whole window when
# rebuilding): this replaces eventsourcing's idle-in-transaction timeout (5 s) for it only.
WINDOW_IDLE_TIMEOUT_S = 600  # a window of 500k facts at 1,000 facts/s
SET_LOCAL_STATEMENT = "SELECT set_config(%s, %s, true)"  # SET LOCAL, with parameters
IDLE_TIMEOUT_SETTING = "idle_in_transaction_session_timeout"
SYNCHRONOUS_COMMIT_SETTING = "synchronous_commit"
READ_MODELS: dict[str, type[ReadModelProjection]] = {
    "balances": BalancesProjection,
    "tiers": TiersProjection,
    "annual": AnnualProjection,
    "kpis": KpisProjection,
    "campaigns": CampaignsProjection,
}
READ_MODEL_NAMES = tuple(READ_MODELS)
FACTORY_ENV_NAME = "projections"  # POSTGRES_* may be overridden as PROJECTIONS_POSTGRES_*
POOL_SIZE_ENV = "POSTGRES_POOL_SIZE"
LIVE_RUNNER_POOL_CONNECTIONS = 2  # the subscription's LISTEN and one for reads and writes


def program_from_env(env: EnvType | None) -> Program:
    """The program the ledger with ``env`` uses (``LOYALTY_PROGRAM_FILE``)."""
    return LedgerSettings.over_process_env(env).program()


@dataclass
class ReadModels:
    """The named read models' projections, their views sharing one connection pool."""

    factory: PostgresFactory
    projections: dict[str, ReadModelProjection]
    env: dict[str, str] = field(default_factory=dict)  # what they were opened with
    # a catch-up's transaction in a few statements (``projections.combined``); False: the
    # previous design, one statement per lock, read, write and position
    combines_statements: bool = True

    def view(self, name: str) -> Any:
        return self.projections[name].view

    def positions(self) -> dict[str, int]:
        return {name: projection.view.position() for name, projection in self.projections.items()}

    def close(self) -> None:
        self.factory.close()

    def __enter__(self) -> "ReadModels":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def open_read_models(env: EnvType, names: Iterable[str] | None = None,
                     program: Program | None = None) -> ReadModels:
    """Open (creating tables if missing) the named read models, all by default."""
    factory = InfrastructureFactory.construct(Environment(FACTORY_ENV_NAME, {**os.environ, **env}))
    if not isinstance(factory, PostgresFactory):
        raise ValueError("the read models live in PostgreSQL: set PERSISTENCE_MODULE "
                         "to eventsourcing.postgres")
    settings = LedgerSettings.over_process_env(env)
    rules = program or settings.program()
    projections = {}
    for name in names or READ_MODEL_NAMES:
        projection_class = READ_MODELS[name]
        view = projection_class.view_class(factory.datastore,
                                           tracking_table_name=f"{name}_tracking")
        view.create_table()
        projections[name] = projection_class.with_program(rules)(view)
    return ReadModels(factory, projections, dict(env),
                      combines_statements=settings.read_models_combine_statements)


@dataclass
class CatchUp:
    """What a catch-up did: notifications applied, transactions committed, final position."""

    notifications: int = 0
    transactions: int = 0
    position: int = 0
    positions: dict[str, int] = field(default_factory=dict)


def catch_up(ledger: LoyaltyLedger, models: ReadModels, *, batch_notifications_max: int,
             on_progress: Callable[[int], None] = lambda advanced: None,
             read_notifications_max: int = READ_NOTIFICATIONS_MAX,
             cache_rows_max: int = CACHE_ROWS_MAX, stop: int | None = None,
             shard: Shard | None = None, positions: dict[str, int] | None = None,
             synchronous_commit: bool = True, kept: dict[str, "Kept"] | None = None,
             kept_read_rows_max: int = 0) -> CatchUp:
    """Bring every read model in ``models`` up to the log's current head (or ``stop``), batch
    by batch; with a ``shard``, from the facts of its accounts only (``split_replay``).
    ``positions`` (the live follower's, from its last commit) saves reading them: a read
    model reset since then raises ``ReadModelsMovedBack`` at the first commit.
    ``synchronous_commit=False`` commits without waiting for the WAL flush (the live
    follower's ``follow_synchronous_commit``).

    One transaction per ``batch_notifications_max`` notifications, read and
    applied ``read_notifications_max`` at a time. A read model that starts
    from position 0 with empty tables is rebuilt in memory (a complete
    ``RowBatch``, kept from one transaction to the next while it holds at
    most ``cache_rows_max`` rows) and written with COPY; any other is read and
    upserted batch by batch. ``kept`` (the live follower's, held from one
    catch-up to the next) and ``kept_read_rows_max`` keep those rows too: a
    read model's rows read or written by its last transaction, up to that many,
    serve the next one if its position is still the one that transaction
    recorded (no other writer came between), so a member's rows are not read
    again every cycle; 0 keeps none (the previous design).
    """
    assert batch_notifications_max > 0 and read_notifications_max > 0, batch_notifications_max
    for projection in models.projections.values():
        projection.program_of = ledger.program_for  # each fact with the version it names
    positions = models.positions() if positions is None else positions
    head = ledger.fact_log.head() if stop is None else stop
    done = CatchUp(position=min(positions.values(), default=head), positions=positions)
    if done.position >= head:
        return done
    topics = sorted({topic for p in models.projections.values() for topic in p.topics})
    chunks = ledger.fact_log.chunks(done.position, head, topics,
                                    window_notifications_max=batch_notifications_max,
                                    chunk_notifications_max=read_notifications_max,
                                    shard=shard)
    kept = {} if kept is None else kept
    limits = KeptLimits(cache_rows_max, kept_read_rows_max)
    with closing(chunks), _collector_paused():
        while done.position < head:
            window = Window(chunks, done.position, on_progress)
            done.positions = _commit(models, kept, window, limits, synchronous_commit)
            done.notifications += window.notifications
            done.transactions += 1
            done.position = window.position
    return done


@contextmanager
def _collector_paused() -> Iterator[None]:
    """No automatic cyclic garbage collection during one catch-up.

    Decoding allocates a dozen objects per fact, all alive until their chunk
    is applied, so the collector ran constantly and, as the rows held in
    memory grew, ever longer: a quarter of a replay's time. Facts and rows
    form no reference cycles (a replay of 100,000 facts leaves nothing for
    ``gc.collect()``); reference counting frees them as before.
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


class Window:
    """One transaction's chunks of the log (decoded by the ledger's mapper, upcasters
    included), as it is iterated: ``(chunk, facts)``. ``notifications`` and ``position``
    (the window's end so far) count what has been iterated."""

    def __init__(self, chunks: Iterator[FactChunk], start: int,
                 on_progress: Callable[[int], None]) -> None:
        self.chunks = chunks
        self.start = self.position = start
        self.notifications = 0
        self.on_progress = on_progress

    def __iter__(self) -> Iterator[tuple[FactChunk, list[Any]]]:
        for chunk in self.chunks:
            yield chunk, chunk.facts
            self.on_progress(chunk.last - self.position)
            self.notifications += len(chunk.facts)
            self.position = chunk.last
            if chunk.ends_window:
                return


@dataclass(frozen=True)
class Kept:
    """A ``RowBatch`` kept between transactions, valid at ``position`` only."""

    position: int
    rows: RowBatch


@dataclass(frozen=True)
class KeptLimits:
    """Rows a batch may hold to be kept for the next transaction: a complete one
    (``complete_rows_max``), one read from the tables (``read_rows_max``, 0: never)."""

    complete_rows_max: int
    read_rows_max: int

    def keeps(self, batch: RowBatch) -> bool:
        return len(batch) <= (self.complete_rows_max if batch.complete else self.read_rows_max)


def _commit(models: ReadModels, kept: dict[str, Kept], window: Window,
            limits: KeptLimits, synchronous_commit: bool = True) -> dict[str, int]:
    """One transaction: every read model applies the window's facts past its position and
    records the window's end as its position; returns the positions.

    Each read model's position is read under its lock inside the transaction
    (another writer may have moved it since the catch-up began).
    """
    if models.combines_statements and models.factory.datastore.single_row_tracking:
        return _commit_combined(models, kept, window, limits, synchronous_commit)
    start = window.start
    with models.factory.datastore.transaction(commit=True) as cursor:
        for setting, value in _local_settings(synchronous_commit).items():
            cursor.execute(SET_LOCAL_STATEMENT, (setting, value))
        current = {name: p.view.lock_position(cursor) for name, p in models.projections.items()}
        _check_not_behind(current, start)
        rows = {name: _rows(p, kept.pop(name, None), current[name], cursor)
                for name, p in models.projections.items()}
        for chunk, facts in window:
            for name, projection in models.projections.items():
                after = current[name]
                projection.apply(facts if after == start else _after(chunk, facts, after),
                                 rows[name])
        for name, projection in models.projections.items():
            if current[name] < window.position:
                rows[name].write()
                projection.view.track(cursor, Tracking(APPLICATION_NAME, window.position))
    return _kept_and_positions(kept, rows, current, window.position, limits)


def _commit_combined(models: ReadModels, kept: dict[str, Kept], window: Window,
                     limits: KeptLimits, synchronous_commit: bool) -> dict[str, int]:
    """``_commit`` in a few statements (``projections.combined``): the settings and every
    lock in one, every read model's reads of a chunk in one pipeline, every write and
    position in one (a complete batch's COPY apart)."""
    start = window.start
    views = {name: projection.view for name, projection in models.projections.items()}
    with models.factory.datastore.transaction(commit=True) as cursor:
        current = combined.lock_positions(cursor, views, _local_settings(synchronous_commit))
        _check_not_behind(current, start)
        rows = {name: _rows(p, kept.pop(name, None), current[name], cursor)
                for name, p in models.projections.items()}
        queue = ReadQueue(cursor)
        for chunk, facts in window:
            handled = {}
            for name, projection in models.projections.items():
                after = current[name]
                rows[name].queue = queue
                handled[name] = projection.read_ahead(
                    facts if after == start else _after(chunk, facts, after), rows[name])
            queue.run()
            for name, projection in models.projections.items():
                projection.handle(handled[name], rows[name])
        moving = [name for name in models.projections if current[name] < window.position]
        writes = []
        for name in moving:
            if rows[name].complete:
                rows[name].write()  # binary COPY: a statement of its own
            else:
                writes.extend(rows[name].write_statements())
        tracking = {name: views[name].track_statement(Tracking(APPLICATION_NAME, window.position))
                    for name in moving}
        combined.write_together(cursor, writes, tracking)
    for batch in rows.values():
        batch.queue = None
    return _kept_and_positions(kept, rows, current, window.position, limits)


def _local_settings(synchronous_commit: bool) -> dict[str, str]:
    """What a window's transaction sets for itself (``SET LOCAL``)."""
    local = {IDLE_TIMEOUT_SETTING: f"{WINDOW_IDLE_TIMEOUT_S}s"}
    if not synchronous_commit:
        local[SYNCHRONOUS_COMMIT_SETTING] = "off"
    return local


def _kept_and_positions(kept: dict[str, Kept], rows: dict[str, RowBatch], current: dict[str, int],
                        position: int, limits: KeptLimits) -> dict[str, int]:
    """Keep the batches ``limits`` allows for the next transaction; the new positions."""
    for name, batch in rows.items():
        if limits.keeps(batch):
            kept[name] = Kept(max(current[name], position), batch)
    return {name: max(at, position) for name, at in current.items()}


class ReadModelsMovedBack(RuntimeError):
    """A read model's position went back during a catch-up: another writer reset it
    (``loyalty replay`` while a follower runs). Nothing of the window was written;
    catching up again from the new positions is the remedy."""


def _check_not_behind(current: dict[str, int], start: int) -> None:
    """A read model behind the window was reset by another writer: its facts were not read."""
    behind = {name: position for name, position in current.items() if position < start}
    if behind:
        raise ReadModelsMovedBack(f"read models moved back during the catch-up (reset by another "
                           f"writer?): {behind}, expected at least {start}")


def _rows(projection: ReadModelProjection, kept: Kept | None, current: int,
          cursor: Any) -> RowBatch:
    """The read model's rows for this transaction: the kept ones if still valid, else new
    (complete when the read model is at position 0 with empty tables)."""
    if kept is not None and kept.position == current:
        rows = kept.rows
    else:
        rows = projection.row_batch(complete=current == 0 and projection.view.is_empty(cursor))
    rows.cursor = cursor
    return rows


def _after(chunk: FactChunk, facts: list[Any], position: int) -> list[Any]:
    """The facts of ``chunk`` past ``position`` (another writer got further)."""
    return [fact for id_, fact in zip(chunk.ids, facts) if id_ > position]


def replay(ledger: LoyaltyLedger, models: ReadModels, *,
           batch_notifications_max: int = REPLAY_BATCH_NOTIFICATIONS_MAX_DEFAULT,
           console: Console | None = None) -> CatchUp:
    """Drop the read models in ``models`` and rebuild them from the whole log.

    With a ``console`` a progress bar shows notifications done, notifications/s
    and the time left.
    """
    for projection in models.projections.values():
        projection.view.reset()
    return resume(ledger, models, batch_notifications_max=batch_notifications_max,
                  console=console)


def resume(ledger: LoyaltyLedger, models: ReadModels, *,
           batch_notifications_max: int = REPLAY_BATCH_NOTIFICATIONS_MAX_DEFAULT,
           console: Console | None = None) -> CatchUp:
    """Catch the read models up from their tracked positions, with a progress bar."""
    head = ledger.fact_log.head()
    start = min(models.positions().values(), default=head)
    label = f"catching up {', '.join(models.projections)}"
    with progress_bar(console, head - start, label) as advance:
        return catch_up(ledger, models, batch_notifications_max=batch_notifications_max,
                        on_progress=advance)


def live_runner(env: EnvType, name: str, program: Program | None = None) -> ProjectionRunner:
    """Follow the log live with eventsourcing's ``ProjectionRunner`` (one event per transaction).

    Use it as a context manager; it starts from the read model's tracking position.
    Each runner opens two connection pools (its view's and the ledger's); they
    hold ``LIVE_RUNNER_POOL_CONNECTIONS`` connections each unless ``env`` sets
    ``POSTGRES_POOL_SIZE``.
    """
    projection_class = READ_MODELS[name].with_program(program or program_from_env(env))
    runner_env = {POOL_SIZE_ENV: str(LIVE_RUNNER_POOL_CONNECTIONS), **env}
    return ProjectionRunner(application_class=LoyaltyLedger, projection_class=projection_class,
                            view_class=projection_class.view_class, env=runner_env)


# ------------------------------------------------------------------ digests


def read_model_digests(models: ReadModels) -> dict[str, str]:
    """A SHA-256 of every row of every table of each read model (times in UTC)."""
    return {name: _digest(projection.view) for name, projection in models.projections.items()}


def _digest(view: Any) -> str:
    hasher = hashlib.sha256()
    for table in view.tables:
        hasher.update(table.name.encode())
        for row in view.rows(table):
            hasher.update(orjson.dumps(json_ready(row), option=orjson.OPT_SORT_KEYS))
    return hasher.hexdigest()


# ------------------------------------------------------------------ progress


class RateColumn(ProgressColumn):
    """Notifications per second (display only)."""

    def render(self, task: Task) -> Text:
        speed = task.finished_speed or task.speed
        return Text("-- events/s" if speed is None else f"{int(speed):,} events/s", style="cyan")


@contextmanager
def progress_bar(console: Console | None, total: int,
                 label: str) -> Iterator[Callable[[int], None]]:
    """A rich progress bar on ``console`` (none without one); yields ``advance(n)``."""
    if console is None:
        yield lambda advanced: None
        return
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
               RateColumn(), TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn())
    with Progress(*columns, console=console) as progress:
        task = progress.add_task(label, total=total)
        yield lambda advanced: progress.advance(task, advanced)
