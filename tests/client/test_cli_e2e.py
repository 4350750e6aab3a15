"""The `mail-proxy` command line, run as a subprocess against the session's local stack: what a user types,
what they see, and the exit code a script gets."""

from __future__ import annotations

import email
import email.policy
import os
import pty
import select
import signal
import sys
import time
from email.message import EmailMessage
from pathlib import Path

import pytest

from local.harness import RunningStack
from tests.client.conftest import REPO, Cli, SinkTenant, client_environment, unique

pytestmark = pytest.mark.e2e


def delivered_with_id(stack: RunningStack, tenant_id: str, message_id: str) -> EmailMessage:
    for path in reversed(stack.mail_files()):
        parsed = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
        if parsed["X-Mail-Proxy-ID"] == f"{tenant_id}/{message_id}":
            assert isinstance(parsed, EmailMessage)
            return parsed
    raise AssertionError(f"{tenant_id}/{message_id} is not in the sink")


def test_tenant_commands_round_trip_with_parseable_json(stack_cli: Cli) -> None:
    tenant_id = unique("cli-tenant")
    created = stack_cli("local", "tenants", "add", tenant_id, "--name", "CLI Shop", "--json")
    assert created.code == 0, created.output
    assert created.json()["tenant_id"] == tenant_id and created.json()["api_key"]

    listed = stack_cli("local", "tenants", "list", "--json")
    assert tenant_id in {t["tenant_id"] for t in listed.json()}
    assert tenant_id in stack_cli("local", "tenants", "list").stdout

    assert stack_cli("local", "tenants", "update", tenant_id, "--name", "Renamed", "--inactive").code == 0
    shown = stack_cli("local", "tenants", "show", tenant_id, "--json").json()
    assert shown["name"] == "Renamed" and shown["active"] is False

    key = stack_cli("local", "tenants", "api-key", tenant_id, "--json").json()["api_key"]
    assert key and key != created.json()["api_key"]
    assert stack_cli("local", "tenants", "api-key", tenant_id, "--revoke").code == 0
    assert stack_cli("local", "tenants", "delete", tenant_id).code == 2  # no --yes, no terminal to ask on
    assert stack_cli("local", "tenants", "delete", tenant_id, "--yes").code == 0
    assert stack_cli("local", "tenants", "show", tenant_id).code == 3


def test_a_tenant_profile_saved_at_creation_acts_for_that_tenant_only(stack_cli: Cli) -> None:
    tenant_id, other = unique("cli-own"), unique("cli-other")
    assert stack_cli("local", "tenants", "add", other).code == 0
    added = stack_cli("local", "tenants", "add", tenant_id, "--save-profile", tenant_id)
    assert added.code == 0 and "API key (shown only now)" in added.stdout
    assert stack_cli(tenant_id, tenant_id, "accounts", "list").code == 0
    refused = stack_cli(tenant_id, other, "accounts", "list")
    assert refused.code == 6 and "may not act for tenant" in refused.stderr
    assert stack_cli(tenant_id, "tenants", "list").code == 6


def test_a_bad_token_exits_6_with_a_clear_message(stack_cli: Cli, local_stack: RunningStack) -> None:
    stack_cli("profile", "add", "wrong", "--url", local_stack.api_url, "--token", "not-the-token-at-all")
    result = stack_cli("wrong", "tenants", "list")
    assert result.code == 6
    assert "401" in result.stderr and "token" in result.stderr.lower() and result.stdout == ""


def test_an_unknown_tenant_exits_3(stack_cli: Cli) -> None:
    result = stack_cli("local", "no-such-tenant", "messages", "list")
    assert result.code == 3 and "tenant 'no-such-tenant' not found" in result.stderr


def test_an_unknown_message_exits_3(stack_cli: Cli, sink_tenant: SinkTenant) -> None:
    assert stack_cli("local", sink_tenant.tenant_id, "messages", "show", "never-sent").code == 3


def test_accounts_add_reads_the_password_from_stdin_and_never_prints_it(stack_cli: Cli, local_stack: RunningStack,
                                                                       sink_tenant: SinkTenant) -> None:
    password = "pw-never-shown-7f3a9c"
    added = stack_cli("local", sink_tenant.tenant_id, "accounts", "add", "--id", "relay", "--host",
                      "smtp.example.com", "--port", "587", "--tls", "starttls", "--user", "u@example.com",
                      "--password-stdin", stdin=password + "\n")
    assert added.code == 0, added.output
    shown = stack_cli("local", sink_tenant.tenant_id, "accounts", "show", "relay", "--json")
    listed = stack_cli("local", sink_tenant.tenant_id, "accounts", "list")
    assert shown.json()["has_password"] is True and shown.json()["user"] == "u@example.com"
    assert "relay" in listed.stdout and "smtp.example.com" in listed.stdout
    for result in (added, shown, listed):
        assert password not in result.output
    assert password not in local_stack.log_text()


