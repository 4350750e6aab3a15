"""``/unsubscribe/<token>``: the public one-click unsubscribe routes (no X-API-Token; the signed token is
the credential, as for ``/files/<token>``).

- ``POST`` with the form field ``List-Unsubscribe=One-Click`` (RFC 8058; what mailbox providers send, and
  what the confirmation page's button sends) unsubscribes and answers 200 with a small page.
- ``GET`` answers a confirmation page with that button and never unsubscribes: link scanners follow links.
- A forged or malformed token is 404, an expired one 410, a POST without the field 400, each a small page.

Pages are HTML (a person reads them), never cached or indexed, and send no referrer (the URL is a credential).
"""

from __future__ import annotations

import base64
import html
from email.parser import BytesParser
from email.policy import HTTP
from functools import lru_cache
from typing import TYPE_CHECKING, Annotated
from urllib.parse import parse_qs

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.event_handler.openapi.params import Path
from aws_lambda_powertools.event_handler.openapi.types import OpenAPIResponse
from aws_lambda_powertools.event_handler.router import APIGatewayHttpRouter

from mail_proxy.api.api_docs import answers
from mail_proxy.errors import NotFoundError

if TYPE_CHECKING:
    from mail_proxy.usecases.unsubscribe import OneClickUnsubscribe
    from mail_proxy.usecases.unsubscribe_links import UnsubscribeLink

router = APIGatewayHttpRouter()
TAGS = ["Unsubscribe"]

# the use case is imported on first use: it brings the MIME and returned-mail modules, which the api's
# cold start should not pay for
TokenPath = Annotated[str, Path(max_length=2048)]
_HEADERS = {"Cache-Control": "no-store", "X-Robots-Tag": "noindex", "Referrer-Policy": "no-referrer",
            "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'"}
_STYLE = "body{font-family:sans-serif;max-width:32em;margin:4em auto;padding:0 1em}button{font-size:1em}"


def _page(status: int, title: str, text: str, form: bool = False) -> Response[str]:
    button = ('<form method="post"><input type="hidden" name="List-Unsubscribe" value="One-Click">'
              '<button type="submit">Unsubscribe</button></form>') if form else ""
    body = (f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
            f'<meta name="viewport" content="width=device-width"><style>{_STYLE}</style></head>'
            f"<body><h1>{html.escape(title)}</h1><p>{html.escape(text)}</p>{button}</body></html>")
    return Response(status_code=status, content_type="text/html; charset=utf-8", body=body, headers=_HEADERS)


def _html(description: str) -> OpenAPIResponse:
    return {"description": description, "content": {"text/html": {"schema": {"type": "string"}}}}


_RESPONSES: dict[int, OpenAPIResponse] = {
    **{code: answer for code, answer in answers(429).items() if code != 200},  # throttled; 422: not a token
    404: _html("the link is not valid (forged, malformed, or its tenant is gone)"),
    410: _html("the link has expired"),
}


@lru_cache(maxsize=1)
def _unsubscribes() -> OneClickUnsubscribe:
    from mail_proxy.api.services import services
    from mail_proxy.usecases.unsubscribe import OneClickUnsubscribe

    return OneClickUnsubscribe(services().repo, services().suppressions)


def reset_unsubscribes() -> None:
    _unsubscribes.cache_clear()


def _read(token: str) -> UnsubscribeLink | Response[str]:
    from mail_proxy.usecases.unsubscribe import UnsubscribeLinkExpired

    try:
        return _unsubscribes().read(token)
    except UnsubscribeLinkExpired:
        return _page(410, "Link expired", "This unsubscribe link has expired. Use a link from a more recent "
                                          "message, or reply to the sender.")
    except NotFoundError:
        return _page(404, "Link not valid", "This unsubscribe link is not valid. Check that it was copied whole.")


def _whom(link: UnsubscribeLink) -> str:
    return link.address + (f" (list {link.list_id})" if link.list_id is not None else "")


def one_click_requested(content_type: str, body: bytes) -> bool:
    """Whether a POST body carries ``List-Unsubscribe=One-Click``, URL-encoded or as multipart/form-data
    (RFC 8058 allows both)."""
    if content_type.lower().startswith("multipart/form-data"):
        form = BytesParser(policy=HTTP).parsebytes(b"Content-Type: " + content_type.encode("latin-1", "replace")
                                                   + b"\r\n\r\n" + body)
        for part in form.iter_parts():
            if part.get_param("name", header="content-disposition") == "List-Unsubscribe":
                payload = part.get_payload(decode=True)
                return isinstance(payload, bytes) and payload.strip() == b"One-Click"
        return False
    fields = parse_qs(body.decode("utf-8", "replace"), keep_blank_values=True)
    return "One-Click" in fields.get("List-Unsubscribe", [])


@router.get("/unsubscribe/<token>", tags=TAGS, summary="Confirmation page of a one-click unsubscribe link (public; "
            "changes nothing)", responses={200: _html("the page, with a button that POSTs the unsubscribe"),
                                           **_RESPONSES})
def unsubscribe_page(token: TokenPath) -> Response[str]:
    link = _read(token)
    if isinstance(link, Response):
        return link
    return _page(200, "Unsubscribe", f"Stop these messages to {_whom(link)}?", form=True)


@router.post("/unsubscribe/<token>", tags=TAGS,
             summary="One-click unsubscribe (RFC 8058; public): form body List-Unsubscribe=One-Click",
             responses={200: _html("unsubscribed (also when it already was)"),
                        400: _html("the body lacks List-Unsubscribe=One-Click"), **_RESPONSES})
def unsubscribe(token: TokenPath) -> Response[str]:
    link = _read(token)
    if isinstance(link, Response):
        return link
    event = router.current_event
    raw = event.body or ""
    body = base64.b64decode(raw) if event.is_base64_encoded else raw.encode("utf-8")
    if not one_click_requested(event.headers.get("content-type") or "", body):
        return _page(400, "Not unsubscribed", "The request did not ask to unsubscribe "
                                              "(List-Unsubscribe=One-Click). Use the button on the link's page.")
    _unsubscribes().unsubscribe(link)
    return _page(200, "Unsubscribed", f"{_whom(link)} will not receive these messages any more.")
