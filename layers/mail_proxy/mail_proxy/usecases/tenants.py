"""Tenant administration: creation with an API token shown once, updates, deletion, key rotation."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from mail_proxy.adapters.blob_store import BlobStore, BlobUnavailable
from mail_proxy.adapters.dynamodb import MailRepository
from mail_proxy.adapters.observability import logger
from mail_proxy.adapters.payload_store import files_prefix, payload_prefix
from mail_proxy.adapters.secrets_config import admin_token_hash, decrypt, encrypt
from mail_proxy.domain import clock
from mail_proxy.domain.entities import Tenant, entity_from_fields
from mail_proxy.domain.models import check_literal_host
from mail_proxy.domain.principal import Principal
from mail_proxy.domain.tenant_models import (
    ClientAuth,
    ClientAuthView,
    LargeFileConfig,
    MailboxView,
    RateLimits,
    TenantCreate,
    TenantSuspension,
    TenantUpdate,
    TenantView,
    UnsubscribeConfig,
)
from mail_proxy.errors import ConflictError, ForbiddenError, InvalidInputError
from mail_proxy.security.report_signing import new_signing_secret
from mail_proxy.security.tokens import generate_token, hash_token, hashes_match
from mail_proxy.settings import ApiSettings, get_settings
from mail_proxy.usecases import audit
from mail_proxy.usecases.authorization import forget_tenant_keys
from mail_proxy.usecases.reputation_guard import ReputationGuard, stored_view

DEFAULT_SYNC_PATH = "/mail-proxy/sync"
DEFAULT_ATTACHMENT_PATH = "/mail-proxy/attachments"


def client_auth_context(tenant_id: str) -> str:
    return f"tenant:{tenant_id}:client_auth"


def signing_secret_context(tenant_id: str) -> str:
    return f"tenant:{tenant_id}:signing_secret"


def bounce_imap_context(tenant_id: str) -> str:
    return f"tenant:{tenant_id}:bounce_imap:password"


MAX_SIGNING_GRACE_SECONDS = 7 * 24 * 3600
MAX_SIGNING_SECRETS_IN_GRACE = 3  # retired secrets kept while their grace runs (oldest dropped beyond)


def retired_signing_secrets(tenant: Tenant) -> list[dict[str, Any]]:
    """Retired secrets (encrypted) whose grace has not ended, newest first: ``{"secret", "valid_until"}``.

    ``previous_signing_secrets`` holds them all; the older single pair ``previous_signing_secret`` /
    ``previous_signing_valid_until`` (kept as a mirror of the newest) is read when the list is absent.
    """
    now = clock.now_ts()
    entries = tenant.previous_signing_secrets
    if entries is None and tenant.previous_signing_secret:
        entries = [{"secret": tenant.previous_signing_secret,
                    "valid_until": tenant.previous_signing_valid_until or 0}]
    return [{"secret": e["secret"], "valid_until": int(e.get("valid_until") or 0)} for e in entries or []
            if e.get("secret") and int(e.get("valid_until") or 0) > now]


def signing_secrets_in_use(tenant: Tenant) -> list[str]:
    """Every secret a delivery report is signed with: the current one, then each retired one in its grace."""
    ctx = signing_secret_context(tenant.tenant_id)
    found = [decrypt(tenant.signing_secret, context=ctx)] if tenant.signing_secret else []
    found.extend(decrypt(e["secret"], context=ctx) for e in retired_signing_secrets(tenant))
    return found


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
                                      "bounce_imap", "reputation_thresholds"})
    if "bounce_imap" in fields.model_fields_set:
        mailbox = fields.bounce_imap.model_dump() if fields.bounce_imap else None
        if mailbox:
            policy = get_settings(ApiSettings).relay_address_policy()
            check_literal_host(mailbox["host"], policy, ["bounce_imap", "host"])
        if mailbox and mailbox.get("password") is not None:
            mailbox["password"] = encrypt(mailbox["password"], context=bounce_imap_context(tenant_id))
        data["bounce_imap"] = mailbox
    if "large_file_config" in fields.model_fields_set:
        data["large_file_config"] = fields.large_file_config.model_dump() if fields.large_file_config else None
    if "client_auth" in fields.model_fields_set:
        data["client_auth"] = _stored_client_auth(tenant_id, fields.client_auth) if fields.client_auth else None
    if "rate_limits" in fields.model_fields_set:
        data["rate_limits"] = fields.rate_limits.model_dump(exclude_none=True) if fields.rate_limits else None
    if "reputation_thresholds" in fields.model_fields_set:
        thresholds = fields.reputation_thresholds
        data["reputation_thresholds"] = thresholds.model_dump() if thresholds else None
    return data


def acting_tenant(principal: Principal, repo: MailRepository, requested: str | None) -> str:
    """The tenant a tenant-scoped route works on; with the admin token it must exist (404 otherwise)."""
    tenant_id = principal.require_tenant(requested)
    if principal.is_admin:
        repo.require_tenant(tenant_id)
    return tenant_id


def tenant_view(tenant: Tenant) -> TenantView:
    auth = tenant.client_auth
    return TenantView(
        tenant_id=tenant.tenant_id,
        name=tenant.name,
        active=tenant.is_active,
        client_base_url=tenant.client_base_url,
        client_sync_path=tenant.client_sync_path or DEFAULT_SYNC_PATH,
        client_attachment_path=tenant.client_attachment_path or DEFAULT_ATTACHMENT_PATH,
        client_auth=ClientAuthView(
            method=auth.get("method", "none"), user=auth.get("user"),
            has_token=bool(auth.get("token")), has_password=bool(auth.get("password")),
        ) if auth else None,
        rate_limits=RateLimits(**tenant.rate_limits) if tenant.rate_limits else None,
        large_file_config=LargeFileConfig(**tenant.large_file_config) if tenant.large_file_config else None,
        s3_buckets=list(tenant.s3_buckets or []),
        bounce_imap=MailboxView(**{k: v for k, v in tenant.bounce_imap.items() if k != "password"},
                                has_password=bool(tenant.bounce_imap.get("password")))
        if tenant.bounce_imap else None,
        return_path=tenant.return_path,
        unsubscribe=UnsubscribeConfig(**tenant.unsubscribe) if tenant.unsubscribe else None,
        suspended_batches=sorted(tenant.suspended_batch_codes),
        admin_suspended=bool(tenant.admin_suspended),
        admin_suspended_reason=tenant.admin_suspended_reason,
        admin_suspended_at=tenant.admin_suspended_at,
        reputation=stored_view(tenant),
        has_api_key=bool(tenant.token_hash),
        created_at=tenant.created_at,
        updated_at=tenant.updated_at,
    )


def _refuse_deployment_bucket(buckets: list[str] | None) -> None:
    """The deployment's bucket holds every tenant's payloads and files: never a tenant's attachment source."""
    deployment = get_settings(ApiSettings).attachment_bucket
    if deployment and deployment.lower() in {b.lower() for b in buckets or ()}:
        raise InvalidInputError("s3_buckets cannot name the deployment's attachment bucket; tenants' own "
                                "attachments go under attachments/<tenant_id>/ in it without being listed")


