"""Operator commands: ``python -m mail_proxy keygen``, ``reencrypt`` and ``key-usage``."""

from __future__ import annotations

import argparse
import os
import sys
from typing import TYPE_CHECKING

from mail_proxy.security.crypto import generate_key

if TYPE_CHECKING:
    from mail_proxy.adapters.dynamodb import MailRepository
    from mail_proxy.security.crypto import KeyRing


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mail_proxy", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("keygen", help="print a new base64 AES-256 key for MAIL_PROXY_ENCRYPTION_KEY or the secret")
    rotate = sub.add_parser("reencrypt", help="re-encrypt every stored secret under the current key "
                                              "(exit code 1 when some value could not be)")
    usage = sub.add_parser("key-usage", help="count the stored secrets under each key id (exit code 0 only "
                                             "when every one uses the current key)")
    for command in (rotate, usage):
        command.add_argument("--table", default=os.environ.get("TABLE_NAME"), help="DynamoDB table (TABLE_NAME)")
        command.add_argument("--secret-id", default=os.environ.get("SECRET_ID"),
                             help="Secrets Manager secret with encryption_key and previous_keys (SECRET_ID); "
                                  "without it MAIL_PROXY_ENCRYPTION_KEY and MAIL_PROXY_PREVIOUS_KEYS are used")
    args = parser.parse_args(argv)

    if args.command == "keygen":
        print(generate_key())
        return 0
    if not args.table:
        parser.error("--table (or TABLE_NAME) is required")
    os.environ["TABLE_NAME"] = args.table
    if args.secret_id:
        os.environ["SECRET_ID"] = args.secret_id
    from mail_proxy.adapters.dynamodb import MailRepository
    from mail_proxy.adapters.secrets_config import key_ring

    ring = key_ring(force_fetch=bool(args.secret_id))
    repo = MailRepository(args.table)
    if args.command == "reencrypt":
        return _reencrypt(repo, ring)
    return _key_usage(repo, ring)


def _reencrypt(repo: MailRepository, ring: KeyRing) -> int:
    from mail_proxy.usecases.key_rotation import reencrypt_all

    report = reencrypt_all(repo, ring)
    print(f"re-encrypted under key {ring.current_id}: {report.accounts} account passwords, "
          f"{report.tenants} tenant credentials ({report.values} values); {report.already_current} values were "
          f"already current; {report.retried} writes retried after a concurrent change")
    if report.failed:
        print(f"{len(report.failed)} not re-encrypted (fix or wait, then run reencrypt again):")
        for line in report.failed:
            print(f"  {line}")
        return 1
    return 0


def _key_usage(repo: MailRepository, ring: KeyRing) -> int:
    """One line per key id; exit code 0 only when no value needs a key other than the current one."""
    from mail_proxy.usecases.key_rotation import NOT_ENCRYPTED, UNREADABLE, key_usage

    usage = key_usage(repo)
    roles = {ring.current_id: "current", **{kid: "previous" for kid in ring.previous_ids}}
    for kid in dict.fromkeys([ring.current_id, *ring.previous_ids, *sorted(usage.by_key)]):
        kinds = usage.by_key.get(kid)
        detail = f" ({', '.join(f'{kind} {n}' for kind, n in sorted(kinds.items()))})" if kinds else ""
        role = roles.get(kid, "not in the key ring")
        print(f"key {kid} ({role}): {usage.count(kid)} values{detail}")
    for line in usage.incomplete:
        print(f"not counted: {line}")
    elsewhere = sum(usage.count(kid) for kid in usage.by_key
                    if kid not in (ring.current_id, NOT_ENCRYPTED, UNREADABLE))
    if usage.incomplete or elsewhere:
        print("some stored values do not use the current key yet: keep every previous key")
        return 1
    print("every stored value uses the current key: previous keys can be removed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
