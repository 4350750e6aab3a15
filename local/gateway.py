"""An HTTP front that behaves like API Gateway HTTP API with a Lambda REQUEST authorizer.

It gives the handlers the same payload format 2.0 events AWS gives them and answers with the same gateway
errors (`{"message": ...}`), so behaviour seen locally (a 401 that never reached the authorizer, a 413 for
an oversized body) is the behaviour deployed. What it deliberately reproduces:

- a missing or empty identity header is a 401 without invoking the authorizer;
- a simple-response denial is a 403; an authorizer raising exactly `Unauthorized` is a 401; any other
  authorizer failure is a 500;
- bodies over the HTTP API's 10 MB limit are a 413 without invoking anything;
- a handler crash is a 500 `{"message":"Internal Server Error"}`, never a Python traceback to the client.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import os
import re
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, unquote

from local.lambdas import Handler, LocalFunction
from local.template import LOCAL_ACCOUNT_ID, LOCAL_REGION, HttpRoute

MAX_PAYLOAD_BYTES = 10 * 1024 * 1024
"""HTTP API's request payload limit."""

DEFAULT_ROUTES = (
    HttpRoute("GET", "/health", authorized=False),
    HttpRoute("GET", "/openapi.json", authorized=False),
    HttpRoute("ANY", "/{proxy+}", authorized=True),
)
HTTP_API_METHODS = frozenset({"GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"})
"""Methods an HTTP API route can name; any other method matches no route, so API Gateway answers 404."""
LOCAL_PREFIX = "/_local/"
"""Paths the local stack answers itself (`local_paths`), never routed to the api function; not in AWS."""
_DRAIN_LIMIT = 64 * 1024 * 1024
_API_ID = "local"

log = logging.getLogger("local.gateway")


@dataclass
class GatewayResponse:
    status: int
    headers: list[tuple[str, str]]
    body: bytes


def _gateway_error(status: int, message: str) -> GatewayResponse:
    body = json.dumps({"message": message}).encode()
    return GatewayResponse(status, [("Content-Type", "application/json")], body)


class _CompiledRoute:
    """A route with API Gateway's matching: static paths before variables, greedy `{name+}` last."""

    def __init__(self, route: HttpRoute) -> None:
        self.route = route
        pattern = ""
        self.variables = 0
        self.greedy = False
        static = 0
        for segment in route.path.strip("/").split("/") if route.path != "/" else []:
            match = re.fullmatch(r"\{([A-Za-z0-9_.-]+)(\+?)\}", segment)
            if match:
                self.variables += 1
                self.greedy = self.greedy or bool(match.group(2))
                group = ".+" if match.group(2) else "[^/]+"
                pattern += f"/(?P<{_group_name(match.group(1))}>{group})"
                continue
            static += len(segment)
            pattern += "/" + re.escape(segment)
        self.names = {_group_name(name): name for name in re.findall(r"\{([A-Za-z0-9_.-]+)\+?\}", route.path)}
        self.regex = re.compile((pattern or "/") + "$")
        self.sort_key = (self.greedy, self.variables, -static, route.method == "ANY")

    def match(self, method: str, path: str) -> dict[str, str] | None:
        if self.route.method not in ("ANY", method):
            return None
        found = self.regex.match(path)
        if not found:
            return None
        return {self.names[key]: unquote(value) for key, value in found.groupdict().items()}


def _group_name(name: str) -> str:
    return "v_" + re.sub(r"[^A-Za-z0-9_]", "_", name)


def _join_pairs(pairs: Iterable[tuple[str, str]], lower: bool) -> dict[str, str]:
    """API Gateway v2 joins repeated headers and query parameters with commas."""
    joined: dict[str, str] = {}
    for key, value in pairs:
        key = key.lower() if lower else key
        joined[key] = f"{joined[key]},{value}" if key in joined else value
    return joined


def _as_function(handler: LocalFunction | Handler, name: str) -> LocalFunction:
    if isinstance(handler, LocalFunction):
        return handler
    return LocalFunction(name=name, handler=handler, timeout_seconds=30.0)


