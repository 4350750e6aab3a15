"""One-click unsubscribe through the local stack: the link in a delivered message, opened (nothing changes)
and POSTed as a mailbox provider does (the recipient is suppressed and a later message to it is not sent)."""

from __future__ import annotations

import email
import email.policy
import re

import pytest

from local.harness import RunningStack
from tests.e2e.test_delivery_e2e import wait_status

pytestmark = pytest.mark.e2e

FORM = {"Content-Type": "application/x-www-form-urlencoded"}


def test_a_one_click_post_through_the_local_stack_stops_later_messages(local_stack: RunningStack) -> None:
    token = local_stack.request("POST", "/tenant", {"tenant_id": "e2e-unsub"}).json()["api_key"]
    account = {"id": "sink", "host": local_stack.smtp_host, "port": local_stack.smtp_port, "tls": "none"}
    assert local_stack.request("POST", "/account", account, token=token).status == 201
    first = {"id": "news-1", "account_id": "sink", "from": "news@example.com", "to": ["reader@example.org"],
             "subject": "News 1", "body": "Hello", "unsubscribe": True}
    before = len(local_stack.mail_files())
    assert local_stack.request("POST", "/commands/add-messages", {"messages": [first]}, token=token).json()[
        "queued"] == 1
    [delivered] = local_stack.wait_for_mail(before + 1)[before:]
    mail = email.message_from_bytes(delivered.read_bytes(), policy=email.policy.default)
    assert mail["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    link = re.escape(local_stack.api_url) + r"(/unsubscribe/[A-Za-z0-9_.-]+)>"
    found = re.search(link, str(mail["List-Unsubscribe"]))
    assert found, mail["List-Unsubscribe"]
    path = found.group(1)

    page = local_stack.request("GET", path, admin=False)
    assert page.status == 200 and b'<form method="post">' in page.body
    tampered = local_stack.request("POST", path[:-3] + ("xyz" if not path.endswith("xyz") else "abc"),
                                   b"List-Unsubscribe=One-Click", admin=False, headers=FORM)
    assert tampered.status == 404
    assert local_stack.request("GET", "/suppressions", token=token).json()["suppressions"] == []

    done = local_stack.request("POST", path, b"List-Unsubscribe=One-Click", admin=False, headers=FORM)
    assert done.status == 200, done.body
    [entry] = local_stack.request("GET", "/suppressions", token=token).json()["suppressions"]
    assert (entry["address"], entry["source"]) == ("reader@example.org", "unsubscribe")
    second = {**first, "id": "news-2", "subject": "News 2"}
    assert local_stack.request("POST", "/commands/add-messages", {"messages": [second]}, token=token).json()[
        "queued"] == 1
    record = wait_status(local_stack, token, "news-2", "error")
    assert record["error"] == "suppressed"
    history = wait_status(local_stack, token, "news-1", "sent")["history"]
    assert [e["event_type"] for e in history] == ["sent", "unsubscribe"]
