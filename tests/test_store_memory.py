"""MemoryStore specifics: lock expiry by its clock, and mirroring another store's values."""

from __future__ import annotations

from simpro_counter.store import MemoryStore, MetricValue
from simpro_counter.store.memory import newer


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def value(count: int, fence: int, computed_at: float = 1000.0) -> MetricValue:
    return MetricValue("customers", count, computed_at=computed_at, ttl=60, fence=fence)


async def test_lock_expires_by_the_clock() -> None:
    clock = FakeClock()
    store = MemoryStore(clock=clock)
    assert await store.acquire_lock("customers", "a", 15_000)
    clock.now += 14.9
    assert await store.extend_lock("customers", "a", 15_000)
    clock.now += 15.0
    assert not await store.lock_held("customers")
    assert not await store.release_lock("customers", "a")
    assert await store.acquire_lock("customers", "b", 15_000)


def test_newer_is_by_fence_then_computed_at() -> None:
    assert newer(value(1, fence=2, computed_at=1.0), value(2, fence=1, computed_at=9.0))
    assert newer(value(1, fence=2, computed_at=9.0), value(2, fence=2, computed_at=1.0))
    assert not newer(value(1, fence=2, computed_at=1.0), value(2, fence=2, computed_at=1.0))
    assert newer(value(1, fence=0), None)


async def test_remember_keeps_the_newer_value_and_its_fence() -> None:
    store = MemoryStore()
    assert store.remember(value(450, fence=7))
    assert not store.remember(value(400, fence=6))
    assert (await store.read("customers")) == value(450, fence=7)
    # Fences handed out here stay above every fence seen elsewhere.
    assert await store.next_fence("customers") == 8
    assert not await store.publish(value(1, fence=6))


async def test_observed_fences_raise_the_counter() -> None:
    store = MemoryStore()
    store.observe_fence("customers", 41)
    store.observe_fence("customers", 12)
    assert store.fence_counter("customers") == 41
    assert await store.next_fence("customers") == 42
    assert store.metrics() == ["customers"]
