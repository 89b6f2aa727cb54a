"""What every process shares: the ledger's settings (``LedgerSettings``).

The event store's URL, the program file, the metrics port, the database's
connect timeout and outage limits, the snapshot interval, the account cache
and the live follower's limits. Every setting has an environment variable
(``LOYALTY_`` + the field name in capitals) and a default; command-line flags
override the environment (``from_env(**overrides)``). ``streams/settings.py``
extends this type with the Kafka settings.

``program()`` is the one place the program file is resolved. ``store_env()``
is eventsourcing's environment for the configured database; it exports the
URL's libpq parameters that eventsourcing cannot carry (``sslmode``, ...)
through ``ledger.postgres.urls.export_libpq_variables``. The database URL's
password never shows: ``redacted()`` and ``repr()`` hide it.

A local stack (``loyalty up``, ``loyalty demo``) writes its ``export
LOYALTY_...`` lines to ``DIR/env``; ``with_stack_env()`` puts them under the
process's own variables, so a command run from the same directory finds the
stack without importing the developer kit.
"""

from __future__ import annotations

import os
import re
import shlex
from collections import ChainMap
from dataclasses import dataclass, fields
from pathlib import Path
from typing import ClassVar, Mapping, Self

from ledger.postgres.urls import eventsourcing_env_from_url, export_libpq_variables
from ledger.program import Program, load_program

ENV_PREFIX = "LOYALTY_"
INT_TYPES = ("int", "int | None")  # field annotations are strings (postponed evaluation)
BOOL_TYPES = ("bool",)
BOOL_WORDS = {"1": True, "true": True, "yes": True, "on": True,
              "0": False, "false": False, "no": False, "off": False}
SECRET_SHOWN_AS = "***"
CONNECT_TIMEOUT_ENV = "POSTGRES_CONNECT_TIMEOUT"  # eventsourcing's wait for a connection (its default: 30 s)
URL_PASSWORD = re.compile(r"//([^:/@]+):[^@]*@")


@dataclass(frozen=True)
class LedgerSettings:
    database_url: str | None = None          # None: start the embedded PostgreSQL (dev kit)
    program_file: str | None = None          # None: the default program
    metrics_port: int | None = None          # None: no /metrics and /healthz server
    database_connect_timeout_s: int = 5      # longest wait for a pooled connection, per call
    database_retry_backoff_ms: int = 200     # first wait after the database could not be reached
    database_retry_backoff_ms_max: int = 5000  # the wait doubles up to this
    database_unavailable_s_max: int = 120    # unreachable longer: the worker exits non-zero
    snapshot_interval_events: int = 100      # a snapshot of an account every N of its facts
    account_cache_accounts_max: int = 50_000  # accounts a worker keeps in memory (0: no cache)
    follow_poll_interval_ms: int = 25        # the live follower's wait when the log is idle
    follow_batch_notifications_max: int = 2_000  # notifications per transaction, live catch-up
    follow_positions_reread_ms: int = 1_000  # an idle follower re-reads the read models' positions
    follow_rereads_positions: bool = False   # True: every cycle re-reads them (the previous design)
    follow_kept_rows_max: int = 20_000       # rows of each read model the follower keeps between cycles
                                             # (0: none, every cycle reads them again; previous design)
    follow_synchronous_commit: bool = False  # False: the follower's commits skip the WAL flush wait
    read_models_combine_statements: bool = True  # False: one statement per lock, read, write (previous)
    member_keys_prefetch: bool = True        # a decide round reads its members' keys in one query
    ledger_combine_statements: bool = True   # a batch's save in 4 round trips, its position read in
                                             # 1 (False: one per tracking row, lock, notification;
                                             # the previous design; ledger/postgres/recorder.py)
    ledger_position_cache: bool = True       # a batch's partition positions from this ledger's own
                                             # last save, not read (False: read every batch; the
                                             # previous design; LoyaltyLedger.tracked_positions)
    campaign_index: bool = True              # a purchase looks only at campaigns for its store,
                                             # channel and tier (False: scans all; CampaignPlan)
    gc_tuned: bool = True                    # long-running processes freeze start-up objects and
                                             # run full collections on a timer (streams/gc_tuning.py)
    gc_young_objects: int = 10_000           # allocations between young collections (CPython: 700)
    gc_full_interval_s: int = 300            # a full collection this often (tuned only)

    secret_fields: ClassVar[tuple[str, ...]] = ()  # shown as ``***`` (the URL's password always)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides) -> Self:
        """Defaults, then ``LOYALTY_*`` variables (of ``environ``, else the process), then
        non-None ``overrides``."""
        environ = os.environ if environ is None else environ
        values = {}
        for field in fields(cls):
            raw = environ.get(ENV_PREFIX + field.name.upper())
            if raw not in (None, ""):
                values[field.name] = _parsed(field.name, field.type, raw)
        values.update({key: value for key, value in overrides.items() if value is not None})
        return cls(**values)

    @classmethod
    def over_process_env(cls, env: Mapping[str, str] | None) -> Self:
        """eventsourcing's rule for an application's ``env``: its ``LOYALTY_*`` variables win
        over the process's."""
        return cls.from_env(ChainMap(dict(env or {}), os.environ))

    def program(self) -> Program:
        """The program these settings name: ``program_file``, else the default program."""
        return load_program(self.program_file)

    def store_env(self) -> dict[str, str]:
        """eventsourcing's environment for a ledger (or read models) on ``database_url``.

        Carries ``LOYALTY_PROGRAM_FILE`` and ``LOYALTY_SNAPSHOT_INTERVAL_EVENTS``
        for the ledger. The URL's libpq parameters are exported to this process's
        environment, where libpq reads them. ``ValueError`` for a bad URL.
        """
        if not self.database_url:
            raise ValueError(f"no database URL: set {ENV_PREFIX}DATABASE_URL")
        env = eventsourcing_env_from_url(self.database_url)
        env.setdefault(CONNECT_TIMEOUT_ENV, str(self.database_connect_timeout_s))
        export_libpq_variables(env)
        return env | self.ledger_env()

    def ledger_env(self) -> dict[str, str]:
        """The settings ``LoyaltyLedger`` and ``projections.runner.open_read_models`` read
        from their environment, as variables (so a value from a stack's env file reaches
        them as it reaches the command that opened them)."""
        names = ("program_file", "snapshot_interval_events", "member_keys_prefetch",
                 "campaign_index", "ledger_combine_statements", "ledger_position_cache",
                 "read_models_combine_statements")
        return {ENV_PREFIX + name.upper(): str(getattr(self, name)) for name in names
                if getattr(self, name) is not None}

    def to_env(self) -> dict[str, str]:
        """The settings as ``LOYALTY_*`` variables, for child processes."""
        return {
            ENV_PREFIX + field.name.upper(): str(getattr(self, field.name))
            for field in fields(self)
            if getattr(self, field.name) is not None
        }

    def redacted(self) -> dict[str, object]:
        shown = {field.name: getattr(self, field.name) for field in fields(self)}
        if self.database_url:
            shown["database_url"] = URL_PASSWORD.sub(r"//\1:***@", self.database_url)
        for name in self.secret_fields:
            if shown[name] is not None:
                shown[name] = SECRET_SHOWN_AS
        return shown

    def __repr__(self) -> str:
        """The redacted settings, so logged settings never show a secret."""
        shown = ", ".join(f"{name}={value!r}" for name, value in self.redacted().items())
        return f"{type(self).__name__}({shown})"


