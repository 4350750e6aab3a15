"""SMTP accounts of a tenant. The password is encrypted before it reaches the table and never returned."""

from __future__ import annotations

from typing import Any

from mail_proxy.adapters.dynamodb import MailRepository
from mail_proxy.adapters.secrets_config import encrypt
from mail_proxy.domain import clock
from mail_proxy.domain.account_models import AccountCreate, AccountView
from mail_proxy.domain.entities import Account, entity_from_fields
from mail_proxy.domain.models import check_literal_host
from mail_proxy.domain.principal import Principal
from mail_proxy.domain.tenant_models import MailboxView
from mail_proxy.errors import NotFoundError
from mail_proxy.security.address_guard import AddressPolicy
from mail_proxy.settings import ApiSettings, get_settings
from mail_proxy.usecases import audit
from mail_proxy.usecases.tenants import acting_tenant


def password_context(tenant_id: str, account_id: str) -> str:
    """Associated data binding a ciphertext to its tenant and account."""
    return f"tenant:{tenant_id}:account:{account_id}:password"


def imap_password_context(tenant_id: str, account_id: str) -> str:
    """Associated data of a PEC account's IMAP password."""
    return f"tenant:{tenant_id}:account:{account_id}:imap_password"


def _pec_mailbox_view(account: Account) -> MailboxView | None:
    if not account.is_pec or not account.imap_host:
        return None
    return MailboxView(host=account.imap_host, port=account.imap_port if account.imap_port is not None else 993,
                       user=account.imap_user or account.user, folder=account.imap_folder or "INBOX",
                       tls=account.imap_tls or "ssl",
                       has_password=bool(account.imap_password or account.password))


def account_view(account: Account) -> AccountView:
    return AccountView(
        id=account.id, tenant_id=account.tenant_id, host=account.host, port=account.port, user=account.user,
        tls=account.tls_mode, limit_per_minute=account.limit_per_minute,
        limit_per_hour=account.limit_per_hour, limit_per_day=account.limit_per_day,
        limit_behavior=account.limit_behavior or "defer", has_password=bool(account.password),
        is_pec=bool(account.is_pec), imap=_pec_mailbox_view(account),
        created_at=account.created_at, updated_at=account.updated_at,
    )


class AccountAdmin:
    def __init__(self, repo: MailRepository, *, address_policy: AddressPolicy | None = None) -> None:
        self.repo = repo
        self.address_policy = address_policy  # None: the deployment's (settings.relay_address_policy)

    def put(self, principal: Principal, request: AccountCreate) -> bool:
        tenant_id = principal.require_tenant(request.tenant_id)
        policy = self.address_policy or get_settings(ApiSettings).relay_address_policy()
        check_literal_host(request.host, policy, ["host"])
        check_literal_host(request.imap_host, policy, ["imap_host"])
        self.repo.require_tenant(tenant_id)
        now = clock.now_iso()
        existing = self.repo.get_account(tenant_id, request.id)
        fields = {
            "id": request.id,
            "tenant_id": tenant_id,
            "host": request.host,
            "port": request.port,
            "user": request.user,
            "password": encrypt(request.password, context=password_context(tenant_id, request.id))
            if request.password is not None else None,
            "tls": request.tls_mode(),
            "limit_per_minute": request.limit_per_minute or None,
            "limit_per_hour": request.limit_per_hour or None,
            "limit_per_day": request.limit_per_day or None,
            "limit_behavior": request.limit_behavior,
            **self._pec_fields(tenant_id, request),
            "created_at": (existing.created_at or now) if existing else now,
            "updated_at": now,
        }
        replaced = self.repo.put_account(tenant_id, entity_from_fields(Account, fields))
        verb = "replaced" if replaced else "created"
        audit.record(self.repo, command="add_account", tenant_id=tenant_id,
                     payload=request.model_dump(exclude_none=True),
                     message=f"Account '{request.id}' {verb} for tenant '{tenant_id}'", status=201)
        return replaced

    @staticmethod
    def _pec_fields(tenant_id: str, request: AccountCreate) -> dict[str, Any]:
        """The PEC receipts mailbox (IMAP password encrypted like the SMTP one); nothing for other accounts."""
        if not request.is_pec:
            return {}
        return {
            "is_pec": True,
            "imap_host": request.imap_host,
            "imap_port": request.imap_port,
            "imap_user": request.imap_user,
            "imap_password": encrypt(request.imap_password, context=imap_password_context(tenant_id, request.id))
            if request.imap_password is not None else None,
            "imap_folder": request.imap_folder,
            "imap_tls": request.imap_tls,
        }

    def list_accounts(self, principal: Principal, tenant_id: str | None) -> list[AccountView]:
        tid = acting_tenant(principal, self.repo, tenant_id)
        return [account_view(a) for a in self.repo.list_accounts(tid)]

    def get(self, principal: Principal, account_id: str, tenant_id: str | None) -> AccountView:
        tid = acting_tenant(principal, self.repo, tenant_id)
        item = self.repo.get_account(tid, account_id)
        if item is None:
            raise NotFoundError(f"account '{account_id}' not found")
        return account_view(item)

    def delete(self, principal: Principal, account_id: str, tenant_id: str | None) -> None:
        tid = acting_tenant(principal, self.repo, tenant_id)
        self.repo.delete_account(tid, account_id)
        audit.record(self.repo, command="delete_account", tenant_id=tid, payload={"id": account_id},
                     message=f"Account '{account_id}' deleted for tenant '{tid}'")
