"""Review findings in the CLI's bulk send (offline: a scripted API)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.client.fake_api import FakeApi
from tests.client.test_cli_offline import run_in_process


def test_a_list_giving_one_id_to_two_messages_is_refused_before_anything_is_sent(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path, fake_api: FakeApi) -> None:
    """In two chunks the second message would replace the first (still waiting) under its id: one recipient
    would silently get nothing while the summary counts both as queued."""
    listing = tmp_path / "list.csv"
    listing.write_text("id,to,subject,body,account,from\n"
                       "m1,a@example.org,S,B,main,s@example.com\n"
                       "m2,b@example.org,S,B,main,s@example.com\n"
                       "m1,c@example.org,S,B,main,s@example.com\n")
    fake_api.answer(200, {"tenant_id": "acme"})
    for _ in range(3):
        fake_api.answer(200, {"ok": True, "queued": 1, "rejected": []})
    result = run_in_process(["acme", "send", "--file", str(listing), "--chunk-size", "1"], monkeypatch, tmp_path,
                            env={"MAIL_PROXY_URL": fake_api.url, "MAIL_PROXY_TOKEN": "t"})
    assert result.code == 2, (result.stdout, result.stderr)
    assert "m1" in result.stderr and "more than one message" in result.stderr
    assert [r for r in fake_api.requests if r.path.startswith("/commands/add-messages")] == []
