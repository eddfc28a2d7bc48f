"""Managing the build's webhook subscription through Simpro's setup/webhooks API."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from simpro_counter.errors import SimproRequestError
from simpro_counter.simpro import SimproClient
from simpro_counter.simulator import RunningSimulator, Simulator
from simpro_counter.webhooks import subscriptions
from simpro_counter.webhooks.events import COUNTED_EVENTS
from tests.conftest import client_config


async def test_register_list_delete(simulator: Simulator) -> None:
    async with SimproClient(client_config(), transport=simulator.transport()) as client:
        assert await subscriptions.list_subscriptions(client) == []
        created = await subscriptions.register(client, "https://counter.example.com/hook", "s3")
        assert created.events == COUNTED_EVENTS
        assert created.status == "Enabled"
        listed = await subscriptions.list_subscriptions(client)
        assert [s.id for s in listed] == [created.id]
        assert listed[0].callback_url == "https://counter.example.com/hook"
        await subscriptions.delete(client, created.id)
        assert await subscriptions.list_subscriptions(client) == []


async def test_a_refused_subscription_says_why_and_is_not_retried(simulator: Simulator) -> None:
    async with SimproClient(client_config(), transport=simulator.transport()) as client:
        with pytest.raises(SimproRequestError, match=r"422.*CallbackURL"):
            await subscriptions.register(client, "not a url", "s3")
        assert client.stats.requests == 1


async def test_a_post_is_not_repeated_after_a_server_error(simulator: Simulator) -> None:
    simulator.faults.schedule.append("5xx")  # Simpro may have acted: do not POST twice
    async with SimproClient(client_config(), transport=simulator.transport()) as client:
        with pytest.raises(Exception, match="failed 1 times"):
            await subscriptions.register(client, "https://counter.example.com/hook", "s3")
        assert client.stats.requests == 1


def test_the_cli_manages_the_subscription(live_simulator: RunningSimulator, tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SIMPRO_", "WEBHOOK_"))}
    env.update(SIMPRO_BASE_URL=live_simulator.url, SIMPRO_API_KEY="demo-key", COLUMNS="200")

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "simpro_counter", "webhooks", *args],
            env=env, cwd=tmp_path, capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip

    registered = run("register", "--url", "https://counter.example.com/api/simpro/webhooks")
    assert registered.returncode == 0, registered.stderr
    assert "Set WEBHOOK_SECRET=" in registered.stdout  # a fresh secret, printed once
    listed = run("list")
    assert "https://counter.example.com/api/simpro/webhooks" in listed.stdout
    subscription = live_simulator.simulator.webhooks.subscriptions()[0]
    deleted = run("delete", str(subscription.id))
    assert deleted.returncode == 0, deleted.stderr
    assert "No webhook subscriptions." in run("list").stdout
