"""One configuration surface for the stream processes.

Every setting has an environment variable (``LOYALTY_...``) and a default;
CLI flags override the environment. Limits carry their unit in their name.
Secrets (the database URL's password, ``sasl_password``) are never printed:
``redacted()`` and ``repr()`` hide them. Kafka security settings are turned
into client options by ``streams/kafka_security.py``.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, fields, replace
from typing import Mapping

ENV_PREFIX = "LOYALTY_"
INT_TYPES = ("int", "int | None")  # field annotations are strings (postponed evaluation)
BOOL_TYPES = ("bool",)
BOOL_WORDS = {"1": True, "true": True, "yes": True, "on": True,
              "0": False, "false": False, "no": False, "off": False}
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
    ledger_attempts_max: int = 3
    ledger_retry_backoff_ms: int = 200
    database_connect_timeout_s: int = 5      # longest wait for a pooled connection, per call
    database_retry_backoff_ms: int = 200     # first wait after the database could not be reached
    database_retry_backoff_ms_max: int = 5000  # the wait doubles up to this
    database_unavailable_s_max: int = 120    # unreachable longer: the worker exits non-zero
    outbox_batch_notifications_max: int = 1000
    outbox_poll_interval_ms: int = 100
    producer_idempotent: bool = False        # the relay's producer: on for Apache Kafka (README), not tansu
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
                values[field.name] = _parsed(field.name, field.type, raw)
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


def _parsed(name: str, annotation: str, raw: str) -> int | bool | str:
    """An environment variable's text as the field's type; a bad boolean names its variable."""
    if annotation in INT_TYPES:
        return int(raw)
    if annotation in BOOL_TYPES:
        if raw.strip().lower() not in BOOL_WORDS:
            raise ValueError(f"{ENV_PREFIX}{name.upper()}={raw!r}: expected one of {', '.join(BOOL_WORDS)}")
        return BOOL_WORDS[raw.strip().lower()]
    return raw
