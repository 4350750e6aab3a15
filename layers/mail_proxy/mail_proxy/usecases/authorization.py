"""Token → principal, for the API Gateway Lambda authorizer.

The authorizer never answers "deny" for an unknown token: it passes the request on as ``anonymous`` so the
api function answers 401 with the contract's ``{"detail": ...}`` body (an HTTP API authorizer can only
produce 403 or a bare 401 of its own). Every route requires a known principal, so nothing is served to
an anonymous caller but ``/health`` and ``/openapi.json``.
"""

from __future__ import annotations

import threading
from typing import Any

from mail_proxy.adapters.dynamodb import MailRepository
from mail_proxy.adapters.observability import logger
from mail_proxy.adapters.secrets_config import admin_token_hash
from mail_proxy.domain import clock
from mail_proxy.domain.entities import Tenant
from mail_proxy.domain.models import TENANT_SUSPENDED_DETAIL, Role
from mail_proxy.domain.principal import Principal
from mail_proxy.errors import ForbiddenError, UnauthorizedError
from mail_proxy.security.tokens import hash_token, hashes_match

MAX_TOKEN_LENGTH = 512
KEY_CHECK_CACHE_SECONDS = 5.0  # how long a revoked key or a suspension may go unnoticed by a warm api container


def authenticate(repo: MailRepository, token: str | None) -> Principal:
    if not token or len(token) > MAX_TOKEN_LENGTH:
        logger.info("API auth failed: missing token" if not token else "API auth failed: invalid token")
        return Principal(Role.ANONYMOUS)
    token_hash = hash_token(token)
    if hashes_match(admin_token_hash(), token_hash):
        logger.info("API auth successful for admin")
        return Principal(Role.ADMIN)
    tenant_id = repo.find_tenant_id_by_token_hash(token_hash)
    if tenant_id is not None:
        tenant = repo.get_tenant(tenant_id)
        if tenant is not None and hashes_match(tenant.token_hash, token_hash):
            logger.info(f"API auth successful for tenant '{tenant_id}'", extra={"tenant_id": tenant_id})
            return Principal(Role.TENANT, tenant_id)
    logger.info("API auth failed: invalid token")
    return Principal(Role.ANONYMOUS)


def authorizer_response(principal: Principal) -> dict[str, Any]:
    """HTTP API simple response; the context reaches the api function as ``authorizer.lambda``."""
    return {
        "isAuthorized": True,
        "context": {"role": principal.role.value, "tenant_id": principal.tenant_id or ""},
    }


def principal_from_context(context: dict[str, Any] | None) -> Principal:
    """Read what the authorizer decided; anything missing or odd means anonymous."""
    if not context:
        return Principal(Role.ANONYMOUS)
    try:
        role = Role(context.get("role", "anonymous"))
    except ValueError:
        return Principal(Role.ANONYMOUS)
    tenant_id = context.get("tenant_id") or None
    if role is Role.TENANT and not tenant_id:
        return Principal(Role.ANONYMOUS)
    return Principal(role, tenant_id if role is Role.TENANT else None)


# ------------------------------------------------------------------------------- current key, every request

_tenant_cache: dict[str, tuple[float, Tenant | None]] = {}
_tenant_cache_lock = threading.Lock()


def forget_tenant_keys(tenant_id: str | None = None) -> None:
    """Drop the cached tenant (or every one): a key or suspension changed in this container counts at once."""
    with _tenant_cache_lock:
        if tenant_id is None:
            _tenant_cache.clear()
        else:
            _tenant_cache.pop(tenant_id, None)


def _current_tenant(repo: MailRepository, tenant_id: str) -> Tenant | None:
    now = clock.now()
    with _tenant_cache_lock:
        cached = _tenant_cache.get(tenant_id)
    if cached is not None and cached[0] > now:
        return cached[1]
    tenant = repo.get_tenant(tenant_id)  # a consistent read
    with _tenant_cache_lock:
        _tenant_cache[tenant_id] = (now + KEY_CHECK_CACHE_SECONDS, tenant)
    return tenant


def confirm_principal(repo: MailRepository, who: Principal, token: str | None) -> Principal:
    """The authorizer's answer for a tenant, checked again against its current key before any route runs.

    API Gateway caches the authorizer's answer per token for up to ``AuthorizerCacheSeconds``; this check
    (a consistent read, cached ``KEY_CHECK_CACHE_SECONDS``) makes a replaced or revoked key fail (401) and
    a tenant suspended by an administrator get 403 within seconds, whatever the gateway cached.
    """
    if who.role is not Role.TENANT or who.tenant_id is None:
        # the admin token changes only with a deploy (AdminTokenHash); the api function is not given the
        # admin secret, so the authorizer's answer stands for it
        return who
    token_hash = hash_token(token) if token and len(token) <= MAX_TOKEN_LENGTH else ""
    tenant = _current_tenant(repo, who.tenant_id)
    if tenant is None or not token_hash or not hashes_match(tenant.token_hash, token_hash):
        logger.info("API auth failed: the key was replaced or revoked", extra={"tenant_id": who.tenant_id})
        raise UnauthorizedError("Invalid or missing API token")
    if tenant.admin_suspended:
        raise ForbiddenError(TENANT_SUSPENDED_DETAIL)
    return who
