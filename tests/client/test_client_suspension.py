"""The client's suspend_tenant / resume_tenant against the session's local stack."""

from __future__ import annotations

import pytest
from mail_proxy_client import Forbidden, MailProxyClient

from local.harness import RunningStack
from tests.client.conftest import unique

pytestmark = pytest.mark.e2e


def test_an_admin_suspends_a_tenant_and_only_the_admin_resumes_it(local_stack: RunningStack) -> None:
    admin = MailProxyClient(local_stack.api_url, local_stack.admin_token)
    tenant_id = unique("held")
    own = MailProxyClient(local_stack.api_url, admin.create_tenant(tenant_id)["api_key"])
    admin.suspend_tenant(tenant_id, reason="unpaid")
    with pytest.raises(Forbidden, match="tenant suspended by an administrator"):
        own.status()
    shown = admin.get_tenant(tenant_id)
    assert shown["admin_suspended"] is True and shown["admin_suspended_reason"] == "unpaid"
    admin.resume_tenant(tenant_id)
    assert own.status()["ok"] is True
    admin.delete_tenant(tenant_id)
