"""SMTP account routes: create or replace, list, read and delete a tenant's accounts (passwords never answered)."""

from __future__ import annotations

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.event_handler.router import APIGatewayHttpRouter

from mail_proxy.api.api_docs import BODY_ERRORS, TOKEN, TOKEN_ERRORS, PathId, answers
from mail_proxy.api.schemas import ACCOUNTS, Ok, TenantIdQuery, created, path_id
from mail_proxy.api.services import principal, services
from mail_proxy.domain.account_models import AccountCreate, AccountView

router = APIGatewayHttpRouter()


class AccountList(Ok):
    accounts: list[AccountView]


@router.post("/account", status_code=201, summary="Create or replace an SMTP account of the tenant", tags=ACCOUNTS,
             security=TOKEN, responses=answers(*TOKEN_ERRORS, *BODY_ERRORS, 404,
                                               ok=201, ok_description="Created or replaced"))
def put_account(request: AccountCreate) -> Response[Ok]:
    services().accounts.put(principal(), request)
    return created(Ok())


@router.get("/accounts", summary="The tenant's SMTP accounts (passwords omitted)", tags=ACCOUNTS, security=TOKEN,
            responses=answers(*TOKEN_ERRORS, 404, 422))
def list_accounts(tenant_id: TenantIdQuery = None) -> AccountList:
    return AccountList(accounts=services().accounts.list_accounts(principal(), tenant_id))


@router.get("/account/<account_id>", summary="One SMTP account (password omitted); percent-encode the id",
            tags=ACCOUNTS, security=TOKEN, responses=answers(*TOKEN_ERRORS, 404, 422))
def get_account(account_id: PathId, tenant_id: TenantIdQuery = None) -> AccountView:
    return services().accounts.get(principal(), path_id(account_id, "account_id"), tenant_id)


@router.delete("/account/<account_id>", summary="Delete an SMTP account", tags=ACCOUNTS, security=TOKEN,
               responses=answers(*TOKEN_ERRORS, 404, 422))
def delete_account(account_id: PathId, tenant_id: TenantIdQuery = None) -> Ok:
    services().accounts.delete(principal(), path_id(account_id, "account_id"), tenant_id)
    return Ok()
