"""mail-proxy: the command line of the mail proxy.

    mail-proxy keygen | start local | stop local | profile add|list|remove
    mail-proxy PROFILE tenants list|add|show|update|delete|api-key|signing-secret
    mail-proxy PROFILE status|health|command-log
    mail-proxy PROFILE TENANT accounts add|list|show|delete
    mail-proxy PROFILE TENANT messages list|show|delete|cleanup
    mail-proxy PROFILE TENANT send FILE.eml | send --to ... --subject ... --body ...
    mail-proxy PROFILE TENANT suppressions list|add|remove
    mail-proxy PROFILE TENANT run-now | suspend | activate [--batch CODE]

A profile is a URL and a token (mail-proxy profile add). With the admin token, TENANT is the tenant
acted on; with a tenant's token it must be that tenant. Tables for people, --json for scripts.

Exit codes: 0 ok; 1 usage (bad arguments, unknown profile); 2 authentication (401, 403); 3 not found
(404); 4 invalid input or conflict (409, 413, 422, a message rejected); 5 server or network error (5xx,
429 after retries, no connection, a message that failed to send with --wait).
"""

from __future__ import annotations

import argparse
import base64
import getpass
import secrets
import sys
import time
from collections.abc import Callable, Sequence
from enum import IntEnum
from pathlib import Path
from typing import Any, NoReturn

from mail_proxy_client import __version__, local_stack
from mail_proxy_client.client import MailProxyClient
from mail_proxy_client.composing import ComposedMessage, base64_attachment, message_from_eml, new_message_id
from mail_proxy_client.errors import (
    Conflict,
    ConnectionFailed,
    Forbidden,
    MailProxyError,
    NotFound,
    PayloadTooLarge,
    ServerError,
    Throttled,
    Unauthorized,
    ValidationFailed,
    detail_text,
)
from mail_proxy_client.local_stack import LocalStackError, StackInfo, StackOptions
from mail_proxy_client.output import as_json, cell, fields, table
from mail_proxy_client.profiles import Profile, ProfileError, ProfileStore
from mail_proxy_client.records import FINAL_STATUSES


class Exit(IntEnum):
    OK = 0
    USAGE = 1
    AUTH = 2
    NOT_FOUND = 3
    INVALID = 4
    SERVER = 5


class UsageError(Exception):
    """Bad arguments: exit 1 with the message (and the usage line when argparse found it)."""


class CommandFailed(Exception):
    """A command that ran but did not succeed, with its exit code (a rejected message, a failed send)."""

    def __init__(self, message: str, code: Exit, payload: Any = None) -> None:
        super().__init__(message)
        self.code = code
        self.payload = payload


PROFILE_COMMANDS = ("tenants", "status", "health", "command-log")
WAIT_SECONDS = 60.0


