"""Parsing of Simpro list query strings: page, pageSize, limit, columns, orderby, filters.

Values are compared through `Key`s so that Simpro's loose typing works the way a
real build's SQL does: 52 and "52" are the same number, dates compare as ISO strings.

As strict and as lax as Simpro (SIMPRO.md): a `pageSize` outside 1-250 is rejected
with Simpro's message, not capped; a filter or orderby on a field the list does not
have is ignored (a typo returns every record), or answered 422 when the build is set
to `unknown_fields="reject"`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal
from typing import Literal, get_args

DEFAULT_PAGE_SIZE = 30
MAX_PAGE_SIZE = 250

# (0, number) for anything numeric, (1, casefolded text) otherwise. The leading int
# keeps numbers and text comparable with each other without a TypeError.
Key = tuple[int, Decimal | str]
# "nin" is `!in(...)`; "present" is `ne()` without an argument: the field is not null.
Op = Literal["eq", "ne", "gt", "ge", "lt", "le", "between", "in", "nin", "present", "like"]
# What a build does with a filter or orderby on a field its list does not have.
UnknownFields = Literal["ignore", "reject"]
UNKNOWN_FIELD_MODES: tuple[str, ...] = get_args(UnknownFields)

_NUMBER = re.compile(r"-?\d+(\.\d+)?")
_CALL = re.compile(r"(!?[A-Za-z]+)\((.*)\)", re.DOTALL)
# operator name -> (operator, fewest arguments, most arguments)
_OPERATORS: dict[str, tuple[Op, int, int]] = {
    "gt": ("gt", 1, 1),
    "ge": ("ge", 1, 1),
    "lt": ("lt", 1, 1),
    "le": ("le", 1, 1),
    "ne": ("ne", 1, 1),
    "between": ("between", 2, 2),
    "in": ("in", 1, 10_000),
    "!in": ("nin", 1, 10_000),
}
# Parameters that steer the listing rather than filter a field.
RESERVED = frozenset({"page", "pageSize", "limit", "columns", "orderby", "search", "display"})
# Simpro's answer to a pageSize outside 1-250 (or not a number), word for word.
PAGE_SIZE_MESSAGE = "API query parameter should be an integer value between 1 - 250"


class QueryError(ValueError):
    """A query the build rejects with 422; carries Simpro's error item fields."""

    def __init__(self, path: str, message: str, value: str) -> None:
        super().__init__(message)
        self.path = path
        self.message = message
        self.value = value

    def as_json(self) -> dict[str, object]:
        return {"errors": [{"path": self.path, "message": self.message, "value": self.value}]}


def to_key(value: object) -> Key | None:
    """The comparable form of a rendered value; None for null or structured values."""
    if value is None or isinstance(value, dict | list):
        return None
    if isinstance(value, bool):  # before int: bool is an int subclass
        return (1, "true" if value else "false")
    if isinstance(value, int):
        return (0, Decimal(value))
    if isinstance(value, float):
        return (0, Decimal(str(value)))
    text = str(value).strip()
    if _NUMBER.fullmatch(text):
        return (0, Decimal(text))
    return (1, text.casefold())


_EMPTY_TEXT: Key = (1, "")


def _arg_key(text: str) -> Key:
    key = to_key(text)
    assert key is not None  # a str is never None or structured
    return key


@dataclass(frozen=True)
class Filter:
    path: str  # dotted field path, e.g. "Customer.ID"
    op: Op
    args: tuple[Key, ...]
    pattern: re.Pattern[str] | None = None  # for "like" (a value with % wildcards)

    def matches(self, keys: tuple[Key, ...]) -> bool:
        """Whether a record whose field has these values passes; no values = null."""
        if self.op == "ne":
            return all(key != self.args[0] for key in keys)
        if self.op == "nin":  # like ne: a null field is not among the values
            return all(key not in self.args for key in keys)
        if self.op == "present":
            return any(key != _EMPTY_TEXT for key in keys)
        if len(keys) == 1:  # the usual case, without a generator's overhead
            return self._one(keys[0])
        return any(self._one(key) for key in keys)

    def _one(self, key: Key) -> bool:
        op, args = self.op, self.args
        if op == "eq":
            return key == args[0]
        if op == "in":
            return key in args
        if op == "like":
            assert self.pattern is not None
            return self.pattern.fullmatch(str(key[1])) is not None
        if op == "between":
            return args[0] <= key <= args[1]
        if op == "gt":
            return key > args[0]
        if op == "ge":
            return key >= args[0]
        if op == "lt":
            return key < args[0]
        return key <= args[0]  # "le"


