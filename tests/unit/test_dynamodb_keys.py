"""The table's keys, built in one place: their shapes (existing tables keep working), their order, their inverses."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from mail_proxy.adapters.dynamodb import keys

IDS = st.text(alphabet=st.characters(min_codepoint=0x21, max_codepoint=0x7E, blacklist_characters="#"),
              min_size=1, max_size=40)
TIMES = st.integers(min_value=0, max_value=keys.MAX_DUE_TS)


def test_every_key_keeps_the_shape_existing_tables_hold() -> None:
    assert keys.tenant_pk("acme") == "TENANT#acme"
    assert keys.message_pk("acme", "m1") == "TENANT#acme#MSG#m1"
    assert keys.messages_gsi1pk("acme") == "TENANT#acme#MSG"
    assert keys.message_gsi1sk(1_700_000_000_123, "m1") == "1700000000123#m1"
    assert keys.due_pk("acme") == "TENANT#acme#DUE"
    assert keys.due_sk(1_700_000_000, "m1") == "1700000000#m1"
    assert keys.held_pk("acme") == "TENANT#acme#HELD"
    assert keys.account_sk("smtp1") == "ACCOUNT#smtp1"
    assert keys.payload_sk("abc123") == "PAYLOAD#abc123"
    assert keys.suppression_sk("Reader@Example.ORG") == "SUPPRESS#reader@example.org"
    assert keys.mailbox_sk("bounces") == "#MAILBOX#bounces"
    assert keys.pec_wait_sk(1_700_000_000, "m1") == "PECWAIT#1700000000#m1"
    assert keys.pec_msgid_sk("<a@b>") == "PECMSGID#<a@b>"
    assert keys.reputation_sk(1_699_999_200) == "REPUTATION#1699999200"
    assert keys.rate_pk("acme", "smtp1") == "TENANT#acme#RATE#smtp1"
    assert keys.rate_sk("minute", 1_700_000_000) == "minute#1700000000"
    assert keys.log_pk("acme") == "TENANT#acme#LOG"
    assert keys.log_pk(None) == "TENANT#-#LOG"
    assert keys.log_sk(1_700_000_000_123, "e1") == "1700000000123#e1"
    assert keys.recipient_index_sk("a@b.c", 5, "m1") == "a@b.c#0000000000005#m1"
    assert keys.recipient_index_pk("acme", "a@b.c").startswith("TENANT#acme#RCPT#")
    assert (keys.TENANT_SK, keys.STATE_SK, keys.SCHEDULER_SK) == ("#TENANT", "STATE", "#SCHEDULER")


@settings(max_examples=60, deadline=None)
@given(tenant_id=IDS, message_id=IDS)
def test_a_message_key_gives_back_its_message_and_a_tenant_key_its_tenant(tenant_id: str, message_id: str) -> None:
    assert keys.message_id_from_pk(keys.message_pk(tenant_id, message_id)) == message_id
    assert keys.tenant_id_from_pk(keys.tenant_pk(tenant_id)) == tenant_id
    assert keys.tenant_id_from_pk("SOMETHING#else") is None


@settings(max_examples=60, deadline=None)
@given(a=TIMES, b=TIMES, message_id=IDS)
def test_due_keys_sort_as_their_times_and_read_back(a: int, b: int, message_id: str) -> None:
    assert (keys.due_sk(a, message_id) < keys.due_sk(b, message_id)) == (a < b)
    assert keys.parse_due_sk(keys.due_sk(a, message_id)) == (a, message_id)
    # the bound for "due by t" takes in every message due at t and none due later
    assert keys.due_sk(a, message_id) < keys.due_sk_bound(a + 1) or a == keys.MAX_DUE_TS
    assert not keys.due_sk(a, message_id) < keys.due_sk_bound(a)


def test_a_time_beyond_ten_digits_is_clamped_not_widened() -> None:
    assert keys.due_sk(10**11, "m") == f"{keys.MAX_DUE_TS}#m"
    assert keys.due_sk(-5, "m") == "0000000000#m"
    assert len(keys.created_sk(10**15)) == 13 and len(keys.log_sk(10**15)) == 13


@settings(max_examples=60, deadline=None)
@given(a=st.integers(min_value=0, max_value=keys.MAX_CREATED_MS),
       b=st.integers(min_value=0, max_value=keys.MAX_CREATED_MS))
def test_creation_and_log_keys_sort_as_their_milliseconds(a: int, b: int) -> None:
    assert (keys.created_sk(a) < keys.created_sk(b)) == (a < b)
    assert (keys.log_sk(a, "x") < keys.log_sk(b, "x")) == (a < b)
    assert keys.created_ms_from_gsi1sk(keys.message_gsi1sk(a, "m")) == a


@settings(max_examples=60, deadline=None)
@given(sent_ts=TIMES, message_id=IDS)
def test_a_pec_wait_key_reads_back_and_sorts_below_the_bound_of_a_later_time(sent_ts: int, message_id: str) -> None:
    assert keys.parse_pec_wait_sk(keys.pec_wait_sk(sent_ts, message_id)) == (sent_ts, message_id)
    assert keys.pec_wait_sk(sent_ts, message_id) > keys.pec_wait_sk(sent_ts)
    if sent_ts < keys.MAX_DUE_TS:
        assert keys.pec_wait_sk(sent_ts, message_id) < keys.pec_wait_sk(sent_ts + 1)


@settings(max_examples=60, deadline=None)
@given(address=st.emails())
def test_an_address_always_lands_in_the_same_one_of_sixteen_shards(address: str) -> None:
    pk = keys.recipient_index_pk("acme", address)
    assert pk == keys.recipient_index_pk("acme", address)
    assert pk in {keys.recipient_shard_pk("acme", shard) for shard in range(keys.RECIPIENT_SHARDS)}


def test_a_recipient_bound_takes_in_every_message_of_its_millisecond() -> None:
    low = keys.recipient_index_sk("a@b.c", 5)
    high = keys.recipient_index_sk("a@b.c", 5) + keys.ID_AFTER_ALL
    assert low < keys.recipient_index_sk("a@b.c", 5, "~~~") < high
    assert not low <= keys.recipient_index_sk("a@b.c", 6, "m") <= high