class Parser(argparse.ArgumentParser):
    """argparse, but a usage error is exit 1 (argparse's own is 2, which here means authentication)."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{self.format_usage().strip()}\n{self.prog}: error: {message}")


def exit_code_for(error: MailProxyError) -> Exit:
    if isinstance(error, Unauthorized | Forbidden):
        return Exit.AUTH
    if isinstance(error, NotFound):
        return Exit.NOT_FOUND
    if isinstance(error, ServerError | Throttled | ConnectionFailed):
        return Exit.SERVER
    if isinstance(error, Conflict | ValidationFailed | PayloadTooLarge):
        return Exit.INVALID
    return Exit.INVALID if error.status is not None and 400 <= error.status < 500 else Exit.SERVER


# ------------------------------------------------------------------------------------------- parsers


def _common() -> Parser:
    common = Parser(add_help=False)
    common.add_argument("--json", action="store_true", help="print JSON (for scripts) instead of tables")
    return common


def _connection() -> Parser:
    options = Parser(add_help=False, parents=[_common()])
    options.add_argument("--timeout", type=float, default=30.0, help="seconds per HTTP request (default 30)")
    options.add_argument("--retries", type=int, default=3, help="retries on 429/5xx/network errors (default 3)")
    return options


def top_parser() -> Parser:
    parser = Parser(prog="mail-proxy", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"mail-proxy {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
    commands.add_parser("keygen", help="print a new encryption key (base64 of 32 random bytes)")

    start = commands.add_parser("start", help="run the local stack (python -m local in the repository)")
    start.add_argument("target", choices=["local"])
    start.add_argument("--api-token", help="admin token (default: kept in the state directory)")
    start.add_argument("--port", type=int, default=8000, help="HTTP API port (default 8000)")
    start.add_argument("--smtp-port", type=int, default=2525, help="SMTP sink port (default 2525)")
    start.add_argument("--repo", type=Path, help="the mail-proxy repository (default: found automatically)")
    start.add_argument("--state-dir", type=Path, help="state, mail and log (default ~/.mail-proxy/local)")
    start.add_argument("--background", action="store_true", help="start detached, return once it is ready")
    start.add_argument("--profile", help="save the stack's URL and admin token as this profile")

    stop = commands.add_parser("stop", help="stop a local stack started with --background")
    stop.add_argument("target", choices=["local"])
    stop.add_argument("--state-dir", type=Path, help="as given to start (default ~/.mail-proxy/local)")

    profile = commands.add_parser("profile", help="named connections: a URL and a token")
    actions = profile.add_subparsers(dest="action", metavar="ACTION", required=True, parser_class=Parser)
    add = actions.add_parser("add", help="add or replace a profile")
    add.add_argument("name")
    add.add_argument("--url", required=True, help="the API URL, e.g. http://127.0.0.1:8000")
    token = add.add_mutually_exclusive_group(required=True)
    token.add_argument("--token", help="the admin token or a tenant's API key")
    token.add_argument("--token-stdin", action="store_true", help="read the token from standard input")
    actions.add_parser("list", help="list profiles (tokens masked)", parents=[_common()])
    remove = actions.add_parser("remove", help="remove a profile")
    remove.add_argument("name")
    return parser


def profile_parser(profile: str) -> Parser:
    parser = Parser(prog=f"mail-proxy {profile}", description="Commands of a profile (see mail-proxy --help).",
                    epilog=f"Commands on one tenant's data: mail-proxy {profile} TENANT --help")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True, parser_class=Parser)
    connection = _connection()
    tenants = commands.add_parser("tenants", help="manage tenants (admin token)")
    actions = tenants.add_subparsers(dest="action", metavar="ACTION", required=True, parser_class=Parser)
    listing = actions.add_parser("list", help="list tenants", parents=[connection])
    listing.add_argument("--active-only", action="store_true")
    add = actions.add_parser("add", help="create a tenant; prints its API key once", parents=[connection])
    add.add_argument("tenant_id")
    _tenant_fields(add)
    add.add_argument("--token-stdin", action="store_true", help="read the tenant's API key from stdin "
                     "(default: the proxy generates one)")
    add.add_argument("--save-profile", metavar="NAME", help="save the new API key as profile NAME")
    show = actions.add_parser("show", help="show a tenant", parents=[connection])
    show.add_argument("tenant_id")
    update = actions.add_parser("update", help="change tenant fields", parents=[connection])
    update.add_argument("tenant_id")
    _tenant_fields(update)
    delete = actions.add_parser("delete", help="delete a tenant with its accounts and messages",
                                parents=[connection])
    delete.add_argument("tenant_id")
    delete.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    api_key = actions.add_parser("api-key", help="issue a new API key (replaces the old one) or revoke it",
                                 parents=[connection])
    api_key.add_argument("tenant_id")
    api_key.add_argument("--revoke", action="store_true", help="revoke the key instead: it stops working")
    api_key.add_argument("--save-profile", metavar="NAME", help="save the new API key as profile NAME")
    signing = actions.add_parser("signing-secret", help="a new secret for report signatures",
                                 parents=[connection])
    signing.add_argument("tenant_id")
    signing.add_argument("--grace-seconds", type=int, help="the old secret keeps signing this long (default a day)")

    commands.add_parser("status", help="check the token (GET /status)", parents=[connection])
    commands.add_parser("health", help="check the service (GET /health)", parents=[connection])
    log = commands.add_parser("command-log", help="commands the proxy carried out (admin)", parents=[connection])
    log.add_argument("--tenant", help="only this tenant's")
    log.add_argument("--since", type=int, metavar="UNIX_TS")
    log.add_argument("--until", type=int, metavar="UNIX_TS")
    log.add_argument("--limit", type=int, default=100)
    return parser


def _tenant_fields(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--name")
    parser.add_argument("--client-base-url", help="the application's URL for delivery reports")
    parser.add_argument("--client-sync-path", help="path of the report endpoint (default /mail-proxy/sync)")
    parser.add_argument("--auth-method", choices=["none", "bearer", "basic"],
                        help="how the proxy authenticates to the application")
    parser.add_argument("--auth-user", help="user for --auth-method basic")
    parser.add_argument("--auth-secret-stdin", action="store_true",
                        help="read the bearer token or basic password from stdin (else it is prompted)")
    active = parser.add_mutually_exclusive_group()
    active.add_argument("--active", dest="active", action="store_const", const=True)
    active.add_argument("--inactive", dest="active", action="store_const", const=False)


def tenant_parser(profile: str, tenant: str) -> Parser:
    parser = Parser(prog=f"mail-proxy {profile} {tenant}",
                    description="Commands on one tenant's data (see mail-proxy --help).")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True, parser_class=Parser)
    connection = _connection()

    accounts = commands.add_parser("accounts", help="the tenant's SMTP accounts")
    actions = accounts.add_subparsers(dest="action", metavar="ACTION", required=True, parser_class=Parser)
    add = actions.add_parser("add", help="add or replace an SMTP account", parents=[connection])
    add.add_argument("--id", required=True, dest="account_id", help="the account id messages refer to")
    add.add_argument("--host", required=True)
    add.add_argument("--port", required=True, type=int, help="587 (starttls) or 465 (ssl); 25 is refused")
    add.add_argument("--tls", choices=["none", "starttls", "ssl"], help="default starttls")
    add.add_argument("--user", help="SMTP user; the password is then prompted (never echoed)")
    password = add.add_mutually_exclusive_group()
    password.add_argument("--password-stdin", action="store_true", help="read the password from stdin")
    password.add_argument("--no-password", action="store_true", help="the account has no password")
    for window in ("minute", "hour", "day"):
        add.add_argument(f"--limit-per-{window}", type=int, metavar="N")
    add.add_argument("--limit-behavior", choices=["defer", "reject"], help="over a limit (default defer)")
    actions.add_parser("list", help="list accounts", parents=[connection])
    for name, text in (("show", "show an account"), ("delete", "delete an account")):
        action = actions.add_parser(name, help=text, parents=[connection])
        action.add_argument("account_id")

    messages = commands.add_parser("messages", help="the tenant's messages")
    actions = messages.add_subparsers(dest="action", metavar="ACTION", required=True, parser_class=Parser)
    listing = actions.add_parser("list", help="list messages (with filters)", parents=[connection])
    listing.add_argument("--status", choices=["pending", "deferred", "sending", "sent", "error", "bounced"])
    listing.add_argument("--active-only", action="store_true", help="only messages still waiting")
    listing.add_argument("--history", action="store_true", help="include each message's events (with --json)")
    listing.add_argument("--limit", type=int, default=50, help="at most this many (default 50)")
    listing.add_argument("--all", action="store_true", help="every message, following the cursor")
    show = actions.add_parser("show", help="a message with its history", parents=[connection])
    show.add_argument("message_id")
    delete = actions.add_parser("delete", help="delete messages", parents=[connection])
    delete.add_argument("message_ids", nargs="+", metavar="MESSAGE_ID")
    cleanup = actions.add_parser("cleanup", help="remove final messages older than a time", parents=[connection])
    cleanup.add_argument("--older-than", type=int, metavar="SECONDS", help="default: the proxy's retention")

    send = commands.add_parser("send", help="send one message: an .eml file, or --to/--subject/--body",
                               parents=[connection])
    send.add_argument("file", nargs="?", type=Path, help="an RFC 5322 (.eml) file")
    send.add_argument("--to", action="append", help="recipient (repeat, or separate with commas)")
    send.add_argument("--cc", action="append")
    send.add_argument("--bcc", action="append")
    send.add_argument("--subject")
    send.add_argument("--body", help="the plain text body")
    send.add_argument("--html", help="an HTML body (with --body: both, as multipart/alternative)")
    send.add_argument("--from", dest="sender", help="default: the .eml's From, else the account's user")
    send.add_argument("--attach", action="append", type=Path, metavar="FILE", help="attach a file (repeat)")
    send.add_argument("--inline", action="append", metavar="[CID=]FILE",
                      help="an inline image the HTML shows as <img src=\"cid:CID\"> (CID default: the file "
                           "name; repeat), e.g. --inline logo=logo.png")
    send.add_argument("--account", help="account id (default: the tenant's only account)")
    send.add_argument("--id", dest="message_id", help="message id (default: generated and printed)")
    send.add_argument("--priority", help="0-3 or immediate, high, medium, low")
    send.add_argument("--batch-code")
    send.add_argument("--deferred-ts", type=int, metavar="UNIX_TS", help="not sent before this time")
    send.add_argument("--wait", nargs="?", type=float, const=WAIT_SECONDS, metavar="SECONDS",
                      help=f"wait until it is sent or failed (default {WAIT_SECONDS:g} s)")

    suppressions = commands.add_parser("suppressions", help="addresses the tenant's messages are not sent to")
    actions = suppressions.add_subparsers(dest="action", metavar="ACTION", required=True, parser_class=Parser)
    actions.add_parser("list", help="list suppressed addresses (hard bounces, manual)", parents=[connection])
    add = actions.add_parser("add", help="suppress an address", parents=[connection])
    add.add_argument("address")
    add.add_argument("--reason")
    add.add_argument("--expires-ts", type=int, metavar="UNIX_TS", help="default: the retention period")
    remove = actions.add_parser("remove", help="send to an address again", parents=[connection])
    remove.add_argument("address")

    commands.add_parser("run-now", help="queue due messages and sync reports now", parents=[connection])
    for name, text in (("suspend", "hold a batch (or everything)"), ("activate", "release a batch (or all)")):
        command = commands.add_parser(name, help=text, parents=[connection])
        command.add_argument("--batch", metavar="CODE", help="the batch code (default: all)")
    return parser


# ------------------------------------------------------------------------------------------- context


class Context:
    """What a command works with: the parsed arguments, the profile's client, and where output goes."""

    def __init__(self, args: argparse.Namespace, profile: Profile | None = None, tenant: str | None = None) -> None:
        self.args = args
        self.profile = profile
        self.tenant = tenant
        self.json = bool(getattr(args, "json", False))
        self._client: MailProxyClient | None = None

    @property
    def client(self) -> MailProxyClient:
        if self._client is None:
            assert self.profile is not None
            self._client = MailProxyClient(self.profile.url, self.profile.token, timeout=self.args.timeout,
                                           retries=max(0, self.args.retries))
        return self._client

    def show(self, human: str | Callable[[], str], data: Any) -> None:
        """Prints ``data`` as JSON with ``--json``, else the human text."""
        if self.json:
            print(as_json(data))
        else:
            print(human() if callable(human) else human)


