"""The worker's direct consumer path (``consumer_path`` ``direct``, ``streams/direct_consumer.py``).

- faust's own Kafka consumer (and conductor, leader assignor, producer) is
  not started on the direct path, so faust never joins the group; the
  ``faust`` path still builds the agent (the previous design), with faust's
  Monitor sensor attached unless ``faust_monitor`` is off;
- a batch is grouped by partition in offset order, and the offsets to commit
  are the ones after each partition's last message; a batch that fails is
  read again from its first offsets (nothing committed for it), and a
  consumer error crashes the worker instead of leaving it idle; offsets are
  committed in the background while the next batch is applied, one commit
  in flight and in order, the last one awaited before the crash (the
  previous design, ``consumer_commit_in_background`` off, awaits each);
- against the embedded broker and PostgreSQL: with a batch wait far longer
  than the test's own timeout, a lone event is applied all the same
  (``getmany`` returns what is there; the faust path's ``take_events`` would
  hold it for the whole wait); a stream applied while a second worker joins
  the group (a rebalance, seen in the group's members) is counted exactly once; the group's committed
  offsets end after the last message of every partition.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from unittest import mock

import pytest
from aiokafka import TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.structs import ConsumerRecord
from kafka import KafkaConsumer
from kafka import TopicPartition as KafkaTopicPartition

from streams.direct_consumer import DirectConsumer, batch_messages, new_consumer, next_offsets
from streams.process import wait_until_processed
from streams.producer import produce_lines
from streams.settings import Settings
from streams.topics import ensure_topics
from streams.worker import create_app, open_ledger
from tests.reliability.harness import Fleet, pipeline_settings
from tests.support.pipeline import assert_same_as_direct, progress, total_messages
from tests.support.streamgen import generate_events, with_faults

UNREACHABLE = dict(bootstrap_servers="localhost:1", database_url="postgresql://u:p@localhost:1/db")
PARTITIONS = 4
EVENTS = 4000
BATCH_WAIT_MS_NEVER = 600_000   # far beyond every timeout below: no batch may wait for it
LONE_EVENT_TIMEOUT_S = 120
PROCESSED_TIMEOUT_S = 240
JOIN_AT_FRACTION = 0.2
COMMIT_SETTLE_TIMEOUT_S = 30
GROUP_JOIN_TIMEOUT_S = 120
GROUP_MEMBERS_FIELD = -1  # DescribeGroups v0: (error, group, state, protocol type, protocol, members)


def built_app(path: str, **overrides):
    with mock.patch("streams.worker.open_ledger"):  # no database needed to build the app
        return create_app(Settings(consumer_path=path, **UNREACHABLE, **overrides))


def test_on_the_direct_path_faust_starts_no_kafka_client_of_its_own():
    app = built_app("direct")
    started = list(app.boot_strategy.server())
    for faust_part in (app.consumer, app.topics, app._leader_assignor, app.producer, app.tables):
        assert all(service is not faust_part for service in started), faust_part  # dicts: not ==
    assert not app.agents
    assert [issubclass(service, DirectConsumer) for service in app._extra_services] == [True]


def test_the_faust_path_is_the_agent_and_faust_consumer_of_before():
    app = built_app("faust")
    started = list(app.boot_strategy.server())
    assert any(service is app.consumer for service in started)
    assert any(service is app.topics for service in started)
    assert list(app.agents) and not app._extra_services


@pytest.mark.parametrize("monitor", [True, False])
def test_faust_monitor_attaches_fausts_monitor_sensor_or_not(monitor):
    app = built_app("faust", faust_monitor=monitor)
    list(app.on_init_dependencies())
    assert (app.monitor in list(app.sensors)) is monitor
    assert Settings.from_env({"LOYALTY_FAUST_MONITOR": "false"}).faust_monitor is False


def test_an_unknown_consumer_path_is_refused_naming_the_variable():
    with pytest.raises(ValueError, match="LOYALTY_CONSUMER_PATH"):
        built_app("fast")


def test_the_environment_chooses_the_path():
    assert Settings.from_env({}).consumer_path == "direct"
    assert Settings.from_env({"LOYALTY_CONSUMER_PATH": "faust"}).consumer_path == "faust"


def record(topic: str, partition: int, offset: int) -> ConsumerRecord:
    return ConsumerRecord(topic, partition, offset, 0, 0, b"k", f"{offset}".encode(), None, 1, 1, [])


def test_a_batch_is_grouped_by_partition_in_offset_order_and_commits_after_each_last():
    records = {TopicPartition("b", 0): [record("b", 0, 7), record("b", 0, 8)],
               TopicPartition("a", 1): [record("a", 1, 3)],
               TopicPartition("a", 0): [record("a", 0, 5), record("a", 0, 6)]}
    batch = batch_messages(records)
    assert [(m.topic, m.partition, m.offset) for m in batch] == [
        ("a", 0, 5), ("a", 0, 6), ("a", 1, 3), ("b", 0, 7), ("b", 0, 8)]
    assert next_offsets(batch) == {TopicPartition("a", 0): 7, TopicPartition("a", 1): 4,
                                   TopicPartition("b", 0): 9}


class FakeConsumer:
    """What ``DirectConsumer`` uses of ``AIOKafkaConsumer``: queued ``getmany`` results, then
    ``ending`` raised; seeks and commits recorded."""

    def __init__(self, polls: list[dict], ending: Exception) -> None:
        self.polls, self.ending = polls, ending
        self.seeks: list[tuple[TopicPartition, int]] = []
        self.commits: list[dict[TopicPartition, int]] = []

    async def getmany(self, timeout_ms: int, max_records: int) -> dict:
        if not self.polls:
            raise self.ending
        return self.polls.pop(0)

    def assignment(self) -> set[TopicPartition]:
        return {TopicPartition("a", 0), TopicPartition("a", 1)}

    def seek(self, tp: TopicPartition, offset: int) -> None:
        self.seeks.append((tp, offset))

    async def commit(self, offsets: dict[TopicPartition, int]) -> None:
        self.commits.append(offsets)

    def highwater(self, tp: TopicPartition) -> int:
        return 100


def test_a_failed_batch_is_read_again_from_its_start_and_a_consumer_error_crashes_the_worker():
    from aiokafka.errors import KafkaError

    polls = [{TopicPartition("a", 0): [record("a", 0, 5), record("a", 0, 6)],
              TopicPartition("a", 1): [record("a", 1, 3)]}] * 2
    applied: list[list[int]] = []

    async def apply(batch, highwater):
        applied.append([m.offset for m in batch])
        if len(applied) == 1:
            raise RuntimeError("an unexpected failure")

    async def evict() -> None:
        return None

    async def run() -> DirectConsumer:
        service = DirectConsumer(Settings(ledger_retry_backoff_ms=1), apply, evict)
        service.consumer = FakeConsumer(list(polls), KafkaError("gone for good"))
        await service._consume()
        return service

    service = asyncio.run(run())
    assert applied == [[5, 6, 3], [5, 6, 3]]
    assert sorted(service.consumer.seeks) == [(TopicPartition("a", 0), 5), (TopicPartition("a", 1), 3)]
    assert service.consumer.commits == [{TopicPartition("a", 0): 7, TopicPartition("a", 1): 4}]
    assert isinstance(service.crash_reason, KafkaError)


class SlowCommits(FakeConsumer):
    """A consumer whose offset commits take ``commit_s``; every start and end is logged."""

    def __init__(self, polls: list[dict], ending: Exception, log: list[str], commit_s: float) -> None:
        super().__init__(polls, ending)
        self.log, self.commit_s = log, commit_s

    async def commit(self, offsets: dict[TopicPartition, int]) -> None:
        self.log.append(f"commit {offsets[TopicPartition('a', 0)]} starts")
        await asyncio.sleep(self.commit_s)
        self.log.append(f"commit {offsets[TopicPartition('a', 0)]} ends")
        await super().commit(offsets)


def consumed_with_slow_commits(in_background: bool) -> tuple[list[str], list[dict]]:
    from aiokafka.errors import KafkaError

    polls = [{TopicPartition("a", 0): [record("a", 0, offset)]} for offset in (1, 2, 3)]
    log: list[str] = []

    async def apply(batch, highwater):
        log.append(f"apply {batch[0].offset}")
        await asyncio.sleep(0)

    async def evict() -> None:
        return None

    async def run() -> SlowCommits:
        service = DirectConsumer(Settings(consumer_commit_in_background=in_background), apply, evict)
        service.consumer = SlowCommits(polls, KafkaError("end of the test"), log, commit_s=0.05)
        await service._consume()
        return service.consumer

    consumer = asyncio.run(run())
    return log, consumer.commits


def test_offsets_are_committed_in_the_background_in_order_and_the_last_before_a_crash():
    log, commits = consumed_with_slow_commits(in_background=True)
    # (offsets committed are the next to read: batch 1's are "2") batch 2 is applied while
    # batch 1's commit is in flight; one commit in flight at a time, in order
    assert log.index("apply 2") < log.index("commit 2 ends")
    assert log.index("apply 3") < log.index("commit 3 ends")
    assert log.index("commit 2 ends") < log.index("commit 3 starts")
    assert log.index("commit 3 ends") < log.index("commit 4 starts")
    assert [c[TopicPartition("a", 0)] for c in commits] == [2, 3, 4]  # all, in order, none lost


def test_the_previous_design_awaits_each_commit_before_fetching_again():
    log, commits = consumed_with_slow_commits(in_background=False)
    assert log == ["apply 1", "commit 2 starts", "commit 2 ends", "apply 2", "commit 3 starts",
                   "commit 3 ends", "apply 3", "commit 4 starts", "commit 4 ends"]
    assert [c[TopicPartition("a", 0)] for c in commits] == [2, 3, 4]
    assert Settings.from_env({"LOYALTY_CONSUMER_COMMIT_IN_BACKGROUND": "false"}).consumer_commit_in_background is False


def committed_offsets(settings: Settings, partitions: list[int]) -> dict[int, int | None]:
    consumer = KafkaConsumer(bootstrap_servers=settings.bootstrap_servers, group_id=settings.consumer_group,
                             enable_auto_commit=False)
    try:
        return {p: consumer.committed(KafkaTopicPartition(settings.events_topic, p)) for p in partitions}
    finally:
        consumer.close()


def committed_once_done(settings: Settings, produced: dict[int, int]) -> dict[int, int | None]:
    """The committed offsets, read again for a while: a batch's offsets are committed just
    after its transaction, so the last commit may trail the tracking rows a little."""
    wanted = {p: last + 1 for p, last in produced.items()}
    deadline = time.monotonic() + COMMIT_SETTLE_TIMEOUT_S
    while (committed := committed_offsets(settings, list(produced))) != wanted and time.monotonic() < deadline:
        time.sleep(0.2)
    return committed


def lines_produced(settings: Settings, lines: list[str]) -> dict[int, int]:
    return produce_lines(settings.bootstrap_servers, settings.events_topic, [line.encode() for line in lines])


def produce_all(settings: Settings, parts: list[dict[int, int]]) -> dict[int, int]:
    """The last offset of every partition over several ``produce_lines`` results."""
    return {p: max(part.get(p, -1) for part in parts) for p in range(settings.partitions)
            if any(p in part for part in parts)}


async def group_members(settings: Settings) -> int:
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.bootstrap_servers)
    await admin.start()
    try:
        described = await admin.describe_consumer_groups([settings.consumer_group])
        return sum(len(group[GROUP_MEMBERS_FIELD]) for response in described for group in response.groups)
    finally:
        await admin.close()


def wait_for_members(settings: Settings, members: int, fleet: Fleet) -> None:
    """Until the consumer group has ``members`` members (the joining worker is in)."""
    deadline = time.monotonic() + GROUP_JOIN_TIMEOUT_S
    while asyncio.run(group_members(settings)) < members:
        assert time.monotonic() < deadline, fleet.logs()
        time.sleep(0.2)


def wait_for_messages(ledger, settings, produced, messages_min: int, fleet: Fleet, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while progress(ledger, settings, produced) < messages_min:
        assert time.monotonic() < deadline, fleet.logs()
        assert all(w.process.poll() is None for w in fleet.workers), fleet.logs()
        time.sleep(0.05)


def test_direct_path_applies_a_lone_event_commits_offsets_and_survives_a_worker_joining(
        kafka_bootstrap, embedded_pg, tmp_path):
    database = embedded_pg.create_database(f"direct_{uuid.uuid4().hex[:8]}")
    settings = pipeline_settings(kafka_bootstrap, database.url, "direct", PARTITIONS,
                                 consumer_path="direct", batch_wait_ms=BATCH_WAIT_MS_NEVER)
    events = generate_events(seed=23, count=EVENTS)
    lines, _ = with_faults(events, seed=23, bad_every=500)
    ensure_topics(settings)
    ledger = open_ledger(settings)
    fleet = Fleet(settings, tmp_path)
    try:
        fleet.start_worker(relay=True)
        lone = produce_lines(settings.bootstrap_servers, settings.events_topic, [lines[0].encode()])
        wait_for_messages(ledger, settings, lone, 1, fleet, LONE_EVENT_TIMEOUT_S)  # << the batch wait
        third = len(lines) // 3
        produced = produce_all(settings, [lone, *(lines_produced(settings, part) for part in (
            lines[1:third], lines[third:2 * third]))])
        wait_for_messages(ledger, settings, produced, int(total_messages(produced) * JOIN_AT_FRACTION),
                          fleet, PROCESSED_TIMEOUT_S)
        fleet.start_worker(relay=False)  # the group rebalances while the first worker applies
        wait_for_members(settings, 2, fleet)
        produced = produce_all(settings, [produced, lines_produced(settings, lines[2 * third:])])
        wait_until_processed(ledger, settings, produced, fleet.workers, PROCESSED_TIMEOUT_S)
        assert committed_once_done(settings, produced) == {p: last + 1 for p, last in produced.items()}
    finally:
        fleet.close()
    assert [w.process.returncode for w in fleet.workers] == [0, 0], fleet.logs()
    assert_same_as_direct(ledger, events)
    ledger.close()


def test_the_consumer_gets_the_group_fetch_wait_batch_size_and_kafka_security():
    settings = Settings(bootstrap_servers="localhost:1", consumer_group="g", consumer_fetch_max_wait_ms=33,
                        batch_events_max=77, security_protocol="SASL_PLAINTEXT", sasl_mechanism="PLAIN",
                        sasl_username="user", sasl_password="secret")

    async def built() -> dict:
        consumer = new_consumer(settings)
        return dict(group=consumer._group_id, fetch_wait_ms=consumer._fetch_max_wait_ms,
                    records_max=consumer._max_poll_records, commits_itself=consumer._enable_auto_commit,
                    protocol=consumer._client._security_protocol, mechanism=consumer._client._sasl_mechanism,
                    reset=consumer._auto_offset_reset)

    assert asyncio.run(built()) == dict(group="g", fetch_wait_ms=33, records_max=77, commits_itself=False,
                                        protocol="SASL_PLAINTEXT", mechanism="PLAIN", reset="earliest")


@pytest.mark.parametrize("stopping", [True, False], ids=["while stopping", "not stopping"])
def test_a_consumer_stopped_under_a_stopping_worker_is_no_crash(stopping):
    """At shutdown the consumer can be stopped while the loop is between batches (seen on
    Apache Kafka): with the service stopping, ``ConsumerStoppedError`` ends the loop quietly;
    at any other time it crashes the worker as every consumer error does."""
    from aiokafka.errors import ConsumerStoppedError

    async def apply(batch, highwater):
        return None

    async def evict() -> None:
        return None

    async def run() -> DirectConsumer:
        service = DirectConsumer(Settings(), apply, evict)
        service.consumer = FakeConsumer([], ConsumerStoppedError())
        if stopping:
            service._stopped.set()
        await service._consume()
        return service

    service = asyncio.run(run())
    assert (service.crash_reason is None) is stopping


def test_a_worker_stopped_while_its_consumer_joins_the_group_starts_no_loop(monkeypatch):
    """The root of the shutdown race above: ``consumer.start()`` (the group join, seconds on
    either broker) can return after ``on_stop`` ran, found no loop to cancel and stopped the
    consumer; the loop must not start then (it would call ``getmany`` on a stopped consumer)."""
    import streams.direct_consumer as direct

    async def apply(batch, highwater):
        return None

    async def evict() -> None:
        return None

    class JoiningConsumer(FakeConsumer):
        def __init__(self, service: DirectConsumer) -> None:
            super().__init__([], AssertionError("getmany on a stopped consumer"))
            self.service = service

        def subscribe(self, topics, listener) -> None:
            self.topics = topics

        async def start(self) -> None:
            self.service._stopped.set()  # the stop arrives while the group join is under way
            await self.service.on_stop()

        async def stop(self) -> None:
            self.stopped = True

    async def run() -> DirectConsumer:
        service = DirectConsumer(Settings(), apply, evict)
        monkeypatch.setattr(direct, "new_consumer", lambda settings: JoiningConsumer(service))
        await service.on_start()
        await asyncio.sleep(0)  # a loop started now would run (and fail) here
        return service

    service = asyncio.run(run())
    assert service._consuming is None and service.consumer.stopped
    assert service.crash_reason is None
