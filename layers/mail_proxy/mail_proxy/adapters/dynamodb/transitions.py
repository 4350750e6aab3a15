"""A message's transitions (``domain.message_lifecycle.Transition``) as single conditional writes."""

from __future__ import annotations

from typing import Any

from mail_proxy.adapters.dynamodb.keys import STATE_SK, due_pk, due_sk, held_pk, message_pk, payload_sk
from mail_proxy.adapters.dynamodb.table import Table, attribute_value, item_key
from mail_proxy.domain import clock
from mail_proxy.domain.message_lifecycle import Transition
from mail_proxy.domain.models import MessageStatus


class MessageTransitions(Table):
    """Conditional writes of a message's state item."""

    def apply_transition(self, tenant_id: str, message_id: str, transition: Transition, *, now: int) -> bool:
        """Apply one transition of a message's life as one conditional write; False if the stored state is not
        the one the transition expects (someone else changed, deleted or replaced the message meanwhile)."""
        names: dict[str, str] = {}
        values: dict[str, Any] = {}

        def name(attr: str) -> str:
            if attr not in names:
                names[attr] = f"#n{len(names)}"
            return names[attr]

        def value(v: Any) -> str:
            placeholder = f":v{len(values)}"
            values[placeholder] = attribute_value(v)
            return placeholder

        sets = [f"{name(k)} = {value(v)}" for k, v in transition.sets.items() if v is not None]
        sets.append(f"{name('updated_at')} = {value(clock.now_iso())}")
        removes = [k for k in transition.removes if k not in transition.sets]
        if transition.event is not None:
            sets.append(f"{name('events')} = list_append(if_not_exists({name('events')}, {value([])}), "
                        f"{value([dict(transition.event)])})")
        if transition.count_attempt:
            sets.append(f"{name('attempts')} = if_not_exists({name('attempts')}, {value(0)}) + {value(1)}")
        if transition.hold:
            sets += [f"{name('due_pk')} = {value(held_pk(tenant_id))}", f"{name('due_sk')} = {value(message_id)}"]
        elif transition.due_ts is not None:
            sets += [f"{name('due_pk')} = {value(due_pk(tenant_id))}",
                     f"{name('due_sk')} = {value(due_sk(transition.due_ts, message_id))}"]
        elif transition.leaves_due_index:
            removes += ["due_pk", "due_sk"]
        expression = "SET " + ", ".join(sets)
        if removes:
            expression += " REMOVE " + ", ".join(name(k) for k in dict.fromkeys(removes))

        expect = transition.expect
        status = name("status")
        conditions = ["attribute_exists(pk)",
                      f"{status} IN ({', '.join(value(str(s)) for s in expect.statuses)})"]
        if expect.payload_version is not None:
            conditions.append(f"{name('payload_version')} = {value(expect.payload_version)}")
        if expect.lease_owner is not None:
            conditions.append(f"{name('lease_owner')} = {value(expect.lease_owner)}")
        if expect.attempts is not None:
            attempts = name("attempts")
            equal = f"{attempts} = {value(expect.attempts)}"
            conditions.append(f"(attribute_not_exists({attempts}) OR {equal})" if expect.attempts == 0 else equal)
        if expect.due_by is not None:
            deferred_ts = name("deferred_ts")
            conditions.append(f"({status} <> {value(str(MessageStatus.DEFERRED))} OR attribute_not_exists("
                              f"{deferred_ts}) OR {deferred_ts} <= {value(expect.due_by)})")
        if expect.lease_expired_by is not None:
            conditions.append(f"{name('lease_until')} < {value(expect.lease_expired_by)}")
        applied = self._write_if(
            "update_item",
            Key=item_key(message_pk(tenant_id, message_id), STATE_SK),
            UpdateExpression=expression,
            ConditionExpression=" AND ".join(conditions),
            ExpressionAttributeNames={placeholder: attr for attr, placeholder in names.items()},
            ExpressionAttributeValues=values,
        ) is not None
        if applied and transition.hold and expect.payload_version:
            self.set_payload_expiry(tenant_id, message_id, expect.payload_version, None)  # kept while held
        return applied

    def set_payload_expiry(self, tenant_id: str, message_id: str, payload_version: str, expires_at: int | None
                           ) -> None:
        """A held message's content must outlive the hold: no expiry while held, the usual one once released."""
        key = item_key(message_pk(tenant_id, message_id), payload_sk(payload_version))
        if expires_at is None:
            self._write_if("update_item", Key=key, UpdateExpression="REMOVE expires_at",
                           ConditionExpression="attribute_exists(pk)")
        else:
            self._write_if("update_item", Key=key, UpdateExpression="SET expires_at = :e",
                           ConditionExpression="attribute_exists(pk)",
                           ExpressionAttributeValues={":e": {"N": str(expires_at)}})
