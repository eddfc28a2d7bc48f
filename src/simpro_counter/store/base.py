"""The interface every store implements (Redis, memory, and the resilient pair of both)."""

from __future__ import annotations

from typing import Any, Literal, Protocol

from simpro_counter.store.values import MetricValue, RefreshStatus

StorageName = Literal["redis", "memory"]


class Store(Protocol):
    @property
    def storage(self) -> StorageName:
        """Where reads and writes go right now."""

    async def read(self, metric: str) -> MetricValue | None:
        """The published value, or None when there is none yet."""

    async def publish(self, value: MetricValue) -> bool:
        """Store unless a higher fence is stored, then tell readers; False if fenced off."""

    async def next_fence(self, metric: str) -> int:
        """A fencing token higher than any handed out before."""

    async def acquire_lock(self, metric: str, token: str, ttl_ms: int) -> bool: ...

    async def extend_lock(self, metric: str, token: str, ttl_ms: int) -> bool:
        """Extend the lock if `token` still holds it; False when it was lost."""

    async def release_lock(self, metric: str, token: str) -> bool:
        """Delete the lock only if `token` holds it (compare-and-delete)."""

    async def lock_held(self, metric: str) -> bool: ...

    async def read_status(self, metric: str) -> RefreshStatus | None: ...

    async def write_status(self, status: RefreshStatus) -> None: ...

    async def push_history(self, entry: dict[str, Any]) -> None:
        """Remember one finished refresh; the last `HISTORY_LENGTH` are kept."""

    async def history(self) -> list[dict[str, Any]]: ...

    async def ping(self) -> bool:
        """True when the backing store answers."""
