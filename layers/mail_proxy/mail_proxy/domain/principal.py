"""Who is calling, as established by the authorizer, and the tenant-scoping rule of every route."""

from __future__ import annotations

from dataclasses import dataclass

from mail_proxy.domain.models import Role
from mail_proxy.errors import ForbiddenError, InvalidInputError, UnauthorizedError


@dataclass(frozen=True)
class Principal:
    role: Role
    tenant_id: str | None = None

    @property
    def is_admin(self) -> bool:
        return self.role is Role.ADMIN

    def require_authenticated(self) -> None:
        if self.role is Role.ANONYMOUS:
            raise UnauthorizedError("Invalid or missing API token")

    def require_admin(self) -> None:
        self.require_authenticated()
        if not self.is_admin:
            raise ForbiddenError("Admin token required, tenant tokens not allowed for this operation")

    def tenant_scope(self, requested: str | None, *, admin_may_omit: bool = False) -> str | None:
        """The tenant a request acts on.

        A tenant token may omit ``tenant_id`` (its own is used) and gets 403 for any other value; the
        admin token must name one (unless the route allows all tenants).
        """
        self.require_authenticated()
        if self.is_admin:
            if not requested and not admin_may_omit:
                raise InvalidInputError("tenant_id is required with the admin token")
            return requested or None
        if requested and requested != self.tenant_id:
            raise ForbiddenError("Token not authorized for this tenant")
        return self.tenant_id

    def require_tenant(self, requested: str | None) -> str:
        tenant = self.tenant_scope(requested)
        assert tenant is not None
        return tenant

    def require_self_or_admin(self, tenant_id: str) -> None:
        self.require_authenticated()
        if not self.is_admin and tenant_id != self.tenant_id:
            raise ForbiddenError("Token not authorized for this tenant")
