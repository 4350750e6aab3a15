"""Moto in server mode, and the template's tables, queues and buckets created in it.

The handlers reach moto through `AWS_ENDPOINT_URL` (and `AWS_ENDPOINT_URL_<SERVICE>` for the services with a
moto process of their own), exactly as they reach AWS, so no code path is local-only.
Resources get predictable names (`local-MailTable`); the `Provisioned.resolved` mapping is what
`Template.function_environment` uses to fill in table names and queue URLs. Secrets are not created: the
code reads the local admin token and key from the environment when no secret id is configured.
"""

from __future__ import annotations

import logging
import os
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from typing import Any

import boto3

from local.template import LOCAL_REGION, LOCAL_STAGE, REPO_ROOT, Template, physical_name

log = logging.getLogger("local.resources")

FAKE_CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_DEFAULT_REGION": LOCAL_REGION,
    "AWS_REGION": LOCAL_REGION,
}


SERVICE_GROUPS: tuple[tuple[str, ...], ...] = (("dynamodb", "dynamodb_streams"), ("sqs",))
"""Services given a moto process of their own, each group sharing one (a table's stream lives with its table);
every other service goes to the process at `AWS_ENDPOINT_URL`. boto3 reads `AWS_ENDPOINT_URL_<SERVICE>`."""


class MotoServer:
    """moto on loopback, in child processes by default: one per group of `SERVICE_GROUPS`, one for the rest.

    Child processes give moto the machine's second core: in one process, moto's CPU (it emulates every
    AWS call in Python) and the handlers' would share one interpreter lock; and DynamoDB, SQS polling and the
    rest do not wait for one another. Each serves HTTP/1.1 connections that stay open (`local.moto_server`),
    so an emulated call costs no new connection. Set ``MAIL_PROXY_LOCAL_MOTO_THREAD=1`` to run one server
    for every service in a thread instead. `port` (0 picks a free one) is the catch-all server's.
    """

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self.host = host
        self.port = port or _free_port(host)
        self.group_ports: dict[tuple[str, ...], int] = {}
        self._processes: list[subprocess.Popen[bytes]] = []
        self._thread_server: Any = None
        self._started = False

    def start(self) -> None:
        if os.environ.get("MAIL_PROXY_LOCAL_MOTO_THREAD", "").lower() in {"1", "true", "yes"}:
            from local.moto_server import KeepAliveMotoServer  # moto is slow to import
            from local.moto_speedups import speed_up_moto

            speed_up_moto()
            self._thread_server = KeepAliveMotoServer(self.host, self.port)
            self._thread_server.start()
        else:
            self.group_ports = {group: _free_port(self.host) for group in SERVICE_GROUPS}
            try:
                for port in (self.port, *self.group_ports.values()):
                    self._processes.append(subprocess.Popen(  # noqa: S603 - our own interpreter, loopback only
                        [sys.executable, "-m", "local.moto_server", "-H", self.host, "-p", str(port)],
                        cwd=str(REPO_ROOT), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                        stdin=subprocess.DEVNULL,
                    ))
                for port, process in zip((self.port, *self.group_ports.values()), self._processes, strict=True):
                    _wait_listening(self.host, port, process, timeout=60.0)
            except BaseException:
                self._stop_processes()
                raise
        self._started = True

    @property
    def endpoint(self) -> str:
        return f"http://{self.host}:{self.port}"

    def environment(self) -> dict[str, str]:
        """What a process needs in its environment for boto3 to talk to these servers."""
        environment = {"AWS_ENDPOINT_URL": self.endpoint, **FAKE_CREDENTIALS}
        for group in SERVICE_GROUPS:
            port = self.group_ports.get(group, self.port)
            for service in group:
                environment[f"AWS_ENDPOINT_URL_{service.upper()}"] = f"http://{self.host}:{port}"
        return environment

    def stop(self) -> None:
        if not self._started:
            return
        self._started = False
        if self._thread_server is not None:
            self._thread_server.stop()
        self._stop_processes()

    def _stop_processes(self) -> None:
        for process in self._processes:
            process.terminate()
        for process in self._processes:
            try:
                process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=5)
        self._processes = []