def read_secret_line(what: str) -> str:
    line = sys.stdin.readline().rstrip("\r\n")
    if not line:
        raise UsageError(f"expected the {what} on standard input, got nothing")
    return line


def prompt_secret(prompt: str, option: str) -> str:
    """Asks on the terminal without echo; in a script (no terminal) points to the ``*-stdin`` option."""
    if not sys.stdin.isatty():
        raise UsageError(f"no terminal to ask for the {prompt.rstrip(': ').lower()} on: use {option}")
    value = getpass.getpass(prompt)
    if not value:
        raise UsageError("empty input")
    return value


# ------------------------------------------------------------------------------------------- top-level


def cmd_keygen(ctx: Context) -> Exit:
    print(base64.b64encode(secrets.token_bytes(32)).decode("ascii"))
    return Exit.OK


def cmd_start(ctx: Context) -> Exit:
    args = ctx.args
    options = StackOptions(port=args.port, smtp_port=args.smtp_port, api_token=args.api_token,
                           state_dir=args.state_dir, repo=args.repo)

    def save(info: StackInfo) -> None:
        if args.profile:
            ProfileStore().add(args.profile, info.api_url, info.admin_token)
            print(f"Profile '{args.profile}' saved: {info.api_url} with the admin token.", flush=True)

    if not args.background:
        return Exit.OK if local_stack.run_foreground(options, on_ready=save) == 0 else Exit.SERVER
    info = local_stack.start_background(options)
    print(f"Local stack running (pid {info.pid}): API {info.api_url}, SMTP sink {info.smtp}.")
    print(f"Delivered mail goes to {info.mail_dir}; log {info.log}.")
    save(info)
    print("Stop it with: mail-proxy stop local" + (f" --state-dir {args.state_dir}" if args.state_dir else ""))
    return Exit.OK


