"""Review findings in the CLI's bulk-send file reading (pure: no API)."""

from __future__ import annotations

import pytest
from mail_proxy_client.bulk import MessagesFileError, messages_from_csv


@pytest.mark.parametrize("header", ["id,to,to", "id,to,To", "id,account,account_id", "id,html,html_body"])
def test_a_csv_naming_one_field_in_two_columns_is_refused_rather_than_losing_one(header: str) -> None:
    """Two columns for one field (``to`` twice, ``account`` and ``account_id``): one of them would be dropped
    without a word (csv.DictReader keeps the last cell of a repeated title)."""
    text = f"{header}\nm1,a@example.org,b@example.org\n"
    with pytest.raises(MessagesFileError, match="column"):
        messages_from_csv(text, "list.csv")


def test_distinct_columns_still_read() -> None:
    [row] = messages_from_csv("id,to,cc,account\nm1,a@example.org,b@example.org,smtp1\n", "list.csv")
    assert row == {"id": "m1", "to": ["a@example.org"], "cc": ["b@example.org"], "account_id": "smtp1"}
