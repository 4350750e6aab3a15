"""``Idempotency-Key`` on add-messages: a repeated call gets the first answer (Powertools idempotency, keyed by
the caller's scope and the key, checked against the request's canonical hash)."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from functools import lru_cache
from typing import Any

from aws_lambda_powertools.event_handler.api_gateway import BaseRouter
from pydantic import BaseModel

from mail_proxy.adapters.observability import logger
from mail_proxy.domain.principal import Principal
from mail_proxy.errors import ConfigurationError, ConflictError, ThrottledError
from mail_proxy.settings import ApiSettings, get_settings

IDEMPOTENCY_TTL_SECONDS = 24 * 3600


@lru_cache(maxsize=1)
def _idempotent_add_messages() -> Any:
    """Powertools idempotency around add-messages, keyed by tenant + Idempotency-Key, built lazily."""
    from aws_lambda_powertools.utilities.idempotency import (
        DynamoDBPersistenceLayer,
        IdempotencyConfig,
        idempotent_function,
    )

    table = get_settings(ApiSettings).idempotency_table_name
    if not table:
        raise ConfigurationError("IDEMPOTENCY_TABLE_NAME is not set; Idempotency-Key cannot be honoured")
    config = IdempotencyConfig(
        event_key_jmespath="[scope, key]",
        payload_validation_jmespath="body_hash",
        raise_on_no_idempotency_key=True,
        expires_after_seconds=IDEMPOTENCY_TTL_SECONDS,
        response_hook=lambda response, _record: {**response, "_replayed": True},
    )
    persistence = DynamoDBPersistenceLayer(table_name=table, key_attr="id")

    def run(request: dict[str, Any], submit: Any) -> dict[str, Any]:
        return dict(submit())

    return config, idempotent_function(data_keyword_argument="request", config=config,
                                       persistence_store=persistence)(run), persistence


def reset_idempotency() -> None:
    _idempotent_add_messages.cache_clear()


def canonical_body_hash(request: BaseModel) -> str:
    """The hash a request is recognised by: of its parsed JSON with sorted keys, so key order and spacing
    do not make the same request a different one (list order does: it is the order of the messages)."""
    canonical = json.dumps(request.model_dump(mode="json"), sort_keys=True, separators=(",", ":"),
                           ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()


def run_idempotent(who: Principal, tenant_id: str | None, key: str, request: BaseModel,
                   submit: Callable[[], dict[str, Any]]) -> tuple[dict[str, Any], bool]:
    """The first answer for this key, or a new one; and whether it is a replay.

    A submission that fails leaves nothing remembered (Powertools deletes the in-progress record), and the
    client's retry runs it again: the messages it stored are recognised by their content hash (see
    submission.py), so the retry gets the answer the first call should have given. When only remembering
    the answer fails, the answer is still given (the submission is done) and the key is released.
    """
    from aws_lambda_powertools.utilities.idempotency.exceptions import (
        IdempotencyAlreadyInProgressError,
        IdempotencyPersistenceLayerError,
        IdempotencyValidationError,
    )

    config, run, persistence = _idempotent_add_messages()
    if BaseRouter.lambda_context is not None:
        config.register_lambda_context(BaseRouter.lambda_context)
    scope = f"tenant:{who.tenant_id}" if not who.is_admin else f"admin:{tenant_id or '*'}"
    data = {"scope": scope, "key": key, "body_hash": canonical_body_hash(request)}
    done: list[dict[str, Any]] = []

    def submit_once() -> dict[str, Any]:
        done.append(dict(submit()))
        return done[-1]

    try:
        answer = run(request=data, submit=submit_once)
    except IdempotencyValidationError as exc:
        raise ConflictError("Idempotency-Key was already used with a different request body") from exc
    except IdempotencyAlreadyInProgressError as exc:
        raise ThrottledError("a request with this Idempotency-Key is still in progress; retry shortly",
                             retry_after=2) from exc
    except IdempotencyPersistenceLayerError as exc:
        if not done:
            raise
        logger.exception("idempotency record not saved; the key is released", extra={"scope": scope})
        _forget_idempotency_key(persistence, data, exc)
        return done[-1], False
    replayed = bool(answer.pop("_replayed", False))
    return answer, replayed


def _forget_idempotency_key(persistence: Any, data: dict[str, Any], cause: Exception) -> None:
    """Drop the in-progress record of a done submission whose answer could not be saved, so a retry runs
    again (and is recognised by content) instead of waiting for the in-progress record to time out."""
    try:
        persistence.delete_record(data=data, exception=cause)
    except Exception:  # the record then times out with the function (in-progress expiry)
        logger.exception("idempotency record could not be released")