def cmd_stop(ctx: Context) -> Exit:
    info = local_stack.stop_background(ctx.args.state_dir)
    print(f"Local stack stopped (pid {info.pid}).")
    return Exit.OK


def cmd_profile(ctx: Context) -> Exit:
    args, store = ctx.args, ProfileStore()
    if args.action == "add":
        token = read_secret_line("token") if args.token_stdin else args.token
        profile = store.add(args.name, args.url, token)
        print(f"Profile '{profile.name}' saved: {profile.url}")
    elif args.action == "list":
        rows = [{"name": p.name, "url": p.url, "token": p.masked_token} for p in store.all().values()]
        ctx.show(lambda: table(rows, [("name", "NAME"), ("url", "URL"), ("token", "TOKEN")]), rows)
    else:
        store.remove(args.name)
        print(f"Profile '{args.name}' removed.")
    return Exit.OK


# ------------------------------------------------------------------------------------------- profile-level

TENANT_COLUMNS = [("tenant_id", "TENANT"), ("name", "NAME"), ("active", "ACTIVE"), ("has_api_key", "API KEY"),
                  ("suspended_batches", "SUSPENDED"), ("client_base_url", "REPORTS TO")]


def _tenant_body(ctx: Context) -> dict[str, Any]:
    args = ctx.args
    body: dict[str, Any] = {}
    for name in ("name", "client_base_url", "client_sync_path", "active"):
        if getattr(args, name) is not None:
            body[name] = getattr(args, name)
    if args.auth_method:
        auth: dict[str, Any] = {"method": args.auth_method}
        if args.auth_method != "none":
            what = "bearer token" if args.auth_method == "bearer" else "basic password"
            secret = (read_secret_line(what) if args.auth_secret_stdin
                      else prompt_secret(f"{what.capitalize()}: ", "--auth-secret-stdin"))
            auth["token" if args.auth_method == "bearer" else "password"] = secret
        if args.auth_user:
            auth["user"] = args.auth_user
        body["client_auth"] = auth
    return body