class TenantAdmin:
    def __init__(self, repo: MailRepository, blobs: BlobStore | None = None) -> None:
        self.repo = repo
        self.blobs = blobs or BlobStore(None)

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
        self.repo.create_tenant(entity_from_fields(Tenant, item), token_hash)
        audit.record(self.repo, command="create_tenant", tenant_id=request.tenant_id,
                     payload=request.model_dump(exclude_none=True),
                     message=f"Tenant '{request.tenant_id}' created", status=201)
        return NewTenantCredentials(api_key=token, signing_secret=signing)

    def rotate_signing_secret(self, principal: Principal, tenant_id: str, grace_seconds: int) -> tuple[str, int]:
        """A new report signing secret; the old one stays valid for ``grace_seconds`` (all sign meanwhile).

        Rotating again within a grace period keeps every earlier secret whose grace has not ended (at most
        ``MAX_SIGNING_SECRETS_IN_GRACE``, the oldest dropped first); a grace of 0 drops them all at once.
        """
        principal.require_self_or_admin(tenant_id)
        if not 0 <= grace_seconds <= MAX_SIGNING_GRACE_SECONDS:
            raise InvalidInputError(f"grace_seconds must be between 0 and {MAX_SIGNING_GRACE_SECONDS}")
        tenant = self.repo.require_tenant(tenant_id)
        secret = new_signing_secret()
        valid_until = clock.now_ts() + grace_seconds
        changes: dict[str, Any] = {"signing_secret": encrypt(secret, context=signing_secret_context(tenant_id))}
        removals: list[str] = []
        retired: list[dict[str, Any]] = []
        if grace_seconds > 0:
            retired = retired_signing_secrets(tenant)
            if tenant.signing_secret:
                retired.insert(0, {"secret": tenant.signing_secret, "valid_until": valid_until})
            retired = retired[:MAX_SIGNING_SECRETS_IN_GRACE]
        if retired:
            changes["previous_signing_secrets"] = retired
            changes["previous_signing_secret"] = retired[0]["secret"]
            changes["previous_signing_valid_until"] = retired[0]["valid_until"]
        else:
            removals = ["previous_signing_secrets", "previous_signing_secret", "previous_signing_valid_until"]
        self.repo.update_tenant(tenant_id, changes, removals)
        audit.record(self.repo, command="rotate_signing_secret", tenant_id=tenant_id,
                     payload={"grace_seconds": grace_seconds},
                     message=f"Report signing secret rotated for tenant '{tenant_id}'")
        return secret, valid_until

    def list_tenants(self, principal: Principal, *, active_only: bool) -> list[TenantView]:
        principal.require_admin()
        items = self.repo.list_tenants()
        return [tenant_view(t) for t in items if not active_only or t.is_active]

    def get(self, principal: Principal, tenant_id: str) -> TenantView:
        principal.require_self_or_admin(tenant_id)
        item = self.repo.require_tenant(tenant_id)
        view = tenant_view(item)
        view.reputation = ReputationGuard(self.repo).view(item)
        return view

    def update(self, principal: Principal, tenant_id: str, request: TenantUpdate) -> None:
        principal.require_self_or_admin(tenant_id)
        if "s3_buckets" in request.model_fields_set and not principal.is_admin:
            raise ForbiddenError("only the admin token may change s3_buckets")
        if "reputation_thresholds" in request.model_fields_set and not principal.is_admin:
            raise ForbiddenError("only the admin token may change reputation_thresholds")
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
        forget_tenant_keys(tenant_id)
        # then its payloads and large files in S3: their download links must stop working with the tenant
        try:
            self.blobs.delete([key for prefix in (payload_prefix(tenant_id), files_prefix(tenant_id))
                               for key in self.blobs.list_keys(prefix)])
        except BlobUnavailable as exc:
            logger.error("objects of a deleted tenant were not deleted; the bucket lifecycle expires them",
                         extra={"tenant_id": tenant_id, "error": str(exc)})
        audit.record(self.repo, command="delete_tenant", tenant_id=tenant_id, payload={"messages_removed": removed},
                     message=f"Tenant '{tenant_id}' deleted")
        return removed

    def suspend(self, principal: Principal, tenant_id: str, request: TenantSuspension) -> None:
        """An administrator's hold: the tenant's token gets 403 and its messages wait until ``resume``."""
        principal.require_admin()
        changes: dict[str, Any] = {"admin_suspended": True, "admin_suspended_at": clock.now_iso()}
        if request.reason:
            changes["admin_suspended_reason"] = request.reason
        self.repo.update_tenant(tenant_id, changes, [] if request.reason else ["admin_suspended_reason"])
        forget_tenant_keys(tenant_id)
        audit.record(self.repo, command="suspend_tenant", tenant_id=tenant_id, payload=request.model_dump(),
                     message=f"Tenant '{tenant_id}' suspended by an administrator")

    def resume(self, principal: Principal, tenant_id: str) -> None:
        """Lift an administrator's suspension and a reputation guard's pause (the guard counts afresh)."""
        principal.require_admin()
        tenant = self.repo.require_tenant(tenant_id)
        changes, removals = ReputationGuard(self.repo).resume_changes(tenant) if tenant.reputation_paused \
            else ({}, [])
        self.repo.update_tenant(tenant_id, changes,
                                ["admin_suspended", "admin_suspended_reason", "admin_suspended_at", *removals])
        forget_tenant_keys(tenant_id)
        audit.record(self.repo, command="resume_tenant", tenant_id=tenant_id, payload={},
                     message=f"Tenant '{tenant_id}' resumed by an administrator")

    def new_api_key(self, principal: Principal, tenant_id: str) -> str:
        principal.require_admin()
        self.repo.require_tenant(tenant_id)
        token = generate_token()
        self.repo.set_token_hash(tenant_id, hash_token(token))
        forget_tenant_keys(tenant_id)
        audit.record(self.repo, command="create_api_key", tenant_id=tenant_id, payload={},
                     message=f"API key replaced for tenant '{tenant_id}'")
        return token

    def revoke_api_key(self, principal: Principal, tenant_id: str) -> None:
        principal.require_admin()
        tenant = self.repo.require_tenant(tenant_id)
        if not tenant.token_hash:
            raise ConflictError(f"tenant '{tenant_id}' has no API key")
        self.repo.set_token_hash(tenant_id, None)
        forget_tenant_keys(tenant_id)
        audit.record(self.repo, command="revoke_api_key", tenant_id=tenant_id, payload={},
                     message=f"API key revoked for tenant '{tenant_id}'")
