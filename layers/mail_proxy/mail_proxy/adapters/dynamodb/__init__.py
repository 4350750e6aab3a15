"""The DynamoDB repository, split by aggregate: the only package that knows keys and item shapes.

``keys`` builds every key (tests use it too); ``table`` holds the shared plumbing (the one conditional write,
the one batch read, pagination, cursors); one module per aggregate; ``repository`` composes them into
``MailRepository``; ``streams`` reads the table's stream records.
"""

from mail_proxy.adapters.dynamodb.keys import PAYLOAD_TTL_SECONDS
from mail_proxy.adapters.dynamodb.repository import MailRepository
from mail_proxy.adapters.dynamodb.streams import StateChange, removed_payload_from_stream, state_change_from_stream

__all__ = ["PAYLOAD_TTL_SECONDS", "MailRepository", "StateChange", "removed_payload_from_stream",
           "state_change_from_stream"]
