"""``MailProxyClient``: one typed method per route of the proxy's HTTP contract, over the standard library.

Retries are bounded and only where repeating the request cannot do anything twice: reads, PUT and DELETE,
the POST routes that are idempotent by contract (an account upsert, run-now, suspend, activate, delete and
clean-up of messages) and ``add_messages``, which always carries an ``Idempotency-Key`` so the proxy
answers a repeated call with its first answer. Creating a tenant and issuing an API key are never retried.
A retry follows a 429 (after its ``Retry-After``), a 5xx or a failed connection, with exponential backoff
and jitter.
"""

from __future__ import annotations

import email.utils
import json
import random
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from http.client import HTTPException
from typing import Any, cast

from mail_proxy_client import __version__
from mail_proxy_client.errors import (
    ConnectionFailed,
    MailProxyError,
    ServerError,
    Throttled,
    ValidationFailed,
    error_for_status,
)
from mail_proxy_client.records import (
    FINAL_STATUSES,
    Account,
    AddMessagesResult,
    BatchState,
    CommandEntry,
    DeleteResult,
    MessagePage,
    MessageRecord,
    Suppression,
    SuppressionPage,
    Tenant,
    TenantCreated,
)

DEFAULT_TIMEOUT_SECONDS = 30.0
DEFAULT_RETRIES = 3

# Every route of the contract and the method that calls it (a test compares this with /openapi.json).
ROUTES: dict[tuple[str, str], str] = {
    ("GET", "/health"): "health",
    ("GET", "/status"): "status",
    ("GET", "/openapi.json"): "openapi",
    ("POST", "/tenant"): "create_tenant",
    ("GET", "/tenants"): "list_tenants",
    ("GET", "/tenant/{tenant_id}"): "get_tenant",
    ("PUT", "/tenant/{tenant_id}"): "update_tenant",
    ("DELETE", "/tenant/{tenant_id}"): "delete_tenant",
    ("POST", "/tenant/{tenant_id}/api-key"): "new_api_key",
    ("DELETE", "/tenant/{tenant_id}/api-key"): "revoke_api_key",
    ("POST", "/tenant/{tenant_id}/suspend"): "suspend_tenant",
    ("POST", "/tenant/{tenant_id}/resume"): "resume_tenant",
    ("POST", "/tenant/{tenant_id}/signing-secret"): "rotate_signing_secret",
    ("POST", "/account"): "add_account",
    ("GET", "/accounts"): "list_accounts",
    ("GET", "/account/{account_id}"): "get_account",
    ("DELETE", "/account/{account_id}"): "delete_account",
    ("POST", "/commands/add-messages"): "add_messages",
    ("GET", "/messages"): "list_messages",
    ("GET", "/messages/{message_id}"): "get_message",
    ("POST", "/commands/delete-messages"): "delete_messages",
    ("POST", "/commands/cleanup-messages"): "cleanup_messages",
    ("POST", "/commands/run-now"): "run_now",
    ("POST", "/commands/suspend"): "suspend",
    ("POST", "/commands/activate"): "activate",
    ("GET", "/command-log"): "command_log",
    ("GET", "/suppressions"): "list_suppressions",
    ("POST", "/suppressions"): "add_suppression",
    ("DELETE", "/suppressions/{address}"): "remove_suppression",
    ("GET", "/tenant/{tenant_id}/dkim"): "list_dkim_domains",
    ("POST", "/tenant/{tenant_id}/dkim"): "register_dkim_domain",
    ("GET", "/tenant/{tenant_id}/dkim/{domain}"): "get_dkim_domain",
    ("DELETE", "/tenant/{tenant_id}/dkim/{domain}"): "remove_dkim_domain",
    ("POST", "/tenant/{tenant_id}/dkim/{domain}/rotate"): "rotate_dkim_key",
    ("POST", "/tenant/{tenant_id}/dkim/{domain}/selectors/{selector}/activate"): "activate_dkim_selector",
    ("DELETE", "/tenant/{tenant_id}/dkim/{domain}/selectors/{selector}"): "remove_dkim_selector",
}
# The reason the proxy gives for each message of an admin-token submission that names no tenant.
ADMIN_WITHOUT_TENANT = "tenant_id is required with the admin token"
# Routes a client program has no use for: the public download link that rewritten messages carry, and the
# one-click unsubscribe link and page, which are for the recipients (and their mailbox providers).
NOT_CLIENT_ROUTES = frozenset({("GET", "/files/{token}"), ("GET", "/unsubscribe/{token}"),
                               ("POST", "/unsubscribe/{token}")})


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how long to wait: ``retries`` repeats at most, the n-th after about
    ``backoff * 2**n`` seconds (half of it fixed, half random), never more than ``max_backoff``; a
    ``Retry-After`` is honoured unless it exceeds ``max_retry_after``, in which case the error is raised."""

    retries: int = DEFAULT_RETRIES
    backoff: float = 0.5
    max_backoff: float = 20.0
    max_retry_after: float = 120.0

    def delay(self, attempt: int, error: MailProxyError) -> float | None:
        """Seconds to wait before repeat number ``attempt + 1``, or None to give up with ``error``."""
        if attempt >= self.retries or not isinstance(error, Throttled | ServerError | ConnectionFailed):
            return None
        if isinstance(error, Throttled) and error.retry_after is not None:
            if error.retry_after > self.max_retry_after:
                return None
            return float(error.retry_after) + random.uniform(0, self.backoff)
        ceiling = min(self.max_backoff, self.backoff * 2.0**attempt)
        return ceiling / 2 + random.uniform(0, ceiling / 2)


def parse_retry_after(value: str | None) -> float | None:
    """``Retry-After`` in seconds, from either of its forms (a number, or an HTTP date)."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


