"""What ``/openapi.json`` says beyond the route signatures: the token scheme, the error shapes, and every status
code a route can answer.

Routes declare these through Powertools' own arguments (``summary=``, ``tags=``, ``security=``,
``responses=``), so the document, Swagger UI at ``/docs`` and the validation all come from one place.

Two error shapes reach a client. The api function answers ``{"detail": ...}`` (a sentence, or a list of field
errors for a request that fails validation); API Gateway itself answers ``{"message": ...}`` when it refuses a
request before the function runs (no token: 401; the authorizer said no: 403; over 10 MB: 413; throttled: 429).
"""

from __future__ import annotations

import os
from typing import Annotated, Any

from aws_lambda_powertools.event_handler.openapi.models import APIKey, APIKeyIn, SecurityScheme
from aws_lambda_powertools.event_handler.openapi.params import Path
from aws_lambda_powertools.event_handler.openapi.types import OpenAPIResponse
from pydantic import BaseModel, BeforeValidator, Field, GetJsonSchemaHandler, RootModel
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import CoreSchema

TOKEN_SCHEME = "ApiToken"  # noqa: S105  (the name of the scheme in the document, not a secret)
SECURITY_SCHEMES: dict[str, SecurityScheme] = {
    TOKEN_SCHEME: APIKey(  # type: ignore[call-arg]  # the field in_ is aliased "in"
        name="X-API-Token", in_=APIKeyIn.header,
        description="The admin token, or a tenant's API key (POST /tenant answers it once). Every route but "
                    "/health, /openapi.json, /docs and /files/{token} needs one."),
}
TOKEN: list[dict[str, list[str]]] = [{TOKEN_SCHEME: []}]
"""``security=`` of a route that needs the token."""

SWAGGER_UI_BASE_URL_VARIABLE = "MAIL_PROXY_SWAGGER_UI_BASE_URL"


def swagger_ui_base_url() -> str | None:
    """Where /docs loads Swagger UI's script and style from (``<base>/swagger-ui-bundle.min.js`` and
    ``<base>/swagger-ui.min.css``, the names of the files Powertools ships); unset, Powertools' default: its
    copy, embedded in the page (about 1.7 MB, and nothing to fetch from elsewhere)."""
    return os.environ.get(SWAGGER_UI_BASE_URL_VARIABLE, "").strip().rstrip("/") or None


# ------------------------------------------------------------------------------------------- error shapes


class FieldError(BaseModel):
    loc: list[str | int] = Field(description="where in the request: a body field path, or a parameter name")
    msg: str
    type: str | None = None


class ErrorDetail(BaseModel):
    """Every error the api function answers."""

    detail: str | list[FieldError] = Field(
        description="what was wrong: a sentence, or one entry per invalid field (never the submitted values)")


class GatewayError(BaseModel):
    """An error API Gateway answers before the function runs."""

    message: str = Field(examples=["Unauthorized", "Forbidden", "Too Many Requests"])


class ErrorAnswer(RootModel[ErrorDetail | GatewayError]):
    """An error from the function (``detail``) or from API Gateway in front of it (``message``)."""


_ERRORS: dict[int, tuple[str, type[BaseModel]]] = {
    400: ("The request line or headers are malformed (from API Gateway)", GatewayError),
    401: ("No X-API-Token (API Gateway), or a key that was replaced or revoked", ErrorAnswer),
    403: ("The token may not do this: an unknown token (API Gateway), an admin-only route, another tenant's "
          "data, or a tenant suspended by an administrator", ErrorAnswer),
    404: ("No such tenant, account, message or address (or not visible to this token)", ErrorDetail),
    409: ("The request contradicts the current state", ErrorDetail),
    410: ("The download link has expired", ErrorDetail),
    413: ("The request body is larger than the limit (MAX_BODY_BYTES, 5 MB by default; API Gateway: 10 MB)",
          ErrorAnswer),
    415: ("The request body is not JSON (Content-Type: application/json)", ErrorDetail),
    422: ("The request is invalid: a list of field errors, or a sentence for a rule across fields", ErrorDetail),
    429: ("Throttled, by API Gateway or by DynamoDB: retry after Retry-After seconds when given", ErrorAnswer),
}
ERROR_MODELS = (ErrorDetail, GatewayError, ErrorAnswer)

TOKEN_ERRORS = (401, 403, 429)
"""What any route behind the token can answer before it does anything."""
BODY_ERRORS = (413, 415, 422)
"""What any route with a JSON body can answer about the body."""


def answers(*codes: int, ok: int = 200, ok_description: str = "Done", ok_model: Any = None,
            ok_content: dict[str, Any] | None = None, conflict: str | None = None) -> dict[int, OpenAPIResponse]:
    """``responses=`` for a route: its success (the route's return type unless ``ok_model`` or ``ok_content``
    is given) and each error status in ``codes`` with its shape. ``conflict`` says when the route answers 409."""
    responses: dict[int, OpenAPIResponse] = {ok: {"description": ok_description}}
    if ok_model is not None:
        responses[ok]["content"] = {"application/json": {"model": ok_model}}
    if ok_content is not None:
        responses[ok]["content"] = ok_content
    for code in sorted({*codes, 422}):  # Powertools documents a 422 on every route: this one has our shape
        description, model = _ERRORS[code]
        if code == 409 and conflict:
            description = conflict
        response: OpenAPIResponse = {"description": description,
                                     "content": {"application/json": {"model": model}}}
        if code == 429:
            response["headers"] = {"Retry-After": {"description": "seconds to wait (not sent by API Gateway)",
                                                   "schema": {"type": "integer"}}}
        responses[code] = response
    return responses


# ------------------------------------------------------------------------------------------- request bodies


PRIORITY_SCHEMA: dict[str, Any] = {
    "description": "0 (immediate) to 3 (low), or the lane's name",
    "anyOf": [{"type": "integer", "minimum": 0, "maximum": 3},
              {"type": "string", "enum": ["immediate", "high", "medium", "low", "0", "1", "2", "3"]},
              {"type": "null"}],
}


PathId = Annotated[str, Path(max_length=384, json_schema_extra={"minLength": 1, "maxLength": 128})]
"""An id in the path: 1-128 characters, which arrive percent-encoded (up to 3 each); the route decodes and
checks it (``http_api.path_id``)."""


def _refuse_boolean(value: Any) -> Any:
    if isinstance(value, bool):  # pydantic would read true as 1: the document says integer, so does the API
        raise ValueError("must be a number, not true or false")
    return value


NOT_A_BOOLEAN = BeforeValidator(_refuse_boolean)


class Redirect(BaseModel):
    detail: str = "redirect"


class DescribedAs:
    """Annotates a field that the route validates itself (item by item, say) so that the document still shows
    the model it is validated against: ``Annotated[Any, DescribedAs(MessageIn)]``."""

    def __init__(self, model: type[BaseModel] | dict[str, Any], *, or_anything: bool = False) -> None:
        self.model = model
        self.or_anything = or_anything

    def __get_pydantic_json_schema__(self, _core: CoreSchema, handler: GetJsonSchemaHandler) -> JsonSchemaValue:
        if isinstance(self.model, dict):
            described = dict(self.model)
        else:
            self.model.model_rebuild()  # a model with defer_build has no core schema until first used
            described = handler(self.model.__pydantic_core_schema__)
        if not self.or_anything:
            return described
        return {"anyOf": [described, {"description": "anything else: rejected on its own, with its reason"}]}
