"""The whole application on this machine, without Docker: `python -m local`.

moto (server mode) stands in for DynamoDB, SQS and S3, with the resources of `template.yaml`; the Lambda
handlers run in this process, fed by an HTTP API emulation, SQS and DynamoDB stream pollers and schedule
tickers wired as the template wires them; an SMTP sink keeps every delivered message as an `.eml` file.
"""

from __future__ import annotations

import argparse
import errno
import logging
import os
import signal
import sys
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from local import console
from local.client_app import PREFIX as STAND_IN_APP_PREFIX
from local.client_app import StandInApplication
from local.dev_secrets import DevSecrets, SecretConfigError, load_dev_secrets
from local.gateway import DEFAULT_ROUTES, HttpApiGateway
from local.lambdas import FunctionMissing, LocalFunction, load_function, missing_function
from local.poller import PolledQueue, SqsPoller
from local.ports import (
    DEFAULT_PORT,
    DEFAULT_SMTP_PORT,
    PORT_VARIABLE,
    SMTP_PORT_VARIABLE,
    BusyPort,
    PortConfigError,
    busy_message,
    busy_ports,
    port_from_environment,
)
from local.resources import MotoServer, Provisioned, provision
from local.streams import StreamPoller
from local.template import DEFAULT_TEMPLATE, LOCAL_STAGE, REPO_ROOT, Template, TemplateError, physical_name
from local.ticker import ScheduleTicker

log = logging.getLogger("local.stack")

AUTHORIZER = "AuthorizerFunction"
API = "ApiFunction"
_PRIORITY_WORDS = ("immediate", "high", "medium", "low")


@dataclass
class StackOptions:
    """What `python -m local` takes on its command line."""

    template: Path = DEFAULT_TEMPLATE
    host: str = "127.0.0.1"
    port: int = DEFAULT_PORT
    smtp_port: int = DEFAULT_SMTP_PORT
    state_dir: Path = REPO_ROOT / ".local-stack"
    mail_dir: Path | None = None
    api_token: str | None = None
    sender: bool = True
    sender_workers: int = 4
    """Concurrent invocations of each SQS-fed function (the sender's and the reporter's mappings), each in its
    own container, as Lambda scales a queue's consumers; conditional claims keep concurrent senders apart."""
    schedule_seconds: float | None = None
    stage: str = LOCAL_STAGE
    verbose: bool = False

    @property
    def resolved_mail_dir(self) -> Path:
        return self.mail_dir if self.mail_dir is not None else self.state_dir / "mail"


def _priority_rank(logical_id: str) -> int:
    """Queues are polled Immediate, High, Medium, Low by name; others after them, in template order."""
    lowered = logical_id.lower()
    return next((rank for rank, word in enumerate(_PRIORITY_WORDS) if word in lowered), len(_PRIORITY_WORDS))


class PortsBusy(OSError):
    """The HTTP API's or the SMTP sink's port cannot be listened on; the message is the line to print."""


