"""The indexes a list answer is computed from: IDs in order, and IDs by modification time.

A table keeps, per record, only its ID and DateModified (and a kind where a view needs
it), in sorted arrays; the record itself is rendered into a `Row` only when a page shows
it (or a filter the indexes cannot answer has to look at it). So a page ordered by ID, an
ID range and an If-Modified-Since page cost bisects and the page's own rows, whatever
the size of the data set.
"""

from __future__ import annotations

from array import array
from bisect import bisect_left, bisect_right, insort
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import TypeVar, overload

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


Render = Callable[[int], Row]
K = TypeVar("K")
# modified << _ID_BITS | id sorts by (DateModified, ID) in one unsigned 64-bit integer.
_ID_BITS = 32
_ID_MASK = (1 << _ID_BITS) - 1
# Answers kept per table until a change: a scan or a sync repeats one order or one cursor
# page after page; a bound keeps a client that varies them from piling up ID lists.
_CACHED_ANSWERS = 8


class IdSpan(Sequence[int]):
    """A stretch of an ID sequence (possibly reversed), without copying it."""

    def __init__(self, ids: Sequence[int], span: range) -> None:
        self._ids = ids
        self._span = span

    def __len__(self) -> int:
        return len(self._span)

    @overload
    def __getitem__(self, index: int) -> int: ...
    @overload
    def __getitem__(self, index: slice) -> IdSpan: ...
    def __getitem__(self, index: int | slice) -> int | IdSpan:
        if isinstance(index, slice):
            return IdSpan(self._ids, self._span[index])
        return self._ids[self._span[index]]

    def __iter__(self) -> Iterator[int]:
        ids = self._ids
        return (ids[i] for i in self._span)


class RowView(Sequence[Row]):
    """Rows of some IDs, each rendered when it is read."""

    def __init__(self, table: Table, ids: Sequence[int]) -> None:
        self._table = table
        self._ids = ids

    def __len__(self) -> int:
        return len(self._ids)

    @overload
    def __getitem__(self, index: int) -> Row: ...
    @overload
    def __getitem__(self, index: slice) -> RowView: ...
    def __getitem__(self, index: int | slice) -> Row | RowView:
        if isinstance(index, slice):
            return RowView(self._table, self._ids[index])
        return self._table.row(self._ids[index])

    def __iter__(self) -> Iterator[Row]:
        return (self._table.row(row_id) for row_id in self._ids)


