"""The latency baseline's follower: eventsourcing's ``ProjectionRunner`` for every read model.

``python -m bench.live_runners DATABASE_URL`` keeps all read models live with
the library's runner (``projections.runner.live_runner``: LISTEN/NOTIFY, one
transaction per fact) until SIGTERM or SIGINT, then stops the runners and
exits 0. It stands where ``loyalty replay --resume --follow`` (the batched
follower) stands in the measured run.
"""

from __future__ import annotations

import contextlib
import signal
import sys
import threading

from ledger.postgres.urls import eventsourcing_env_from_url
from projections.runner import READ_MODEL_NAMES, live_runner

RUNNING_LIMIT_S = 3_600  # a forgotten follower stops by itself


def main(argv: list[str]) -> int:
    env = eventsourcing_env_from_url(argv[0])
    stop = threading.Event()
    for number in (signal.SIGTERM, signal.SIGINT):
        signal.signal(number, lambda *_: stop.set())
    with contextlib.ExitStack() as runners:
        for name in READ_MODEL_NAMES:
            runners.enter_context(live_runner(env, name))
        print("following with eventsourcing's ProjectionRunner", file=sys.stderr, flush=True)
        stop.wait(RUNNING_LIMIT_S)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
