"""`python -m demo` (`make demo`): the mail proxy in two minutes, on this machine, through its Python client.

It starts the local stack on free ports, starts a small HTTP receiver standing in for the application (it
gets the delivery reports), creates a tenant and an SMTP account pointing at the stack's SMTP sink, sends
four messages (plain, HTML with an attachment, deferred, invalid), shows what became of each with its
history, the delivered `.eml` files and the reports received, and stops everything. Bounded: it gives up
after `--timeout` seconds (default 90) and exits non-zero if anything did not happen as shown.
"""

from __future__ import annotations

import argparse
import email
import email.policy
import json
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
try:
    import mail_proxy_client  # noqa: F401  (installed by `make venv`)
except ImportError:  # run from a checkout without the editable install
    sys.path.insert(0, str(REPO / "clients" / "python"))

from mail_proxy_client import MailProxyClient  # noqa: E402
from mail_proxy_client.composing import base64_attachment  # noqa: E402
from mail_proxy_client.output import cell, table  # noqa: E402
from mail_proxy_client.reports import SIGNATURE_HEADER, verify_signature  # noqa: E402

from local.harness import RunningStack, running_stack  # noqa: E402

TENANT = "demo-shop"
DEFER_SECONDS = 60
INVOICE_CSV = "item,quantity,price\nBlue mug,2,9.50\nTea (250 g),1,7.20\n"


class ReportInbox:
    """The application's sync endpoint: records each report call and answers `{"ok": true}`."""

    def __init__(self) -> None:
        self.calls: list[tuple[dict[str, str], bytes]] = []
        self.lock = threading.Lock()
        inbox = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                with inbox.lock:
                    inbox.calls.append(({k.lower(): v for k, v in self.headers.items()}, body))
                answer = b'{"ok": true}'
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, format: str, *args: Any) -> None:
                """Quiet: the demo prints what matters."""

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05},
                                       name="report-inbox", daemon=True)

    @contextmanager
    def running(self) -> Iterator[ReportInbox]:
        self.thread.start()
        try:
            yield self
        finally:
            self.server.shutdown()
            self.server.server_close()
            self.thread.join(timeout=5)

    def items(self, secret: str) -> list[tuple[dict[str, Any], bool]]:
        """Every reported event with whether its call's signature checked out."""
        with self.lock:
            calls = list(self.calls)
        found = []
        for headers, body in calls:
            valid = verify_signature(headers.get(SIGNATURE_HEADER.lower()), body, secret)
            found += [(item, valid) for item in json.loads(body).get("delivery_report", [])]
        return found


def say(text: str = "") -> None:
    print(text, flush=True)


def heading(text: str) -> None:
    say()
    say(f"== {text}")


def demo_messages(deferred_ts: int) -> list[tuple[dict[str, Any], str]]:
    shop = "Demo Shop <shop@example.com>"
    return [
        ({"id": "welcome-1", "account_id": "sink", "from": shop, "to": ["ada@example.org"],
          "subject": "Welcome to the shop", "body": "Hello Ada, your account is ready.", "priority": "high"},
         "plain text, priority high"),
        ({"id": "invoice-1", "account_id": "sink", "from": shop, "to": ["grace@example.org"],
          "subject": "Your invoice", "body": "Your invoice is attached.",
          "html_body": "<p>Your invoice is <b>attached</b>.</p>",
          "attachments": [base64_attachment("invoice.csv", INVOICE_CSV, "text/csv")]},
         "HTML + plain, invoice.csv attached as base64"),
        ({"id": "reminder-1", "account_id": "sink", "from": shop, "to": ["alan@example.org"],
          "subject": "Your cart misses you", "body": "Still thinking about it?", "deferred_ts": deferred_ts},
         f"deferred by {DEFER_SECONDS} s (deferred_ts)"),
        ({"id": "broken-1", "account_id": "sink", "from": shop, "to": ["not-an-address"],
          "subject": "This one cannot go", "body": "x"},
         'invalid recipient "not-an-address"'),
    ]


