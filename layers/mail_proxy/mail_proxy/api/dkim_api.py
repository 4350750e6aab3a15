"""DKIM routes: a tenant's signing domains, the DNS records to publish, key rotation (docs/deliverability.md).

The tenant's own token or the admin token, like the other ``/tenant/{id}/...`` routes. No answer and no
log line ever carries a private key: the views are built from the public fields alone.
"""

from __future__ import annotations

from typing import Annotated

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.event_handler.openapi.params import Body, Path
from aws_lambda_powertools.event_handler.router import APIGatewayHttpRouter
from pydantic import BaseModel, ConfigDict, Field

from mail_proxy.api.api_docs import BODY_ERRORS, TOKEN, TOKEN_ERRORS, answers
from mail_proxy.api.services import principal, services
from mail_proxy.usecases.dkim_keys import DkimDomains

router = APIGatewayHttpRouter()
TAGS = ["DKIM"]

TenantPath = Annotated[str, Path(max_length=64)]
DomainPath = Annotated[str, Path(max_length=253)]
SelectorPath = Annotated[str, Path(max_length=63)]


class DkimRegistration(BaseModel):
    model_config = ConfigDict(extra="forbid")
    domain: str = Field(min_length=1, max_length=253, description="the From domain to sign, e.g. example.com")
    selector: str | None = Field(default=None, min_length=1, max_length=63,
                                 description="DNS selector; a dated one (mp<yyyymmdd><hex>) when omitted")


class DkimRotation(BaseModel):
    model_config = ConfigDict(extra="forbid")
    selector: str | None = Field(default=None, min_length=1, max_length=63)
    activate: bool = Field(default=True, description="sign with the new key at once; false: only once "
                                                     "activated, after its DNS record is published")


class DkimSelectorView(BaseModel):
    selector: str
    signing: bool = Field(description="this key signs the domain's mail")
    created_at: str | None = None
    dns_name: str = Field(description="publish a TXT record under this name")
    dns_type: str = "TXT"
    dns_value: str = Field(description="the TXT record's text: v=DKIM1; k=rsa; p=<public key>")


class DkimDomainView(BaseModel):
    ok: bool = True
    domain: str
    signing_selector: str | None = None
    selectors: list[DkimSelectorView]


class DkimDomainList(BaseModel):
    ok: bool = True
    domains: list[DkimDomainView]


def _desk() -> DkimDomains:
    return DkimDomains(services().repo)


@router.get("/tenant/<tenant_id>/dkim", tags=TAGS, summary="The tenant's DKIM signing domains and DNS records",
            security=TOKEN, responses=answers(*TOKEN_ERRORS, 404, ok_description="the domains"))
def list_dkim_domains(tenant_id: TenantPath) -> DkimDomainList:
    found = _desk().list_domains(principal(), tenant_id)
    return DkimDomainList(domains=[DkimDomainView(**d) for d in found])


@router.post("/tenant/<tenant_id>/dkim", tags=TAGS, status_code=201,
             summary="Register a signing domain: a new RSA-2048 key, and the TXT record to publish",
             security=TOKEN, responses=answers(*TOKEN_ERRORS, *BODY_ERRORS, 404, 409, ok=201,
                                               ok_description="registered",
                                               conflict="already registered, or too many keys"))
def register_dkim_domain(tenant_id: TenantPath, request: DkimRegistration) -> Response[DkimDomainView]:
    view = _desk().register(principal(), tenant_id, request.domain, request.selector)
    return Response(status_code=201, content_type="application/json", body=DkimDomainView(**view))


@router.get("/tenant/<tenant_id>/dkim/<domain>", tags=TAGS, summary="One signing domain and its selectors",
            security=TOKEN, responses=answers(*TOKEN_ERRORS, 404, ok_description="the domain"))
def get_dkim_domain(tenant_id: TenantPath, domain: DomainPath) -> DkimDomainView:
    return DkimDomainView(**_desk().get(principal(), tenant_id, domain))


@router.delete("/tenant/<tenant_id>/dkim/<domain>", tags=TAGS,
               summary="Stop signing a domain and forget all its keys",
               security=TOKEN, responses=answers(*TOKEN_ERRORS, 404, ok_description="removed"))
def remove_dkim_domain(tenant_id: TenantPath, domain: DomainPath) -> dict[str, bool]:
    _desk().remove_domain(principal(), tenant_id, domain)
    return {"ok": True}


@router.post("/tenant/<tenant_id>/dkim/<domain>/rotate", tags=TAGS,
             summary="A new key under a new selector; the old selectors stay listed until removed",
             security=TOKEN, responses=answers(*TOKEN_ERRORS, *BODY_ERRORS, 404, 409,
                                               ok_description="the domain with its new selector",
                                               conflict="selector in use, or too many keys"))
def rotate_dkim_key(tenant_id: TenantPath, domain: DomainPath,
                    request: Annotated[DkimRotation | None, Body()] = None) -> DkimDomainView:
    rotation = request or DkimRotation()
    return DkimDomainView(**_desk().rotate(principal(), tenant_id, domain, rotation.selector,
                                           rotation.activate))


@router.post("/tenant/<tenant_id>/dkim/<domain>/selectors/<selector>/activate", tags=TAGS,
             summary="Sign the domain's mail with this selector's key from now on",
             security=TOKEN, responses=answers(*TOKEN_ERRORS, 404, ok_description="the domain"))
def activate_dkim_selector(tenant_id: TenantPath, domain: DomainPath, selector: SelectorPath) -> DkimDomainView:
    return DkimDomainView(**_desk().activate(principal(), tenant_id, domain, selector))


@router.delete("/tenant/<tenant_id>/dkim/<domain>/selectors/<selector>", tags=TAGS,
               summary="Remove a retired selector (its DNS record may then be deleted)",
               security=TOKEN, responses=answers(*TOKEN_ERRORS, 404, 409, ok_description="the domain",
                                                 conflict="the selector still signs"))
def remove_dkim_selector(tenant_id: TenantPath, domain: DomainPath, selector: SelectorPath) -> DkimDomainView:
    return DkimDomainView(**_desk().remove_selector(principal(), tenant_id, domain, selector))