@dataclass
class LocalStack:
    """Starts and stops every piece; usable in-process (tests) as well as from the command line."""

    options: StackOptions = field(default_factory=StackOptions)
    template: Template | None = None
    secrets: DevSecrets | None = None
    moto: MotoServer | None = None
    provisioned: Provisioned | None = None
    functions: dict[str, LocalFunction] = field(default_factory=dict)
    gateway: HttpApiGateway | None = None
    sink: Any = None
    pollers: list[SqsPoller] = field(default_factory=list)
    stream_pollers: list[StreamPoller] = field(default_factory=list)
    tickers: dict[str, ScheduleTicker] = field(default_factory=dict)
    loaded: set[str] = field(default_factory=set)
    application: StandInApplication = field(default_factory=StandInApplication)
    notes: list[str] = field(default_factory=list)
    _saved_environ: dict[str, str] | None = field(default=None, repr=False)

    # -- what callers read ------------------------------------------------------------------------------

    @property
    def api_url(self) -> str:
        assert self.gateway is not None, "stack not started"
        return self.gateway.url

    @property
    def smtp_port(self) -> int:
        assert self.sink is not None, "stack not started"
        return int(self.sink.port)

    @property
    def admin_token(self) -> str:
        assert self.secrets is not None, "stack not started"
        return self.secrets.admin_token

    def tick_now(self, logical_id: str | None = None) -> None:
        """Asks the schedule tickers (all, or one function's) to run now rather than at the next period."""
        for name, ticker in self.tickers.items():
            if logical_id is None or name.split(".")[0] == logical_id:
                ticker.request_tick()

    # -- lifecycle --------------------------------------------------------------------------------------

    def start(self) -> None:
        """Starts everything; on failure, stops what was started and re-raises.

        The handlers share this process, so their environment (and `AWS_ENDPOINT_URL`) goes into `os.environ`;
        `stop()` puts the previous environment back for in-process callers.
        """
        self._saved_environ = dict(os.environ)
        try:
            self._start()
        except BaseException:
            self.stop()
            raise

    def _start(self) -> None:
        from local.smtp_sink import SmtpSink  # aiosmtpd is only needed when the stack runs

        options = self.options
        self.template = Template.from_file(options.template)
        from local.aws_calls import install_from_environment

        install_from_environment()  # tests check every AWS call a handler makes against its role
        self.secrets = load_dev_secrets(options.state_dir, options.api_token)
        self._check_ports()

        self.sink = SmtpSink(options.resolved_mail_dir, host=options.host, port=options.smtp_port)
        try:
            self.sink.start()
        except OSError as error:
            raise self._busy("SMTP sink", options.smtp_port, error) from None

        self.moto = MotoServer(host="127.0.0.1", port=0)
        self.moto.start()
        os.environ.update(self.moto.environment())
        self.provisioned = provision(self.template, options.stage)

        self._load_functions()
        self._start_gateway()
        self._start_event_sources()

    def _function_ids(self) -> list[str]:
        assert self.template is not None
        return self.template.logical_ids("AWS::Serverless::Function")

    def _load_functions(self) -> None:
        """Imports each function inside its own environment: the template's variables for it, never another
        function's (they share this process, so `os.environ` shows each handler its own view while it runs).

        Only what every function gets locally (moto's endpoint, the development key and token) is in the
        process environment.
        """
        assert self.template is not None and self.provisioned is not None and self.secrets is not None
        local_only = {
            "MAIL_PROXY_LOCAL": "1",
            "MAIL_PROXY_ALLOW_LOOPBACK": "1",
            "GMP_API_TOKEN": self.secrets.admin_token,
            "MAIL_PROXY_ENCRYPTION_KEY": self.secrets.encryption_key,
        }
        os.environ.update(local_only)
        os.environ.setdefault("POWERTOOLS_TRACE_DISABLED", "true")
        os.environ.setdefault("POWERTOOLS_METRICS_DISABLED", "true")
        for logical_id in self._function_ids():
            dropped: list[str] = []
            environment = self.template.function_environment(logical_id, self.provisioned.resolved, dropped)
            if dropped:
                self.notes.append(f"{logical_id}: not set locally: {', '.join(sorted(dropped))}")
            spec = self.template.function_spec(logical_id)
            name = physical_name(logical_id, self.options.stage)
            try:
                self.functions[logical_id] = load_function(spec, name, template=self.template,
                                                           environment=environment)
                self.loaded.add(logical_id)
            except FunctionMissing as missing:
                self.notes.append(f"{logical_id}: {missing}")
                self.functions[logical_id] = missing_function(name, str(missing))
            except Exception as error:
                log.exception("%s failed to import", logical_id)
                self.notes.append(f"{logical_id}: import failed: {error!r} (see the traceback above)")
                self.functions[logical_id] = missing_function(name, f"import failed: {error!r}")

    def _start_gateway(self) -> None:
        assert self.template is not None
        routes = self.template.http_routes(API) if API in self.template.resources else []
        api = self.functions.get(API) or missing_function(physical_name(API), f"template has no {API}")
        authorizer = self.functions.get(AUTHORIZER)
        self.gateway = HttpApiGateway(
            api,
            authorizer,
            routes=routes or DEFAULT_ROUTES,
            host=self.options.host,
            port=self.options.port,
            identity_header=self.template.authorizer_identity_header(),
            local_paths=self.application,
        )
        try:
            self.gateway.start()
            # links the functions build (large-file downloads) point at this front
            os.environ["PUBLIC_API_URL"] = self.gateway.url
        except OSError as error:
            raise self._busy("HTTP API", self.options.port, error) from None

    def _check_ports(self) -> None:
        """Both ports at once, before anything starts: one message names every busy port."""
        options = self.options
        busy = busy_ports(options.host, {"HTTP API": options.port, "SMTP sink": options.smtp_port})
        if busy:
            raise PortsBusy(busy_message(options.host, options.port, options.smtp_port, busy))

    def _busy(self, role: str, port: int, error: OSError) -> PortsBusy:
        """A bind that failed although the check passed (a race, or a reason the check cannot see)."""
        in_use = error.errno == errno.EADDRINUSE or "in use" in str(error)
        busy = [BusyPort(role, port, error.strerror or str(error), in_use)]
        return PortsBusy(busy_message(self.options.host, self.options.port, self.options.smtp_port, busy))

    def _start_event_sources(self) -> None:
        assert self.template is not None and self.provisioned is not None
        resolved = self.provisioned.resolved
        schedule_override = self.options.schedule_seconds
        if schedule_override is None and os.environ.get("MAIL_PROXY_LOCAL_SCHEDULE_SECONDS"):
            schedule_override = float(os.environ["MAIL_PROXY_LOCAL_SCHEDULE_SECONDS"])
        for logical_id in self._function_ids():
            function = self.functions[logical_id]
            sqs_sources = self.template.sqs_sources(logical_id, resolved)
            stream_sources = self.template.stream_sources(logical_id, resolved)
            schedules = self.template.schedule_sources(logical_id, resolved)
            if not (sqs_sources or stream_sources or schedules):
                continue
            if logical_id not in self.loaded:
                self.notes.append(f"{logical_id}: not invoked by its event sources until its code exists")
                continue
            if sqs_sources and self.options.sender:
                queues = []
                for source in sqs_sources:
                    queue = self.provisioned.queue_by_arn(source.queue_arn)
                    if queue is None:
                        raise TemplateError(f"{logical_id}: SQS source {source.queue_arn} is not a template queue")
                    queues.append(
                        (
                            _priority_rank(queue.logical_id),
                            PolledQueue(
                                url=queue.url,
                                arn=queue.arn,
                                visibility_timeout=queue.visibility_timeout,
                                batch_size=source.batch_size,
                                report_batch_item_failures=source.report_batch_item_failures,
                                filter_patterns=source.filter_patterns,
                                batching_window=source.batching_window,
                            ),
                        )
                    )
                ordered = [queue for _rank, queue in sorted(queues, key=lambda item: item[0])]
                workers = self.options.sender_workers
                poller = SqsPoller(function, ordered, workers=workers,
                                   instances=[function, *self._more_instances(logical_id, function, workers - 1)])
                poller.start()
                self.pollers.append(poller)
            elif sqs_sources:
                self.notes.append(f"{logical_id}: SQS polling is off (--no-sender)")
            for stream in stream_sources:
                stream_poller = StreamPoller(
                    function,
                    stream.stream_arn,
                    batch_size=stream.batch_size,
                    report_batch_item_failures=stream.report_batch_item_failures,
                    starting_position=stream.starting_position,
                    maximum_retry_attempts=stream.maximum_retry_attempts,
                    filter_patterns=stream.filter_patterns,
                    batching_window=stream.batching_window,
                )
                stream_poller.start()
                self.stream_pollers.append(stream_poller)
            for schedule in schedules:
                period = schedule_override if schedule_override is not None else schedule.period_seconds
                ticker = ScheduleTicker(
                    function,
                    period,
                    rule_name=f"{physical_name(logical_id, self.options.stage)}-{schedule.name}",
                    constant_input=schedule.input,
                )
                ticker.start()
                self.tickers[f"{logical_id}.{schedule.name}"] = ticker

    def _more_instances(self, logical_id: str, function: LocalFunction, count: int) -> list[LocalFunction]:
        """`count` more containers of a function, for concurrent invocations (each imports the code anew)."""
        assert self.template is not None
        spec = self.template.function_spec(logical_id)
        return [load_function(spec, function.name, template=self.template, environment=function.environment,
                              instance=index, init_lock=function._init_lock) for index in range(1, count + 1)]

    def stop(self) -> None:
        """Stops the front first (no new work), then the event sources, the sink, and moto last."""
        if self.gateway is not None:
            self.gateway.stop()
        sources: list[SqsPoller | StreamPoller | ScheduleTicker] = [
            *self.pollers,
            *self.stream_pollers,
            *self.tickers.values(),
        ]
        for source in sources:
            source.stop_event.set()  # all stop together rather than one after another
        for source in sources:
            source.stop(timeout=5)
        self.pollers, self.stream_pollers, self.tickers = [], [], {}
        if self.sink is not None:
            self.sink.stop()
            self.sink = None
        if self.moto is not None:
            self.moto.stop()
            self.moto = None
        if self._saved_environ is not None:
            os.environ.clear()
            os.environ.update(self._saved_environ)
            self._saved_environ = None

    # -- banner -----------------------------------------------------------------------------------------

    def banner(self) -> str:
        assert self.secrets is not None and self.provisioned is not None
        options = self.options
        lines = [
            "",
            "Mail proxy local stack",
            f"  HTTP API     {self.api_url}   (GET /health, GET /openapi.json; others need X-API-Token)",
            f"  SMTP sink    {options.host}:{self.smtp_port}   (any AUTH, no TLS: configure accounts with "
            f"host {options.host}, port {self.smtp_port}, tls none)",
            f"  Mail files   {options.resolved_mail_dir}",
            f"  Reports      {self.api_url}{STAND_IN_APP_PREFIX}/<name>   (a stand-in application: give a tenant "
            "this client_base_url; GET it to see what was reported)",
            f"  AWS (moto)   {os.environ.get('AWS_ENDPOINT_URL')}   tables: "
            + ", ".join(table.name for table in self.provisioned.tables.values()),
            f"  Admin token  {self.secrets.admin_token}   ({self.secrets.token_source})",
            f"  Key          {self.secrets.key_source}",
            "  Data lives in memory only: it is gone when the stack stops.",
            "",
            "  Try:",
            f"    curl {self.api_url}/health",
            f"    curl -H 'X-API-Token: {self.secrets.admin_token}' {self.api_url}/tenants",
            "",
        ]
        if self.tickers:
            periods = ", ".join(f"{name} every {t.period_seconds:g}s" for name, t in self.tickers.items())
            lines.insert(6, f"  Schedules    {periods}")
        # what the template sets but the local stack leaves out is detail; a missing or broken function is not
        notes = [note for note in self.notes if options.verbose or "not set locally" not in note]
        if notes:
            lines += ["  Notes:", *(f"    - {note}" for note in notes), ""]
        lines.append("  Quiet console: one line per request, mail and report, and any problem (--verbose for "
                     "all the functions' logs).")
        lines.append("")
        return "\n".join(lines)


