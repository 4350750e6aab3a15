"""The real submit → queue → deliver path, in this process: moto (``mock_aws``) with the resources of
template.yaml, the api and authorizer handlers behind the HTTP API emulation, the sender handler fed SQS
batches by the local poller exactly as the event source mapping would (10 records a batch, partial
failures, deletes), delivering into an SMTP sink in another process.

Every handler invocation is timed (the Lambda duration) and every AWS call is counted (``aws_usage``).
"""

from __future__ import annotations

import contextlib
import cProfile
import gc
import json
import os
import time
from collections import defaultdict
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

from bench.aws_usage import AwsUsage
from bench.common import ACCOUNT_ID, FUNCTIONS_DIR, TENANT_ID, CountingStream, bench_message
from local.gateway import HttpApiGateway
from local.lambdas import LocalFunction, import_source
from local.poller import PolledQueue, SqsPoller
from local.template import load_template

ADMIN_TOKEN = "bench-admin-token-0123456789abcdef"
ENCRYPTION_KEY = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="  # base64 of bytes 0..31: a test key
FUNCTIONS = {"AuthorizerFunction": "authorizer", "ApiFunction": "api", "SenderFunction": "sender",
             "SchedulerFunction": "scheduler", "ReportRouterFunction": "report_router",
             "ReporterFunction": "reporter"}
LANES = ("SendQueueImmediate", "SendQueueHigh", "SendQueueMedium", "SendQueueLow")
BASE_ENV = {
    "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_SESSION_TOKEN": "testing",
    "AWS_DEFAULT_REGION": "us-east-1", "POWERTOOLS_TRACE_DISABLED": "1",
    "POWERTOOLS_METRICS_NAMESPACE": "MailProxy", "POWERTOOLS_SERVICE_NAME": "mail-proxy",
}

_modules: dict[str, ModuleType] = {}


def function_module(name: str) -> ModuleType:
    """A function's ``app`` module, imported once (a warm container keeps it)."""
    if name not in _modules:
        path = FUNCTIONS_DIR / name / "app.py"
        _modules[name] = import_source(path, f"bench_function_{name}", extra_path=path.parent)
    return _modules[name]


def reset_caches() -> None:
    """Forget every per-container cache, as a new container would (the same list as the tests use)."""
    from mail_proxy.adapters.aws_clients import reset_clients
    from mail_proxy.adapters.secrets_config import reset_secrets
    from mail_proxy.api.http_api import reset_services
    from mail_proxy.domain import clock
    from mail_proxy.settings import reset_settings

    reset_clients()
    reset_settings()
    reset_secrets()
    reset_services()
    clock.reset()
    if "sender" in _modules:
        _modules["sender"].connections.close_all()
        _modules["sender"].dispatcher.cache_clear()
    if "authorizer" in _modules:
        _modules["authorizer"].repository.cache_clear()
    for name in ("report_router", "reporter", "scheduler"):
        if name in _modules:
            _modules[name].wiring.cache_clear()


@dataclass
class Durations:
    """Handler wall times per function (seconds), less the time the cost estimation itself took."""

    by_function: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    by_phase: dict[tuple[str, str], list[float]] = field(default_factory=lambda: defaultdict(list))

    def total(self, function: str) -> float:
        return sum(self.by_function.get(function, []))

    def count(self, function: str) -> int:
        return len(self.by_function.get(function, []))

    def in_phases(self, function: str, phases: tuple[str, ...]) -> list[float]:
        return [d for phase in phases for d in self.by_phase.get((phase, function), [])]


def timed(name: str, handler: Any, durations: Durations, usage: AwsUsage) -> Any:
    def run(event: Any, context: Any) -> Any:
        overhead = usage.overhead_seconds
        started = time.perf_counter()
        try:
            return handler(event, context)
        finally:
            spent = max(time.perf_counter() - started - (usage.overhead_seconds - overhead), 0.0)
            durations.by_function[name].append(spent)
            durations.by_phase[(usage.phase, name)].append(spent)

    return run


class ReportReceiver:
    """The tenant's application: takes ``delivery_report`` POSTs on loopback, counts the events by message
    and answers ``{"ok": true, "queued": 0}``. A context manager (a server thread in this process)."""

    def __init__(self) -> None:
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length) or b"{}")
                with receiver.lock:
                    receiver.posts += 1
                    for item in body.get("delivery_report") or []:
                        receiver.events[(item.get("id"), item.get("event"))] += 1
                answer = b'{"ok":true,"queued":0}'
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        import threading
        from collections import Counter

        self.lock = threading.Lock()
        self.posts = 0
        self.events: Counter[tuple[str, str]] = Counter()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def __enter__(self) -> ReportReceiver:
        self.thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=10)


