"""Re-encrypt stored secrets under the current key, so an old key can be retired.

Rotation without downtime: put the new key in ``encryption_key`` and the old one in ``previous_keys``
(both are accepted for decryption), run ``python -m mail_proxy reencrypt``, then drop the old key.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from mail_proxy.accounts import password_context
from mail_proxy.crypto import KeyRing
from mail_proxy.repository import MailRepository
from mail_proxy.tenants import client_auth_context, signing_secret_context


@dataclass
class RotationReport:
    accounts: int = 0
    tenants: int = 0
    already_current: int = 0


def reencrypt_all(repo: MailRepository, ring: KeyRing) -> RotationReport:
    report = RotationReport()
    for tenant in repo.list_tenants():
        tid = tenant["tenant_id"]
        auth: dict[str, Any] | None = tenant.get("client_auth")
        changed = False
        if auth:
            for name in ("token", "password"):
                value = auth.get(name)
                if value and ring.needs_reencryption(value):
                    ctx = f"{client_auth_context(tid)}:{name}"
                    auth[name] = ring.encrypt(ring.decrypt(value, context=ctx), context=ctx)
                    changed = True
                elif value:
                    report.already_current += 1
            if changed:
                repo.update_tenant(tid, {"client_auth": auth})
        signing: dict[str, str] = {}
        for name in ("signing_secret", "previous_signing_secret"):
            value = tenant.get(name)
            if value and ring.needs_reencryption(value):
                ctx = signing_secret_context(tid)
                signing[name] = ring.encrypt(ring.decrypt(value, context=ctx), context=ctx)
            elif value:
                report.already_current += 1
        if signing:
            repo.update_tenant(tid, signing)
        if changed or signing:
            report.tenants += 1
        for account in repo.list_accounts(tid):
            value = account.get("password")
            if not value:
                continue
            if not ring.needs_reencryption(value):
                report.already_current += 1
                continue
            ctx = password_context(tid, account["id"])
            account["password"] = ring.encrypt(ring.decrypt(value, context=ctx), context=ctx)
            clean = {k: v for k, v in account.items() if k not in ("pk", "sk")}
            repo.put_account(tid, clean)
            report.accounts += 1
    return report
