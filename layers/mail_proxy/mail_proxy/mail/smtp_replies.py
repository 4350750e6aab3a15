"""What an SMTP exchange ends with: a :class:`SendOutcome` (the server accepted the message, for at least one
recipient), or a :class:`SmtpDeliveryError` classified temporary or permanent in one place,
:func:`classify_smtp_failure` (the rules are in ``smtp_client``'s module docstring). Pure: no AWS, no I/O.
"""

from __future__ import annotations

import smtplib
import ssl
from collections.abc import Mapping
from dataclasses import dataclass

from mail_proxy.errors import DeliveryError
from mail_proxy.security.address_guard import NOT_ALLOWED, DeadlineExceeded, HostNotAllowed

_MAX_REASON = 500


@dataclass(frozen=True)
class SendOutcome:
    """A message the server accepted. ``refused`` maps each refused recipient to (code, reply)."""

    accepted: tuple[str, ...]
    refused: Mapping[str, tuple[int, str]]
    code: int
    reply: str


class SmtpDeliveryError(DeliveryError):
    """A delivery attempt failed. ``reason`` is short and fit for the message's ``error`` field
    (e.g. ``"550 5.1.1 user unknown"``); ``code``/``reply`` are the server's, when it answered."""

    temporary: bool = False

    def __init__(
        self,
        reason: str,
        *,
        code: int | None = None,
        reply: str = "",
        refused: Mapping[str, tuple[int, str]] | None = None,
    ) -> None:
        reason = " ".join(reason.split())
        if len(reason) > _MAX_REASON:
            reason = reason[: _MAX_REASON - 3] + "..."
        super().__init__(reason)
        self.reason = reason
        self.code = code
        self.reply = reply
        self.refused: dict[str, tuple[int, str]] = dict(refused or {})


class SmtpTemporaryError(SmtpDeliveryError):
    """May succeed later: retry with backoff."""

    temporary = True


class SmtpPermanentError(SmtpDeliveryError):
    """Can never succeed as it is: fail the message now."""

    temporary = False


def _text(reply: bytes | str) -> str:
    if isinstance(reply, bytes):
        reply = reply.decode("utf-8", "replace")
    return " ".join(reply.split())


def _by_code(code: int, reply: bytes | str, prefix: str = "") -> SmtpDeliveryError:
    text = _text(reply)
    reason = f"{prefix}{code} {text}".strip()
    if 500 <= code < 600:
        return SmtpPermanentError(reason, code=code, reply=text)
    # 4xx, and anything a server should not have answered: assume the next attempt can succeed.
    return SmtpTemporaryError(reason, code=code, reply=text)


def classify_smtp_failure(exc: BaseException) -> SmtpDeliveryError:
    """The one place that decides whether a failure is temporary or permanent (see the module doc).

    Accepts what :mod:`smtplib`, :mod:`ssl` and :mod:`socket` raise (also from a plain
    ``smtplib.SMTP.sendmail``); returns the typed error to raise ``from`` the original.
    """
    if isinstance(exc, SmtpDeliveryError):
        return exc
    if isinstance(exc, smtplib.SMTPRecipientsRefused):
        refused = {address: (code, _text(reply)) for address, (code, reply) in exc.recipients.items()}
        listed = "; ".join(f"{address}: {code} {reply}" for address, (code, reply) in refused.items())
        first_code, first_reply = next(iter(refused.values()), (0, ""))
        every_permanent = all(500 <= code < 600 for code, _ in refused.values())
        error_type = SmtpPermanentError if every_permanent else SmtpTemporaryError
        return error_type(
            f"every recipient refused: {listed}", code=first_code or None, reply=first_reply, refused=refused
        )
    if isinstance(exc, smtplib.SMTPAuthenticationError):
        return _by_code(exc.smtp_code, exc.smtp_error, prefix="authentication failed: ")
    if isinstance(exc, smtplib.SMTPResponseException):
        return _by_code(exc.smtp_code, exc.smtp_error)
    if isinstance(exc, HostNotAllowed):
        return SmtpPermanentError(NOT_ALLOWED)
    if isinstance(exc, DeadlineExceeded) or isinstance(exc.__context__, DeadlineExceeded):
        return SmtpTemporaryError("timed out: the server did not finish within the time allowed")
    if isinstance(exc, smtplib.SMTPServerDisconnected):
        if isinstance(exc.__context__, TimeoutError):  # smtplib reports a read timeout as a disconnect
            return SmtpTemporaryError("timed out waiting for the server")
        return SmtpTemporaryError(f"connection closed by the server: {exc}")
    if isinstance(exc, smtplib.SMTPNotSupportedError):
        return SmtpPermanentError(f"not supported by the server: {exc}")
    if isinstance(exc, smtplib.SMTPException):
        return SmtpPermanentError(f"SMTP error: {exc}")
    if isinstance(exc, ssl.SSLCertVerificationError):
        return SmtpPermanentError(f"TLS certificate not accepted: {getattr(exc, 'verify_message', None) or exc}")
    if isinstance(exc, ssl.SSLEOFError | ssl.SSLZeroReturnError | ssl.SSLSyscallError):
        return SmtpTemporaryError(f"connection dropped during TLS: {exc}")
    if isinstance(exc, ssl.SSLError):
        return SmtpPermanentError(f"TLS failure: {exc}")
    if isinstance(exc, TimeoutError):
        return SmtpTemporaryError(f"timed out: {exc}" if str(exc) else "timed out")
    if isinstance(exc, ConnectionRefusedError):
        return SmtpTemporaryError(f"connection refused: {exc}")
    if isinstance(exc, OSError):
        return SmtpTemporaryError(f"network error: {exc}")
    return SmtpTemporaryError(f"unexpected {type(exc).__name__}: {exc}")
