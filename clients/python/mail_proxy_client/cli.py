"""mail-proxy: the command line of the mail proxy.

    mail-proxy keygen | start local | stop local | profile add|list|remove | completion bash|zsh|fish
    mail-proxy [PROFILE] tenants list|add|show|update|delete|api-key|signing-secret
    mail-proxy [PROFILE] status|health|command-log
    mail-proxy [PROFILE] TENANT accounts add|list|show|delete
    mail-proxy [PROFILE] TENANT messages list|show|delete|cleanup
    mail-proxy [PROFILE] TENANT send FILE.eml | send --to ... --subject ... --body ... | send --file LIST.csv
    mail-proxy [PROFILE] TENANT suppressions list|add|remove
    mail-proxy [PROFILE] TENANT run-now | suspend | activate [--batch CODE]

A profile is a URL and a token (mail-proxy profile add); without one, MAIL_PROXY_URL and MAIL_PROXY_TOKEN
(or MAIL_PROXY_PROFILE) give the connection. With the admin token, TENANT is the tenant acted on; with a
tenant's token it must be that tenant. Tables for people, --json for scripts.
"""

from __future__ import annotations

import argparse
import base64
import difflib
import email.header
import getpass
import os
import re
import secrets
import sys
import time
import urllib.parse
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from enum import IntEnum
from pathlib import Path
from typing import Any, NoReturn

from mail_proxy_client import __version__, completion, local_stack
from mail_proxy_client.bulk import CHUNK_SIZE, FORMATS, MessagesFileError, read_messages, send_in_chunks
from mail_proxy_client.client import MailProxyClient
from mail_proxy_client.completion import subcommands
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
from mail_proxy_client.progress import ProgressLine, is_terminal
from mail_proxy_client.records import FINAL_STATUSES


class Exit(IntEnum):
    OK = 0
    USAGE = 2
    NOT_FOUND = 3
    INVALID = 4
    SERVER = 5
    AUTH = 6
    INTERRUPTED = 130


EXIT_CODES = """exit codes:
  0    done
  1    an unexpected error (a bug: the traceback says where)
  2    usage: bad arguments, an unknown command or profile, no URL given, a confirmation refused
  3    not found (404): an unknown tenant, account or message
  4    invalid input or conflict (409, 413, 422); a message rejected (send, send --file)
  5    server or network: 5xx, 429 after the retries, no connection, a failed local stack;
       send --wait whose message failed or did not finish in time
  6    authentication or permission: 401 (bad token), 403 (a tenant's key used for another tenant)
  130  interrupted (Ctrl-C)"""

CONNECTION_HELP = """connection (the first of these that gives a value wins, for the URL and the token each):
  --url URL, --token=TOKEN  on the command line (write --token=VALUE, with '=', when the token starts with '-')
  PROFILE                   a profile named on the command line (mail-proxy profile add); a named profile
                            also wins over the two variables below
  MAIL_PROXY_URL, MAIL_PROXY_TOKEN   environment variables (for CI), when no PROFILE is named
  MAIL_PROXY_PROFILE        the profile used when none is named
  MAIL_PROXY_HOME           where profiles are kept (default ~/.mail-proxy)"""


class UsageError(Exception):
    """Bad arguments: exit 2 with the message (and the usage line when argparse found it)."""


class CommandFailed(Exception):
    """A command that ran but did not succeed, with its exit code (a rejected message, a failed send)."""

    def __init__(self, message: str, code: Exit, payload: Any = None) -> None:
        super().__init__(message)
        self.code = code
        self.payload = payload


TOP_COMMANDS = ("keygen", "start", "stop", "profile", "completion")
PROFILE_COMMANDS = ("tenants", "status", "health", "command-log")
TENANT_COMMANDS = ("accounts", "messages", "send", "suppressions", "run-now", "suspend", "activate")
# Options that may come anywhere before the command (and are moved after it); the others follow the command.
GLOBAL_FLAGS = ("--json",)
GLOBAL_VALUES = ("--url", "--token", "--timeout", "--retries")
WAIT_SECONDS = 60.0
COMPLETE_COMMAND = "__complete"
INVALID_CHOICE = re.compile(r"invalid choice: '([^']*)'(?P<hint>.*?) \(choose from (.*)\)")


