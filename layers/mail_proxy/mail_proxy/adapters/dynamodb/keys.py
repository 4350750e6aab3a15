"""Every key of the table, built here and nowhere else (tests use these helpers too).

Every partition key starts with ``TENANT#<tenant id>``, so every read is scoped to one tenant by
construction (and IAM ``dynamodb:LeadingKeys`` could enforce it). Items:

- tenant ``TENANT#t / #TENANT`` (listed through ``ByTenant`` with ``gsi1pk=TENANTS``; found by token
  through the sparse ``ByToken`` index on ``token_hash``)
- account ``TENANT#t / ACCOUNT#<id>``
- message ``TENANT#t#MSG#<id>``: a small ``STATE`` item (status, attempts, lease, events) that every
  transition rewrites, and an immutable ``PAYLOAD#<version>`` item with the submitted fields, so updates
  stay cheap. Listed through ``ByTenant`` (``gsi1pk=TENANT#t#MSG``); waiting messages carry ``due_pk/due_sk``
  (sparse ``Due`` index) so the scheduler finds due, deferred and stale ones without scanning; held ones
  carry ``due_pk=TENANT#t#HELD``.
- scheduler bookkeeping ``TENANT#t / #SCHEDULER``; sending windows ``TENANT#t#RATE#<account> / <window>#<start>``
- returned mail, under the tenant's own partition so it goes with the tenant: ``SUPPRESS#<address>``,
  ``#MAILBOX#<name>``, ``PECWAIT#<sent ts>#<id>`` and ``PECMSGID#<Message-ID>``
- reputation counters ``TENANT#t / REPUTATION#<hour start>`` (sends, hard bounces, complaints; see
  ``reputation``)
- Prometheus counters ``METRICS#COUNTERS / <tenant id>`` (the only partition outside a tenant's)
- command log ``TENANT#t#LOG / <ms>#<uuid>`` (all tenants through ``ByTenant`` with ``gsi1pk=COMMANDS``).
- recipient index ``TENANT#t#RCPT#<shard> / <address>#<created ms>#<message id>``: written at submission, one
  per recipient (the first ``MAX_INDEXED_RECIPIENTS``), so ``GET /messages?recipient=`` reads one partition
  range instead of the tenant's history; sixteen shards by address hash spread a large submission's writes
  and let the tenant's deletion find them all. Expires with ``RECIPIENT_INDEX_TTL_SECONDS``.
"""

from __future__ import annotations

import hashlib
import re

from mail_proxy.domain.models import RETENTION_SECONDS

TENANT_PREFIX = "TENANT#"
TENANT_SK = "#TENANT"
STATE_SK = "STATE"
SCHEDULER_SK = "#SCHEDULER"
PAYLOAD_PREFIX = "PAYLOAD#"
ACCOUNT_PREFIX = "ACCOUNT#"
SUPPRESSION_PREFIX = "SUPPRESS#"
MAILBOX_PREFIX = "#MAILBOX#"
PEC_WAIT_PREFIX = "PECWAIT#"
PEC_MSGID_PREFIX = "PECMSGID#"
REPUTATION_PREFIX = "REPUTATION#"
MESSAGE_INFIX = "#MSG#"
TENANTS_GSI1 = "TENANTS"
COMMANDS_GSI1 = "COMMANDS"
METRICS_PK = "METRICS#COUNTERS"  # the Prometheus counters: the one partition that is no tenant's
PAYLOAD_TTL_SECONDS = 30 * 24 * 3600
COMMAND_LOG_TTL_SECONDS = 400 * 24 * 3600
MAX_LOG_MS = 10**13 - 1
MAX_DUE_TS = 10**10 - 1
MAX_CREATED_MS = 10**13 - 1
ID_AFTER_ALL = "#\x7f"  # sorts after "#<any message id>" (ids are printable ASCII, up to "~")
RECIPIENT_SHARDS = 16
MAX_INDEXED_RECIPIENTS = 50
RECIPIENT_INDEX_TTL_SECONDS = PAYLOAD_TTL_SECONDS + RETENTION_SECONDS  # as long as a message's content, and its record

# ------------------------------------------------------------------------------------------ partitions


def tenant_pk(tenant_id: str) -> str:
    return f"{TENANT_PREFIX}{tenant_id}"


def tenant_id_from_pk(pk: str) -> str | None:
    """The tenant of a tenant item's partition key (None for a key that is not a tenant's)."""
    return pk.removeprefix(TENANT_PREFIX) if pk.startswith(TENANT_PREFIX) else None


def message_pk(tenant_id: str, message_id: str) -> str:
    return f"{tenant_pk(tenant_id)}{MESSAGE_INFIX}{message_id}"


def message_id_from_pk(pk: str) -> str:
    """The message id of a message partition key (``TENANT#t#MSG#<id>``)."""
    return pk.split(MESSAGE_INFIX, 1)[1]


def messages_gsi1pk(tenant_id: str) -> str:
    """The ``ByTenant`` partition listing a tenant's messages by creation time."""
    return f"{tenant_pk(tenant_id)}#MSG"


