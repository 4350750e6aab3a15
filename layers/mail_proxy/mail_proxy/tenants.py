"""Tenant administration: creation with an API token shown once, updates, deletion, key rotation."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from mail_proxy import audit, clock
from mail_proxy.domain import (
    ClientAuth,
    ClientAuthView,
    LargeFileConfig,
    MailboxView,
    RateLimits,
    TenantCreate,
    TenantUpdate,
    TenantView,
)
from mail_proxy.errors import ConflictError, ForbiddenError, InvalidInputError
from mail_proxy.principal import Principal
from mail_proxy.report_signing import new_signing_secret
from mail_proxy.repository import MailRepository
from mail_proxy.secrets_config import admin_token_hash, encrypt
from mail_proxy.settings import get_settings
from mail_proxy.tokens import generate_token, hash_token, hashes_match

DEFAULT_SYNC_PATH = "/mail-proxy/sync"
DEFAULT_ATTACHMENT_PATH = "/mail-proxy/attachments"


def client_auth_context(tenant_id: str) -> str:
    return f"tenant:{tenant_id}:client_auth"


def signing_secret_context(tenant_id: str) -> str:
    return f"tenant:{tenant_id}:signing_secret"


def bounce_imap_context(tenant_id: str) -> str:
    return f"tenant:{tenant_id}:bounce_imap:password"


MAX_SIGNING_GRACE_SECONDS = 7 * 24 * 3600


@dataclass(frozen=True)
class NewTenantCredentials:
    """Shown once, in the answer to the creation; only their hash or ciphertext is kept."""

    api_key: str
    signing_secret: str


def _stored_client_auth(tenant_id: str, auth: ClientAuth) -> dict[str, Any]:
    """``client_auth`` as stored: the method and user in clear, token and password encrypted."""
    ctx = client_auth_context(tenant_id)
    return {
        "method": auth.method,
        "user": auth.user,
        "token": encrypt(auth.token, context=ctx + ":token") if auth.token else None,
        "password": encrypt(auth.password, context=ctx + ":password") if auth.password is not None else None,
    }


def _fields_to_item(tenant_id: str, fields: TenantCreate | TenantUpdate) -> dict[str, Any]:
    data = fields.model_dump(exclude_unset=True,
                             exclude={"tenant_id", "token", "client_auth", "rate_limits", "large_file_config",
                                      "bounce_imap"})
    if "bounce_imap" in fields.model_fields_set:
        mailbox = fields.bounce_imap.model_dump() if fields.bounce_imap else None
        if mailbox and mailbox.get("password") is not None:
            mailbox["password"] = encrypt(mailbox["password"], context=bounce_imap_context(tenant_id))
        data["bounce_imap"] = mailbox
    if "large_file_config" in fields.model_fields_set:
        data["large_file_config"] = fields.large_file_config.model_dump() if fields.large_file_config else None
    if "client_auth" in fields.model_fields_set:
        data["client_auth"] = _stored_client_auth(tenant_id, fields.client_auth) if fields.client_auth else None
    if "rate_limits" in fields.model_fields_set:
        data["rate_limits"] = fields.rate_limits.model_dump(exclude_none=True) if fields.rate_limits else None
    return data


def acting_tenant(principal: Principal, repo: MailRepository, requested: str | None) -> str:
    """The tenant a tenant-scoped route works on; with the admin token it must exist (404 otherwise)."""
    tenant_id = principal.require_tenant(requested)
    if principal.is_admin:
        repo.require_tenant(tenant_id)
    return tenant_id


def tenant_view(item: dict[str, Any]) -> TenantView:
    auth = item.get("client_auth")
    return TenantView(
        tenant_id=item["tenant_id"],
        name=item.get("name"),
        active=item.get("active", True),
        client_base_url=item.get("client_base_url"),
        client_sync_path=item.get("client_sync_path") or DEFAULT_SYNC_PATH,
        client_attachment_path=item.get("client_attachment_path") or DEFAULT_ATTACHMENT_PATH,
        client_auth=ClientAuthView(
            method=auth.get("method", "none"), user=auth.get("user"),
            has_token=bool(auth.get("token")), has_password=bool(auth.get("password")),
        ) if auth else None,
        rate_limits=RateLimits(**item["rate_limits"]) if item.get("rate_limits") else None,
        large_file_config=LargeFileConfig(**item["large_file_config"]) if item.get("large_file_config") else None,
        s3_buckets=list(item.get("s3_buckets") or []),
        bounce_imap=MailboxView(**{k: v for k, v in item["bounce_imap"].items() if k != "password"},
                                has_password=bool(item["bounce_imap"].get("password")))
        if item.get("bounce_imap") else None,
        return_path=item.get("return_path"),
        suspended_batches=sorted(item.get("suspended_batches") or []),
        has_api_key=bool(item.get("token_hash")),
        created_at=item.get("created_at"),
        updated_at=item.get("updated_at"),
    )


def _refuse_deployment_bucket(buckets: list[str] | None) -> None:
    """The deployment's bucket holds every tenant's payloads and files: never a tenant's attachment source."""
    deployment = get_settings().attachment_bucket
    if deployment and deployment.lower() in {b.lower() for b in buckets or ()}:
        raise InvalidInputError("s3_buckets cannot name the deployment's attachment bucket; tenants' own "
                                "attachments go under attachments/<tenant_id>/ in it without being listed")