class Parser(argparse.ArgumentParser):
    """argparse, but a usage error raises ``UsageError`` (exit 2, or JSON with --json) and a mistyped
    choice gets a suggestion; descriptions and examples keep their line breaks."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", argparse.RawDescriptionHelpFormatter)
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> NoReturn:
        mistyped = INVALID_CHOICE.search(message)
        if mistyped and "maybe you meant" not in mistyped.group("hint"):  # Python 3.14 may suggest itself
            choices = [choice.strip().strip("'") for choice in mistyped.group(3).split(",")]
            message += suggestion(mistyped.group(1), choices)
        raise UsageError(f"{self.format_usage().strip()}\n{self.prog}: error: {message}")


def suggestion(word: str, choices: Sequence[str]) -> str:
    """``; did you mean 'tenants'?`` for a close match, else nothing."""
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f"; did you mean '{close[0]}'?" if close else ""


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
    common.add_argument("--json", action="store_true",
                        help="print JSON (for scripts) instead of tables; also before the command")
    return common


def _connection() -> Parser:
    options = Parser(add_help=False, parents=[_common()])
    options.add_argument("--url", help="the API URL (overrides the profile and MAIL_PROXY_URL)")
    options.add_argument("--token", help="the token (overrides the profile and MAIL_PROXY_TOKEN); write "
                         "--token=VALUE when it starts with '-'")
    options.add_argument("--timeout", type=float, default=30.0, metavar="SECONDS",
                         help="seconds per HTTP request (default 30)")
    options.add_argument("--retries", type=int, default=3, metavar="N",
                         help="retries on 429/5xx/network errors (default 3)")
    return options


# An example (or two) of each command, shown at the end of its --help; a test checks every command has one.
EXAMPLES: dict[tuple[str, ...], str] = {
    ("keygen",): "mail-proxy keygen",
    ("start",): "mail-proxy start local --background --profile local",
    ("stop",): "mail-proxy stop local",
    ("profile",): "mail-proxy profile add prod --url https://api.example.com --token-stdin < admin-token",
    ("profile", "add"): "mail-proxy profile add prod --url https://api.example.com --token-stdin < admin-token\n"
                        "mail-proxy profile add ci --url http://127.0.0.1:8000 --token=-tokenWithLeadingDash",
    ("profile", "list"): "mail-proxy profile list --json",
    ("profile", "remove"): "mail-proxy profile remove prod",
    ("completion",): "mail-proxy completion bash > ~/.local/share/bash-completion/completions/mail-proxy\n"
                     "mail-proxy completion zsh > \"${fpath[1]}/_mail-proxy\"\n"
                     "mail-proxy completion fish > ~/.config/fish/completions/mail-proxy.fish",
    ("tenants",): "mail-proxy prod tenants list",
    ("tenants", "list"): "mail-proxy prod tenants list --active-only --json",
    ("tenants", "add"): "mail-proxy prod tenants add acme --name ACME --client-base-url https://app.acme.example "
                        "--save-profile acme",
    ("tenants", "show"): "mail-proxy prod tenants show acme",
    ("tenants", "update"): "mail-proxy prod tenants update acme --name \"ACME Inc.\" --inactive",
    ("tenants", "delete"): "mail-proxy prod tenants delete acme --yes",
    ("tenants", "api-key"): "mail-proxy prod tenants api-key acme --save-profile acme\n"
                            "mail-proxy prod tenants api-key acme --revoke",
    ("tenants", "signing-secret"): "mail-proxy prod tenants signing-secret acme --grace-seconds 3600",
    ("status",): "MAIL_PROXY_URL=https://api.example.com MAIL_PROXY_TOKEN=... mail-proxy status",
    ("health",): "mail-proxy prod health",
    ("command-log",): "mail-proxy prod command-log --tenant acme --since 1767225600 --limit 20",
    ("accounts",): "mail-proxy prod acme accounts list",
    ("accounts", "add"): "mail-proxy prod acme accounts add --id main --host smtp.example.com --port 587 "
                         "--user u@example.com --password-stdin < smtp-password",
    ("accounts", "list"): "mail-proxy prod acme accounts list --json",
    ("accounts", "show"): "mail-proxy prod acme accounts show main",
    ("accounts", "delete"): "mail-proxy prod acme accounts delete main",
    ("messages",): "mail-proxy prod acme messages list --status error",
    ("messages", "list"): "mail-proxy prod acme messages list --status error --limit 20\n"
                          "mail-proxy prod acme messages list --all --json > messages.json",
    ("messages", "show"): "mail-proxy prod acme messages show order-1001",
    ("messages", "delete"): "mail-proxy prod acme messages delete order-1001 order-1002",
    ("messages", "cleanup"): "mail-proxy prod acme messages cleanup --older-than 86400",
    ("send",): "mail-proxy prod acme send --to ada@example.org --subject Hi --body Hello --wait\n"
               "mail-proxy prod acme send message.eml --attach invoice.pdf\n"
               "mail-proxy prod acme send --file newsletter.csv --batch-code news-2026-01",
    ("suppressions",): "mail-proxy prod acme suppressions list",
    ("suppressions", "list"): "mail-proxy prod acme suppressions list --json",
    ("suppressions", "add"): "mail-proxy prod acme suppressions add gone@example.org --reason unsubscribed",
    ("suppressions", "remove"): "mail-proxy prod acme suppressions remove gone@example.org",
    ("run-now",): "mail-proxy prod acme run-now",
    ("suspend",): "mail-proxy prod acme suspend --batch newsletter",
    ("activate",): "mail-proxy prod acme activate --batch newsletter",
}

SEND_FILE_HELP = """bulk send (--file): a .json file holds an array of messages as add-messages takes them (or
{"messages": [...]}), a .jsonl file one message per line, a .csv file a header row and a message per row:
  id, to, cc, bcc, subject, body, html_body (or html), from, reply_to, account_id (or account), priority,
  batch_code, deferred_ts, return_path
