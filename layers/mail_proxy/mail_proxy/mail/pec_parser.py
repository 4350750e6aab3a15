"""PEC (Posta Elettronica Certificata) receipts: which receipt a mail is and what it says (pure).

Receipts are recognised by their ``X-Ricevuta`` header, or failing that by the subject the PEC providers
use (``ACCETTAZIONE:``, ``CONSEGNA:``, ``AVVISO DI MANCATA CONSEGNA:``...). They become events:
accettazione and presa in carico → ``pec_acceptance``; avvenuta consegna → ``pec_delivery``; mancata
consegna, errore consegna and non accettazione → ``pec_error``. The original message is named by its
``X-Mail-Proxy-ID`` when the receipt carries a copy of it, and always by ``X-Riferimento-Message-ID``
(the original's Message-ID, also in the ``daticert.xml`` attachment as ``<msgid>``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from email.message import Message
from email.utils import parsedate_to_datetime

from mail_proxy.mail import inbound_mail
from mail_proxy.mail.inbound_mail import ProxyReference

MAX_DETAIL_CHARS = 500

# X-Ricevuta value → (receipt name, event type)
RECEIPTS: dict[str, tuple[str, str]] = {
    "accettazione": ("accettazione", "pec_acceptance"),
    "presa-in-carico": ("presa in carico", "pec_acceptance"),
    "avvenuta-consegna": ("avvenuta consegna", "pec_delivery"),
    "consegna": ("avvenuta consegna", "pec_delivery"),
    "mancata-consegna": ("mancata consegna", "pec_error"),
    "errore-consegna": ("errore consegna", "pec_error"),
    "non-accettazione": ("non accettazione", "pec_error"),
}
_SUBJECTS: tuple[tuple[re.Pattern[str], str], ...] = tuple(
    (re.compile(rf"^\s*(?:POSTA CERTIFICATA:\s*)?(?:AVVISO DI\s+)?{words}\b[^:]*:"), key)
    for words, key in (
        (r"NON ACCETTAZIONE", "non-accettazione"),
        (r"MANCATA CONSEGNA", "mancata-consegna"),
        (r"ERRORE (?:DI )?CONSEGNA", "errore-consegna"),
        (r"PRESA IN CARICO", "presa-in-carico"),
        (r"ACCETTAZIONE", "accettazione"),
        (r"(?:AVVENUTA )?CONSEGNA", "avvenuta-consegna"),
    )
)
_MESSAGE_ID = re.compile(r"<[^<>\s]+@[^<>\s]+>")


@dataclass(frozen=True)
class PecReceipt:
    receipt: str  # accettazione, presa in carico, avvenuta consegna, mancata consegna, errore consegna, ...
    event_type: str  # pec_acceptance | pec_delivery | pec_error
    timestamp: int | None
    recipient: str | None
    error: str | None
    reference: ProxyReference | None
    original_message_id: str | None

    @property
    def description(self) -> str:
        text = f"PEC {self.receipt}"
        return f"{text}: {self.error}"[:MAX_DETAIL_CHARS] if self.error else text


def receipt_kind(x_ricevuta: str, subject: str) -> str | None:
    """The ``X-Ricevuta`` key of a receipt, from the header or else the subject; None for other mail."""
    value = x_ricevuta.strip().lower()
    if value in RECEIPTS:
        return value
    if value:
        return None  # a receipt we do not track (preavviso-errore-consegna, rilevazione-virus)
    for pattern, key in _SUBJECTS:
        if pattern.match(subject):
            return key
    return None


def parse_pec_receipt(raw: bytes) -> PecReceipt | None:
    msg = inbound_mail.parse(raw)
    kind = receipt_kind(inbound_mail.header(msg, "X-Ricevuta"), inbound_mail.header(msg, "Subject"))
    if kind is None:
        return None
    receipt, event_type = RECEIPTS[kind]
    certificate = _certificate_text(msg)
    body = inbound_mail.body_text(msg)
    error = None
    if event_type == "pec_error":
        error = (inbound_mail.header(msg, "X-Errore") or _xml_field(certificate, "errore-esteso")
                 or _labelled(body, ("Errore", "Motivo", "Causa")) or None)
    recipient = (inbound_mail.header(msg, "X-Destinatario") or _xml_field(certificate, "consegna")
                 or _indirizzato_a(body))
    recipients = inbound_mail.addresses_in(recipient or "", limit=1)
    original = inbound_mail.header(msg, "X-Riferimento-Message-ID") or _xml_field(certificate, "msgid")
    original_match = _MESSAGE_ID.search(original or "")
    return PecReceipt(
        receipt=receipt,
        event_type=event_type,
        timestamp=_timestamp(inbound_mail.header(msg, "Date") or inbound_mail.header(msg, "X-Data-Ricevuta")),
        recipient=recipients[0] if recipients else None,
        error=error[:MAX_DETAIL_CHARS] if error else None,
        reference=inbound_mail.find_reference(msg, top_level=False),
        original_message_id=original_match.group(0) if original_match else None,
    )


def _certificate_text(msg: Message) -> str:
    """The ``daticert.xml`` attachment every receipt carries (its data in machine-readable form)."""
    for part in inbound_mail.walk(msg, into_returned=False):
        name = (part.get_filename() or "").lower()
        if name == "daticert.xml" or part.get_content_type() in ("application/xml", "text/xml"):
            return inbound_mail.part_text(part, 20_000)
    return ""


def _xml_field(xml: str, tag: str) -> str | None:
    match = re.search(rf"<{tag}(?:\s[^>]*)?>(.*?)</{tag}>", xml, re.DOTALL | re.IGNORECASE)
    if not match:
        return None
    value = re.sub(r"\s+", " ", match.group(1)).strip()
    value = value.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")
    return value or None


def _labelled(text: str, labels: tuple[str, ...]) -> str | None:
    match = re.search(rf"^\s*(?:{'|'.join(labels)})\s*:\s*(.+)$", text, re.MULTILINE | re.IGNORECASE)
    return match.group(1).strip() if match else None


def _indirizzato_a(text: str) -> str | None:
    match = re.search(r"indirizzat[oa] a\s*:?\s*\"?([^\s\"]+@[^\s\"]+)", text, re.IGNORECASE)
    return match.group(1) if match else None


def _timestamp(value: str) -> int | None:
    if not value:
        return None
    try:
        return int(parsedate_to_datetime(value).timestamp())
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
