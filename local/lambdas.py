"""Runs the Lambda handlers in this process, the way the Lambda runtime would call them.

Every function's entry point is `functions/<name>/app.py`, so each is imported from its file under a unique
module name; the layer directory is put on `sys.path` as `/opt/python` would be. A fake context carries the
deadline from the template's `Timeout`, and a handler that returns after it is treated as timed out, as
Lambda would have killed it.
"""

from __future__ import annotations

import concurrent.futures
import contextvars
import importlib.util
import inspect
import logging
import os
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

from local.template import (
    DEFAULT_TEMPLATE,
    LOCAL_ACCOUNT_ID,
    LOCAL_REGION,
    REPO_ROOT,
    FunctionSpec,
    Template,
    load_template,
)

LAYER_DIR = REPO_ROOT / "layers" / "mail_proxy"

Handler = Callable[[Any, Any], Any]

log = logging.getLogger("local.lambdas")
_import_lock = threading.Lock()
WIRING_MODULE = "mail_proxy.wiring"  # what the handlers build their parts with, once per container


RUNNING_FUNCTION: contextvars.ContextVar[str | None] = contextvars.ContextVar("local_running_function", default=None)
"""The template logical id of the handler running in this context (None outside any handler)."""


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
    logical_id: str | None = None
    """The function in the template; found from the handler's source file when not given."""
    environment: Mapping[str, str] | None = None
    """The function's own variables (the local stack sets them); None: what `os.environ` holds."""
    template: Template | None = None
    _warm: bool = field(default=False, init=False, repr=False)
    _init_lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)
    _scope: FunctionEnvironment | None = field(default=None, init=False, repr=False)

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
        with self.scope():
            result = self.handler(event, context)
        if time.monotonic() > context.deadline:
            raise FunctionTimedOut(
                f"{self.name} ran longer than its {self.timeout_seconds:g} s timeout; "
                "in AWS it would have been stopped and its result lost"
            )
        return result


    @contextmanager
    def scope(self) -> Iterator[None]:
        """Runs the block as this function: its own environment, its own settings, calls attributed to it."""
        if self._scope is None:
            template = self.template or load_template(DEFAULT_TEMPLATE)
            logical_id = self.logical_id or function_of_handler(template, self.handler)
            self._scope = FunctionEnvironment.for_function(template, logical_id, self.environment)
        with self._scope.active():
            yield


def function_of_handler(template: Template, handler: Handler) -> str | None:
    """The template function whose code directory holds the handler's source file."""
    try:
        source = inspect.getsourcefile(inspect.unwrap(handler))
    except TypeError:
        return None
    if source is None:
        return None
    directory = Path(source).resolve().parent
    for logical_id in template.logical_ids("AWS::Serverless::Function"):
        try:
            if template.function_spec(logical_id).code_dir == directory:
                return logical_id
        except Exception:  # noqa: S112 - a function the local stack cannot describe is simply not this one
            continue
    return None


# ---------------------------------------------------------------------------------------------------------
# One environment per function in a shared process


@dataclass(frozen=True)
class FunctionEnvironment:
    """What a function sees of `os.environ` while it runs: its own template variables, never another's.

    `hidden` are the variables other functions of the template declare and this one does not; `own` are this
    function's values (None: keep what the process environment holds).
    """

    logical_id: str | None
    hidden: frozenset[str]
    own: Mapping[str, str] | None
    recorded: bool = False
    """The repository's own function: its AWS calls are attributed to it (`local.aws_calls`)."""

    @classmethod
    def for_function(cls, template: Template, logical_id: str | None,
                     own: Mapping[str, str] | None = None) -> FunctionEnvironment:
        functions = template.logical_ids("AWS::Serverless::Function")
        if logical_id is None or logical_id not in functions:
            return cls(None, frozenset(), own)
        declared = {fid: template.function_variable_names(fid) for fid in functions}
        others = set().union(*(names for fid, names in declared.items() if fid != logical_id))
        mine = declared.get(logical_id, set()) | set(own or {})
        recorded = template.base_dir.resolve() == DEFAULT_TEMPLATE.parent.resolve()
        return cls(logical_id, frozenset(others - mine), dict(own) if own is not None else None, recorded)

    @contextmanager
    def active(self) -> Iterator[None]:
        install_scoped_environ()
        token = _ENV_SCOPE.set(self)
        function_token = RUNNING_FUNCTION.set(self.logical_id if self.recorded else None)
        try:
            scoped: Any = None
            try:
                from mail_proxy.settings import settings_scope

                scoped = settings_scope
            except ImportError:  # the layer is not on sys.path before the first handler imports
                pass
            if self.logical_id is None or scoped is None:
                yield
            else:
                with scoped(self.logical_id):
                    yield
        finally:
            RUNNING_FUNCTION.reset(function_token)
            _ENV_SCOPE.reset(token)