class MailProxyClient:
    """A client of one proxy with one token (the admin token, or a tenant's).

    Methods that act on a tenant's data take ``tenant_id``: a tenant token may leave it out (its own tenant
    is used), the admin token must give it. Every method returns the JSON answer as plain ``dict``/``list``
    (typed in ``mail_proxy_client.records``) and raises a ``MailProxyError`` subclass for an error answer.
    """

    def __init__(self, base_url: str, token: str | None, *, timeout: float = DEFAULT_TIMEOUT_SECONDS,
                 retries: int = DEFAULT_RETRIES, retry_policy: RetryPolicy | None = None,
                 sleep: Callable[[float], None] = time.sleep,
                 on_retry: Callable[[MailProxyError, float, int], None] | None = None) -> None:
        if not base_url.startswith(("http://", "https://")):
            raise ValueError(f"base_url must start with http:// or https://, not {base_url!r}")
        self.base_url = base_url.rstrip("/")
        self.token = token
        self.timeout = timeout
        self.retry_policy = retry_policy or RetryPolicy(retries=retries)
        self._sleep = sleep
        # Told of each retry before its wait: the error, the seconds it waits, the retry's number (from 1).
        self.on_retry = on_retry

    def __repr__(self) -> str:
        return f"MailProxyClient({self.base_url!r})"

    # ----------------------------------------------------------------------------------------- service

    def health(self) -> dict[str, Any]:
        """``GET /health``: ``{"status": "ok"}``; needs no token."""
        return dict(self._call("GET", "/health"))

    def status(self) -> dict[str, Any]:
        """``GET /status``: ``{"ok": true, "active": true}`` when the token is valid."""
        return dict(self._call("GET", "/status"))

    def openapi(self) -> dict[str, Any]:
        """``GET /openapi.json``: the OpenAPI document generated from the proxy's code."""
        return dict(self._call("GET", "/openapi.json"))

    # ----------------------------------------------------------------------------------------- tenants

    def create_tenant(self, tenant_id: str, *, name: str | None = None, token: str | None = None,
                      client_base_url: str | None = None, client_sync_path: str | None = None,
                      client_auth: Mapping[str, Any] | None = None, rate_limits: Mapping[str, Any] | None = None,
                      active: bool | None = None, **fields: Any) -> TenantCreated:
        """``POST /tenant`` (admin). The answer's ``api_key`` is shown only this once. Not retried: a
        repeated create would answer 409."""
        body = _without_none({"tenant_id": tenant_id, "name": name, "token": token,
                              "client_base_url": client_base_url, "client_sync_path": client_sync_path,
                              "client_auth": client_auth, "rate_limits": rate_limits, "active": active, **fields})
        return cast(TenantCreated, self._call("POST", "/tenant", body=body, retry_safe=False))

    def list_tenants(self, *, active_only: bool = False) -> list[Tenant]:
        """``GET /tenants`` (admin)."""
        answer = self._call("GET", "/tenants", query={"active_only": active_only or None})
        return cast(list[Tenant], answer["tenants"])

    def get_tenant(self, tenant_id: str) -> Tenant:
        """``GET /tenant/{id}`` (admin or that tenant); never shows the token or ``client_auth`` secrets."""
        return cast(Tenant, self._call("GET", f"/tenant/{_segment(tenant_id)}"))

    def update_tenant(self, tenant_id: str, **fields: Any) -> None:
        """``PUT /tenant/{id}``: any tenant field but ``tenant_id`` (``name``, ``client_base_url``,
        ``client_auth``, ``rate_limits``, ``active``, ...)."""
        self._call("PUT", f"/tenant/{_segment(tenant_id)}", body=fields)

    def delete_tenant(self, tenant_id: str) -> None:
        """``DELETE /tenant/{id}`` (admin): removes its accounts and messages too."""
        self._call("DELETE", f"/tenant/{_segment(tenant_id)}")

    def new_api_key(self, tenant_id: str) -> str:
        """``POST /tenant/{id}/api-key`` (admin): a new key that replaces the old one. Not retried: a lost
        answer would leave a key nobody knows (call it again)."""
        answer = self._call("POST", f"/tenant/{_segment(tenant_id)}/api-key", retry_safe=False)
        return str(answer["api_key"])

    def rotate_signing_secret(self, tenant_id: str, *, grace_seconds: int | None = None) -> dict[str, Any]:
        """``POST /tenant/{id}/signing-secret``: a new secret for delivery-report signatures; reports carry a
        signature with the old one too for ``grace_seconds`` (the proxy's default: a day). Not retried."""
        return dict(self._call("POST", f"/tenant/{_segment(tenant_id)}/signing-secret",
                               query={"grace_seconds": grace_seconds}, retry_safe=False))

    def revoke_api_key(self, tenant_id: str) -> None:
        """``DELETE /tenant/{id}/api-key`` (admin): the tenant's key stops working."""
        self._call("DELETE", f"/tenant/{_segment(tenant_id)}/api-key")

    def suspend_tenant(self, tenant_id: str, *, reason: str | None = None) -> None:
        """``POST /tenant/{id}/suspend`` (admin): the tenant's token gets 403 and its messages wait until
        ``resume_tenant``; the tenant cannot lift it itself."""
        self._call("POST", f"/tenant/{_segment(tenant_id)}/suspend",
                   body={"reason": reason} if reason is not None else None)

    def resume_tenant(self, tenant_id: str) -> None:
        """``POST /tenant/{id}/resume`` (admin): lifts an administrator's suspension and a reputation pause."""
        self._call("POST", f"/tenant/{_segment(tenant_id)}/resume")

    # ---------------------------------------------------------------------------------------- accounts

    def add_account(self, account_id: str, host: str, port: int, *, user: str | None = None,
                    password: str | None = None, tls: str | None = None, tenant_id: str | None = None,
                    limit_per_minute: int | None = None, limit_per_hour: int | None = None,
                    limit_per_day: int | None = None, limit_behavior: str | None = None,
                    **fields: Any) -> None:
        """``POST /account``: creates or replaces the SMTP account ``account_id``. ``tls`` is ``none``,
        ``starttls`` (the proxy's default) or ``ssl``; the password is encrypted at once and never returned."""
        body = _without_none({"id": account_id, "tenant_id": tenant_id, "host": host, "port": port,
                              "user": user, "password": password, "tls": tls,
                              "limit_per_minute": limit_per_minute, "limit_per_hour": limit_per_hour,
                              "limit_per_day": limit_per_day, "limit_behavior": limit_behavior, **fields})
        self._call("POST", "/account", body=body)

    def list_accounts(self, *, tenant_id: str | None = None) -> list[Account]:
        """``GET /accounts``."""
        answer = self._call("GET", "/accounts", query={"tenant_id": tenant_id})
        return cast(list[Account], answer["accounts"])

    def get_account(self, account_id: str, *, tenant_id: str | None = None) -> Account:
        """``GET /account/{id}``."""
        return cast(Account, self._call("GET", f"/account/{_segment(account_id)}", query={"tenant_id": tenant_id}))

    def delete_account(self, account_id: str, *, tenant_id: str | None = None) -> None:
        """``DELETE /account/{id}``."""
        self._call("DELETE", f"/account/{_segment(account_id)}", query={"tenant_id": tenant_id})

    # ---------------------------------------------------------------------------------------- messages

    def add_messages(self, messages: Iterable[Mapping[str, Any]], *, default_priority: int | str | None = None,
                     tenant_id: str | None = None, idempotency_key: str | None = None) -> AddMessagesResult:
        """``POST /commands/add-messages`` (at most 1,000 messages a call).

        Each message is validated on its own: the answer's ``rejected`` lists ``{"id", "reason"}`` for the
        invalid ones while the others are queued, so check it. The call carries an ``Idempotency-Key``
        (a new UUID unless ``idempotency_key`` is given), which makes its retries safe: a repeated request
        gets the first answer. Give your own key to make a retry of the *whole call* safe across processes.

        With the admin token, ``tenant_id`` (or a ``tenant_id`` in every message) is required: a call that
        names no tenant raises ``ValidationFailed``, as ``get_message`` does, instead of answering with every
        message rejected.
        """
        body = _without_none({"messages": [dict(m) for m in messages], "default_priority": default_priority})
        key = idempotency_key or uuid.uuid4().hex
        answer = self._call("POST", "/commands/add-messages", query={"tenant_id": tenant_id}, body=body,
                            headers={"Idempotency-Key": key})
        rejected = answer.get("rejected") or []
        if (tenant_id is None and not answer.get("queued") and rejected
                and all(ADMIN_WITHOUT_TENANT in str(item.get("reason", "")) for item in rejected)):
            raise ValidationFailed(f"{ADMIN_WITHOUT_TENANT}: pass add_messages(..., tenant_id=...) "
                                   "(nothing was queued)", status=422, method="POST",
                                   url=self.base_url + "/commands/add-messages")
        return cast(AddMessagesResult, answer)

    def list_messages(self, *, tenant_id: str | None = None, status: str | None = None, active_only: bool = False,
                      include_history: bool = False, limit: int | None = None, cursor: str | None = None,
                      recipient: str | None = None, subject: str | None = None, batch_code: str | None = None,
                      since_ts: int | None = None, until_ts: int | None = None) -> MessagePage:
        """``GET /messages``: one page, ``{"messages": [...], "next_cursor": ...}``, oldest first. The search
        filters (``recipient`` in to/cc/bcc, ``subject`` text, ``batch_code``, creation time ``since_ts`` ..
        ``until_ts`` in epoch seconds) combine; pass the same ones with the cursor. ``iter_messages`` walks
        every page."""
        query = {"tenant_id": tenant_id, "status": status, "active_only": active_only or None,
                 "include_history": include_history or None, "limit": limit, "cursor": cursor,
                 "recipient": recipient, "subject": subject, "batch_code": batch_code, "since_ts": since_ts,
                 "until_ts": until_ts}
        return cast(MessagePage, self._call("GET", "/messages", query=query))

    def iter_messages(self, *, tenant_id: str | None = None, status: str | None = None, active_only: bool = False,
                      include_history: bool = False, page_size: int = 100, max_items: int | None = None,
                      **search: Any) -> Iterator[MessageRecord]:
        """Every message matching the filters (``search``: those of ``list_messages``), following
        ``next_cursor`` page by page; stops after ``max_items`` if given, and if the proxy ever hands back a
        cursor it gave before."""
        cursor: str | None = None
        seen: set[str] = set()
        yielded = 0
        while True:
            page = self.list_messages(tenant_id=tenant_id, status=status, active_only=active_only,
                                      include_history=include_history, limit=page_size, cursor=cursor, **search)
            for record in page["messages"]:
                if max_items is not None and yielded >= max_items:
                    return
                yield record
                yielded += 1
            cursor = page.get("next_cursor")
            if not cursor or cursor in seen:
                return
            seen.add(cursor)

    def get_message(self, message_id: str, *, tenant_id: str | None = None) -> MessageRecord:
        """``GET /messages/{id}``: the record with its ``history`` of events, oldest first."""
        return cast(MessageRecord, self._call("GET", f"/messages/{_segment(message_id)}",
                                              query={"tenant_id": tenant_id}))

    def delete_messages(self, ids: Iterable[str], *, tenant_id: str | None = None) -> DeleteResult:
        """``POST /commands/delete-messages``: ``{"removed": n, "not_found": [...], "unauthorized": [...],
        "in_flight": [...]}`` (``in_flight``: being sent, not removed)."""
        answer = self._call("POST", "/commands/delete-messages", query={"tenant_id": tenant_id},
                            body={"ids": list(ids)})
        return cast(DeleteResult, answer)

    def cleanup_messages(self, *, older_than_seconds: int | None = None, tenant_id: str | None = None) -> int:
        """``POST /commands/cleanup-messages``: removes final messages older than that (the proxy's
        retention, 7 days, if not given); returns how many."""
        answer = self._call("POST", "/commands/cleanup-messages", query={"tenant_id": tenant_id},
                            body=_without_none({"older_than_seconds": older_than_seconds}))
        return int(answer["removed"])

    def wait_for_message(self, message_id: str, *, tenant_id: str | None = None,
                         statuses: Iterable[str] = FINAL_STATUSES, timeout: float = 60.0,
                         poll_seconds: float = 0.5,
                         on_poll: Callable[[MessageRecord], None] | None = None) -> MessageRecord:
        """Polls ``get_message`` until the status is one of ``statuses`` (by default a final one) or
        ``timeout`` passes; returns the last record either way, so check its ``status``. ``on_poll`` sees
        every record read (to show progress)."""
        wanted = set(statuses)
        deadline = time.monotonic() + timeout
        while True:
            record = self.get_message(message_id, tenant_id=tenant_id)
            if on_poll is not None:
                on_poll(record)
            if record.get("status") in wanted or time.monotonic() >= deadline:
                return record
            self._sleep(min(poll_seconds, max(0.0, deadline - time.monotonic())))

    # ------------------------------------------------------------------------------------ suppressions

    def list_suppressions(self, *, tenant_id: str | None = None, limit: int | None = None,
                          cursor: str | None = None) -> SuppressionPage:
        """``GET /suppressions``: one page of the addresses the tenant's messages are not sent to (hard
        bounces and manual entries), ``{"suppressions": [...], "next_cursor": ...}``."""
        answer = self._call("GET", "/suppressions", query={"tenant_id": tenant_id, "limit": limit, "cursor": cursor})
        return cast(SuppressionPage, answer)

    def iter_suppressions(self, *, tenant_id: str | None = None, page_size: int = 100) -> Iterator[Suppression]:
        """Every suppressed address, page by page."""
        cursor: str | None = None
        seen: set[str] = set()
        while True:
            page = self.list_suppressions(tenant_id=tenant_id, limit=page_size, cursor=cursor)
            yield from page["suppressions"]
            cursor = page.get("next_cursor")
            if not cursor or cursor in seen:
                return
            seen.add(cursor)

    def add_suppression(self, address: str, *, reason: str | None = None, expires_ts: int | None = None,
                        tenant_id: str | None = None) -> None:
        """``POST /suppressions``: messages to ``address`` are not sent (until ``expires_ts``, if given)."""
        self._call("POST", "/suppressions", query={"tenant_id": tenant_id},
                   body=_without_none({"address": address, "reason": reason, "expires_ts": expires_ts}))

    def remove_suppression(self, address: str, *, tenant_id: str | None = None) -> None:
        """``DELETE /suppressions/{address}``: messages to ``address`` are sent again."""
        self._call("DELETE", f"/suppressions/{_segment(address)}", query={"tenant_id": tenant_id})

    # -------------------------------------------------------------------------------------------- DKIM

    def list_dkim_domains(self, tenant_id: str) -> list[dict[str, Any]]:
        """``GET /tenant/{id}/dkim``: the tenant's signing domains, each with its selectors and DNS records."""
        return list(self._call("GET", f"/tenant/{_segment(tenant_id)}/dkim")["domains"])

    def register_dkim_domain(self, tenant_id: str, domain: str, *, selector: str | None = None) -> dict[str, Any]:
        """``POST /tenant/{id}/dkim``: a new key for ``domain``; publish the answer's TXT record, then mail
        from that domain is signed. Not retried (a repeat answers 409 once the first was stored)."""
        return dict(self._call("POST", f"/tenant/{_segment(tenant_id)}/dkim",
                               body=_without_none({"domain": domain, "selector": selector}), retry_safe=False))

    def get_dkim_domain(self, tenant_id: str, domain: str) -> dict[str, Any]:
        """``GET /tenant/{id}/dkim/{domain}``: one signing domain and its selectors."""
        return dict(self._call("GET", f"/tenant/{_segment(tenant_id)}/dkim/{_segment(domain)}"))

    def remove_dkim_domain(self, tenant_id: str, domain: str) -> None:
        """``DELETE /tenant/{id}/dkim/{domain}``: stop signing, forget its keys."""
        self._call("DELETE", f"/tenant/{_segment(tenant_id)}/dkim/{_segment(domain)}")

    def rotate_dkim_key(self, tenant_id: str, domain: str, *, selector: str | None = None,
                        activate: bool = True) -> dict[str, Any]:
        """``POST /tenant/{id}/dkim/{domain}/rotate``: a new key under a new selector (signing with it at once
        unless ``activate=False``: publish its record first). Not retried."""
        return dict(self._call("POST", f"/tenant/{_segment(tenant_id)}/dkim/{_segment(domain)}/rotate",
                               body=_without_none({"selector": selector, "activate": activate}), retry_safe=False))

    def activate_dkim_selector(self, tenant_id: str, domain: str, selector: str) -> dict[str, Any]:
        """``POST .../selectors/{selector}/activate``: sign the domain's mail with that selector's key."""
        return dict(self._call("POST", f"/tenant/{_segment(tenant_id)}/dkim/{_segment(domain)}/selectors/"
                                       f"{_segment(selector)}/activate"))

    def remove_dkim_selector(self, tenant_id: str, domain: str, selector: str) -> dict[str, Any]:
        """``DELETE .../selectors/{selector}``: drop a retired selector (409 while it still signs)."""
        return dict(self._call("DELETE", f"/tenant/{_segment(tenant_id)}/dkim/{_segment(domain)}/selectors/"
                                         f"{_segment(selector)}"))

    # ---------------------------------------------------------------------------------------- commands

    def run_now(self, *, tenant_id: str | None = None) -> None:
        """``POST /commands/run-now``: due messages are queued and reports synced now."""
        self._call("POST", "/commands/run-now", query={"tenant_id": tenant_id})

    def suspend(self, *, tenant_id: str | None = None, batch_code: str | None = None) -> BatchState:
        """``POST /commands/suspend``: holds one batch (or, without ``batch_code``, every message)."""
        return cast(BatchState, self._call("POST", "/commands/suspend",
                                           query={"tenant_id": tenant_id, "batch_code": batch_code}))

    def activate(self, *, tenant_id: str | None = None, batch_code: str | None = None) -> BatchState:
        """``POST /commands/activate``: releases one batch (or, without ``batch_code``, all of them)."""
        return cast(BatchState, self._call("POST", "/commands/activate",
                                           query={"tenant_id": tenant_id, "batch_code": batch_code}))

    def command_log(self, *, tenant_id: str | None = None, since_ts: int | None = None,
                    until_ts: int | None = None, limit: int | None = None) -> list[CommandEntry]:
        """``GET /command-log`` (admin): the commands the proxy carried out, oldest first."""
        answer = self._call("GET", "/command-log", query={"tenant_id": tenant_id, "since_ts": since_ts,
                                                          "until_ts": until_ts, "limit": limit})
        return cast(list[CommandEntry], answer["commands"])

    # ---------------------------------------------------------------------------------------- transport

    def _call(self, method: str, path: str, *, query: Mapping[str, Any] | None = None, body: Any = None,
              headers: Mapping[str, str] | None = None, retry_safe: bool = True) -> Any:
        """One request with bounded retries; ``retry_safe=False`` for a POST that must not be repeated."""
        url = self.base_url + path + _query_string(query)
        attempt = 0
        while True:
            try:
                return self._send(method, url, body, headers)
            except MailProxyError as error:
                delay = self.retry_policy.delay(attempt, error) if retry_safe else None
                if delay is None:
                    raise
                if self.on_retry is not None:
                    self.on_retry(error, delay, attempt + 1)
            self._sleep(delay)
            attempt += 1

    def _send(self, method: str, url: str, body: Any, headers: Mapping[str, str] | None) -> Any:
        data = None if body is None else json.dumps(body).encode("utf-8")
        request = urllib.request.Request(url, data=data, method=method)  # noqa: S310 - http(s) checked in __init__
        request.add_header("Accept", "application/json")
        request.add_header("User-Agent", f"mail-proxy-client/{__version__}")
        if data is not None:
            request.add_header("Content-Type", "application/json")
        if self.token:
            request.add_header("X-API-Token", self.token)
        for name, value in (headers or {}).items():
            request.add_header(name, value)
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:  # noqa: S310
                raw = response.read()
        except urllib.error.HTTPError as answer:
            raw = answer.read()
            raise _error_from_answer(method, url, answer.code, dict(answer.headers.items()), raw) from None
        except (urllib.error.URLError, OSError, HTTPException) as failure:
            reason = getattr(failure, "reason", failure)
            raise ConnectionFailed(f"cannot reach {self.base_url}: {reason}", method=method, url=url) from None
        if not raw.strip():
            return {}
        try:
            return json.loads(raw)
        except json.JSONDecodeError:
            raise ServerError(f"answer is not JSON: {raw[:200]!r}", status=502, method=method, url=url) from None


