"""Ordered in-memory storage of rendered records, kept sorted by ID.

Rows are rendered once when a record changes, so serving a page is slicing and
projecting precomputed dicts, never re-rendering the whole data set.
"""

from __future__ import annotations

from bisect import bisect_left, insort
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal

from .query import Key, OrderKey, to_key

_MISSING: tuple[int, Key] = (1, (0, Decimal(0)))


def field_values(doc: Mapping[str, object], path: str) -> list[object]:
    """Values at a dotted path; lists along the way fan out (Jobs.ID gives every job ID)."""
    current: list[object] = [doc]
    for part in path.split("."):
        found: list[object] = []
        for value in current:
            for item in value if isinstance(value, list) else [value]:
                if isinstance(item, dict) and part in item:
                    found.append(item[part])
        current = found
    flat: list[object] = []
    for value in current:
        flat.extend(value if isinstance(value, list) else [value])
    return flat


@dataclass(frozen=True)
class Row:
    id: int
    modified: int  # DateModified in epoch seconds, for If-Modified-Since
    summary: Mapping[str, object]  # the default list item
    detail: Mapping[str, object]  # every field, for /{id} and `columns`
    kind: str = ""  # lets one table back several views (customers/companies, ...)
    # Comparable values per path, filled on first use; a row is replaced, never
    # changed, when its record changes, so the cache cannot go stale.
    _keys: dict[str, tuple[Key, ...]] = field(default_factory=dict, compare=False, repr=False)

    def keys(self, path: str) -> tuple[Key, ...]:
        cached = self._keys.get(path)
        if cached is None:
            found = (to_key(value) for value in field_values(self.detail, path))
            cached = tuple(key for key in found if key is not None)
            self._keys[path] = cached
        return cached

    def sort_key(self, path: str) -> tuple[int, Key]:
        keys = self.keys(path)
        return (0, keys[0]) if keys else _MISSING


class Table:
    """Rows by ID with an always-sorted ID list, plus cached orderings."""

    def __init__(self, rows: Iterable[Row] = ()) -> None:
        self._rows: dict[int, Row] = {row.id: row for row in rows}
        self._ids: list[int] = sorted(self._rows)
        self._ordered: list[Row] | None = None
        self._sorted: dict[tuple[OrderKey, ...], list[Row]] = {}

    def __len__(self) -> int:
        return len(self._rows)

    def get(self, row_id: int) -> Row | None:
        return self._rows.get(row_id)

    def ids(self) -> Sequence[int]:
        """Sorted IDs; index i here is index i in ordered()."""
        return self._ids

    def rows(self) -> Iterable[Row]:
        return self._rows.values()

    def put(self, row: Row) -> None:
        if row.id not in self._rows:
            if not self._ids or row.id > self._ids[-1]:
                self._ids.append(row.id)  # the usual case: new records get the next ID
            else:
                insort(self._ids, row.id)
        self._rows[row.id] = row
        self._changed()

    def remove(self, row_id: int) -> None:
        del self._rows[row_id]
        del self._ids[bisect_left(self._ids, row_id)]
        self._changed()

    def ordered(self) -> Sequence[Row]:
        if self._ordered is None:
            self._ordered = [self._rows[row_id] for row_id in self._ids]
        return self._ordered

    def sorted_by(self, order: tuple[OrderKey, ...]) -> Sequence[Row]:
        """Rows in the asked order; ties keep ID ascending (stable sorts from ID order)."""
        if not order:
            return self.ordered()
        cached = self._sorted.get(order)
        if cached is None:
            cached = list(self.ordered())
            for key in reversed(order):
                cached.sort(key=_by(key.path), reverse=key.descending)
            self._sorted[order] = cached
        return cached

    def _changed(self) -> None:
        self._ordered = None
        self._sorted.clear()


def _by(path: str) -> Callable[[Row], tuple[int, Key]]:
    def sort_key(row: Row) -> tuple[int, Key]:
        return row.sort_key(path)

    return sort_key
