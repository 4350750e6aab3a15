"""moto's DynamoDB made cheaper where the local stack and the suite spend its time: Query and UpdateItem.

moto answers every Query by listing every item of the table, sorted by key, then keeping those of the asked
partition (or index partition) and sorting them again. The first sort compares moto's attribute values in
Python, which made a Query cost milliseconds per thousand items: a third of the suite's CPU, and the
scheduler's index Query in the local stack. `use_partition_queries` hands Query the candidates without that
sort: the items of the asked partition for a table Query, every item unsorted for an index Query (moto
sorts what matches by the index key anyway). Scans and every other caller of ``all_items`` keep moto's sorted
listing.

`use_cached_update_parsing` takes the repeated work out of UpdateItem, which a message pays twice (claim and
outcome): an update expression is parsed once per string, its purely structural checks run once per string,
names and table, the parsed tree is copied node by node, and a condition's tokens are kept per string.

`use_fast_json_serializer` writes DynamoDB's answers with `json.dumps` instead of moto's shape walker.

What moto answers is unchanged: tests/integration/test_moto_speedups.py compares Query with moto's own on
random tables, and checks that kept expressions and conditions apply each call's own names and values.
Idempotent; patches moto in this process only.
"""

from __future__ import annotations

import base64
import datetime
import inspect
import json
import threading
from typing import Any

_querying = threading.local()


def use_partition_queries() -> None:
    from moto.dynamodb.models.table import Table

    if getattr(Table.query, "_local_partition_query", False):
        return
    original_query = Table.query
    original_all_items = Table.all_items
    signature = inspect.signature(original_query)

    def query(self: Table, *args: Any, **kwargs: Any) -> Any:
        bound = signature.bind(self, *args, **kwargs)
        _querying.target = (self, bound.arguments.get("hash_key"), bound.arguments.get("index_name"))
        try:
            return original_query(self, *args, **kwargs)
        finally:
            _querying.target = None

    def all_items(self: Table) -> list[Any]:
        target = getattr(_querying, "target", None)
        if target is None or target[0] is not self:
            return original_all_items(self)
        _querying.target = None  # once per Query: anything else this call lists sees moto's own listing
        _, hash_key, index_name = target
        if index_name or hash_key is None:
            return [item for partition in self.items.values()
                    for item in (partition.values() if self.range_key_attr else (partition,))]
        partition = self.items.get(hash_key)
        if partition is None:
            return []
        return list(partition.values()) if self.range_key_attr else [partition]

    query._local_partition_query = True  # type: ignore[attr-defined]
    query.original = original_query  # type: ignore[attr-defined]  # what tests compare with
    all_items.original = original_all_items  # type: ignore[attr-defined]
    Table.query = query  # type: ignore[method-assign]
    Table.all_items = all_items  # type: ignore[method-assign]


def use_cached_update_parsing() -> None:
    """moto parses an UpdateExpression anew on every call (twice per UpdateItem) and, while validating it,
    rebuilds each traverser's node-type table for every node it visits. The local stack and the suite send
    the same few expression strings over and over (a transition's placeholders are numbered the same way each
    time), so the parsed tree is kept per string, and each traverser keeps its table. moto copies the tree
    before it validates or executes it, so a kept tree is never changed. Idempotent; this process only."""
    from functools import lru_cache

    from moto.dynamodb.parsing import ast_nodes, expressions

    parser: Any = expressions.UpdateExpressionParser  # type: ignore[attr-defined]  # moto's parsing is untyped
    traverser: Any = ast_nodes.DepthFirstTraverser  # type: ignore[attr-defined]
    if getattr(parser.make, "_local_cached", False):
        return
    parse = lru_cache(maxsize=1024)(parser.make.__func__)

    def make(cls: Any, expression_str: str) -> Any:
        return parse(cls, expression_str)

    make._local_cached = True  # type: ignore[attr-defined]
    parser.make = classmethod(make)

    def processing_map(self: Any) -> dict[type, Any]:
        kept = self.__dict__.get("_local_processing_map")
        if kept is None:
            kept = self.__dict__["_local_processing_map"] = self._processing_map()
        return kept

    def nodes_to_be_processed(self: Any) -> tuple[type, ...]:
        kept = self.__dict__.get("_local_node_types")
        if kept is None:
            kept = self.__dict__["_local_node_types"] = tuple(processing_map(self))
        return kept

    def process(self: Any, node: Any) -> Any:
        for node_type, processor in processing_map(self).items():
            if isinstance(node, node_type):
                return processor(node)
        return None

    traverser.nodes_to_be_processed = nodes_to_be_processed
    traverser.process = process
    _skip_repeated_structure_checks()
    _copy_plain_trees_directly()
    _keep_condition_tokens()


