"""``python -m bench.stack_profile <python -m local arguments>``: the local stack, unchanged, with timers.

Wraps (in this process only, nothing in ``local/`` changes) the SQS poller's receive / handle / delete, every
Lambda invocation, every HTTP API request, every boto3 call (client side) and every request moto's server
answers (server side), and runs the sender's SQS poller thread under cProfile. When the stack stops, writes
JSON to ``$BENCH_STACK_PROFILE``: seconds and counts per activity, the process's CPU time against wall
time (the whole stack shares one interpreter, so one GIL), and the poller thread's profile.
"""

from __future__ import annotations

import cProfile
import json
import logging
import os
import sys
import threading
import time
from collections import defaultdict
from collections.abc import Callable
from typing import Any

TIMERS: dict[str, list[float]] = defaultdict(lambda: [0, 0.0])
_lock = threading.Lock()
_profiles: list[cProfile.Profile] = []


def _add(name: str, seconds: float) -> None:
    with _lock:
        entry = TIMERS[name]
        entry[0] += 1
        entry[1] += seconds


def _wrap(owner: Any, attribute: str, name: Callable[..., str]) -> None:
    original = getattr(owner, attribute)

    def timed(*args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        try:
            return original(*args, **kwargs)
        finally:
            _add(name(*args, **kwargs), time.perf_counter() - started)

    setattr(owner, attribute, timed)


def install() -> None:
    from botocore.client import BaseClient
    from moto.moto_server.werkzeug_app import DomainDispatcherApplication

    from local.gateway import HttpApiGateway
    from local.lambdas import LocalFunction
    from local.poller import SqsPoller

    _wrap(SqsPoller, "_receive", lambda self, client, queue: f"poller: ReceiveMessage {queue.url.rsplit('-', 1)[-1]}")
    _wrap(SqsPoller, "_handle", lambda *a, **k: "poller: batch (invoke + delete)")
    _wrap(SqsPoller, "_delete", lambda *a, **k: "poller: DeleteMessageBatch")
    _wrap(LocalFunction, "_call", lambda self, event: f"lambda: {self.name}")
    _wrap(HttpApiGateway, "handle", lambda self, method, target, *a, **k: f"gateway: {method} {target.split('?')[0]}")
    _wrap(BaseClient, "_make_api_call",
          lambda self, operation, params: f"boto3 (client wall): {self.meta.service_model.service_name}.{operation}")
    _wrap(DomainDispatcherApplication, "__call__",
          lambda self, environ, start: f"moto server: {environ.get('HTTP_X_AMZ_TARGET', environ.get('PATH_INFO'))}")

    original_run = SqsPoller._run

    def profiled_run(self: Any) -> None:
        if "Sender" not in self.function.name:
            original_run(self)
            return
        profiler = cProfile.Profile()
        started = time.perf_counter()
        profiler.enable()
        try:
            original_run(self)
        finally:
            profiler.disable()
            _add("sender poller: thread alive", time.perf_counter() - started)
            with _lock:
                _profiles.append(profiler)

    SqsPoller._run = profiled_run  # type: ignore[method-assign]


def write(path: str, wall: float, cpu: float) -> None:
    from bench.pipeline import profile_report

    report = ""
    if _profiles:  # one sender worker by default: its thread's profile
        report = profile_report(_profiles[0], TIMERS["sender poller: thread alive"][1], top=25)
    data = {"timers": {k: {"count": int(v[0]), "seconds": v[1]} for k, v in TIMERS.items()},
            "wall_seconds": wall, "cpu_seconds": cpu, "profile": report}
    with open(path, "w", encoding="utf-8") as handle:
        json.dump(data, handle)


def main() -> None:
    sys.path[:0] = [os.getcwd()]
    from bench import common  # noqa: F401  (puts the layer on sys.path)
    from local.stack import main as stack_main

    install()
    started, cpu_started = time.perf_counter(), time.process_time()
    code = stack_main(sys.argv[1:])
    wall, cpu = time.perf_counter() - started, time.process_time() - cpu_started
    out = os.environ.get("BENCH_STACK_PROFILE")
    if out:
        try:
            write(out, wall, cpu)
        except Exception as error:  # the stack's exit code matters more than the report
            print(f"bench.stack_profile: could not write {out}: {error!r}", file=sys.stderr, flush=True)
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)  # as local/__main__.py: handler code may leave non-daemon threads behind


if __name__ == "__main__":
    main()