class HttpApiGateway:
    """Routes HTTP requests to the api function through the authorizer, as an HTTP API stage would."""

    def __init__(
        self,
        api: LocalFunction | Handler,
        authorizer: LocalFunction | Handler | None,
        *,
        routes: Sequence[HttpRoute] = DEFAULT_ROUTES,
        host: str = "127.0.0.1",
        port: int = 8000,
        identity_header: str = "X-API-Token",
        auth_cache_seconds: float | None = None,
        max_payload_bytes: int = MAX_PAYLOAD_BYTES,
        local_paths: Callable[[str, str, bytes], GatewayResponse | None] | None = None,
    ) -> None:
        """`local_paths(method, path, body)` answers requests under `LOCAL_PREFIX` (None: not its path)."""
        self.api = _as_function(api, "local-ApiFunction")
        self.local_paths = local_paths
        self.authorizer = _as_function(authorizer, "local-AuthorizerFunction") if authorizer else None
        self.routes = sorted((_CompiledRoute(r) for r in routes), key=lambda r: r.sort_key)
        self.host = host
        self.requested_port = port
        self.identity_header = identity_header.lower()
        if auth_cache_seconds is None:
            auth_cache_seconds = float(os.environ.get("MAIL_PROXY_LOCAL_AUTH_CACHE_SECONDS", "0") or 0)
        self.auth_cache_seconds = auth_cache_seconds
        self.max_payload_bytes = max_payload_bytes
        self._auth_cache: dict[str, tuple[float, bool, dict[str, Any]]] = {}
        self._auth_cache_lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle --------------------------------------------------------------------------------------

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("gateway is not started")
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> None:
        """Binds and serves on a background thread; returns once the socket accepts connections."""
        self._server = ThreadingHTTPServer((self.host, self.requested_port), _make_request_handler(self))
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.1},
            name="local-gateway",
            daemon=True,
        )
        self._thread.start()

    def stop(self) -> None:
        """Stops accepting requests; requests in flight finish on their daemon threads."""
        if self._server is None:
            return
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._server = None

    # -- one request ------------------------------------------------------------------------------------

    def handle(
        self,
        method: str,
        target: str,
        headers: Sequence[tuple[str, str]],
        body: bytes,
        source_ip: str = "127.0.0.1",
    ) -> GatewayResponse:
        """Runs one request through route matching, the authorizer and the api function."""
        raw_path, _, raw_query = target.partition("?")
        raw_path = raw_path or "/"
        if self.local_paths is not None and raw_path.startswith(LOCAL_PREFIX):
            answered = self.local_paths(method, unquote(raw_path), body)
            if answered is not None:
                return answered
        matched = self._match(method, unquote(raw_path)) if method in HTTP_API_METHODS else None
        if matched is None:
            return _gateway_error(404, "Not Found")
        route, path_parameters = matched
        request_context = self._request_context(method, raw_path, headers, source_ip, route.route_key)
        event = self._proxy_event(route, raw_path, raw_query, headers, path_parameters, request_context, body)

        if route.authorized:
            denied = self._authorize(event, route)
            if isinstance(denied, GatewayResponse):
                return denied
            request_context["authorizer"] = {"lambda": denied}

        try:
            result = self.api.invoke(event)
        except Exception:
            log.exception("api function failed on %s %s", method, raw_path)
            return _gateway_error(500, "Internal Server Error")
        try:
            return _integration_response(result)
        except (TypeError, ValueError, binascii.Error):
            log.exception("api function returned a malformed response for %s %s", method, raw_path)
            return _gateway_error(500, "Internal Server Error")

    def _match(self, method: str, path: str) -> tuple[HttpRoute, dict[str, str]] | None:
        for compiled in self.routes:
            parameters = compiled.match(method, path)
            if parameters is not None:
                return compiled.route, parameters
        return None

    def _authorize(self, event: dict[str, Any], route: HttpRoute) -> dict[str, Any] | GatewayResponse:
        """The authorizer's context when allowed, or the gateway's error response."""
        token = event["headers"].get(self.identity_header, "")
        if not token:
            return _gateway_error(401, "Unauthorized")
        cached = self._cached_decision(token)
        if cached is not None:
            allowed, context = cached
        else:
            if self.authorizer is None:
                log.error("route %s needs an authorizer but none is configured", route.route_key)
                return _gateway_error(500, "Internal Server Error")
            auth_event = self._authorizer_event(event, route, token)
            try:
                decision = self.authorizer.invoke(auth_event)
            except Exception as error:
                if str(error) == "Unauthorized":
                    return _gateway_error(401, "Unauthorized")
                log.exception("authorizer failed")
                return _gateway_error(500, "Internal Server Error")
            parsed = _authorizer_decision(decision)
            if parsed is None:
                log.error("authorizer returned a malformed response: %r", decision)
                return _gateway_error(500, "Internal Server Error")
            allowed, context = parsed
            self._remember_decision(token, allowed, context)
        if not allowed:
            return _gateway_error(403, "Forbidden")
        return context

    def _cached_decision(self, token: str) -> tuple[bool, dict[str, Any]] | None:
        if self.auth_cache_seconds <= 0:
            return None
        with self._auth_cache_lock:
            entry = self._auth_cache.get(token)
            if entry is None or entry[0] < time.monotonic():
                return None
            return entry[1], entry[2]

    def _remember_decision(self, token: str, allowed: bool, context: dict[str, Any]) -> None:
        if self.auth_cache_seconds <= 0:
            return
        with self._auth_cache_lock:
            self._auth_cache[token] = (time.monotonic() + self.auth_cache_seconds, allowed, context)

    # -- events -----------------------------------------------------------------------------------------

    def _request_context(
        self,
        method: str,
        raw_path: str,
        headers: Sequence[tuple[str, str]],
        source_ip: str,
        route_key: str,
    ) -> dict[str, Any]:
        lowered = _join_pairs(headers, lower=True)
        domain = lowered.get("host", f"{self.host}:{self.requested_port}")
        now = time.time()
        return {
            "accountId": LOCAL_ACCOUNT_ID,
            "apiId": _API_ID,
            "domainName": domain,
            "domainPrefix": domain.split(".")[0],
            "http": {
                "method": method,
                "path": raw_path,
                "protocol": "HTTP/1.1",
                "sourceIp": source_ip,
                "userAgent": lowered.get("user-agent", ""),
            },
            "requestId": uuid.uuid4().hex[:16],
            "routeKey": route_key,
            "stage": "$default",
            "time": time.strftime("%d/%b/%Y:%H:%M:%S +0000", time.gmtime(now)),
            "timeEpoch": int(now * 1000),
        }

    def _proxy_event(
        self,
        route: HttpRoute,
        raw_path: str,
        raw_query: str,
        headers: Sequence[tuple[str, str]],
        path_parameters: dict[str, str],
        request_context: dict[str, Any],
        body: bytes,
    ) -> dict[str, Any]:
        cookie_pairs = [value for key, value in headers if key.lower() == "cookie"]
        event: dict[str, Any] = {
            "version": "2.0",
            "routeKey": route.route_key,
            "rawPath": raw_path,
            "rawQueryString": raw_query,
            "headers": _join_pairs(((k, v) for k, v in headers if k.lower() != "cookie"), lower=True),
            "requestContext": request_context,
            "isBase64Encoded": False,
        }
        if cookie_pairs:
            event["cookies"] = [c.strip() for value in cookie_pairs for c in value.split(";") if c.strip()]
        if raw_query:
            event["queryStringParameters"] = _join_pairs(parse_qsl(raw_query, keep_blank_values=True), False)
        if path_parameters:
            event["pathParameters"] = path_parameters
        if body:
            try:
                event["body"] = body.decode("utf-8")
            except UnicodeDecodeError:
                event["body"] = base64.b64encode(body).decode("ascii")
                event["isBase64Encoded"] = True
        return event

    def _authorizer_event(self, event: dict[str, Any], route: HttpRoute, token: str) -> dict[str, Any]:
        context = event["requestContext"]
        route_arn = (
            f"arn:aws:execute-api:{LOCAL_REGION}:{LOCAL_ACCOUNT_ID}:{_API_ID}/$default/"
            f"{context['http']['method']}{event['rawPath']}"
        )
        auth_event = {
            "version": "2.0",
            "type": "REQUEST",
            "routeArn": route_arn,
            "identitySource": [token],
            "routeKey": route.route_key,
            "rawPath": event["rawPath"],
            "rawQueryString": event["rawQueryString"],
            "headers": event["headers"],
            "requestContext": dict(context),
        }
        for optional in ("cookies", "queryStringParameters", "pathParameters"):
            if optional in event:
                auth_event[optional] = event[optional]
        return auth_event


