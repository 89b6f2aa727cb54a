"""faust's aiokafka transport with the consumer's fetch wait as a setting.

faust-streaming 0.15 builds its worker consumer with ``fetch_max_wait_ms=1500``
hard-coded. A fetch returns early once data is there on Apache Kafka, but
the embedded broker (tansu) often holds it for most of the wait: measured
on the benchmark machine, a produce-to-consume hop took p50 394 ms with the
1,500 ms wait and p50 5 ms, p99 53 ms with 100 ms (``bench/latency.py``
measures it in every run). ``consumer_fetch_max_wait_ms`` (default
``CONSUMER_FETCH_MAX_WAIT_MS_DEFAULT``) bounds that wait; on a real cluster a
shorter wait only costs a few more empty fetch round trips when idle.

The consumer is created but not started when ``_create_worker_consumer``
returns, and aiokafka builds its fetcher from ``_fetch_max_wait_ms`` in
``start()``: setting it there is the one narrow hook faust leaves. The
consumer's thread is given its kernel name (``streams.thread_names``).

faust attaches its ``Monitor`` sensor to every app: per message and per
stream event it takes timestamps and updates counters and deques that only
faust's web views read (the worker runs without them). ``faust_monitor``
(``LOYALTY_FAUST_MONITOR``) off detaches it on the faust consumer path
(``docs/BENCHMARKS.md``, "Issue 21: the direct consumer path").
"""

from __future__ import annotations

from typing import Any

import aiokafka
import faust
from faust.transport.drivers import aiokafka as faust_aiokafka

from streams.thread_names import CONSUMER_THREAD, name_os_thread

CONSUMER_FETCH_MAX_WAIT_MS_DEFAULT = 25


class _ConsumerThread(faust_aiokafka.AIOKafkaConsumerThread):
    def _create_worker_consumer(self, transport: Any) -> aiokafka.AIOKafkaConsumer:
        consumer = super()._create_worker_consumer(transport)
        consumer._fetch_max_wait_ms = self.app.fetch_max_wait_ms
        return consumer

    async def on_thread_started(self) -> None:
        name_os_thread(CONSUMER_THREAD)  # runs in the consumer's own thread (bench/cpu_parts.py)
        await super().on_thread_started()


class _Consumer(faust_aiokafka.Consumer):
    def _new_consumer_thread(self) -> faust_aiokafka.AIOKafkaConsumerThread:
        return _ConsumerThread(self, loop=self.loop, beacon=self.beacon)


class _Transport(faust_aiokafka.Transport):
    Consumer = _Consumer


class LedgerApp(faust.App):
    """A faust app whose worker consumer waits at most ``fetch_max_wait_ms`` per fetch;
    without ``monitor`` faust's Monitor sensor is not attached (see the module notes)."""

    def __init__(self, *args: Any, fetch_max_wait_ms: int = CONSUMER_FETCH_MAX_WAIT_MS_DEFAULT,
                 monitor: bool = True, **kwargs: Any) -> None:
        assert fetch_max_wait_ms > 0, fetch_max_wait_ms
        self.fetch_max_wait_ms = fetch_max_wait_ms
        self.monitor_enabled = monitor
        super().__init__(*args, **kwargs)

    def on_init_dependencies(self) -> Any:
        services = super().on_init_dependencies()  # attaches the Monitor to the sensors
        if not self.monitor_enabled:
            self.sensors.remove(self.monitor)
        return services

    def _new_transport(self) -> faust_aiokafka.Transport:
        return _Transport(self.conf.broker_consumer, self)
