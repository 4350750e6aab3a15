"""Report signing secrets: rotating twice within the grace period keeps every secret still in its grace.

Each secret a receiver may still hold must verify the report's signature header until its grace ends.
"""

from __future__ import annotations

from mail_proxy.adapters.dynamodb import MailRepository
from mail_proxy.domain import clock
from mail_proxy.security.report_signing import signature_header, verify
from mail_proxy.usecases.tenants import MAX_SIGNING_SECRETS_IN_GRACE, signing_secrets_in_use
from tests.conftest import ADMIN_TOKEN, ApiClient, Stack

BODY = b'{"delivery_report":[]}'


def rotate(api: ApiClient, grace: int) -> str:
    resp = api.post(f"/tenant/acme/signing-secret?grace_seconds={grace}", token=ADMIN_TOKEN)
    assert resp.status == 200, resp.text
    return str(resp.json["signing_secret"])


def header_now(stack: Stack) -> tuple[str, int]:
    tenant = MailRepository(stack.table_name).require_tenant("acme")
    now = clock.now_ts()
    return signature_header(signing_secrets_in_use(tenant), now, BODY), now


def verifies(header: str, now: int, secret: str) -> bool:
    return verify(header, BODY, secret, now=now)


def test_two_rotations_within_the_grace_keep_both_earlier_secrets(api: ApiClient, stack: Stack) -> None:
    first = api.post("/tenant", token=ADMIN_TOKEN, body={"tenant_id": "acme"}).json["signing_secret"]
    second = rotate(api, 3600)
    clock.advance(60)
    third = rotate(api, 3600)
    header, now = header_now(stack)
    for secret in (first, second, third):
        assert verifies(header, now, secret), "a secret still in its grace no longer verifies"


def test_each_retired_secret_stops_verifying_when_its_own_grace_ends(api: ApiClient, stack: Stack) -> None:
    first = api.post("/tenant", token=ADMIN_TOKEN, body={"tenant_id": "acme"}).json["signing_secret"]
    second = rotate(api, 600)  # first: valid 600 s more
    clock.advance(300)
    third = rotate(api, 3600)  # second: valid 3,600 s more
    clock.advance(301)
    header, now = header_now(stack)
    assert not verifies(header, now, first)
    assert verifies(header, now, second) and verifies(header, now, third)


def test_at_most_a_bounded_number_of_retired_secrets_are_kept(api: ApiClient, stack: Stack) -> None:
    secrets = [api.post("/tenant", token=ADMIN_TOKEN, body={"tenant_id": "acme"}).json["signing_secret"]]
    for _ in range(MAX_SIGNING_SECRETS_IN_GRACE + 1):
        secrets.append(rotate(api, 3600))
    header, now = header_now(stack)
    kept = [s for s in secrets if verifies(header, now, s)]
    assert kept == secrets[-(MAX_SIGNING_SECRETS_IN_GRACE + 1):]  # the current one and the newest retired ones


def test_a_rotation_without_grace_drops_every_earlier_secret(api: ApiClient, stack: Stack) -> None:
    first = api.post("/tenant", token=ADMIN_TOKEN, body={"tenant_id": "acme"}).json["signing_secret"]
    second = rotate(api, 3600)
    third = rotate(api, 0)
    header, now = header_now(stack)
    assert [verifies(header, now, s) for s in (first, second, third)] == [False, False, True]


def test_the_newest_retired_secret_stays_in_the_single_previous_fields(api: ApiClient, stack: Stack) -> None:
    """Readers of the older single pair (previous_signing_secret) keep signing with the newest retired one."""
    api.post("/tenant", token=ADMIN_TOKEN, body={"tenant_id": "acme"})
    rotate(api, 3600)
    before = MailRepository(stack.table_name).require_tenant("acme").signing_secret
    rotate(api, 3600)
    tenant = MailRepository(stack.table_name).require_tenant("acme")
    assert tenant.previous_signing_secret == before
    assert tenant.previous_signing_valid_until == tenant.previous_signing_secrets[0]["valid_until"]
