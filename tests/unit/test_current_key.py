"""The api function's own check of a tenant token against the tenant's current key (and suspension)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from mail_proxy.domain import clock
from mail_proxy.domain.entities import Tenant, entity_from_fields
from mail_proxy.domain.models import Role
from mail_proxy.domain.principal import Principal
from mail_proxy.errors import ForbiddenError, UnauthorizedError
from mail_proxy.security.tokens import hash_token
from mail_proxy.usecases.authorization import KEY_CHECK_CACHE_SECONDS, confirm_principal, forget_tenant_keys

TOKEN = "acme-token-unit-0123456789abcdef"
ACME = Principal(Role.TENANT, "acme")


class Tenants:
    def __init__(self, **fields: Any) -> None:
        self.item: dict[str, Any] | None = {"tenant_id": "acme", "token_hash": hash_token(TOKEN), **fields}
        self.reads = 0

    def get_tenant(self, tenant_id: str) -> Tenant | None:
        self.reads += 1
        return None if self.item is None else entity_from_fields(Tenant, self.item)


@pytest.fixture(autouse=True)
def fresh() -> Iterator[None]:
    forget_tenant_keys()
    clock.reset()
    yield
    forget_tenant_keys()
    clock.reset()


def test_the_current_key_passes() -> None:
    assert confirm_principal(Tenants(), ACME, TOKEN) == ACME  # type: ignore[arg-type]


@pytest.mark.parametrize("token", [None, "", "another-token-0123456789", "é" * 600])
def test_a_token_that_is_not_the_current_key_is_unauthorized(token: str | None) -> None:
    with pytest.raises(UnauthorizedError):
        confirm_principal(Tenants(), ACME, token)  # type: ignore[arg-type]


def test_a_revoked_key_or_a_deleted_tenant_is_unauthorized() -> None:
    revoked = Tenants(token_hash=None)
    with pytest.raises(UnauthorizedError):
        confirm_principal(revoked, ACME, TOKEN)  # type: ignore[arg-type]
    gone = Tenants()
    gone.item = None
    forget_tenant_keys()
    with pytest.raises(UnauthorizedError):
        confirm_principal(gone, ACME, TOKEN)  # type: ignore[arg-type]


def test_an_admin_suspension_is_forbidden_with_its_reason() -> None:
    with pytest.raises(ForbiddenError, match="tenant suspended by an administrator"):
        confirm_principal(Tenants(admin_suspended=True), ACME, TOKEN)  # type: ignore[arg-type]


def test_admin_and_anonymous_callers_are_left_as_the_authorizer_decided() -> None:
    tenants = Tenants()
    for who in (Principal(Role.ADMIN), Principal(Role.ANONYMOUS)):
        assert confirm_principal(tenants, who, None) == who  # type: ignore[arg-type]
    assert tenants.reads == 0


def test_the_tenant_is_read_at_most_once_per_cache_period_then_again() -> None:
    tenants = Tenants()
    for _ in range(5):
        confirm_principal(tenants, ACME, TOKEN)  # type: ignore[arg-type]
    assert tenants.reads == 1
    tenants.item = {**(tenants.item or {}), "token_hash": hash_token("rotated-0123456789abcdef")}
    clock.advance(KEY_CHECK_CACHE_SECONDS + 0.1)
    with pytest.raises(UnauthorizedError):
        confirm_principal(tenants, ACME, TOKEN)  # type: ignore[arg-type]
    assert tenants.reads == 2