def _keep_condition_tokens() -> None:
    """moto splits every ConditionExpression into tokens with a list of regular expressions, character by
    character; the tokens depend on the string alone, so they are kept per string and handed out as new
    tokens (fresh child lists) each time. Names and values are still looked up on every call."""
    from collections import deque

    from moto.dynamodb.comparisons import ConditionExpressionParser

    parser: Any = ConditionExpressionParser
    if getattr(parser._lex_condition_expression, "_local_kept", False):
        return
    original = parser._lex_condition_expression
    kept: dict[str, tuple[tuple[Any, Any, Any, Any], ...]] = {}

    def lex(self: Any) -> Any:
        tokens = kept.get(self.condition_expression)
        if tokens is None:
            lexed = original(self)
            if len(kept) > 4096:
                kept.clear()
            tokens = kept[self.condition_expression] = tuple(
                (node.nonterminal, node.kind, node.text, node.value) for node in lexed)
        return deque(self.Node(nonterminal, kind, text, value, []) for nonterminal, kind, text, value in tokens)

    lex._local_kept = True  # type: ignore[attr-defined]
    parser._lex_condition_expression = lex


class _NotPlain(Exception):
    """A tree holding something other than nodes and immutable values: copied by ``copy.deepcopy``."""


def _copy_plain_trees_directly() -> None:
    """The validator starts with ``copy.deepcopy`` of the parsed tree: a quarter of an UpdateItem's time, for a
    tree of nodes whose leaves are strings and numbers. Such a tree is copied node by node; anything else (and
    the validator's other copies) still goes through ``copy.deepcopy``."""
    import copy

    from moto.dynamodb.parsing import ast_nodes, validators

    node_type: Any = ast_nodes.Node  # type: ignore[attr-defined]
    if getattr(validators.deepcopy, "_local_plain_copy", False):
        return
    immutable = (str, int, float, bool, type(None))

    def clone(node: Any, parent: Any) -> Any:
        new = object.__new__(type(node))
        for name, value in node.__dict__.items():
            if name == "parent":
                new.parent = parent
            elif name == "children" and isinstance(value, list):
                new.children = [clone(child, new) if isinstance(child, node_type) else _immutable_value(child)
                                for child in value]
            else:
                new.__dict__[name] = _immutable_value(value)
        return new

    def _immutable_value(value: Any) -> Any:
        if isinstance(value, immutable):
            return value
        raise _NotPlain

    def deepcopy(value: Any, memo: Any = None) -> Any:
        if memo is None and isinstance(value, node_type) and value.parent is None:
            try:
                return clone(value, None)
            except _NotPlain:
                pass
        return copy.deepcopy(value, memo)

    deepcopy._local_plain_copy = True  # type: ignore[attr-defined]
    setattr(validators, "deepcopy", deepcopy)  # noqa: B010  (the name validators.py imported from copy)