def _error_from_answer(method: str, url: str, status: int, headers: dict[str, str], raw: bytes) -> MailProxyError:
    text = raw.decode("utf-8", errors="replace")
    detail: Any
    try:
        parsed = json.loads(text)
    except json.JSONDecodeError:
        detail = text.strip()[:500] or f"HTTP {status}"
    else:
        # The contract's errors are {"detail": ...}; API Gateway's own (a missing token) are {"message": ...}.
        detail = parsed.get("detail", parsed.get("message", parsed)) if isinstance(parsed, dict) else parsed
    cls = error_for_status(status)
    lowered = {name.lower(): value for name, value in headers.items()}
    if cls is Throttled:
        return Throttled(detail, retry_after=parse_retry_after(lowered.get("retry-after")), status=status,
                         method=method, url=url, headers=headers)
    return cls(detail, status=status, method=method, url=url, headers=headers)


def _segment(value: str) -> str:
    return urllib.parse.quote(value, safe="")


def _query_string(query: Mapping[str, Any] | None) -> str:
    pairs = []
    for name, value in (query or {}).items():
        if value is None:
            continue
        pairs.append((name, ("true" if value else "false") if isinstance(value, bool) else str(value)))
    return "?" + urllib.parse.urlencode(pairs) if pairs else ""


def _without_none(fields: Mapping[str, Any]) -> dict[str, Any]:
    return {name: value for name, value in fields.items() if value is not None}
