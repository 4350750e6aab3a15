"""Who is calling and what it may touch: the authorizer's decision and the tenant-scoping rule."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import pytest

from mail_proxy.domain.entities import Tenant, entity_from_fields
from mail_proxy.domain.models import Role
from mail_proxy.domain.principal import Principal
from mail_proxy.errors import ForbiddenError, InvalidInputError, UnauthorizedError
from mail_proxy.security.tokens import generate_token, hash_token, hashes_match
from mail_proxy.settings import reset_settings
from mail_proxy.usecases.authorization import authenticate, authorizer_response, principal_from_context

ADMIN_TOKEN = "admin-token-unit-0123456789abcdef"
ACME_TOKEN = "acme-token-unit-0123456789abcdef"

ADMIN = Principal(Role.ADMIN)
ACME = Principal(Role.TENANT, "acme")
ANONYMOUS = Principal(Role.ANONYMOUS)


class InMemoryTenants:
    """The two repository reads the authorizer makes, over a dict of tenant items."""

    def __init__(self, *tenants: dict[str, Any]) -> None:
        self.tenants = {t["tenant_id"]: t for t in tenants}
        self.index: dict[str, str] = {t["token_hash"]: t["tenant_id"] for t in tenants if t.get("token_hash")}

    def find_tenant_id_by_token_hash(self, token_hash: str) -> str | None:
        return self.index.get(token_hash)

    def get_tenant(self, tenant_id: str) -> Tenant | None:
        item = self.tenants.get(tenant_id)
        return None if item is None else entity_from_fields(Tenant, item)


@pytest.fixture
def admin_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("TABLE_NAME", "unit-table")
    monkeypatch.setenv("GMP_API_TOKEN", ADMIN_TOKEN)
    for name in ("ADMIN_SECRET_ID", "SECRET_ID"):
        monkeypatch.delenv(name, raising=False)
    reset_settings()
    yield
    reset_settings()


def repo() -> Any:
    return InMemoryTenants({"tenant_id": "acme", "token_hash": hash_token(ACME_TOKEN)})


# ------------------------------------------------------------------------------------------ scoping


def test_tenant_token_without_tenant_id_acts_on_its_own_tenant() -> None:
    assert ACME.tenant_scope(None) == "acme"


def test_tenant_token_naming_its_own_tenant_is_allowed() -> None:
    assert ACME.require_tenant("acme") == "acme"


def test_tenant_token_naming_another_tenant_is_forbidden() -> None:
    with pytest.raises(ForbiddenError):
        ACME.tenant_scope("other")


def test_admin_token_must_name_the_tenant() -> None:
    with pytest.raises(InvalidInputError, match="tenant_id is required"):
        ADMIN.tenant_scope(None)


def test_admin_token_acts_on_the_named_tenant() -> None:
    assert ADMIN.require_tenant("other") == "other"


def test_admin_may_omit_tenant_only_where_the_route_allows_all_tenants() -> None:
    assert ADMIN.tenant_scope(None, admin_may_omit=True) is None


def test_anonymous_caller_is_unauthorized_everywhere() -> None:
    for check in (lambda: ANONYMOUS.tenant_scope("acme"), ANONYMOUS.require_admin,
                  ANONYMOUS.require_authenticated, lambda: ANONYMOUS.require_self_or_admin("acme")):
        with pytest.raises(UnauthorizedError):
            check()


def test_tenant_token_is_forbidden_on_admin_operations() -> None:
    with pytest.raises(ForbiddenError, match="Admin token required"):
        ACME.require_admin()


def test_tenant_may_act_on_itself_but_not_on_another() -> None:
    ACME.require_self_or_admin("acme")
    with pytest.raises(ForbiddenError):
        ACME.require_self_or_admin("other")


# ------------------------------------------------------------------------------------------ context


@pytest.mark.parametrize("context", [None, {}, {"role": "root"}, {"role": "tenant"},
                                     {"role": "tenant", "tenant_id": ""}, {"role": "anonymous", "tenant_id": "acme"}])
def test_missing_or_odd_authorizer_context_means_anonymous(context: dict[str, Any] | None) -> None:
    assert principal_from_context(context).role is Role.ANONYMOUS


def test_tenant_context_gives_that_tenant() -> None:
    assert principal_from_context({"role": "tenant", "tenant_id": "acme"}) == ACME


def test_admin_context_never_carries_a_tenant() -> None:
    assert principal_from_context({"role": "admin", "tenant_id": "acme"}) == ADMIN


@pytest.mark.parametrize("who", [ADMIN, ACME, ANONYMOUS])
def test_authorizer_passes_every_caller_on_with_its_role(who: Principal) -> None:
    response = authorizer_response(who)
    assert response["isAuthorized"] is True
    assert principal_from_context(response["context"]) == who


# ------------------------------------------------------------------------------------------ tokens


@pytest.mark.usefixtures("admin_env")
def test_admin_token_authenticates_as_admin() -> None:
    assert authenticate(repo(), ADMIN_TOKEN) == ADMIN


@pytest.mark.usefixtures("admin_env")
def test_tenant_token_authenticates_as_its_tenant() -> None:
    assert authenticate(repo(), ACME_TOKEN) == ACME


@pytest.mark.usefixtures("admin_env")
@pytest.mark.parametrize("token", [None, "", "wrong-token-0123456789", ACME_TOKEN + "x", ACME_TOKEN.upper(),
                                   hash_token(ACME_TOKEN), "x" * 513])
def test_unknown_token_is_anonymous(token: str | None) -> None:
    assert authenticate(repo(), token) == ANONYMOUS


@pytest.mark.usefixtures("admin_env")
def test_stale_token_index_entry_does_not_authenticate() -> None:
    stale = InMemoryTenants({"tenant_id": "acme", "token_hash": hash_token("a-newer-token-0123456789")})
    stale.index[hash_token(ACME_TOKEN)] = "acme"
    assert authenticate(stale, ACME_TOKEN) == ANONYMOUS


def test_without_a_configured_admin_token_nothing_is_admin(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TABLE_NAME", "unit-table")
    for name in ("GMP_API_TOKEN", "ADMIN_SECRET_ID", "SECRET_ID"):
        monkeypatch.delenv(name, raising=False)
    reset_settings()
    try:
        assert authenticate(repo(), ADMIN_TOKEN) == ANONYMOUS
        assert authenticate(repo(), "") == ANONYMOUS
    finally:
        reset_settings()


@pytest.mark.usefixtures("admin_env")
def test_authentication_is_logged_without_the_token(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    authenticate(repo(), ACME_TOKEN)
    authenticate(repo(), "wrong-token-0123456789")
    authenticate(repo(), ADMIN_TOKEN)
    messages = [r.getMessage() for r in caplog.records]
    assert "API auth successful for tenant 'acme'" in messages
    assert "API auth failed: invalid token" in messages
    for token in (ACME_TOKEN, "wrong-token-0123456789", ADMIN_TOKEN, hash_token(ACME_TOKEN)):
        assert token not in caplog.text


def test_tokens_are_stored_as_sha256_and_compared_exactly() -> None:
    token = generate_token()
    assert len(token) > 40 and token != generate_token()
    assert hash_token(token) != token and len(hash_token(token)) == 64
    assert hashes_match(hash_token(token), hash_token(token))
    assert not hashes_match(hash_token(token), hash_token(token + "x"))
    assert not hashes_match(None, hash_token(token))