_ENV_SCOPE: contextvars.ContextVar[FunctionEnvironment | None] = contextvars.ContextVar(
    "local_function_environment", default=None)


def running_function() -> str | None:
    """The template logical id of the function whose code runs in this context, whatever its template."""
    scope = _ENV_SCOPE.get()
    return scope.logical_id if scope is not None else None


class _ScopedEnviron(os._Environ):
    """`os.environ` as the running function sees it; outside any function, the process environment.

    Writes go to the process environment, as they would in the function's own process.
    """

    def __init__(self, original: Any) -> None:
        # the same storage and codecs as the original: both stay consistent whichever is written to
        self.__dict__.update(original.__dict__)

    def __getitem__(self, key: str) -> str:
        scope = _ENV_SCOPE.get()
        if scope is not None:
            if scope.own is not None and key in scope.own:
                return scope.own[key]
            if key in scope.hidden:
                raise KeyError(key)
        value: str = super().__getitem__(key)
        return value

    def _visible(self) -> list[str]:
        scope = _ENV_SCOPE.get()
        names = list(super().__iter__())
        if scope is None:
            return names
        own = dict(scope.own or {})
        return [n for n in names if n not in scope.hidden and n not in own] + list(own)

    def __iter__(self) -> Iterator[str]:
        return iter(self._visible())

    def __len__(self) -> int:
        return len(self._visible())

    def copy(self) -> dict[str, str]:
        return dict(self)


_install_lock = threading.Lock()


class _PerFunctionProviders(dict[str, Any]):
    """Powertools' registry of parameter providers, one per running function, as each has its own container
    in AWS: a secret the authorizer read is not in the api's cache (the api reads it itself, with its role)."""

    def __init__(self, initial: Mapping[str, Any]) -> None:
        super().__init__()
        self._by_function: dict[str | None, dict[str, Any]] = {None: dict(initial)}

    def _mine(self) -> dict[str, Any]:
        scope = _ENV_SCOPE.get()
        return self._by_function.setdefault(scope.logical_id if scope else None, {})

    def __contains__(self, key: object) -> bool:
        return key in self._mine()

    def __getitem__(self, key: str) -> Any:
        return self._mine()[key]

    def __setitem__(self, key: str, value: Any) -> None:
        self._mine()[key] = value

    def __delitem__(self, key: str) -> None:
        del self._mine()[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._mine())

    def __len__(self) -> int:
        return len(self._mine())

    def get(self, key: str, default: Any = None) -> Any:
        return self._mine().get(key, default)

    def keys(self) -> Any:
        return self._mine().keys()

    def items(self) -> Any:
        return self._mine().items()

    def values(self) -> Any:
        """Every function's providers (`clear_caches` clears them all)."""
        return [provider for providers in self._by_function.values() for provider in providers.values()]

    def clear(self) -> None:
        for providers in self._by_function.values():
            providers.clear()


def _isolate_powertools_providers() -> None:
    try:
        from aws_lambda_powertools.utilities.parameters import appconfig, base, constants, secrets, ssm
    except ImportError:  # the functions of a fixture template may not use Powertools
        return
    if isinstance(constants.DEFAULT_PROVIDERS, _PerFunctionProviders):
        return
    registry = _PerFunctionProviders(constants.DEFAULT_PROVIDERS)
    for module in (constants, base, secrets, ssm, appconfig):
        if hasattr(module, "DEFAULT_PROVIDERS"):
            module.DEFAULT_PROVIDERS = registry  # type: ignore[attr-defined]