Several recipients in a cell are separated by ',' or ';' (quote a display name with a comma). Empty cells
are left out; --account, --from, --priority, --batch-code and --deferred-ts fill what a message lacks, and a
message without an id gets one. Messages go in chunks of 1,000 (each retried on its own after 429, 5xx or a
dropped connection); the summary counts what was queued and lists the rejected by reason. Exit 4 when any
was rejected, 5 when a chunk could not be submitted."""


def top_parser(*, full: bool = True) -> Parser:
    """The parser of the commands that need no connection; ``full`` adds every command to its help."""
    description = "The command line of the serverless mail proxy."
    parser = Parser(prog="mail-proxy", usage="mail-proxy [--json] [--url URL] [--token=TOKEN] [PROFILE] [TENANT] "
                    "COMMAND ...", description=f"{description}\n\n{overview()}" if full else description,
                    epilog=f"{CONNECTION_HELP}\n\n{EXIT_CODES}\n\n"
                           "Every command has --help with an example: mail-proxy PROFILE TENANT send --help.")
    parser.add_argument("--version", action="version", version=f"mail-proxy {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser, help=argparse.SUPPRESS,
                                     prog="mail-proxy")
    commands.add_parser("keygen", help="print a new encryption key (base64 of 32 random bytes)", parents=[_common()])

    start = commands.add_parser("start", help="run the local stack (python -m local in the repository)",
                                parents=[_common()])
    start.add_argument("target", choices=["local"], help="what to start: the local stack")
    start.add_argument("--api-token", help="admin token (default: kept in the state directory)")
    start.add_argument("--port", type=int, default=8000, help="HTTP API port (default 8000)")
    start.add_argument("--smtp-port", type=int, default=2525, help="SMTP sink port (default 2525)")
    start.add_argument("--repo", type=Path, help="the mail-proxy repository (default: found automatically)")
    start.add_argument("--state-dir", type=Path, help="state, mail and log (default ~/.mail-proxy/local)")
    start.add_argument("--background", action="store_true", help="start detached, return once it is ready")
    start.add_argument("--profile", help="save the stack's URL and admin token as this profile")

    stop = commands.add_parser("stop", help="stop a local stack started with --background", parents=[_common()])
    stop.add_argument("target", choices=["local"], help="what to stop: the local stack")
    stop.add_argument("--state-dir", type=Path, help="as given to start (default ~/.mail-proxy/local)")

    profile = commands.add_parser("profile", help="named connections: a URL and a token")
    actions = profile.add_subparsers(dest="action", metavar="ACTION", required=True, parser_class=Parser)
    add = actions.add_parser("add", help="add or replace a profile", parents=[_common()])
    add.add_argument("name", help="the profile's name: letters, digits, '.', '_', '-'")
    add.add_argument("--url", required=True, help="the API URL, e.g. http://127.0.0.1:8000")
    token = add.add_mutually_exclusive_group(required=True)
    token.add_argument("--token", help="the admin token or a tenant's API key (--token=VALUE if it starts "
                       "with '-')")
    token.add_argument("--token-stdin", action="store_true", help="read the token from standard input")
    actions.add_parser("list", help="list profiles (tokens masked)", parents=[_common()])
    remove = actions.add_parser("remove", help="remove a profile", parents=[_common()])
    remove.add_argument("name", help="the profile to remove")

    shell = commands.add_parser("completion", help="print a shell completion script (bash, zsh or fish)",
                                description=completion.__doc__)
    shell.add_argument("shell", choices=completion.SHELLS, help="the shell the script is for")
    return parser


def profile_parser(profile: str) -> Parser:
    prog = f"mail-proxy {profile}".rstrip()
    parser = Parser(prog=prog, description="Commands of a connection (see mail-proxy --help).",
                    epilog=f"Commands on one tenant's data: {prog} TENANT --help")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True, parser_class=Parser)
    connection = _connection()
    tenants = commands.add_parser("tenants", help="manage tenants (admin token)")
    actions = tenants.add_subparsers(dest="action", metavar="ACTION", required=True, parser_class=Parser)
    listing = actions.add_parser("list", help="list tenants", parents=[connection])
    listing.add_argument("--active-only", action="store_true", help="leave out inactive tenants")
    add = actions.add_parser("add", help="create a tenant; prints its API key once", parents=[connection])
    add.add_argument("tenant_id", help="the new tenant's id")
    _tenant_fields(add)
    add.add_argument("--token-stdin", action="store_true", help="read the tenant's API key from stdin "
                     "(default: the proxy generates one)")
    add.add_argument("--save-profile", metavar="NAME", help="save the new API key as profile NAME")
    show = actions.add_parser("show", help="show a tenant", parents=[connection])
    show.add_argument("tenant_id", help="the tenant")
    update = actions.add_parser("update", help="change tenant fields", parents=[connection])
    update.add_argument("tenant_id", help="the tenant")
    _tenant_fields(update)
    delete = actions.add_parser("delete", help="delete a tenant with its accounts and messages",
                                parents=[connection])
    delete.add_argument("tenant_id", help="the tenant")
    delete.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    api_key = actions.add_parser("api-key", help="issue a new API key (replaces the old one) or revoke it",
                                 parents=[connection])
    api_key.add_argument("tenant_id", help="the tenant")
    api_key.add_argument("--revoke", action="store_true", help="revoke the key instead: it stops working")
    api_key.add_argument("--save-profile", metavar="NAME", help="save the new API key as profile NAME")
    signing = actions.add_parser("signing-secret", help="a new secret for report signatures",
                                 parents=[connection])
    signing.add_argument("tenant_id", help="the tenant")
    signing.add_argument("--grace-seconds", type=int, help="the old secret keeps signing this long (default a day)")

    commands.add_parser("status", help="check the token (GET /status)", parents=[connection])
    commands.add_parser("health", help="check the service (GET /health)", parents=[connection])
    log = commands.add_parser("command-log", help="commands the proxy carried out (admin)", parents=[connection])
    log.add_argument("--tenant", help="only this tenant's")
    log.add_argument("--since", type=int, metavar="UNIX_TS", help="only commands from this time on")
    log.add_argument("--until", type=int, metavar="UNIX_TS", help="only commands before this time")
    log.add_argument("--limit", type=int, default=100, help="at most this many (default 100)")
    return parser


def _tenant_fields(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--name", help="a name for people")
    parser.add_argument("--client-base-url", help="the application's URL for delivery reports")
    parser.add_argument("--client-sync-path", help="path of the report endpoint (default /mail-proxy/sync)")
    parser.add_argument("--auth-method", choices=["none", "bearer", "basic"],
                        help="how the proxy authenticates to the application")
    parser.add_argument("--auth-user", help="user for --auth-method basic")
    parser.add_argument("--auth-secret-stdin", action="store_true",
                        help="read the bearer token or basic password from stdin (else it is prompted)")
    active = parser.add_mutually_exclusive_group()
    active.add_argument("--active", dest="active", action="store_const", const=True,
                        help="the tenant's messages are sent")
    active.add_argument("--inactive", dest="active", action="store_const", const=False,
                        help="the tenant's messages wait")


def tenant_parser(profile: str, tenant: str) -> Parser:
    parser = Parser(prog=f"mail-proxy {profile} {tenant}".replace("  ", " "),
                    description="Commands on one tenant's data (see mail-proxy --help).")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True, parser_class=Parser)
    connection = _connection()

    accounts = commands.add_parser("accounts", help="the tenant's SMTP accounts")
    actions = accounts.add_subparsers(dest="action", metavar="ACTION", required=True, parser_class=Parser)
    add = actions.add_parser("add", help="add or replace an SMTP account", parents=[connection])
    add.add_argument("--id", required=True, dest="account_id", help="the account id messages refer to")
    add.add_argument("--host", required=True, help="the SMTP server")
    add.add_argument("--port", required=True, type=int, help="587 (starttls) or 465 (ssl); 25 is refused")
    add.add_argument("--tls", choices=["none", "starttls", "ssl"], help="default starttls")
    add.add_argument("--user", help="SMTP user; the password is then prompted (never echoed)")
    password = add.add_mutually_exclusive_group()
    password.add_argument("--password-stdin", action="store_true", help="read the password from stdin")
    password.add_argument("--no-password", action="store_true", help="the account has no password")
    for window in ("minute", "hour", "day"):
        add.add_argument(f"--limit-per-{window}", type=int, metavar="N", help=f"at most N messages a {window}")
    add.add_argument("--limit-behavior", choices=["defer", "reject"], help="over a limit (default defer)")
    actions.add_parser("list", help="list accounts", parents=[connection])
    for name, text in (("show", "show an account"), ("delete", "delete an account")):
        action = actions.add_parser(name, help=text, parents=[connection])
        action.add_argument("account_id", help="the account's id")

    messages = commands.add_parser("messages", help="the tenant's messages")
    actions = messages.add_subparsers(dest="action", metavar="ACTION", required=True, parser_class=Parser)
    listing = actions.add_parser("list", help="list messages (with filters)", parents=[connection])
    listing.add_argument("--status", choices=["pending", "deferred", "sending", "sent", "error", "bounced"],
                         help="only messages in this status")
    listing.add_argument("--active-only", action="store_true", help="only messages still waiting")
    listing.add_argument("--history", action="store_true", help="include each message's events (with --json)")
    listing.add_argument("--limit", type=int, default=50, help="at most this many (default 50)")
    listing.add_argument("--all", action="store_true", help="every message, following the cursor")
    show = actions.add_parser("show", help="a message with its history", parents=[connection])
    show.add_argument("message_id", help="the message's id")
    delete = actions.add_parser("delete", help="delete messages", parents=[connection])
    delete.add_argument("message_ids", nargs="+", metavar="MESSAGE_ID", help="the messages' ids")
    cleanup = actions.add_parser("cleanup", help="remove final messages older than a time", parents=[connection])
    cleanup.add_argument("--older-than", type=int, metavar="SECONDS", help="default: the proxy's retention")

    send = commands.add_parser("send", help="send a message (.eml or --to/--subject/--body) or a list (--file)",
                               parents=[connection], description=SEND_FILE_HELP)
    send.add_argument("file", nargs="?", type=Path, help="an RFC 5322 (.eml) file")
    send.add_argument("--file", dest="bulk_file", type=Path, metavar="LIST",
                      help="bulk send: a .json, .jsonl or .csv file of messages (see above)")
    send.add_argument("--format", choices=FORMATS, help="the --file format (default: from its extension)")
    send.add_argument("--chunk-size", type=int, default=CHUNK_SIZE, metavar="N",
                      help=f"messages per add-messages call with --file (1-{CHUNK_SIZE}, default {CHUNK_SIZE})")
    send.add_argument("--to", action="append", help="recipient (repeat, or separate with commas)")
    send.add_argument("--cc", action="append", help="copy recipient (repeat, or separate with commas)")
    send.add_argument("--bcc", action="append", help="blind copy recipient (repeat, or separate with commas)")
    send.add_argument("--subject", help="the subject line")
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
    send.add_argument("--batch-code", help="a batch the message belongs to (suspend/activate act on it)")
    send.add_argument("--deferred-ts", type=int, metavar="UNIX_TS", help="not sent before this time")
    send.add_argument("--wait", nargs="?", type=float, const=WAIT_SECONDS, metavar="SECONDS",
                      help=f"wait until it is sent or failed (default {WAIT_SECONDS:g} s)")

    suppressions = commands.add_parser("suppressions", help="addresses the tenant's messages are not sent to")
    actions = suppressions.add_subparsers(dest="action", metavar="ACTION", required=True, parser_class=Parser)
    actions.add_parser("list", help="list suppressed addresses (hard bounces, manual)", parents=[connection])
    add = actions.add_parser("add", help="suppress an address", parents=[connection])
    add.add_argument("address", help="the e-mail address")
    add.add_argument("--reason", help="why (kept with the entry)")
    add.add_argument("--expires-ts", type=int, metavar="UNIX_TS", help="default: the retention period")
    remove = actions.add_parser("remove", help="send to an address again", parents=[connection])
    remove.add_argument("address", help="the e-mail address")

    commands.add_parser("run-now", help="queue due messages and sync reports now", parents=[connection])
    for name, text in (("suspend", "hold a batch (or everything)"), ("activate", "release a batch (or all)")):
        command = commands.add_parser(name, help=text, parents=[connection])
        command.add_argument("--batch", metavar="CODE", help="the batch code (default: all)")
    return parser


def command_help(parser: argparse.ArgumentParser) -> dict[str, str]:
    """The one-line help of each of ``parser``'s commands."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return {choice.dest: choice.help or "" for choice in action._choices_actions}
    return {}