def run(stack: RunningStack, inbox: ReportInbox, deadline: float) -> bool:
    admin = MailProxyClient(stack.api_url, stack.admin_token)
    created = admin.create_tenant(TENANT, name="Demo Shop", client_base_url=inbox.url)
    secret = created.get("signing_secret", "")
    say(f"Tenant '{TENANT}' created; its API key (shown only once) is {created['api_key'][:10]}…")
    shop = MailProxyClient(stack.api_url, created["api_key"])
    shop.add_account("sink", stack.smtp_host, stack.smtp_port, tls="none", user="shop",
                     password="demo-password")  # noqa: S106 - the demo account on the local sink
    say(f"SMTP account 'sink' → {stack.smtp_host}:{stack.smtp_port} (tls none; the password is stored "
        "encrypted and never shown again)")

    heading("Submitting four messages in one add-messages call (with an Idempotency-Key)")
    deferred_ts = int(time.time()) + DEFER_SECONDS
    batch = demo_messages(deferred_ts)
    answer = shop.add_messages([message for message, _ in batch])
    rejected = {item["id"]: item["reason"] for item in answer["rejected"]}
    for message, what in batch:
        outcome = f"rejected: {rejected[message['id']]}" if message["id"] in rejected else "queued"
        say(f"  {message['id']:<11} {what:<46} {outcome}")
    say(f"  → queued {answer['queued']}, rejected {len(rejected)}.")
    say("  The local SMTP sink accepts every recipient, so a server refusing an address cannot be shown here.")
    say("  Instead the API refuses the invalid message at once: it is stored with status 'error' and reported")
    say("  to the application like any delivery failure, while the other messages go ahead.")

    heading("What became of them")
    finals = {}
    for message_id in ("welcome-1", "invoice-1", "broken-1"):
        finals[message_id] = shop.wait_for_message(message_id, timeout=max(1.0, deadline - time.monotonic()))
    finals["reminder-1"] = shop.get_message("reminder-1")
    records = [finals[message["id"]] for message, _ in batch]
    say(table([{**r, "when_ts": r.get("sent_ts") or r.get("error_ts") or r.get("deferred_ts")} for r in records],
              [("id", "ID"), ("status", "STATUS"), ("attempts", "TRIES"), ("when_ts", "AT (UTC)"),
               ("error", "ERROR")]).replace("\n", "\n  ").join(["  ", ""]))
    for record in records:
        events = record.get("history") or []
        lines = [f"{cell('event_ts', e['event_ts'])}  {e['event_type']}: {e.get('description') or ''}"
                 for e in events] or [f"(no event yet: waiting until {cell('deferred_ts', record['deferred_ts'])})"]
        say(f"  history of {record['id']}:")
        for line in lines:
            say(f"    {line}")

    heading(f"Delivered to the SMTP sink ({stack.mail_dir})")
    for path in stack.wait_for_mail(2, timeout=max(1.0, deadline - time.monotonic())):
        parsed = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
        files = [part.get_filename() for part in parsed.iter_attachments()]
        extra = f", attachment {', '.join(str(f) for f in files)}" if files else ""
        say(f"  {path.name}: To {parsed['To']}, Subject {parsed['Subject']!r}, {parsed.get_content_type()}{extra}")

    heading(f"Delivery reports received by the application ({inbox.url}/mail-proxy/sync)")
    wanted = {"welcome-1", "invoice-1", "broken-1"}
    while time.monotonic() < deadline and not wanted <= {item["id"] for item, _ in inbox.items(secret)}:
        time.sleep(0.2)
    reports = inbox.items(secret)
    for item, valid in reports:
        detail = item.get("error") or item.get("deferred_reason") or ""
        say(f"  {item['id']:<11} {item.get('event', '?'):<9} signature {'valid' if valid else 'INVALID'}  "
            f"{detail}".rstrip())
    if not reports:
        say("  (none arrived in time)")

    statuses = {r["id"]: r["status"] for r in records}
    expected = {"welcome-1": "sent", "invoice-1": "sent", "reminder-1": "deferred", "broken-1": "error"}
    reported = {item["id"] for item, valid in reports if valid}
    return statuses == expected and wanted <= reported


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m demo", description=__doc__)
    parser.add_argument("--timeout", type=float, default=90.0, help="give up after this many seconds (default 90)")
    parser.add_argument("--work-dir", type=Path, help="keep the stack's state, mail and log here (default: a "
                        "temporary directory, removed at the end)")
    args = parser.parse_args(argv)
    deadline = time.monotonic() + args.timeout
    with tempfile.TemporaryDirectory(prefix="mail-proxy-demo-") as temporary:
        work_dir = args.work_dir or Path(temporary)
        heading("Starting the local stack (moto, the Lambda handlers, an SMTP sink) on free ports")
        with running_stack(work_dir / "stack", ready_timeout=max(1.0, deadline - time.monotonic())) as stack, \
                ReportInbox().running() as inbox:
            say(f"API {stack.api_url}, SMTP sink {stack.smtp_host}:{stack.smtp_port}, reports to {inbox.url}")
            try:
                ok = run(stack, inbox, deadline)
            except Exception:
                say(f"\nThe demo failed; the stack's log ends with:\n{stack.log_tail(30)}")
                raise
            heading("Stopping the stack")
    say("Done: everything the demo started has stopped." if ok else
        "Done, but not everything happened as expected (see above).")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
