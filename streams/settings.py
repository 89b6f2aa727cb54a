"""The stream processes' configuration: ``LedgerSettings`` plus the Kafka settings.

``Settings`` extends ``ledger.settings.LedgerSettings`` (database URL,
program file, metrics port, database limits, caches, follower limits) with
the broker, topics, consumer group, batch limits and Kafka security. Every
setting has an environment variable (``LOYALTY_...``) and a default; CLI
flags override the environment. Limits carry their unit in their name.
Secrets (the database URL's password, ``sasl_password``) are never printed:
``redacted()`` and ``repr()`` hide them. Kafka security settings are turned
into client options by ``streams/kafka_security.py``.

A local stack started by ``loyalty up`` writes its connection variables to
``DIR/env``; ``with_stack_env`` puts them under the environment, so commands
run from the same directory find it (``stack_env_file`` says where it looks).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import ClassVar

from ledger.settings import ENV_PREFIX, LedgerSettings

__all__ = ["CONSUMER_PATHS", "ENV_PREFIX", "Settings"]

CONSUMER_PATH_DIRECT = "direct"  # the worker's own aiokafka consumer (streams/direct_consumer.py)
CONSUMER_PATH_FAUST = "faust"    # the previous design: a faust agent with take_events
CONSUMER_PATHS = (CONSUMER_PATH_DIRECT, CONSUMER_PATH_FAUST)


@dataclass(frozen=True, repr=False)
class Settings(LedgerSettings):
    bootstrap_servers: str | None = None     # None: start the embedded broker
    events_topic: str = "loyalty.events"
    ledger_topic: str = "loyalty.ledger"
    tier_changes_topic: str = "loyalty.tier-changes"
    dead_letter_topic: str = "loyalty.dead-letter"
    credits_topic: str = "loyalty.referrer-credits"
    notifications_topic: str = "loyalty.notifications"  # points_expiring notices (section 13)
    partitions: int = 8
    replication_factor: int = 1
    consumer_group: str = "loyalty-ledger"
    batch_events_max: int = 500
    batch_wait_ms: int = 50
    consumer_path: str = CONSUMER_PATH_DIRECT  # or "faust": the previous design (streams/worker.py)
    faust_monitor: bool = True               # faust's per-event Monitor sensor, faust path (faust_transport.py)
    consumer_fetch_max_wait_ms: int = 25  # faust hard-codes 1,500 ms; see streams/faust_transport.py
    consumer_commit_in_background: bool = True  # direct path: a batch's offsets committed while the
                                             # next is applied (False: awaited first; previous design)
    message_bytes_max: int = 64 * 1024      # larger messages and input lines are dead-lettered (too_large)
    ledger_attempts_max: int = 3
    ledger_retry_backoff_ms: int = 200
    topic_identity_check_interval_ms: int = 5000  # how often a worker checks its topics were not recreated
    kafka_connect_timeout_ms: int = 10_000   # longest wait to reach any bootstrap server (kafka-python clients)
    outbox_batch_notifications_max: int = 1000
    outbox_poll_interval_ms: int = 100
    producer_idempotent: bool = False        # the relay's producer: on for Apache Kafka (README), not tansu
    relay_encodes_stored: bool = True        # the relay publishes most facts from their stored JSON
                                             # (ledger/stored_wire.py); False: decodes every fact first
    relay_in_worker: bool = False            # process/up/demo/bench: the relay in worker-0's thread (the
                                             # previous design), not as its own `loyalty relay` process
    session_timeout_ms: int = 6000
    heartbeat_interval_ms: int = 1500
    security_protocol: str | None = None     # None: PLAINTEXT; or SSL, SASL_PLAINTEXT, SASL_SSL
    sasl_mechanism: str | None = None        # PLAIN, SCRAM-SHA-256, SCRAM-SHA-512
    sasl_username: str | None = None
    sasl_password: str | None = None         # secret: never printed
    ssl_cafile: str | None = None            # PEM file of the CA that signed the brokers
    ssl_certfile: str | None = None          # client certificate (mutual TLS)
    ssl_keyfile: str | None = None           # client certificate's key
    api_host: str = "127.0.0.1"              # the till API's bind address (loyalty api)
    api_port: int = 8080
    reply_timeout_ms: int = 2000             # POST /v1/events waits this long for the outcome, then 202
    reply_poll_interval_ms: int = 200        # a waiting request re-reads on its member's commit, at least this often
    reply_read_before_wakeup: bool = False   # the previous design: a write re-reads at once after producing
    api_read_threads: int = 4                # threads running the ledger's (blocking) reads
    api_account_cache_accounts_max: int = 10_000  # accounts the API keeps and catches up on each read
    api_rate_requests_per_s: int = 100       # per key, sustained
    api_rate_burst_requests: int = 200       # per key, at once
    api_key_cache_ttl_ms: int = 1000         # a revoked key is refused at most this long after

    secret_fields: ClassVar[tuple[str, ...]] = ("sasl_password",)

    def consumer_path_mistake(self) -> str | None:
        """One line saying what is wrong with ``consumer_path``; None when it is valid."""
        if self.consumer_path in CONSUMER_PATHS:
            return None
        return (f"{ENV_PREFIX}CONSUMER_PATH must be one of {', '.join(CONSUMER_PATHS)}, "
                f"not {self.consumer_path!r}")

    def with_services(self, bootstrap_servers: str, database_url: str) -> "Settings":
        return replace(self, bootstrap_servers=bootstrap_servers, database_url=database_url)

    def tracking_name(self, topic: str, partition: int) -> str:
        """The tracking record name of a Kafka partition in the event store."""
        return f"{topic}:{partition}"