def with_examples(parser: Parser, path: tuple[str, ...] = ()) -> Parser:
    """Adds each command's example (``EXAMPLES``) to the end of its help, and its one-line help to the top,
    through the whole tree."""
    helps = command_help(parser)
    for name, child in subcommands(parser).items():
        if not child.description and helps.get(name):
            child.description = helps[name][:1].upper() + helps[name][1:] + "."
        example = EXAMPLES.get((*path, name))
        if example:
            text = "example" + ("s" if "\n" in example else "") + ":\n  " + example.replace("\n", "\n  ")
            child.epilog = f"{child.epilog}\n\n{text}" if child.epilog else text
        with_examples(child, (*path, name))
    return parser


def overview() -> str:
    """Every command with its one-line help, by where it goes on the command line (for mail-proxy --help)."""
    groups = [("commands", top_parser(full=False), TOP_COMMANDS),
              ("commands of a connection: mail-proxy [PROFILE] COMMAND", profile_parser("PROFILE"),
               PROFILE_COMMANDS),
              ("commands on a tenant's data: mail-proxy [PROFILE] TENANT COMMAND", tenant_parser("PROFILE", "TENANT"),
               TENANT_COMMANDS)]
    lines = []
    for title, parser, names in groups:
        helps, children = command_help(parser), subcommands(parser)
        lines.append(f"{title}:")
        for name in names:
            choices = [c for a in children[name]._actions if not a.option_strings and a.choices for c in a.choices]
            words = f"{name} {'|'.join(map(str, choices))}" if choices else name
            lines.append(f"  {words:<32} {helps[name]}" if len(words) < 32 else f"  {words}\n  {'':<32} {helps[name]}")
        lines.append("")
    return "\n".join(lines).rstrip()


