"""Re-encrypt stored secrets under the current key, so an old key can be retired.

Rotation without downtime: put the new key in ``encryption_key`` and the old one in ``previous_keys``
(both are accepted for decryption), run ``python -m mail_proxy reencrypt``, then drop the old key.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from mail_proxy.accounts import imap_password_context, password_context
from mail_proxy.crypto import KeyRing
from mail_proxy.repository import MailRepository
from mail_proxy.tenants import bounce_imap_context, client_auth_context, signing_secret_context


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
        signing: dict[str, Any] = {}
        for name in ("signing_secret", "previous_signing_secret"):
            value = tenant.get(name)
            if value and ring.needs_reencryption(value):
                ctx = signing_secret_context(tid)
                signing[name] = ring.encrypt(ring.decrypt(value, context=ctx), context=ctx)
            elif value:
                report.already_current += 1
        bounce: dict[str, Any] | None = tenant.get("bounce_imap")
        if bounce and bounce.get("password"):
            if ring.needs_reencryption(bounce["password"]):
                ctx = bounce_imap_context(tid)
                bounce["password"] = ring.encrypt(ring.decrypt(bounce["password"], context=ctx), context=ctx)
                signing["bounce_imap"] = bounce
            else:
                report.already_current += 1
        if signing:
            repo.update_tenant(tid, signing)
        if changed or signing:
            report.tenants += 1
        for account in repo.list_accounts(tid):
            contexts = {"password": password_context(tid, account["id"]),
                        "imap_password": imap_password_context(tid, account["id"])}
            stale = [name for name in contexts if account.get(name) and ring.needs_reencryption(account[name])]
            report.already_current += sum(1 for name in contexts if account.get(name) and name not in stale)
            if not stale:
                continue
            for name in stale:
                ctx = contexts[name]
                account[name] = ring.encrypt(ring.decrypt(account[name], context=ctx), context=ctx)
            clean = {k: v for k, v in account.items() if k not in ("pk", "sk")}
            repo.put_account(tid, clean)
            report.accounts += 1
    return report
