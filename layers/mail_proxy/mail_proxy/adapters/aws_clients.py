"""boto3 clients, created lazily and once per container (so moto's ``mock_aws`` catches them in tests
and a warm Lambda reuses its connections)."""

from __future__ import annotations

from functools import cache
from typing import Any

import boto3
from botocore.config import Config

_CONFIG = Config(retries={"max_attempts": 5, "mode": "standard"}, connect_timeout=3, read_timeout=10,
                 max_pool_connections=32)


@cache
def client(service: str) -> Any:
    return boto3.session.Session().client(service, config=_CONFIG)  # type: ignore[call-overload]


def reset_clients() -> None:
    """Drop cached clients (tests start a fresh moto for every case)."""
    client.cache_clear()
