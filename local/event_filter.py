"""Lambda event-filtering patterns, so a function sees locally only the records it would see in AWS.

Covers the pattern syntax event source mappings accept for SQS and DynamoDB streams: exact values, `prefix`,
`suffix`, `equals-ignore-case`, `anything-but`, `numeric`, `exists`, nested objects, and `$or`.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

_MISSING = object()


def matches_any(patterns: Iterable[Any], record: Mapping[str, Any]) -> bool:
    """True if there are no patterns or any one of them matches (filters are OR-ed)."""
    patterns = list(patterns)
    return not patterns or any(matches(pattern, record) for pattern in patterns)


def matches(pattern: Mapping[str, Any], value: Any) -> bool:
    """True if `value` satisfies every field of `pattern`."""
    if "$or" in pattern:
        alternatives = pattern["$or"]
        rest = {k: v for k, v in pattern.items() if k != "$or"}
        return matches(rest, value) and any(matches(alt, value) for alt in alternatives)
    for key, expected in pattern.items():
        actual = value.get(key, _MISSING) if isinstance(value, Mapping) else _MISSING
        if isinstance(expected, Mapping):
            if actual is _MISSING:
                return False
            if isinstance(actual, str) and key == "body":
                try:
                    actual = json.loads(actual)
                except ValueError:
                    return False
            if not matches(expected, actual):
                return False
        elif isinstance(expected, list):
            if not any(_rule_matches(rule, actual) for rule in expected):
                return False
        elif not _rule_matches(expected, actual):
            return False
    return True


def _rule_matches(rule: Any, actual: Any) -> bool:
    if isinstance(rule, Mapping):
        if "exists" in rule:
            return (actual is not _MISSING) == bool(rule["exists"])
        if actual is _MISSING:
            return False
        values = actual if isinstance(actual, list) else [actual]
        return any(_operator_matches(rule, value) for value in values)
    if actual is _MISSING:
        return False
    values = actual if isinstance(actual, list) else [actual]
    return any(value == rule for value in values)


def _operator_matches(rule: Mapping[str, Any], value: Any) -> bool:
    if "prefix" in rule:
        return isinstance(value, str) and value.startswith(rule["prefix"])
    if "suffix" in rule:
        return isinstance(value, str) and value.endswith(rule["suffix"])
    if "equals-ignore-case" in rule:
        return isinstance(value, str) and value.lower() == str(rule["equals-ignore-case"]).lower()
    if "anything-but" in rule:
        excluded = rule["anything-but"]
        if isinstance(excluded, Mapping):
            return not _operator_matches(excluded, value)
        excluded_values = excluded if isinstance(excluded, list) else [excluded]
        return value not in excluded_values
    if "numeric" in rule:
        try:
            number = float(value)
        except (TypeError, ValueError):
            return False
        conditions = rule["numeric"]
        for index in range(0, len(conditions), 2):
            operator, bound = conditions[index], float(conditions[index + 1])
            checks = {
                "=": number == bound,
                "<": number < bound,
                "<=": number <= bound,
                ">": number > bound,
                ">=": number >= bound,
            }
            if not checks.get(operator, False):
                return False
        return True
    return False
