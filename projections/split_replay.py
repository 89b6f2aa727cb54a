"""A rebuild from empty split across processes by member (issue 21).

One Python thread decodes every stored fact and runs every projection's
handlers (``projections.runner.catch_up``); on a machine with more cores,
``rebuild`` runs ``processes`` of them at once, each over its own share of
the accounts:

- **Shards.** Process ``k`` of ``n`` reads only the facts of the accounts in
  its ``Shard`` (``ledger.log.FactLog.chunks``: a filter on the originator id
  in the log's query, so each process decodes only its share). Every fact of
  an account is in one shard, and every member-keyed row is changed only by
  that member's facts, so the shards' member-keyed rows are disjoint.
- **Staging.** Each process rebuilds the read models with the ordinary
  ``catch_up`` (in memory, binary COPY, rows and tracking positions
  committed together every ``batch_notifications_max`` facts) into a schema
  of its own, ``<schema>_replay_<k>_of_<n>``, up to one ``stop`` position
  (the log's head when the split began) for all of them.
- **Merge.** Then ONE transaction fills the real (empty, position 0) read
  models from the staging schemas and records ``stop`` as their position:
  member-keyed tables are the union of the shards' rows; the tables not keyed
  by member (the KPIs' per-month counters, the campaigns' figures) are sums
  of their counters by key. A campaign's ``budget_left`` is its budget in
  the program version of the last fact that touched it, minus the points
  awarded: when the shards' last facts agree on that budget (one program
  version, or versions with the same budget) it is the agreed budget minus
  the summed points; when they do not, the ``campaigns`` read model is
  rebuilt in this process instead (the only case that needs the order of
  facts across shards). The staging schemas are then dropped.
- **Crash.** A process killed mid-rebuild leaves its staging schema at its
  last commit and the real read models at position 0, empty (a shard whose
  parent is killed ends within ``PARENT_CHECK_INTERVAL_MS``): ``resume``
  with the same ``processes`` carries every shard on from its own position
  (the usual catch-up), then merges. Before the merge commits, nothing of
  the split is visible; after it, the staging schemas are leftovers that the
  next ``replay``, or ``resume`` of any process count, drops (no read model is
  then empty at position 0, so no split can be waiting for them).

``processes=1`` is the previous design: no shards, no staging, no merge
(``projections.runner.replay`` exactly as before).
"""

from __future__ import annotations

import multiprocessing
import os
import queue
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass
from typing import Any

from eventsourcing.persistence import Tracking
from psycopg.sql import SQL, Composed, Identifier
from rich.console import Console

from ledger.application import LoyaltyLedger
from ledger.log import Shard
from ledger.program import Program
from projections.base import APPLICATION_NAME
from projections.campaigns import CAMPAIGNS
from projections.rows import Table
from projections import runner
from projections.runner import CatchUp, ReadModels, catch_up, open_read_models, progress_bar

REPLAY_PROCESSES_DEFAULT = 2  # ``loyalty replay --processes``: the cores of the benchmark box
REPLAY_PROCESSES_MAX = 16  # each holds a connection pool and its share of the rows in memory
PROGRESS_POLL_TIMEOUT_S = 0.2  # the parent's wait for a shard's progress between checks
PARENT_CHECK_INTERVAL_MS = 500  # a shard process whose parent died ends within this
EXIT_ORPHANED = 3
SCHEMA_ENV = "PROJECTIONS_POSTGRES_SCHEMA"  # the read models' schema (``open_read_models``)
CREATE_TABLE_ENV = "CREATE_TABLE"  # eventsourcing's: create the event store's tables at start
MEMBER_KEY = "member_id"
BUDGET_COLUMN = "budget_left"  # of ``campaigns``: not a counter (see the module docstring)
STAGING_SCHEMAS_SQL = ("SELECT nspname FROM pg_namespace WHERE nspname LIKE %s "
                       "ORDER BY nspname")

