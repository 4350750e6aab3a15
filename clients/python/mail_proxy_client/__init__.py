"""Client of the serverless mail proxy: ``MailProxyClient``, its errors, and (in submodules) the
``mail-proxy`` command line (``cli``) and a Django e-mail backend (``django``)."""

__version__ = "0.1.0"

from mail_proxy_client.client import MailProxyClient, RetryPolicy
from mail_proxy_client.errors import (
    Conflict,
    ConnectionFailed,
    Forbidden,
    MailProxyError,
    NotFound,
    PayloadTooLarge,
    ServerError,
    Throttled,
    Unauthorized,
    ValidationFailed,
)

__all__ = [
    "Conflict",
    "ConnectionFailed",
    "Forbidden",
    "MailProxyClient",
    "MailProxyError",
    "NotFound",
    "PayloadTooLarge",
    "RetryPolicy",
    "ServerError",
    "Throttled",
    "Unauthorized",
    "ValidationFailed",
    "__version__",
]