@dataclass
class PipelineResult:
    messages: int
    api_batch: int
    submit_seconds: float
    deliver_seconds: float
    handler_seconds: float  # sender handler time within the delivery phase
    batches: int
    durations: Durations
    usage: AwsUsage
    log_bytes: dict[str, int]
    api_request_bytes: list[int] = field(default_factory=list)
    records_per_batch: int = 10
    report_seconds: float = 0.0
    gc_seconds: float = 0.0  # garbage collection during the delivery phase
    reported_sent: int = 0  # "sent" events the application received (each message once, if reports ran)
    report_posts: int = 0
    profile: cProfile.Profile | None = None

    @property
    def deliver_rate(self) -> float:
        return self.messages / self.deliver_seconds

    @property
    def handler_rate(self) -> float:
        return self.messages / self.handler_seconds if self.handler_seconds else 0.0


class InProcessStack:
    """moto resources from template.yaml + the handlers, in this process; a context manager."""

    def __init__(self, sink: dict[str, Any], usage: AwsUsage, durations: Durations,
                 records_per_batch: int = 10, report_url: str | None = None) -> None:
        self.records_per_batch = records_per_batch
        self.report_url = report_url
        self.sink = sink
        self.usage = usage
        self.durations = durations
        self._saved_env: dict[str, str] = {}
        self._mock: Any = None
        self.resources: Any = None

    def __enter__(self) -> InProcessStack:
        from moto import mock_aws

        from local.moto_speedups import speed_up_moto
        from local.resources import provision

        speed_up_moto()  # moto stands in for AWS: its own serializing and sorting are not AWS's cost

        self._saved_env = dict(os.environ)
        for name in ("AWS_ENDPOINT_URL", "AWS_PROFILE", "SECRET_ID"):
            os.environ.pop(name, None)
        os.environ.update(BASE_ENV)
        self._mock = mock_aws()
        self._mock.start()
        try:
            template = load_template()
            self.resources = provision(template)
            env: dict[str, str] = {}
            for logical_id in FUNCTIONS:
                env.update(template.function_environment(logical_id, self.resources.resolved))
            env.pop("SECRET_ID", None)
            env.update({"MAIL_PROXY_ENCRYPTION_KEY": ENCRYPTION_KEY, "GMP_API_TOKEN": ADMIN_TOKEN,
                        "MAIL_PROXY_LOCAL": "1", "MAIL_PROXY_ALLOW_LOOPBACK": "1"})
            if self.sink.get("ca_file"):
                env["MAIL_PROXY_SMTP_CA_FILE"] = self.sink["ca_file"]
            os.environ.update(env)
            reset_caches()
            self.api_module = function_module("api")
            self.authorizer_module = function_module("authorizer")
            self.sender_module = function_module("sender")
            reset_caches()
            routes = template.http_routes("ApiFunction")
            api = LocalFunction("bench-ApiFunction", timed("api", self.api_module.lambda_handler, self.durations,
                                                           self.usage), timeout_seconds=29, memory_mb=512)
            authorizer = LocalFunction("bench-AuthorizerFunction",
                                       timed("authorizer", self.authorizer_module.lambda_handler, self.durations,
                                             self.usage), timeout_seconds=5, memory_mb=256)
            self.gateway = HttpApiGateway(api=api, authorizer=authorizer, routes=routes, auth_cache_seconds=0)
            self.sender = LocalFunction("bench-SenderFunction",
                                        timed("sender", self.sender_module.lambda_handler, self.durations,
                                              self.usage), timeout_seconds=60, memory_mb=512)
            queues = [PolledQueue(url=q.url, arn=q.arn, visibility_timeout=q.visibility_timeout,
                                  batch_size=self.records_per_batch)
                      for q in (self.resources.queues[lane] for lane in LANES)]
            self.poller = SqsPoller(self.sender, queues)
            import boto3

            self.sqs = boto3.client("sqs", region_name="us-east-1")
            if self.report_url:
                self._report_path(template)
        except BaseException:
            self.__exit__()
            raise
        return self

    def _report_path(self, template: Any) -> None:
        """The table stream → report router → FIFO reports queue → reporter, as their event sources wire them."""
        import boto3

        from local.streams import StreamPoller

        resolved = self.resources.resolved
        router = function_module("report_router")
        reporter = function_module("reporter")
        reset_caches()
        [stream] = template.stream_sources("ReportRouterFunction", resolved)
        self.router = LocalFunction("bench-ReportRouterFunction",
                                    timed("report_router", router.lambda_handler, self.durations, self.usage),
                                    timeout_seconds=30, memory_mb=256)
        self.stream_poller = StreamPoller(self.router, stream.stream_arn, batch_size=stream.batch_size,
                                          report_batch_item_failures=stream.report_batch_item_failures,
                                          starting_position=stream.starting_position,
                                          filter_patterns=stream.filter_patterns)
        [source] = template.sqs_sources("ReporterFunction", resolved)
        queue = self.resources.queue_by_arn(source.queue_arn)
        self.reporter = LocalFunction("bench-ReporterFunction",
                                      timed("reporter", reporter.lambda_handler, self.durations, self.usage),
                                      timeout_seconds=30, memory_mb=256)
        self.report_poller = SqsPoller(self.reporter, [PolledQueue(
            url=queue.url, arn=queue.arn, visibility_timeout=queue.visibility_timeout, batch_size=source.batch_size,
            report_batch_item_failures=source.report_batch_item_failures, filter_patterns=source.filter_patterns)])
        self.streams = boto3.client("dynamodbstreams", region_name="us-east-1")

    def __exit__(self, *exc_info: object) -> None:
        try:
            reset_caches()
        finally:
            if self._mock is not None:
                self._mock.stop()
                self._mock = None
            os.environ.clear()
            os.environ.update(self._saved_env)

    def request(self, method: str, path: str, body: Any, token: str, sizes: list[int] | None = None
                ) -> tuple[int, Any]:
        headers = [("content-type", "application/json"), ("x-api-token", token)]
        data = json.dumps(body).encode()
        if sizes is not None:
            sizes.append(len(data))
        response = self.gateway.handle(method, path, headers, data)
        text = response.body.decode() if isinstance(response.body, bytes) else str(response.body)
        return response.status, (json.loads(text) if text else None)

    def create_tenant_and_account(self) -> str:
        tenant: dict[str, Any] = {"tenant_id": TENANT_ID, "name": "Benchmark"}
        if self.report_url:
            tenant["client_base_url"] = self.report_url
        status, answer = self.request("POST", "/tenant", tenant, ADMIN_TOKEN)
        if status != 201:
            raise RuntimeError(f"POST /tenant: {status} {answer}")
        token = str(answer["api_key"])
        account = {"id": ACCOUNT_ID, "host": self.sink["host"], "port": self.sink["port"],
                   "tls": "starttls" if self.sink.get("ca_file") else "none"}
        if self.sink.get("user"):
            account.update(user=self.sink["user"], password=self.sink["password"])
        status, answer = self.request("POST", "/account", account, token)
        if status != 201:
            raise RuntimeError(f"POST /account: {status} {answer}")
        return token