def _save_tenant_profile(ctx: Context, name: str | None, api_key: str) -> None:
    if name:
        assert ctx.profile is not None
        ProfileStore().add(name, ctx.profile.url, api_key)
        if not ctx.json:
            print(f"Profile '{name}' saved with the tenant's API key.")


def cmd_tenants(ctx: Context) -> Exit:
    args, client = ctx.args, ctx.client
    if args.action == "list":
        tenants = client.list_tenants(active_only=args.active_only)
        ctx.show(lambda: table(tenants, TENANT_COLUMNS), tenants)
    elif args.action == "add":
        body = _tenant_body(ctx)
        if args.token_stdin:
            body["token"] = read_secret_line("API key")
        created = client.create_tenant(args.tenant_id, **body)
        lines = [f"Tenant '{created['tenant_id']}' created.",
                 f"API key (shown only now): {created['api_key']}"]
        if created.get("signing_secret"):
            lines.append(f"Report signing secret: {created['signing_secret']}")
        ctx.show("\n".join(lines), created)
        _save_tenant_profile(ctx, args.save_profile, created["api_key"])
    elif args.action == "show":
        tenant = client.get_tenant(args.tenant_id)
        ctx.show(lambda: fields(tenant), tenant)
    elif args.action == "update":
        body = _tenant_body(ctx)
        if not body:
            raise UsageError("nothing to update: give at least one of --name, --client-base-url, "
                             "--client-sync-path, --auth-method, --active/--inactive")
        client.update_tenant(args.tenant_id, **body)
        ctx.show(f"Tenant '{args.tenant_id}' updated.", {"ok": True})
    elif args.action == "delete":
        if not args.yes:
            if not sys.stdin.isatty():
                raise UsageError("deleting a tenant removes its accounts and messages: add --yes to confirm")
            answer = input(f"Delete tenant '{args.tenant_id}' with all its accounts and messages? [y/N] ")
            if answer.strip().lower() not in ("y", "yes"):
                print("Not deleted.")
                return Exit.USAGE
        client.delete_tenant(args.tenant_id)
        ctx.show(f"Tenant '{args.tenant_id}' deleted.", {"ok": True})
    elif args.action == "signing-secret":
        answer = client.rotate_signing_secret(args.tenant_id, grace_seconds=args.grace_seconds)
        ctx.show(lambda: f"New report signing secret of '{args.tenant_id}' (shown only now): "
                         f"{answer['signing_secret']}\nThe old one also signs until "
                         f"{cell('previous_valid_until_ts', answer.get('previous_valid_until'))}.", answer)
    elif args.revoke:
        client.revoke_api_key(args.tenant_id)
        ctx.show(f"API key of '{args.tenant_id}' revoked.", {"ok": True})
    else:
        key = client.new_api_key(args.tenant_id)
        ctx.show(f"New API key of '{args.tenant_id}' (shown only now; the old one stops working): {key}",
                 {"ok": True, "api_key": key})
        _save_tenant_profile(ctx, args.save_profile, key)
    return Exit.OK


def cmd_status(ctx: Context) -> Exit:
    answer = ctx.client.status()
    assert ctx.profile is not None
    ctx.show(f"{ctx.profile.url}: token accepted, service {'active' if answer.get('active') else 'inactive'}.",
             answer)
    return Exit.OK


def cmd_health(ctx: Context) -> Exit:
    answer = ctx.client.health()
    ctx.show(f"{answer.get('status', answer)}", answer)
    return Exit.OK


def cmd_command_log(ctx: Context) -> Exit:
    args = ctx.args
    entries = ctx.client.command_log(tenant_id=args.tenant, since_ts=args.since, until_ts=args.until,
                                     limit=args.limit)
    columns = [("command_ts", "TIME"), ("tenant_id", "TENANT"), ("command", "COMMAND"), ("outcome", "OUTCOME"),
               ("response_status", "STATUS"), ("payload", "PAYLOAD")]
    ctx.show(lambda: table(entries, columns), entries)
    return Exit.OK


# ------------------------------------------------------------------------------------------- tenant-level

ACCOUNT_COLUMNS = [("id", "ID"), ("host", "HOST"), ("port", "PORT"), ("tls", "TLS"), ("user", "USER"),
                   ("has_password", "PASSWORD"), ("limits", "LIMITS m/h/d"), ("limit_behavior", "OVER LIMIT")]
MESSAGE_COLUMNS = [("id", "ID"), ("status", "STATUS"), ("account_id", "ACCOUNT"), ("priority", "PRIO"),
                   ("attempts", "TRIES"), ("updated_at", "UPDATED"), ("detail", "DETAIL")]
HISTORY_COLUMNS = [("event_ts", "TIME"), ("event_type", "EVENT"), ("description", "DESCRIPTION")]


