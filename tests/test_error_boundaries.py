"""Redis errors are translated into `StoreError` at the boundaries, and nowhere else.

Like HTTPX's test that its transport's errors are mapped in one place: outside the
stores (`store/`) and the webhook stream (`webhooks/queue.py`), no module may name
redis-py's errors. Code that talks to a store catches `StoreError`; a module that
imported `redis.exceptions` again would be spelling its own exception tuple.
"""

from __future__ import annotations

import ast
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
import redis
from redis.exceptions import RedisError

import simpro_counter
from simpro_counter.errors import StoreError
from simpro_counter.keys import Keys
from simpro_counter.metrics import InvoiceFold
from simpro_counter.store import EmbeddedRedis, connect
from simpro_counter.store.ledger import DELETED, InvoiceLedgerStore
from tests.redis_fixtures import free_port

pytest_plugins = ["tests.redis_fixtures"]

PACKAGE = Path(simpro_counter.__file__).parent

# The translation boundaries, relative to the package: the stores, and the webhook
# stream's own module (Redis access that goes through no store).
BOUNDARIES = ("store/", "webhooks/queue.py")


def names_redis_errors(source: str) -> list[str]:
    """Where `source` names redis-py's errors: `redis.exceptions` imported, `from redis...
    import SomeError`, or `SomeError` / `exceptions` read off an imported redis module.
    Each as `line N: what`."""
    tree = ast.parse(source)
    found: list[str] = []
    redis_modules: set[str] = set()  # local names bound to redis or one of its modules
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name == "redis" or alias.name.startswith("redis."):
                    redis_modules.add(alias.asname or alias.name.split(".")[0])
                if alias.name == "redis.exceptions" or alias.name.startswith("redis.exceptions."):
                    found.append(f"line {node.lineno}: import {alias.name}")
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            module = node.module
            if module != "redis" and not module.startswith("redis."):
                continue
            for alias in node.names:
                if module.startswith("redis.exceptions") or _is_error_name(alias.name):
                    found.append(f"line {node.lineno}: from {module} import {alias.name}")
                elif module == "redis" or alias.name == "asyncio":
                    redis_modules.add(alias.asname or alias.name)
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Attribute)
            and isinstance(node.value, ast.Name)
            and node.value.id in redis_modules
            and _is_error_name(node.attr)
        ):
            found.append(f"line {node.lineno}: {node.value.id}.{node.attr}")
    return found


def _is_error_name(name: str) -> bool:
    return name == "exceptions" or name.endswith("Error")


def test_the_checker_finds_every_way_of_naming_a_redis_error() -> None:
    """Guards the guard: with no finding on the package, it must still see these."""
    source = "\n".join(
        [
            "import redis.exceptions",
            "from redis.exceptions import RedisError",
            "from redis import ConnectionError, Redis",
            "from redis import exceptions as redis_errors",
            "from redis.asyncio import TimeoutError",
            "import redis",
            "import redis.asyncio as aioredis",
            "except_this = (redis.RedisError, aioredis.ResponseError)",
        ]
    )
    assert names_redis_errors(source) == [
        "line 1: import redis.exceptions",
        "line 2: from redis.exceptions import RedisError",
        "line 3: from redis import ConnectionError",
        "line 4: from redis import exceptions",
        "line 5: from redis.asyncio import TimeoutError",
        "line 8: redis.RedisError",
        "line 8: aioredis.ResponseError",
    ]
    harmless = (
        "import redis.asyncio as aioredis\nfrom redis.typing import FieldT\nConnectionError\n"
    )
    assert names_redis_errors(harmless) == []


def test_redis_errors_are_named_only_at_the_translation_boundaries() -> None:
    offending: dict[str, list[str]] = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        relative = path.relative_to(PACKAGE).as_posix()
        if relative.startswith(BOUNDARIES):
            continue
        found = names_redis_errors(path.read_text(encoding="utf-8"))
        if found:
            offending[relative] = found
    assert not offending, (
        "redis-py's errors are named outside the translation boundaries "
        f"({', '.join(BOUNDARIES)}); catch StoreError instead:\n"
        + "\n".join(f"  {file}: {'; '.join(found)}" for file, found in offending.items())
    )


# -- the ledger's translation, against a Redis that is not there --------------------------


async def _every_ledger_operation(ledger: InvoiceLedgerStore) -> list[str]:
    """Run each public operation; the message of the StoreError each one raised."""
    fold = InvoiceFold()
    operations: dict[str, Callable[[], Awaitable[object]]] = {
        "apply": lambda: ledger.apply(7, (3, 1250, None)),
        "delete": lambda: ledger.apply(7, DELETED),
        "counts": ledger.counts,
        "version": ledger.version,
        "first_day_counts": ledger.first_day_counts,
        "rebuild": lambda: ledger.rebuild([(7, (3, 1250, None))], journal_from=0),
        "rebuild of a fold": lambda: ledger.rebuild(fold.counted()),
    }
    messages: list[str] = []
    for name, operation in operations.items():
        with pytest.raises(StoreError) as raised:
            await operation()
        assert not isinstance(raised.value, RedisError), name
        assert isinstance(raised.value.__cause__, RedisError | OSError), name
        messages.append(str(raised.value))
    return messages


async def test_a_ledger_on_an_unreachable_redis_raises_store_error() -> None:
    client = connect(f"redis://127.0.0.1:{free_port()}/0", timeout=0.25)
    try:
        messages = await _every_ledger_operation(InvoiceLedgerStore(client))
    finally:
        await client.aclose()
    assert messages[0].startswith("The invoice ledger could not apply invoice 7: Redis failed")
    assert "ConnectionError" in messages[0]
    assert [m.split(":")[0] for m in messages[2:5]] == [
        "The invoice ledger could not read its counts",
        "The invoice ledger could not read its version",
        "The invoice ledger could not read the first days of its customers",
    ]
    assert messages[5].startswith("The invoice ledger could not rebuild from a full scan")


async def test_a_ledger_whose_redis_stopped_raises_store_error(
    redis_server: EmbeddedRedis,
) -> None:
    client = connect(redis_server.url, timeout=0.5)
    try:
        ledger = InvoiceLedgerStore(client, Keys("t"))
        assert (await ledger.apply(7, (3, 1250, None))).outcome == "created"
        redis_server.stop()
        await _every_ledger_operation(ledger)
    finally:
        await client.aclose()


async def test_a_command_redis_refuses_is_a_store_error_too(
    redis_server: EmbeddedRedis,
) -> None:
    """Redis answering with an error (here WRONGTYPE, at the script's first command, so
    nothing is half-written) is translated like Redis being down; a bad amount is not a
    Redis failure and stays a ValueError."""
    client = connect(redis_server.url, timeout=2)
    try:
        ledger = InvoiceLedgerStore(client, Keys("t"))
        await client.set(ledger.keys.entry_bucket_of(7), "not a hash")
        with pytest.raises(StoreError, match="could not apply invoice 7: Redis failed") as raised:
            await ledger.apply(7, (3, 1250, None))
        assert isinstance(raised.value.__cause__, redis.ResponseError)
        with pytest.raises(ValueError, match="beyond what the ledger can add up exactly"):
            await ledger.apply(8, (3, 2**63, None))
    finally:
        await client.aclose()
