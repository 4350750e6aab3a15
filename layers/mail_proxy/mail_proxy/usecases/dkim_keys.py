"""A tenant's DKIM signing domains: keys generated here, private keys stored encrypted, never shown.

Each key is an entry of the tenant item's ``dkim_keys`` list: ``domain``, ``selector``, ``private_key``
(encrypted like every stored secret, bound to tenant, domain and selector, and so covered by ``reencrypt``
and ``key-usage``), ``public_key`` (base64 DER, what the DNS record publishes), ``signing`` (the one key of
its domain that signs) and ``created_at``. Kept on the tenant item because the sender reads that item for
every batch anyway: signing costs no extra read.

Rotation: a new selector's key is added and signs from then on (or once activated, with
``activate: false``); the retired selectors stay listed, so their DNS records stay published for messages
still in transit, until the tenant removes them.
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass
from typing import Any

from mail_proxy.adapters.dynamodb import MailRepository
from mail_proxy.adapters.secrets_config import decrypt, encrypt
from mail_proxy.domain import clock
from mail_proxy.domain.entities import Tenant
from mail_proxy.domain.principal import Principal
from mail_proxy.errors import ConflictError, InvalidInputError, NotFoundError
from mail_proxy.mail.dkim_signing import dns_name, dns_value, generate_key, sign
from mail_proxy.usecases import audit

MAX_DKIM_KEYS = 10  # per tenant, over all its domains (each entry is about 2.5 KB of the tenant item)
MAX_WRITE_ATTEMPTS = 3
_LABEL = r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?"
_DOMAIN = re.compile(rf"(?:{_LABEL}\.)+[a-z]{{2,63}}|(?:{_LABEL}\.)+xn--[a-z0-9-]{{1,59}}")
_SELECTOR = re.compile(rf"{_LABEL}(?:\.{_LABEL})*")


def dkim_key_context(tenant_id: str, domain: str, selector: str) -> str:
    """Associated data binding a private key to its tenant, domain and selector."""
    return f"tenant:{tenant_id}:dkim:{domain}:{selector}"


def normalise_domain(value: str) -> str:
    """The domain as DNS and the ``d=`` tag spell it: lower case, IDNA for non-ASCII labels."""
    text = value.strip().rstrip(".").lower()
    try:
        ascii_form = text.encode("idna").decode("ascii")
    except UnicodeError as exc:
        raise InvalidInputError("domain is not a valid domain name") from exc
    if len(ascii_form) > 253 or not _DOMAIN.fullmatch(ascii_form):
        raise InvalidInputError("domain is not a valid domain name (e.g. example.com)")
    return ascii_form


def check_selector(value: str) -> str:
    selector = value.strip().lower()
    if len(selector) > 63 or not _SELECTOR.fullmatch(selector):
        raise InvalidInputError("selector must be DNS labels of letters, digits and hyphens (at most 63 characters)")
    return selector


def new_selector() -> str:
    """``mp<yyyymmdd><4 hex>``: dated, so the DNS zone shows which is newer, and unique within a day."""
    return f"mp{clock.now_datetime().strftime('%Y%m%d')}{secrets.token_hex(2)}"


@dataclass(frozen=True)
class SigningKey:
    domain: str
    selector: str
    private_key: str  # PEM, decrypted: in memory only, never logged


def dkim_entries(tenant: Tenant) -> list[dict[str, Any]]:
    return _entries(tenant.dkim_keys)


def _entries(stored: list[dict[str, Any]] | None) -> list[dict[str, Any]]:
    return [dict(e) for e in stored or [] if isinstance(e, dict)]


def signing_key_for(tenant: Tenant, from_domain: str) -> SigningKey | None:
    """The key that signs mail from ``from_domain``: its own domain's, else its closest registered parent's
    (``d=example.com`` on ``From: news.example.com`` is aligned for DMARC's relaxed mode); None when the
    tenant signs no such domain."""
    try:
        wanted = normalise_domain(from_domain)
    except InvalidInputError:
        return None
    best: dict[str, Any] | None = None
    for entry in dkim_entries(tenant):
        domain = entry.get("domain", "")
        if entry.get("signing") and (wanted == domain or wanted.endswith("." + domain)) \
                and (best is None or len(domain) > len(best["domain"])):
            best = entry
    if best is None:
        return None
    pem = decrypt(best["private_key"], context=dkim_key_context(tenant.tenant_id, best["domain"], best["selector"]))
    return SigningKey(best["domain"], best["selector"], pem)


def sign_for_tenant(tenant: Tenant, from_domain: str, data: bytes) -> bytes:
    """``data`` DKIM-signed when the tenant signs the From domain, else unchanged. A key that does not
    decrypt raises (the message is retried, never sent unsigned by mistake)."""
    key = signing_key_for(tenant, from_domain)
    if key is None:
        return data
    return sign(data, domain=key.domain, selector=key.selector, private_key=key.private_key,
                timestamp=clock.now_ts())


def public_view(entry: dict[str, Any]) -> dict[str, Any]:
    """What the API shows of a key: the DNS record to publish, never the private key."""
    return {"selector": entry["selector"], "signing": bool(entry.get("signing")),
            "created_at": entry.get("created_at"), "dns_name": dns_name(entry["selector"], entry["domain"]),
            "dns_type": "TXT", "dns_value": dns_value(entry["public_key"])}


def domain_view(domain: str, entries: list[dict[str, Any]]) -> dict[str, Any]:
    mine = [e for e in entries if e["domain"] == domain]
    signing = next((e["selector"] for e in mine if e.get("signing")), None)
    return {"domain": domain, "signing_selector": signing, "selectors": [public_view(e) for e in mine]}


class DkimDomains:
    """Registering, rotating and removing a tenant's signing domains (the tenant's own token or the admin)."""

    def __init__(self, repo: MailRepository) -> None:
        self.repo = repo

    def list_domains(self, principal: Principal, tenant_id: str) -> list[dict[str, Any]]:
        principal.require_self_or_admin(tenant_id)
        entries = dkim_entries(self.repo.require_tenant(tenant_id))
        return [domain_view(d, entries) for d in dict.fromkeys(e["domain"] for e in entries)]

    def get(self, principal: Principal, tenant_id: str, domain: str) -> dict[str, Any]:
        principal.require_self_or_admin(tenant_id)
        wanted = normalise_domain(domain)
        entries = dkim_entries(self.repo.require_tenant(tenant_id))
        if not any(e["domain"] == wanted for e in entries):
            raise NotFoundError(f"domain '{wanted}' is not registered for DKIM")
        return domain_view(wanted, entries)

    def register(self, principal: Principal, tenant_id: str, domain: str, selector: str | None) -> dict[str, Any]:
        principal.require_self_or_admin(tenant_id)
        wanted = normalise_domain(domain)
        chosen = check_selector(selector) if selector else new_selector()

        def change(entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
            if any(e["domain"] == wanted for e in entries):
                raise ConflictError(f"domain '{wanted}' is already registered; rotate its key instead")
            return [*entries, self._new_entry(tenant_id, wanted, chosen, signing=True)]

        entries = self._update(tenant_id, change)
        audit.record(self.repo, command="register_dkim_domain", tenant_id=tenant_id,
                     payload={"domain": wanted, "selector": chosen},
                     message=f"DKIM domain '{wanted}' registered for tenant '{tenant_id}'", status=201)
        return domain_view(wanted, entries)

    def rotate(self, principal: Principal, tenant_id: str, domain: str, selector: str | None,
               activate: bool) -> dict[str, Any]:
        principal.require_self_or_admin(tenant_id)
        wanted = normalise_domain(domain)
        chosen = check_selector(selector) if selector else new_selector()

        def change(entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
            mine = [e for e in entries if e["domain"] == wanted]
            if not mine:
                raise NotFoundError(f"domain '{wanted}' is not registered for DKIM")
            if any(e["selector"] == chosen for e in mine):
                raise ConflictError(f"selector '{chosen}' is already in use for '{wanted}'")
            if activate:
                entries = [{**e, "signing": False} if e["domain"] == wanted else e for e in entries]
            return [*entries, self._new_entry(tenant_id, wanted, chosen, signing=activate)]

        entries = self._update(tenant_id, change)
        audit.record(self.repo, command="rotate_dkim_key", tenant_id=tenant_id,
                     payload={"domain": wanted, "selector": chosen, "activate": activate},
                     message=f"DKIM key of '{wanted}' rotated to selector '{chosen}' for tenant '{tenant_id}'")
        return domain_view(wanted, entries)

    def activate(self, principal: Principal, tenant_id: str, domain: str, selector: str) -> dict[str, Any]:
        principal.require_self_or_admin(tenant_id)
        wanted, chosen = normalise_domain(domain), check_selector(selector)

        def change(entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
            self._require_selector(entries, wanted, chosen)
            return [{**e, "signing": e["selector"] == chosen} if e["domain"] == wanted else e for e in entries]

        entries = self._update(tenant_id, change)
        audit.record(self.repo, command="activate_dkim_key", tenant_id=tenant_id,
                     payload={"domain": wanted, "selector": chosen},
                     message=f"DKIM selector '{chosen}' of '{wanted}' signs for tenant '{tenant_id}'")
        return domain_view(wanted, entries)

    def remove_selector(self, principal: Principal, tenant_id: str, domain: str, selector: str) -> dict[str, Any]:
        principal.require_self_or_admin(tenant_id)
        wanted, chosen = normalise_domain(domain), check_selector(selector)

        def change(entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
            entry = self._require_selector(entries, wanted, chosen)
            if entry.get("signing"):
                raise ConflictError(f"selector '{chosen}' signs '{wanted}'; activate another one first "
                                    "(or remove the domain to stop signing)")
            return [e for e in entries if e is not entry]

        entries = self._update(tenant_id, change)
        audit.record(self.repo, command="remove_dkim_selector", tenant_id=tenant_id,
                     payload={"domain": wanted, "selector": chosen},
                     message=f"DKIM selector '{chosen}' of '{wanted}' removed for tenant '{tenant_id}'")
        return domain_view(wanted, entries)

    def remove_domain(self, principal: Principal, tenant_id: str, domain: str) -> None:
        principal.require_self_or_admin(tenant_id)
        wanted = normalise_domain(domain)

        def change(entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
            if not any(e["domain"] == wanted for e in entries):
                raise NotFoundError(f"domain '{wanted}' is not registered for DKIM")
            return [e for e in entries if e["domain"] != wanted]

        self._update(tenant_id, change)
        audit.record(self.repo, command="remove_dkim_domain", tenant_id=tenant_id, payload={"domain": wanted},
                     message=f"DKIM domain '{wanted}' removed for tenant '{tenant_id}': its mail is no longer signed")

    # ------------------------------------------------------------------------------------------ plumbing

    @staticmethod
    def _require_selector(entries: list[dict[str, Any]], domain: str, selector: str) -> dict[str, Any]:
        for entry in entries:
            if entry["domain"] == domain and entry["selector"] == selector:
                return entry
        raise NotFoundError(f"selector '{selector}' is not registered for '{domain}'")

    @staticmethod
    def _new_entry(tenant_id: str, domain: str, selector: str, *, signing: bool) -> dict[str, Any]:
        private, public = generate_key()
        return {"domain": domain, "selector": selector, "signing": signing, "created_at": clock.now_iso(),
                "public_key": public,
                "private_key": encrypt(private, context=dkim_key_context(tenant_id, domain, selector))}

    def _update(self, tenant_id: str, change: Any) -> list[dict[str, Any]]:
        """Read the list, apply ``change``, write it on condition that nobody changed it meanwhile."""
        for _attempt in range(MAX_WRITE_ATTEMPTS):
            stored = self.repo.require_tenant(tenant_id).dkim_keys or []
            entries = change(_entries(stored))
            if len(entries) > MAX_DKIM_KEYS:
                raise ConflictError(f"at most {MAX_DKIM_KEYS} DKIM keys per tenant; remove retired selectors first")
            if self.repo.replace_dkim_keys(tenant_id, stored, entries):
                return entries
        raise ConflictError("the tenant's DKIM keys changed concurrently; try again")