def test_accounts_add_without_a_terminal_asks_for_password_stdin(stack_cli: Cli, sink_tenant: SinkTenant) -> None:
    result = stack_cli("local", sink_tenant.tenant_id, "accounts", "add", "--id", "x", "--host", "smtp.example.com",
                       "--port", "587", "--user", "u@example.com")
    assert result.code == 2 and "--password-stdin" in result.stderr


def test_the_password_prompt_does_not_echo(stack_cli: Cli, sink_tenant: SinkTenant) -> None:
    """Runs the command on a pseudo-terminal, as a person would, and reads everything the terminal shows."""
    password = "typed-secret-81c2"
    command = [sys.executable, "-m", "mail_proxy_client.cli", "local", sink_tenant.tenant_id, "accounts", "add",
               "--id", "typed", "--host", "smtp.example.com", "--port", "587", "--user", "u@example.com"]
    environment = client_environment(stack_cli.home)
    pid, terminal = pty.fork()
    if pid == 0:  # the child: the command line on the pseudo-terminal
        os.chdir(REPO)
        os.execve(sys.executable, command, environment)  # noqa: S606 - our interpreter, fixed arguments
    shown = b""
    deadline = time.monotonic() + 60
    try:
        while b"password" not in shown.lower() and time.monotonic() < deadline:
            shown += _read(terminal, deadline)
        os.write(terminal, password.encode() + b"\n")
        while time.monotonic() < deadline:
            chunk = _read(terminal, deadline)
            if not chunk:
                break
            shown += chunk
        _, status = os.waitpid(pid, 0)
    finally:
        if time.monotonic() >= deadline:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
        os.close(terminal)
    assert os.waitstatus_to_exitcode(status) == 0, shown
    assert b"SMTP password for u@example.com" in shown and b"saved" in shown
    assert password.encode() not in shown


def _read(fd: int, deadline: float) -> bytes:
    ready, _, _ = select.select([fd], [], [], max(0.0, deadline - time.monotonic()))
    if not ready:
        return b""
    try:
        return os.read(fd, 4096)
    except OSError:  # the child closed the terminal
        return b""


def test_send_with_options_waits_until_sent(stack_cli: Cli, local_stack: RunningStack,
                                            sink_tenant: SinkTenant) -> None:
    result = stack_cli("local", sink_tenant.tenant_id, "send", "--from", "Shop <shop@example.com>",
                       "--to", "ada@example.org,bob@example.org", "--subject", "From the CLI", "--body", "plain",
                       "--html", "<p>rich</p>", "--id", "cli-1", "--priority", "high", "--wait", "30")
    assert result.code == 0 and "Sent 'cli-1'" in result.stdout, result.output
    delivered = delivered_with_id(local_stack, sink_tenant.tenant_id, "cli-1")
    assert delivered["To"] == "ada@example.org, bob@example.org" and delivered["Subject"] == "From the CLI"
    assert delivered.get_body(("html",)).get_content().strip() == "<p>rich</p>"  # type: ignore[union-attr]

    shown = stack_cli("local", sink_tenant.tenant_id, "messages", "show", "cli-1")
    assert "sent" in shown.stdout and "History:" in shown.stdout
    listed = stack_cli("local", sink_tenant.tenant_id, "messages", "list", "--status", "sent", "--json")
    assert [m["id"] for m in listed.json()] == ["cli-1"]


def test_send_an_eml_file_with_its_attachment(stack_cli: Cli, local_stack: RunningStack, sink_tenant: SinkTenant,
                                             tmp_path: Path) -> None:
    source = EmailMessage()
    source["From"] = "shop@example.com"
    source["To"] = "grace@example.org"
    source["Subject"] = "Invoice from a file"
    source.set_content("See the attachment.")
    source.add_attachment(b"item,price\nmug,9.50\n", maintype="text", subtype="csv", filename="invoice.csv")
    path = tmp_path / "message.eml"
    path.write_bytes(source.as_bytes())
    result = stack_cli("local", sink_tenant.tenant_id, "send", str(path), "--id", "eml-1", "--wait", "30")
    assert result.code == 0, result.output
    delivered = delivered_with_id(local_stack, sink_tenant.tenant_id, "eml-1")
    assert delivered["Subject"] == "Invoice from a file"
    assert {p.get_filename(): p.get_content() for p in delivered.iter_attachments()} == {
        "invoice.csv": "item,price\nmug,9.50\n"}


def test_an_invalid_message_is_rejected_with_exit_4_and_kept_as_error(stack_cli: Cli,
                                                                     sink_tenant: SinkTenant) -> None:
    result = stack_cli("local", sink_tenant.tenant_id, "send", "--from", "shop@example.com", "--to", "nobody",
                       "--subject", "x", "--body", "y", "--id", "cli-bad", "--json")
    assert result.code == 4
    assert "rejected" in result.stderr and "not an e-mail address" in result.stderr
    assert result.json()["rejected"][0]["id"] == "cli-bad"
    shown = stack_cli("local", sink_tenant.tenant_id, "messages", "show", "cli-bad", "--json").json()
    assert shown["status"] == "error"