_progress: Any = None  # a shard process's queue of progress counts (set by ``_start_shard``)


@dataclass(frozen=True)
class ShardJob:
    """What one shard process needs: the ledger's environment and program, the read
    models and theirs, its shard, where to stop, and the size of its transactions."""

    env: dict[str, str]
    program: Program  # the ledger's
    read_models_program: Program
    names: tuple[str, ...]
    shard: Shard
    schema: str
    stop: int
    batch_notifications_max: int


def replay(ledger: LoyaltyLedger, models: ReadModels, *, processes: int,
           batch_notifications_max: int = runner.REPLAY_BATCH_NOTIFICATIONS_MAX_DEFAULT,
           console: Console | None = None) -> CatchUp:
    """Drop the read models in ``models`` and rebuild them from the whole log, in
    ``processes`` shards (1: ``projections.runner.replay``, the previous design)."""
    if processes == 1:
        return runner.replay(ledger, models, batch_notifications_max=batch_notifications_max,
                             console=console)
    drop_staging(models)
    for projection in models.projections.values():
        projection.view.reset()
    return resume(ledger, models, processes=processes,
                  batch_notifications_max=batch_notifications_max, console=console)


def resume(ledger: LoyaltyLedger, models: ReadModels, *, processes: int,
           batch_notifications_max: int = runner.REPLAY_BATCH_NOTIFICATIONS_MAX_DEFAULT,
           console: Console | None = None) -> CatchUp:
    """Rebuild the read models at position 0 in ``processes`` shards (carrying on a split
    that was interrupted), then catch every read model up to the head, with a progress bar
    (1: ``projections.runner.resume``, the previous design)."""
    if processes == 1:
        return runner.resume(ledger, models, batch_notifications_max=batch_notifications_max,
                             console=console)
    head = ledger.fact_log.head()
    start = min(models.positions().values(), default=head)
    label = f"rebuilding {', '.join(models.projections)} in {processes} processes"
    with progress_bar(console, head - start, label) as advance:
        split = rebuild(ledger, models, processes=processes,
                        batch_notifications_max=batch_notifications_max, on_progress=advance)
        rest = catch_up(ledger, models, batch_notifications_max=batch_notifications_max,
                        on_progress=advance)
    return CatchUp(notifications=split.notifications + rest.notifications,
                   transactions=split.transactions + rest.transactions,
                   position=rest.position, positions=rest.positions)


def staging_schema(base: str, shard: Shard) -> str:
    return f"{base}_replay_{shard.index}_of_{shard.count}"


def rebuild(ledger: LoyaltyLedger, models: ReadModels, *, processes: int,
            batch_notifications_max: int,
            on_progress: Callable[[int], None] = lambda advanced: None) -> CatchUp:
    """Rebuild the read models of ``models`` at position 0 with empty tables up to the log's
    head, ``processes`` shards at once, and merge them; the others are left alone (the
    caller catches every read model up afterwards)."""
    assert processes > 1, processes
    names = tuple(name for name in models.projections if _is_empty_at_zero(models, name))
    done = CatchUp(position=min(models.positions().values(), default=0))
    stop = ledger.fact_log.head()
    if not names or stop == 0:
        drop_staging(models)  # no split waits for them: leftovers of one killed after its merge
        return done
    base = models.factory.datastore.schema
    rules = models.projections[names[0]].rules  # the read models' program, as in one process
    jobs = [ShardJob(dict(ledger.env), ledger.program, rules, names, shard,
                     staging_schema(base, shard), stop, batch_notifications_max)
            for shard in (Shard(index, processes) for index in range(processes))]
    _drop_schemas(models, _leftovers(models, base, keep={job.schema for job in jobs}))
    for job in jobs:
        _create_schema(models, job.schema)
    shard_done = _run_shards(jobs, on_progress)
    campaigns_merged = merge(models, names, [job.schema for job in jobs], stop)
    _drop_schemas(models, [job.schema for job in jobs])
    if not campaigns_merged:
        _rebuild_alone(ledger, models, "campaigns", stop, batch_notifications_max)
    done.notifications = sum(part.notifications for part in shard_done)
    done.transactions = max(part.transactions for part in shard_done) + 1
    done.position = stop
    return done


