"""DKIM signatures (RFC 6376, ``rsa-sha256``, ``relaxed/relaxed``) and the DNS record that publishes a key.
Pure: no AWS, no I/O.

Signed with pycryptodome (already in the layer for ``crypto``) rather than a DKIM library, so the layer
gains no DNS package; the tests verify every signature with an independent implementation (dkimpy), which is what
catches a canonicalisation mistake. ``From`` is signed once more than it occurs ("over-signed"), so a
second ``From`` added on the way breaks the signature instead of passing as signed.
"""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import Sequence
from functools import lru_cache
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pycryptodome is imported on first use: the api's routes that never sign skip ~30 ms of it
    from Crypto.PublicKey import RSA

KEY_BITS = 2048
SIGNED_HEADERS: tuple[str, ...] = (
    "from", "to", "cc", "subject", "date", "message-id", "mime-version", "content-type",
    "list-unsubscribe", "list-unsubscribe-post", "reply-to", "sender", "in-reply-to", "references",
)
OVERSIGNED = frozenset({"from"})
_WSP_RUN = re.compile(rb"[ \t]+")
_LINE_WIDTH = 76


def generate_key() -> tuple[str, str]:
    """A new RSA key: (private key as PKCS#8 PEM, public key as base64 DER for the ``p=`` tag)."""
    from Crypto.PublicKey import RSA

    key = RSA.generate(KEY_BITS, e=65537)
    private = key.export_key(format="PEM", pkcs=8).decode("ascii")  # "BEGIN PRIVATE KEY", as before
    public = key.public_key().export_key(format="DER")  # SubjectPublicKeyInfo
    return private, base64.b64encode(public).decode("ascii")


def dns_name(selector: str, domain: str) -> str:
    return f"{selector}._domainkey.{domain}"


def dns_value(public_key: str) -> str:
    """The TXT record's text. DNS servers split text over 255 characters into several strings; most
    providers' consoles do that themselves when given the whole value."""
    return f"v=DKIM1; k=rsa; p={public_key}"


@lru_cache(maxsize=64)
def _load_key(private_pem: str) -> RSA.RsaKey:
    """Parsing and checking a 2048-bit key costs milliseconds: done once per key and container. PKCS#8
    (``BEGIN PRIVATE KEY``, what ``generate_key`` writes) and PKCS#1 (``BEGIN RSA PRIVATE KEY``) PEM load;
    ValueError for anything else, an encrypted key, a public key or a key of another type."""
    from Crypto.PublicKey import RSA

    try:
        key = RSA.import_key(private_pem.encode("ascii"))
    except (IndexError, TypeError) as exc:  # what a malformed DER structure can also raise
        raise ValueError("a DKIM key must be an RSA private key in PEM") from exc
    if not key.has_private():
        raise ValueError("a DKIM key must be an RSA private key, not a public key")
    return key


def _split(message: bytes) -> tuple[list[bytes], bytes]:
    """Header fields (each with its folded continuation lines, without the final CRLF) and the body."""
    message = re.sub(rb"\r?\n", b"\r\n", message)
    head, sep, body = message.partition(b"\r\n\r\n")
    if not sep:
        head, body = message.removesuffix(b"\r\n"), b""
    fields: list[bytes] = []
    for line in head.split(b"\r\n"):
        if line[:1] in (b" ", b"\t") and fields:
            fields[-1] += b"\r\n" + line
        elif line:
            fields.append(line)
    return fields, body


def relaxed_header(field: bytes) -> bytes:
    """RFC 6376 3.4.2: lower-case name, unfolded, runs of whitespace as one space, none around the colon."""
    name, _, value = field.partition(b":")
    value = _WSP_RUN.sub(b" ", value.replace(b"\r\n", b"")).strip(b" ")
    return name.strip(b" \t").lower() + b":" + value


def relaxed_body(body: bytes) -> bytes:
    """RFC 6376 3.4.4: trailing whitespace dropped, runs of whitespace as one space, no empty lines at the
    end, and a non-empty body ends with one CRLF."""
    lines = [_WSP_RUN.sub(b" ", line).rstrip(b" ") for line in body.split(b"\r\n")]
    while lines and lines[-1] == b"":
        lines.pop()
    return b"".join(line + b"\r\n" for line in lines)


def _chosen_fields(fields: Sequence[bytes]) -> tuple[list[str], list[bytes]]:
    """The ``h=`` names and the header fields they select, bottom-up for repeated names (RFC 6376 5.4.2)."""
    by_name: dict[bytes, list[bytes]] = {}
    for field in fields:
        by_name.setdefault(field.partition(b":")[0].strip().lower(), []).append(field)
    names: list[str] = []
    chosen: list[bytes] = []
    for name in SIGNED_HEADERS:
        present = by_name.get(name.encode("ascii"), [])
        for field in reversed(present):
            names.append(name)
            chosen.append(field)
        if name in OVERSIGNED and present:
            names.append(name)  # selects no field: signs that there is no further one
    return names, chosen


def _fold_tags(tags: Sequence[Sequence[str]]) -> str:
    """The DKIM-Signature header field folded to lines of about 76 characters. Each tag is given as the pieces it
    may be folded between: header names in ``h=`` (a fold may sit only beside a colon there), short runs
    of base64 in ``bh=`` and ``b=``, the whole tag for the others."""
    lines = ["DKIM-Signature:"]
    for pieces in tags:
        for index, piece in enumerate([*pieces[:-1], pieces[-1] + ";"]):
            gap = " " if index == 0 and lines[-1] else ""
            if lines[-1] and len(lines[-1]) + len(gap) + len(piece) > _LINE_WIDTH:
                lines.append("")
                gap = ""
            lines[-1] += gap + piece
    return "\r\n\t".join(lines).removesuffix(";")


def _base64_tag(name: str, value: str) -> list[str]:
    chunks = [value[i:i + 16] for i in range(0, len(value), 16)] or [""]
    return [f"{name}={chunks[0]}", *chunks[1:]]


def sign(message: bytes, *, domain: str, selector: str, private_key: str, timestamp: int) -> bytes:
    """``message`` (as it goes to the SMTP server, CRLF line ends, before dot-stuffing) with a
    ``DKIM-Signature`` header prepended. A body that does not end with CRLF gets one, as SMTP's DATA would add
    it anyway: verifiers then hash the same last line we did (dkimpy keeps the trailing space of an unended
    last line, RFC 6376 says to drop it)."""
    fields, body = _split(message)
    if body and not body.endswith(b"\r\n"):
        message, body = message + b"\r\n", body + b"\r\n"
    body_hash = base64.b64encode(hashlib.sha256(relaxed_body(body)).digest()).decode("ascii")
    names, chosen = _chosen_fields(fields)
    header_names = [f"{n}:" for n in names[:-1]] + names[-1:]
    tags = [[t] for t in ("v=1", "a=rsa-sha256", "c=relaxed/relaxed", f"d={domain}", f"s={selector}",
                          f"t={timestamp}")]
    tags += [["h=" + header_names[0], *header_names[1:]], _base64_tag("bh", body_hash)]
    unsigned = _fold_tags([*tags, ["b="]])
    data = b"".join(relaxed_header(f) + b"\r\n" for f in chosen) + relaxed_header(unsigned.encode("ascii"))
    from Crypto.Hash import SHA256
    from Crypto.Signature import pkcs1_15

    signature = pkcs1_15.new(_load_key(private_key)).sign(SHA256.new(data))
    header = _fold_tags([*tags, _base64_tag("b", base64.b64encode(signature).decode("ascii"))])
    return header.encode("ascii") + b"\r\n" + message
