"""Review finding: an attachment name that reads as another file type (pure)."""

from __future__ import annotations

import pytest

from mail_proxy.usecases.attachments import sanitize_filename


@pytest.mark.parametrize("given", ["invoice\u202efdp.exe", "invoice\u2067fdp.exe\u2069", "report\u200f.pdf.exe",
                                   "a\u202b\u202a\u202c.exe", "x\x85\x9b.exe"])
def test_bidirectional_controls_cannot_disguise_an_attachments_type(given: str) -> None:
    """U+202E (right-to-left override) shows "invoice<RLO>fdp.exe" as "invoiceexe.pdf" in mail clients."""
    safe = sanitize_filename(given)
    assert ".exe" in safe and ".pdf" not in safe.rsplit(".exe", 1)[-1]
    assert not any(0x200E <= ord(c) <= 0x200F or 0x202A <= ord(c) <= 0x202E or 0x2066 <= ord(c) <= 0x2069
                   or 0x80 <= ord(c) <= 0x9F for c in safe), repr(safe)


def test_ordinary_international_names_are_kept() -> None:
    assert sanitize_filename("Grüße \u2013 שלום.pdf") == "Grüße \u2013 שלום.pdf"