def _free_port(host: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def _wait_listening(host: str, port: int, process: subprocess.Popen[bytes], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"moto server exited with {process.returncode} before listening on {host}:{port}")
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    process.kill()
    raise RuntimeError(f"moto server did not listen on {host}:{port} within {timeout:g} s")


@dataclass(frozen=True)
class QueueInfo:
    logical_id: str
    name: str
    url: str
    arn: str
    visibility_timeout: int


@dataclass(frozen=True)
class TableInfo:
    logical_id: str
    name: str
    arn: str
    stream_arn: str | None


@dataclass
class Provisioned:
    """What was created, by logical id, and the `resolved` mapping for intrinsic functions."""

    resolved: dict[str, str] = field(default_factory=dict)
    tables: dict[str, TableInfo] = field(default_factory=dict)
    queues: dict[str, QueueInfo] = field(default_factory=dict)
    buckets: dict[str, str] = field(default_factory=dict)

    def queue_by_arn(self, arn: str) -> QueueInfo | None:
        return next((queue for queue in self.queues.values() if queue.arn == arn), None)


def _region() -> str:
    return os.environ.get("AWS_DEFAULT_REGION", LOCAL_REGION)


def create_table(template: Template, logical_id: str, name: str, dynamodb: Any | None = None) -> TableInfo:
    """Creates the table as the template defines it, TTL included."""
    dynamodb = dynamodb or boto3.client("dynamodb", region_name=_region())
    description = dynamodb.create_table(TableName=name, **template.table_properties(logical_id))["TableDescription"]
    ttl_attribute = template.table_ttl_attribute(logical_id)
    if ttl_attribute:
        dynamodb.update_time_to_live(
            TableName=name, TimeToLiveSpecification={"Enabled": True, "AttributeName": ttl_attribute}
        )
    return TableInfo(logical_id, name, description["TableArn"], description.get("LatestStreamArn"))


def provision(template: Template, stage: str = LOCAL_STAGE) -> Provisioned:
    """Creates every table, queue (dead-letter queues first) and bucket of the template."""
    result = Provisioned()
    if "Stage" in template.parameters:
        result.resolved["Stage"] = stage

    dynamodb = boto3.client("dynamodb", region_name=_region())
    for logical_id in template.logical_ids("AWS::DynamoDB::Table"):
        table = create_table(template, logical_id, physical_name(logical_id, stage), dynamodb)
        result.tables[logical_id] = table
        result.resolved.update({logical_id: table.name, f"{logical_id}.Arn": table.arn})
        if table.stream_arn:
            result.resolved[f"{logical_id}.StreamArn"] = table.stream_arn

    sqs: Any = boto3.client("sqs", region_name=_region())
    queue_ids = template.logical_ids("AWS::SQS::Queue")
    # Every queue exists before any redrive policy is set, so a policy can name its dead-letter queue's ARN.
    for logical_id in queue_ids:
        name = template.queue_name(logical_id, stage)
        fifo = {"FifoQueue": "true"} if name.endswith(".fifo") else {}
        url = sqs.create_queue(QueueName=name, Attributes=fifo)["QueueUrl"]
        arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        result.resolved.update(
            {
                logical_id: url,
                f"{logical_id}.QueueUrl": url,
                f"{logical_id}.Arn": arn,
                f"{logical_id}.QueueName": name,
            }
        )
        result.queues[logical_id] = QueueInfo(logical_id, name, url, arn, 30)
    for logical_id in queue_ids:
        queue = result.queues[logical_id]
        attributes = template.queue_attributes(logical_id, result.resolved)
        attributes.pop("FifoQueue", None)
        if attributes:
            sqs.set_queue_attributes(QueueUrl=queue.url, Attributes=attributes)
        visibility = int(attributes.get("VisibilityTimeout", 30))
        result.queues[logical_id] = QueueInfo(logical_id, queue.name, queue.url, queue.arn, visibility)

    buckets = template.logical_ids("AWS::S3::Bucket")
    s3 = boto3.client("s3", region_name=_region()) if buckets else None
    for logical_id in buckets:
        name = physical_name(logical_id, stage).lower()
        assert s3 is not None
        s3.create_bucket(Bucket=name)
        result.buckets[logical_id] = name
        result.resolved.update(
            {
                logical_id: name,
                f"{logical_id}.Arn": f"arn:aws:s3:::{name}",
                f"{logical_id}.DomainName": f"{name}.s3.amazonaws.com",
                f"{logical_id}.RegionalDomainName": f"{name}.s3.{LOCAL_REGION}.amazonaws.com",
            }
        )
    return result