# -------------------------------------------------------------------------------------------------------
# Command line


def parse_args(argv: Sequence[str] | None = None) -> StackOptions:
    parser = argparse.ArgumentParser(prog="python -m local", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1", help="address of the HTTP API and SMTP sink")
    parser.add_argument("--port", type=int, default=None,
                        help=f"HTTP API port (default {PORT_VARIABLE}, else {DEFAULT_PORT}; 0 picks one)")
    parser.add_argument("--smtp-port", type=int, default=None,
                        help=f"SMTP sink port (default {SMTP_PORT_VARIABLE}, else {DEFAULT_SMTP_PORT}; 0 picks one)")
    parser.add_argument("--mail-dir", type=Path, help="where received mail goes (default <state-dir>/mail)")
    parser.add_argument(
        "--state-dir",
        type=Path,
        default=Path(".local-stack"),
        help="development token, key and mail (default .local-stack)",
    )
    parser.add_argument("--api-token", help="admin token (default: GMP_API_TOKEN, else generated and kept)")
    parser.add_argument("--template", type=Path, default=DEFAULT_TEMPLATE, help="SAM template to run")
    parser.add_argument("--no-sender", action="store_true", help="do not poll the send queues")
    parser.add_argument(
        "--sender-workers",
        type=int,
        default=4,
        help="concurrent invocations of each SQS-fed function, each in its own container (default 4)",
    )
    parser.add_argument(
        "--schedule-seconds",
        type=float,
        help="period of every schedule (default MAIL_PROXY_LOCAL_SCHEDULE_SECONDS or the template)",
    )
    parser.add_argument("-v", "--verbose", action="store_true",
                        help="every function's log lines (JSON, as in CloudWatch) and the stack's details")
    args = parser.parse_args(argv)
    try:
        port = args.port if args.port is not None else port_from_environment(PORT_VARIABLE, DEFAULT_PORT)
        smtp_port = (args.smtp_port if args.smtp_port is not None
                     else port_from_environment(SMTP_PORT_VARIABLE, DEFAULT_SMTP_PORT))
    except PortConfigError as error:
        parser.error(str(error))
    return StackOptions(
        template=args.template,
        host=args.host,
        port=port,
        smtp_port=smtp_port,
        state_dir=args.state_dir,
        mail_dir=args.mail_dir,
        api_token=args.api_token,
        sender=not args.no_sender,
        sender_workers=max(1, args.sender_workers),
        schedule_seconds=args.schedule_seconds,
        verbose=args.verbose,
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Runs until SIGTERM or SIGINT, then stops everything; 0 on a clean stop, 1 if it could not start."""
    options = parse_args(argv)
    level = os.environ.get("MAIL_PROXY_LOCAL_LOG_LEVEL") or None
    console.configure(options.verbose, level)
    stop = threading.Event()

    def request_stop(signum: int, frame: Any) -> None:
        if stop.is_set():
            print("Stopping immediately.", file=sys.stderr, flush=True)
            os._exit(1)
        print(f"{signal.Signals(signum).name}: stopping the local stack", file=sys.stderr, flush=True)
        stop.set()

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)

    stack = LocalStack(options)
    try:
        stack.start()
    except PortsBusy as busy:
        print(busy, file=sys.stderr, flush=True)
        return 1
    except (OSError, SecretConfigError, TemplateError) as error:
        print(f"local stack could not start: {error}", file=sys.stderr, flush=True)
        return 1
    console.quiet_handler_logs(options.verbose, level)
    print(stack.banner(), flush=True)
    print(
        f"READY api={stack.api_url} smtp={options.host}:{stack.smtp_port} admin_token={stack.admin_token}",
        flush=True,
    )
    while not stop.wait(0.5):
        pass
    stack.stop()
    print("local stack stopped", file=sys.stderr, flush=True)
    return 0