def message_gsi1sk(created_ms: int, message_id: str) -> str:
    return f"{created_sk(created_ms)}#{message_id}"


def created_ms_from_gsi1sk(gsi1sk: str) -> int:
    return int(gsi1sk.split("#", 1)[0])


def due_pk(tenant_id: str) -> str:
    return f"{tenant_pk(tenant_id)}#DUE"


def due_sk(due_ts: int, message_id: str) -> str:
    # ten digits sort correctly until 2286; a later time (never accepted at the API) is clamped, not widened
    return f"{min(max(due_ts, 0), MAX_DUE_TS):010d}#{message_id}"


def due_sk_bound(due_ts: int) -> str:
    """A sort key bound below every message due at ``due_ts`` (``due_sk < due_sk_bound(t + 1)``: due by t)."""
    return f"{min(max(due_ts, 0), MAX_DUE_TS):010d}"


def parse_due_sk(sk: str) -> tuple[int, str]:
    """(due time, message id) of a ``due_sk``."""
    ts, _, message_id = sk.partition("#")
    return int(ts), message_id


def held_pk(tenant_id: str) -> str:
    """Messages that wait for their tenant or batch to send again: in the Due index, outside the due partition,
    so any number of them never starves the scheduler's reading of what is due."""
    return f"{tenant_pk(tenant_id)}#HELD"


def recipient_index_pk(tenant_id: str, address: str) -> str:
    shard = int(hashlib.sha256(address.encode("utf-8")).hexdigest()[:8], 16) % RECIPIENT_SHARDS
    return recipient_shard_pk(tenant_id, shard)


def recipient_shard_pk(tenant_id: str, shard: int) -> str:
    return f"{tenant_pk(tenant_id)}#RCPT#{shard:02d}"


def recipient_index_sk(address: str, created_ms: int, message_id: str = "") -> str:
    """``<address>#<created ms>#<message id>``; without an id, the bound before every message of that ms."""
    stamp = f"{address}#{created_sk(created_ms)}"
    return f"{stamp}#{message_id}" if message_id else stamp


def created_sk(created_ms: int) -> str:
    """13 digits sort correctly until 2286; a bound beyond is clamped so it never grows a 14th digit."""
    return f"{min(max(created_ms, 0), MAX_CREATED_MS):013d}"


def rate_pk(tenant_id: str, account_id: str) -> str:
    return f"{tenant_pk(tenant_id)}#RATE#{account_id}"


def rate_sk(window: str, start: int) -> str:
    return f"{window}#{start}"


def log_pk(tenant_id: str | None) -> str:
    """The command log of a tenant (``-``: commands of no tenant, such as an administrator's)."""
    return f"{tenant_pk(tenant_id or '-')}#LOG"


def log_sk(ms: int, entry_id: str = "") -> str:
    """13-digit milliseconds (clamped, so a bound never grows a 14th digit, which sorts wrong), then the id."""
    stamp = f"{min(max(ms, 0), MAX_LOG_MS):013d}"
    return f"{stamp}#{entry_id}" if entry_id else stamp


# ------------------------------------------------------------------------------------------ sort keys


def account_sk(account_id: str) -> str:
    return ACCOUNT_PREFIX + account_id


def payload_sk(version: str) -> str:
    return PAYLOAD_PREFIX + version


def suppression_sk(address: str) -> str:
    return SUPPRESSION_PREFIX + address.lower()


def mailbox_sk(mailbox: str) -> str:
    return MAILBOX_PREFIX + mailbox


def pec_wait_sk(sent_ts: int, message_id: str = "") -> str:
    """``PECWAIT#<sent ts>#<id>``; without an id, the bound that sorts before every message sent at that time."""
    stamp = f"{PEC_WAIT_PREFIX}{max(sent_ts, 0):010d}"
    return f"{stamp}#{message_id}" if message_id else stamp


def parse_pec_wait_sk(sk: str) -> tuple[int, str]:
    ts, _, message_id = sk.removeprefix(PEC_WAIT_PREFIX).partition("#")
    return int(ts), message_id


def pec_msgid_sk(message_id_header: str) -> str:
    return PEC_MSGID_PREFIX + message_id_header


_COUNTER_ATTRIBUTE = re.compile(r"^c#(sent|errors|deferred|rate_limited)#(.+)$")


def counter_attribute(kind: str, account_id: str) -> str:
    """The attribute of one Prometheus counter (``sent``, ``errors``, ...) of one account."""
    return f"c#{kind}#{account_id}"


def parse_counter_attribute(name: str) -> tuple[str, str] | None:
    """(counter, account) of a counter attribute; None for any other attribute."""
    match = _COUNTER_ATTRIBUTE.match(name)
    return (match.group(1), match.group(2)) if match else None


def reputation_sk(bucket: int) -> str:
    return f"{REPUTATION_PREFIX}{min(max(bucket, 0), MAX_DUE_TS):010d}"