def test_invalid_account_fields_exit_4_with_the_field_named(stack_cli: Cli, sink_tenant: SinkTenant) -> None:
    result = stack_cli("local", sink_tenant.tenant_id, "accounts", "add", "--id", "p25", "--host", "smtp.example.com",
                       "--port", "25", "--no-password")
    assert result.code == 4 and "port" in result.stderr and "587" in result.stderr


def test_suspend_activate_run_now_delete_and_cleanup(stack_cli: Cli, sink_tenant: SinkTenant) -> None:
    tenant = sink_tenant.tenant_id
    suspended = stack_cli("local", tenant, "suspend", "--batch", "news", "--json")
    assert suspended.code == 0 and suspended.json()["suspended_batches"] == ["news"]
    queued = stack_cli("local", tenant, "send", "--from", "shop@example.com", "--to", "ada@example.org",
                       "--subject", "News", "--body", "b", "--id", "held", "--batch-code", "news")
    assert queued.code == 0, queued.output
    assert stack_cli("local", tenant, "run-now").code == 0
    assert stack_cli("local", tenant, "messages", "list", "--active-only", "--json").json()[0]["id"] == "held"
    activated = stack_cli("local", tenant, "activate", "--batch", "news")
    assert activated.code == 0 and "none" in activated.stdout
    deleted = stack_cli("local", tenant, "messages", "delete", "held", "never", "--json")
    assert deleted.code == 3 and deleted.json()["not_found"] == ["never"]
    cleaned = stack_cli("local", tenant, "messages", "cleanup", "--older-than", "0", "--json")
    assert cleaned.code == 0 and "removed" in cleaned.json()


def test_status_health_and_command_log(stack_cli: Cli, sink_tenant: SinkTenant) -> None:
    assert stack_cli("local", "status").code == 0
    assert stack_cli("local", "health", "--json").json() == {"status": "ok", "ok": True}
    log = stack_cli("local", "command-log", "--tenant", sink_tenant.tenant_id, "--json")
    assert log.code == 0 and isinstance(log.json(), list)


def test_suppressions_add_list_remove(stack_cli: Cli, sink_tenant: SinkTenant) -> None:
    tenant = sink_tenant.tenant_id
    assert stack_cli("local", tenant, "suppressions", "add", "gone@example.org", "--reason", "unsubscribed").code == 0
    listed = stack_cli("local", tenant, "suppressions", "list", "--json")
    assert [e["address"] for e in listed.json()] == ["gone@example.org"]
    assert "gone@example.org" in stack_cli("local", tenant, "suppressions", "list").stdout
    assert stack_cli("local", tenant, "suppressions", "remove", "gone@example.org").code == 0
    assert stack_cli("local", tenant, "suppressions", "list", "--json").json() == []


def test_a_csv_list_is_queued_through_the_stack_with_its_rejections_summarised(stack_cli: Cli, tmp_path: Path,
                                                                               sink_tenant: SinkTenant) -> None:
    listing = tmp_path / "list.csv"
    listing.write_text("id,to,cc,subject,body,html\n"
                       'bulk-1,"ada@example.org; ""Lovelace, Ada"" <ada2@example.org>",,One,first,\n'
                       "bulk-2,bob@example.org,carol@example.org,Two,,<p>second</p>\n"
                       "bulk-3,nobody,,Three,third,\n")
    result = stack_cli("--json", "local", sink_tenant.tenant_id, "send", "--file", str(listing), "--from",
                       "shop@example.com", "--batch-code", "bulk")
    assert result.code == 4, result.output
    summary = result.json()
    assert summary["total"] == 3 and summary["queued"] == 2 and summary["chunks"] == 1
    assert [item["id"] for item in summary["rejected"]] == ["bulk-3"]
    listed = stack_cli("local", sink_tenant.tenant_id, "messages", "list", "--all", "--json").json()
    statuses = {m["id"]: m["status"] for m in listed if m.get("batch_code") == "bulk"}
    assert statuses["bulk-3"] == "error" and statuses["bulk-1"] != "error" and statuses["bulk-2"] != "error"


def test_a_tenant_command_takes_its_connection_from_the_environment(stack_cli: Cli, local_stack: RunningStack,
                                                                     sink_tenant: SinkTenant) -> None:
    env = {"MAIL_PROXY_URL": local_stack.api_url, "MAIL_PROXY_TOKEN": sink_tenant.api_key}
    listed = stack_cli(sink_tenant.tenant_id, "accounts", "list", "--json", env=env)
    assert listed.code == 0 and [a["id"] for a in listed.json()] == ["sink"]
