"""``loyalty up``: a local stack kept running for trying and developing.

An embedded broker (tansu, topics in memory; or Apache Kafka with
``--broker kafka``, also fresh at every start; or the broker that
``LOYALTY_BOOTSTRAP_SERVERS`` names, whose topics last) and an embedded PostgreSQL
whose data is kept for ``DIR`` (``services.stack_store_dir``), the topics
and tables set up, N workers and the outbox relay (``loyalty relay``, its own
process; in the first worker with ``--relay-in-worker``) and the
projection follower and the till API (``loyalty api`` on a free loopback
port, with a key of every scope made for this stack), their logs in
``DIR/logs``. It writes the connection variables to ``DIR/env`` (``export
LOYALTY_...=...`` lines, readable by the owner only: the API key is one of
them), prints them and then ``ready``; commands run from the same directory find the stack through
that file (``ledger.settings.with_stack_env``). Ctrl-C, SIGTERM or SIGHUP
stops everything and removes ``DIR/env``.

The broker's topics are new at every start while the store keeps its
tracking rows, whose offsets belong to the old topics. So on a store that
already applied events ``up`` refuses to start unless told what to do:
``--fresh`` deletes the store, ``--keep-ledger`` keeps it and applies the
new topics from their start (``streams.topic_identity.accept_new_topics``).
"""

from __future__ import annotations

import shutil
import sys
import time
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from ledger.postgres.topic_identities import tracked_topics
from ledger.postgres.urls import eventsourcing_env_from_url
from projections.runner import open_read_models
from streams.devkit.demo import start_follower, stop_follower
from streams.devkit.embedded_postgres import EmbeddedPostgres
from streams.devkit.services import broker_class, stack_env, stack_env_file_written, stack_store_dir
from streams.devkit.till_api import TillApi
from streams.process import ProcessError, start_workers, stop_workers
from ledger.settings import env_file_text
from streams.settings import Settings
from streams.topic_identity import accept_new_topics, tracked_topic_names
from streams.topics import ensure_topics
from streams.worker import open_ledger

WATCH_INTERVAL_MS = 500
FOLLOWER_RESTARTS_MAX = 10
STACK_DIR_DEFAULT = Path(".loyalty")


@dataclass(frozen=True)
class UpOptions:
    stack_dir: Path = STACK_DIR_DEFAULT
    workers: int = 2
    broker: str = "embedded"
    fresh: bool = False         # delete the store first
    keep_ledger: bool = False   # keep the store; apply the new topics from their start


class StackError(RuntimeError):
    """The stack cannot start as asked; the message says what to do."""


def run_up(options: UpOptions, settings: Settings, say: Callable[[str], None] = print) -> int:
    """Start the stack, announce it, keep it running until interrupted (status 0)."""
    logs = options.stack_dir / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    store = stack_store_dir(options.stack_dir)
    if options.fresh:
        shutil.rmtree(store, ignore_errors=True)
    with ExitStack() as stack:
        bootstrap = settings.bootstrap_servers or \
            stack.enter_context(broker_class(options.broker)()).bootstrap_servers
        postgres = stack.enter_context(EmbeddedPostgres(store))
        live = settings.with_services(bootstrap, postgres.settings.url)
        _set_up(live, options, new_topics=not settings.bootstrap_servers)
        workers = start_workers(live, options.workers, logs)
        stack.callback(stop_workers, workers)
        follower = Follower(live, logs / "projections.log")
        stack.callback(follower.stop)
        api = TillApi.start(live, logs / "api.log")
        stack.callback(api.stop)
        exports = stack_env(live) | api.exports()
        stack.enter_context(stack_env_file_written(options.stack_dir, exports))
        for name, value in exports.items():
            say(env_file_text({name: value}).rstrip("\n"))
        say(api.console_line())
        say("ready")
        sys.stdout.flush()
        return _watch(workers, follower, api)


def _set_up(settings: Settings, options: UpOptions, new_topics: bool) -> None:
    """Topics, tables and read models; with a broker of its own (``new_topics``: empty at every
    start) the old topics' tracking rows dealt with as asked."""
    ensure_topics(settings)
    ledger = open_ledger(settings)
    with open_read_models(eventsourcing_env_from_url(settings.database_url), None, ledger.program):
        pass
    ledger.close()
    if not new_topics:
        return  # a broker that keeps its topics: the workers' topic-identity check guards them
    old = tracked_topics(settings.database_url, tracked_topic_names(settings))
    if old and not options.keep_ledger:
        raise StackError(
            f"the store of {options.stack_dir} holds a ledger that applied {', '.join(old)} of an "
            f"earlier run, but the {options.broker} broker starts with new, empty topics: run "
            f"`loyalty up --dir {options.stack_dir} --fresh` to start the ledger fresh (deletes the store) "
            f"or `--keep-ledger` to keep it and apply the new topics from their start")
    if old or options.keep_ledger:
        accept_new_topics(settings)


class Follower:
    """The projection follower, restarted when it exits (a ``loyalty replay`` run meanwhile
    drops the read models under it) at most ``FOLLOWER_RESTARTS_MAX`` times."""

    def __init__(self, settings: Settings, log_path: Path) -> None:
        self.settings, self.log_path = settings, log_path
        self.process = start_follower(settings, log_path)
        self.restarts = 0

    def keep_running(self) -> None:
        if self.process.poll() is None:
            return
        if self.restarts == FOLLOWER_RESTARTS_MAX:
            raise ProcessError(f"the projection follower exited with status {self.process.returncode} "
                               f"{self.restarts + 1} times; its log: {self.log_path}")
        self.restarts += 1
        print(f"the projection follower exited with status {self.process.returncode} (its log: "
              f"{self.log_path}); restarted", file=sys.stderr, flush=True)
        self.process = start_follower(self.settings, self.log_path)

    def stop(self) -> None:
        stop_follower(self.process)


def _watch(workers, follower: Follower, api: TillApi) -> int:
    """Until interrupted (status 0); a worker, the relay or the API that dies stops the stack with
    ``ProcessError``."""
    try:
        while True:
            for worker in workers:
                if worker.process.poll() is not None:
                    raise ProcessError(f"{worker.name} exited with status {worker.process.returncode}; "
                                       f"its log: {worker.log_path}")
            if not api.is_running():
                raise ProcessError(f"the till API exited with status {api.process.returncode}; "
                                   f"its log: {api.log_path}")
            follower.keep_running()
            time.sleep(WATCH_INTERVAL_MS / 1000)
    except KeyboardInterrupt:
        print("stopping", file=sys.stderr)
        return 0