@contextlib.contextmanager
def _captured_logs(counter: CountingStream) -> Any:
    """Handler log output (JSON lines, EMF metrics) goes to ``counter`` instead of the terminal."""
    from mail_proxy.adapters.observability import logger

    handler = logger.registered_handler
    previous = handler.setStream(counter)  # type: ignore[attr-defined]
    try:
        with contextlib.redirect_stdout(counter):  # type: ignore[type-var]
            yield
    finally:
        handler.setStream(previous)  # type: ignore[attr-defined]


def run_pipeline(sink: dict[str, Any], messages: int, *, api_batch: int = 500, records_per_batch: int = 10,
                 accounting: bool = False, profile: bool = False, reports: bool = False,
                 time_limit: float = 300.0) -> PipelineResult:
    """Submits ``messages`` through the API in calls of ``api_batch``, then delivers them all, the sender
    invoked with up to ``records_per_batch`` SQS records (each carrying up to 10 message ids). With
    ``reports``, the tenant has a report URL (a receiver in this process) and a last phase runs the table
    stream through the report router and the reports queue through the reporter until both are idle.

    Raises if the API rejects anything, or if delivery does not finish within ``time_limit`` seconds.
    """
    usage = AwsUsage(accounting=accounting)
    durations = Durations()
    logs = {"submit": CountingStream(), "deliver": CountingStream()}
    sizes: list[int] = []
    started_all = time.monotonic()
    receiver = ReportReceiver() if reports else None
    with contextlib.ExitStack() as exits:
        if receiver is not None:
            exits.enter_context(receiver)
        exits.enter_context(usage.installed())
        stack = exits.enter_context(InProcessStack(sink, usage, durations, records_per_batch,
                                                   receiver.url if receiver else None))
        exits.enter_context(_captured_logs(CountingStream()))
        token = stack.create_tenant_and_account()
        usage.phase = "submit"
        started = time.perf_counter()
        with _captured_logs(logs["submit"]):
            for first in range(0, messages, api_batch):
                batch = [bench_message(i) for i in range(first, min(first + api_batch, messages))]
                status, answer = stack.request("POST", "/commands/add-messages", {"messages": batch}, token, sizes)
                if status != 200 or answer.get("rejected") or answer.get("queued") != len(batch):
                    raise RuntimeError(f"add-messages: {status} {str(answer)[:500]}")
                if time.monotonic() - started_all > time_limit:
                    raise TimeoutError(f"submission took longer than {time_limit:g} s")
        submit_seconds = time.perf_counter() - started

        usage.phase = "deliver"
        gc_clock = _GcClock()
        profiler = cProfile.Profile() if profile else None
        batches = 0
        before = durations.total("sender")
        with _captured_logs(logs["deliver"]), gc_clock:
            if profiler is not None:
                profiler.enable()
            started = time.perf_counter()
            while batches < messages + 10:
                if not stack.poller.poll_once(stack.sqs):
                    break
                batches += 1
                if time.monotonic() - started_all > time_limit:
                    break
            deliver_seconds = time.perf_counter() - started
            if profiler is not None:
                profiler.disable()
        handler_seconds = durations.total("sender") - before
        if time.monotonic() - started_all > time_limit:
            raise TimeoutError(f"delivery did not finish within {time_limit:g} s ({batches} batches)")
        report_seconds = 0.0
        if receiver is not None:
            usage.phase = "report"
            logs["report"] = CountingStream()
            started = time.perf_counter()
            with _captured_logs(logs["report"]):
                _drain_reports(stack, messages, started_all, time_limit)
            report_seconds = time.perf_counter() - started
        usage.phase = "teardown"
    return PipelineResult(messages=messages, api_batch=api_batch, submit_seconds=submit_seconds,
                          deliver_seconds=deliver_seconds, handler_seconds=handler_seconds, batches=batches,
                          durations=durations, usage=usage,
                          log_bytes={k: v.bytes for k, v in logs.items()}, api_request_bytes=sizes,
                          records_per_batch=records_per_batch, profile=profiler, report_seconds=report_seconds,
                          reported_sent=sum(1 for (_, kind), n in receiver.events.items() if kind == "sent" and n)
                          if receiver else 0,
                          report_posts=receiver.posts if receiver else 0, gc_seconds=gc_clock.seconds)