def _parsed(name: str, annotation: str, raw: str) -> int | bool | str:
    """An environment variable's text as the field's type; a bad boolean names its variable."""
    if annotation in INT_TYPES:
        return int(raw)
    if annotation in BOOL_TYPES:
        if raw.strip().lower() not in BOOL_WORDS:
            raise ValueError(f"{ENV_PREFIX}{name.upper()}={raw!r}: expected one of {', '.join(BOOL_WORDS)}")
        return BOOL_WORDS[raw.strip().lower()]
    return raw


STACK_DIR_ENV = "LOYALTY_STACK_DIR"            # the directory of a `loyalty up` stack to use
STACK_DIRS_DEFAULT = (".loyalty", ".loyalty-demo")  # looked for in the current directory, in order
STACK_ENV_FILE_NAME = "env"


def stack_env_file(environ: Mapping[str, str] | None = None, cwd: Path | None = None) -> Path | None:
    """The ``env`` file a running ``loyalty up`` (or ``loyalty demo``) wrote, if there is one.

    ``LOYALTY_STACK_DIR`` names the directory; otherwise ``.loyalty`` then
    ``.loyalty-demo`` in the current directory.
    """
    environ = os.environ if environ is None else environ
    cwd = Path.cwd() if cwd is None else cwd
    named = environ.get(STACK_DIR_ENV)
    candidates = [Path(named)] if named else [cwd / name for name in STACK_DIRS_DEFAULT]
    for directory in candidates:
        path = (cwd / directory) / STACK_ENV_FILE_NAME
        if path.is_file():
            return path
    return None


def with_stack_env(environ: Mapping[str, str] | None = None, cwd: Path | None = None) -> dict[str, str]:
    """``environ`` with a local stack's ``LOYALTY_*`` values underneath: set variables win."""
    environ = dict(os.environ if environ is None else environ)
    path = stack_env_file(environ, cwd)
    return (read_env_file(path) | environ) if path else environ


def read_env_file(path: Path) -> dict[str, str]:
    """The ``export LOYALTY_NAME=VALUE`` lines of an env file (shell-quoted values); other lines ignored."""
    values = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        words = shlex.split(line, comments=True)
        if len(words) == 2 and words[0] == "export" and "=" in words[1]:
            name, value = words[1].split("=", 1)
            if name.startswith(ENV_PREFIX):
                values[name] = value
    return values


def env_file_text(values: Mapping[str, str]) -> str:
    """``export NAME=VALUE`` lines (values shell-quoted) for ``read_env_file`` and for a shell."""
    return "".join(f"export {name}={shlex.quote(value)}\n" for name, value in values.items())
