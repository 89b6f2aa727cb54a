"""The console's overview figures: KPIs, throughput, lags, dead letters today, the API's replies.

- KPI rows: ``projections.kpi_report`` over the ``kpis`` read model (the
  year rows and the points liability by expiry month); ``kpi_chart_images``
  draws the KPI charts with ``projections/kpi_charts.py`` (written on the
  KPI branch) once it is there, and gives none until then.
- Events applied and events/s: the ledger's tracking positions of the
  events topic, the rate between two overview reads of this process.
- Consumer lag: the events topic's end offsets (a Kafka client of the API
  process, at most ``OFFSETS_TIMEOUT_MS``) less the tracked offsets; None
  when the broker did not answer in time.
- Read-model lag: the log's head less each read model's tracking position.
- API replies and timeouts: this process's own ``ApiMetrics``.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import time
from datetime import datetime, timezone
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaError

from ledger.application import LoyaltyLedger
from projections import kpi_charts
from projections.kpi_report import kpi_report, monthly_rows
from projections.runner import ReadModels
from streams.api.metrics import ApiMetrics
from streams.kafka_security import aiokafka_options
from streams.settings import Settings

OFFSETS_TIMEOUT_MS = 2000
EVENTS_ROUTE = "/v1/events"


@dataclass
class Overview:
    year_rows: list[dict] = field(default_factory=list)
    liability_rows: list[dict] = field(default_factory=list)
    kpi_charts: list["ChartImage"] = field(default_factory=list)
    applied_events: int = 0
    events_per_s: int | None = None
    consumer_lag: int | None = None
    read_model_lag: dict[str, int] = field(default_factory=dict)
    dead_letters_today: int = 0
    event_replies: int = 0
    event_replies_timed_out: int = 0
    requests_by_status: dict[str, int] = field(default_factory=dict)


async def overview_of(parts, console, models: ReadModels) -> Overview:
    """Every figure of the overview page; blocking reads on the API's read threads."""
    figures = await parts.reads.run(ledger_figures, parts.reads.ledger, models, parts.settings.events_topic)
    rows = figures["kpi_rows"]
    shown = Overview(read_model_lag=figures["read_model_lag"],
                     year_rows=[row for row in rows if row["kind"] == "year"],
                     liability_rows=[row for row in rows if row["kind"] == "liability"],
                     kpi_charts=await parts.reads.run(kpi_chart_images, monthly_rows(rows)))
    shown.applied_events = sum(offset + 1 for offset in figures["tracked_offsets"].values())
    shown.events_per_s = console.throughput.rate(shown.applied_events)
    shown.consumer_lag = await console.end_offsets.lag(figures["tracked_offsets"])
    await parts.reads.run(console.dead_letters.catch_up)
    shown.dead_letters_today = await parts.reads.run(console.dead_letters.count_since, start_of_today())
    api_figures(parts.metrics, shown)
    return shown


def start_of_today() -> datetime:
    """Midnight UTC of today: "dead letters today" counts from it (wall clock: an operator's day)."""
    return datetime.now(timezone.utc).replace(hour=0, minute=0, second=0, microsecond=0)


def kpi_chart_images(rows: list[dict[str, Any]]) -> list[ChartImage]:
    """The KPI charts of ``loyalty kpis --chart`` (``projections.kpi_charts``) as SVG images.

    Each is an ``<img>`` of a ``data:`` URI, not inline SVG: an image runs no script and
    keeps its own styles under the console's Content Security Policy. Drawing is CPU work
    for a read thread; the last rows' charts are kept (``_CHART_CACHE``), as KPIs move slowly.
    """
    digest = hashlib.sha256(orjson.dumps(rows, default=str)).hexdigest()
    if _CHART_CACHE.get("digest") != digest:
        images = [ChartImage(chart.title, _svg_uri(kpi_charts.render_chart(name, rows, "svg")))
                  for name, chart in kpi_charts.CHARTS.items()]
        _CHART_CACHE.update(digest=digest, images=images)
    return _CHART_CACHE["images"]


@dataclass(frozen=True)
class ChartImage:
    title: str
    uri: str


_CHART_CACHE: dict[str, Any] = {}


def _svg_uri(svg: bytes) -> str:
    return "data:image/svg+xml;base64," + base64.b64encode(svg).decode("ascii")


def ledger_figures(ledger: LoyaltyLedger, models: ReadModels, events_topic: str) -> dict[str, Any]:
    """Blocking: tracked offsets of the events topic and each read model's lag behind the log."""
    tracked = ledger.all_tracked_positions()
    prefix = f"{events_topic}:"
    offsets = {int(name[len(prefix):]): offset for name, offset in tracked.items() if name.startswith(prefix)}
    head = ledger.fact_log.head()
    lag = {name: max(head - position, 0) for name, position in models.positions().items()}
    rows = kpi_report(models.view("kpis"), ledger.program)
    return {"tracked_offsets": offsets, "read_model_lag": lag, "kpi_rows": rows}


def api_figures(metrics: ApiMetrics, overview: Overview) -> None:
    registry = metrics.registry
    overview.event_replies = int(registry.get_sample_value("loyalty_api_reply_latency_seconds_count") or 0)
    overview.event_replies_timed_out = int(registry.get_sample_value(
        "loyalty_api_replies_timed_out_total") or 0)
    for family in registry.collect():
        for sample in family.samples:
            if sample.name == "loyalty_api_requests_total" and sample.labels["route"] == EVENTS_ROUTE:
                status = sample.labels["status"]
                overview.requests_by_status[status] = (overview.requests_by_status.get(status, 0)
                                                       + int(sample.value))


class Throughput:
    """Events applied per second between two reads of this process (None at the first)."""

    def __init__(self) -> None:
        self._last: tuple[float, int] | None = None

    def rate(self, applied: int) -> int | None:
        now = time.monotonic()
        previous, self._last = self._last, (now, applied)
        if previous is None or now <= previous[0]:
            return None
        return max(int((applied - previous[1]) / (now - previous[0])), 0)


class EndOffsets:
    """The events topic's end offsets, from a consumer without a group started at first use."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._consumer: AIOKafkaConsumer | None = None

    async def lag(self, tracked: dict[int, int]) -> int | None:
        try:
            ends = await asyncio.wait_for(self._end_offsets(), OFFSETS_TIMEOUT_MS / 1000)
        except (KafkaError, asyncio.TimeoutError, OSError):
            return None
        return sum(max(end - (tracked.get(partition, -1) + 1), 0) for partition, end in ends.items())

    async def _end_offsets(self) -> dict[int, int]:
        consumer = await self._started()
        topic = self.settings.events_topic
        partitions = consumer.partitions_for_topic(topic)
        if not partitions:
            await consumer.topics()  # fetches the cluster's metadata, the events topic's included
            partitions = consumer.partitions_for_topic(topic) or set()
        ends = await consumer.end_offsets([TopicPartition(topic, p) for p in partitions])
        return {tp.partition: offset for tp, offset in ends.items()}

    async def _started(self) -> AIOKafkaConsumer:
        if self._consumer is None:
            consumer = AIOKafkaConsumer(bootstrap_servers=self.settings.bootstrap_servers,
                                        enable_auto_commit=False, **aiokafka_options(self.settings))
            try:
                await consumer.start()
            except BaseException:  # unreachable, or the overview's timeout: nothing left open
                await consumer.stop()
                raise
            self._consumer = consumer
        return self._consumer

    async def close(self) -> None:
        if self._consumer is not None:
            await self._consumer.stop()
