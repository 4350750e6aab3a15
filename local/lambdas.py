"""Runs the Lambda handlers in this process, the way the Lambda runtime would call them.

Every function's entry point is `functions/<name>/app.py`, so each is imported from its file under a unique
module name; the layer directory is put on `sys.path` as `/opt/python` would be. A fake context carries the
deadline from the template's `Timeout`, and a handler that returns after it is treated as timed out, as
Lambda would have killed it.
"""

from __future__ import annotations

import importlib.util
import logging
import sys
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

from local.template import LOCAL_ACCOUNT_ID, LOCAL_REGION, REPO_ROOT, FunctionSpec

LAYER_DIR = REPO_ROOT / "layers" / "mail_proxy"

Handler = Callable[[Any, Any], Any]

log = logging.getLogger("local.lambdas")
_import_lock = threading.Lock()


class FunctionTimedOut(Exception):
    """The handler ran past its Lambda timeout; in AWS it would have been killed and its result lost."""


class FunctionMissing(Exception):
    """The function's code does not exist yet, so it cannot be invoked."""


@dataclass
class LambdaContext:
    """The attributes of the Lambda context object that handlers and Powertools read."""

    function_name: str
    memory_limit_in_mb: int
    invoked_function_arn: str
    aws_request_id: str
    deadline: float
    function_version: str = "$LATEST"
    log_group_name: str = ""
    log_stream_name: str = "local"
    identity: Any = None
    client_context: Any = None

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self.deadline - time.monotonic()) * 1000))


@dataclass
class LocalFunction:
    """A handler with the settings Lambda would run it with.

    The first invocation runs alone, like a Lambda init phase: handlers that create boto3 clients lazily
    would otherwise race on boto3's non-thread-safe default session when the gateway calls them
    concurrently.
    """

    name: str
    handler: Handler
    timeout_seconds: float = 3.0
    memory_mb: int = 128
    _warm: bool = field(default=False, init=False, repr=False)
    _init_lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)

    def context(self) -> LambdaContext:
        return LambdaContext(
            function_name=self.name,
            memory_limit_in_mb=self.memory_mb,
            invoked_function_arn=f"arn:aws:lambda:{LOCAL_REGION}:{LOCAL_ACCOUNT_ID}:function:{self.name}",
            aws_request_id=str(uuid.uuid4()),
            deadline=time.monotonic() + self.timeout_seconds,
            log_group_name=f"/aws/lambda/{self.name}",
        )

    def invoke(self, event: Any) -> Any:
        """Calls the handler; raises what it raises, or `FunctionTimedOut` if it overran its timeout."""
        if self._warm:
            return self._call(event)
        with self._init_lock:
            if self._warm:
                return self._call(event)
            try:
                return self._call(event)
            finally:
                self._warm = True

    def _call(self, event: Any) -> Any:
        context = self.context()
        result = self.handler(event, context)
        if time.monotonic() > context.deadline:
            raise FunctionTimedOut(
                f"{self.name} ran longer than its {self.timeout_seconds:g} s timeout; "
                "in AWS it would have been stopped and its result lost"
            )
        return result


def import_source(path: Path, module_name: str, extra_path: Path | None = None) -> ModuleType:
    """Imports a file under `module_name`, as every function's entry point is called `app.py`.

    The function's own directory is on `sys.path` while it imports, as it is the task root in Lambda.
    """
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot import {path}")
    module = importlib.util.module_from_spec(spec)
    with _import_lock:
        added = []
        for directory in (str(LAYER_DIR), str(extra_path) if extra_path else None):
            if directory and directory not in sys.path:
                sys.path.insert(0, directory)
                added.append(directory)
        sys.modules[module_name] = module
        try:
            spec.loader.exec_module(module)
        except BaseException:
            sys.modules.pop(module_name, None)
            raise
        finally:
            # The layer stays importable (every function has it); the task root does not, so two
            # functions' sibling modules cannot shadow each other afterwards.
            if extra_path and str(extra_path) in added:
                sys.path.remove(str(extra_path))
    return module


def load_function(spec: FunctionSpec, name: str) -> LocalFunction:
    """Imports the function's handler; its environment must already be in `os.environ`.

    Raises `FunctionMissing` when the entry point does not exist yet.
    """
    source = spec.source_file
    if not source.is_file():
        raise FunctionMissing(f"{spec.logical_id}: {source} does not exist")
    module_name = f"local_function_{spec.logical_id}_{spec.module.replace('.', '_')}"
    module = import_source(source, module_name, extra_path=spec.code_dir)
    handler = getattr(module, spec.handler, None)
    if not callable(handler):
        raise FunctionMissing(f"{spec.logical_id}: {source} has no callable {spec.handler!r}")
    return LocalFunction(name=name, handler=handler, timeout_seconds=spec.timeout_seconds, memory_mb=spec.memory_mb)


def missing_function(name: str, reason: str) -> LocalFunction:
    """A stand-in that fails every call, so the rest of the stack still runs while a function is written."""

    def handler(event: Any, context: Any) -> Any:
        raise FunctionMissing(reason)

    return LocalFunction(name=name, handler=handler)