def _authorizer_decision(decision: Any) -> tuple[bool, dict[str, Any]] | None:
    """Reads a simple response (`isAuthorized`) or, failing that, an IAM policy response."""
    if not isinstance(decision, dict):
        return None
    context = decision.get("context") or {}
    if not isinstance(context, dict):
        return None
    if "isAuthorized" in decision:
        allowed = decision["isAuthorized"]
        return (allowed, context) if isinstance(allowed, bool) else None
    policy = decision.get("policyDocument")
    if isinstance(policy, dict):
        statements = policy.get("Statement") or []
        effects = {str(s.get("Effect", "")).lower() for s in statements if isinstance(s, dict)}
        return ("allow" in effects and "deny" not in effects), context
    return None


def _integration_response(result: Any) -> GatewayResponse:
    """Turns a payload 2.0 Lambda result into the HTTP response API Gateway would send."""
    if not (isinstance(result, dict) and "statusCode" in result):
        # A result without statusCode is sent as JSON with 200, as HTTP API does for format 2.0.
        body = json.dumps(result).encode()
        return GatewayResponse(200, [("Content-Type", "application/json")], body)
    status = int(result["statusCode"])
    if not 100 <= status <= 599:
        raise ValueError(f"invalid statusCode {status}")
    headers: list[tuple[str, str]] = []
    for key, value in (result.get("headers") or {}).items():
        headers.append((str(key), str(value)))
    for key, values in (result.get("multiValueHeaders") or {}).items():
        headers.extend((str(key), str(value)) for value in values)
    headers.extend(("Set-Cookie", str(cookie)) for cookie in result.get("cookies") or [])
    raw = result.get("body")
    if raw is None:
        body = b""
    elif result.get("isBase64Encoded"):
        body = base64.b64decode(raw, validate=True)
    else:
        body = str(raw).encode("utf-8")
    return GatewayResponse(status, headers, body)


