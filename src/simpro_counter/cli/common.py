"""What every command shares: the consoles, the settings check, and one way to report errors."""

from __future__ import annotations

import asyncio
import logging
import sys
from collections.abc import Coroutine
from typing import Any, NoReturn, TypeVar

import typer
from rich.console import Console

from simpro_counter.errors import ConfigError, SimproCounterError
from simpro_counter.settings import Settings, load_settings, simpro_config

console = Console()
err_console = Console(stderr=True)

T = TypeVar("T")


def config_error_exit(message: str) -> NoReturn:
    """Print the configuration error on one line and exit 2."""
    err_console.print(f"[red]Configuration error:[/] {message}", highlight=False, soft_wrap=True)
    raise typer.Exit(2)


def run(coro: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine; turn the package's own errors into one line and an exit code."""
    try:
        return asyncio.run(coro)
    except ConfigError as exc:
        config_error_exit(str(exc))
    except SimproCounterError as exc:
        err_console.print(f"[red]Error:[/] {exc}", highlight=False, soft_wrap=True)
        raise typer.Exit(1) from None
    except KeyboardInterrupt:
        err_console.print("[yellow]Interrupted; nothing was published.[/]")
        raise typer.Exit(130) from None


def settings_or_exit() -> Settings:
    """The settings with a usable Simpro part, or exit 2 with the configuration error."""
    try:
        settings = load_settings()
        simpro_config(settings)
    except ConfigError as exc:
        config_error_exit(str(exc))
    return settings


def configure_logging() -> None:
    """Plain, scannable log lines on stderr."""
    logging.basicConfig(
        level=logging.INFO,
        format="%(asctime)s %(levelname)-7s %(message)s",
        datefmt="%Y-%m-%d %H:%M:%S",
        stream=sys.stderr,
    )
    logging.getLogger("stamina").setLevel(logging.ERROR)
    logging.getLogger("httpx").setLevel(logging.WARNING)
