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


def test_the_cli_takes_the_secret_from_a_file_or_the_environment_never_argv(
    live_simulator: RunningSimulator, tmp_path: Path
) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SIMPRO_", "WEBHOOK_"))}
    env.update(SIMPRO_BASE_URL=live_simulator.url, SIMPRO_API_KEY="demo-key", COLUMNS="200")

    def register(url: str, *args: str, **extra: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "simpro_counter", "webhooks", "register", "--url", url, *args],
            env={**env, **extra}, cwd=tmp_path, capture_output=True, text=True, timeout=60,
            check=False,
        )  # fmt: skip

    def secret_of(url: str) -> str:
        (found,) = (
            sub
            for sub in live_simulator.simulator.webhooks.subscriptions()
            if sub.callback_url == url
        )
        return found.secret

    secret_file = tmp_path / "webhook-secret"
    secret_file.write_text("from-the-file-5b2e\n")
    secret_file.chmod(0o600)
    from_file = register("https://a.example.com/hook", "--secret-file", str(secret_file))
    assert from_file.returncode == 0, from_file.stderr
    assert secret_of("https://a.example.com/hook") == "from-the-file-5b2e"
    assert "from-the-file-5b2e" not in from_file.stdout + from_file.stderr

    from_env = register("https://b.example.com/hook", WEBHOOK_SECRET="from-the-env-93c1")
    assert from_env.returncode == 0, from_env.stderr
    assert secret_of("https://b.example.com/hook") == "from-the-env-93c1"
    assert "WEBHOOK_SECRET=" not in from_env.stdout  # a known secret is not printed

    refused = register("https://c.example.com/hook", "--secret", "in-argv-0d4f")
    assert refused.returncode == 2
    assert "No such option: --secret" in refused.stderr

    secret_file.chmod(0o644)
    shared = register("https://d.example.com/hook", "--secret-file", str(secret_file))
    assert shared.returncode == 2
    assert shared.stderr.strip().splitlines() == [
        f"Configuration error: WEBHOOK_SECRET file {secret_file} is open to other users "
        f"(mode 0644): run `chmod 600 {secret_file}`."
    ]
    urls = [sub.callback_url for sub in live_simulator.simulator.webhooks.subscriptions()]
    assert urls == ["https://a.example.com/hook", "https://b.example.com/hook"]