def _is_empty_at_zero(models: ReadModels, name: str) -> bool:
    view = models.view(name)
    with models.factory.datastore.transaction(commit=False) as cursor:
        return view.position() == 0 and view.is_empty(cursor)


# ------------------------------------------------------------------ shard processes


def _run_shards(jobs: list[ShardJob], on_progress: Callable[[int], None]) -> list[CatchUp]:
    """Each job in a process of its own (spawned: no connection pool is inherited); their
    progress (ids of the log passed, each shard over the whole range) is averaged."""
    context = multiprocessing.get_context("spawn")
    progress = context.Queue()
    with ProcessPoolExecutor(max_workers=len(jobs), mp_context=context,
                             initializer=_start_shard, initargs=(progress, os.getpid())) as pool:
        futures = [pool.submit(_rebuild_shard, job) for job in jobs]
        _report_progress(futures, progress, lambda advanced: on_progress(advanced / len(jobs)))
        return [future.result() for future in futures]


def _report_progress(futures: list[Future], progress: Any,
                     on_progress: Callable[[int], None]) -> None:
    while not all(future.done() for future in futures):
        try:
            on_progress(progress.get(timeout=PROGRESS_POLL_TIMEOUT_S))
        except queue.Empty:
            continue


def _start_shard(progress: Any, parent: int) -> None:
    """A shard process's set-up: its progress queue, and a watchdog that ends it when its
    parent (pid ``parent``) is gone, even before it started (a SIGKILLed ``loyalty replay``
    leaves no shard writing behind it)."""
    global _progress
    _progress = progress
    threading.Thread(target=_exit_when_orphaned, args=(parent,), name="shard-watchdog",
                     daemon=True).start()


def _exit_when_orphaned(parent: int) -> None:
    while os.getppid() == parent:
        time.sleep(PARENT_CHECK_INTERVAL_MS / 1000)
    os._exit(EXIT_ORPHANED)  # its open transaction is rolled back by PostgreSQL


def _rebuild_shard(job: ShardJob) -> CatchUp:
    """In a shard process: catch the staging read models up with the shard's facts."""
    # The event store's tables exist (the parent's ledger made them); two shards creating
    # them at once would race on eventsourcing's CREATE OR REPLACE FUNCTION.
    ledger = LoyaltyLedger(env={**job.env, CREATE_TABLE_ENV: "n"}, program=job.program)
    try:
        with open_read_models({**job.env, SCHEMA_ENV: job.schema}, job.names,
                              job.read_models_program) as models:
            return catch_up(ledger, models, batch_notifications_max=job.batch_notifications_max,
                            stop=job.stop, shard=job.shard, on_progress=_send_progress)
    finally:
        ledger.close()


def _send_progress(advanced: int) -> None:
    if _progress is not None:
        _progress.put(advanced)


# ------------------------------------------------------------------ merge


def merge(models: ReadModels, names: tuple[str, ...], schemas: list[str], stop: int) -> bool:
    """Fill the named read models (position 0, empty) from the staging ``schemas`` and record
    ``stop`` as their position, in one transaction. Returns False when the shards disagree
    on a campaign's budget: ``campaigns`` is then left at 0 for a rebuild of its own.

    A read model whose position is no longer 0 under the lock was rebuilt by another writer
    meanwhile (``loyalty up`` restarts its follower when a replay resets the read models
    under it; the follower's catch-up locks the same position): its rows are kept, and the
    catch-up that ends every split brings it to the head."""
    with models.factory.datastore.transaction(commit=True) as cursor:
        campaigns_merged = "campaigns" not in names or _budgets_agree(cursor, schemas)
        for name in names:
            if name == "campaigns" and not campaigns_merged:
                continue
            view = models.view(name)
            if view.lock_position(cursor) != 0:
                continue  # another writer (a restarted follower) rebuilt it meanwhile: its rows stand
            for table in view.tables:
                cursor.execute(merge_statement(table, view.schema, schemas))
            view.track(cursor, Tracking(APPLICATION_NAME, stop))
    return campaigns_merged