def _account_row(account: dict[str, Any]) -> dict[str, Any]:
    limits = "/".join(str(account.get(f"limit_per_{w}") or "-") for w in ("minute", "hour", "day"))
    return {**account, "limits": limits}


def _message_row(record: dict[str, Any]) -> dict[str, Any]:
    detail = record.get("error") or ""
    if not detail and record.get("status") == "deferred" and record.get("deferred_ts"):
        detail = "until " + time.strftime("%Y-%m-%d %H:%M:%SZ", time.gmtime(record["deferred_ts"]))
    if not detail and record.get("batch_code"):
        detail = f"batch {record['batch_code']}"
    return {**record, "detail": detail}


def cmd_accounts(ctx: Context) -> Exit:
    args, client, tenant = ctx.args, ctx.client, ctx.tenant
    if args.action == "add":
        password = None
        if args.password_stdin:
            password = read_secret_line("password")
        elif args.user and not args.no_password:
            password = prompt_secret(f"SMTP password for {args.user}: ", "--password-stdin (or --no-password)")
        client.add_account(args.account_id, args.host, args.port, user=args.user, password=password, tls=args.tls,
                           tenant_id=tenant, limit_per_minute=args.limit_per_minute,
                           limit_per_hour=args.limit_per_hour, limit_per_day=args.limit_per_day,
                           limit_behavior=args.limit_behavior)
        ctx.show(f"Account '{args.account_id}' saved for tenant '{tenant}'.", {"ok": True})
    elif args.action == "list":
        accounts = [dict(a) for a in client.list_accounts(tenant_id=tenant)]
        ctx.show(lambda: table([_account_row(a) for a in accounts], ACCOUNT_COLUMNS), accounts)
    elif args.action == "show":
        account = client.get_account(args.account_id, tenant_id=tenant)
        ctx.show(lambda: fields(account), account)
    else:
        client.delete_account(args.account_id, tenant_id=tenant)
        ctx.show(f"Account '{args.account_id}' deleted.", {"ok": True})
    return Exit.OK


def cmd_messages(ctx: Context) -> Exit:
    args, client, tenant = ctx.args, ctx.client, ctx.tenant
    if args.action == "list":
        records = [dict(r) for r in client.iter_messages(
            tenant_id=tenant, status=args.status, active_only=args.active_only, include_history=args.history,
            page_size=min(max(args.limit, 1), 1000) if not args.all else 1000,
            max_items=None if args.all else max(args.limit, 0))]
        ctx.show(lambda: table([_message_row(r) for r in records], MESSAGE_COLUMNS), records)
    elif args.action == "show":
        record = dict(client.get_message(args.message_id, tenant_id=tenant))

        def human() -> str:
            summary = fields(_message_row(record), skip=("message", "history", "detail"))
            submitted = record.get("message") or {}
            content = fields(submitted, [k for k in ("from", "to", "cc", "subject", "attachments")
                                         if k in submitted])
            history = table(record.get("history") or [], HISTORY_COLUMNS)
            return f"{summary}\n\nSubmitted:\n{content}\n\nHistory:\n{history}"

        ctx.show(human, record)
    elif args.action == "delete":
        outcome = client.delete_messages(args.message_ids, tenant_id=tenant)
        lines = [f"Removed {outcome['removed']}."]
        if outcome["not_found"]:
            lines.append(f"Not found: {', '.join(outcome['not_found'])}")
        if outcome["unauthorized"]:
            lines.append(f"Not allowed: {', '.join(outcome['unauthorized'])}")
        if outcome.get("in_flight"):
            lines.append(f"Being sent, not removed (delete again once sent): {', '.join(outcome['in_flight'])}")
        ctx.show("\n".join(lines), outcome)
        if outcome["unauthorized"]:
            return Exit.AUTH
        if outcome["not_found"]:
            return Exit.NOT_FOUND
    else:
        removed = client.cleanup_messages(older_than_seconds=args.older_than, tenant_id=tenant)
        ctx.show(f"Removed {removed} final messages.", {"ok": True, "removed": removed})
    return Exit.OK


def _split(values: Sequence[str] | None) -> list[str]:
    return [part.strip() for value in values or [] for part in value.split(",") if part.strip()]


