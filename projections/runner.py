"""Catch up, replay and follow the read models.

- ``catch_up`` reads the ledger's notification log ``batch_notifications_max``
  notifications at a time (``select_notifications``), decodes each once,
  and applies the batch to every open read model in ONE transaction that
  also records each read model's tracking position: the speed of the log,
  not one transaction per event. It stops at the log's head as it was when
  it started and then records that head as every read model's position
  (the notifications after the last fact a read model needs are facts it
  ignores), so "caught up" means position = head.
- ``replay`` drops the named read models (all by default) and catches them
  up from the first notification, with a rich progress bar; ``resume`` is
  the same without the drop (a restart picks up where the last run stopped).
- ``live_runner`` follows the log live with eventsourcing's
  ``ProjectionRunner`` (LISTEN/NOTIFY, one transaction per event), from the
  position a catch-up or replay left.

A read model must have one writer at a time: stop its live runner before
replaying it.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
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

from ledger.application import PROGRAM_FILE_ENV, LoyaltyLedger
from ledger.program import Program, load_program
from ledger.wire import json_ready
from projections.annual import AnnualProjection
from projections.balances import BalancesProjection
from projections.base import APPLICATION_NAME, ReadModelProjection
from projections.kpis import KpisProjection
from projections.tiers import TiersProjection

BATCH_NOTIFICATIONS_MAX_DEFAULT = 2_000
READ_MODELS: dict[str, type[ReadModelProjection]] = {
    "balances": BalancesProjection,
    "tiers": TiersProjection,
    "annual": AnnualProjection,
    "kpis": KpisProjection,
}
READ_MODEL_NAMES = tuple(READ_MODELS)
FACTORY_ENV_NAME = "projections"  # POSTGRES_* may be overridden as PROJECTIONS_POSTGRES_*
POOL_SIZE_ENV = "POSTGRES_POOL_SIZE"
LIVE_RUNNER_POOL_CONNECTIONS = 2  # the subscription's LISTEN and one for reads and writes


def program_from_env(env: EnvType | None) -> Program:
    """The program the ledger with ``env`` uses (``LOYALTY_PROGRAM_FILE``)."""
    return load_program((env or {}).get(PROGRAM_FILE_ENV) or os.environ.get(PROGRAM_FILE_ENV))


@dataclass
class ReadModels:
    """The named read models' projections, their views sharing one connection pool."""

    factory: PostgresFactory
    projections: dict[str, ReadModelProjection]

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
    rules = program or program_from_env(env)
    projections = {}
    for name in names or READ_MODEL_NAMES:
        projection_class = READ_MODELS[name]
        view = projection_class.view_class(factory.datastore,
                                           tracking_table_name=f"{name}_tracking")
        view.create_table()
        projections[name] = projection_class.with_program(rules)(view)
    return ReadModels(factory, projections)


@dataclass
class CatchUp:
    """What a catch-up did: notifications applied, transactions committed, final position."""

    notifications: int = 0
    transactions: int = 0
    position: int = 0
    positions: dict[str, int] = field(default_factory=dict)


def catch_up(ledger: LoyaltyLedger, models: ReadModels, *, batch_notifications_max: int,
             on_progress: Callable[[int], None] = lambda advanced: None) -> CatchUp:
    """Bring every read model in ``models`` up to the log's current head, batch by batch."""
    assert batch_notifications_max > 0, batch_notifications_max
    positions = models.positions()
    head = ledger.recorder.max_notification_id() or 0
    topics = sorted({topic for p in models.projections.values() for topic in p.topics})
    done = CatchUp(position=min(positions.values(), default=head), positions=positions)
    while done.position < head:
        notifications = ledger.recorder.select_notifications(
            start=done.position, limit=batch_notifications_max, stop=head, topics=topics,
            inclusive_of_start=False)
        last = notifications[-1].id if notifications else head
        facts = [(n.id, ledger.mapper.to_domain_event(n)) for n in notifications]
        _commit(models, positions, facts, last)
        on_progress(last - done.position)
        done.notifications += len(notifications)
        done.transactions += 1
        done.position = last
    return done


def _commit(models: ReadModels, positions: dict[str, int],
            facts: Sequence[tuple[int, Any]], last: int) -> None:
    """One transaction: every read model behind ``last`` applies its new facts and records it.

    Each read model's position is read under its lock inside the transaction
    (another writer may have moved it since ``positions`` was read).
    """
    behind = {name: p for name, p in models.projections.items() if positions[name] < last}
    with models.factory.datastore.transaction(commit=True) as cursor:
        for name, projection in behind.items():
            current = projection.view.lock_position(cursor)
            positions[name] = max(current, last)
            if current >= last:
                continue
            projection.write_rows(cursor, [fact for id_, fact in facts if id_ > current])
            projection.view.track(cursor, Tracking(APPLICATION_NAME, last))


def replay(ledger: LoyaltyLedger, models: ReadModels, *,
           batch_notifications_max: int = BATCH_NOTIFICATIONS_MAX_DEFAULT,
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
           batch_notifications_max: int = BATCH_NOTIFICATIONS_MAX_DEFAULT,
           console: Console | None = None) -> CatchUp:
    """Catch the read models up from their tracked positions, with a progress bar."""
    head = ledger.recorder.max_notification_id() or 0
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