# ------------------------------------------------------------------------------------------- context


class Context:
    """What a command works with: the parsed arguments, the connection's client, where output goes, and the
    progress line on standard error (drawn only on a terminal, never with --json)."""

    def __init__(self, args: argparse.Namespace, profile: Profile | None = None, tenant: str | None = None,
                 *, prefix: str = "mail-proxy") -> None:
        self.args = args
        self.profile = profile
        self.tenant = tenant
        self.prefix = prefix  # the command line up to the command, for hints: "mail-proxy prod acme"
        self.json = bool(getattr(args, "json", False))
        self.progress = ProgressLine(sys.stderr, enabled=is_terminal(sys.stderr) and not self.json)
        self._client: MailProxyClient | None = None

    @property
    def client(self) -> MailProxyClient:
        if self._client is None:
            assert self.profile is not None
            self._client = MailProxyClient(self.profile.url, self.profile.token or None, timeout=self.args.timeout,
                                           retries=max(0, self.args.retries), on_retry=self._retrying)
        return self._client

    def _retrying(self, error: MailProxyError, delay: float, number: int) -> None:
        self.progress.message(f"{_describe(error).splitlines()[0]}: retry {number} of {self.args.retries} "
                              f"in {delay:.1f} s")

    def show(self, human: str | Callable[[], str], data: Any) -> None:
        """Prints ``data`` as JSON with ``--json``, else the human text."""
        self.progress.finish()
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
    key = base64.b64encode(secrets.token_bytes(32)).decode("ascii")
    ctx.show(key, {"key": key})
    return Exit.OK


def cmd_completion(ctx: Context) -> Exit:
    print(completion.script(ctx.args.shell), end="")
    return Exit.OK


def cmd_start(ctx: Context) -> Exit:
    args = ctx.args
    options = StackOptions(port=args.port, smtp_port=args.smtp_port, api_token=args.api_token,
                           state_dir=args.state_dir, repo=args.repo)

    def save(info: StackInfo) -> None:
        if args.profile:
            ProfileStore().add(args.profile, info.api_url, info.admin_token)
            if ctx.json:
                return
            print(f"Profile '{args.profile}' saved: {info.api_url} with the admin token.", flush=True)

    if not args.background:
        return Exit.OK if local_stack.run_foreground(options, on_ready=save) == 0 else Exit.SERVER
    info = local_stack.start_background(options)
    if ctx.json:
        save(info)
        ctx.show("", {"ok": True, "pid": info.pid, "api_url": info.api_url, "smtp": info.smtp,
                      "mail_dir": str(info.mail_dir), "log": str(info.log), "profile": args.profile})
        return Exit.OK
    print(f"Local stack running (pid {info.pid}): API {info.api_url}, SMTP sink {info.smtp}.")
    print(f"Delivered mail goes to {info.mail_dir}; log {info.log}.")
    save(info)
    print("Stop it with: mail-proxy stop local" + (f" --state-dir {args.state_dir}" if args.state_dir else ""))
    return Exit.OK


def cmd_stop(ctx: Context) -> Exit:
    info = local_stack.stop_background(ctx.args.state_dir)
    ctx.show(f"Local stack stopped (pid {info.pid}).", {"ok": True, "pid": info.pid})
    return Exit.OK


def cmd_profile(ctx: Context) -> Exit:
    args, store = ctx.args, ProfileStore()
    if args.action == "add":
        token = read_secret_line("token") if args.token_stdin else args.token
        profile = store.add(args.name, args.url, token)
        ctx.show(f"Profile '{profile.name}' saved: {profile.url}", {"ok": True, "name": profile.name,
                                                                     "url": profile.url})
    elif args.action == "list":
        rows = [{"name": p.name, "url": p.url, "token": p.masked_token} for p in store.all().values()]
        ctx.show(lambda: table(rows, [("name", "NAME"), ("url", "URL"), ("token", "TOKEN")]), rows)
    else:
        store.remove(args.name)
        ctx.show(f"Profile '{args.name}' removed.", {"ok": True, "name": args.name})
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
        ctx.progress.start("Reading messages", None if args.all else max(args.limit, 0))
        records = []
        for record in client.iter_messages(
                tenant_id=tenant, status=args.status, active_only=args.active_only, include_history=args.history,
                page_size=min(max(args.limit, 1), 1000) if not args.all else 1000,
                max_items=None if args.all else max(args.limit, 0)):
            records.append(dict(record))
            ctx.progress.update(len(records))
        ctx.show(lambda: table([_message_row(r) for r in records], MESSAGE_COLUMNS), records)
    elif args.action == "show":
        record = dict(client.get_message(args.message_id, tenant_id=tenant))

        def human() -> str:
            summary = fields(_message_row(record), skip=("message", "history", "detail"))
            submitted = dict(record.get("message") or {})
            if submitted.get("attachments"):
                submitted["attachments"] = "; ".join(attachment_line(a) for a in submitted["attachments"])
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