def _compose(ctx: Context, account: str) -> ComposedMessage:
    args = ctx.args
    if args.file is not None:
        given = [f"--{n}" for n in ("to", "cc", "bcc", "subject", "body", "html") if getattr(args, n)]
        if given:
            raise UsageError(f"{', '.join(given)} cannot be combined with a file: edit the .eml instead")
        try:
            raw = args.file.read_bytes()
        except OSError as exc:
            raise UsageError(f"cannot read {args.file}: {exc.strerror}") from exc
        composed = message_from_eml(raw, account_id=account, message_id=args.message_id)
    else:
        if not (args.to or args.cc or args.bcc) or not args.subject or (args.body is None and args.html is None):
            raise UsageError("give an .eml file, or --to (or --cc, --bcc), --subject and --body (or --html)")
        message: dict[str, Any] = {"id": args.message_id or new_message_id("cli"), "account_id": account,
                                   "to": _split(args.to), "subject": args.subject}
        if args.body is not None:
            message["body"] = args.body
            if args.html is not None:
                message["html_body"] = args.html
        else:
            message.update(body=args.html, content_type="html")
        for name in ("cc", "bcc"):
            if getattr(args, name):
                message[name] = _split(getattr(args, name))
        composed = ComposedMessage(message)
    message = composed.message
    for path in args.attach or []:
        try:
            message.setdefault("attachments", []).append(base64_attachment(path.name, path.read_bytes()))
        except OSError as exc:
            raise UsageError(f"cannot read {path}: {exc.strerror}") from exc
    for spec in args.inline or []:
        content_id, _, name = spec.rpartition("=") if not Path(spec).exists() else ("", "", spec)
        path = Path(name)
        try:
            message.setdefault("attachments", []).append(
                base64_attachment(path.name, path.read_bytes(), content_id=content_id or path.name))
        except OSError as exc:
            raise UsageError(f"cannot read {path}: {exc.strerror}") from exc
    for name, value in (("from", args.sender), ("priority", args.priority), ("batch_code", args.batch_code),
                        ("deferred_ts", args.deferred_ts)):
        if value is not None:
            message[name] = value
    return composed


def _choose_account(ctx: Context) -> tuple[str, dict[str, Any] | None]:
    if ctx.args.account:
        return ctx.args.account, None
    accounts = ctx.client.list_accounts(tenant_id=ctx.tenant)
    if len(accounts) == 1:
        return accounts[0]["id"], dict(accounts[0])
    if not accounts:
        raise UsageError(f"tenant '{ctx.tenant}' has no SMTP account yet: add one with "
                         f"'mail-proxy {ctx.args.profile_name} {ctx.tenant} accounts add ...'")
    raise UsageError(f"tenant '{ctx.tenant}' has several accounts ({', '.join(a['id'] for a in accounts)}): "
                     "choose one with --account")


def cmd_send(ctx: Context) -> Exit:
    args, client, tenant = ctx.args, ctx.client, ctx.tenant
    account_id, account = _choose_account(ctx)
    composed = _compose(ctx, account_id)
    message = composed.message
    if "from" not in message:
        account = account or dict(client.get_account(account_id, tenant_id=tenant))
        user = str(account.get("user") or "")
        if "@" not in user:
            raise UsageError("no sender: give --from (the account's user is not an e-mail address)")
        message["from"] = user
    for warning in composed.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    answer = client.add_messages([message], tenant_id=tenant)
    if answer["rejected"]:
        reason = answer["rejected"][0]["reason"]
        raise CommandFailed(f"message '{message['id']}' rejected: {reason}", Exit.INVALID, answer)
    if args.wait is None:
        ctx.show(f"Queued '{message['id']}' (account '{account_id}').", {**answer, "id": message["id"]})
        return Exit.OK
    record = dict(client.wait_for_message(message["id"], tenant_id=tenant, timeout=args.wait))
    status = record.get("status")
    if status == "sent":
        ctx.show(f"Sent '{message['id']}' (account '{account_id}').", record)
        return Exit.OK
    if status in FINAL_STATUSES:
        raise CommandFailed(f"message '{message['id']}' {status}: {record.get('error')}", Exit.SERVER, record)
    raise CommandFailed(f"message '{message['id']}' still {status} after {args.wait:g} s", Exit.SERVER, record)


def cmd_suppressions(ctx: Context) -> Exit:
    args, client, tenant = ctx.args, ctx.client, ctx.tenant
    if args.action == "list":
        entries = [dict(e) for e in client.iter_suppressions(tenant_id=tenant)]
        columns = [("address", "ADDRESS"), ("source", "SOURCE"), ("reason", "REASON"), ("created_ts", "SINCE"),
                   ("expires_ts", "UNTIL"), ("message_id", "MESSAGE")]
        ctx.show(lambda: table(entries, columns), entries)
    elif args.action == "add":
        client.add_suppression(args.address, reason=args.reason, expires_ts=args.expires_ts, tenant_id=tenant)
        ctx.show(f"Messages to {args.address} are not sent.", {"ok": True})
    else:
        client.remove_suppression(args.address, tenant_id=tenant)
        ctx.show(f"Messages to {args.address} are sent again.", {"ok": True})
    return Exit.OK


def cmd_run_now(ctx: Context) -> Exit:
    ctx.client.run_now(tenant_id=ctx.tenant)
    ctx.show(f"Due messages of '{ctx.tenant}' queued, reports synced.", {"ok": True})
    return Exit.OK