def merge_statement(table: Table, schema: str, schemas: list[str]) -> Composed:
    """INSERT the shards' rows of ``table``: their union when it is keyed by member, else
    their counters summed by key (``budget_left``: the agreed budget less the points)."""
    columns = SQL(", ").join(map(Identifier, table.column_names))
    union = SQL(" UNION ALL ").join(
        SQL("SELECT {} FROM {}.{}").format(columns, Identifier(shard), Identifier(table.name))
        for shard in schemas)
    target = SQL("INSERT INTO {}.{} ({}) ").format(Identifier(schema), Identifier(table.name),
                                                   columns)
    if table.key[0] == MEMBER_KEY:
        return target + union
    keys = SQL(", ").join(map(Identifier, table.key))
    values = SQL(", ").join(_merged_value(table, column) for column in table.column_names)
    return target + SQL("SELECT {} FROM ({}) AS shards GROUP BY {}").format(values, union, keys)


def _merged_value(table: Table, column: str) -> Composed:
    if column in table.key:
        return SQL("{}").format(Identifier(column))
    if table is CAMPAIGNS and column == BUDGET_COLUMN:
        return SQL("min(budget_left + points_awarded) - sum(points_awarded)")
    return SQL("sum({})").format(Identifier(column))


def _budgets_agree(cursor: Any, schemas: list[str]) -> bool:
    """Every shard's last fact of each campaign names the same budget (or none at all)."""
    union = SQL(" UNION ALL ").join(
        SQL("SELECT campaign_id, budget_left + points_awarded AS budget FROM {}.{}").format(
            Identifier(shard), Identifier(CAMPAIGNS.name)) for shard in schemas)
    statement = SQL("SELECT count(*) AS disagreeing FROM (SELECT campaign_id FROM ({}) AS s "
                    "GROUP BY campaign_id HAVING count(DISTINCT budget) > 1 OR "
                    "(bool_or(budget IS NULL) AND bool_or(budget IS NOT NULL))) AS d").format(union)
    return cursor.execute(statement).fetchone()["disagreeing"] == 0


def _rebuild_alone(ledger: LoyaltyLedger, models: ReadModels, name: str, stop: int,
                   batch_notifications_max: int) -> None:
    one = ReadModels(models.factory, {name: models.projections[name]}, models.env)
    catch_up(ledger, one, batch_notifications_max=batch_notifications_max, stop=stop)


# ------------------------------------------------------------------ staging schemas


def _create_schema(models: ReadModels, schema: str) -> None:
    with models.factory.datastore.transaction(commit=True) as cursor:
        cursor.execute(SQL("CREATE SCHEMA IF NOT EXISTS {}").format(Identifier(schema)))


def _leftovers(models: ReadModels, base: str, keep: set[str]) -> list[str]:
    """Staging schemas of earlier split replays not resumed now (another process count)."""
    with models.factory.datastore.transaction(commit=False) as cursor:
        found = cursor.execute(STAGING_SCHEMAS_SQL, (f"{base}\\_replay\\_%\\_of\\_%",)).fetchall()
    return [row["nspname"] for row in found if row["nspname"] not in keep]


def drop_staging(models: ReadModels) -> None:
    """Drop every staging schema of the read models' schema (a new replay starts over)."""
    _drop_schemas(models, _leftovers(models, models.factory.datastore.schema, keep=set()))


def _drop_schemas(models: ReadModels, schemas: list[str]) -> None:
    with models.factory.datastore.transaction(commit=True) as cursor:
        for schema in schemas:
            cursor.execute(SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(Identifier(schema)))
