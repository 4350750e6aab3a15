"""Re-encrypt stored secrets under the current key, and count which keys the stored values still use.

Rotation that loses nothing (docs/operations.md): put the new key in ``encryption_key`` and the old one in
``previous_keys``; wait the functions' cache period (``MAIL_PROXY_SECRET_MAX_AGE_SECONDS``) so that none still
encrypts with the old key; run ``python -m mail_proxy reencrypt``; drop the old key only once
``python -m mail_proxy key-usage`` counts zero values under it.

Every write is conditional on the ciphertexts that were read, so a value changed meanwhile (a new password,
a rotated signing secret) wins: the item is read again and retried. A value that cannot be re-encrypted (it
does not decrypt, a write fails) is listed and the run goes on with the next one.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from botocore.exceptions import ClientError

from mail_proxy.adapters.dynamodb import MailRepository
from mail_proxy.domain.entities import Account, Tenant
from mail_proxy.errors import MailProxyError
from mail_proxy.security.crypto import DecryptionError, KeyRing, is_encrypted, value_key_id
from mail_proxy.usecases.accounts import imap_password_context, password_context
from mail_proxy.usecases.dkim_keys import MAX_DKIM_KEYS, dkim_key_context
from mail_proxy.usecases.tenants import (
    MAX_SIGNING_SECRETS_IN_GRACE,
    bounce_imap_context,
    client_auth_context,
    signing_secret_context,
)

MAX_ATTEMPTS = 3
NOT_ENCRYPTED = "not encrypted"  # a value stored in clear (counted, needs no key)
UNREADABLE = "malformed"  # an ENC: value without a key id (counted, no key can help)

# where encrypted values live: (path in the item, what it is for the operator, its associated data)
TENANT_SECRETS: tuple[tuple[tuple[str | int, ...], str, Callable[[str], str]], ...] = (
    (("client_auth", "token"), "report credentials", lambda t: f"{client_auth_context(t)}:token"),
    (("client_auth", "password"), "report credentials", lambda t: f"{client_auth_context(t)}:password"),
    (("signing_secret",), "signing secrets", signing_secret_context),
    (("previous_signing_secret",), "signing secrets", signing_secret_context),
    *((("previous_signing_secrets", i, "secret"), "signing secrets", signing_secret_context)
      for i in range(MAX_SIGNING_SECRETS_IN_GRACE)),
    (("bounce_imap", "password"), "bounce mailbox passwords", bounce_imap_context),
)
ACCOUNT_SECRETS: tuple[tuple[tuple[str | int, ...], str, Callable[[str, str], str]], ...] = (
    (("password",), "SMTP passwords", password_context),
    (("imap_password",), "PEC mailbox passwords", imap_password_context),
)


@dataclass(frozen=True)
class StoredSecret:
    """One encrypted value: where it lives, what it is, and the associated data it was sealed with."""

    tenant_id: str
    account_id: str | None
    path: tuple[str | int, ...]
    kind: str
    context: str
    value: str = field(repr=False)

    @property
    def where(self) -> str:
        owner = f"tenant {self.tenant_id}" + (f" account {self.account_id}" if self.account_id is not None else "")
        return f"{owner} {'.'.join(str(p) for p in self.path)}"


def tenant_secrets(tenant: Tenant) -> list[StoredSecret]:
    tid = tenant.tenant_id
    found = [StoredSecret(tid, None, path, kind, context(tid), value)
             for path, kind, context in TENANT_SECRETS if (value := _at(tenant, path))]
    # DKIM private keys: bound to their domain and selector, so the context is read from each entry
    for i, entry in enumerate((tenant.dkim_keys or [])[:MAX_DKIM_KEYS]):
        path: tuple[str | int, ...] = ("dkim_keys", i, "private_key")
        if isinstance(entry, dict) and (value := _at(tenant, path)):
            found.append(StoredSecret(tid, None, path, "DKIM private keys",
                                      dkim_key_context(tid, entry.get("domain", ""), entry.get("selector", "")),
                                      value))
    return found


def account_secrets(tenant_id: str, account: Account) -> list[StoredSecret]:
    aid = account.id
    return [StoredSecret(tenant_id, aid, path, kind, context(tenant_id, aid), value)
            for path, kind, context in ACCOUNT_SECRETS if (value := _at(account, path))]


def _at(entity: Tenant | Account, path: tuple[str | int, ...]) -> str | None:
    """The value at a path of stored attribute names (the paths ``replace_ciphertexts`` writes to)."""
    value: Any = entity.stored()
    for part in path:
        if isinstance(part, int):
            value = value[part] if isinstance(value, list) and part < len(value) else None
        else:
            value = value.get(part) if isinstance(value, Mapping) else None
    return value if isinstance(value, str) and value else None


# ------------------------------------------------------------------------------------------- re-encryption


@dataclass
class RotationReport:
    accounts: int = 0  # account items rewritten
    tenants: int = 0  # tenant items rewritten
    values: int = 0  # values re-encrypted
    already_current: int = 0
    retried: int = 0  # writes that met a concurrent change and were made again on a fresh read
    failed: list[str] = field(default_factory=list)  # "<where>: <reason>", never a value


def reencrypt_all(repo: MailRepository, ring: KeyRing) -> RotationReport:
    """Every stored secret not under the current key is re-encrypted; failures are listed, never fatal."""
    report = RotationReport()
    for tenant in repo.list_tenants():
        tid = tenant.tenant_id
        report.tenants += _reencrypt_item(repo, ring, report, tid, None, tenant)
        try:
            accounts = repo.list_accounts(tid)
        except Exception as exc:  # listed; the other tenants go on
            report.failed.append(f"tenant {tid} accounts: not listed ({_reason(exc)})")
            continue
        for account in accounts:
            report.accounts += _reencrypt_item(repo, ring, report, tid, account.id, account)
    return report


def _reencrypt_item(repo: MailRepository, ring: KeyRing, report: RotationReport, tenant_id: str,
                    account_id: str | None, item: Tenant | Account | None) -> bool:
    """True when the tenant item (or account item) was rewritten. When a concurrent write won, the item is
    read again and its values retried, up to ``MAX_ATTEMPTS`` times."""
    where = f"tenant {tenant_id}" + (f" account {account_id}" if account_id is not None else "")
    for attempt in range(MAX_ATTEMPTS):
        failures: list[str] = []
        try:
            if attempt:
                item = repo.get_tenant(tenant_id) if account_id is None else repo.get_account(tenant_id, account_id)
            if item is None:
                return False  # deleted meanwhile: nothing left to re-encrypt
            secrets = tenant_secrets(item) if isinstance(item, Tenant) else account_secrets(tenant_id, item)
            changes: dict[tuple[str | int, ...], tuple[str, str]] = {}
            for secret in secrets:
                if not ring.needs_reencryption(secret.value):
                    continue
                try:
                    plain = ring.decrypt(secret.value, context=secret.context)
                except DecryptionError as exc:
                    failures.append(f"{secret.where}: {exc}")
                    continue
                changes[secret.path] = (secret.value, ring.encrypt(plain, context=secret.context))
            written = repo.replace_ciphertexts(tenant_id, account_id, changes) if changes else False
        except Exception as exc:  # a read or write that failed: listed, and the run goes on
            report.failed.append(f"{where}: {_reason(exc)}")
            return False
        if not changes or written:
            report.failed.extend(failures)
            report.values += len(changes)
            report.already_current += sum(1 for s in secrets if is_encrypted(s.value)
                                          and not ring.needs_reencryption(s.value))
            return bool(changes)
        report.retried += 1
    report.failed.append(f"{where}: changed concurrently {MAX_ATTEMPTS} times; run reencrypt again")
    return False


def _reason(exc: Exception) -> str:
    """Why something failed, without anything read from the table."""
    if isinstance(exc, ClientError):
        return f"{type(exc).__name__} {exc.response.get('Error', {}).get('Code', '')}".strip()
    if isinstance(exc, MailProxyError):
        return str(exc)
    return type(exc).__name__


# ------------------------------------------------------------------------------------------- key usage


@dataclass
class KeyUsage:
    """How many stored values each key id encrypts, by kind; ``incomplete`` lists what could not be read."""

    by_key: dict[str, Counter[str]] = field(default_factory=dict)
    incomplete: list[str] = field(default_factory=list)

    def count(self, kid: str) -> int:
        return sum(self.by_key.get(kid, Counter()).values())


def key_usage(repo: MailRepository) -> KeyUsage:
    usage = KeyUsage()
    for secret in _every_secret(repo, usage):
        try:
            kid = value_key_id(secret.value) if is_encrypted(secret.value) else NOT_ENCRYPTED
        except DecryptionError:
            kid = UNREADABLE
        usage.by_key.setdefault(kid, Counter())[secret.kind] += 1
    return usage


def _every_secret(repo: MailRepository, usage: KeyUsage) -> Iterator[StoredSecret]:
    for tenant in repo.list_tenants():
        tid = tenant.tenant_id
        yield from tenant_secrets(tenant)
        try:
            accounts = repo.list_accounts(tid)
        except Exception as exc:  # counted as incomplete: the operator must not act on a partial count
            usage.incomplete.append(f"tenant {tid} accounts: not listed ({_reason(exc)})")
            continue
        for account in accounts:
            yield from account_secrets(tid, account)
