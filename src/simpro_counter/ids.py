"""Lenient parsing of Simpro IDs: `52` and `"52"` are the same record.

Dependency-free (only `errors`), so the pure parsing in `metrics/` can use it without
loading the HTTP client.
"""

from __future__ import annotations

from simpro_counter.errors import SimproDataError


def parse_id(value: object, *, what: str) -> int:
    """An integer ID from a JSON value, or :class:`SimproDataError` naming `what` was wrong.

    Community clients have seen integer IDs arrive as strings; both forms must map to one
    key or a customer would be counted twice.
    """
    if isinstance(value, bool):  # bool is an int subclass; True is not an ID
        raise SimproDataError(f"{what} is {value!r}, not an integer ID")
    if isinstance(value, int):
        return value
    if isinstance(value, str):
        text = value.strip()
        if text.isdigit() or (text.startswith("-") and text[1:].isdigit()):
            return int(text)
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if value is None:
        raise SimproDataError(f"{what} is missing")
    raise SimproDataError(f"{what} is {value!r}, not an integer ID")
