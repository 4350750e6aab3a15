"""Polling the mailboxes where mail comes back: each tenant's bounce mailbox and each PEC account's.

A tenant's bounce mailbox receives bounces and complaints (ARF feedback reports, when the tenant registers
its bounce address with the providers' feedback loops); a mail that is a feedback report is a complaint.

For every mailbox the table keeps (UIDVALIDITY, last UID processed). A poll reads the messages above that
UID in order and moves the position after each one, so a restart resumes exactly after the last message
handled; a changed UIDVALIDITY starts the folder over, which is safe because a returned mail is applied
to a message at most once (``delivery_feedback``). A message that cannot be applied yet (it is being
sent) stops that mailbox's poll where it is, to be read again next time.

Anyone can write to these mailboxes, so one mail never stops one: a mail the parsers refuse (MIME nested too
deep, too many parts, undecodable) is logged without its content, counted in ``MailboxMessagesSkipped`` and
stepped over at once; a mail whose handling fails otherwise (fetch, or an unexpected error) fails that
mailbox's poll and is tried again at the next one, and after ``MAX_MAIL_ATTEMPTS`` polls failing on the same
UID it is stepped over the same way. The position always moves on.

Mailboxes are polled in parallel, each on its own: one that fails (refused, TLS, login, timeout, or an
unexpected error) is logged with its tenant, counted in the ``MailboxPollFailed`` metric (which has an
alarm), and never holds up another. Each socket operation times out well inside the function's time, a
session ends ``session_margin_ms`` before the function would (however slowly its server answers), and no
poll starts a message when less than ``stop_margin_ms`` is left. Mailbox hosts go through the address
guard (``address_policy``: public addresses, the administrator's relay networks, loopback only locally).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager
from dataclasses import dataclass, field, fields

from aws_lambda_powertools.metrics import MetricUnit

from mail_proxy.adapters.dynamodb import MailRepository
from mail_proxy.adapters.observability import logger, metrics
from mail_proxy.adapters.secrets_config import decrypt
from mail_proxy.domain.entities import Tenant
from mail_proxy.mail.bounce_parser import parse_bounce
from mail_proxy.mail.complaint_parser import parse_complaint
from mail_proxy.mail.imap_mailbox import ImapMailbox, ImapTls, MailboxSettings, MailboxUnavailable
from mail_proxy.mail.inbound_mail import UnreadableMail
from mail_proxy.mail.pec_parser import parse_pec_receipt
from mail_proxy.security.address_guard import AddressPolicy
from mail_proxy.usecases.accounts import imap_password_context, password_context
from mail_proxy.usecases.delivery_feedback import Applied, DeliveryFeedback, receipt_key
from mail_proxy.usecases.suppressions import SuppressionList
from mail_proxy.usecases.tenants import bounce_imap_context

BOUNCE_MAILBOX = "bounce"
MAX_MESSAGES_PER_POLL = 200
MAX_MAIL_ATTEMPTS = 3
# what a parser could raise on mail that defeats it (UnreadableMail is a ValueError): skipped, never retried
_UNREADABLE = (ValueError, LookupError, TypeError, AttributeError, UnicodeError, RecursionError)


@dataclass(frozen=True)
class PollConfig:
    imap_timeout: float = 10.0
    ca_file: str | None = None
    verify_tls: bool = True
    pec_acceptance_timeout: int = 1800
    suppression_days: int = 365
    max_messages: int = MAX_MESSAGES_PER_POLL
    stop_margin_ms: int = 40_000  # room for connect, login and select (10 s each) before the function times out
    session_margin_ms: int = 5_000  # a session ends this long before the function would, whatever the server does
    workers: int = 4
    address_policy: AddressPolicy = field(default_factory=AddressPolicy)


@dataclass
class PollReport:
    mailboxes: int = 0
    failed: int = 0
    messages: int = 0
    applied: int = 0
    ignored: int = 0
    pec_timeouts: int = 0
    skipped: int = 0

    def add(self, other: PollReport) -> None:
        for f in fields(self):
            setattr(self, f.name, getattr(self, f.name) + getattr(other, f.name))


@dataclass(frozen=True)
class _Mailbox:
    tenant_id: str
    name: str  # "bounce" or "pec#<account id>"
    settings: MailboxSettings = field(repr=False)
    handle: Callable[[bytes, str], Applied] = field(repr=False)


MailboxOpener = Callable[..., AbstractContextManager[ImapMailbox]]  # (settings, *, deadline)


class MailboxPoller:
    def __init__(self, repo: MailRepository, config: PollConfig, open_mailbox: MailboxOpener = ImapMailbox) -> None:
        self.repo = repo
        self.config = config
        self.open_mailbox = open_mailbox
        self.feedback = DeliveryFeedback(repo, SuppressionList(repo, days=config.suppression_days))

    def run(self, tenants: Iterable[Tenant], remaining_ms: Callable[[], int]) -> PollReport:
        report = PollReport()
        tenant_list = list(tenants)
        if not tenant_list:
            return report
        with ThreadPoolExecutor(max_workers=max(1, min(self.config.workers, len(tenant_list)))) as pool:
            for partial in pool.map(lambda t: self.poll_tenant(t, remaining_ms), tenant_list):
                report.add(partial)
        return report

    def poll_tenant(self, tenant: Tenant, remaining_ms: Callable[[], int]) -> PollReport:
        report = PollReport()
        tenant_id = tenant.tenant_id
        try:
            mailboxes, has_pec = self._mailboxes(tenant)
        except Exception:  # one tenant's broken configuration must not stop the others
            logger.exception("cannot read the tenant's mailbox configuration", extra={"tenant_id": tenant_id})
            metrics.add_metric(name="MailboxPollFailed", unit=MetricUnit.Count, value=1)
            report.failed += 1
            return report
        for mailbox in mailboxes:
            if remaining_ms() < self.config.stop_margin_ms:
                break
            report.add(self._poll(mailbox, remaining_ms))
        if has_pec:
            try:
                report.pec_timeouts += self.feedback.expire_pec_acceptance(tenant_id,
                                                                           self.config.pec_acceptance_timeout)
            except Exception:  # logged and counted; the next poll tries again
                logger.exception("PEC acceptance timeouts not checked", extra={"tenant_id": tenant_id})
        if report.pec_timeouts:
            metrics.add_metric(name="PecTimeouts", unit=MetricUnit.Count, value=report.pec_timeouts)
        return report

    # ------------------------------------------------------------------------------------- mailboxes

    def _mailboxes(self, tenant: Tenant) -> tuple[list[_Mailbox], bool]:
        tenant_id = tenant.tenant_id
        found: list[_Mailbox] = []
        bounce = tenant.bounce_imap
        if bounce and bounce.get("host"):
            password = decrypt(bounce["password"], context=bounce_imap_context(tenant_id)) \
                if bounce.get("password") else ""
            found.append(_Mailbox(tenant_id, BOUNCE_MAILBOX, self._settings(bounce["host"], bounce.get("port", 993),
                                                                            bounce["user"], password,
                                                                            bounce.get("folder"), bounce.get("tls")),
                                  lambda raw, key: self._bounce(tenant_id, raw, key)))
        has_pec = False
        for account in self.repo.list_accounts(tenant_id):
            if not account.is_pec:
                continue
            has_pec = True
            if not account.imap_host:
                continue
            account_id = account.id
            if account.imap_password:
                password = decrypt(account.imap_password, context=imap_password_context(tenant_id, account_id))
            elif account.password:
                password = decrypt(account.password, context=password_context(tenant_id, account_id))
            else:
                password = ""
            settings = self._settings(account.imap_host, account.imap_port if account.imap_port is not None else 993,
                                      account.imap_user or account.user or "", password,
                                      account.imap_folder, account.imap_tls)
            found.append(_Mailbox(tenant_id, f"pec#{account_id}", settings, self._pec_handler(tenant_id, account_id)))
        return found, has_pec

    def _settings(self, host: str, port: int, user: str, password: str, folder: str | None,
                  tls: str | None) -> MailboxSettings:
        mode: ImapTls = "starttls" if tls == "starttls" else "none" if tls == "none" else "ssl"
        return MailboxSettings(host=host, port=int(port), user=user, password=password, folder=folder or "INBOX",
                               tls=mode, timeout=self.config.imap_timeout, ca_file=self.config.ca_file,
                               verify_tls=self.config.verify_tls, address_policy=self.config.address_policy)

    def _poll(self, mailbox: _Mailbox, remaining_ms: Callable[[], int]) -> PollReport:
        report = PollReport(mailboxes=1)
        where = {"tenant_id": mailbox.tenant_id, "mailbox": mailbox.name}
        try:
            deadline = time.monotonic() + (remaining_ms() - self.config.session_margin_ms) / 1000
            with self.open_mailbox(mailbox.settings, deadline=deadline) as box:
                self._read(mailbox, box, report, remaining_ms)
        except MailboxUnavailable as exc:
            logger.warning("mailbox poll failed", extra={**where, "reason": exc.reason})
            metrics.add_metric(name="MailboxPollFailed", unit=MetricUnit.Count, value=1)
            report.failed += 1
        except Exception:  # logged with context and counted; other mailboxes go on
            logger.exception("mailbox poll failed unexpectedly", extra=where)
            metrics.add_metric(name="MailboxPollFailed", unit=MetricUnit.Count, value=1)
            report.failed += 1
        return report

    def _read(self, mailbox: _Mailbox, box: ImapMailbox, report: PollReport, remaining_ms: Callable[[], int]) -> None:
        tenant_id, name = mailbox.tenant_id, mailbox.name
        position = self.repo.get_mailbox_position(tenant_id, name)
        last_uid = 0
        if position is not None and position[0] == box.uidvalidity:
            last_uid = position[1]
        elif position is not None:
            logger.warning("mailbox UIDVALIDITY changed; reading the folder again from the start",
                           extra={"tenant_id": tenant_id, "mailbox": name, "old_uidvalidity": position[0],
                                  "uidvalidity": box.uidvalidity})
        if position is None or position[0] != box.uidvalidity:
            self.repo.save_mailbox_position(tenant_id, name, box.uidvalidity, 0)
        for uid in box.uids_after(last_uid)[: self.config.max_messages]:
            if remaining_ms() < self.config.stop_margin_ms:
                return
            where = {"tenant_id": tenant_id, "mailbox": name, "uid": uid}
            try:
                raw = box.fetch(uid)
                outcome = mailbox.handle(raw, receipt_key(raw)) if raw is not None else None
            except UnreadableMail as exc:  # the same at every try: stepped over at once
                logger.warning("unreadable returned mail skipped", extra={**where, "reason": str(exc)})
                metrics.add_metric(name="MailboxMessagesSkipped", unit=MetricUnit.Count, value=1)
                report.skipped += 1
            except Exception as exc:
                if not self._gives_up(mailbox, box.uidvalidity, uid):
                    raise  # this poll fails (logged, counted); the next one tries the same mail again
                logger.error("returned mail skipped: it failed every try",
                             extra={**where, "tries": MAX_MAIL_ATTEMPTS, "error": type(exc).__name__})
                metrics.add_metric(name="MailboxMessagesSkipped", unit=MetricUnit.Count, value=1)
                report.skipped += 1
            else:
                if outcome is Applied.BUSY:
                    logger.info("returned mail waits for a message being sent; next poll", extra=where)
                    return
                if outcome is not None:
                    report.messages += 1
                    report.applied += outcome is Applied.APPLIED
                    report.ignored += outcome is Applied.IGNORED
            self.repo.save_mailbox_position(tenant_id, name, box.uidvalidity, uid)

    def _gives_up(self, mailbox: _Mailbox, uidvalidity: int, uid: int) -> bool:
        """Count one more failed try on this mail (kept with the mailbox position); True at the last one."""
        tries = self.repo.count_mailbox_failure(mailbox.tenant_id, mailbox.name, uidvalidity, uid)
        return tries >= MAX_MAIL_ATTEMPTS

    # ------------------------------------------------------------------------------------- handlers

    def _bounce(self, tenant_id: str, raw: bytes, key: str) -> Applied:
        """A mail in the bounce mailbox: a complaint (ARF feedback report), a bounce, or neither."""
        try:
            complaint = parse_complaint(raw)
            bounce = parse_bounce(raw) if complaint is None else None
        except _UNREADABLE as exc:
            raise _refused(exc) from None
        if complaint is not None:
            outcome = self.feedback.apply_complaint(tenant_id, complaint, key)
            if outcome is Applied.APPLIED:
                metrics.add_metric(name="ComplaintsRecorded", unit=MetricUnit.Count, value=1)
            return outcome
        if bounce is None:
            return Applied.IGNORED
        outcome = self.feedback.apply_bounce(tenant_id, bounce, key)
        if outcome is Applied.APPLIED:
            metrics.add_metric(name="BouncesRecorded", unit=MetricUnit.Count, value=1)
        return outcome

    def _pec_handler(self, tenant_id: str, account_id: str) -> Callable[[bytes, str], Applied]:
        return lambda raw, key: self._pec(tenant_id, account_id, raw, key)

    def _pec(self, tenant_id: str, account_id: str, raw: bytes, key: str) -> Applied:
        try:
            receipt = parse_pec_receipt(raw)
        except _UNREADABLE as exc:
            raise _refused(exc) from None
        if receipt is None:
            return Applied.IGNORED
        outcome = self.feedback.apply_pec_receipt(tenant_id, account_id, receipt, key)
        if outcome is Applied.APPLIED:
            metrics.add_metric(name="PecReceiptsRecorded", unit=MetricUnit.Count, value=1)
        return outcome


def _refused(exc: Exception) -> UnreadableMail:
    """What a parser raised, as UnreadableMail naming only the kind of error (its text may quote the mail)."""
    return exc if isinstance(exc, UnreadableMail) else UnreadableMail(f"the parser failed ({type(exc).__name__})")
