"""A Django e-mail backend that hands messages to the mail proxy instead of an SMTP server.

    EMAIL_BACKEND = "mail_proxy_client.django.EmailBackend"
    MAIL_PROXY_URL = "https://mail.example.com"
    MAIL_PROXY_TOKEN = os.environ["MAIL_PROXY_TOKEN"]  # the tenant's API key (import os)
    MAIL_PROXY_ACCOUNT = "main"                    # the SMTP account registered with the proxy
    MAIL_PROXY_TENANT = None                       # only with the admin token
    MAIL_PROXY_PRIORITY = None                     # 0-3 or immediate/high/medium/low; default medium

``send_messages`` submits the messages in calls of at most 1,000, each with an Idempotency-Key (so the
client's retries cannot queue a message twice), and returns how many the proxy queued. The proxy sends
them asynchronously: "queued" is not "delivered" (see the message's status, or the delivery reports).
Unless ``fail_silently``, an error answer raises its ``MailProxyError`` and a rejected message raises
``MessagesRejected`` once every call was made (the valid messages are queued all the same).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.core.mail.backends.base import BaseEmailBackend

from mail_proxy_client.client import DEFAULT_RETRIES, DEFAULT_TIMEOUT_SECONDS, MailProxyClient
from mail_proxy_client.composing import message_from_django
from mail_proxy_client.errors import MailProxyError, MessagesRejected

log = logging.getLogger(__name__)
MAX_MESSAGES_PER_CALL = 1000


class EmailBackend(BaseEmailBackend):  # type: ignore[misc, unused-ignore]  # Django ships no type hints
    def __init__(self, fail_silently: bool = False, *, url: str | None = None, token: str | None = None,
                 account: str | None = None, tenant: str | None = None, priority: int | str | None = None,
                 timeout: float | None = None, retries: int | None = None, **kwargs: Any) -> None:
        super().__init__(fail_silently=fail_silently, **kwargs)
        self.url = url or getattr(settings, "MAIL_PROXY_URL", None)
        self.token = token or getattr(settings, "MAIL_PROXY_TOKEN", None)
        self.account = account or getattr(settings, "MAIL_PROXY_ACCOUNT", None)
        self.tenant = tenant or getattr(settings, "MAIL_PROXY_TENANT", None)
        self.priority = priority if priority is not None else getattr(settings, "MAIL_PROXY_PRIORITY", None)
        missing = [name for name, value in (("MAIL_PROXY_URL", self.url), ("MAIL_PROXY_TOKEN", self.token),
                                            ("MAIL_PROXY_ACCOUNT", self.account)) if not value]
        if missing:
            raise ImproperlyConfigured(f"the mail proxy e-mail backend needs {', '.join(missing)} in settings")
        self.client = MailProxyClient(str(self.url), str(self.token), timeout=timeout or DEFAULT_TIMEOUT_SECONDS,
                                      retries=DEFAULT_RETRIES if retries is None else retries)

    def send_messages(self, email_messages: Sequence[Any]) -> int:
        payloads = []
        for email_message in email_messages or []:
            if not email_message.recipients():
                continue  # as Django's SMTP backend: a message without recipients is not sent
            composed = message_from_django(email_message, account_id=str(self.account), priority=self.priority)
            for warning in composed.warnings:
                log.warning("mail proxy message %s: %s", composed.message["id"], warning)
            payloads.append(composed.message)
        queued, rejected = 0, []
        for start in range(0, len(payloads), MAX_MESSAGES_PER_CALL):
            try:
                answer = self.client.add_messages(payloads[start:start + MAX_MESSAGES_PER_CALL],
                                                  tenant_id=self.tenant)
            except MailProxyError:
                if self.fail_silently:
                    log.exception("mail proxy: add-messages failed; %d message(s) not queued",
                                  len(payloads) - start)
                    return queued
                raise
            queued += answer["queued"]
            rejected.extend(answer["rejected"])
        if rejected:
            if not self.fail_silently:
                raise MessagesRejected([dict(r) for r in rejected], queued)
            log.warning("mail proxy: %d message(s) rejected: %s", len(rejected), rejected)
        return queued
