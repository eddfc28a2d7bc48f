"""Counting what clients asked the simulated build, for tests and benchmarks."""

from __future__ import annotations

from collections import Counter

DROPPED = 0  # by_status key for "drop" faults: no complete response was sent


class RequestStats:
    """Simpro API requests (/api/v1.0/... and /oauth2/token); /__ endpoints excluded."""

    def __init__(self) -> None:
        self.total = 0
        self.by_status: dict[int, int] = Counter()
        self.by_path: dict[str, int] = Counter()
        self.faults: dict[str, int] = Counter()  # injected faults by kind

    def begin(self, path: str) -> int:
        """Count an arriving request; returns its running number (1-based)."""
        self.total += 1
        self.by_path[path] += 1
        return self.total

    def finish(self, status: int) -> None:
        self.by_status[status] += 1

    def fault(self, kind: str) -> None:
        self.faults[kind] += 1

    def reset(self) -> None:
        self.total = 0
        self.by_status.clear()
        self.by_path.clear()
        self.faults.clear()

    def as_json(self) -> dict[str, object]:
        return {
            "total": self.total,
            "byStatus": {str(status): n for status, n in sorted(self.by_status.items())},
            "byPath": dict(sorted(self.by_path.items())),
            "faults": dict(sorted(self.faults.items())),
        }