def decode_words(text: str) -> str:
    """RFC 2047 encoded words (``=?utf-8?b?...?=``) as the text they stand for; anything else unchanged."""
    if "=?" not in text:
        return text
    try:
        return str(email.header.make_header(email.header.decode_header(text)))
    except (ValueError, LookupError, UnicodeDecodeError):  # malformed, or an unknown charset
        return text


def human_size(size: int) -> str:
    if size < 1024:
        return f"{size} B"
    return f"{size / 1024:.1f} KB" if size < 1024 * 1024 else f"{size / 1024 / 1024:.1f} MB"


def attachment_line(attachment: Any) -> str:
    """An attachment as ``name (type, size)``: never its base64 content, and its name decoded."""
    if not isinstance(attachment, dict):
        return str(attachment)[:60]
    name = decode_words(str(attachment.get("filename") or "(no name)"))
    details = [str(attachment.get("mime_type") or "type unknown")]
    content = attachment.get("storage_path") or attachment.get("content")
    mode = attachment.get("fetch_mode") or ("base64" if attachment.get("content") else None)
    if mode == "base64" and isinstance(content, str):
        stripped = "".join(content.split())
        details.append(human_size(max(0, len(stripped) * 3 // 4 - stripped[-2:].count("="))))
    elif content:
        details.append(f"{mode or 'from'} {cell('path', content)}")
    if attachment.get("content_id"):
        details.append(f"inline, cid:{attachment['content_id']}")
    return f"{name} ({', '.join(details)})"


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
                         f"'{ctx.prefix} accounts add ...'")
    raise UsageError(f"tenant '{ctx.tenant}' has several accounts ({', '.join(a['id'] for a in accounts)}): "
                     "choose one with --account")


def cmd_send(ctx: Context) -> Exit:
    args, client, tenant = ctx.args, ctx.client, ctx.tenant
    if args.bulk_file is not None:
        return send_file(ctx)
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
    ctx.progress.start(f"Waiting for '{message['id']}'")
    record = dict(client.wait_for_message(message["id"], tenant_id=tenant, timeout=args.wait,
                                          on_poll=lambda seen: ctx.progress.update(note=str(seen.get("status")))))
    ctx.progress.finish()
    status = record.get("status")
    if status == "sent":
        ctx.show(f"Sent '{message['id']}' (account '{account_id}').", record)
        return Exit.OK
    if status in FINAL_STATUSES:
        raise CommandFailed(f"message '{message['id']}' {status}: {record.get('error')}", Exit.SERVER, record)
    raise CommandFailed(f"message '{message['id']}' still {status} after {args.wait:g} s", Exit.SERVER, record)


def send_file(ctx: Context) -> Exit:
    """``send --file``: every message of a JSON, JSON Lines or CSV file, in chunks, with a summary."""
    args = ctx.args
    single = [f"--{n}" for n in ("to", "cc", "bcc", "subject", "body", "html", "attach", "wait")
              if getattr(args, n) is not None] + (["an .eml file"] if args.file is not None else [])
    single += ["--id"] if args.message_id else []
    if single:
        raise UsageError(f"--file sends the messages of a list: {', '.join(single)} cannot be combined with it")
    if not 1 <= args.chunk_size <= CHUNK_SIZE:
        raise UsageError(f"--chunk-size must be between 1 and {CHUNK_SIZE}")
    try:
        messages = read_messages(args.bulk_file, args.format)
    except MessagesFileError as error:
        raise UsageError(str(error)) from None
    if not messages:
        raise UsageError(f"{args.bulk_file} holds no messages")
    defaults = {"from": args.sender, "priority": args.priority, "batch_code": args.batch_code,
                "deferred_ts": args.deferred_ts}
    account: dict[str, Any] | None = None
    if any(not m.get("account_id") for m in messages):
        account_id, account = _choose_account(ctx)
        defaults["account_id"] = account_id
    if args.sender is None and any(not m.get("from") for m in messages):
        lacking = next(m for m in messages if not m.get("from"))
        account_id = lacking.get("account_id") or defaults["account_id"]
        if account is None or account.get("id") != account_id:
            account = dict(ctx.client.get_account(account_id, tenant_id=ctx.tenant))
        user = str(account.get("user") or "")
        if "@" not in user:
            raise UsageError("some messages have no sender: give --from (the account's user is not an e-mail "
                             "address)")
        defaults["from"] = user
    for message in messages:
        for name, value in defaults.items():
            if value is not None and message.get(name) in (None, ""):
                message[name] = value
        if not message.get("id"):
            message["id"] = new_message_id("bulk")
    # one id twice: sent in another chunk, the later message would replace the earlier one, still waiting
    repeated = [mid for mid, count in Counter(str(m["id"]) for m in messages).items() if count > 1]
    if repeated:
        raise UsageError(f"{args.bulk_file}: the id {', '.join(repr(m) for m in repeated[:5])}"
                         f"{' and others' if len(repeated) > 5 else ''} is given to more than one message; each "
                         "message needs its own id (or none, for a generated one)")
    ctx.progress.start(f"Sending {args.bulk_file.name}", len(messages))
    summary = send_in_chunks(ctx.client, messages, tenant_id=ctx.tenant, chunk_size=args.chunk_size,
                             on_chunk=ctx.progress.advance)
    ctx.show(summary.describe, summary.as_dict())
    if summary.error is not None:
        return exit_code_for(summary.error)
    return Exit.INVALID if summary.rejected else Exit.OK


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
    "keygen": cmd_keygen, "start": cmd_start, "stop": cmd_stop, "profile": cmd_profile, "completion": cmd_completion,
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
        raise Forbidden(f"the token {ctx.profile.name} may not act for tenant '{ctx.tenant}' "
                        "(a tenant's API key works only for its own tenant)", status=403) from None


@dataclass
class Route:
    """Where the words of a command line go: ``level`` is ``top``, ``profile`` (commands of a connection),
    ``tenant`` (commands on a tenant's data) or ``help``; ``args`` is the command and what follows it, with
    the options given before the command moved after it."""

    level: str
    profile: str | None = None
    tenant: str | None = None
    args: list[str] = field(default_factory=list)
    words: list[str] = field(default_factory=list)


def _level(words: list[str]) -> str | None:
    last, count = words[-1], len(words)
    if count == 1 and last in TOP_COMMANDS:
        return "top"
    if count <= 2 and last in PROFILE_COMMANDS:
        return "profile"
    if count in (2, 3) and last in TENANT_COMMANDS:
        return "tenant"
    if count == 1 and last in TENANT_COMMANDS:
        raise UsageError(f"mail-proxy: error: '{last}' acts on a tenant's data: mail-proxy [PROFILE] TENANT {last} "
                         "...")
    return None


def _after_command(rest: list[str], moved: list[str]) -> list[str]:
    """``rest`` with the options given before the command added where argparse reads them (before a ``--``)."""
    if "--" in rest:
        at = rest.index("--")
        return [*rest[:at], *moved, *rest[at:]]
    return [*rest, *moved]


def route(argv: Sequence[str]) -> Route:
    """Tells the profile, tenant and command words apart by the command word's place: the words before it
    are ``[PROFILE]`` for a connection's command and ``[PROFILE] TENANT`` for a tenant's. A word that is no
    command where one is due is a usage error (with a suggestion), never taken for a profile name."""
    words: list[str] = []
    moved: list[str] = []
    index = 0
    while index < len(argv):
        token = argv[index]
        name = token.split("=", 1)[0]
        if token in GLOBAL_FLAGS:
            moved.append(token)
        elif name in GLOBAL_VALUES:
            if "=" not in token:
                if index + 1 >= len(argv):
                    raise UsageError(f"mail-proxy: error: {token} needs a value")
                index += 1
                token = f"{token}={argv[index]}"
            moved.append(token)
        elif token in ("-h", "--help", "--version"):
            return Route("help", args=[token], words=words)
        elif token.startswith("-") and len(token) > 1:
            known = [*GLOBAL_FLAGS, *GLOBAL_VALUES, "--help", "--version"]
            raise UsageError(f"mail-proxy: error: unknown option {name} before the command"
                             f"{suggestion(name, known)} (options of a command follow it)")
        else:
            words.append(token)
            level = _level(words)
            if level is not None:
                before = words[:-1]
                profile = before[0] if (level == "profile" and before) or len(before) == 2 else None
                tenant = before[-1] if level == "tenant" else None
                return Route(level, profile, tenant, [token, *_after_command(list(argv[index + 1:]), moved)], words)
            if len(words) == 3:
                break
        index += 1
    raise _unknown_command(words)


def _known_profiles() -> list[str]:
    try:
        return sorted(ProfileStore().all())
    except ProfileError:
        return []


def _unknown_command(words: list[str]) -> UsageError:
    if not words:
        return UsageError(f"{top_parser().format_help()}\nmail-proxy: error: a command is required")
    profiles = _known_profiles()
    pools = [(*TOP_COMMANDS, *PROFILE_COMMANDS, *TENANT_COMMANDS), (*PROFILE_COMMANDS, *TENANT_COMMANDS),
             TENANT_COMMANDS]
    for word, pool in zip(words, pools, strict=False):
        hint = suggestion(word, pool) if word not in profiles else ""
        if hint:
            return UsageError(f"mail-proxy: error: unknown command '{word}'{hint} (see mail-proxy --help)")
    line = " ".join(["mail-proxy", *words])
    if len(words) == 1 and words[0] in profiles:
        return UsageError(f"mail-proxy: error: '{line}' needs a command: {', '.join(PROFILE_COMMANDS)}, or a "
                          f"tenant and one of {', '.join(TENANT_COMMANDS)}")
    if len(words) == 1:
        known = ", ".join(profiles) or "none yet"
        return UsageError(f"mail-proxy: error: '{words[0]}' is neither a command nor a profile (profiles: {known}); "
                          "see mail-proxy --help")
    return UsageError(f"mail-proxy: error: no command in '{line}': after a tenant comes one of "
                      f"{', '.join(TENANT_COMMANDS)} (see mail-proxy --help)")


def connection(profile_name: str | None, args: argparse.Namespace) -> Profile:
    """The URL and token a command uses: ``--url``/``--token`` first; then a profile named on the command line
    (which also wins over the environment, as an explicit choice); else ``MAIL_PROXY_URL`` and
    ``MAIL_PROXY_TOKEN``; else the profile ``MAIL_PROXY_PROFILE`` names. The result's ``name`` says where
    the token came from, for messages."""
    url, token = args.url, args.token
    source = "given with --token" if token else ""
    if profile_name is not None:
        saved = ProfileStore().get(profile_name)
        return Profile(source or f"of profile '{saved.name}'", url or saved.url, token or saved.token)
    if not url and os.environ.get("MAIL_PROXY_URL"):
        url = os.environ["MAIL_PROXY_URL"]
    if not token and os.environ.get("MAIL_PROXY_TOKEN"):
        token, source = os.environ["MAIL_PROXY_TOKEN"], "in MAIL_PROXY_TOKEN"
    named = os.environ.get("MAIL_PROXY_PROFILE")
    if named and (not url or not token):
        saved = ProfileStore().get(named)
        url = url or saved.url
        if not token:
            token, source = saved.token, f"of profile '{saved.name}' (MAIL_PROXY_PROFILE)"
    if not url:
        raise UsageError("mail-proxy: error: no connection: name a profile (mail-proxy PROFILE ...), set "
                         "MAIL_PROXY_URL and MAIL_PROXY_TOKEN (or MAIL_PROXY_PROFILE), or give --url and --token")
    if not url.startswith(("http://", "https://")):
        raise UsageError(f"mail-proxy: error: the URL must start with http:// or https://, not {url!r}")
    return Profile(source or "(none given)", url.rstrip("/"), token or "")


def complete(words: Sequence[str], current: str) -> list[str]:
    """Candidates for shell completion: ``words`` are the complete words after ``mail-proxy``."""
    prefix: list[str] = []
    rest = list(words)
    while rest:
        word = rest.pop(0)
        if word.split("=", 1)[0] in GLOBAL_VALUES and "=" not in word:
            if not rest:
                return []  # a value is being typed
            rest.pop(0)
        elif word.startswith("-"):
            continue
        else:
            prefix.append(word)
            try:
                level = _level(prefix)
            except UsageError:
                return []
            if level is not None:
                parser = {"top": lambda: top_parser(full=False), "profile": lambda: profile_parser("P"),
                          "tenant": lambda: tenant_parser("P", "T")}[level]()
                return completion.parser_candidates(parser, [word, *rest], current)
    if current.startswith("-"):
        pool: Sequence[str] = (*GLOBAL_FLAGS, *GLOBAL_VALUES, "--help", "--version")
    else:
        pool = [(*TOP_COMMANDS, *PROFILE_COMMANDS, *_known_profiles()), (*PROFILE_COMMANDS, *TENANT_COMMANDS),
                TENANT_COMMANDS, ()][min(len(prefix), 3)]
    return [word for word in pool if word.startswith(current)]


def dispatch(argv: Sequence[str], opened: list[Context] | None = None) -> Exit:
    """Parses ``argv`` and runs the command it names; each ``Context`` made is added to ``opened``."""
    opened = [] if opened is None else opened
    if argv and argv[0] == COMPLETE_COMMAND:
        words = list(argv[1:])
        current = words.pop() if words else ""
        for candidate in complete(words, current):
            print(candidate)
        return Exit.OK
    found = route(argv)
    if found.level == "help":
        words = found.words
        if not words or found.args[0] == "--version":
            top_parser().parse_args(found.args)
        elif len(words) == 1 and words[0] in _known_profiles():
            with_examples(profile_parser(words[0])).parse_args(found.args)
        else:
            with_examples(tenant_parser(*(["", *words])[-2:])).parse_args(found.args)
        return Exit.OK
    if found.level == "top":
        args = with_examples(top_parser()).parse_args(found.args)
        ctx = Context(args)
        opened.append(ctx)
        return TOP_HANDLERS[args.command](ctx)
    prefix = " ".join(w for w in ("mail-proxy", found.profile, found.tenant) if w)
    if found.level == "profile":
        args = with_examples(profile_parser(found.profile or "")).parse_args(found.args)
        ctx = Context(args, connection(found.profile, args), prefix=prefix)
        opened.append(ctx)
        return PROFILE_HANDLERS[args.command](ctx)
    if (found.profile is None and not os.environ.get("MAIL_PROXY_URL") and not os.environ.get("MAIL_PROXY_PROFILE")
            and found.tenant in _known_profiles()):
        raise UsageError(f"mail-proxy: error: '{found.tenant}' is a profile: name the tenant after it "
                         f"(mail-proxy {found.tenant} TENANT {found.args[0]} ...)")
    args = with_examples(tenant_parser(found.profile or "", found.tenant or "")).parse_args(found.args)
    ctx = Context(args, connection(found.profile, args), found.tenant, prefix=prefix)
    opened.append(ctx)
    _check_tenant(ctx)
    return TENANT_HANDLERS[args.command](ctx)


def _fail_usage(message: str, wants_json: bool) -> Exit:
    """A usage error on standard error; with --json also ``{"ok": false, "error": ...}`` on standard output
    (the error line without its ``PROG: error:`` prefix)."""
    if wants_json:
        lines = [line for line in message.splitlines() if ": error: " in line] or [message]
        print(as_json({"ok": False, "error": lines[-1].split(": error: ", 1)[-1], "exit_code": int(Exit.USAGE)}))
    print(message, file=sys.stderr)
    return Exit.USAGE


def main(argv: Sequence[str] | None = None) -> int:
    arguments = list(sys.argv[1:] if argv is None else argv)
    wants_json = "--json" in arguments
    opened: list[Context] = []
    try:
        return int(dispatch(arguments, opened))
    except SystemExit as done:  # --help and --version
        return int(done.code or 0) if isinstance(done.code, int) or done.code is None else Exit.USAGE
    except UsageError as error:
        return _fail_usage(str(error), wants_json)
    except (ProfileError, LocalStackError) as error:
        if isinstance(error, ProfileError) or getattr(error, "usage", False):
            return _fail_usage(f"mail-proxy: error: {error}", wants_json)
        if wants_json:
            print(as_json({"ok": False, "error": str(error)}))
        print(f"mail-proxy: {error}", file=sys.stderr)
        return Exit.SERVER
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
        for ctx in opened:
            ctx.progress.finish()
        print("\nmail-proxy: interrupted", file=sys.stderr)
        return Exit.INTERRUPTED
    finally:
        for ctx in opened:
            ctx.progress.finish()


LOCAL_HOSTS = frozenset({"127.0.0.1", "localhost", "::1", "0.0.0.0"})  # noqa: S104 - compared, never bound


def _describe(error: MailProxyError) -> str:
    if isinstance(error, ValidationFailed) and error.fields:
        lines = [f"{error.status} invalid input:"] + [f"  {k}: {v}" for k, v in error.fields.items()]
        return "\n".join(lines)
    if isinstance(error, Unauthorized):
        return f"{error.status} {detail_text(error.detail)} (check the token)"
    if isinstance(error, Throttled) and error.retry_after is not None:
        return f"{error.describe()} (retry after {error.retry_after:g} s)"
    if (isinstance(error, ConnectionFailed) and "refused" in detail_text(error.detail).lower()
            and urllib.parse.urlsplit(error.url).hostname in LOCAL_HOSTS):
        return (f"{error.describe()}\nhint: is the local stack running? Start it with 'make run' in the "
                "repository, or 'mail-proxy start local --background'")
    return str(error.describe())


if __name__ == "__main__":
    sys.exit(main())