def install_scoped_environ() -> None:
    """Replaces `os.environ` with the scoped view, gives each function its own Powertools parameter caches,
    and lets pool threads inherit their caller's context.

    Without the last part, work a handler hands to a `ThreadPoolExecutor` would run outside the
    function (the wrong environment, AWS calls attributed to nobody). Idempotent.
    """
    with _install_lock:
        _isolate_powertools_providers()
        if not isinstance(os.environ, _ScopedEnviron):
            os.environ = _ScopedEnviron(os.environ)  # noqa: B003 - same storage, so nothing needs clearing
        executor = concurrent.futures.ThreadPoolExecutor
        if not getattr(executor.submit, "_local_inherits_context", False):
            original_submit = executor.submit

            def submit(self: Any, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Any:
                return original_submit(self, contextvars.copy_context().run, fn, *args, **kwargs)

            submit._local_inherits_context = True  # type: ignore[attr-defined]
            executor.submit = submit  # type: ignore[method-assign]


def import_source(path: Path, module_name: str, extra_path: Path | None = None,
                  fresh_modules: tuple[str, ...] = ()) -> ModuleType:
    """Imports a file under `module_name`, as every function's entry point is called `app.py`.

    The function's own directory is on `sys.path` while it imports, as it is the task root in Lambda.
    `fresh_modules` are imported afresh for this file (another container's copy) and then set aside, so the
    process's own copies stay what every other importer gets.
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
        shared = {name: sys.modules.pop(name) for name in fresh_modules if name in sys.modules}
        try:
            spec.loader.exec_module(module)
        except BaseException:
            sys.modules.pop(module_name, None)
            raise
        finally:
            _restore_modules(fresh_modules, shared)
            # The layer stays importable (every function has it); the task root does not, so two
            # functions' sibling modules cannot shadow each other afterwards.
            if extra_path and str(extra_path) in added:
                sys.path.remove(str(extra_path))
    return module


def _restore_modules(names: tuple[str, ...], shared: Mapping[str, ModuleType]) -> None:
    """Puts back the process's copies of `names` (in `sys.modules` and on their packages) after a fresh import."""
    for name in names:
        sys.modules.pop(name, None)
        package, _, attribute = name.rpartition(".")
        if name in shared:
            sys.modules[name] = shared[name]
        if package in sys.modules:
            if name in shared:
                setattr(sys.modules[package], attribute, shared[name])
            elif hasattr(sys.modules[package], attribute):
                delattr(sys.modules[package], attribute)


def load_function(spec: FunctionSpec, name: str, *, template: Template | None = None,
                  environment: Mapping[str, str] | None = None, instance: int = 0,
                  init_lock: threading.Lock | None = None) -> LocalFunction:
    """Imports the function's handler, inside its own environment (`environment` over `os.environ`, with
    the variables only other functions of `template` declare hidden), and runs it there at every call.

    `instance` > 0 imports the code once more, as another container of the function: its module-level state
    (batch processor, connections, caches) is its own, so instances can run at the same time. Instances
    given the same `init_lock` run their first invocations one at a time (see `LocalFunction`).

    Raises `FunctionMissing` when the entry point does not exist yet.
    """
    source = spec.source_file
    if not source.is_file():
        raise FunctionMissing(f"{spec.logical_id}: {source} does not exist")
    module_name = f"local_function_{spec.logical_id}_{spec.module.replace('.', '_')}"
    if instance:
        module_name += f"_instance{instance}"
    # The layer's wiring caches what a container builds once (the sender's SMTP connections and dispatcher):
    # another instance gets its own copy of it, as it has its own module state.
    fresh = (WIRING_MODULE,) if instance else ()
    scope = FunctionEnvironment.for_function(template, spec.logical_id, environment) if template else None
    if scope is not None:
        with scope.active():
            module = import_source(source, module_name, extra_path=spec.code_dir, fresh_modules=fresh)
    else:
        module = import_source(source, module_name, extra_path=spec.code_dir, fresh_modules=fresh)
    handler = getattr(module, spec.handler, None)
    if not callable(handler):
        raise FunctionMissing(f"{spec.logical_id}: {source} has no callable {spec.handler!r}")
    function = LocalFunction(name=name, handler=handler, timeout_seconds=spec.timeout_seconds,
                             memory_mb=spec.memory_mb, logical_id=spec.logical_id, environment=environment,
                             template=template)
    function._scope = scope
    if init_lock is not None:
        function._init_lock = init_lock
    return function


def missing_function(name: str, reason: str) -> LocalFunction:
    """A stand-in that fails every call, so the rest of the stack still runs while a function is written."""

    def handler(event: Any, context: Any) -> Any:
        raise FunctionMissing(reason)

    return LocalFunction(name=name, handler=handler)
