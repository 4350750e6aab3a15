"""What the proxy takes from an application's answer to a sync: odd values are ignored or bounded, never raised."""

from __future__ import annotations

import json

import pytest

from mail_proxy.usecases.reporting import MAX_QUIET_SECONDS, _sync_answer

NOW = 1_800_000_000


@pytest.mark.parametrize("raw", [
    b'{"next_sync_after": NaN}', b'{"next_sync_after": Infinity}', b'{"next_sync_after": -Infinity}',
    b'{"next_sync_after": "1800000600"}', b'{"next_sync_after": true}', b'{"next_sync_after": null}',
    b'{"next_sync_after": [1800000600]}', b'{"next_sync_after": 1}', b'{"next_sync_after": 1800000000}',
    b'{"next_sync_after": -1e308}', b"not json", b"", b"[]", b"\xff\xfe", b"[" * 100_000,
])
def test_a_next_sync_after_that_is_not_a_finite_future_time_asks_no_quiet(raw: bytes) -> None:
    assert _sync_answer(raw, NOW)[1] is None


@pytest.mark.parametrize("value", [1e38, 1e308, 10**40, 4102444800, NOW + MAX_QUIET_SECONDS + 1])
def test_a_far_next_sync_after_is_one_hour_of_quiet(value: object) -> None:
    assert _sync_answer(json.dumps({"next_sync_after": value}).encode(), NOW)[1] == NOW + MAX_QUIET_SECONDS


@pytest.mark.parametrize("value, quiet", [(NOW + 1, NOW + 1), (NOW + 600.7, NOW + 600),
                                          (NOW + MAX_QUIET_SECONDS, NOW + MAX_QUIET_SECONDS)])
def test_a_near_next_sync_after_is_kept(value: float, quiet: int) -> None:
    assert _sync_answer(json.dumps({"next_sync_after": value}).encode(), NOW)[1] == quiet


@pytest.mark.parametrize("queued, expected", [(3, 3), (0, 0), (-5, 0), (True, 0), (2.5, 0), ("7", 0), (None, 0)])
def test_only_a_positive_integer_queued_asks_for_another_sync(queued: object, expected: int) -> None:
    assert _sync_answer(json.dumps({"queued": queued}).encode(), NOW)[0] == expected