class TenantAdmin:
    def __init__(self, repo: MailRepository) -> None:
        self.repo = repo

    def create(self, principal: Principal, request: TenantCreate) -> NewTenantCredentials:
        principal.require_admin()
        _refuse_deployment_bucket(request.s3_buckets)
        token = request.token or generate_token()
        token_hash = hash_token(token)
        if request.token and (hashes_match(admin_token_hash(), token_hash)
                              or self.repo.find_tenant_id_by_token_hash(token_hash) is not None):
            raise ConflictError("this token is already in use; choose another (or omit it to get a generated one)")
        signing = new_signing_secret()
        now = clock.now_iso()
        item = {
            "tenant_id": request.tenant_id,
            "active": True if request.active is None else request.active,
            "created_at": now,
            "updated_at": now,
            "signing_secret": encrypt(signing, context=signing_secret_context(request.tenant_id)),
            **_fields_to_item(request.tenant_id, request),
        }
        item.setdefault("client_sync_path", DEFAULT_SYNC_PATH)
        self.repo.create_tenant(item, token_hash)
        audit.record(self.repo, command="create_tenant", tenant_id=request.tenant_id,
                     payload=request.model_dump(exclude_none=True),
                     message=f"Tenant '{request.tenant_id}' created", status=201)
        return NewTenantCredentials(api_key=token, signing_secret=signing)

    def rotate_signing_secret(self, principal: Principal, tenant_id: str, grace_seconds: int) -> tuple[str, int]:
        """A new report signing secret; the old one stays valid for ``grace_seconds`` (both sign meanwhile)."""
        principal.require_self_or_admin(tenant_id)
        if not 0 <= grace_seconds <= MAX_SIGNING_GRACE_SECONDS:
            raise InvalidInputError(f"grace_seconds must be between 0 and {MAX_SIGNING_GRACE_SECONDS}")
        tenant = self.repo.require_tenant(tenant_id)
        secret = new_signing_secret()
        valid_until = clock.now_ts() + grace_seconds
        changes: dict[str, Any] = {"signing_secret": encrypt(secret, context=signing_secret_context(tenant_id))}
        removals: list[str] = []
        if tenant.get("signing_secret") and grace_seconds > 0:
            changes["previous_signing_secret"] = tenant["signing_secret"]
            changes["previous_signing_valid_until"] = valid_until
        else:
            removals = ["previous_signing_secret", "previous_signing_valid_until"]
        self.repo.update_tenant(tenant_id, changes, removals)
        audit.record(self.repo, command="rotate_signing_secret", tenant_id=tenant_id,
                     payload={"grace_seconds": grace_seconds},
                     message=f"Report signing secret rotated for tenant '{tenant_id}'")
        return secret, valid_until

    def list_tenants(self, principal: Principal, *, active_only: bool) -> list[TenantView]:
        principal.require_admin()
        items = self.repo.list_tenants()
        return [tenant_view(t) for t in items if not active_only or t.get("active", True)]

    def get(self, principal: Principal, tenant_id: str) -> TenantView:
        principal.require_self_or_admin(tenant_id)
        return tenant_view(self.repo.require_tenant(tenant_id))

    def update(self, principal: Principal, tenant_id: str, request: TenantUpdate) -> None:
        principal.require_self_or_admin(tenant_id)
        if "s3_buckets" in request.model_fields_set and not principal.is_admin:
            raise ForbiddenError("only the admin token may change s3_buckets")
        _refuse_deployment_bucket(request.s3_buckets)
        changes = _fields_to_item(tenant_id, request)
        removals = [k for k, v in changes.items() if v is None]
        self.repo.update_tenant(tenant_id, {k: v for k, v in changes.items() if v is not None}, removals)
        audit.record(self.repo, command="update_tenant", tenant_id=tenant_id,
                     payload=request.model_dump(exclude_unset=True),
                     message=f"Tenant '{tenant_id}' configuration changed", fields=sorted(changes))

    def delete(self, principal: Principal, tenant_id: str) -> int:
        principal.require_admin()
        removed = self.repo.delete_tenant(tenant_id)
        audit.record(self.repo, command="delete_tenant", tenant_id=tenant_id, payload={"messages_removed": removed},
                     message=f"Tenant '{tenant_id}' deleted")
        return removed

    def new_api_key(self, principal: Principal, tenant_id: str) -> str:
        principal.require_admin()
        self.repo.require_tenant(tenant_id)
        token = generate_token()
        self.repo.set_token_hash(tenant_id, hash_token(token))
        audit.record(self.repo, command="create_api_key", tenant_id=tenant_id, payload={},
                     message=f"API key replaced for tenant '{tenant_id}'")
        return token

    def revoke_api_key(self, principal: Principal, tenant_id: str) -> None:
        principal.require_admin()
        tenant = self.repo.require_tenant(tenant_id)
        if not tenant.get("token_hash"):
            raise ConflictError(f"tenant '{tenant_id}' has no API key")
        self.repo.set_token_hash(tenant_id, None)
        audit.record(self.repo, command="revoke_api_key", tenant_id=tenant_id, payload={},
                     message=f"API key revoked for tenant '{tenant_id}'")
