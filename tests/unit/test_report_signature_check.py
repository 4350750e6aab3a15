"""The signature check that applications copy (docs/reports.md): hostile headers are a refusal, never a crash."""

from __future__ import annotations

from mail_proxy.security.report_signing import signature_header, verify

SECRET = "whsec_test"
BODY = b'{"delivery_report":[]}'


def test_a_valid_signature_is_accepted() -> None:
    header = signature_header([SECRET], 1_700_000_000, BODY)
    assert verify(header, BODY, SECRET, now=1_700_000_000)


def test_a_non_ascii_signature_is_refused_not_a_type_error() -> None:
    assert verify("t=1700000000,v1=é" + "0" * 63, BODY, SECRET, now=1_700_000_000) is False


def test_a_changed_body_is_refused() -> None:
    header = signature_header([SECRET], 1_700_000_000, BODY)
    assert verify(header, BODY + b" ", SECRET, now=1_700_000_000) is False
