"""The management API's resolver: the routes of the HTTP contract (docs/design.md), gathered from one router a
resource, validated by Powertools and pydantic, with the OpenAPI document at ``/openapi.json`` and Swagger UI at
``/docs``.

Where the parts are: request bodies (``request_body``), errors to HTTP answers (``error_mapping``), what the
routes use (``services``, installed by ``mail_proxy.wiring``), and the routes by resource (``service_api``,
``tenants_api``, ``accounts_api``, ``messages_api``, ``suppressions_api``, ``dkim_api``, ``unsubscribe_api``, and
genro-mail-proxy's ``compat_api`` and ``compat_messages_api``).
"""

from __future__ import annotations

import json
from typing import Any

from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, Response

from mail_proxy.api import (
    accounts_api,
    compat_api,
    compat_messages_api,
    dkim_api,
    messages_api,
    service_api,
    suppressions_api,
    tenants_api,
    unsubscribe_api,
)
from mail_proxy.api.api_docs import SECURITY_SCHEMES, swagger_ui_base_url
from mail_proxy.api.error_mapping import install_error_handlers
from mail_proxy.api.idempotency import reset_idempotency
from mail_proxy.api.request_body import body_size_guard, json_body
from mail_proxy.api.services import services
from mail_proxy.usecases.authorization import forget_tenant_keys

API_TITLE = "Mail proxy"
API_VERSION = "1.0.0"

app = APIGatewayHttpResolver(enable_validation=True, json_body_deserializer=json_body)
app.configure_openapi(title=API_TITLE, version=API_VERSION, security_schemes=SECURITY_SCHEMES)
install_error_handlers(app)
app.use(middlewares=[body_size_guard])


@app.get("/openapi.json", include_in_schema=False)
def openapi() -> dict[str, Any]:
    return dict(json.loads(app.get_openapi_json_schema(title=API_TITLE, version=API_VERSION)))


for _resource in (service_api, tenants_api, accounts_api, messages_api, suppressions_api, compat_api,
                  compat_messages_api, dkim_api, unsubscribe_api):
    app.include_router(_resource.router)

# genro-mail-proxy serves Swagger UI at /docs and ReDoc at /redoc: here /docs is Swagger UI (the document
# and Swagger UI's assets embedded, as Powertools ships them) and /redoc leads there; both public, like /openapi.json
# (MAIL_PROXY_SWAGGER_UI_BASE_URL serves Swagger UI's assets from elsewhere: a mirror, or a CDN to keep the page small)
app.enable_swagger(path="/docs", title=API_TITLE, version=API_VERSION, swagger_base_url=swagger_ui_base_url())


@app.get("/redoc", include_in_schema=False)
def redoc() -> Response[Any]:
    return Response(status_code=302, content_type="application/json", body={"detail": "see /docs"},
                    headers={"Location": "/docs"})


def reset_services() -> None:
    """Forget what the API built and remembered, as a new container would."""
    services.cache_clear()
    unsubscribe_api.reset_unsubscribes()
    reset_idempotency()
    forget_tenant_keys()
