"""``python -m bench.console``: how fast the operator console's pages answer on the demo's data.

Starts an embedded broker and PostgreSQL (or uses ``LOYALTY_BOOTSTRAP_SERVERS``
/ ``LOYALTY_DATABASE_URL``), streams the demo's simulated chain into them
(1,000 members, 365 days, its bad lines included, so there are dead letters;
``--quick``: 60 members, 60 days), lets two workers apply it, catches the
read models up, starts ``loyalty api`` and signs in with a key of every scope.
Then it asks each page ``--requests`` times one after another (after one
unmeasured warm-up) and reports, per page, the median, p95 and slowest
answer in ms next to the issue's target (300 ms), printed and written as
JSON (``--out``, default ``bench/results/console-<UTC time>.json``).
Nothing is asserted: the smoke test only checks that every page answered.
"""

from __future__ import annotations

import argparse
import math
import re
import statistics
import sys
import tempfile
import time
from collections import Counter
from datetime import datetime, timezone
from pathlib import Path

import httpx
import orjson

from bench.load import preload
from projections.runner import catch_up, open_read_models
from streams.devkit.services import running_services
from streams.devkit.simulator import SimulationConfig, simulate
from streams.devkit.till_api import TillApi
from streams.process import is_processed, start_workers, stop_workers
from streams.settings import Settings
from streams.topics import ensure_topics
from streams.worker import open_ledger

REPO_ROOT = Path(__file__).resolve().parents[1]
RESULTS_DIR = REPO_ROOT / "bench" / "results"
PAGE_TARGET_MS = 300
DEMO = SimulationConfig(seed=42, members=1_000, stores=20, days=365)
QUICK = SimulationConfig(seed=42, members=60, stores=5, days=60)
WORKERS = 2
PROCESSED_TIMEOUT_S = 900
PROCESSED_POLL_INTERVAL_S = 0.5
CATCH_UP_BATCH_NOTIFICATIONS_MAX = 2_000
HTTP_TIMEOUT_S = 60
REQUESTS_DEFAULT = 20
QUICK_REQUESTS = 3
PERCENTILE_95 = 95
CSRF_FIELD = re.compile(r'name="csrf" value="([^"]+)"')
DEAD_LETTER_LINK = re.compile(r'href="/console/dead-letters/([0-9a-f-]{36})"')


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    config = QUICK if args.quick else DEMO
    requests = args.requests or (QUICK_REQUESTS if args.quick else REQUESTS_DEFAULT)
    with tempfile.TemporaryDirectory(prefix="bench-console-") as scratch, \
            running_services(Settings.from_env()) as settings:
        logs = Path(scratch)
        data = _load(settings, config, logs)
        api = TillApi.start(settings, logs / "api.log")
        try:
            timings = _measure(api, data, requests)
        finally:
            api.stop()
    result = {"measured_at": datetime.now(timezone.utc).isoformat(), "members": config.members,
              "days": config.days, "requests_per_page": requests, "target_ms": PAGE_TARGET_MS,
              **data, "pages": timings}
    out = args.out or RESULTS_DIR / f"console-{datetime.now(timezone.utc):%Y%m%dT%H%M%SZ}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(orjson.dumps(result, option=orjson.OPT_INDENT_2))
    _print(result)
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench.console", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a smoke size (60 members, 60 days, 3 requests)")
    parser.add_argument("--requests", type=int, help=f"requests per page (default {REQUESTS_DEFAULT})")
    parser.add_argument("--out", type=Path, help="the JSON file to write")
    return parser


def _load(settings: Settings, config: SimulationConfig, logs: Path) -> dict:
    """The demo's stream applied by workers and the read models caught up; what the pages will ask."""
    ensure_topics(settings)
    lines = list(simulate(config))
    ledger = open_ledger(settings)
    workers = start_workers(settings, WORKERS, logs)
    try:
        produced = preload(settings.bootstrap_servers, settings.events_topic, lines)
        _wait_processed(ledger, settings, produced)
    finally:
        stop_workers(workers)
    with open_read_models(settings.store_env(), None, ledger.program) as models:
        catch_up(ledger, models, batch_notifications_max=CATCH_UP_BATCH_NOTIFICATIONS_MAX)
    facts = ledger.fact_log.head()
    ledger.close()
    return {"lines": len(lines), "facts": facts, "member": _busiest_member(lines)}