def _skip_repeated_structure_checks() -> None:
    """Three of the validator's ten passes look only at the expression's shape and its attribute names (one
    clause of each kind, no path twice, no key attribute changed); once a kept expression passed them with
    the same names on the same table, they are not run again. The passes that read values and the item
    always run."""
    from moto.dynamodb.parsing import validators

    validator: Any = validators.UpdateExpressionValidator
    if getattr(validator, "_local_skips_repeats", False):
        return
    structural = (validators.ActionCountValidator, validators.OverlappingPathsValidator,
                  validators.UpdateHashRangeKeyValidator)
    passed: dict[tuple[Any, ...], Any] = {}  # the key holds id(tree); the value keeps the tree alive
    original_init = validator.__init__
    original_validate = validator.validate

    def __init__(self: Any, expression: Any, expression_attribute_names: Any, expression_attribute_values: Any,
                 item: Any, table: Any) -> None:
        original_init(self, expression, expression_attribute_names, expression_attribute_values, item, table)
        names = tuple(sorted((expression_attribute_names or {}).items()))
        self._local_key = (id(expression), names, table.name, tuple(table.table_key_attrs))
        self._local_tree = expression
        if self._local_key in passed:
            self.processors = [p for p in self.processors if not isinstance(p, structural)]

    def validate(self: Any) -> Any:
        validated = original_validate(self)
        if len(passed) > 4096:
            passed.clear()
        passed[self._local_key] = self._local_tree
        return validated

    validator.__init__ = __init__
    validator.validate = validate
    validator._local_skips_repeats = True


def speed_up_moto() -> None:
    """Every speed-up of this module (the local stack, the suite and the benchmarks install them all)."""
    use_fast_json_serializer()
    use_partition_queries()
    use_cached_update_parsing()


_FAST_JSON_SERVICES = frozenset({"dynamodb", "dynamodbstreams"})


class _Unplain(Exception):
    """A result holding something other than plain JSON data: the shape-driven serializer handles it."""


def _plain(value: Any) -> Any:
    """A response result as JSON data: None members left out, times as epoch seconds, bytes as base64 (what
    moto's serializer makes of DynamoDB's results, which are already in the wire's shape)."""
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items() if item is not None}
    if isinstance(value, str | bool | int | float):
        return value
    if isinstance(value, list | tuple):
        return [_plain(item) for item in value]
    if isinstance(value, bytes):
        return base64.b64encode(value).decode()
    if isinstance(value, datetime.datetime):
        moment = value if value.tzinfo else value.replace(tzinfo=datetime.UTC)
        return moment.timestamp()
    raise _Unplain(type(value).__name__)


def use_fast_json_serializer() -> None:
    """DynamoDB and its streams answer with `json.dumps` of their results instead of moto's serializer.

    moto walks the botocore output shape for every value of every response, which costs more than the
    operation itself for stream records and items (a large share of the local stack's CPU). DynamoDB's results
    already have the wire's shape, so they are written as they are; errors, and any result that is not plain
    data, still go through moto's serializer. Idempotent; patches moto in this process only.
    """
    from moto.core import responses

    original = responses.get_serializer_class
    if getattr(original, "_local_fast_json", False):
        return
    fast: dict[type[Any], type[Any]] = {}

    def get_serializer_class(service_name: str, protocol: str) -> Any:
        cls = original(service_name, protocol)
        if service_name not in _FAST_JSON_SERVICES or protocol != "json":
            return cls
        if cls not in fast:

            class FastJson(cls):  # type: ignore[valid-type,misc]
                def _serialize_result(self, resp: Any, result: Any) -> Any:
                    try:
                        body = json.dumps(_plain(result), separators=(",", ":"))
                    except _Unplain:
                        return super()._serialize_result(resp, result)
                    resp["body"] = body
                    resp["headers"]["Content-Type"] = self._get_protocol_specific_content_type()
                    return resp

            fast[cls] = FastJson
        return fast[cls]

    get_serializer_class._local_fast_json = True  # type: ignore[attr-defined]
    responses.get_serializer_class = get_serializer_class