@dataclass(frozen=True)
class OrderKey:
    path: str
    descending: bool = False


@dataclass(frozen=True)
class ListQuery:
    page: int = 1
    page_size: int = DEFAULT_PAGE_SIZE
    columns: tuple[str, ...] | None = None
    order: tuple[OrderKey, ...] = ()  # empty = ID ascending, Simpro's default
    filters: tuple[Filter, ...] = ()
    match_any: bool = False  # search=any: a record passes if any filter matches
    # limit=n: at most n matching records in all (Result-Total included), then pages.
    limit: int | None = None


def parse_page_size(raw: str) -> int:
    """pageSize within 1-250, or Simpro's 422: it rejects an oversized page, never caps it."""
    try:
        value = int(raw)
    except ValueError:
        value = 0
    if not 1 <= value <= MAX_PAGE_SIZE:
        raise QueryError("pageSize", PAGE_SIZE_MESSAGE, raw)
    return value


def parse_positive_int(name: str, raw: str) -> int:
    try:
        value = int(raw)
    except ValueError:
        value = 0
    if value < 1:
        raise QueryError(name, f"{name} must be a positive integer", raw)
    return value


def parse_columns(raw: str | None, fields: frozenset[str]) -> tuple[str, ...] | None:
    if raw is None:
        return None
    names = tuple(name.strip() for name in raw.split(",") if name.strip())
    bad = [name for name in names if name not in fields]
    if bad or not names:
        shown = ",".join(bad) if bad else raw
        raise QueryError("columns", f"Invalid columns: {shown}", shown)
    return names


def _known_field(
    param: str, path: str, fields: frozenset[str], value: str, unknown: UnknownFields
) -> bool:
    """Whether `path` names a field of the list; an unknown one raises when rejecting."""
    if path.split(".", 1)[0] in fields:
        return True
    if unknown == "reject":
        raise QueryError(param, f"Invalid field: {path}", value)
    return False


def parse_order(
    raw: str, fields: frozenset[str], unknown: UnknownFields = "reject"
) -> tuple[OrderKey, ...]:
    keys: list[OrderKey] = []
    for part in (p.strip() for p in raw.split(",")):
        if not part:
            continue
        descending = part.startswith("-")
        path = part.lstrip("+-")
        if _known_field("orderby", path, fields, raw, unknown):
            keys.append(OrderKey(path, descending))
    return tuple(keys)


def parse_filter(path: str, raw: str) -> Filter:
    call = _CALL.fullmatch(raw.strip())
    if call is None:
        if "%" in raw:
            regex = ".*".join(re.escape(part) for part in raw.casefold().split("%"))
            return Filter(path, "like", (), re.compile(regex, re.DOTALL))
        return Filter(path, "eq", (_arg_key(raw),))
    name, inner = call.group(1), call.group(2)
    if name not in _OPERATORS:
        raise QueryError(path, f"Invalid operator: {name}", raw)
    op, fewest, most = _OPERATORS[name]
    args = tuple(_arg_key(arg) for arg in inner.split(",") if arg.strip())
    if op == "ne" and not args:  # ne(): not null, Simpro's way to ask for a value
        return Filter(path, "present", ())
    if not fewest <= len(args) <= most:
        raise QueryError(path, f"Wrong number of arguments for {name}", raw)
    return Filter(path, op, args)


def parse_list_query(
    params: Iterable[tuple[str, str]],
    fields: frozenset[str],
    *,
    unknown_fields: UnknownFields = "ignore",
) -> ListQuery:
    """Turn query parameters into a ListQuery, or raise QueryError (422).

    unknown_fields: what a filter or orderby on a field the list lacks does. "ignore"
    (Simpro's way) drops it, so a typo filters nothing; "reject" answers 422.
    """
    page, page_size = 1, DEFAULT_PAGE_SIZE
    limit: int | None = None
    columns: tuple[str, ...] | None = None
    order: tuple[OrderKey, ...] = ()
    filters: list[Filter] = []
    match_any = False
    for name, raw in params:
        if name == "page":
            page = parse_positive_int(name, raw)
        elif name == "pageSize":
            page_size = parse_page_size(raw)
        elif name == "limit":
            limit = parse_positive_int(name, raw)
        elif name == "columns":
            columns = parse_columns(raw, fields)
        elif name == "orderby":
            order = parse_order(raw, fields, unknown_fields)
        elif name == "search":
            match_any = raw.strip().lower() == "any"
        elif name not in RESERVED and _known_field(name, name, fields, raw, unknown_fields):
            filters.append(parse_filter(name, raw))
    return ListQuery(page, page_size, columns, order, tuple(filters), match_any, limit)
