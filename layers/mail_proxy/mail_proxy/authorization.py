"""Token → principal, for the API Gateway Lambda authorizer.

The authorizer never answers "deny" for an unknown token: it passes the request on as ``anonymous`` so the
api function answers 401 with the contract's ``{"detail": ...}`` body (an HTTP API authorizer can only
produce 403 or a bare 401 of its own). Every route requires a known principal, so nothing is served to
an anonymous caller but ``/health`` and ``/openapi.json``.
"""

from __future__ import annotations

from typing import Any

from mail_proxy.domain import Role
from mail_proxy.observability import logger
from mail_proxy.principal import Principal
from mail_proxy.repository import MailRepository
from mail_proxy.secrets_config import admin_token_hash
from mail_proxy.tokens import hash_token, hashes_match

MAX_TOKEN_LENGTH = 512


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
        if tenant is not None and hashes_match(tenant.get("token_hash"), token_hash):
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