def cmd_batches(ctx: Context) -> Exit:
    action = ctx.client.suspend if ctx.args.command == "suspend" else ctx.client.activate
    state = action(tenant_id=ctx.tenant, batch_code=ctx.args.batch)
    suspended = ", ".join(state.get("suspended_batches") or []) or "none"
    ctx.show(f"Suspended batches of '{ctx.tenant}': {suspended} ({state.get('pending_messages', 0)} messages "
             "waiting).", state)
    return Exit.OK


PROFILE_HANDLERS: dict[str, Callable[[Context], Exit]] = {
    "tenants": cmd_tenants, "status": cmd_status, "health": cmd_health, "command-log": cmd_command_log,
}
TENANT_HANDLERS: dict[str, Callable[[Context], Exit]] = {
    "accounts": cmd_accounts, "messages": cmd_messages, "send": cmd_send, "suppressions": cmd_suppressions,
    "run-now": cmd_run_now,
    "suspend": cmd_batches, "activate": cmd_batches,
}
TOP_HANDLERS: dict[str, Callable[[Context], Exit]] = {
    "keygen": cmd_keygen, "start": cmd_start, "stop": cmd_stop, "profile": cmd_profile,
}


# ------------------------------------------------------------------------------------------- main


def _check_tenant(ctx: Context) -> None:
    """Fails early and clearly for an unknown tenant, or a tenant token used for another tenant (before any
    password is asked for). Costs one GET per command."""
    assert ctx.profile is not None and ctx.tenant is not None
    try:
        ctx.client.get_tenant(ctx.tenant)
    except NotFound:
        raise NotFound(f"tenant '{ctx.tenant}' not found", status=404) from None
    except Forbidden:
        raise Forbidden(f"the token of profile '{ctx.profile.name}' may not act for tenant '{ctx.tenant}' "
                        "(a tenant's API key works only for its own tenant)", status=403) from None


def dispatch(argv: Sequence[str]) -> tuple[Exit, Context | None]:
    """Parses ``argv`` and runs the command it names; the context is returned for error reporting."""
    if not argv or argv[0] in ("-h", "--help", "--version") or argv[0] in TOP_HANDLERS:
        if not argv:
            raise UsageError(top_parser().format_help())
        args = top_parser().parse_args(argv)
        ctx = Context(args)
        return TOP_HANDLERS[args.command](ctx), ctx
    profile_name, rest = argv[0], list(argv[1:])
    if not rest or rest[0] in ("-h", "--help") or rest[0] in PROFILE_COMMANDS:
        args = profile_parser(profile_name).parse_args(rest)
        ctx = Context(args, ProfileStore().get(profile_name))
        return PROFILE_HANDLERS[args.command](ctx), ctx
    tenant, rest = rest[0], rest[1:]
    args = tenant_parser(profile_name, tenant).parse_args(rest)
    args.profile_name = profile_name
    ctx = Context(args, ProfileStore().get(profile_name), tenant)
    _check_tenant(ctx)
    return TENANT_HANDLERS[args.command](ctx), ctx


def main(argv: Sequence[str] | None = None) -> int:
    arguments = list(sys.argv[1:] if argv is None else argv)
    wants_json = "--json" in arguments
    try:
        code, _ctx = dispatch(arguments)
        return int(code)
    except SystemExit as done:  # --help and --version
        return int(done.code or 0) if isinstance(done.code, int) or done.code is None else Exit.USAGE
    except UsageError as error:
        print(str(error), file=sys.stderr)
        return Exit.USAGE
    except (ProfileError, LocalStackError) as error:
        print(f"mail-proxy: {error}", file=sys.stderr)
        usage = isinstance(error, ProfileError) or getattr(error, "usage", False)
        return Exit.USAGE if usage else Exit.SERVER
    except CommandFailed as failure:
        if wants_json and failure.payload is not None:
            print(as_json(failure.payload))
        print(f"mail-proxy: {failure}", file=sys.stderr)
        return failure.code
    except MailProxyError as error:
        code = exit_code_for(error)
        if wants_json:
            print(as_json({"ok": False, "status": error.status, "detail": error.detail}))
        print(f"mail-proxy: {_describe(error)}", file=sys.stderr)
        return code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return Exit.USAGE


def _describe(error: MailProxyError) -> str:
    if isinstance(error, ValidationFailed) and error.fields:
        lines = [f"{error.status} invalid input:"] + [f"  {k}: {v}" for k, v in error.fields.items()]
        return "\n".join(lines)
    if isinstance(error, Unauthorized):
        return f"{error.status} {detail_text(error.detail)} (check the profile's token)"
    if isinstance(error, Throttled) and error.retry_after is not None:
        return f"{error.describe()} (retry after {error.retry_after:g} s)"
    return str(error.describe())


if __name__ == "__main__":
    sys.exit(main())
