"""One error hierarchy: every error the layer raises on purpose is a MailProxyError, named by meaning, and a
delivery error says whether trying again may help."""

from __future__ import annotations

import importlib
import inspect
import pkgutil

import pytest

import mail_proxy
from mail_proxy.errors import DeliveryError, InvalidInputError, MailProxyError
from mail_proxy.mail.addresses import AddressError, check_addr_spec
from mail_proxy.mail.mime_headers import MalformedMessageError
from mail_proxy.mail.smtp_replies import SmtpPermanentError, SmtpTemporaryError
from mail_proxy.usecases.attachments import AttachmentPermanentError, AttachmentTemporaryError


def test_every_error_class_of_the_layer_derives_from_the_one_base() -> None:
    errors = []
    for module in pkgutil.walk_packages(mail_proxy.__path__, "mail_proxy."):
        if module.name.endswith("__main__"):
            continue
        loaded = importlib.import_module(module.name)
        errors += [cls for name, cls in vars(loaded).items()
                   if inspect.isclass(cls) and issubclass(cls, BaseException) and name.endswith("Error")
                   and cls.__module__ == module.name]
    assert len(errors) >= 10
    assert [cls.__qualname__ for cls in errors if not issubclass(cls, MailProxyError)] == []


@pytest.mark.parametrize(("error", "temporary"), [
    (SmtpTemporaryError("421 try later"), True), (AttachmentTemporaryError("fetch answered 503"), True),
    (SmtpPermanentError("550 no such user"), False), (AttachmentPermanentError("fetch answered 404"), False),
    (MalformedMessageError("to: not an address"), False),
])
def test_a_delivery_error_says_whether_trying_again_may_help(error: DeliveryError, temporary: bool) -> None:
    assert isinstance(error, DeliveryError) and error.temporary is temporary


def test_an_address_error_is_invalid_input_and_keeps_its_message() -> None:
    with pytest.raises(AddressError) as raised:
        check_addr_spec("a@@example.com", field="to")
    assert isinstance(raised.value, InvalidInputError) and isinstance(raised.value, ValueError)
    assert raised.value.detail == str(raised.value) == "to: 'a@@example.com' is not a valid e-mail address"