class Table:
    """Records by ID, rendered on demand, with an ID index and a DateModified index.

    `Table(rows)` holds already rendered rows (small tables: companies, subscriptions);
    `Table.indexed(...)` holds only the indexes and a `render` callback that builds the
    Row of an ID from wherever the records live. `rendered` counts the rows built, so a
    test can check that a page's work does not grow with the table.
    """

    def __init__(self, rows: Iterable[Row] = ()) -> None:
        held = {row.id: row for row in rows}
        self._held = held
        self._render: Render = held.__getitem__
        self._ids = array("q", sorted(held))
        self._modified = array("q", (held[row_id].modified for row_id in self._ids))
        self._kinds: dict[int, str] = {r.id: r.kind for r in held.values() if r.kind}
        self._by_modified = array("Q")
        self._reindex_modified()
        self._sorted: dict[tuple[OrderKey, ...], list[int]] = {}
        self._since: dict[int, list[int]] = {}
        self.rendered = 0

    @classmethod
    def indexed(
        cls,
        ids: Iterable[int],
        modified: Iterable[int],
        render: Render,
        kinds: Mapping[int, str] | None = None,
    ) -> Table:
        """A table of records kept elsewhere: `ids` ascending, `modified` aligned with them."""
        table = cls()
        table._render = render
        table._ids = array("q", ids)
        table._modified = array("q", modified)
        if len(table._ids) != len(table._modified):
            raise ValueError("ids and modified must have the same length")
        table._kinds = dict(kinds or {})
        table._reindex_modified()
        return table

    def __len__(self) -> int:
        return len(self._ids)

    # -- reading -------------------------------------------------------------------

    def get(self, row_id: int) -> Row | None:
        return self.row(row_id) if self._position(row_id) is not None else None

    def row(self, row_id: int) -> Row:
        """The rendered row of an ID the table holds."""
        self.rendered += 1
        return self._render(row_id)

    def ids(self) -> Sequence[int]:
        """Sorted IDs; index i here is index i in ordered()."""
        return self._ids

    def modified(self, row_id: int) -> int:
        pos = self._position(row_id)
        if pos is None:
            raise KeyError(row_id)
        return self._modified[pos]

    def kind(self, row_id: int) -> str:
        return self._kinds.get(row_id, "")

    def rows(self) -> Iterable[Row]:
        return self.ordered()

    def ordered(self) -> Sequence[Row]:
        """Every row in ID order, rendered as it is read."""
        return RowView(self, self._ids)

    def id_range(
        self,
        low: int | None,
        high: int | None,
        *,
        descending: bool = False,
        modified_since: int | None = None,
    ) -> Sequence[int]:
        """IDs within [low, high] (None: open), optionally only those modified at or after
        `modified_since`, in ID order: bisects, no row rendered."""
        ids: Sequence[int] = (
            self._ids if modified_since is None else self.changed_since(modified_since)
        )
        start = 0 if low is None else bisect_left(ids, low)
        stop = len(ids) if high is None else bisect_right(ids, high)
        span = range(start, max(start, stop))
        return IdSpan(ids, span[::-1] if descending else span)

    def changed_since(self, since: int) -> list[int]:
        """IDs of rows with DateModified >= since, ascending (cached until a change)."""
        cached = self._since.get(since)
        if cached is None:
            first = bisect_left(self._by_modified, since << _ID_BITS) if since >= 0 else 0
            cached = sorted(key & _ID_MASK for key in self._by_modified[first:])
            _keep(self._since, since, cached)
        return cached

    def sorted_by(self, order: tuple[OrderKey, ...]) -> Sequence[int]:
        """IDs in the asked order; ties keep ID ascending (stable sorts from ID order).

        An order that starts with ID is the ID index itself; any other renders every
        row once to sort it (cached until a change).
        """
        if not order or order[0].path == "ID":
            return self.id_range(None, None, descending=bool(order) and order[0].descending)
        cached = self._sorted.get(order)
        if cached is None:
            rows = list(self.ordered())
            for key in reversed(order):
                rows.sort(key=_by(key.path), reverse=key.descending)
            cached = [row.id for row in rows]
            _keep(self._sorted, order, cached)
        return cached

    # -- changes -------------------------------------------------------------------

    def put(self, row: Row) -> None:
        """Hold a rendered row (tables built from rows)."""
        self._held[row.id] = row
        self.put_index(row.id, row.modified, row.kind)

    def put_index(self, row_id: int, modified: int, kind: str = "") -> None:
        """Record that a row is new or changed (tables whose rows are rendered elsewhere)."""
        _check_key(row_id, modified)
        pos = self._position(row_id)
        if pos is None:
            pos = bisect_left(self._ids, row_id)
            self._ids.insert(pos, row_id)
            self._modified.insert(pos, modified)
        else:
            self._drop_modified(row_id, self._modified[pos])
            self._modified[pos] = modified
        insort(self._by_modified, modified << _ID_BITS | row_id)
        if kind:
            self._kinds[row_id] = kind
        self._changed()

    def remove(self, row_id: int) -> None:
        pos = self._position(row_id)
        if pos is None:
            raise KeyError(row_id)
        self._drop_modified(row_id, self._modified[pos])
        del self._ids[pos]
        del self._modified[pos]
        self._kinds.pop(row_id, None)
        self._held.pop(row_id, None)
        self._changed()

    # -- internals -----------------------------------------------------------------

    def _position(self, row_id: int) -> int | None:
        pos = bisect_left(self._ids, row_id)
        return pos if pos < len(self._ids) and self._ids[pos] == row_id else None

    def _reindex_modified(self) -> None:
        if self._ids:  # the extremes are enough: _ids is sorted
            _check_key(self._ids[0], min(self._modified))
            _check_key(self._ids[-1], max(self._modified))
        self._by_modified = array(
            "Q", sorted(m << _ID_BITS | i for i, m in zip(self._ids, self._modified, strict=True))
        )

    def _drop_modified(self, row_id: int, modified: int) -> None:
        del self._by_modified[bisect_left(self._by_modified, modified << _ID_BITS | row_id)]

    def _changed(self) -> None:
        self._sorted.clear()
        self._since.clear()


def _keep(cache: dict[K, list[int]], key: K, ids: list[int]) -> None:
    if len(cache) >= _CACHED_ANSWERS:
        cache.clear()
    cache[key] = ids


def _check_key(row_id: int, modified: int) -> None:
    # Both must fit the one-integer (DateModified, ID) key of the modification index.
    if not 0 <= row_id <= _ID_MASK or not 0 <= modified < 1 << (64 - _ID_BITS):
        raise ValueError(f"row {row_id} modified at {modified}: outside the indexable range")


def _by(path: str) -> Callable[[Row], tuple[int, Key]]:
    def sort_key(row: Row) -> tuple[int, Key]:
        return row.sort_key(path)

    return sort_key