def _wait_processed(ledger, settings: Settings, produced: dict[int, int]) -> None:
    deadline = time.monotonic() + PROCESSED_TIMEOUT_S
    while not is_processed(ledger, settings, produced):
        if time.monotonic() > deadline:
            raise RuntimeError(f"the stream was not applied within {PROCESSED_TIMEOUT_S} s")
        time.sleep(PROCESSED_POLL_INTERVAL_S)


def _busiest_member(lines: list[bytes]) -> str:
    counts: Counter[str] = Counter()
    for line in lines:
        try:
            event = orjson.loads(line)
        except orjson.JSONDecodeError:
            continue
        if isinstance(event, dict) and isinstance(event.get("member_id"), str):
            counts[event["member_id"]] += 1
    return counts.most_common(1)[0][0]


def _measure(api: TillApi, data: dict, requests: int) -> dict[str, dict]:
    with httpx.Client(base_url=api.url, timeout=HTTP_TIMEOUT_S) as client:
        form = client.get("/console/sign-in")
        signed = client.post("/console/sign-in", data={"csrf": CSRF_FIELD.search(form.text).group(1),
                                                       "api_key": api.key})
        if signed.status_code != 303:
            raise RuntimeError(f"sign-in failed: {signed.status_code}")
        first_index_ms = _timed(client, "/console/dead-letters")[0]
        letter = DEAD_LETTER_LINK.search(client.get("/console/dead-letters").text)
        pages = _pages(data["member"], letter.group(1) if letter else None)
        timings = {name: _page_figures(client, path, requests) for name, path in pages.items()}
    timings["dead_letters_first_index"] = {"path": "/console/dead-letters", "status": 200,
                                           "median_ms": first_index_ms, "p95_ms": first_index_ms,
                                           "max_ms": first_index_ms}
    return timings


def _pages(member: str, dead_letter: str | None) -> dict[str, str]:
    pages = {
        "overview": "/console/overview",
        "member": f"/console/members?member_id={member}",
        "member_as_of": f"/console/members?member_id={member}&as_of=2025-06-30",
        "dead_letters": "/console/dead-letters",
        "campaigns": "/console/campaigns",
        "adjust_form": f"/console/adjust?member_id={member}",
    }
    if dead_letter is not None:
        pages["dead_letter"] = f"/console/dead-letters/{dead_letter}"
    return pages


def _timed(client: httpx.Client, path: str) -> tuple[float, int]:
    started = time.perf_counter()
    answer = client.get(path)
    return (time.perf_counter() - started) * 1000, answer.status_code


def _page_figures(client: httpx.Client, path: str, requests: int) -> dict:
    _timed(client, path)  # warm-up: first connections, a read model's first open
    runs = [_timed(client, path) for _ in range(requests)]
    times = sorted(ms for ms, _ in runs)
    statuses = {status for _, status in runs}
    return {"path": path, "status": statuses.pop() if len(statuses) == 1 else sorted(statuses),
            "median_ms": round(statistics.median(times), 1),
            "p95_ms": round(times[math.ceil(len(times) * PERCENTILE_95 / 100) - 1], 1),  # nearest rank
            "max_ms": round(times[-1], 1)}


def _print(result: dict) -> None:
    print(f"console pages on {result['members']:,} members, {result['days']} days "
          f"({result['lines']:,} lines, {result['facts']:,} facts), {result['requests_per_page']} requests each")
    print(f"{'page':<28}{'status':>8}{'median ms':>12}{'p95 ms':>10}{'max ms':>10}  target {PAGE_TARGET_MS} ms")
    for name, figures in result["pages"].items():
        print(f"{name:<28}{str(figures['status']):>8}{figures['median_ms']:>12.1f}{figures['p95_ms']:>10.1f}"
              f"{figures['max_ms']:>10.1f}")


if __name__ == "__main__":
    sys.exit(main())