def _make_request_handler(gateway: HttpApiGateway) -> type[BaseHTTPRequestHandler]:
    class RequestHandler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True  # headers and body go out as separate writes: no 40 ms delayed-ACK stall
        server_version = "local-http-api"
        timeout = 60  # idle keep-alive connections are closed rather than kept forever

        def _serve(self) -> None:
            started = time.monotonic()
            response = self._read_and_handle()
            self.send_response(response.status)
            names = {name.lower() for name, _ in response.headers}
            for name, value in response.headers:
                if name.lower() not in ("content-length", "connection", "transfer-encoding"):
                    self.send_header(name, value)
            if "content-type" not in names and response.body:
                self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(response.body)))
            self.send_header("apigw-requestid", uuid.uuid4().hex[:16])
            if self.close_connection:
                self.send_header("Connection", "close")
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(response.body)
            # the stack's own paths (the stand-in application) log what they received instead
            log.log(
                logging.DEBUG if self.path.startswith(LOCAL_PREFIX) else logging.INFO,
                "%s %s %d %.0fms",
                self.command,
                self.path,
                response.status,
                (time.monotonic() - started) * 1000,
            )

        def _read_and_handle(self) -> GatewayResponse:
            length_header = self.headers.get("Content-Length")
            if length_header is None:
                if self.headers.get("Transfer-Encoding"):
                    self._drain_chunked()
                    return _gateway_error(411, "Length Required")
                length = 0
            else:
                try:
                    length = int(length_header)
                    if length < 0:
                        raise ValueError(length)
                except ValueError:
                    self.close_connection = True
                    return _gateway_error(400, "Bad Request")
            if length > gateway.max_payload_bytes:
                self._drain(length)
                return _gateway_error(413, "Request Entity Too Large")
            body = self.rfile.read(length) if length else b""
            if len(body) != length:
                self.close_connection = True
                return _gateway_error(400, "Bad Request")
            headers = list(self.headers.items())
            return gateway.handle(self.command, self.path, headers, body, self.client_address[0])

        def _drain(self, length: int) -> None:
            """Reads an oversized body away so the client sees the 413 rather than a reset."""
            self.close_connection = True
            remaining = min(length, _DRAIN_LIMIT)
            while remaining > 0:
                chunk = self.rfile.read(min(remaining, 1 << 20))
                if not chunk:
                    break
                remaining -= len(chunk)

        def _drain_chunked(self) -> None:
            """Reads a chunked body away (bounded), so the client is not cut off while still sending it."""
            self.close_connection = True
            remaining = _DRAIN_LIMIT
            while remaining > 0:
                line = self.rfile.readline(1024)
                try:
                    size = int(line.split(b";")[0].strip(), 16)
                except ValueError:
                    return
                if size == 0:
                    while self.rfile.readline(1024) not in (b"\r\n", b"\n", b""):
                        pass  # trailer fields
                    return
                remaining -= len(self.rfile.read(min(size, remaining)))
                self.rfile.readline(1024)

        do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = do_HEAD = _serve

        def __getattr__(self, name: str) -> Any:
            # any other method (PROPFIND, TRACE, made-up ones) gets the gateway's 404, not http.server's 501
            if name.startswith("do_"):
                return self._serve
            raise AttributeError(name)

        def log_message(self, format: str, *args: Any) -> None:
            log.debug(format, *args)

    return RequestHandler
