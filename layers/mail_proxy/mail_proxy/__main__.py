"""Operator commands: ``python -m mail_proxy keygen`` and ``python -m mail_proxy reencrypt``."""

from __future__ import annotations

import argparse
import os
import sys

from mail_proxy.crypto import generate_key


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mail_proxy", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("keygen", help="print a new base64 AES-256 key for MAIL_PROXY_ENCRYPTION_KEY or the secret")
    rotate = sub.add_parser("reencrypt", help="re-encrypt every stored secret under the current key")
    rotate.add_argument("--table", default=os.environ.get("TABLE_NAME"), help="DynamoDB table (TABLE_NAME)")
    rotate.add_argument("--secret-id", default=os.environ.get("SECRET_ID"),
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
    from mail_proxy.key_rotation import reencrypt_all
    from mail_proxy.repository import MailRepository
    from mail_proxy.secrets_config import key_ring

    ring = key_ring()
    report = reencrypt_all(MailRepository(args.table), ring)
    print(f"re-encrypted under key {ring.current_id}: {report.accounts} account passwords, "
          f"{report.tenants} tenant credentials; {report.already_current} values were already current")
    return 0


if __name__ == "__main__":
    sys.exit(main())
