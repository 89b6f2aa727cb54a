"""One configuration surface for the stream processes.

Every setting has an environment variable (``LOYALTY_...``) and a default;
CLI flags override the environment. Limits carry their unit in their name.
Secrets (the database URL's password, ``sasl_password``) are never printed:
``redacted()`` and ``repr()`` hide them. Kafka security settings are turned
into client options by ``streams/kafka_security.py``.

A local stack started by ``loyalty up`` writes its connection variables to
``DIR/env``; ``with_stack_env`` puts them under the environment, so commands
run from the same directory find it (``stack_env_file`` says where it looks).
"""

from __future__ import annotations

import os
import re
import shlex
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Mapping

ENV_PREFIX = "LOYALTY_"
INT_TYPES = ("int", "int | None")  # field annotations are strings (postponed evaluation)
SECRET_SHOWN_AS = "***"


@dataclass(frozen=True)
class Settings:
    bootstrap_servers: str | None = None     # None: start the embedded broker
    database_url: str | None = None          # None: start the embedded PostgreSQL
    program_file: str | None = None          # None: the default program
    events_topic: str = "loyalty.events"
    ledger_topic: str = "loyalty.ledger"
    tier_changes_topic: str = "loyalty.tier-changes"
    dead_letter_topic: str = "loyalty.dead-letter"
    credits_topic: str = "loyalty.referrer-credits"
    partitions: int = 8
    replication_factor: int = 1
    consumer_group: str = "loyalty-ledger"
    batch_events_max: int = 500
    batch_wait_ms: int = 50
    consumer_fetch_max_wait_ms: int = 25  # faust hard-codes 1,500 ms; see streams/faust_transport.py
    message_bytes_max: int = 64 * 1024      # larger messages and input lines are dead-lettered (too_large)
    ledger_attempts_max: int = 3
    ledger_retry_backoff_ms: int = 200
    topic_identity_check_interval_ms: int = 5000  # how often a worker checks its topics were not recreated
    kafka_connect_timeout_ms: int = 10_000   # longest wait to reach any bootstrap server (kafka-python clients)
    database_connect_timeout_s: int = 5      # longest wait for a pooled connection, per call
    database_retry_backoff_ms: int = 200     # first wait after the database could not be reached
    database_retry_backoff_ms_max: int = 5000  # the wait doubles up to this
    database_unavailable_s_max: int = 120    # unreachable longer: the worker exits non-zero
    outbox_batch_notifications_max: int = 1000
    outbox_poll_interval_ms: int = 100
    session_timeout_ms: int = 6000
    heartbeat_interval_ms: int = 1500
    account_cache_accounts_max: int = 50_000
    security_protocol: str | None = None     # None: PLAINTEXT; or SSL, SASL_PLAINTEXT, SASL_SSL
    sasl_mechanism: str | None = None        # PLAIN, SCRAM-SHA-256, SCRAM-SHA-512
    sasl_username: str | None = None
    sasl_password: str | None = None         # secret: never printed
    ssl_cafile: str | None = None            # PEM file of the CA that signed the brokers
    ssl_certfile: str | None = None          # client certificate (mutual TLS)
    ssl_keyfile: str | None = None           # client certificate's key
    metrics_port: int | None = None          # None: no /metrics and /healthz server

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides) -> "Settings":
        """Defaults, then ``LOYALTY_*`` variables, then non-None ``overrides``."""
        environ = os.environ if environ is None else environ
        values = {}
        for field in fields(cls):
            raw = environ.get(ENV_PREFIX + field.name.upper())
            if raw not in (None, ""):
                values[field.name] = int(raw) if field.type in INT_TYPES else raw
        values.update({key: value for key, value in overrides.items() if value is not None})
        return cls(**values)

    def with_services(self, bootstrap_servers: str, database_url: str) -> "Settings":
        return replace(self, bootstrap_servers=bootstrap_servers, database_url=database_url)

    def to_env(self) -> dict[str, str]:
        """The settings as ``LOYALTY_*`` variables, for child processes."""
        return {
            ENV_PREFIX + field.name.upper(): str(getattr(self, field.name))
            for field in fields(self)
            if getattr(self, field.name) is not None
        }

    def redacted(self) -> dict[str, str]:
        shown = {field.name: getattr(self, field.name) for field in fields(self)}
        if self.database_url:
            shown["database_url"] = re.sub(r"//([^:/@]+):[^@]*@", r"//\1:***@", self.database_url)
        if self.sasl_password is not None:
            shown["sasl_password"] = SECRET_SHOWN_AS
        return shown

    def __repr__(self) -> str:
        """The redacted settings, so a logged ``Settings`` never shows a secret."""
        shown = ", ".join(f"{name}={value!r}" for name, value in self.redacted().items())
        return f"Settings({shown})"

    def tracking_name(self, topic: str, partition: int) -> str:
        """The tracking record name of a Kafka partition in the event store."""
        return f"{topic}:{partition}"


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
