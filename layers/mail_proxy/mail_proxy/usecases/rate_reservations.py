"""An account's sending windows at the sender: slots reserved before sending, given back when unused.

The windows' arithmetic is ``domain.rate_limits``; the counters live in the table so a limit holds across
every concurrent sender. Messages over the limit are deferred to the next window, or fail when the account's
``limit_behavior`` is ``reject``.
"""

from __future__ import annotations

from aws_lambda_powertools.metrics import MetricUnit

from mail_proxy.adapters.observability import FailureClass, logger, metrics
from mail_proxy.domain import clock
from mail_proxy.domain.entities import Account, Tenant
from mail_proxy.domain.rate_limits import Window, account_windows
from mail_proxy.usecases.delivery_outcomes import OutcomeRecorder, PendingMessage
from mail_proxy.usecases.ports import SendWindows

Slot = tuple[Window, int, int]  # window, its start, sends reserved in it


def reserve_slots(windows_store: SendWindows, outcomes: OutcomeRecorder, tenant: Tenant,
                  account: Account, group: list[PendingMessage]) -> tuple[list[PendingMessage], list[Slot]]:
    """The messages that fit the account's windows, and the slots reserved for them; the others are
    deferred to the limiting window's next start (or failed, for ``limit_behavior: reject``)."""
    windows = account_windows(account)
    if not windows or not group:
        return group, []
    tenant_id = tenant.tenant_id
    now = clock.now()
    granted = len(group)
    reserved: list[Slot] = []
    limiting: Window | None = None
    for window in windows:
        start = window.start(now)
        got = windows_store.reserve_sends(tenant_id, account.id, window.name, start, window.seconds,
                                          granted, window.limit)
        if got < granted:
            limiting = window
            for earlier, earlier_start, count in reserved:  # give back what the tighter window will not use
                windows_store.release_sends(tenant_id, account.id, earlier.name, earlier_start, count - got)
            reserved = [(w, s, got) for w, s, _ in reserved]
            granted = got
        reserved.append((window, start, got))
    if limiting is None:
        return group, reserved
    over = group[granted:]
    metrics.add_metric(name="MessagesRateLimited", unit=MetricUnit.Count, value=len(over))
    reason = f"rate_limit_exceeded: limit_per_{limiting.name}={limiting.limit}"
    for item in over:
        if account.rejects_over_limit:
            outcomes.guarded(item, outcomes.fail, tenant, item, reason, attempted=False,
                             failure_class=FailureClass.RATE_LIMIT)
        else:
            outcomes.guarded(item, outcomes.defer, tenant, item, reason, limiting.next_start(now), attempted=False)
    return group[:granted], reserved


def give_back_slots(windows_store: SendWindows, tenant_id: str, account: Account, slots: list[Slot], *,
                    slots_used: int) -> None:
    """Slots reserved for messages that were not sent (failed, deferred, handed back) are released."""
    for window, start, count in slots:
        unused = count - slots_used
        if unused <= 0:
            continue
        try:
            windows_store.release_sends(tenant_id, account.id, window.name, start, unused)
        except Exception:  # the window simply stays a little tighter until it ends
            logger.exception("rate-limit slots not given back", extra={"tenant_id": tenant_id,
                                                                       "account_id": account.id})
