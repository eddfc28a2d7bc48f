"""The near-cache's trust rules, with a fake clock."""

from __future__ import annotations

from simpro_counter.store import MetricValue
from simpro_counter.store.nearcache import NearCache


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


VALUE = MetricValue("customers", 450, computed_at=1.0, ttl=60, fence=1)


def test_without_a_subscription_entries_live_one_second() -> None:
    clock = FakeClock()
    near = NearCache(unsubscribed_ttl=1.0, clock=clock)
    near.put("customers", VALUE, near.ticket("customers"))
    assert near.get("customers") == (True, VALUE)
    clock.now = 0.99
    assert near.get("customers") == (True, VALUE)
    clock.now = 1.0
    assert near.get("customers") == (False, VALUE)


def test_with_a_subscription_entries_live_until_invalidated() -> None:
    clock = FakeClock()
    near = NearCache(clock=clock)
    near.subscription_up()
    near.put("customers", None, near.ticket("customers"))  # known absent
    clock.now = 3600.0
    assert near.get("customers") == (True, None)
    near.invalidate("customers")
    assert near.get("customers") == (False, None)


def test_entries_from_before_the_subscription_are_dropped() -> None:
    near = NearCache()
    ticket = near.ticket("customers")
    near.put("customers", VALUE, near.ticket("customers"))
    near.subscription_up()  # a publish may have been missed before this
    assert near.get("customers") == (False, None)
    near.put("customers", VALUE, ticket)  # a read begun before it is not kept either
    assert near.get("customers") == (False, None)


def test_losing_the_subscription_limits_trust_again() -> None:
    clock = FakeClock()
    near = NearCache(clock=clock)
    near.subscription_up()
    near.put("customers", VALUE, near.ticket("customers"))
    clock.now = 10.0
    near.subscription_down()
    assert near.get("customers") == (False, VALUE)


def test_a_read_overtaken_by_an_invalidation_is_not_kept() -> None:
    near = NearCache()
    near.subscription_up()
    ticket = near.ticket("customers")  # a read-through starts ...
    near.invalidate("customers")  # ... a publish message arrives meanwhile ...
    near.put("customers", VALUE, ticket)  # ... its (older) result is dropped
    assert near.get("customers") == (False, None)


def test_own_publish_wins_over_a_read_in_flight() -> None:
    near = NearCache()
    near.subscription_up()
    ticket = near.ticket("customers")
    newer = MetricValue("customers", 451, computed_at=2.0, ttl=60, fence=2)
    near.set(newer)
    near.put("customers", VALUE, ticket)
    assert near.get("customers") == (True, newer)
