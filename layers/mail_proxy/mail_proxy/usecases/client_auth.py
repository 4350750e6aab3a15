"""The ``Authorization`` header the proxy sends to a tenant's application (reports, attachment endpoint)."""

from __future__ import annotations

import base64

from mail_proxy.adapters.secrets_config import decrypt
from mail_proxy.domain.entities import Tenant
from mail_proxy.usecases.tenants import client_auth_context


def client_auth_headers(tenant: Tenant) -> dict[str, str]:
    auth = tenant.client_auth or {}
    ctx = client_auth_context(tenant.tenant_id)
    if auth.get("method") == "bearer" and auth.get("token"):
        return {"Authorization": "Bearer " + decrypt(auth["token"], context=ctx + ":token")}
    if auth.get("method") == "basic" and auth.get("user"):
        password = decrypt(auth["password"], context=ctx + ":password") if auth.get("password") else ""
        return {"Authorization": "Basic " + base64.b64encode(f"{auth['user']}:{password}".encode()).decode()}
    return {}