class _GcClock:
    """Time spent in the garbage collector while active (moto keeps many objects alive, which makes full
    collections slow; they land on whatever code allocates)."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self._started: float | None = None

    def _callback(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._started = time.perf_counter()
        elif self._started is not None:
            self.seconds += time.perf_counter() - self._started
            self._started = None

    def __enter__(self) -> _GcClock:
        gc.callbacks.append(self._callback)
        return self

    def __exit__(self, *exc_info: object) -> None:
        gc.callbacks.remove(self._callback)


def _drain_reports(stack: InProcessStack, messages: int, started_all: float, time_limit: float) -> None:
    """Stream → router and reports queue → reporter, alternately, until neither has anything left."""
    idle_rounds = 0
    for _ in range(10 * messages + 100):
        moved = False
        while stack.stream_poller.poll_once(stack.streams):
            moved = True
        while stack.report_poller.poll_once(stack.sqs):
            moved = True
        idle_rounds = 0 if moved else idle_rounds + 1
        if idle_rounds >= 2 or time.monotonic() - started_all > time_limit:
            return


def _path_hint(path: str) -> str:
    for marker in ("site-packages/", "/layers/mail_proxy/", "/work/main/", "/lib/python3."):
        if marker in path:
            return path.split(marker, 1)[1]
    return path


def profile_group(filename: str, function: str) -> str:
    """Which part of the stack a profiled function belongs to."""
    if "/layers/mail_proxy/" in filename or "/functions/" in filename:
        return "ours"
    if "/local/" in filename and "site-packages" not in filename:
        return "local ESM emulation"
    if "/bench/" in filename:
        return "bench"
    if "site-packages/moto/" in filename or "site-packages/werkzeug/" in filename:
        return "moto"
    if any(f"site-packages/{p}/" in filename for p in ("botocore", "boto3", "s3transfer", "urllib3", "jmespath")):
        return "botocore/boto3"
    if "aws_lambda_powertools" in filename:
        return "powertools"
    if "site-packages/pydantic" in filename:
        return "pydantic"
    if any(m in filename for m in ("/smtplib.py", "/ssl.py", "/socket.py")) or any(
            m in function for m in ("_ssl.", "_socket.", "SSLSocket", "socket' objects", "select")):
        return "smtplib/ssl/socket"
    if "/email/" in filename:
        return "email (stdlib)"
    if "/json/" in filename or "json" in function:
        return "json"
    if "/copy.py" in filename or "deepcopy" in function:
        return "copy (stdlib)"
    if "/lib/python3" in filename and "site-packages" not in filename:
        return "other stdlib"
    if filename == "~":
        return "builtins"
    return "other"


# Inclusive buckets: (label, file suffix, function names). Their subtrees do not overlap.
BUCKETS = (
    ("AWS calls (botocore + moto; in the stack: + HTTP wait)", "botocore/client.py", ("_make_api_call",)),
    ("SMTP (SmtpConnection.send)", "mail_proxy/mail/smtp_client.py", ("send",)),
    ("SMTP (ConnectionCache.get: connect/NOOP check)", "mail_proxy/mail/smtp_pool.py", ("get",)),
    ("MIME rendering (delivery_preparation.render)", "mail_proxy/usecases/delivery_preparation.py", ("render",)),
    ("Powertools logger calls", "aws_lambda_powertools/logging/logger.py",
     ("info", "debug", "warning", "error", "exception", "append_keys")),
    ("Powertools metrics flush", "metrics/provider/base.py", ("flush_metrics",)),
)


def profile_buckets(raw: dict[Any, Any]) -> list[tuple[str, float, int]]:
    out = []
    for label, suffix, names in BUCKETS:
        seconds, calls = 0.0, 0
        for (filename, _line, function), (_cc, nc, _tt, cumtime, _callers) in raw.items():
            if filename.endswith(suffix) and function in names:
                seconds += cumtime
                calls += nc
        out.append((label, seconds, calls))
    return out


def profile_report(profiler: cProfile.Profile, total_seconds: float, top: int = 20) -> str:
    """Where the time went: inclusive buckets, self time by part of the stack, top functions by cumulative."""
    import pstats

    stats = pstats.Stats(profiler)
    raw: dict[Any, Any] = stats.stats  # type: ignore[attr-defined]
    by_group: dict[str, float] = defaultdict(float)
    profiled_total = 0.0
    for (filename, _line, function), (_cc, _nc, tottime, _ct, _callers) in raw.items():
        by_group[profile_group(filename, function)] += tottime
        profiled_total += tottime
    lines = [f"  inclusive time (profiled total {profiled_total:.2f} s; the phase took {total_seconds:.2f} s "
             "unprofiled):"]
    rest = profiled_total
    for label, seconds, calls in profile_buckets(raw):
        rest -= seconds
        lines.append(f"    {label:58s} {seconds:7.2f} s {100 * seconds / profiled_total:5.1f} %  ({calls} calls)")
    lines.append(f"    {'everything else (our code, Powertools batch, ESM emulation)':58s} {rest:7.2f} s "
                 f"{100 * rest / profiled_total:5.1f} %")
    lines.append("  self time by part of the stack:")
    for group, seconds in sorted(by_group.items(), key=lambda kv: -kv[1]):
        lines.append(f"    {group:22s} {seconds:7.2f} s  {100 * seconds / profiled_total:5.1f} %")
    lines.append(f"  top {top} by cumulative time:")
    lines.append(f"    {'cumul s':>8s} {'self s':>7s} {'calls':>8s}  {'part':20s} function")
    entries = sorted(raw.items(), key=lambda kv: -kv[1][3])
    shown = 0
    for (filename, line, function), (_cc, nc, tottime, cumtime, _callers) in entries:
        group = profile_group(filename, function)
        if group == "bench" or function in ("<built-in method builtins.exec>",):
            continue
        where = f"{_path_hint(filename)}:{line}" if filename != "~" else ""
        lines.append(f"    {cumtime:8.2f} {tottime:7.2f} {nc:8d}  {group:20s} {function} {where}")
        shown += 1
        if shown >= top:
            break
    ours = sorted(((k, v) for k, v in raw.items() if profile_group(k[0], k[2]) == "ours"), key=lambda kv: -kv[1][3])
    lines.append("  our functions by cumulative time:")
    for (filename, line, function), (_cc, nc, tottime, cumtime, _callers) in ours[:15]:
        lines.append(f"    {cumtime:8.2f} {tottime:7.2f} {nc:8d}  {function} {_path_hint(filename)}:{line}")
    return "\n".join(lines)
