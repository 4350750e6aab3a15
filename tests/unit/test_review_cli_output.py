"""Review finding: text that reaches the terminal from a hostile mailbox (a bounce's diagnostic, a complaint's
User-Agent: suppression reasons and message history) must not drive the terminal (pure)."""

from __future__ import annotations

import pytest
from mail_proxy_client.output import cell, fields, table

HOSTILE = [
    "550 user unknown\x1b]52;c;ZWNobyBwd25lZA==\x07",  # OSC 52: writes the clipboard
    "550 \x1b[2J\x1b[Hall good",  # clears the screen
    "550 \x9b31mred",  # C1 CSI
    "550 \x08\x08\x08\x7fhidden",  # backspaces over what was printed
]


@pytest.mark.parametrize("text", HOSTILE)
def test_control_characters_from_the_server_are_shown_not_obeyed(text: str) -> None:
    for shown in (cell("reason", text), table([{"reason": text}], [("reason", "REASON")]),
                  fields({"reason": text}), cell("history", [{"description": text}])):
        assert not any((ord(c) < 0x20 and c != "\n") or 0x7F <= ord(c) < 0xA0 for c in shown), repr(shown)
        assert "550" in shown


def test_ordinary_text_is_unchanged() -> None:
    assert cell("subject", "Grüße \u2013 日本 ok") == "Grüße \u2013 日本 ok"
    assert cell("reason", "a\r\nb\tc") == "a b c"


def test_json_output_escapes_every_control_character_and_stays_the_same_data() -> None:
    import json

    from mail_proxy_client.output import as_json

    data = {"reason": "550 \x9b31m\x1b[2J\x7f gr\u00fc\u00df"}
    text = as_json(data)
    assert not any((ord(c) < 0x20 and c != "\n") or 0x7F <= ord(c) < 0xA0 for c in text), repr(text)
    assert json.loads(text) == data and "grüß" in text
